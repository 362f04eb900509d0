"""fgia_nb.data under a real 2-process CPU (gloo) group: every rank gets a disjoint, equal shard of each epoch."""
import json, os, subprocess, sys, textwrap

from fgia_nb.testing import synthetic_manifest
from fgia_nb.data_clean import write_manifest

RANK_SCRIPT = textwrap.dedent('''
    import json, os, sys, torch, torch.distributed as dist
    from fgia_nb.data import get_dls
    dist.init_process_group('gloo')
    rank, out = dist.get_rank(), sys.argv[1]
    dls = get_dls(sys.argv[2], size=16, bs=4, seed=7, num_workers=1, drop_last=False)  # rank/world from the group
    res = {}
    for epoch in (0, 1):
        dls.train.set_epoch(epoch)
        idx = [i for b in dls.train.batch_sampler for i, _ in b]
        n = 0
        for x, y in dls.train: n += len(x)
        t = torch.tensor([len(dls.train)]); dist.all_reduce(t, op=dist.ReduceOp.MAX)
        res[epoch] = dict(idx=idx, n_images=n, n_batches=len(dls.train), max_batches=int(t))
    json.dump(res, open(f'{out}/rank{rank}.json', 'w'))
    dist.destroy_process_group()
''')

def test_two_gloo_ranks_get_disjoint_halves(tmp_path):
    man = synthetic_manifest(tmp_path/'data', counts=(20, 12, 8), size=24)   # 40 train images
    write_manifest(man, tmp_path/'m'/'manifest.parquet', man.attrs['data_root'])
    (tmp_path/'rank.py').write_text(RANK_SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(tmp_path/'rank.py'), str(tmp_path), str(tmp_path/'m')],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = [json.loads((tmp_path/f'rank{k}.json').read_text()) for k in range(2)]
    epochs = []
    for e in ('0', '1'):
        a, b = res[0][e]['idx'], res[1][e]['idx']
        assert len(a) == len(b) == 20 and res[0][e]['n_images'] == 20       # equal halves, all batches delivered
        assert res[0][e]['n_batches'] == res[0][e]['max_batches']           # no rank waits for another's extra batch
        assert not set(a) & set(b) and sorted(a + b) == list(range(40))     # disjoint, covering the epoch
        epochs.append(a + b)
    assert epochs[0] != epochs[1]                                           # a new order each epoch

def test_transparent_palette_png_loads_on_white_without_warning(tmp_path):
    "A palette PNG whose transparency is given as bytes (Pillow warns on a plain RGB convert) reads as RGB on white, silently."
    import warnings, numpy as np
    from PIL import Image
    from fgia_nb.data import ImageDataset, eval_transform
    pal = Image.new('P', (8, 8)); pal.putpalette([255, 0, 0, 0, 0, 255]); pal.paste(1, (0, 0, 4, 8))
    pal.save(tmp_path/'p.png', transparency=bytes([0, 255]))   # index 0 (red, the right half) transparent
    ds = ImageDataset([tmp_path/'p.png'], tfm=eval_transform(8, crop='resize'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        im = np.asarray(ds.load_image(0))
        x, = ds[0]
    assert im[0, 0].tolist() == [0, 0, 255] and im[0, 7].tolist() == [255, 255, 255]
    assert x.shape == (3, 8, 8)
