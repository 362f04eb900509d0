"""One short check of the GPU recipe's speed on one device: training, MAE and TTA images/s, peak memory, and ratios.

On a GPU host it times, per GPU, what the winners' recipe (recipes/accv2022.yaml) runs, through the project's own code:
- fine-tuning Swin-V2-L at 384 px and ViT-L at 448 px (stage 04's `finetune_config`, `make_learner` and
  `Learner.fit`, random weights, the recipe's ArcFace head over 5,000 classes, batch 16 per GPU as the winners'),
  in bf16 (the plain baseline), then with channels_last, then also with `torch.compile`: the Learner's own
  `precision`, `channels_last` and `compile` settings;
- MAE pretraining of ViT-L at 224 px (stage 02's `create_encoder`, `mim_model`, `mim_learner` and `fit_mim`, the
  recipe's batch of 512 per process and decoder 512/8/16, bf16 autocast the way `accelerate launch --mixed_precision
  bf16` applies it): steps/s and images/s;
- flip-TTA inference (stage 05's `tta_batches`, bf16, channels_last) with both large models at the recipe's batch
  256: images/s.

Every configuration runs as one `fit` over synthetic batches already on the device (random images of the right size;
the data loader is not timed: stage 01's loader has its own benchmark, bench_data.py). The first step is timed on its
own (with compile, that is the compile time), the remaining warm-up steps are not timed, then `--repeats`
consecutive segments of `--steps` steps each are timed and the median segment gives images/s. Peak memory is
`torch.cuda.max_memory_allocated` (reset per configuration) on a GPU and the process's peak resident memory (VmHWM,
reset per configuration where Linux allows, else the peak so far) on a CPU. Each configuration is printed with its
ratio to the plain bf16 one of the same run and to the winners' own log: Swin-L (V1) at 384 px, 16 images per GPU,
0.72 s per iteration on an A100, about 22 images/s per GPU. Ours is Swin-V2-L on whatever GPU runs this, so that
ratio is indicative only. A configuration that fails (compile on some host, out of memory, ...) is reported in its
row and the others go on; the exit status is then 1. Without CUDA (or with `--tiny`) it runs the same
configurations with the tiny archs at 32 px in well under a minute, so that it cannot rot (tests/test_gpu_check.py);
those figures say nothing about a GPU, and its compile rows use the `eager` backend (dynamo's capture without
inductor's code generation, which alone takes minutes on a CPU). The default GPU run is 6 training configurations of
65 steps, MAE 65 steps and TTA 2 x 17 batches: a few minutes on one A100 or H200 (most of it building the large
models and compiling them), with the time per section printed at the end. `--json` writes every figure with the
date, commit, torch and device.

    .venv/bin/python benchmarks/gpu_check.py --json outputs/bench/gpu_check.json      # or: make gpu-check
    .venv/bin/python benchmarks/gpu_check.py --tiny                             # the CPU check, about 30 s
    .venv/bin/python benchmarks/gpu_check.py --sections train --archs swinv2_l --configs bf16,bf16+cl,bf16+compile
"""
import os, gc, sys, time, datetime, functools, contextlib, platform, resource, statistics, subprocess, traceback
import json as jsonlib   # `json` is the command-line option
from pathlib import Path
import numpy as np, torch
from fastcore.script import call_parse
from fastai.callback.core import Callback, CancelValidException
from fastai.data.core import DataLoaders

ROOT = Path(__file__).resolve().parents[1]
WINNERS = dict(model='Swin-L (V1) 384 px', gpu='A100', bs=16, s_per_iter=0.72,
               source="the ACCV 2022 winners' training log (https://github.com/Ezra-Yu/ACCV2022_FGIA_1st)")
WINNERS['img_s'] = WINNERS['bs'] / WINNERS['s_per_iter']   # 22.2 images/s per GPU
FULL = dict(threads=0, archs='swinv2_l,vit_l', bs=16, classes=5000, compile_backend='inductor', warmup=5, steps=20,
            repeats=3, mae_arch='vit_l', mae_size=224, mae_bs=512, mae_decoder='512,8,16', tta_bs=256, tta_warmup=2,
            tta_steps=5)
TINY = dict(threads=1, archs='swinv2_demo,vit_demo', bs=4, classes=10, compile_backend='eager', warmup=2, steps=2,
            repeats=2, mae_arch='vit_demo', mae_size=32, mae_bs=8, mae_decoder='64,1,4', tta_bs=4, tta_warmup=1,
            tta_steps=2)


class SyntheticDL:
    "`n` batches that are all the same tuple of tensors, for fastai: no decoding, no augmentation, no copy."
    n_inp = 1
    def __init__(self, batch:tuple, n:int): self.batch, self.n, self.device = tuple(batch), n, batch[0].device
    def __len__(self): return self.n
    def __iter__(self): return (self.batch for _ in range(self.n))
    def to(self, device):
        self.batch, self.device = tuple(t.to(device) for t in self.batch), torch.device(device)
        return self


def synthetic_dls(batch:tuple, n:int, device)->DataLoaders:
    "fastai `DataLoaders` of `n` copies of `batch` on `device` and an empty held-out loader."
    return DataLoaders(SyntheticDL(batch, n), SyntheticDL(tuple(t[:0] for t in batch), 0), device=device)


def _sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize(device)


class Segments:
    "Wall-clock marks: the first step alone, then `repeats` segments of `steps` steps after `warmup` steps in all."
    def __init__(self, device, warmup:int, steps:int, repeats:int):
        self.device, self.warmup, self.steps, self.repeats = device, max(1, warmup), steps, repeats
        self.marks, self.t = {1, self.warmup, *(self.warmup + steps*(r+1) for r in range(repeats))}, {}
    @property
    def total(self)->int: return self.warmup + self.steps*self.repeats
    def start(self):
        _sync(self.device)
        self.t[0] = time.perf_counter()
    def done(self, i:int):
        "Step `i` (1-based) has been issued."
        if i in self.marks:
            _sync(self.device)
            self.t[i] = time.perf_counter()
    def result(self, per_step:int)->dict:
        "First-step seconds and the median segment's steps/s and items/s (`per_step` items a step)."
        at = lambda r: self.t[self.warmup + self.steps*r]
        segs = [at(r+1) - at(r) for r in range(self.repeats)]
        s = statistics.median(segs)
        return dict(first_step_s=self.t[1] - self.t[0], steps_s=self.steps/s, img_s=per_step*self.steps/s,
                    s_per_step=s/self.steps, segments_s=segs)


class StepTimer(Callback):
    "Marks `Segments` in `Learner.fit` (after each whole step: forward, loss, backward, optimiser); skips validation."
    order = 200
    def __init__(self, seg:Segments): self.seg = seg
    def before_batch(self):
        if self.training and self.iter == 0: self.seg.start()
    def after_batch(self):
        if self.training: self.seg.done(self.iter + 1)
    def before_validate(self): raise CancelValidException()


def _mem_reset(device)->str:
    "Reset the peak-memory counter; returns what `_mem_peak` measures."
    gc.collect()
    if torch.device(device).type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return 'cuda max_memory_allocated'
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')   # resets VmHWM (Linux >= 4.0)
        return 'peak RSS of the process (reset per row)'
    except OSError: return 'peak RSS of the process so far'


def _mem_peak(device)->float:
    "Peak memory in MiB since `_mem_reset`."
    if torch.device(device).type == 'cuda': return torch.cuda.max_memory_allocated(device) / 2**20
    try: return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) / 1024
    except (OSError, StopIteration): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_config(name:str)->dict:
    "'bf16+cl+compile' -> precision 'bf16', channels_last True, compile True."
    parts = name.split('+')
    if parts[0] not in ('fp32', 'bf16', 'fp16') or not set(parts[1:]) <= {'cl', 'compile'}:
        raise ValueError(f"config {name!r}: want a precision (fp32, bf16, fp16) then optional '+cl' and '+compile'")
    return dict(precision=parts[0], channels_last='cl' in parts[1:], compile='compile' in parts[1:])


@contextlib.contextmanager
def compile_backend(backend:str):
    "`torch.compile` with `backend` while in the block: stage 04 calls it with torch's default, inductor."
    if backend in (None, '', 'inductor'):
        yield
        return
    orig = torch.compile
    torch.compile = functools.partial(orig, backend=backend)
    try: yield
    finally: torch.compile = orig


def train_row(arch:str, size:int, bs:int, classes:int, config:str, device, warmup:int, steps:int, repeats:int,
              backend:str='inductor')->dict:
    "Images/s of stage 04's training step for one configuration."
    from fastai.callback.schedule import ParamScheduler
    from fgia_nb.finetune import finetune_config, make_learner, warmup_cosine, group_lrs, create_opt
    kw = parse_config(config)
    cfg = finetune_config(arch, img_size=size or None, bs=bs, pretrained=False, train_manifest='unused',
                          out_dir='unused', num_workers=0, **kw)
    row = dict(arch=arch, img_size=cfg['img_size'], bs=bs, config=config, head=cfg['head'], classes=classes, **kw)
    if kw['compile']: row['compile_backend'] = backend
    seg = Segments(device, warmup, steps, repeats)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(bs, 3, cfg['img_size'], cfg['img_size'], generator=g)
    y = torch.randint(0, classes, (bs,), generator=g)
    dls = synthetic_dls((x, y), seg.total, device)
    dls.c, dls.counts = classes, np.full(classes, 20)
    t0 = time.perf_counter()
    with compile_backend(backend if kw['compile'] else None): learn = make_learner(cfg, dls)
    create_opt(learn)   # as `fit_resumable` does, before `fit`
    o = learn.opt.opt
    kernel = 'fused' if o.defaults.get('fused') else 'foreach' if o.defaults.get('foreach') else 'for-loop'
    row['optimizer'] = f'{type(o).__name__} ({kernel})'
    row['params_m'] = sum(p.numel() for p in learn.model.parameters()) / 1e6
    sched = ParamScheduler({'lr': warmup_cosine(group_lrs(learn, cfg['lr'], learn.lr_scales), 0.1, cfg['min_lr'])})
    row['setup_s'] = time.perf_counter() - t0
    with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=[sched, StepTimer(seg)])
    row.update(seg.result(bs))
    return row


def mae_row(arch:str, size:int, bs:int, decoder:str, device, precision:str, warmup:int, steps:int, repeats:int)->dict:
    "Steps/s and images/s of stage 02's MAE (or SimMIM) training step."
    from fgia_nb.mae_pretrain import create_encoder, mim_model, mim_learner, fit_mim
    dd, dp, dh = (int(v) for v in decoder.split(','))
    seg = Segments(device, warmup, steps, repeats)
    t0 = time.perf_counter()
    model = mim_model(create_encoder(arch, img_size=size), None, dd, dp, dh, norm_pix=True)
    row = dict(arch=arch, img_size=size, bs=bs, config=precision, method=type(model).__name__, decoder=decoder,
               mask_ratio=model.mask_ratio, params_m=sum(p.numel() for p in model.parameters()) / 1e6)
    if precision != 'fp32':   # as `accelerate launch --mixed_precision bf16` does to the model (the recipe's MAE step)
        from accelerate import Accelerator
        acc = Accelerator(mixed_precision=precision, cpu=torch.device(device).type == 'cpu')
        model = acc.prepare_model(model, device_placement=False)
    x = torch.randn(bs, 3, size, size, generator=torch.Generator().manual_seed(0))
    learn = mim_learner(synthetic_dls((x,), seg.total, device), model)
    row['setup_s'] = time.perf_counter() - t0
    with learn.no_bar(), learn.no_logging(): fit_mim(learn, 1, 2.4e-3, cbs=[StepTimer(seg)])
    row.update(seg.result(bs))
    return row


def tta_row(arch:str, size:int, bs:int, classes:int, device, bf16:bool, warmup:int, steps:int, repeats:int)->dict:
    "Images/s of stage 05's flip-TTA inference (`tta_batches`: both views, bf16, channels_last)."
    from fgia_nb.finetune import finetune_config, build_model
    from fgia_nb.tta_predict import tta_batches
    cfg = finetune_config(arch, img_size=size or None, pretrained=False, train_manifest='unused', out_dir='unused')
    row = dict(arch=arch, img_size=cfg['img_size'], bs=bs, config=f"{'bf16' if bf16 else 'fp32'}+cl flip", views=2,
               head=cfg['head'], classes=classes)
    t0 = time.perf_counter()
    model = build_model(cfg, classes)
    x = torch.randn(bs, 3, cfg['img_size'], cfg['img_size'], generator=torch.Generator().manual_seed(0)).to(device)
    model.to(device)
    seg = Segments(device, warmup, steps, repeats)
    row['setup_s'] = time.perf_counter() - t0
    seg.start()
    for i, _ in enumerate(tta_batches(model, [(x,)] * seg.total, flip=True, device=device, bf16=bf16,
                                      channels_last=True, progress=False), 1):
        seg.done(i)   # each batch's logits come back to the host: the device is done with it
    row.update(seg.result(bs))
    return row


def run_row(section:str, label:dict, fn, device, **kw)->dict:
    "Run `fn` for one configuration; a failure becomes the row's `error` (traceback on stderr) and the check goes on."
    t0 = time.perf_counter()
    kind = _mem_reset(device)
    try: row = fn(device=device, **kw)
    except Exception as e:
        traceback.print_exc()
        msg = str(e).strip().splitlines()
        row = {**label, 'error': f"{type(e).__name__}: {msg[0][:300] if msg else ''}"}
    row.update(section=section, peak_mem_mb=round(_mem_peak(device), 1), mem_kind=kind,
               wall_s=round(time.perf_counter() - t0, 1))
    try: torch._dynamo.reset()   # compiled graphs and their memory go with the row
    except Exception: pass
    gc.collect()
    if torch.device(device).type == 'cuda': torch.cuda.empty_cache()
    return row


def _git(*args)->str|None:
    try:
        p = subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True, timeout=20)
        return p.stdout.strip() if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError): return None


def _holds_gpu_figures(p:Path)->bool:
    "Whether `p` is a JSON file of this check run on a GPU (never overwritten by a CPU/tiny run)."
    try: return jsonlib.loads(p.read_text()).get('tiny') is False
    except (OSError, ValueError, AttributeError): return False


def _fmt(v, spec:str, width:int)->str: return f'{v:{width}{spec}}' if isinstance(v, (int, float)) else f'{"-":>{width}}'


def print_rows(rows:list, unit:str='img/s'):
    print(f"  {'arch':<12} {'size':>4} {'bs':>4}  {'config':<17} {unit:>9} {'s/step':>7} {'1st step':>9} "
          f"{'peak MiB':>9} {'x plain':>8} {'x winners':>9}")
    for r in rows:
        head = (f"  {r.get('arch', '?'):<12} {_fmt(r.get('img_size'), 'd', 4)} {_fmt(r.get('bs'), 'd', 4)}  "
                f"{r.get('config', ''):<17}")
        if 'error' in r:
            print(f"{head} FAILED {r['error']}")
            continue
        print(f"{head} {r['img_s']:9.2f} {r['s_per_step']:7.3f} {r['first_step_s']:8.1f}s {r['peak_mem_mb']:9,.0f} "
              f"{_fmt(r.get('x_plain'), '.2f', 8)} {_fmt(r.get('x_winners'), '.2f', 9)}")


@call_parse
def gpu_check(device:str='auto', # 'auto' (CUDA when there is one), 'cuda', 'cuda:1' or 'cpu'
              tiny:bool=False, # Tiny archs and 32 px images, a few steps: the CPU check (automatic without CUDA)
              sections:str='train,mae,tta', # What to time, comma-separated
              archs:str=None, # Fine-tuned archs, comma-separated (default swinv2_l,vit_l; tiny: swinv2_demo,vit_demo)
              img_size:int=0, # Image side for training and TTA (0: each arch's stage-04 default: 384, 448, tiny 32)
              configs:str='bf16,bf16+cl,bf16+cl+compile', # Training configurations; the first is each arch's baseline
              bs:int=None, # Training batch per device (default 16, the winners'; tiny 4)
              classes:int=None, # Classes of the head (default 5000, the competition's; tiny 10)
              compile_backend:str=None, # torch.compile backend (default inductor, stage 04's; tiny: eager)
              warmup:int=None, # Steps before timing, the first one timed on its own (default 5; tiny 2)
              steps:int=None, # Steps per timed segment (default 20; tiny 2)
              repeats:int=None, # Timed segments; the median is reported (default 3; tiny 2)
              mae_arch:str=None, # MAE encoder (default vit_l; tiny vit_demo)
              mae_size:int=None, # MAE image side (default 224; tiny 32)
              mae_bs:int=None, # MAE batch per device (default 512, the recipe's per process; tiny 8)
              mae_decoder:str=None, # MAE decoder width,depth,heads (default 512,8,16; tiny 64,1,4)
              tta_bs:int=None, # TTA batch (default 256, the recipe's; tiny 4)
              tta_steps:int=None, # TTA batches per timed segment (default 5; tiny 2)
              threads:int=None, # CPU threads for torch (0: torch's default; tiny: 1, the steadiest on a shared machine)
              json:str=None, # Write every figure, with date, commit, torch and device, to this JSON file
             ):
    "Training, MAE and TTA images/s per device and peak memory, as ratios to plain bf16 and to the winners' log."
    t_start = time.perf_counter()
    if device == 'auto': device = 'cuda' if torch.cuda.is_available() else 'cpu'
    dev = torch.device(device)
    if dev.type == 'cuda' and dev.index is None: dev = torch.device('cuda', torch.cuda.current_device())
    tiny = tiny or dev.type != 'cuda'
    d = TINY if tiny else FULL
    if threads := d['threads'] if threads is None else threads: torch.set_num_threads(threads)
    archs = [a for a in (archs or d['archs']).split(',') if a]
    bs, classes, backend = bs or d['bs'], classes or d['classes'], compile_backend or d['compile_backend']
    warmup, steps = d['warmup'] if warmup is None else warmup, steps or d['steps']
    repeats = repeats or d['repeats']
    mae_arch, mae_size, mae_bs = mae_arch or d['mae_arch'], mae_size or d['mae_size'], mae_bs or d['mae_bs']
    mae_decoder, tta_bs, tta_steps = mae_decoder or d['mae_decoder'], tta_bs or d['tta_bs'], tta_steps or d['tta_steps']
    tta_warmup = d['tta_warmup']
    secs = [s for s in sections.split(',') if s]
    if bad := set(secs) - {'train', 'mae', 'tta'}: raise SystemExit(f'gpu_check: unknown sections {sorted(bad)}')
    cfgs = [c for c in configs.split(',') if c]
    for c in cfgs: parse_config(c)
    nt = torch.get_num_threads()
    name = (torch.cuda.get_device_name(dev) if dev.type == 'cuda' else
            f"CPU ({platform.processor() or platform.machine()}, {nt} thread{'s' if nt > 1 else ''})")
    bf16_ok = torch.cuda.is_bf16_supported() if dev.type == 'cuda' else True
    commit, dirty = _git('rev-parse', '--short', 'HEAD'), bool(_git('status', '--porcelain', '--untracked-files=no'))
    date = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    tag = 'CPU/tiny: these figures only show that the check runs; they are not comparable with the winners'
    print(f"gpu-check on {name}, torch {torch.__version__}, {date}, commit {commit or '?'}"
          + (' (uncommitted changes)' if dirty else ''))
    if tiny: print(f'  {tag}')
    plan = []
    if 'train' in secs:
        plan.append(f'{len(archs)} x {len(cfgs)} training configurations of {max(1, warmup) + steps*repeats} steps')
    if 'mae' in secs: plan.append(f'MAE {max(1, warmup) + steps*repeats} steps')
    if 'tta' in secs: plan.append(f'TTA {len(archs)} x {tta_warmup + tta_steps*repeats} batches')
    print(f"  plan: {', '.join(plan)}")
    res = dict(date=date, commit=commit, dirty=dirty, torch=torch.__version__, device=str(dev), device_name=name,
               cuda=torch.version.cuda, bf16_supported=bf16_ok, tiny=tiny, cpu_count=os.cpu_count(),
               winners=dict(WINNERS),
               settings=dict(archs=archs, img_size=img_size, configs=cfgs, compile_backend=backend, bs=bs,
                             classes=classes, warmup=warmup, steps=steps, repeats=repeats, mae_arch=mae_arch,
                             mae_size=mae_size, mae_bs=mae_bs,
                             mae_decoder=mae_decoder, tta_bs=tta_bs, tta_warmup=tta_warmup, tta_steps=tta_steps),
               train=[], mae=[], tta=[])
    w, took = WINNERS, {}
    if 'train' in secs:
        t0 = time.perf_counter()
        print(f"\nTraining (stage 04: make_learner + Learner.fit, random weights, {classes}-class head, synthetic "
              f"batches already on the device: the loader is not timed), batch {bs} per device; first step alone, "
              f"{max(1, warmup)} warm-up steps in all, then the median of {repeats} x {steps} timed steps")
        for arch in archs:
            rows = [run_row('train', dict(arch=arch, img_size=img_size or None, bs=bs, config=c), train_row, dev,
                            arch=arch, size=img_size, bs=bs, classes=classes, config=c, warmup=warmup, steps=steps,
                            repeats=repeats, backend=backend) for c in cfgs]
            base = rows[0].get('img_s')
            for r in rows:
                if 'img_s' in r:
                    r['x_plain'] = r['img_s'] / base if base else None
                    r['x_winners'] = r['img_s'] / w['img_s']
            print_rows(rows)
            res['train'] += rows
        print(f"  x plain: against the first configuration of the same arch in this run ({cfgs[0]}). "
              f"x winners: against {w['img_s']:.1f} img/s per GPU ({w['model']}, {w['bs']} images per GPU, "
              f"{w['s_per_iter']} s per iteration on an {w['gpu']}, their log); ours are the archs above "
              f"({'Swin-V2-L, not Swin-L; ' if 'swinv2_l' in archs else ''}at the sizes above) on {name}, so that "
              "ratio is indicative only"
              + (' (and meaningless here: CPU/tiny)' if tiny else '') + '.')
        if any(parse_config(c)['compile'] for c in cfgs):
            print(f"  compile: torch.compile, backend {backend}" + (" (dynamo's graph capture without inductor's "
                  "code generation, which takes minutes on a CPU; tests/test_gpu_paths.py runs inductor)"
                  if backend == 'eager' else '') + '; its first step includes the compilation')
        if opt := next((r['optimizer'] for r in res['train'] if 'optimizer' in r), None):
            print(f'  optimizer as stage 04 creates it: {opt}')
        took['train'] = time.perf_counter() - t0
    if 'mae' in secs:
        t0 = time.perf_counter()
        prec = 'bf16' if bf16_ok else 'fp32'
        print(f"\nMAE pretraining (stage 02: create_encoder + mim_model + mim_learner + fit_mim, {prec} autocast as "
              f"accelerate's --mixed_precision applies it; synthetic batches on the device), decoder {mae_decoder}")
        r = run_row('mae', dict(arch=mae_arch, img_size=mae_size, bs=mae_bs, config=prec), mae_row, dev,
                    arch=mae_arch, size=mae_size, bs=mae_bs, decoder=mae_decoder, precision=prec, warmup=warmup,
                    steps=steps, repeats=repeats)
        print_rows([r])
        if 'error' not in r:
            print(f"  {r['steps_s']:.2f} steps/s, {r['img_s']:.1f} images/s per device at batch {mae_bs} "
                  f"({r['method']}, mask ratio {r['mask_ratio']})")
        res['mae'].append(r)
        took['mae'] = time.perf_counter() - t0
    if 'tta' in secs:
        t0 = time.perf_counter()
        bf = bf16_ok
        tta_cfg = f"{'bf16' if bf else 'fp32'}+cl flip"
        print(f"\nFlip-TTA inference (stage 05's tta_batches: the image and its mirror, {'bf16' if bf else 'fp32'}, "
              f"channels_last; batches already on the device), batch {tta_bs}; images/s count each image once")
        rows = [run_row('tta', dict(arch=a, img_size=img_size or None, bs=tta_bs, config=tta_cfg), tta_row, dev,
                        arch=a, size=img_size, bs=tta_bs, classes=classes, bf16=bf, warmup=tta_warmup, steps=tta_steps,
                        repeats=repeats) for a in archs]
        print_rows(rows)
        res['tta'] += rows
        took['tta'] = time.perf_counter() - t0
    failed = [f"{r['section']} {r.get('arch')} {r.get('config', '')}".strip() for k in ('train', 'mae', 'tta')
              for r in res[k] if 'error' in r]
    res['failed'], res['elapsed_s'] = failed, round(time.perf_counter() - t_start, 1)
    res['section_s'] = {k: round(v, 1) for k, v in took.items()}
    mem = next((r['mem_kind'] for k in ('train', 'mae', 'tta') for r in res[k]), None)
    if mem: print(f'\npeak MiB: {mem}')
    first = sum(r.get('first_step_s', 0) for r in res['train'] if r.get('compile'))
    parts = [f'{k} {v:.0f} s' + (f' (compiled first steps {first:.0f} s)' if k == 'train' and first else '')
             for k, v in took.items()]
    print(f"elapsed {res['elapsed_s']:.0f} s ({datetime.timedelta(seconds=round(res['elapsed_s']))}): "
          f"{', '.join(parts)}, the rest imports and set-up")
    if json:
        p = Path(json)
        if tiny and _holds_gpu_figures(p):
            p = p.with_suffix('.tiny.json')
            print(f'{json} holds figures measured on a GPU: the CPU/tiny ones go beside it')
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(jsonlib.dumps(res, indent=1, default=str))
        print(f'figures written to {p}')
    if failed:
        print(f"{len(failed)} configuration(s) failed: {'; '.join(failed)}")
        sys.exit(1)
    return res
