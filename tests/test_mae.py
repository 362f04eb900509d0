"End-to-end: MAE pretraining in two CPU processes (gloo) under `accelerate launch`."
import json
import numpy as np, timm, pytest
from pathlib import Path
from PIL import Image
from safetensors.torch import load_file
from fgia_nb.mae_pretrain import launch_pretrain

def test_two_process_mae(tmp_path):
    imgs = tmp_path/'imgs'
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(48): Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(imgs/f'{i}.jpg')
    out = tmp_path/'run'
    m = launch_pretrain(imgs, 'train', None, out, num_processes=2, arch='vit_demo', img_size=32, decoder_dim=32,
                        decoder_depth=1, decoder_heads=2, epochs=1, bs=8, valid_pct=0.25)
    assert m['world_size'] == 2 and m['method'] == 'MAE' and np.isfinite(m['train_loss'])
    assert m['steps'] == 2   # 36 training images split over 2 processes, batches of 8 (last partial one dropped)
    assert (out/'encoder.safetensors').exists() and (out/'reconstructions.png').exists()
    fresh = timm.create_model('vit_small_patch16_224', img_size=32, patch_size=4, embed_dim=128, depth=4, num_heads=4,
                              mlp_ratio=2, global_pool='avg', num_classes=0)
    res = fresh.load_state_dict(load_file(str(out/'encoder.safetensors')), strict=True)
    assert json.loads((out/'launch_args.json').read_text())['arch'] == 'vit_demo'

def test_bench_mae_script():
    "benchmarks/bench_mae.py runs and reports MAE's throughput as a ratio to the full-token pass."
    import subprocess, sys
    root = Path(__file__).parents[1]
    p = subprocess.run([sys.executable, str(root/'benchmarks'/'bench_mae.py'), '--steps', '1', '--warmup', '1',
                        '--rounds', '1', '--bs', '8'], capture_output=True, text=True, cwd=root)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads([l for l in p.stdout.splitlines() if l.startswith('RESULT ')][-1][7:])
    assert r['mae_img_s'] > 0 and abs(r['speedup'] - r['mae_img_s']/r['full_img_s']) < 0.02
