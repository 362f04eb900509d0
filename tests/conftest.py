"Shared test helpers."
import json
import pytest
from fgia_nb.testing import synthetic_manifest
from fgia_nb.data_clean import write_manifest

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
