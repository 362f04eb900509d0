"Fine-tuning on CPU: determinism, exact resume after a kill, and bad input failing before training."
import json, os, shutil, stat, subprocess, sys, time
import pandas as pd, pytest, torch
from safetensors.torch import load_file, save_file
from fgia_nb.finetune import finetune_config, fit_run, list_checkpoints, load_model, read_checkpoint
from fgia_nb.distributed import cli_args

@pytest.fixture(scope='module')
def manifest(tmp_path_factory, make_manifest): return make_manifest(tmp_path_factory.mktemp('data'))

def cfg_for(manifest, out, **kw):
    kw = dict(dict(epochs=3, bs=16, head='arcface', loss='eql', mixup=0.8, cutmix=1.0, label_smoothing=0.1,
                   valid_pct=0.2, seed=7), **kw)
    return finetune_config('vit_demo', train_manifest=str(manifest), out_dir=str(out), **kw)

def final_state(out):
    return load_file(str(list_checkpoints(out)[-1]))

@pytest.fixture(scope='module')
def uninterrupted(manifest, tmp_path_factory):
    return fit_run(cfg_for(manifest, tmp_path_factory.mktemp('a')/'run'), quiet=True)

def test_same_seed_same_weights(manifest, uninterrupted, tmp_path):
    b = fit_run(cfg_for(manifest, tmp_path/'b'), quiet=True)
    sa, sb = final_state(uninterrupted), final_state(b)
    assert sa.keys() == sb.keys() and any(k.startswith('eql.') for k in sa)
    for k in sa: assert torch.equal(sa[k], sb[k]), k
    for pa, pb in zip(list_checkpoints(uninterrupted), list_checkpoints(b), strict=True):   # issue 12 item 11
        assert pa.read_bytes() == pb.read_bytes(), pa.name   # the safetensors metadata came in hash order
    c = fit_run(cfg_for(manifest, tmp_path/'c', seed=8), quiet=True)
    assert not torch.equal(final_state(c)['model.head.weight'], sa['model.head.weight'])

def test_resume_after_kill_matches_uninterrupted(manifest, uninterrupted, tmp_path):
    cfg = cfg_for(manifest, tmp_path/'k')
    env = {**os.environ, 'OMP_NUM_THREADS': str(torch.get_num_threads())}
    p = subprocess.Popen([sys.executable, '-m', 'fgia_nb.finetune', *cli_args(cfg), '--quiet', 'True'], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (tmp_path/'k'/'epoch_000.safetensors').exists():
        assert p.poll() is None and time.time() - t0 < 300, 'training subprocess ended before its first checkpoint'
        time.sleep(0.05)
    p.kill() # SIGKILL, mid-way through epoch 1
    p.wait()
    assert [q.name for q in list_checkpoints(tmp_path/'k')] == ['epoch_000.safetensors']
    # issue 12 item 3's check compares a run folder holding checkpoints with its run.json: the killed run's record
    # (written by the command line, still 'running') must accept a resume with the same settings
    assert json.loads((tmp_path/'k'/'run.json').read_text())['status'] == 'running'
    fit_run(cfg, quiet=True)
    sa, sk = final_state(uninterrupted), final_state(tmp_path/'k')
    for k in sa:
        if not k.startswith('rng.'): assert torch.equal(sa[k], sk[k]), k
    assert json.loads((tmp_path/'k'/'run.json').read_text())['metrics']['start_epoch'] == 1
    # issue 12 item 11: the resumed epoch reports what the uninterrupted one did (the smoothed loss restarted)
    for f in ('metrics.csv', 'batches.csv'):
        a, k = pd.read_csv(uninterrupted/f), pd.read_csv(tmp_path/'k'/f)
        pd.testing.assert_frame_equal(k.drop(columns='time', errors='ignore'), a.drop(columns='time', errors='ignore'),
                                      check_exact=True)

def test_checkpoint_mode_is_a_normal_files(uninterrupted):
    "Issue 12 item 11: safetensors wrote checkpoints 0600, every other output 0644 (the umask's)."
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    assert {mode(p) for p in list_checkpoints(uninterrupted)} == {mode(uninterrupted/'run.json')}

def test_rerun_with_other_settings_fails(manifest, uninterrupted, tmp_path):
    "Issue 12 item 3: a finished run re-run with other settings reported complete, its record stating the new ones."
    run = tmp_path/'run'
    shutil.copytree(uninterrupted, run)
    before = {p.name: p.read_bytes() for p in sorted(run.iterdir())}
    with pytest.raises(ValueError, match=r'holds a run with other settings \(lr: 0\.002 -> 0\.5; seed: 7 -> 8\).*'
                                         r'Use another run/out_dir, or delete the folder'):
        fit_run(cfg_for(manifest, run, lr=0.5, seed=8), quiet=True)
    assert {p.name: p.read_bytes() for p in sorted(run.iterdir())} == before
    fit_run(cfg_for(manifest, run, num_workers=1), quiet=True)   # a setting that cannot change the weights
    assert all(p.read_bytes() == before[p.name] for p in list_checkpoints(run))
    assert json.loads((run/'run.json').read_text())['status'] == 'complete'

def test_keep_last_and_load_model(manifest, uninterrupted):
    assert [p.name for p in list_checkpoints(uninterrupted)] == [f'epoch_{i:03d}.safetensors' for i in range(3)]
    ck = read_checkpoint(list_checkpoints(uninterrupted)[-1])
    assert ck.epoch == 2 and ck.config['head'] == 'arcface' and len(ck.config['classes']) == 4
    m = load_model(list_checkpoints(uninterrupted)[-1])
    assert torch.equal(m.state_dict()['head.weight'], ck.model['head.weight'])
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 4)

@pytest.mark.parametrize('kw,msg', [
    (dict(arch='vit_tiny_demo'), 'Unknown arch'),
    (dict(img_size=30), 'img_size 30 does not suit vit_demo: it needs a multiple of 4'),
    (dict(head='cosine'), "head must be 'linear' or 'arcface'"),
    (dict(loss='focal'), "loss must be 'ce', 'eql' or 'logit_adjusted'"),
])
def test_bad_config_fails_before_training(manifest, tmp_path, kw, msg):
    arch = kw.pop('arch', 'vit_demo')
    cfg = finetune_config(arch, train_manifest=str(manifest), out_dir=str(tmp_path/'x'), **kw)
    with pytest.raises(ValueError, match=msg.replace('(', r'\(')): fit_run(cfg, quiet=True)
    assert not (tmp_path/'x').exists()

def test_manifest_with_missing_files_fails(tmp_path, make_manifest):
    m = make_manifest(tmp_path)
    victim = next((tmp_path/'data'/'train').rglob('*.jpg'))
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=f'names 1 missing file.*{victim.name}'):
        fit_run(finetune_config('vit_demo', train_manifest=str(m), out_dir=str(tmp_path/'x')), quiet=True)

def test_weights_of_another_model_fail(manifest, tmp_path):
    import timm
    save_file(timm.create_model('resnet18', num_classes=0).state_dict(), str(tmp_path/'r18.safetensors'))
    cfg = finetune_config('vit_demo', train_manifest=str(manifest), out_dir=str(tmp_path/'x'),
                          weights=str(tmp_path/'r18.safetensors'))
    with pytest.raises(ValueError, match=r'r18\.safetensors does not hold weights for this VisionTransformer'):
        fit_run(cfg, quiet=True)
    assert list_checkpoints(tmp_path/'x') == [] and not (tmp_path/'x'/'run.json').exists()
