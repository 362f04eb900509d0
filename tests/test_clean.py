"End-to-end: build a small default dataset, run stage 00 on it (`data_clean`), measure the cleaning against the truth."
import json
import pandas as pd
import pytest
from fgia_nb.sources import make_default_dataset, answers_dir
from fgia_nb.data_clean import data_clean, evaluate_cleaning, read_manifest, manifest_items
from fgia_nb.core import read_run

REQUIRED = ['zero_byte', 'truncated', 'not_image', 'tiny', 'ambiguous']

@pytest.fixture(scope='module')
def cleaned(tmp_path_factory):
    t = tmp_path_factory.mktemp('clean')
    root = make_default_dataset(t/'data', n_max=1000, n_testa=40, n_testb=60, seed=3,
                                noise=dict(zero_byte=0.01, truncated=0.01, not_image=0.01, tiny=0.01, ambiguous=0.01))
    out = t/'out'
    df = data_clean(str(root), str(out), n_workers=2)
    return root, out, df

def test_every_file_is_in_the_manifest(cleaned):
    root, out, df = cleaned
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob('*.jpg')}
    assert set(df.path) == on_disk
    assert (df.status.isin(['ok', 'flagged', 'dropped'])).all()
    assert (df.reason[df.status != 'ok'] != '').all()
    assert not df.reason.isin(['label_conflict', 'label_mismatch']).any()   # train.txt agrees with the class folders
    m = read_manifest(out)
    assert len(m) == len(df) and all(p.exists() for p in manifest_items(m)[:20])

def test_recall_and_precision(cleaned):
    root, out, df = cleaned
    ev = evaluate_cleaning(df, answers_dir(root)/'truth.csv')
    assert (ev.loc[REQUIRED, 'n'] > 0).all()
    assert ev.loc[REQUIRED, 'recall'].min() == 1.0, ev
    assert ev.loc['duplicate', 'recall'] == 1.0, ev
    assert ev.attrs['precision'] >= 0.99, ev.attrs['false_positives']

def test_outputs_and_run_record(cleaned):
    root, out, df = cleaned
    r = read_run(out)
    assert r['status'] == 'complete' and r['params']['min_side'] == 32
    assert json.loads((out/'classes.json').read_text()) == [f'{i:04d}' for i in range(10)]
    lines = (out/'train_clean.txt').read_text().splitlines()
    assert len(lines) == ((df.split == 'train') & (df.status != 'dropped')).sum()
    assert (out/'thumbs.npy').exists()
    assert {'report.md', 'class_distribution.png', 'rejects.png'} <= {p.name for p in out.iterdir()}
    assert f'{len(df)} files' in (out/'report.md').read_text()
