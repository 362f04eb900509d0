"""The settings the GPU recipe uses, run on the CPU where the CPU can: bf16 autocast, channels_last and torch.compile
(inductor compiles for the CPU too), and the winners' architectures built at full size with their recipe's settings."""
import pytest, torch
from fgia_nb.finetune import finetune_config, fit_run, list_checkpoints, load_model, build_model, param_groups

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
