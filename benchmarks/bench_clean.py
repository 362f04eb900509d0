"""Stage 00's scan against the naive loop, on the same files in one run.

Writes (once) a corpus of photo-like 256 px JPEGs with a few percent of defects (truncated, empty, HTML), then
times, in interleaved blocks so that a change in the machine's load hits all three alike: the naive loop
(`Image.open(p).convert('RGB')` plus a sha1 of the bytes, one process), `fgia_nb.data_clean.scan` in one process, and
`scan` in `--n-workers` processes. Every timing runs `--repeats` times and the median is reported, as a ratio to
the naive loop of the same run. It also measures how much parallelism the machine really has (`cpu_scaling`): on
a shared or virtual machine two "cores" may not give twice the work.

    .venv/bin/python benchmarks/bench_clean.py            # or: make bench-clean
    .venv/bin/python benchmarks/bench_clean.py --n 2000 --repeats 1 --dest /tmp/bench_clean   # a quick check
"""
import io, os, json, time, hashlib, statistics
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image
from fastcore.parallel import parallel
from fastcore.script import call_parse
from fgia_nb.core import project_root, atomic_write_text
from fgia_nb.data_clean import scan


def photo(seed:int, size:int=256)->bytes:
    "A photo-like image: smooth random colour fields, some texture and a little grain, JPEG-encoded."
    rng = np.random.default_rng(seed)
    im = Image.fromarray((rng.random((6, 6, 3)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    tex = (rng.random((size//4, size//4)) * 60).astype(np.uint8)
    tex = Image.fromarray(tex).resize((size, size), Image.BILINEAR)
    grain = rng.integers(-4, 5, (size, size, 3))
    a = np.asarray(im, dtype=np.int16) + np.asarray(tex, dtype=np.int16)[..., None] - 30 + grain
    b = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(b, 'JPEG', quality=90)
    return b.getvalue()


def _defect(i:int, b:bytes, bad_frac:float)->tuple[bytes, str|None]:
    "File `i`'s bytes after its (seeded) defect, if it draws one, and the defect's kind."
    rng = np.random.default_rng(10_000_000 + i)
    r = rng.random()
    if r < bad_frac / 2: return b[:int(len(b) * rng.uniform(0.3, 0.9))], 'truncated'
    if r < bad_frac * 3/4: return b'', 'empty'
    if r < bad_frac: return b'<html>not found</html>', 'html'
    return b, None


def _write_chunk(args)->dict:
    "Write files `lo..hi-1` of the corpus; returns their defects by index."
    d, lo, hi, bad_frac = args
    kinds = {}
    for i in range(lo, hi):
        b, kind = _defect(i, photo(i), bad_frac)
        if kind: kinds[i] = kind
        (Path(d)/f'{i:06d}.jpg').write_bytes(b)
    return kinds


def bench_corpus(dest:Path|str, n:int=20000, bad_frac:float=0.03, n_workers:int|None=None)->tuple[list[Path], dict]:
    "Write (once) `n` photo-like 256 px JPEGs, `bad_frac` of them truncated, empty or HTML; returns paths and defects."
    dest = Path(dest)
    stamp = dest/f'corpus-v2-{n}-{bad_frac}.json'
    if not stamp.exists():
        dest.mkdir(parents=True, exist_ok=True)
        step = 500
        tasks = [(dest, i, min(i+step, n), bad_frac) for i in range(0, n, step)]
        res = parallel(_write_chunk, tasks, n_workers=n_workers or os.cpu_count(), progress=False)
        atomic_write_text(stamp, json.dumps({str(k): v for r in res for k, v in r.items()}))
    defects = {int(k): v for k, v in json.loads(stamp.read_text()).items()}
    return [dest/f'{i:06d}.jpg' for i in range(n)], defects


def _burn(n:int)->int: return sum(i * i for i in range(n))


def cpu_scaling(n_workers:int=2, n:int=2_000_000)->float:
    "How much faster `n_workers` processes run pure-Python CPU work than one: the machine's real parallelism."
    from concurrent.futures import ProcessPoolExecutor
    t0 = time.perf_counter()
    for _ in range(2*n_workers): _burn(n)
    t1 = time.perf_counter() - t0
    with ProcessPoolExecutor(n_workers) as ex:
        t0 = time.perf_counter()
        list(ex.map(_burn, [n] * (2*n_workers)))
        t2 = time.perf_counter() - t0
    return t1 / t2


def naive_scan(paths)->list:
    "The baseline: one process, `Image.open(p).convert('RGB')` plus a sha1 of the bytes."
    out = []
    for p in paths:
        try:
            h = hashlib.sha1(Path(p).read_bytes()).hexdigest()
            im = Image.open(p).convert('RGB')
            out.append(('', h, im.size))
        except Exception as e: out.append((type(e).__name__, None, None))
    return out


def _timed(f, *args, **kw):
    "`f(*args, **kw)` and its wall time."
    t0 = time.perf_counter()
    res = f(*args, **kw)
    return res, time.perf_counter() - t0


def time_once(paths:list, n_workers:int, block:int=2000)->dict:
    "One interleaved timing of the three contenders over `paths`: seconds each, and their results."
    t = dict(naive=0., one=0., ours=0.)
    base, parts = [], []
    for i in range(0, len(paths), block):
        b = paths[i:i+block]
        r, s = _timed(naive_scan, b)
        base += r
        t['naive'] += s
        t['one'] += _timed(scan, b, n_workers=0, progress=False)[1]
        r, s = _timed(scan, b, n_workers=n_workers, progress=False)
        parts.append(r)
        t['ours'] += s
    return dict(seconds=t, naive=base, ours=pd.concat(parts, ignore_index=True))


@call_parse
def main(n:int=20000, # Images in the corpus
         dest:str=None, # Corpus folder (default: bench_data/clean under the project)
         n_workers:int=None, # Scan processes (default: all cores)
         repeats:int=3, # Timings of each contender; the median is reported
         block:int=2000, # Files per interleaved timing block
         target:int=835_000, # Images to project the time for
         target_cores:int=16 # Cores to project the time for
        ):
    "Scan rate of stage 00 against the naive single-process loop, on the same files in one run."
    n_workers = n_workers or os.cpu_count()
    paths, defects = bench_corpus(Path(dest or project_root()/'bench_data'/'clean'), n)
    for p in paths: p.read_bytes()   # warm the page cache for all contenders
    runs = [time_once(paths, n_workers, block) for _ in range(repeats)]
    med = {k: statistics.median(r['seconds'][k] for r in runs) for k in ('naive', 'one', 'ours')}
    rate = {k: n / s for k, s in med.items()}
    trunc = [i for i, k in defects.items() if k == 'truncated']
    caught = int((runs[-1]['ours'].reason.iloc[trunc] == 'truncated').sum())
    caught_naive = sum(runs[-1]['naive'][i][0] != '' for i in trunc)
    print(f'corpus: {n} JPEGs of 256 px, {len(defects)} defective ({len(trunc)} truncated); median of {repeats} runs')
    print(f"naive loop (1 process):     {rate['naive']:8.0f} images/s  ({med['naive']:.1f} s)")
    print(f"stage 00 scan (1 process):  {rate['one']:8.0f} images/s  ({med['one']:.1f} s)  "
          f"{rate['one'] / rate['naive']:.2f}x")
    print(f"stage 00 scan ({n_workers} processes): {rate['ours']:8.0f} images/s  ({med['ours']:.1f} s)  "
          f"{rate['ours'] / rate['naive']:.2f}x")
    print(f"ratio: {rate['ours'] / rate['naive']:.2f}x the naive loop with {n_workers} processes on "
          f"{os.cpu_count()} cores")
    print(f'(this machine runs pure CPU work {cpu_scaling(n_workers):.2f}x faster on {n_workers} processes than on 1)')
    print(f'truncated files caught: stage 00 {caught}/{len(trunc)}, naive {caught_naive}/{len(trunc)}')
    minutes = target / (rate['one'] * target_cores) / 60
    print(f"projection: {target:,} images on {target_cores} cores ~ {minutes:.1f} min "
          f"(assumes linear scaling from {rate['one']:.0f} images/s per process, and storage that keeps up)")
    return dict(naive=rate['naive'], one=rate['one'], ours=rate['ours'], ratio=rate['ours'] / rate['naive'])
