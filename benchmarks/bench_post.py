"""Post-processing at competition scale: streamed ensemble, re-distribution and soup, against reading the files once.

Writes synthetic float16 logits for M models x N images x C classes (default 5 x 90,000 x 5,000, 4.5 GB; `--full`
for the winners' 17 models), then times, each in a fresh subprocess so that its peak resident memory (`ru_maxrss`)
is its own: reading every logits file once (the baseline), the streamed ensemble, prior matching and the winners'
rule on the ensemble's scores; then a uniform soup of K checkpoints against reading those checkpoints once. Every
phase runs `--repeats` times and the median wall time is reported, as a ratio to its baseline of the same run. Each
subprocess also reports its RSS just before the work (after imports), so the part of the peak attributable to the
work is visible. The logits are read back while still in the page cache (they were just written), so the read
baseline is a memory-speed read and the ratio is the compute overhead. Everything is deleted unless `--keep`.

    .venv/bin/python benchmarks/bench_post.py            # or: make bench-post
    .venv/bin/python benchmarks/bench_post.py --models 2 --n 3000 --c 200 --soup-k 3 --soup-mb 2   # a quick check
"""
import os, sys, json, time, shutil, tempfile, subprocess, resource
from pathlib import Path
import numpy as np
from fastcore.script import call_parse


def _rss_mb()->float:
    "Current resident set size (Linux `/proc/self/status`), else the peak so far."
    try: return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS:')).split()[1])/1024
    except (OSError, StopIteration): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024


def _work(phase:str, args:dict):
    "The work of one phase."
    from fgia_nb.logits import open_logits, read_rows
    from fgia_nb.ensemble import ensemble
    from fgia_nb.redistribute import prior_match, winners_redistribute
    from fgia_nb.model_soup import uniform_soup
    if phase == 'read':
        for f in args['models']:
            lg = open_logits(f)
            for s in range(0, len(lg), 4096): read_rows(lg, s, s+4096)
    elif phase == 'ensemble': ensemble(args['models'], args['out'], args.get('weights'))
    elif phase == 'prior_match': prior_match(open_logits(args['scores']))
    elif phase == 'winners':
        lg = open_logits(args['scores'])
        winners_redistribute(lg, int(0.9*lg.shape[0]/lg.shape[1]))
    elif phase == 'soup_read':
        for p in args['checkpoints']:
            with open(p, 'rb') as f:
                while f.read(1 << 24): pass
    elif phase == 'soup': uniform_soup(args['checkpoints'], args['out'])
    else: raise ValueError(f'unknown phase {phase!r}')


def _phase_main(phase:str, args_json:str):
    "Run one phase in this process and print its wall time, CPU time, RSS before the work and peak RSS."
    for m in ('torch', 'fgia_nb.logits', 'fgia_nb.ensemble', 'fgia_nb.redistribute', 'fgia_nb.model_soup'):
        __import__(m)   # imported before the clock starts and the RSS baseline is taken
    base = _rss_mb()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, t0 = ru.ru_utime + ru.ru_stime, time.time()
    _work(phase, json.loads(args_json))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res = dict(phase=phase, wall_s=time.time()-t0, cpu_s=ru.ru_utime + ru.ru_stime - cpu0,
               peak_rss_mb=ru.ru_maxrss/1024, base_rss_mb=base)
    print('RESULT', json.dumps(res))


def run_phase(phase:str, repeats:int=1, **args)->dict:
    "Run `phase` `repeats` times, each in a fresh process; the median wall time and the largest peak RSS."
    runs = []
    for _ in range(repeats):
        p = subprocess.run([sys.executable, __file__, '_phase', phase, json.dumps(args, default=str)],
                           capture_output=True, text=True)
        if p.returncode: raise RuntimeError(f'bench phase {phase} failed:\n{p.stderr[-3000:]}')
        runs.append(json.loads([l for l in p.stdout.splitlines() if l.startswith('RESULT ')][-1][7:]))
    med = lambda k: float(np.median([r[k] for r in runs]))
    return dict(phase=phase, wall_s=med('wall_s'), cpu_s=med('cpu_s'), base_rss_mb=med('base_rss_mb'),
                peak_rss_mb=max(r['peak_rss_mb'] for r in runs), runs=len(runs))


def soup_checkpoints(folder:Path, k:int, mb:float)->list:
    "`k` synthetic float32 checkpoints of about `mb` MB each (64 tensors), as stage 04 writes them."
    import torch
    from safetensors.torch import save_file
    n, paths = int(mb*2**20/4/64), []
    for i in range(k):
        g = torch.Generator().manual_seed(i)
        t = {f'model.blocks.{j}.weight': torch.randn(n, generator=g) for j in range(64)}
        save_file(t, str(folder/f'epoch_{i:03d}.safetensors'), metadata={'fgia_config': json.dumps({'arch': 'bench'})})
        del t
        paths.append(folder/f'epoch_{i:03d}.safetensors')
    return paths


if __name__ == '__main__' and sys.argv[1:2] == ['_phase']:   # one phase, in the subprocess `run_phase` starts
    _phase_main(sys.argv[2], sys.argv[3])
    sys.exit(0)


def _mem(r:dict)->str:
    return (f"CPU {r['cpu_s']:6.1f} s   peak RSS {r['peak_rss_mb']:,.0f} MB "
            f"(RSS before the work {r['base_rss_mb']:,.0f} MB)")


@call_parse
def bench_post(models:int=5, # Models (M)
               n:int=90_000, # Test images (N)
               c:int=5_000, # Classes (C)
               full:bool=False, # The winners' 17 models
               soup_k:int=7, # Checkpoints in the soup
               soup_mb:float=300., # Size of each synthetic checkpoint (MB)
               repeats:int=3, # Runs of every phase (the median is reported)
               tmp:str=None, # Folder for the files (default: the system temp dir)
               keep:bool=False, # Keep the files
               json_out:str=None # Also write the figures to this JSON file
              )->dict:
    "Time and measure the memory of ensemble, re-distribution and soup at competition scale on synthetic logits."
    from fgia_nb.testing import uniform_labels, tail_bias, synthetic_logit_file
    M = 17 if full else models
    need = (M + 1)*n*c*2 + soup_k*soup_mb*2**20*1.1
    root = Path(tempfile.mkdtemp(prefix='fgia-bench-post-', dir=tmp))
    free = shutil.disk_usage(root).free
    if free < need*1.1:
        shutil.rmtree(root)
        raise SystemExit(f'bench_post: needs {need/1e9:.1f} GB in {root.parent}, only {free/1e9:.1f} GB free '
                         '(use --tmp, fewer --models)')
    print(f'bench-post: {M} models x {n:,} images x {c:,} classes float16 ({M*n*c*2/1e9:.2f} GB) in {root}; '
          f'{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; median of {repeats} runs per phase')
    try:
        y, b = uniform_labels(n, c), tail_bias(c, 100)
        t = time.time()
        folders = [str(synthetic_logit_file(root/f'm{m:02d}', y, c, seed=m, bias=b)) for m in range(M)]
        print(f'  wrote the logits in {time.time()-t:.1f} s')
        accs = np.linspace(0.74, 0.76, M)
        r = dict(read=run_phase('read', repeats, models=folders))
        r['ensemble'] = run_phase('ensemble', repeats, models=folders, out=str(root/'scores'),
                                  weights=((accs/accs.min())**25).tolist())
        r['prior_match'] = run_phase('prior_match', repeats, scores=str(root/'scores'))
        r['winners'] = run_phase('winners', repeats, scores=str(root/'scores'))
        for f in folders: shutil.rmtree(f)
        (root/'soup').mkdir()
        cks = soup_checkpoints(root/'soup', soup_k, soup_mb)
        ck_mb = cks[0].stat().st_size/2**20
        r['soup_read'] = run_phase('soup_read', repeats, checkpoints=[str(p) for p in cks])
        r['soup'] = run_phase('soup', repeats, checkpoints=[str(p) for p in cks],
                              out=str(root/'soup'/'soup.safetensors'))
        rd, sr = r['read']['wall_s'], r['soup_read']['wall_s']
        print(f"  read every file once  {rd:7.2f} s  ({M*n*c*2/rd/1e9:.1f} GB/s)   {_mem(r['read'])}")
        for k in ('ensemble', 'prior_match', 'winners'):
            print(f"  {k:<20}  {r[k]['wall_s']:7.2f} s  = {r[k]['wall_s']/rd:6.2f} x the read   {_mem(r[k])}")
        print(f"  read {soup_k} checkpoints   {sr:7.2f} s   {_mem(r['soup_read'])}")
        extra = (r['soup']['peak_rss_mb'] - r['soup']['base_rss_mb'])/ck_mb
        print(f"  soup of {soup_k} x {ck_mb:,.0f} MB    {r['soup']['wall_s']:7.2f} s  = "
              f"{r['soup']['wall_s']/sr:6.2f} x their read   {_mem(r['soup'])} = {extra:.2f} checkpoints "
              "above the RSS before the work")
        print(f'  load average at the end {os.getloadavg()[0]:.1f} (wall times on a possibly shared machine)')
        r.update(models=M, n=n, c=c, checkpoint_mb=ck_mb, ensemble_over_read=r['ensemble']['wall_s']/rd,
                 soup_over_read=r['soup']['wall_s']/sr, repeats=repeats, cpus=os.cpu_count())
        if json_out:
            from datetime import datetime, timezone
            from fgia_nb.core import atomic_write_text, git_commit
            r.update(date=datetime.now(timezone.utc).isoformat(timespec='minutes'), commit=git_commit())
            atomic_write_text(Path(json_out), json.dumps(r, indent=1))
        return r
    finally:
        if not keep: shutil.rmtree(root, ignore_errors=True)

