"""The settings the GPU recipe uses, run on the CPU where the CPU can: bf16 autocast, channels_last and torch.compile
(inductor compiles for the CPU too), gradient accumulation, and the winners' architectures built at full size with
their recipe's settings."""
import json, shutil
import pytest, torch
from safetensors.torch import load_file
from fgia_nb.finetune import (finetune_config, fit_run, list_checkpoints, load_model, build_model, param_groups,
                              read_checkpoint)

@pytest.fixture(scope='module')
def manifest(tmp_path_factory, make_manifest): return make_manifest(tmp_path_factory.mktemp('data'))

@pytest.mark.parametrize('arch,kw', [
    ('vit_demo', dict(precision='bf16')),
    ('cnn_demo', dict(precision='bf16', channels_last=True)),
    ('cnn_demo', dict(compile=True)),
])
def test_gpu_settings_train_on_cpu(manifest, tmp_path, arch, kw):
    cfg = finetune_config(arch, train_manifest=str(manifest), out_dir=str(tmp_path/'run'), epochs=1, bs=16,
                          valid_pct=0.2, seed=0, head='linear', loss='ce', **kw)
    out = fit_run(cfg, quiet=True)
    cks = list_checkpoints(out)
    assert cks
    m = load_model(cks[-1])                                 # no `_orig_mod.` prefixes from compile, fp32 weights
    assert all(p.dtype == torch.float32 for p in m.parameters())
    x = torch.rand(2, 3, cfg['img_size'], cfg['img_size'])
    with torch.no_grad(): y = m.eval()(x)
    assert y.shape == (2, 4) and torch.isfinite(y).all()

@pytest.mark.parametrize('arch,size,scales', [('vit_l', 448, 26), ('swinv2_l', 384, 1)])
def test_the_winners_architectures_build_at_full_size(arch, size, scales):
    "ViT-L at 448 px and Swin-V2-L at 384 px with random weights, their recipe's drop path and layer decay groups."
    cfg = finetune_config(arch, pretrained=False, train_manifest='unused', out_dir='unused')
    assert cfg['img_size'] == size
    m = build_model(cfg, 5000)
    n = sum(p.numel() for p in m.parameters())
    assert n > 190e6, n                                        # a large model, not a tiny stand-in
    lrs = sorted(set(param_groups(cfg, m).lr_scales))        # ViT-L: a layer-decayed lr per block, embeddings and head
    assert len(lrs) == scales and lrs[0] == pytest.approx(cfg['layer_decay'] ** (scales - 1))
    dp = [mod.drop_prob for mod in m.modules() if type(mod).__name__ == 'DropPath']
    assert dp and max(dp) == pytest.approx(cfg['drop_path'])
    with torch.no_grad(): y = m.eval()(torch.rand(1, 3, size, size))
    assert y.shape == (1, 5000)

# Gradient accumulation (`accum`): the batches of a group step once, on their mean gradient, at the group's first lr.
# A ViT has layer norm only, so its batches are independent of each other; the augmentation is seeded per item.
STEP = dict(epochs=1, max_items=16, valid_pct=0., head='linear', loss='ce', drop_path=0., warmup=0., seed=0)

def _one_step(manifest, out, **kw):
    "The weights of vit_demo after one epoch on 16 training images."
    cfg = finetune_config('vit_demo', train_manifest=str(manifest), out_dir=str(out), **STEP, **kw)
    return read_checkpoint(list_checkpoints(fit_run(cfg, quiet=True))[-1])

def test_accumulated_batches_step_as_one_big_batch(manifest, tmp_path):
    "bs 8 x accum 2 takes the one step bs 16 takes (same seed, data order and augmentation; no dropout or drop path)."
    big, acc = _one_step(manifest, tmp_path/'big', bs=16), _one_step(manifest, tmp_path/'acc', bs=8, accum=2)
    two = _one_step(manifest, tmp_path/'two', bs=8)             # two steps of 8: what accumulation must not do
    diff = lambda a, b: max((a.model[k] - b.model[k]).abs().max().item() for k in a.model)
    assert diff(acc, big) < 1e-5                                 # float sums in another order: about 1e-6
    assert diff(two, big) > 1e-4
    for ck in (big, acc): assert ck.states['opt']['state'][0]['step'] == 1
    assert acc.config['train']['accum'] == 2
    rec = json.loads((tmp_path/'acc'/'run.json').read_text())
    assert rec['params']['accum'] == 2 and rec['metrics']['effective_bs'] == 16

def test_accumulation_resumes_exactly(manifest, tmp_path):
    "Two epochs of 6 batches with accum 4 (groups of 4 and 2), stopped after the first epoch's checkpoint and resumed,"
    "end on the uninterrupted run's weights and optimiser state, bit for bit."
    cfg = finetune_config('vit_demo', train_manifest=str(manifest), out_dir=str(tmp_path/'a'), epochs=2, bs=16, accum=4,
                          valid_pct=0., seed=0, head='linear')
    a = fit_run(cfg, quiet=True)
    shutil.copytree(a, tmp_path/'b')
    (tmp_path/'b'/'epoch_001.safetensors').unlink()           # as if killed before the second epoch's checkpoint
    b = fit_run({**cfg, 'out_dir': str(tmp_path/'b')}, quiet=True)
    assert json.loads((b/'run.json').read_text())['metrics']['start_epoch'] == 1
    ka, kb = (load_file(str(r/'epoch_001.safetensors')) for r in (a, b))
    assert ka.keys() == kb.keys()
    for k in ka: assert torch.equal(ka[k], kb[k]), k
    assert read_checkpoint(b/'epoch_001.safetensors').states['opt']['state'][0]['step'] == 4   # two steps an epoch
