"Stage 05a end to end: a small CNN trained on a small default dataset -> maps, table and run record of each group."
import json
import numpy as np, pandas as pd, pytest
from fgia_nb.finetune import finetune_config, fit_run
from fgia_nb.gradcam import gradcam

@pytest.fixture(scope='module')
def outputs(tmp_path_factory, default_experiment):
    root, out = default_experiment(tmp_path_factory.mktemp('cam'), n_max=400, imb_ratio=10, n_testa=30, n_testb=1, seed=5)
    cfg = finetune_config('cnn_demo', train_manifest=str(out/'x'/'00_data_clean'/'default'/'manifest.parquet'),
                          out_dir=str(out/'x'/'04_finetune'/'cnn'), epochs=6, head='linear', loss='logit_adjusted',
                          valid_pct=0., seed=0)
    fit_run(cfg, quiet=True)
    return out

def test_maps_of_each_group(outputs, monkeypatch):
    monkeypatch.setenv('FGIA_OUTPUTS', str(outputs))
    m = gradcam('x', 'cnn', split='testa', n=8)
    out = outputs/'x'/'05a_gradcam'/'cnn-testa'
    tab = pd.read_csv(out/'cams.csv', dtype={'label': str, 'pred': str})
    assert list(dict.fromkeys(tab.group)) == ['correct', 'misclassified', 'flagged'] and (tab.group == 'correct').sum() == 8
    assert ((tab.label == tab.pred) == (tab.group == 'correct'))[tab.group != 'flagged'].all()
    assert tab.object_mass.between(0, 1).all() and tab.object_area.between(0, 1).all()   # every map has mass somewhere
    assert (out/'cams.png').stat().st_size > 10_000
    rec = json.loads((out/'run.json').read_text())
    assert rec['status'] == 'complete' and rec['metrics'] == pytest.approx(m.loc['cnn-testa'].to_dict())
    assert rec['metrics']['object_mass_correct'] == pytest.approx(tab.object_mass[tab.group == 'correct'].median())

def test_a_split_without_answers_says_what_to_give(outputs, monkeypatch):
    monkeypatch.setenv('FGIA_OUTPUTS', str(outputs))
    with pytest.raises(ValueError, match="no answers for 'train'.*give `answers`"):
        gradcam('x', 'cnn', split='train')
