"2-process CPU (gloo) fine-tuning through `accelerate launch`: sharding, identical weights, all-reduced EQL statistics, rank-0-only writes."
import json, os
from pathlib import Path
import numpy as np, pytest
from safetensors.torch import load_file
from fgia_nb.finetune import finetune, list_checkpoints

AUDIT = Path(__file__).parent/'audit'   # its sitecustomize.py records each rank's file writes

@pytest.fixture(scope='module')
def ddp_run(tmp_path_factory, make_manifest):
    root = tmp_path_factory.mktemp('ddp')
    (root/'audit').mkdir()
    env = dict(PYTHONPATH=os.pathsep.join([str(AUDIT), os.environ.get('PYTHONPATH', '')]),
               FGIA_AUDIT_DIR=str(root/'run'), FGIA_AUDIT_LOG=str(root/'audit'))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items(): mp.setenv(k, v)
        out = finetune('vit_demo', epochs=2, bs=16, train_manifest=str(make_manifest(root)), out_dir=str(root/'run'),
                       head='arcface', loss='eql', valid_pct=0., num_processes=2, ddp_check=True, seed=3)
    r = json.loads((out/'ddp_check.json').read_text())
    for x in r: x['writes'] = json.loads((root/'audit'/f"writes-rank{x['rank']}.json").read_text())
    return out, r

def test_each_rank_sees_a_disjoint_half(ddp_run):
    _, r = ddp_run
    assert [x['rank'] for x in r] == [0, 1] and r[0]['world'] == 2
    n = 104 # training items
    for e in range(2):
        a, b = r[0]['seen'][e], r[1]['seen'][e]
        assert len(a) == len(b) == n // 2
        assert set(a).isdisjoint(b) and set(a) | set(b) == set(range(n))
    assert r[0]['seen'][0] != r[0]['seen'][1] # reshuffled each epoch

def test_weights_and_eql_statistics_identical_on_both_ranks(ddp_run):
    _, r = ddp_run
    assert r[0]['weights_sha1'] == r[1]['weights_sha1']
    s0, s1 = r[0]['loss_state'], r[1]['loss_state']
    assert set(s0) >= {'pos_grad', 'neg_grad'}
    assert np.sum(s0['pos_grad']) > 0 # statistics were collected
    for k in ('pos_grad', 'neg_grad'): np.testing.assert_array_equal(s0[k], s1[k])

def test_eql_statistics_are_all_reduced_and_checkpointed(ddp_run):
    out, r = ddp_run
    ck = load_file(str(list_checkpoints(out)[-1]))
    np.testing.assert_allclose(ck['eql.pos_grad'].numpy(), r[0]['loss_state']['pos_grad'])
    # all-reduced: the statistics hold gradients of every item of the global batch, not only this rank's half
    pos = np.array(r[0]['loss_state']['pos_grad'])
    assert (pos > 0).all()

def test_only_rank_0_writes(ddp_run):
    out, r = ddp_run
    assert r[1]['writes'] == []
    w0 = ' '.join(r[0]['writes'])
    for name in ('epoch_000.safetensors', 'epoch_001.safetensors', 'metrics.csv', 'batches.csv', 'run.json'):
        assert f'-> {name}' in w0
    assert json.loads((out/'run.json').read_text())['status'] == 'complete'
    assert sorted(p.name for p in out.iterdir()) == ['batches.csv', 'ddp_check.json', 'epoch_000.safetensors', 'epoch_001.safetensors', 'metrics.csv', 'run.json']

def test_accumulation_under_ddp_steps_as_one_process(tmp_path, make_manifest):
    "2 processes x bs 4 x accum 2 (each pair's first batch in `no_sync`) take the step 1 process x bs 16 takes."
    kw = dict(train_manifest=str(make_manifest(tmp_path)), epochs=1, max_items=16, valid_pct=0., head='linear',
              loss='ce', drop_path=0., warmup=0., seed=0, quiet=True)
    one = finetune('vit_demo', bs=16, out_dir=str(tmp_path/'one'), **kw)
    two = finetune('vit_demo', bs=4, accum=2, num_processes=2, ddp_check=True, out_dir=str(tmp_path/'two'), **kw)
    r = json.loads((two/'ddp_check.json').read_text())
    assert r[0]['weights_sha1'] == r[1]['weights_sha1']          # the step's all-reduce ran: the ranks agree
    assert sorted(r[0]['seen'][0] + r[1]['seen'][0]) == list(range(16))
    a, b = (load_file(str(list_checkpoints(o)[-1])) for o in (one, two))
    # the step moves each weight by about lr (2e-3); sums in another order move a few by up to 1e-5
    for k in a:
        if k.startswith('model.'): np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-4, err_msg=k)
    assert json.loads((two/'run.json').read_text())['metrics']['effective_bs'] == 16
