"Shared test helpers."
import json
import pytest
from fgia_nb.testing import synthetic_manifest
from fgia_nb.data_clean import write_manifest, data_clean
from fgia_nb.sources import make_default_dataset

def _make_manifest(root, counts=(40, 30, 20, 14)):
    "A small labelled manifest of coloured images (stage 01's synthetic data), written like stage 00's."
    df = synthetic_manifest(root/'data', counts=counts, size=32)
    write_manifest(df, root/'s00'/'manifest.parquet', root/'data')
    (root/'s00'/'classes.json').write_text(json.dumps(sorted(df.label.dropna().unique())))
    return root/'s00'/'manifest.parquet'

@pytest.fixture(scope='session')
def make_manifest():
    "Factory: `make_manifest(root, counts)` writes a synthetic stage-00 manifest under `root`."
    return _make_manifest

def _default_experiment(t, exp='x', **kw):
    "A small default dataset (`make_default_dataset(t/'data', **kw)`) cleaned by stage 00 into `t/outputs/<exp>`."
    root = make_default_dataset(t/'data', **kw)
    data_clean(str(root), str(t/'outputs'/exp/'00_data_clean'/'default'), n_workers=2)
    return root, t/'outputs'

@pytest.fixture(scope='session')
def default_experiment():
    "Factory: `default_experiment(tmp, n_max=..., seed=...)` -> (data root, outputs root) with stage 00 done."
    return _default_experiment
