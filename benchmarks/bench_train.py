"""fastai's training step against a hand-written PyTorch loop: what `Learner.fit`'s callbacks cost.

The demo model, the same in-memory batches (taken once from the default dataset's augmented loader), the same AdamW
with the same parameter groups and the same loss, trained by `Learner.fit` with the run's scheduler, and by a plain
PyTorch loop. Rounds alternate between the two so that machine load hits both alike; the median round of each is
compared (target ratio fastai / hand >= 0.95). It also prints stage 01's loader figure (`bench_data.py`).

    .venv/bin/python benchmarks/bench_train.py           # or: make bench-train
    .venv/bin/python benchmarks/bench_train.py --n-batches 3 --rounds 1 --loader False   # a quick check
"""
import sys, time, statistics
from pathlib import Path
from functools import partial
import torch
from fastcore.script import call_parse, bool_arg
from fastai.learner import Learner
from fastai.data.core import DataLoaders
from fastai.callback.schedule import ParamScheduler
from fastai.torch_core import set_seed
from fgia_nb.finetune import finetune_config, make_dls, build_model, param_groups, build_loss, adamw, warmup_cosine, group_lrs


class TensorDL(torch.utils.data.DataLoader):
    "In-memory batches as a torch loader fastai can use (it needs `.to`/`.device`)."
    def __init__(self, x, y, bs):
        super().__init__(torch.utils.data.TensorDataset(x, y), batch_size=bs)
        self.device = None
    def to(self, device):
        self.device = device
        return self


def hand_loop(model, opt, loss_func, dl, epochs:int)->float:
    "Plain PyTorch training: returns seconds."
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for x, y in dl:
            loss = loss_func(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
    return time.perf_counter() - t0


def train_step_bench(arch:str='vit_demo', bs:int=64, n_batches:int=12, rounds:int=5, epochs:int=1, seed:int=0)->dict:
    "Median images/s of `Learner.fit` and of a hand-written loop over the same model, batches, optimiser and loss."
    cfg = finetune_config(arch, bs=bs, seed=seed, valid_pct=0., mixup=0., cutmix=0.)
    set_seed(seed)
    dls = make_dls({**cfg, 'max_items': bs * n_batches})
    xs, ys = map(torch.cat, zip(*[(x, y) for x, y in dls.train]))
    tdl, vdl = TensorDL(xs, ys, bs), TensorDL(xs[:0], ys[:0], bs)
    model = build_model(cfg, dls.c)
    pg = param_groups(cfg, model)
    learn = Learner(DataLoaders(tdl, vdl), model, loss_func=build_loss(cfg, model, dls.counts),
                    opt_func=partial(adamw, wd=pg.wds), splitter=pg.splitter)
    learn.create_opt()
    def sched(): return ParamScheduler({'lr': warmup_cosine(group_lrs(learn, cfg['lr'], pg.lr_scales), 0.1, cfg['min_lr'])})
    n, fa, hand = len(xs) * epochs, [], []
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, cbs=sched())   # warm up both
        hand_loop(model, learn.opt.opt, learn.loss_func, tdl, 1)
        for _ in range(rounds):
            t0 = time.perf_counter()
            learn.fit(epochs, cbs=sched())
            fa.append(n / (time.perf_counter() - t0))
            hand.append(n / hand_loop(model, learn.opt.opt, learn.loss_func, tdl, epochs))
    f, h = statistics.median(fa), statistics.median(hand)
    return dict(fastai=f, hand=h, ratio=f / h, images=n, threads=torch.get_num_threads())


@call_parse
def main(arch:str='vit_demo', # Model to time (the demo ViT by default)
         bs:int=64, # Batch size
         n_batches:int=12, # Batches per epoch (in memory)
         rounds:int=5, # Alternating rounds; the median of each side is reported
         loader:bool_arg=True, # Also print stage 01's loader-vs-model figure
         num_workers:str='0' # Loader worker counts for that figure
        ):
    "fastai training-step images/s against a hand-written loop (target ratio >= 0.95), and the loader's figure."
    r = train_step_bench(arch, bs, n_batches, rounds)
    print(f"{arch}, batch {bs}, {r['images']} images per round, {r['threads']} torch threads, median of {rounds} rounds")
    print(f"hand-written PyTorch loop: {r['hand']:8.1f} images/s")
    print(f"fastai Learner.fit:        {r['fastai']:8.1f} images/s")
    print(f"ratio fastai / hand:       {r['ratio']:8.3f}   (target >= 0.95)")
    if loader:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_data import data_bench
        from fgia_nb.data import default_manifest
        data_bench(default_manifest(), [int(v) for v in str(num_workers).split(',')], bs=128,
                   size=finetune_config(arch)['img_size'])
