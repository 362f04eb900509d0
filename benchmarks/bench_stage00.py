"""Stage 00 over a competition-shaped tree of many small files, against one read of the same tree, in one run.

Writes (once) the competition layout at a fraction of its size: `train/<cls>/<cls>_<sha1>.jpg` over 5,000 long-tailed
classes with `train.txt`, and `testa/`, `testb/` in the competition's proportions (835,000 : 60,000 : 90,000), small
photo-like JPEGs of 128-192 px with a few percent of defects (truncated, empty, HTML) and a few byte-identical copies
filed under another class. Then times, each in a fresh subprocess so that its peak resident memory is its own:

- `read`: the baseline, one read of the tree (stage 00's own listing, `read_source`, then every file's bytes once);
- `stage00`: the whole stage, `clean_data` (listing, the scan in all cores' processes, duplicates and near-duplicates,
  the manifest, thumbnails and report written), as `nbs/00_data_clean.ipynb` runs it.

Each runs `--repeats` times on the whole tree and on a quarter of it (`--sizes`), so the scaling with the number of
files is measured, not assumed; the median wall time is reported, and stage 00 as a ratio to the read of the same
size. The files are read back while in the page cache (they were just written or read), so the baseline is the
file system's per-file cost without the disk, and the projection assumes storage that keeps up.

    .venv/bin/python benchmarks/bench_stage00.py                 # or: make bench-stage00 (200,000 files, 1.6 GB)
    .venv/bin/python benchmarks/bench_stage00.py --n 8000 --repeats 1 --dest /tmp/bs00   # a quick check
"""
import os, sys, json, time, shutil, hashlib, resource, subprocess, statistics
from pathlib import Path
import numpy as np
from fastcore.parallel import parallel
from fastcore.script import call_parse
sys.path.insert(0, str(Path(__file__).parent))
from bench_clean import photo, _defect
from fgia_nb.core import project_root, atomic_write_text

TRAIN, TESTA, TESTB = 835_000, 60_000, 90_000   # the competition's files


def tree_plan(n:int, n_classes:int=5000, seed:int=0)->list:
    "`(split, class or None)` of each of `n` files: the competition's split proportions, a long-tailed train prior."
    rng = np.random.default_rng(seed)
    n_test = [round(n*TESTA/(TRAIN+TESTA+TESTB)), round(n*TESTB/(TRAIN+TESTA+TESTB))]
    n_train = n - sum(n_test)
    p = 1/np.arange(1, n_classes+1)**0.6   # a mild long tail, head/tail ~ 165x at 5,000 classes
    cls = rng.choice(n_classes, n_train, p=p/p.sum())
    return [('train', int(c)) for c in cls] + [('testa', None)]*n_test[0] + [('testb', None)]*n_test[1]


def _write_files(args)->list:
    "Write files `lo..hi-1` of the plan; returns `(index, relative path, defect)`."
    root, plan, lo, hi, dup_frac = args
    out = []
    for i in range(lo, hi):
        split, c = plan[i - lo]
        rng = np.random.default_rng(20_000_000 + i)
        src = int(rng.integers(0, max(i, 1))) if i and rng.random() < dup_frac else i   # a copy of an earlier file
        b, kind = _defect(i, photo(src, 128 + 16*(src % 5)), 0.03)
        if src != i and kind is None: kind = 'copy'
        h = hashlib.sha1(b + (b'' if split == 'train' else str(i).encode())).hexdigest()
        rel = f'train/{c:04d}/{c:04d}_{h}.jpg' if split == 'train' else f'{split}/{h}.jpg'
        p = Path(root)/rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b)
        out.append((i, rel, kind))
    return out


def competition_tree(root:Path|str, n:int, n_classes:int=5000, dup_frac:float=0.005)->dict:
    "Write (once) a competition-layout tree of `n` files under `root`; returns its counts."
    root = Path(root)
    stamp = root.parent/f'{root.name}-tree-v1-{n}-{n_classes}.json'   # beside the tree: a file in it is data
    if stamp.exists(): return json.loads(stamp.read_text())
    if root.exists(): shutil.rmtree(root)
    root.mkdir(parents=True)
    plan, step = tree_plan(n, n_classes), 1000
    t0 = time.time()
    res = parallel(_write_files, [(root, plan[i:i+step], i, min(i+step, n), dup_frac) for i in range(0, n, step)],
                   n_workers=os.cpu_count(), progress=False)
    rows = sorted(r for part in res for r in part)
    lines = [f'{rel} {int(rel.split("/")[1])}\n' for _, rel, _ in rows if rel.startswith('train/')]
    (root/'train.txt').write_text(''.join(lines))
    kinds = {}
    for _, _, k in rows: kinds[k or 'ok'] = kinds.get(k or 'ok', 0) + 1
    info = dict(n=len({rel for _, rel, _ in rows}), classes=n_classes,   # a copy may land on its original's name train=len(lines), bytes=sum((root/r).stat().st_size for _, r, _ in rows),
                kinds=kinds, write_s=round(time.time() - t0, 1))
    atomic_write_text(stamp, json.dumps(info))
    return info


def subset_tree(full:Path, dest:Path, n:int)->Path:
    "A tree holding the first `n` files of `full`'s listing (hard links: no copy), with its `train.txt`."
    stamp = dest.parent/f'{dest.name}-of-{n}.json'
    if stamp.exists(): return dest
    if dest.exists(): shutil.rmtree(dest)
    from fgia_nb.sources import read_source
    files = read_source(full)
    files = files[files.reason == ''].sample(n=min(n, len(files)), random_state=0).sort_values('path')
    for rel in files.path:
        (dest/rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(full/rel, dest/rel)
    (dest/'train.txt').write_text(''.join(f'{p} {int(p.split("/")[1])}\n' for p in files.path if p.startswith('train/')))
    atomic_write_text(stamp, json.dumps(dict(n=len(files))))
    return dest


def _work(phase:str, root:str, out:str)->dict:
    from fgia_nb.sources import read_source
    from fgia_nb.data_clean import clean_data
    if phase == 'read':
        files = read_source(root)
        n = sum(len((Path(root)/p).read_bytes()) >= 0 for p in files.path)
        return dict(files=n)
    if phase == 'stage00':
        df = clean_data(root, out, progress=False)
        m = json.loads((Path(out)/'run.json').read_text())['metrics']
        return dict(files=len(df), scan_images_per_s=m['scan_images_per_s'], kept=m['n_train_kept'],
                    dropped=int((df.status == 'dropped').sum()), flagged=int((df.status == 'flagged').sum()))
    raise ValueError(f'unknown phase {phase!r}')


def _phase_main(phase:str, root:str, out:str):
    "One phase in this process: its wall time, peak RSS of this process and of its scan workers, and its result."
    import fgia_nb.data_clean, fgia_nb.sources   # imported before the clock starts
    t0 = time.time()
    res = _work(phase, root, out)
    res.update(phase=phase, wall_s=time.time() - t0, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)
    print('RESULT', json.dumps(res))


if __name__ == '__main__' and sys.argv[1:2] == ['_phase']:
    _phase_main(*sys.argv[2:5])
    sys.exit(0)


def run_phase(phase:str, root:Path, out:Path, repeats:int)->dict:
    "`phase` `repeats` times, each in a fresh process: the median run (its wall time and result), the largest peak RSS."
    runs = []
    for _ in range(repeats):
        p = subprocess.run([sys.executable, __file__, '_phase', phase, str(root), str(out)], capture_output=True, text=True)
        if p.returncode: raise RuntimeError(f'bench phase {phase} failed:\n{p.stderr[-3000:]}')
        runs.append(json.loads([l for l in p.stdout.splitlines() if l.startswith('RESULT ')][-1][7:]))
    mid = sorted(runs, key=lambda x: x['wall_s'])[(len(runs) - 1)//2]   # the median run, whose parts are its own
    r = dict(mid, walls=[round(x['wall_s'], 2) for x in runs])
    r['peak_rss_mb'] = max(x['peak_rss_mb'] for x in runs)
    return r


@call_parse
def main(n:int=200_000, # Files in the tree (the competition has 985,000: 835,000 train, 60,000 test-A, 90,000 test-B)
         sizes:str='0.25,1', # Fractions of the tree timed (the scaling with the number of files)
         dest:str=None, # Folder for the tree (default: bench_data/stage00 under the project)
         repeats:int=3, # Runs of each phase (the median is reported)
         target_cores:int=16, # Cores to project the competition's time for
         json_out:str=None # Also write the figures to this JSON file
        )->dict:
    "Files/s of stage 00 over a competition-shaped tree, its scaling, peak memory and the projection to 985,000 files."
    base = Path(dest or project_root()/'bench_data'/'stage00')
    need = n*9000
    base.mkdir(parents=True, exist_ok=True)
    if not (base/'full').exists() and shutil.disk_usage(base).free < need*1.5:
        raise SystemExit(f'bench_stage00: needs about {need/1e9:.1f} GB in {base}, '
                         f'{shutil.disk_usage(base).free/1e9:.1f} GB free (use --dest, a smaller --n)')
    t0 = time.time()
    info = competition_tree(base/'full', n)
    print(f"tree: {info['n']:,} files ({info['train']:,} train over {info['classes']:,} classes, test-A/B in the "
          f"competition's proportions), {info['bytes']/1e9:.2f} GB, {info['bytes']/info['n']/1e3:.1f} kB a file; "
          f"{info['kinds']}; written in {info['write_s']} s" + ('' if time.time() - t0 > 5 else ' (earlier)'))
    print(f'{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; median of {repeats} runs per phase')
    rows = []
    for f in sorted(float(s) for s in sizes.split(',')):
        root = base/'full' if f >= 1 else subset_tree(base/'full', base/f'subset-{f:g}', int(n*f))
        out = base/f'out-{f:g}'
        rd = run_phase('read', root, out, repeats)
        st = run_phase('stage00', root, out, repeats)
        rows.append(dict(frac=f, files=st['files'], read_s=rd['wall_s'], stage00_s=st['wall_s'], walls=st['walls'],
                         ratio=st['wall_s']/rd['wall_s'], files_per_s=st['files']/st['wall_s'],
                         scan_images_per_s=st['scan_images_per_s'], peak_rss_mb=st['peak_rss_mb'],
                         dropped=st['dropped'], flagged=st['flagged']))
        r = rows[-1]
        print(f"  {r['files']:>8,} files: one read {r['read_s']:6.1f} s ({r['files']/r['read_s']:7,.0f} files/s); "
              f"stage 00 {r['stage00_s']:6.1f} s = {r['ratio']:5.1f} x the read, {r['files_per_s']:5,.0f} files/s "
              f"(scan alone {r['scan_images_per_s']:,.0f}/s); peak RSS {r['peak_rss_mb']:,.0f} MB (the main process); "
              f"{r['dropped']:,} dropped, {r['flagged']:,} flagged; runs {r['walls']}")
    total = TRAIN + TESTA + TESTB
    a, b = rows[0], rows[-1]
    if len(rows) > 1 and b['files'] > a['files']:
        k = np.log(b['stage00_s']/a['stage00_s'])/np.log(b['files']/a['files'])
        m = np.log(b['peak_rss_mb']/a['peak_rss_mb'])/np.log(b['files']/a['files'])
        print(f"scaling: time grows as files^{k:.2f}, peak RSS as files^{m:.2f} "
              f"({a['files']:,} -> {b['files']:,} files)")
    else: k = m = 1.
    t_here = b['stage00_s']*(total/b['files'])**k
    scan_part = b['files']/b['scan_images_per_s']   # seconds of the scan, which splits over cores
    rest = max(b['stage00_s'] - scan_part, 0)
    t_cores = (scan_part*os.cpu_count()/target_cores + rest)*(total/b['files'])**k
    rss = b['peak_rss_mb']*(total/b['files'])**m
    print(f"projection to the competition's {total:,} files: {t_here/60:.0f} min on this machine's "
          f"{os.cpu_count()} cores, {t_cores/60:.0f} min on {target_cores} (the scan, {scan_part/b['stage00_s']:.0%} of "
          f"the time here, spread over the cores; the rest as here); peak RSS about {rss/1e3:.1f} GB")
    res = dict(tree=info, rows=rows, time_exponent=float(k), rss_exponent=float(m), projected_s=t_here,
               projected_s_cores=t_cores, target_cores=target_cores, projected_rss_mb=rss, cpus=os.cpu_count())
    if json_out:
        from datetime import datetime, timezone
        from fgia_nb.core import git_commit
        res.update(date=datetime.now(timezone.utc).isoformat(timespec='minutes'), commit=git_commit(), repeats=repeats)
        atomic_write_text(Path(json_out), json.dumps(res, indent=1))
    return res
