"""Stage 01's loader against the model it feeds: the loader must never be what a training step waits for.

On the default dataset at demo settings (32 px, batch 128, the full training augmentation plus mixup/cutmix), measures
the loader's images/s for each number of worker processes, and the training-step images/s of the demo ViT (the
`vit_demo` of `fgia_nb.backbones`: forward, cross-entropy, backward and an AdamW step on one batch), and prints their
ratio (target: at least 2). Each is measured alone (in a real run they share the cores); the model is timed before
and after each loader, `--repeats` times, and the median of each is reported, so that a change in the machine's load
between the two does not skew the ratio.

    .venv/bin/python benchmarks/bench_data.py            # or: make bench-data
    .venv/bin/python benchmarks/bench_data.py --num-workers 0 --n-batches 5 --repeats 1   # a quick check

`--split` measures instead what the demo's runs use (`crop='resize'`, no RandAugment, no erasing): whole epochs of the
loader with the whole transform per item (only the decoded image kept), with the transform split
(`fgia_nb.data.split_transform`: each image kept resized in memory) and its flips and normalisation run item by item,
and the same run on the whole batch at once (`ImageDataset.post_batch`, the default), after one epoch that fills the
caches, and the small CNN's training step beside them.

    .venv/bin/python benchmarks/bench_data.py --split
"""
import time, statistics
import torch, timm
from fastcore.script import call_parse
from fgia_nb.data import get_dls, data_config, default_manifest, SoftMixup


def vit_demo(num_classes:int):
    "The demo ViT (the `vit_demo` alias of `fgia_nb.backbones`)."
    return timm.create_model('vit_small_patch16_224', img_size=32, patch_size=4, embed_dim=128, depth=4, num_heads=4,
                             mlp_ratio=2, num_classes=num_classes, global_pool='avg')


def model_images_per_s(model, bs:int=128, size:int=32, steps:int=10, warmup:int=2)->float:
    "Training-step throughput of `model`: forward + cross-entropy + backward + AdamW step, images/s."
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    x, y = torch.randn(bs, 3, size, size), torch.randint(0, model.num_classes, (bs,))
    for i in range(warmup + steps):
        if i == warmup: t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return bs*steps/(time.perf_counter() - t0)


def loader_images_per_s(dl, n_batches:int=20, mix=None)->float:
    "Steady-state throughput of a loader (after its first batch, which pays for worker start-up), images/s."
    it = iter(dl)
    next(it)
    n, t0 = 0, time.perf_counter()
    for _, b in zip(range(n_batches), it):
        if mix is not None: mix(*b)
        n += len(b[0])
    return n/(time.perf_counter() - t0)


def data_bench(src, # A manifest or stage-00 run folder
               num_workers=(0, 1, 2), # Worker-process counts to measure
               bs:int=128, size:int=32, n_batches:int=30, repeats:int=3)->dict:
    "Loader images/s per worker count against the demo ViT's training-step images/s (medians), printed and returned."
    model = vit_demo(0)
    cfg = data_config(model)
    dls = get_dls(src, size=size, cfg=cfg, bs=bs)
    model.reset_classifier(dls.c)
    print(f'train items {dls.train.n}, {len(dls.train)} batches of {bs} at {size}px; torch threads {torch.get_num_threads()}')
    mix, res = SoftMixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=dls.c), {}
    m_before = model_images_per_s(model, bs, size)
    for nw in num_workers:   # model, loader, model, ...: each loader against the mean of the model runs around it
        lo, mo = [], []
        for _ in range(repeats):
            dl = get_dls(src, size=size, cfg=cfg, bs=bs, num_workers=nw).train
            lo.append(loader_images_per_s(dl, min(n_batches, len(dl)-1), mix))
            del dl
            m_after = model_images_per_s(model, bs, size)
            mo.append((m_before + m_after)/2)
            m_before = m_after
        ips, m = statistics.median(lo), statistics.median(mo)
        res.update({f'loader_w{nw}': ips, f'model_w{nw}': m, f'ratio_w{nw}': ips/m})
        print(f'loader num_workers={nw} (+mixup): {ips:8.1f} images/s | model vit_demo fwd+bwd+AdamW {m:6.1f} images/s '
              f'| loader/model {ips/m:5.2f}x (target >= 2)')
    return res


def cnn_demo(num_classes:int):
    "The demo's small CNN (`fgia_nb.backbones.cnn_demo`), channels_last as the demo trains it."
    import fgia_nb.backbones
    return timm.create_model('cnn_demo', num_classes=num_classes).to(memory_format=torch.channels_last)


def epoch_images_per_s(dl)->float:
    "Images/s of one whole epoch of `dl`."
    n, t0 = 0, time.perf_counter()
    for b in dl: n += len(b[0])
    return n/(time.perf_counter() - t0)


def split_bench(src, bs:int=128, size:int=32, repeats:int=3)->dict:
    "Epoch images/s of the demo's resize loader: whole transform, split per item, split per batch (medians); ratios; the small CNN's step."
    import fgia_nb.backbones   # registers cnn_demo with timm
    cfg = data_config('cnn_demo')
    dls = {}
    for name in ('whole', 'item', 'batch'):
        dl = get_dls(src, size=size, crop='resize', cfg=cfg, bs=bs, auto_augment=None, re_prob=0.).train
        if name == 'whole': dl.dataset.pre = dl.dataset.post = None   # the whole transform per item
        if name == 'item': dl.dataset.post_batch = lambda keys: None   # split, but `post` item by item
        epoch_images_per_s(dl)                                         # fills the cache
        dls[name] = dl
    got = {k: [] for k in dls}
    for _ in range(repeats):   # interleaved, so that a change in the machine's load hits all alike
        for k, dl in dls.items(): got[k].append(epoch_images_per_s(dl))
    res = {k: statistics.median(v) for k, v in got.items()}
    res['item/whole'], res['batch/item'] = res['item']/res['whole'], res['batch']/res['item']
    res['cnn_demo'] = model_images_per_s(cnn_demo(len(dls['batch'].vocab)), bs, size)
    print(f"{dls['batch'].n} train items, batch {bs}, {size}px resize, flip: loader whole transform {res['whole']:7.0f} "
          f"images/s | split, post per item {res['item']:7.0f} ({res['item/whole']:4.1f}x) | split, post per batch "
          f"{res['batch']:7.0f} ({res['batch/item']:4.1f}x of per item) | cnn_demo fwd+bwd+AdamW {res['cnn_demo']:6.0f} images/s")
    return res


@call_parse
def main(num_workers:str='0,1,2', # Worker-process counts to measure, comma-separated
         bs:int=128, # Batch size
         size:int=32, # Image side
         n_batches:int=30, # Batches timed per loader
         repeats:int=3, # Timings per worker count; the median is reported
         experiment:str='demo', # Experiment whose stage-00 manifest to read (built if missing)
         manifest:str=None, # A manifest instead of the default dataset's
         split:bool=False # Measure the split resize transform against the whole one instead
        ):
    "The loader's images/s against the demo ViT's training step, and their ratio."
    if split: return split_bench(manifest or default_manifest(experiment), bs, size, repeats)
    data_bench(manifest or default_manifest(experiment), [int(v) for v in str(num_workers).split(',')], bs, size,
               n_batches, repeats)
