"""Stages 05, 07 and 08 on 2 CPU (gloo) processes through `accelerate launch`: the outputs of one process, written once.

Stage 05 shards the test images over the ranks: each writes its shard, rank 0 joins them into the logits folder.
Stages 07 (soup) and 08 (ensemble) are one process's work, which a user may still launch on several (`python -m
fgia_nb.model_soup` under `accelerate launch`, as every stage): rank 0 does it, the other ranks write nothing.
`tests/audit/sitecustomize.py` records each rank's file writes."""
import io, json, os, contextlib
from pathlib import Path
import numpy as np, pytest
from fgia_nb.testing import synthetic_manifest
from fgia_nb.data_clean import write_manifest
from fgia_nb.finetune import finetune
from fgia_nb.tta_predict import tta_predict, shard_bounds
from fgia_nb.model_soup import soup_cli
from fgia_nb.ensemble import ensemble_cli
from fgia_nb.distributed import launch_module
from fgia_nb.logits import open_logits, read_rows

AUDIT = Path(__file__).parent/'audit'
N_TEST = 37   # test-A images: shards of 19 and 18 rows

@contextlib.contextmanager
def outputs(root:Path):
    "Within: FGIA_OUTPUTS set to the experiment's outputs root (for stages run in this process)."
    with pytest.MonkeyPatch.context() as m:
        m.setenv('FGIA_OUTPUTS', str(root/'outputs'))
        yield

@pytest.fixture(scope='module')
def exp(tmp_path_factory):
    "Experiment `x` in its own outputs root: a synthetic manifest and vit_demo fine-tuned for two epochs (two checkpoints)."
    root = tmp_path_factory.mktemp('post')
    man = synthetic_manifest(root/'data', counts=(12, 10, 8), n_test=N_TEST, size=32)
    mp = write_manifest(man, root/'s00'/'manifest.parquet', root/'data')
    (root/'s00'/'classes.json').write_text(json.dumps(sorted(man.label.dropna().unique())))
    with outputs(root):
        finetune('vit_demo', epochs=2, bs=8, valid_pct=0., experiment='x', run='vit', train_manifest=str(mp), quiet=True)
    return root, mp

@contextlib.contextmanager
def audited(root:Path, name:str):
    "Within: FGIA_OUTPUTS set, and the processes launched record their writes under it; yields `writes() -> {rank: [...]}`."
    log = root/'audit'/name
    log.mkdir(parents=True)
    env = dict(FGIA_OUTPUTS=str(root/'outputs'), FGIA_AUDIT_DIR=str(root/'outputs'), FGIA_AUDIT_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(AUDIT), os.environ.get('PYTHONPATH', '')]))
    with pytest.MonkeyPatch.context() as m:
        for k, v in env.items(): m.setenv(k, v)
        yield lambda: {int(p.stem.removeprefix('writes-rank')): json.loads(p.read_text()) for p in log.glob('writes-rank*.json')}

def renames(writes:list)->list:
    "The destinations of the renames among `writes`."
    return [x.split(' -> ')[1].split(' (')[0] for x in writes if x.startswith('os.rename')]

def written(writes:list, name:str)->int:
    "How many files named `name` the process wrote among `writes` (opened for writing, or renamed to that name)."
    return sum(x.endswith(f'/{name}') for x in writes if x.startswith('open ')) + sum(
        d.endswith(f'/{name}') for d in renames(writes))

def npy_bytes(rows:int, cols:int)->int:
    "The size of a float16 (rows, cols) `.npy` file."
    b = io.BytesIO()
    np.save(b, np.zeros((rows, cols), np.float16))
    return len(b.getvalue())

@pytest.fixture(scope='module')
def tta(exp):
    "Stage 05 of the last checkpoint on one process (`vit.one-testa`) and on two (`vit.two-testa`), the second audited."
    root, mp = exp
    with outputs(root):
        tta_predict('x', train_run='vit', split='testa', manifest=str(mp), tag='one', bs=8)
    with audited(root, 'tta') as writes:
        tta_predict('x', train_run='vit', split='testa', manifest=str(mp), tag='two', bs=8, num_processes=2)
    return root/'outputs'/'x'/'05_tta_predict', writes()

def test_tta_on_two_processes_predicts_what_one_does(tta):
    out, _ = tta
    one, two = open_logits(out/'vit.one-testa'), open_logits(out/'vit.two-testa')
    assert one.paths == two.paths and one.classes == two.classes and len(one) == N_TEST
    a, b = read_rows(one, 0, N_TEST).astype(np.float32), read_rows(two, 0, N_TEST).astype(np.float32)
    np.testing.assert_allclose(a, b, atol=1e-2)   # float16 logits of batches cut elsewhere
    assert (a.argmax(1) == b.argmax(1)).all()
    assert json.loads((out/'vit.two-testa'/'run.json').read_text())['status'] == 'complete'

def test_tta_ranks_write_their_shard_and_rank_0_the_folder(tta):
    out, w = tta
    assert sorted(w) == [0, 1]
    shard = lambda r: f'x/05_tta_predict/vit.two-testa/.shard-00{r}-of-002.npy'
    for r in (0, 1):   # each rank wrote its own contiguous half, and only rank 0 anything else
        s, e = shard_bounds(N_TEST, r, 2)
        assert f'-> {shard(r)} ({npy_bytes(e - s, 3)} bytes)' in ' '.join(w[r])
    assert [x for x in w[1] if '.shard-001-of-002' not in x] == []
    for name in ('logits.npy', 'index.csv', 'classes.json'):   # written once, in the folder that replaces the old one
        assert written(w[0], name) == 1 and written(w[1], name) == 0, name
    assert renames(w[0])[-1] == 'x/05_tta_predict/vit.two-testa'
    assert [x for x in w[0] if x.startswith('os.remove')] == [f'os.remove {shard(0)}', f'os.remove {shard(1)}']
    assert not [p for p in out.rglob('.*') if p.name.startswith('.shard-') or '.tmp' in p.name or p.name.endswith('.old')]

def test_soup_on_two_processes_is_the_soup_of_one_written_once(exp):
    root, _ = exp
    soup = root/'outputs'/'x'/'07_model_soup'/'vit'/'soup.safetensors'
    args = ['--experiment', 'x', '--train-run', 'vit', '--k', '2']
    with outputs(root): soup_cli(args)
    one = soup.read_bytes()
    with audited(root, 'soup') as writes: launch_module('fgia_nb.model_soup', args, 2, echo=False)
    w = writes()
    assert soup.read_bytes() == one   # the same folder both times: the second soup replaced the first, byte for byte
    assert sorted(w) == [0, 1] and w[1] == []
    assert renames(w[0]) == ['x/07_model_soup/vit/run.json', 'x/07_model_soup/vit/soup.safetensors',
                             'x/07_model_soup/vit/run.json']   # running, the soup, complete
    rec = json.loads((soup.parent/'run.json').read_text())
    assert rec['status'] == 'complete' and rec['metrics']['ingredients'] == ['epoch_000.safetensors', 'epoch_001.safetensors']

def test_ensemble_on_two_processes_is_the_ensemble_of_one_written_once(exp, tta):
    root, _ = exp
    out, _ = tta
    args = ['--experiment', 'x', '--split', 'testa', '--weighting', 'equal',
            '--models', f"{out/'vit.one-testa'},{out/'vit.two-testa'}"]
    with outputs(root): ensemble_cli([*args, '--run', 'one'])
    with audited(root, 'ensemble') as writes: launch_module('fgia_nb.ensemble', [*args, '--run', 'two'], 2, echo=False)
    w = writes()
    ens = root/'outputs'/'x'/'08_ensemble'
    for f in ('scores.npy', 'index.csv', 'classes.json'): assert (ens/'one'/f).read_bytes() == (ens/'two'/f).read_bytes(), f
    assert sorted(w) == [0, 1] and w[1] == []
    for name in ('scores.npy', 'index.csv', 'classes.json'): assert written(w[0], name) == 1, name
    assert json.loads((ens/'two'/'run.json').read_text())['status'] == 'complete'
