"Stage 05 end to end: a checkpoint and a synthetic manifest -> logits folder, on one process and sharded over two."
import re
import numpy as np, torch, pytest
from pathlib import Path
from fgia_nb.testing import synthetic_manifest
from fgia_nb.data_clean import write_manifest
from fgia_nb.heads import create_model
from fgia_nb.finetune import save_checkpoint, model_config
from fgia_nb.tta_predict import predict_checkpoint, launch_predict
from fgia_nb.logits import open_logits, read_rows

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    t = tmp_path_factory.mktemp('pred')
    man = synthetic_manifest(t/'data', counts=(4, 4, 4), n_test=7, size=32)
    mp = write_manifest(man, t/'manifest.parquet', t/'data')
    torch.manual_seed(0)
    m = create_model('vit_demo', 3, head='linear', img_size=32)
    cfg = model_config(m, ['0000', '0001', '0002'], crop='center', counts=[8, 4, 1])
    ck = save_checkpoint(t/'epoch_000.safetensors', m, cfg)
    return t, mp, ck, man

def test_one_vs_two_processes(setup):
    t, mp, ck, man = setup
    one = open_logits(predict_checkpoint(ck, mp, 'testa', t/'one', progress=False, bs=3))
    two = open_logits(launch_predict(2, checkpoint=ck, manifest=mp, split='testa', out=t/'two', bs=3, progress=False))
    names = [Path(p).name for p in man[man.split == 'testa'].path]
    assert one.paths == names and two.paths == names and one.classes == ['0000', '0001', '0002']
    np.testing.assert_allclose(read_rows(one, 0, 7).astype(np.float32), read_rows(two, 0, 7).astype(np.float32),
                               atol=2e-2)
    assert not list((t/'two').glob('.shard-*'))

def test_adjust_needs_linear_prior(setup):
    t, mp, ck, man = setup
    a = open_logits(predict_checkpoint(ck, mp, 'testa', t/'adj', adjust=True, progress=False))
    p = open_logits(t/'one')
    d = read_rows(a, 0, 7).astype(np.float32) - read_rows(p, 0, 7).astype(np.float32)
    prior = np.log(np.array([8, 4, 1]) / 13)
    np.testing.assert_allclose(d, np.broadcast_to(-prior, d.shape), atol=3e-2)

@pytest.mark.parametrize('damage,why', [('truncated', 'it is shorter than its header says'),
                                        ('pickle', 'it is a torch/pickle file renamed .safetensors')])
def test_damaged_checkpoint_is_named(setup, tmp_path, damage, why):
    "Issue 12 item 10: a truncated checkpoint, or a pickle renamed .safetensors, failed without naming the file."
    t, mp, ck, man = setup
    bad = tmp_path/'epoch_001.safetensors'
    if damage == 'truncated': bad.write_bytes(ck.read_bytes()[:ck.stat().st_size // 2])
    else: torch.save({'w': torch.ones(2)}, bad)
    with pytest.raises(ValueError, match=f'{re.escape(str(bad))}: cannot read this checkpoint: {re.escape(why)}'):
        predict_checkpoint(bad, mp, 'testa', tmp_path/'out', progress=False)
    assert not (tmp_path/'out').exists()
