"""The winners' full recipe, `recipes/accv2022.yaml`, run at toy scale through `recipes/toy.yaml` (`make smoke-accv`):
every step of the real file runs, the same rounds, soups, 17-model ensemble and K rule."""
import os, sys, json, subprocess
from pathlib import Path
import pandas as pd, pytest
from fgia_nb.core import project_root, read_run
from fgia_nb.recipe import read_recipe, apply_overlay, expand_steps

FGIA = str(Path(sys.executable).parent/'fgia')
ACCV, TOY = project_root()/'recipes'/'accv2022.yaml', project_root()/'recipes'/'toy.yaml'

def test_the_overlay_keeps_the_recipe_and_changes_only_scale():
    real = expand_steps(read_recipe(ACCV), vars=dict(raw='/data/webfg5000'))
    toy = expand_steps(apply_overlay(read_recipe(ACCV), TOY))
    assert [s['name'] for s in toy] == [s['name'] for s in real]
    assert [s['after'] for s in toy] == [s['after'] for s in real]
    archs = {s['params'].get('arch') for s in toy} - {None}
    assert archs == {'vit_demo', 'swinv2_demo'}, archs
    assert len(toy[-2]['params']['models'].split(',')) == 17
    same = {'head', 'loss', 'lr', 'label_smoothing', 'mixup', 'cutmix', 'seed', 'split', 'threshold', 'k', 'weighting', 'adjust', 'use_soup', 'method'}
    for r, t in zip(real, toy):   # the recipe's own choices survive; only scale changes
        assert {k: v for k, v in r['params'].items() if k in same} == {k: v for k, v in t['params'].items() if k in same}, r['name']

def test_every_step_of_the_winners_recipe_runs(tmp_path):
    from fgia_nb.sources import make_default_dataset
    raw = make_default_dataset(tmp_path/'fmnist_toy', n_max=400, n_testa=50, n_testb=50)   # what `make smoke-accv` builds
    env = {**os.environ, 'FGIA_OUTPUTS': str(tmp_path), 'HF_HUB_OFFLINE': '1'}
    p = subprocess.run([FGIA, 'run', str(ACCV), '--overlay', str(TOY), '--var', f'raw={raw}'], cwd=project_root(), env=env,
                       capture_output=True, text=True, timeout=3000)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    exp = tmp_path/'accv-toy'
    summary = pd.read_csv(exp/'recipe'/'summary.csv')
    assert (summary.action == 'ran').all() and len(summary) == len(expand_steps(apply_overlay(read_recipe(ACCV), TOY)))
    ens = read_run(exp/'08_ensemble'/'testb-final')
    assert len(ens['params']['models']) == 17
    red = read_run(exp/'09_redistribute'/'testb')
    n, c = len(pd.read_csv(exp/'09_redistribute'/'testb'/'pred_results.csv', header=None)), 10
    assert n == 500 and red['params']['K'] == int(0.9 * n / c)        # K from N / C
    assert 'top1' in red['metrics']['prior_match']                     # scored against the default data's answers
