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

def stage05_run(setup, outputs):
    "The setup's checkpoint as the only checkpoint of stage-04 run `r` of experiment `x` under `outputs`."
    t, mp, ck, man = setup
    (outputs/'x'/'04_finetune'/'r').mkdir(parents=True)
    (outputs/'x'/'04_finetune'/'r'/ck.name).write_bytes(ck.read_bytes())
    return mp

def test_another_datasets_split_is_not_scored(setup, tmp_path, monkeypatch):
    """The probe's case: a dataset of one's own, predicted while the default dataset's hidden answers exist, failed at
    the end with 'no file of its index.csv is in the answers' (they were the default dataset's, whatever the manifest)."""
    from fgia_nb.tta_predict import tta_predict
    monkeypatch.setenv('FGIA_OUTPUTS', str(tmp_path/'outputs'))
    monkeypatch.setenv('FGIA_DATA', str(tmp_path/'data'))   # where the default dataset and its answers live
    (tmp_path/'data'/'fmnist_web_answers').mkdir(parents=True)
    (tmp_path/'data'/'fmnist_web_answers'/'testa.csv').write_text('filename,label\nsomeone_else.jpg,0000\n')
    mp = stage05_run(setup, tmp_path/'outputs')
    res = tta_predict('x', train_run='r', split='testa', manifest=str(mp), plain=False)
    assert 'top1' not in res.columns
    assert len(open_logits(tmp_path/'outputs'/'x'/'05_tta_predict'/'r-testa')) == 7

@pytest.mark.parametrize('kw,msg', [(dict(scales='big,small'), "scales='big,small': expected positive zoom factors"),
                                    (dict(bs=0), 'bs=0: the batch size must be a positive integer'),
                                    (dict(split='testc'), "split ['testc']: "),
                                    (dict(flip='no'), "flip='no' (str) does not fit bool")])
def test_bad_settings_fail_before_any_work(setup, tmp_path, monkeypatch, kw, msg):
    """A misspelt scales ('could not convert string to float'), bs=0 (torch's batch_size message) or split ('no testc
    rows', after other splits' work) stopped without naming the setting, or late."""
    from fgia_nb.tta_predict import tta_predict
    monkeypatch.setenv('FGIA_OUTPUTS', str(tmp_path/'outputs'))
    mp = stage05_run(setup, tmp_path/'outputs')
    with pytest.raises((ValueError, TypeError), match=re.escape(msg)):
        tta_predict('x', train_run='r', **{'split': 'testa', 'manifest': str(mp), **kw})
    assert not (tmp_path/'outputs'/'x'/'05_tta_predict').exists()
