"End to end: a small real recipe, killed in the middle of fine-tuning and run again, gives the same submission."
import os, sys, json, time, signal, subprocess
from pathlib import Path
import pytest
from fgia_nb.core import project_root, read_run

FGIA = str(Path(sys.executable).parent/'fgia')   # the console script `pip install -e .` makes

RECIPE = """
experiment: {exp}
params: {{valid_pct: 0}}
steps:
  - {{name: clean, notebook: 00_data_clean}}
  - {{name: mae, notebook: 02_mae_pretrain, params: {{arch: vit_demo, epochs: 1, max_images: 800, evaluate: false}}}}
  - {{name: vit, notebook: 04_finetune, params: {{arch: vit_demo, head: linear, loss: logit_adjusted, epochs: 4, max_items: 1500, run: vit,
      weights: '{{out}}/02_mae_pretrain/vit_demo/encoder.safetensors'}}}}
  - {{name: predict, notebook: 05_tta_predict, params: {{train_run: vit, split: testb}}}}
  - {{name: ensemble, notebook: 08_ensemble, params: {{split: testb, models: '{{out}}/05_tta_predict/vit-testb', weighting: equal}}}}
  - {{name: redistribute, notebook: 09_redistribute, params: {{split: testb}}}}
"""

def fgia(*args, env, **kw):
    return subprocess.Popen([FGIA, *args], cwd=project_root(), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)

def finish(p, timeout=900):
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out[-3000:]
    return out

@pytest.fixture
def env(tmp_path):
    return {**os.environ, 'FGIA_OUTPUTS': str(tmp_path/'outputs'), 'PYTHONWARNINGS': 'ignore'}

def write(tmp_path, exp):
    p = tmp_path/f'{exp}.yaml'; p.write_text(RECIPE.format(exp=exp)); return p

def test_kill_and_rerun_gives_the_same_submission(tmp_path, env):
    out = tmp_path/'outputs'
    finish(fgia('run', str(write(tmp_path, 'whole')), env=env))
    whole = (out/'whole'/'09_redistribute'/'testb'/'pred_results.csv').read_bytes()

    rec = write(tmp_path, 'killed'); run = out/'killed'/'04_finetune'/'vit'
    p = fgia('run', str(rec), env=env)
    t0 = time.time()
    while not list(run.glob('epoch_001.safetensors')):   # killed after the first epoch's checkpoint
        assert p.poll() is None and time.time() - t0 < 600, 'the recipe ended before it could be killed'
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    time.sleep(3)                                           # the orphaned kernel notices its parent is gone and exits
    assert json.loads((out/'killed'/'recipe'/'steps'/'vit.json').read_text())['status'] == 'running'
    assert not (out/'killed'/'09_redistribute').exists()
    for f in out.rglob('*'):                                # every file that has its final name is whole
        if f.suffix == '.json' and not f.name.startswith('.'): json.loads(f.read_text())

    log = finish(fgia('run', str(rec), env=env))
    summary = (out/'killed'/'recipe'/'summary.csv').read_text()
    assert 'clean,00_data_clean,skipped' in summary and 'mae,02_mae_pretrain,skipped' in summary and 'vit,04_finetune,ran' in summary, summary
    assert read_run(run)['metrics']['start_epoch'] >= 1        # resumed from its checkpoint, not started over
    assert (out/'killed'/'09_redistribute'/'testb'/'pred_results.csv').read_bytes() == whole
    again = finish(fgia('run', str(rec), env=env))
    assert '0 step(s) ran, 6 skipped' in again, again

def test_bad_recipe_says_what_is_wrong(tmp_path, env):
    p = tmp_path/'bad.yaml'; p.write_text(RECIPE.format(exp='bad').replace('epochs: 4', 'epoch: 4'))
    r = subprocess.run([FGIA, 'run', str(p)], cwd=project_root(), env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "step 'vit': 04_finetune.ipynb has no parameter(s) ['epoch']" in r.stderr, r.stderr

TOY_PARAMS = "experiment = 'toy'\nrun = 'a'\nseed = 0\nsrc = ''\nsleep = 0.0"
TOY_BODY = """import time
from fgia_nb.core import run_dir, RunRecord
out = run_dir(experiment, 'toy', run)
with RunRecord(out, 'toy', dict(run=run, seed=seed, src=src), inputs=[src] if src else []):
    got = open(src).read() if src else ''
    time.sleep(sleep)
    (out/'value.txt').write_text(f'{got}{run}:{seed} ')
"""
TOY_RECIPE = """
experiment: toy
steps:
  - {{name: train, notebook: '{nb}', params: {{run: train, seed: {seed}}}}}
  - {{name: predict, notebook: '{nb}', params: {{run: predict, src: '{{out}}/toy/train/value.txt', sleep: {sleep}}}}}
"""

def toy_notebook(path:Path, body:str)->Path:
    "A stage-like notebook at `path`: `TOY_PARAMS` as its papermill parameters cell, then `body`."
    import nbformat
    from nbformat.v4 import new_notebook, new_code_cell
    params = new_code_cell(TOY_PARAMS)
    params.metadata['tags'] = ['parameters']
    nbformat.write(new_notebook(cells=[params, new_code_cell(body)],
                                metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python'))), path)
    return path

def test_killed_step_then_edit_loses_no_fresh_work(tmp_path, env):
    "The probe's case: kill during the second step, change the first step's seed, run again: nothing fresh is deleted."
    nb = toy_notebook(tmp_path/'toy.ipynb', TOY_BODY)
    rec, out = tmp_path/'toy.yaml', tmp_path/'outputs'/'toy'
    rec.write_text(TOY_RECIPE.format(nb=nb, seed=1, sleep=60))
    p = fgia('run', str(rec), env=env)
    t0 = time.time()
    while not (out/'toy'/'predict'/'run.json').exists():      # killed while `predict` works
        assert p.poll() is None and time.time() - t0 < 120, 'the recipe ended before it could be killed'
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert json.loads((out/'recipe'/'steps'/'predict.json').read_text())['status'] == 'running'
    rec.write_text(TOY_RECIPE.format(nb=nb, seed=2, sleep=0))
    log = finish(fgia('run', str(rec), env=env), timeout=120)
    assert 'toy/train (made with other parameters)' in log                  # the old `train` went before it re-ran
    assert 'toy/toy/train (made' in log and log.count('removing') == 2, log   # and the killed `predict`, nothing else
    assert (out/'toy'/'train'/'value.txt').read_text() == 'train:2 '
    assert (out/'toy'/'predict'/'value.txt').read_text() == 'train:2 predict:0 '
    assert read_run(out/'toy'/'train')['params']['seed'] == 2

KILLED_WRITER = r'''
import sys, time, numpy as np
from pathlib import Path
from fgia_nb.core import atomic_path
from fgia_nb.logits import logits_writer
out = Path(sys.argv[1])
with atomic_path(out/'scores.npy') as t, logits_writer(out/'m', ['c.jpg', 'd.jpg'], ['x', 'y']) as w:
    t.write_bytes(bytes(2**20))
    w(np.ones((1, 2), np.float32))
    print('writing', flush=True)
    time.sleep(120)
'''

def test_a_killed_writers_temporaries_go_on_the_next_run(tmp_path):
    "Issue 12 item 9: what a SIGKILLed `atomic_path`/`logits_writer` leaves is removed when its outputs are next written."
    import numpy as np
    from fgia_nb.core import atomic_path
    from fgia_nb.logits import write_logits, open_logits
    good = write_logits(tmp_path/'m', np.eye(2), ['a.jpg', 'b.jpg'], ['x', 'y'])
    p = subprocess.Popen([sys.executable, '-c', KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try: assert p.stdout.readline().strip() == 'writing'
    finally: p.kill(); p.wait()
    assert p.returncode == -signal.SIGKILL
    left = sorted(x.name for x in tmp_path.iterdir())
    assert left == sorted(['m', f'.m.{p.pid}.tmp', f'.scores.{p.pid}.tmp.npy']), left
    assert open_logits(good).paths == ['a.jpg', 'b.jpg']   # the kill left the previous folder whole
    write_logits(good, np.ones((2, 2)), ['c.jpg', 'd.jpg'], ['x', 'y'])
    with atomic_path(tmp_path/'scores.npy') as t: t.write_bytes(b'ok')
    assert sorted(x.name for x in tmp_path.iterdir()) == ['m', 'scores.npy']
    assert sorted(x.name for x in good.iterdir()) == ['classes.json', 'index.csv', 'logits.npy']

ABLATION = """
experiment: abl
vars: {{seed: 0}}
params: {{valid_pct: 0}}
steps:
  - {{name: clean, notebook: 00_data_clean}}
  - {{name: cnn, notebook: 04_finetune, params: {{arch: cnn_demo, epochs: 1, max_items: 400, seed: '{{seed}}', run: cnn}}}}
  - {{name: predict, notebook: 05_tta_predict, params: {{train_run: cnn, split: testb}}}}
ablation:
  - {{row: plain, logits: 05_tta_predict/cnn-testb/plain}}
  - {{row: + flip TTA, logits: 05_tta_predict/cnn-testb}}
"""

def test_ablation_over_seeds(tmp_path, env):
    "`fgia ablation` runs the recipe once per seed and reports each row's mean and sd over the seeds."
    import numpy as np, pandas as pd
    p = tmp_path/'abl.yaml'; p.write_text(ABLATION.format())
    finish(fgia('ablation', str(p), '--seeds', '0,1', env=env))
    out = tmp_path/'outputs'
    assert read_run(out/'abl-seed1'/'04_finetune'/'cnn')['params']['seed'] == 1
    assert read_run(out/'abl'/'04_finetune'/'cnn')['params']['seed'] == 0
    per = [pd.read_csv(out/e/'ablation.csv') for e in ('abl', 'abl-seed1')]
    df = pd.read_csv(out/'abl'/'ablation_seeds.csv')
    assert df.step.tolist() == ['plain', '+ flip TTA'] and df.seeds.tolist() == [2, 2]
    assert np.allclose(df.top1, (per[0].top1 + per[1].top1) / 2)
    assert np.allclose(df.top1_std, np.abs(per[0].top1 - per[1].top1) / np.sqrt(2))
    assert np.allclose(df.gain, (per[0].delta + per[1].delta) / 2)
    assert '±' in (out/'abl'/'ablation_seeds.md').read_text() and (out/'abl'/'ablation_seeds.png').stat().st_size > 0

def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    "Ctrl-C during `fgia run` prints one line (not a traceback) and exits with the shell's code for SIGINT."
    import fgia_nb.recipe as r
    def interrupted(*a, **kw): raise KeyboardInterrupt
    monkeypatch.setattr(r, 'run_recipe', interrupted)
    with pytest.raises(SystemExit) as e: r.main(['run', str(write(tmp_path, 'ki'))])
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'interrupted' in err and 'Traceback' not in err

PID_BODY = """import os, time
from fgia_nb.core import run_dir
out = run_dir(experiment, 'toy', run)
(out/'pid').write_text(str(os.getpid()))
time.sleep(sleep)
(out/'value.txt').write_text(run)
"""

def _alive(pid:int)->bool:
    try: os.kill(pid, 0)
    except ProcessLookupError: return False
    try: return 'zombie' not in Path(f'/proc/{pid}/status').read_text().lower()
    except FileNotFoundError: return False

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_runner_stops_its_kernels(tmp_path, env, sig):
    "`kill` of the runner alone (not its process group) stops every running step's kernel: nothing writes on after it."
    nb = toy_notebook(tmp_path/'sleep.ipynb', PID_BODY)
    rec, out = tmp_path/'two.yaml', tmp_path/'outputs'/'toy'
    rec.write_text(f"experiment: toy\njobs: 2\nsteps:\n  - {{name: a, notebook: '{nb}', params: {{run: a, sleep: 60}}}}\n"
                   f"  - {{name: b, after: [], notebook: '{nb}', params: {{run: b, sleep: 60}}}}\n")
    p = fgia('run', str(rec), env=env)
    pids, t0 = [out/'toy'/r/'pid' for r in 'ab'], time.time()
    while not all(f.exists() and f.read_text() for f in pids):
        assert p.poll() is None and time.time() - t0 < 120, 'the recipe ended before it could be stopped'
        time.sleep(0.2)
    kernels = [int(f.read_text()) for f in pids]
    p.send_signal(sig)
    log, _ = p.communicate(timeout=40)   # the pipe closes once the workers, which share it, are gone too
    if sig == signal.SIGTERM: assert p.returncode == 130 and 'interrupted' in log, log[-2000:]
    t1 = time.time()
    while any(map(_alive, kernels)) and time.time() - t1 < 20: time.sleep(0.2)
    assert not any(map(_alive, kernels)), f'kernels {kernels} still run after the runner stopped'
    assert not list(out.rglob('value.txt'))
    assert json.loads((out/'recipe'/'steps'/'a.json').read_text())['status'] == 'running'   # the next run redoes it
