"Stage 06a end to end: two fold models of the small CNN on a small default dataset -> a cleaned manifest, measured."
import json
import numpy as np, pandas as pd, pytest
from fgia_nb.sources import answers_dir
from fgia_nb.data_clean import read_manifest
from fgia_nb.logits import open_logits
from fgia_nb.model_clean import model_clean

@pytest.fixture(scope='module')
def cleaned(tmp_path_factory, default_experiment):
    root, out = default_experiment(tmp_path_factory.mktemp('mclean'), n_max=600, imb_ratio=10, n_testa=1, n_testb=1, seed=3)
    truth = pd.read_csv(answers_dir(root)/'truth.csv', dtype=str, keep_default_na=False)
    man = read_manifest(out/'x'/'00_data_clean'/'default'/'manifest.parquet')
    kept = set(man.path[(man.split == 'train') & (man.status != 'dropped')])
    seeds = [p for p in truth.path[truth.kind == 'non_photo'] if p in kept][:2]
    mp = pytest.MonkeyPatch()
    mp.setenv('FGIA_OUTPUTS', str(out))
    res = model_clean('x', folds=2, epochs=4, junk_examples=','.join(seeds), relabel_conf=0.6, drop_issues=True)
    mp.undo()
    return out/'x'/'06a_model_clean'/'model_clean', man, truth, seeds, res

def test_nothing_is_lost_and_each_image_is_scored_out_of_fold(cleaned):
    out, man, truth, seeds, res = cleaned
    new = read_manifest(out/'manifest.parquet')
    assert new.path.tolist() == man.path.tolist()
    train = man.path[(man.split == 'train') & (man.status != 'dropped')]
    held = [set(train) - set(pd.read_parquet(out/'folds'/f'fold{k}.parquet').path) for k in (0, 1)]
    assert not held[0] & held[1] and held[0] | held[1] == set(train)   # each image held out by exactly one fold model
    assert open_logits(out/"oof").shape == (len(train), len(json.loads((out/'classes.json').read_text())))

def test_relabels_drops_and_junk_follow_the_rules(cleaned):
    out, man, truth, seeds, res = cleaned
    new, tab = read_manifest(out/'manifest.parquet'), pd.read_csv(out/'issues.csv', dtype={'given': str, 'suggested': str, 'label': str})
    rl = tab[tab.reason == 'relabelled']
    assert len(rl) and (rl.p_suggested >= 0.6).all() and (rl.label == rl.suggested).all() and (rl.given != rl.suggested).all()
    by = new.set_index('path')
    assert (by.loc[rl.path, 'status'] == 'flagged').all() and by.loc[rl.path, 'detail'].str.contains('given').all()
    assert (by.loc[seeds, 'reason'] == 'junk').all() and (by.loc[seeds, 'status'] == 'dropped').all()
    assert set(tab.reason) <= {'relabelled', 'label_issue', 'junk'}
    assert (by.loc[tab.path[tab.reason == 'label_issue'], 'status'] == 'dropped').all()   # drop_issues=True

def test_it_finds_wrong_labels_far_more_often_than_clean_ones(cleaned):
    out, man, truth, seeds, res = cleaned
    ev = pd.read_csv(out/'evaluation.csv', index_col='kind')
    assert ev.recall['wrong_label'] > 0.4 and ev.recall['wrong_label'] > 3 * ev.recall['clean'], ev
    assert ev.set_right['wrong_label'] > 0
    rec = json.loads((out/'run.json').read_text())
    assert rec['status'] == 'complete' and rec['metrics']['recall_wrong_label'] == pytest.approx(ev.recall['wrong_label'])
    assert 0 < rec['metrics']['precision_label'] <= 1

def test_the_examples_figure_takes_groups_smaller_than_a_row(tmp_path):
    "A defect kind with fewer flagged images than the figure's columns leaves blank cells (it failed on small data)."
    import pandas as pd
    from PIL import Image
    from fgia_nb.model_clean import _plot_examples
    Image.new('RGB', (32, 32), 'red').save(tmp_path/'a.png')
    tab = pd.DataFrame(dict(path=['a.png'], reason=['label_issue'], given=['0000'], suggested=['0001']))
    fig = _plot_examples(tab, tmp_path, n=4)
    assert len(fig.axes) == 4 and sum(ax.axison for ax in fig.axes) == 1
