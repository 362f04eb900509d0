#!/usr/bin/env python
"""A bad-input and fault probe of fgia_nb (issue 12), run as a new user would run the project.

Each probe is a small function: it sets up a bad input or a fault in a fresh temporary folder (`FGIA_OUTPUTS` there,
`FGIA_ROOT` unchanged), runs the project (a stage function in a forked process, `papermill nbs/XX.ipynb`, `fgia run`,
`fgia-default-data`) and classifies what happened:

    OK       it worked, or it failed with a clear error: the message names what is wrong and where (a file,
             parameter or folder), not only a library's own complaint
    UNCLEAR  it failed with a message that does not say what is wrong, or where
    WRONG    it finished without an error, but what it wrote misdescribes the input (a bad file marked ok, ...)
    LOST     a file that existed before and that the run did not invalidate is gone or changed, or a failed run
             replaced an earlier good output with a partial one (found by hashing the whole temp tree before and after)
    HANG     still running at its time limit (its process group is killed)
    SKIPPED  the sandbox refuses the set-up (no mount, ...)

It prints one line per probe and the totals; `--out` writes them as CSV. Run it from the repository root:

    nice -n 19 .venv/bin/python tests/probe/probe.py [--out probe.csv] [--only REGEX] [--keep]
"""
import argparse, csv, hashlib, io, json, os, pickle, re, select, shutil, signal, stat, struct, subprocess, sys
import tempfile, time, traceback, warnings, zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings('ignore')

import numpy as np, pandas as pd
from PIL import Image
# the stage modules, imported once here: each probe forks a process that has them (no 6 s import per probe)
from fgia_nb import core, sources, logits as logits_mod
from fgia_nb.data_clean import data_clean, read_manifest, write_manifest
from fgia_nb.data import stage_dls
from fgia_nb.mae_pretrain import mae_pretrain
from fgia_nb.finetune import finetune
from fgia_nb.tta_predict import tta_predict
from fgia_nb.pseudo_label import pseudo_label
from fgia_nb.model_soup import model_soup
from fgia_nb.ensemble import ensemble_models
from fgia_nb.redistribute import redistribute_scores

EXP = 'p'   # the experiment every probe writes under FGIA_OUTPUTS
TINY = dict(arch='vit_demo', epochs=1, max_items=64, bs=16, img_size=32, num_workers=0, valid_pct=0, experiment=EXP)
OUTCOMES = ('OK', 'UNCLEAR', 'WRONG', 'LOST', 'HANG', 'SKIPPED')
TEMP_NAME = re.compile(r'^\.(.+)\.(\d+)\.(tmp|old)(\.[^.]*)?$|\.building-\d+$|^\.fgia-write-test-|\.partial\.ipynb$')

# ---------------------------------------------------------------------------------------------------- running things
class Run:
    "What running something gave: status 'ok' | 'error' | 'timeout', its value, the error's line, the whole output."
    def __init__(self, status, value=None, msg='', out=''): self.status, self.value, self.msg, self.out = status, value, msg, out
    def __repr__(self): return f'Run({self.status}, {self.msg[:80]!r})'

def _killpg(pid):
    try: os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError): pass

def call(fn, *a, env:dict, timeout:float=180, log:Path|None=None, **kw)->Run:
    "`fn(*a, **kw)` in a forked process (its own session, `env` set): its return value or its exception's line."
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never returns
        try:
            os.close(r)
            os.setsid()
            fd = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1), os.dup2(fd, 2)
            os.environ.update(env)
            try: res = ('ok', fn(*a, **kw), '', '')
            except BaseException as e:
                res = ('error', None, f'{type(e).__name__}: {e}', traceback.format_exc())
                print(res[3], file=sys.stderr, flush=True)
            try: data = pickle.dumps(res)
            except Exception: data = pickle.dumps(('ok', repr(res[1])[:2000], res[2], res[3]))
            with os.fdopen(w, 'wb') as f: f.write(data)
        finally: os._exit(0)
    os.close(w)
    buf, t_end = b'', time.time() + timeout
    try:
        while True:
            ready, _, _ = select.select([r], [], [], max(0., t_end - time.time()))
            if not ready:
                _killpg(pid)
                os.waitpid(pid, 0)
                return Run('timeout', msg=f'still running after {timeout:.0f} s (killed)')
            chunk = os.read(r, 1 << 16)
            if not chunk: break
            buf += chunk
    finally: os.close(r)
    _, st = os.waitpid(pid, 0)
    _killpg(pid)   # workers it left behind
    if not buf: return Run('error', msg=f'the process died without a result (wait status {st})')
    status, value, msg, tb = pickle.loads(buf)
    return Run(status, value, msg, tb)

ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
ERR_LINE = re.compile(r'^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)|fgia[\w-]*)\b.*:')

def last_error(out:str)->str:
    "The line a user reads as the error: the last exception line (papermill prints the cell's last), or `fgia: ...`."
    lines = [l.rstrip() for l in ANSI.sub('', out).splitlines() if l.strip()]
    for l in reversed(lines):
        if ERR_LINE.match(l.strip()) and not l.strip().startswith('PapermillExecutionError'): return l.strip()
    return lines[-1].strip() if lines else ''

def sh(args:list, env:dict, timeout:float=300, cwd:Path=ROOT)->Run:
    "Run a command (own session, `env` over ours); status 'ok' on return code 0."
    p = subprocess.Popen([str(a) for a in args], cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, errors='replace', start_new_session=True)
    try: out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _killpg(p.pid)
        out, _ = p.communicate()
        return Run('timeout', msg=f'still running after {timeout:.0f} s (killed)', out=out)
    _killpg(p.pid)   # kernels or workers left behind
    return Run('ok' if p.returncode == 0 else 'error', p.returncode, '' if p.returncode == 0 else last_error(out), out)

# ----------------------------------------------------------------------------------------------- the temp tree's state
def snapshot(top:Path)->dict:
    "relative path -> content hash (files), link target (symlinks) or kind, for everything below `top`."
    out = {}
    for dp, dns, fns in os.walk(top):
        for n in dns + fns:
            p = os.path.join(dp, n)
            rel = os.path.relpath(p, top)
            try: m = os.lstat(p).st_mode
            except OSError: continue
            if stat.S_ISLNK(m): out[rel] = 'link:' + os.readlink(p)
            elif stat.S_ISDIR(m): out[rel] = 'dir'
            elif stat.S_ISREG(m):
                try:
                    with open(p, 'rb') as f: out[rel] = hashlib.sha1(f.read()).hexdigest()
                except OSError as e: out[rel] = f'unreadable:{e.errno}'
            else: out[rel] = f'special:{stat.S_IFMT(m)}'
    return out

def damage(before:dict, after:dict, allowed=(), failed:bool=False)->list:
    """What the run removed or changed that it had no right to: anything outside the `allowed` folders; inside them
    too when the run failed (a failed run must leave the last good outputs whole; only its run.json may say so)."""
    allowed = [a.rstrip('/') + '/' for a in allowed]
    bad = []
    for rel, h in before.items():
        if rel.startswith('_') or h == 'dir' or after.get(rel) == h: continue
        inside = any((rel + '/').startswith(a) for a in allowed)
        if inside and (not failed or os.path.basename(rel) in ('run.json',)): continue
        bad.append(f"{rel} {'removed' if rel not in after else 'changed'}")
    return bad

def leftovers(before:dict, after:dict, c)->list:
    "New temporary-looking files, and anything left in the probe's TMPDIR."
    new = [rel for rel in after if rel not in before and TEMP_NAME.search(os.path.basename(rel))
           and not rel.startswith('_')]
    return new + [f'$TMPDIR/{n}' for n in os.listdir(c.tmp)]

# ------------------------------------------------------------------------------------------------------------ verdicts
class Res:
    def __init__(self, outcome, msg='', note=''): self.outcome, self.msg, self.note = outcome, msg, note

def first_line(s:str)->str:
    s = str(s).strip()
    return s.splitlines()[0][:300] if s else ''

def verdict(c, run:Run, before:dict, names=(), allowed=(), must_fail=False, check=None, note='')->Res:
    """Classify `run` (see the module's docstring). `names`: strings of which the error must contain at least one (the
    file, parameter or folder at fault); `allowed`: folders (relative to the temp dir) the run may rewrite; `must_fail`:
    finishing is WRONG; `check(value)`: '' if a finished run's result is right, else what is wrong with it."""
    after = snapshot(c.t)
    lost = damage(before, after, allowed, failed=run.status != 'ok')
    left = leftovers(before, after, c)
    note = '; '.join(x for x in (note, f'left behind: {left[:3]}' if left else '') if x)
    if lost: return Res('LOST', f'{lost[:4]}; run: {first_line(run.msg) or run.status}', note)
    if run.status == 'timeout': return Res('HANG', run.msg, note)
    if run.status == 'error':
        clear = any(str(n) in run.msg for n in names)
        return Res('OK' if clear else 'UNCLEAR', first_line(run.msg), note)
    if must_fail: return Res('WRONG', 'accepted silently: finished without an error', note)
    if check:
        try: problem = check(run.value)
        except Exception as e: problem = f'check failed: {type(e).__name__}: {e}'
        if problem: return Res('WRONG', problem, note)
    return Res('OK', 'finished', note)

# --------------------------------------------------------------------------------------------------------- fixtures
class Ctx:
    "A probe's fresh temp folder `t`: outputs in t/outputs, the probe's own files in t/_probe, its TMPDIR t/_tmp."
    def __init__(self, t:Path):
        self.t, self.probe, self.tmp = t, t/'_probe', t/'_tmp'
        for d in (self.probe, self.tmp): d.mkdir(parents=True, exist_ok=True)
        self.env = dict(FGIA_OUTPUTS=str(t/'outputs'), TMPDIR=str(self.tmp))
        self.keep = False
        self.log = self.probe/'log.txt'
    @property
    def out(self)->Path: return self.t/'outputs'/EXP
    def call(self, fn, *a, timeout=180, **kw)->Run: return call(fn, *a, env=self.env, timeout=timeout, log=self.log, **kw)
    def sh(self, *args, timeout=300, env=None)->Run:
        r = sh(args, {**self.env, **(env or {})}, timeout)
        with open(self.log, 'a') as f: f.write(r.out)
        return r
    def papermill(self, nb:str, *params, timeout=300)->Run:
        "`papermill nbs/<nb>.ipynb out.ipynb -p k v ...` from the notebooks' folder, as the README shows."
        args = [a for k, v in params for a in ('-p', k, v)]
        return self.sh(BIN/'papermill', ROOT/'nbs'/f'{nb}.ipynb', self.probe/'out.ipynb', *args, '--cwd', ROOT/'nbs',
                       timeout=timeout)
    def fgia(self, *args, timeout=400)->Run: return self.sh(BIN/'fgia', *args, timeout=timeout)

CACHE: dict = {}   # filled by `setup`: the tiny data trees and a finished small pipeline to copy from

def jpeg(a:np.ndarray, **kw)->bytes:
    b = io.BytesIO()
    Image.fromarray(a).save(b, 'JPEG', quality=90, **kw)
    return b.getvalue()

def noise(h=40, w=48, seed=0, ch=3)->np.ndarray:
    return (np.random.default_rng(seed).random((h, w, ch) if ch > 1 else (h, w)) * 255).astype(np.uint8)

def save_image(p:Path, im:Image.Image, **kw):
    p.parent.mkdir(parents=True, exist_ok=True)
    im.save(p, **kw)
    return p

def small_tree(root:Path):
    "2 classes of 4 noise JPEGs in the competition layout (train.txt, testa/, testb/ with 3 images each)."
    lines = []
    for c in range(2):
        for i in range(4):
            p = root/'train'/f'{c:04d}'/f'{c:04d}_{i}.jpg'
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(jpeg(noise(seed=10*c + i)))
            lines.append(f'train/{c:04d}/{p.name} {c}')
    (root/'train.txt').write_text('\n'.join(lines) + '\n')
    for s, k in (('testa', 100), ('testb', 200)):
        for i in range(3):
            (root/s).mkdir(parents=True, exist_ok=True)
            (root/s/f'{s}_{i}.jpg').write_bytes(jpeg(noise(seed=k + i)))
    return root

def fmnist_tree(root:Path, per_class=6, n_test=16):
    "A slice of the default dataset: `per_class` train images of each class, `n_test` of test-A and test-B."
    src = core.data_root()/'fmnist_web'
    by = {}
    for ln in (src/'train.txt').read_text().splitlines():
        p, l = ln.rsplit(' ', 1)
        by.setdefault(l, []).append(p)
    out = []
    for l, ps in sorted(by.items()):
        for p in ps[:per_class]:
            (root/p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src/p, root/p)
            out.append(f'{p} {l}')
    (root/'train.txt').write_text('\n'.join(out) + '\n')
    for s in ('testa', 'testb'):
        (root/s).mkdir(parents=True)
        for p in sorted((src/s).iterdir())[:n_test]: shutil.copyfile(p, root/s/p.name)
    return root

def pipeline(outputs:Path, data:Path):
    "The finished small pipeline every post-processing probe starts from (runs in a forked process)."
    data_clean(str(data), experiment=EXP, n_workers=0)
    for run, seed in (('vit', 0), ('vit2', 1)): finetune(**{**TINY, 'epochs': 2}, run=run, seed=seed)
    tta_predict(EXP, train_run='vit,vit2', split='testa,testb', plain=False)
    ensemble_models(EXP, split='testb', weighting='equal')
    model_soup(EXP, train_run='vit', k=2)
    redistribute_scores(EXP, split='testb')
    return 'ok'

def setup(base:Path):
    "Build the tiny trees and the finished pipeline once; probes copy them."
    CACHE['small'] = small_tree(base/'small')
    CACHE['fm'] = fmnist_tree(base/'fm'/'data')
    env = dict(FGIA_OUTPUTS=str(base/'fm'/'outputs'), TMPDIR=str(base), PYTHONWARNINGS='ignore')
    r = call(pipeline, base/'fm'/'outputs', CACHE['fm'], env=env, timeout=600, log=base/'setup.log')
    if r.status != 'ok': raise SystemExit(f'set-up failed: {r.msg}\n{r.out}\n(see {base/"setup.log"})')
    CACHE['fm_out'] = base/'fm'/'outputs'

def with_data(c, kind='small')->Path:
    "A copy of a tiny data tree at t/data."
    shutil.copytree(CACHE[kind], c.t/'data', symlinks=True)
    return c.t/'data'

def with_pipeline(c)->Path:
    "A copy of the finished small pipeline (data at t/data, outputs at t/outputs), its manifest pointing at t/data."
    shutil.copytree(CACHE['fm'], c.t/'data', symlinks=True)
    shutil.copytree(CACHE['fm_out'], c.t/'outputs', symlinks=True, dirs_exist_ok=True)
    m = c.out/'00_data_clean'/'default'/'manifest.parquet'
    write_manifest(read_manifest(m, data_root=c.t/'data'), m, c.t/'data')
    return c.out

# --------------------------------------------------------------------------------------------------------- registry
PROBES = []
def probe(group:str):
    def deco(f):
        PROBES.append((group, f.__name__.removeprefix('p_'), f))
        return f
    return deco

def manifest_rows(df)->dict:
    "A stage-00 manifest as path -> (status, reason, label), for a forked process to send back."
    return {p: (s, r, l) for p, s, r, l in zip(df.path, df.status, df.reason, df.label)}

def on_disk(root:Path)->set:
    "Every non-hidden file (and special file) below `root` as the readers name it, bytes escaped like theirs."
    out = set()
    for dp, dns, fns in os.walk(root):
        dns[:] = [d for d in dns if not d.startswith('.')]
        for f in fns:
            if f.startswith('.'): continue
            rel = os.path.relpath(os.path.join(dp, f), root)
            out.add(os.fsencode(rel).decode('utf-8', 'backslashreplace'))
    return out

def clean(c, root:Path, expect:dict|None=None, names=(), must_fail=False, timeout=90, via='fn', **kw)->Res:
    """Stage 00 on `root` into t/out. `expect`: relative path -> the reasons it may get (a set; '' = kept) ;
    every file on disk must be in the manifest once."""
    before = snapshot(c.t)
    if via == 'fn': run = c.call(data_clean_rows, str(root), str(c.t/'out'), timeout=timeout, **kw)
    else: run = c.papermill('00_data_clean', ('data_root', str(root)), ('out_dir', str(c.t/'out')), timeout=timeout)
    def check(rows):
        if via != 'fn': rows = manifest_rows(read_manifest(c.t/'out'))
        disk = {p for p in on_disk(root) if p not in ('train.txt', 'dataset.json')}
        if missing := sorted(disk - set(rows)): return f'files on disk missing from the manifest: {missing[:3]}'
        for p, want in (expect or {}).items():
            if p not in rows: return f'{p!r} is not in the manifest'
            st, reason, _ = rows[p]
            if reason not in want: return f'{p!r}: status {st!r}, reason {reason!r}; expected one of {sorted(want)}'
            if reason and st == 'ok': return f'{p!r} has reason {reason!r} but status ok'
        return ''
    return verdict(c, run, before, names=names or [str(root)], allowed=['out'], must_fail=must_fail, check=check)

def data_clean_rows(root, out, **kw):
    return manifest_rows(data_clean(root, out, n_workers=kw.pop('n_workers', 0), **kw))

ANY_REASON = {'unreadable', 'truncated', 'not_image', 'too_large', 'too_small', 'not_a_file', 'bad_name',
              'unexpected_path'}

# ======================================================================================= 1. bad data trees (stage 00)
@probe('data')
def p_root_empty(c):
    (c.t/'data').mkdir()
    return clean(c, c.t/'data')

@probe('data')
def p_root_missing(c): return clean(c, c.t/'nowhere')

@probe('data')
def p_root_is_a_file(c):
    (c.t/'data.jpg').write_bytes(jpeg(noise()))
    return clean(c, c.t/'data.jpg')

@probe('data')
def p_only_empty_class_folders(c):
    for k in range(3): (c.t/'data'/'train'/f'{k:04d}').mkdir(parents=True)
    return clean(c, c.t/'data')

def one_bad(c, name:str, content:bytes|None, want:set, cls='0000', **kw)->Res:
    "The small tree plus one file `train/<cls>/<name>` holding `content`."
    root = with_data(c)
    if content is not None: (root/'train'/cls/name).write_bytes(content)
    return clean(c, root, {f'train/{cls}/{name}': want}, **kw)

@probe('data')
def p_zero_byte_jpeg(c): return one_bad(c, 'zero.jpg', b'', {'unreadable'})

@probe('data')
def p_truncated_jpeg(c): return one_bad(c, 'cut.jpg', jpeg(noise(200, 200))[:3000], {'truncated'})

@probe('data')
def p_text_named_jpg(c): return one_bad(c, 'notes.jpg', b'just some text, not an image\n' * 20, {'not_image'})

@probe('data')
def p_html_named_png(c): return one_bad(c, 'page.png', b'<!doctype html><html><body>404</body></html>', {'not_image'})

def _chunk(typ:bytes, data:bytes)->bytes:
    return struct.pack('>I', len(data)) + typ + data + struct.pack('>I', zlib.crc32(typ + data) & 0xffffffff)

@probe('data')
def p_png_decompression_bomb(c):
    "A 100000 x 100000 PNG header (10 G pixels) in a few hundred bytes."
    ihdr = struct.pack('>IIBBBBB', 100000, 100000, 8, 0, 0, 0, 0)
    png = b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', ihdr) + _chunk(b'IDAT', zlib.compress(b'\0' * 400_004)) + _chunk(b'IEND', b'')
    return one_bad(c, 'bomb.png', png, {'too_large'})

@probe('data')
def p_jpeg_huge_header(c):
    "A JPEG whose frame header claims 65000 x 65000 pixels."
    b = bytearray(jpeg(noise(64, 64)))
    i = b.find(b'\xff\xc0')
    b[i+5:i+9] = struct.pack('>HH', 65000, 65000)
    return one_bad(c, 'huge.jpg', bytes(b), {'too_large', 'truncated', 'unreadable'})

@probe('data')
def p_one_pixel_image(c): return _img(c, 'dot.png', Image.new('RGB', (1, 1)), {'too_small'})

def _img(c, name, im, want, **kw):
    root = with_data(c)
    save_image(root/'train'/'0000'/name, im, **kw)
    return clean(c, root, {f'train/0000/{name}': want})

@probe('data')
def p_cmyk_jpeg(c): return _img(c, 'cmyk.jpg', Image.fromarray(noise(48, 48, ch=4), 'CMYK'), {''})

@probe('data')
def p_16bit_png(c):
    return _img(c, 'deep.png', Image.fromarray((np.arange(48*48).reshape(48, 48) * 28).astype(np.uint16)), {''})

@probe('data')
def p_float_tiff(c):
    return _img(c, 'float.tif', Image.fromarray(np.linspace(0, 1, 48*48, dtype=np.float32).reshape(48, 48)), {''})

@probe('data')
def p_palette_png_transparency(c):
    im = Image.fromarray(noise(48, 48)).convert('P', palette=Image.ADAPTIVE, colors=16)
    return _img(c, 'pal.png', im, {''}, transparency=0)

@probe('data')
def p_rgba_png(c): return _img(c, 'rgba.png', Image.fromarray(noise(48, 48, ch=4), 'RGBA'), {''})

@probe('data')
def p_bilevel_and_la(c):
    root = with_data(c)
    save_image(root/'train'/'0000'/'bw.png', Image.fromarray(noise(48, 48, ch=1)).convert('1'))
    save_image(root/'train'/'0000'/'la.png', Image.fromarray(noise(48, 48, ch=1)).convert('LA'))
    return clean(c, root, {'train/0000/bw.png': {''}, 'train/0000/la.png': {''}})

@probe('data')
def p_animated_gif(c):
    frames = [Image.fromarray(noise(48, 48, seed=s)).convert('P') for s in range(3)]
    root = with_data(c)
    frames[0].save(root/'train'/'0000'/'anim.gif', save_all=True, append_images=frames[1:])
    return clean(c, root, {'train/0000/anim.gif': {''}})

@probe('data')
def p_symlink_self_loop(c):
    root = with_data(c)
    os.symlink('loop.jpg', root/'train'/'0000'/'loop.jpg')
    return clean(c, root, {'train/0000/loop.jpg': {'unreadable'}})

@probe('data')
def p_symlink_dangling(c):
    root = with_data(c)
    os.symlink(c.t/'gone.jpg', root/'train'/'0000'/'gone.jpg')
    return clean(c, root, {'train/0000/gone.jpg': {'unreadable'}})

@probe('data')
def p_folder_symlink_loop(c):
    "A class folder holding a link to its parent: a walk that follows links never ends."
    root = with_data(c)
    os.symlink('..', root/'train'/'0000'/'up')
    return clean(c, root, {})

@probe('data')
def p_unreadable_file(c):
    root = with_data(c)
    p = root/'train'/'0000'/'locked.jpg'
    p.write_bytes(jpeg(noise(seed=77)))
    p.chmod(0)
    root_reads = os.access(p, os.R_OK)
    res = clean(c, root, {'train/0000/locked.jpg': {''} if root_reads else {'unreadable'}})
    p.chmod(0o644)
    if root_reads: res.note = 'running as root: mode 000 does not stop root, so the file reads normally'
    return res

@probe('data')
def p_unreadable_folder(c):
    root = with_data(c)
    d = root/'train'/'0001'
    d.chmod(0)
    root_reads = os.access(d, os.R_OK)
    res = clean(c, root, {'train/0001/0001_0.jpg': {''}} if root_reads else {})
    d.chmod(0o755)
    if root_reads: res.note = 'running as root: mode 000 does not stop root'
    return res

@probe('data')
def p_non_utf8_name(c):
    root = with_data(c)
    (root/os.fsdecode(b'train/0000/caf\xe9.jpg')).write_bytes(jpeg(noise(seed=5)))
    return clean(c, root, {'train/0000/caf\\xe9.jpg': {'bad_name'}})

@probe('data')
def p_newline_in_name(c): return one_bad(c, 'two\nlines.jpg', jpeg(noise(seed=6)), {'bad_name'})

@probe('data')
def p_spaces_and_unicode_names(c):
    root = with_data(c)
    for i, n in enumerate(('with space.jpg', 'ünïcödé 漢字.jpg', ' leading.jpg', '-dash.jpg')):
        (root/'train'/'0001'/n).write_bytes(jpeg(noise(seed=300 + i)))
    res = clean(c, root, {f'train/0001/{n}': {''} for n in ('with space.jpg', 'ünïcödé 漢字.jpg', ' leading.jpg',
                                                            '-dash.jpg')})
    if res.outcome == 'OK':   # and the line-based train list keeps them whole
        lines = (c.t/'out'/'train_clean.txt').read_text('utf-8').splitlines()
        if not any(l.startswith('train/0001/ünïcödé 漢字.jpg ') for l in lines):
            return Res('WRONG', 'train_clean.txt does not list train/0001/ünïcödé 漢字.jpg')
    return res

@probe('data')
def p_named_pipe(c):
    root = with_data(c)
    os.mkfifo(root/'train'/'0000'/'pipe.jpg')
    return clean(c, root, {'train/0000/pipe.jpg': {'not_a_file'}}, timeout=60)

@probe('data')
def p_stray_and_nested_files(c):
    root = with_data(c)
    (root/'train'/'0000'/'sub').mkdir()
    (root/'train'/'0000'/'sub'/'deep.jpg').write_bytes(jpeg(noise(seed=9)))
    (root/'train'/'loose.jpg').write_bytes(jpeg(noise(seed=8)))
    (root/'README.md').write_text('notes')
    (root/'testa'/'sub').mkdir()
    (root/'testa'/'sub'/'t.jpg').write_bytes(jpeg(noise(seed=11)))
    return clean(c, root, {p: {'unexpected_path'} for p in ('train/0000/sub/deep.jpg', 'train/loose.jpg', 'README.md',
                                                             'testa/sub/t.jpg')})

@probe('data')
def p_train_txt_names_missing_files(c):
    root = with_data(c)
    with open(root/'train.txt', 'a') as f: f.write('train/0000/ghost.jpg 0\ntrain/0007/ghost2.jpg 7\n')
    return clean(c, root, {'train/0000/ghost.jpg': {'unreadable'}, 'train/0007/ghost2.jpg': {'unreadable'}})

@probe('data')
def p_train_txt_duplicate_lines(c):
    root = with_data(c)
    t = (root/'train.txt').read_text()
    (root/'train.txt').write_text(t + t)
    return clean(c, root, {'train/0000/0000_0.jpg': {''}})

@probe('data')
def p_train_txt_conflicting_labels(c):
    "One file listed twice, with labels 0 and 1."
    root = with_data(c)
    with open(root/'train.txt', 'a') as f: f.write('train/0000/0000_0.jpg 1\n')
    res = clean(c, root, {'train/0000/0000_0.jpg': ANY_REASON | {'ambiguous', 'label_conflict'}})
    return res

@probe('data')
def p_train_txt_one_column(c):
    root = with_data(c)
    with open(root/'train.txt', 'a') as f: f.write('train/0000/0000_1.jpg\n')
    return clean(c, root, names=['train.txt'])

@probe('data')
def p_train_txt_three_columns(c):
    root = with_data(c)
    with open(root/'train.txt', 'a') as f: f.write('train/0000/0000_1.jpg 0 extra\n')
    return clean(c, root, names=['train.txt'])

@probe('data')
def p_train_txt_label_not_a_number(c):
    root = with_data(c)
    (root/'train.txt').write_text((root/'train.txt').read_text().replace('0000_1.jpg 0', '0000_1.jpg zero'))
    return clean(c, root, names=['train.txt'])

@probe('data')
def p_train_txt_label_disagrees_with_folder(c):
    "train.txt gives label 99 to a file in train/0000/: two sources of the label disagree."
    root = with_data(c)
    (root/'train.txt').write_text((root/'train.txt').read_text().replace('0000_1.jpg 0', '0000_1.jpg 99'))
    return clean(c, root, {'train/0000/0000_1.jpg': ANY_REASON | {'label_mismatch', 'ambiguous'}}, names=['train.txt'])

@probe('data')
def p_train_txt_negative_label(c):
    root = with_data(c)
    (root/'train.txt').write_text((root/'train.txt').read_text().replace('0000_1.jpg 0', '0000_1.jpg -1'))
    return clean(c, root, {'train/0000/0000_1.jpg': ANY_REASON | {'label_mismatch'}}, names=['train.txt'])

@probe('data')
def p_train_txt_binary_garbage(c):
    root = with_data(c)
    (root/'train.txt').write_bytes(np.random.default_rng(0).bytes(300))
    return clean(c, root, names=['train.txt'])

@probe('data')
def p_train_txt_crlf(c):
    root = with_data(c)
    (root/'train.txt').write_bytes((root/'train.txt').read_bytes().replace(b'\n', b'\r\n'))
    return clean(c, root, {'train/0000/0000_0.jpg': {''}})

@probe('data')
def p_train_txt_is_a_folder_with_images(c):
    root = with_data(c)
    (root/'train.txt').unlink()
    (root/'train.txt').mkdir()
    (root/'train.txt'/'hidden.jpg').write_bytes(jpeg(noise(seed=3)))
    return clean(c, root, {'train.txt/hidden.jpg': ANY_REASON})

@probe('data')
def p_duplicate_image_under_two_labels(c):
    root = with_data(c)
    shutil.copyfile(root/'train'/'0000'/'0000_0.jpg', root/'train'/'0001'/'copy.jpg')
    return clean(c, root, {'train/0001/copy.jpg': {'ambiguous'}, 'train/0000/0000_0.jpg': {'ambiguous'}})

@probe('data')
def p_plain_imagefolder_with_odd_files(c):
    "An ImageFolder (no train.txt): a zero-byte file, a pipe and a stray file at the root."
    root = c.t/'data'
    for k in range(2):
        for i in range(3): save_image(root/f'class{k}'/f'{i}.jpg', Image.fromarray(noise(seed=30 + 3*k + i)))
    (root/'class0'/'zero.jpg').write_bytes(b'')
    os.mkfifo(root/'class1'/'fifo.jpg')
    (root/'stray.jpg').write_bytes(jpeg(noise(seed=99)))
    return clean(c, root, {'class0/zero.jpg': {'unreadable'}, 'class1/fifo.jpg': {'not_a_file'},
                           'stray.jpg': {'unexpected_path'}}, timeout=60)

@probe('data')
def p_papermill_stage00_on_a_bad_tree(c):
    "The notebook as a user runs it, on a tree with a zero-byte file, a truncated JPEG and a pipe."
    root = with_data(c)
    (root/'train'/'0000'/'zero.jpg').write_bytes(b'')
    (root/'train'/'0000'/'cut.jpg').write_bytes(jpeg(noise(200, 200))[:2000])
    os.mkfifo(root/'testa'/'pipe.jpg')
    return clean(c, root, {'train/0000/zero.jpg': {'unreadable'}, 'train/0000/cut.jpg': {'truncated'},
                           'testa/pipe.jpg': {'not_a_file'}}, via='papermill', timeout=240)

@probe('data')
def p_rerun_stage00_after_data_root_vanished(c):
    "Stage 00 ran; the data root is then deleted and stage 00 re-run into the same folder: the old outputs stay."
    root = with_data(c)
    r = c.call(data_clean_rows, str(root), str(c.t/'out'))
    if r.status != 'ok': return Res('UNCLEAR', f'first run failed: {r.msg}')
    shutil.rmtree(root)
    return clean(c, root)

@probe('data')
def p_odd_images_train_and_predict(c):
    "CMYK, 16-bit, float, palette, RGBA, LA, 1-bit and GIF images kept by stage 00 must train (04) and predict (05)."
    root = with_data(c)
    d, t = root/'train'/'0000', root/'testb'
    save_image(d/'cmyk.jpg', Image.fromarray(noise(48, 48, ch=4), 'CMYK'))
    save_image(d/'deep.png', Image.fromarray((np.arange(48*48).reshape(48, 48) * 28).astype(np.uint16)))
    save_image(d/'float.tif', Image.fromarray(np.linspace(0, 1, 48*48, dtype=np.float32).reshape(48, 48)))
    save_image(d/'pal.png', Image.fromarray(noise(48, 48)).convert('P', palette=Image.ADAPTIVE), transparency=0)
    save_image(root/'train'/'0001'/'rgba.png', Image.fromarray(noise(48, 48, ch=4), 'RGBA'))
    save_image(root/'train'/'0001'/'la.png', Image.fromarray(noise(48, 48, ch=1)).convert('LA'))
    save_image(root/'train'/'0001'/'bw.png', Image.fromarray(noise(48, 48, ch=1)).convert('1'))
    save_image(t/'cmyk.jpg', Image.fromarray(noise(48, 48, ch=4), 'CMYK'))
    save_image(t/'deep.png', Image.fromarray((np.arange(48*48).reshape(48, 48) * 28).astype(np.uint16)))
    (t/'zero.jpg').write_bytes(b'')
    (t/'cut.jpg').write_bytes(jpeg(noise(200, 200))[:2000])
    before = snapshot(c.t)
    def run():
        data_clean(str(root), experiment=EXP, n_workers=0)
        finetune(**{**TINY, 'bs': 4}, run='odd')
        tta_predict(EXP, train_run='odd', split='testb')
        return open_index(Path(os.environ['FGIA_OUTPUTS'])/EXP/'05_tta_predict'/'odd-testb')
    r = c.call(run, timeout=240)
    want = sorted(p.name for p in t.iterdir())
    odd = ['cmyk', 'deep', 'float', 'pal.png', 'rgba', 'la.png', 'bw.png', 'zero.jpg', 'cut.jpg']
    return verdict(c, r, before, names=odd, allowed=['outputs'],
                   check=lambda paths: '' if sorted(paths) == want else f'logits rows {sorted(paths)} != files {want}')

def open_index(folder)->list: return logits_mod.open_logits(folder).paths

@probe('data')
def p_predict_on_another_dataset(c):
    "The whole path on a dataset of one's own (not the default one): clean, fine-tune, predict testb."
    root = with_data(c)
    before = snapshot(c.t)
    def run():
        data_clean(str(root), experiment=EXP, n_workers=0)
        finetune(**{**TINY, 'bs': 4}, run='own')
        tta_predict(EXP, train_run='own', split='testb')
        return open_index(Path(os.environ['FGIA_OUTPUTS'])/EXP/'05_tta_predict'/'own-testb')
    want = sorted(p.name for p in (root/'testb').iterdir())
    return verdict(c, c.call(run, timeout=240), before, allowed=['outputs'],
                   check=lambda paths: '' if sorted(paths) == want else f'logits rows {sorted(paths)} != files {want}')

def own_outputs(c)->Path:
    """A dataset of one's own (the small tree, not the default dataset) after stage 00, with two stage-05 logits
    folders and a stage-08 scores folder for its testb written directly (float64 in, so no torch here)."""
    root = with_data(c)
    r = c.call(lambda: len(data_clean(str(root), experiment=EXP, n_workers=0)), timeout=120)
    if r.status != 'ok': raise RuntimeError(f'stage 00 on the small tree failed: {r.msg}')
    names = sorted(p.name for p in (root/'testb').iterdir())
    rng = np.random.default_rng(0)
    for m in ('a', 'b'):
        logits_mod.write_logits(c.out/'05_tta_predict'/f'{m}-testb', rng.normal(size=(len(names), 2)), names,
                                ['0000', '0001'])
    p = rng.dirichlet([1, 1], len(names))
    logits_mod.write_logits(c.out/'08_ensemble'/'testb', p, names, ['0000', '0001'], 'scores')
    return root

def not_scored(metrics:dict)->str:
    "'' unless a run record scores against answers that name none of its files (another dataset's)."
    bad = [k for k, v in metrics.items() if isinstance(v, dict) and v.get('n') and v.get('missing') == v.get('n')]
    return f'scored against answers that name none of its files: {bad}' if bad else ''

@probe('data')
def p_own_dataset_ensemble(c):
    "Stage 08 on a dataset of one's own while the default dataset's answers exist."
    own_outputs(c)
    return stage(c, lambda: ensemble_models(EXP, split='testb', weighting='equal'), pipeline=False,
                 check=lambda m: not_scored(m))

@probe('data')
def p_own_dataset_pseudo_label(c):
    "Stage 06 on a dataset of one's own while the default dataset's answers exist."
    own_outputs(c)
    return stage(c, lambda: len(pseudo_label(EXP, split='testb')), pipeline=False)

@probe('data')
def p_own_dataset_redistribute(c):
    "Stage 09 on a dataset of one's own while the default dataset's answers exist: no score against them."
    own_outputs(c)
    def run():
        redistribute_scores(EXP, split='testb')
        return core.read_run(Path(os.environ['FGIA_OUTPUTS'])/EXP/'09_redistribute'/'testb')['metrics']
    return stage(c, run, pipeline=False, check=not_scored)

@probe('data')
def p_no_test_folders_then_predict(c):
    "A data root without testa/ and testb/ (ImageFolder-like train/ only): stage 05 asked for testb."
    root = with_data(c)
    shutil.rmtree(root/'testa'), shutil.rmtree(root/'testb')
    before = snapshot(c.t)
    def run():
        data_clean(str(root), experiment=EXP, n_workers=0)
        finetune(**{**TINY, 'bs': 4}, run='x')
        return tta_predict(EXP, train_run='x', split='testb').to_dict()
    return verdict(c, c.call(run, timeout=240), before, names=['testb'], allowed=['outputs'])

@probe('data')
def p_no_train_images_then_finetune(c):
    "A data root with test folders only: stage 00 finishes; fine-tuning on it must say there is nothing to train."
    root = with_data(c)
    shutil.rmtree(root/'train'), (root/'train.txt').unlink()
    before = snapshot(c.t)
    def run():
        data_clean(str(root), experiment=EXP, n_workers=0)
        return str(finetune(**TINY, run='x'))
    return verdict(c, c.call(run, timeout=180), before, names=['train', 'manifest', 'no train'], allowed=['outputs'],
                   must_fail=True)

@probe('data')
def p_test_split_with_broken_images_predicts_every_file(c):
    "Every test file needs a row in the submission, even unreadable ones (stage 05 reads them as blank images)."
    out = with_pipeline(c)
    (c.t/'data'/'testb'/'zero.jpg').write_bytes(b'')
    (c.t/'data'/'testb'/'cut.jpg').write_bytes(jpeg(noise(200, 200))[:2000])
    before = snapshot(c.t)
    def run():
        data_clean(str(c.t/'data'), experiment=EXP, n_workers=0)
        tta_predict(EXP, train_run='vit', split='testb', plain=False)
        return open_index(out/'05_tta_predict'/'vit-testb')
    want = sorted(p.name for p in (c.t/'data'/'testb').iterdir())
    return verdict(c, c.call(run, timeout=180), before, names=['testb'],
                   allowed=['outputs/p/00_data_clean', 'outputs/p/05_tta_predict/vit-testb'],
                   check=lambda paths: '' if sorted(paths) == want else f'{len(paths)} rows for {len(want)} files')

# ====================================================================================================== 2. parameters
def stage(c, fn, *a, names=(), allowed=('outputs/p',), must_fail=False, timeout=180, pipeline=True, check=None, **kw):
    "Run a stage function on a copy of the finished pipeline (or on nothing) and judge it."
    if pipeline: with_pipeline(c)
    before = snapshot(c.t)
    r = c.call(fn, *a, timeout=timeout, **kw)
    return verdict(c, r, before, names=names, allowed=allowed, must_fail=must_fail, check=check)

FT_NEW = 'outputs/p/04_finetune/new'

def ft(c, names, must_fail=True, **kw):
    "Stage 04 (a new run 'new') with `kw` over the tiny settings."
    return stage(c, lambda: str(finetune(**{**TINY, 'run': 'new', **kw})), names=names, allowed=[FT_NEW],
                 must_fail=must_fail, timeout=180)

@probe('params')
def p_papermill_unknown_parameter_stage05(c):
    with_pipeline(c)
    before = snapshot(c.t)
    r = c.papermill('05_tta_predict', ('experiment', EXP), ('train_runs', 'vit'))
    return verdict(c, r, before, names=['train_runs'], must_fail=True)

@probe('params')
def p_papermill_soup_k_wrong_type(c):
    with_pipeline(c)
    before = snapshot(c.t)
    r = c.papermill('07_model_soup', ('experiment', EXP), ('train_run', 'vit'), ('k', 'two'))
    return verdict(c, r, before, names=['k=', "'k'", 'k must', ' k '], must_fail=True)

@probe('params')
def p_finetune_fewer_items_than_a_batch(c):
    "60 training images and bs=64: the last partial batch is dropped, so an epoch has no batch at all."
    return ft(c, ['bs'], bs=64, epochs=2)

@probe('params')
def p_finetune_epochs_zero(c): return ft(c, ['epochs'], epochs=0)

@probe('params')
def p_finetune_epochs_negative(c): return ft(c, ['epochs'], epochs=-2)

@probe('params')
def p_finetune_epochs_string(c): return ft(c, ['epochs'], epochs='3')

@probe('params')
def p_finetune_bs_zero(c): return ft(c, ['bs'], bs=0)

@probe('params')
def p_finetune_img_size_not_a_multiple_of_the_patch(c): return ft(c, ['img_size'], img_size=30)

@probe('params')
def p_finetune_valid_pct_above_one(c): return ft(c, ['valid_pct'], valid_pct=1.5)

@probe('params')
def p_finetune_arch_misspelt(c): return ft(c, ['vit_dmeo'], arch='vit_dmeo')

@probe('params')
def p_finetune_weights_missing(c): return ft(c, ['nothere.safetensors'], weights=str(c.t/'nothere.safetensors'))

def _weights(c, kind:str)->Path:
    "A bad weights file: another model's, truncated, or a pickle renamed .safetensors."
    src = CACHE['fm_out']/EXP/'04_finetune'/'vit'/'epoch_001.safetensors'
    p = c.t/f'{kind}.safetensors'
    if kind == 'truncated': p.write_bytes(src.read_bytes()[:src.stat().st_size // 2])
    elif kind == 'pickle': p.write_bytes(pickle.dumps({'w': [1., 2.]}))
    elif kind == 'garbage': p.write_bytes(b'\x00' * 4096)
    return p

@probe('params')
def p_finetune_weights_of_another_model(c):
    "A vit_demo checkpoint of stage 04 given as weights for swinv2_demo."
    src = CACHE['fm_out']/EXP/'04_finetune'/'vit'/'epoch_001.safetensors'
    return ft(c, [src.name], arch='swinv2_demo', weights=str(src))

@probe('params')
def p_finetune_weights_truncated(c): return ft(c, ['truncated.safetensors'], weights=str(_weights(c, 'truncated')))

@probe('params')
def p_finetune_weights_pickle_renamed(c): return ft(c, ['pickle.safetensors'], weights=str(_weights(c, 'pickle')))

@probe('params')
def p_finetune_weights_zeros(c): return ft(c, ['garbage.safetensors'], weights=str(_weights(c, 'garbage')))

@probe('params')
def p_finetune_manifest_missing(c): return ft(c, ['nothere.parquet'], train_manifest=str(c.t/'nothere.parquet'))

@probe('params')
def p_finetune_manifest_missing_columns(c):
    m = c.t/'bad.parquet'
    pd.DataFrame(dict(path=['a.jpg'], label=['0'])).to_parquet(m)
    return ft(c, ['bad.parquet'], train_manifest=str(m))

@probe('params')
def p_finetune_manifest_is_a_csv(c):
    m = c.t/'csv.parquet'
    m.write_text('path,label\ntrain/0000/a.jpg,0000\n')
    return ft(c, ['csv.parquet'], train_manifest=str(m))

@probe('params')
def p_finetune_pseudo_manifest_missing(c): return ft(c, ['nope.parquet'], pseudo_manifests=[str(c.t/'nope.parquet')])

@probe('params')
def p_finetune_classes_json_broken(c):
    (c.t/'classes.json').write_text('["0000", "0001"')
    return ft(c, ['classes.json'], classes=str(c.t/'classes.json'))

@probe('params')
def p_predict_train_run_misspelt(c): return stage(c, tta_predict, EXP, train_run='vti', split='testb', names=['vti'],
                                                   must_fail=True)

@probe('params')
def p_predict_split_unknown(c): return stage(c, tta_predict, EXP, train_run='vit', split='testc', names=['testc'],
                                              must_fail=True)

@probe('params')
def p_predict_use_soup_without_a_soup(c):
    return stage(c, tta_predict, EXP, train_run='vit2', split='testb', use_soup=True, names=['soup.safetensors'],
                 must_fail=True)

@probe('params')
def p_predict_scales_not_numbers(c):
    return stage(c, tta_predict, EXP, train_run='vit', split='testb', scales='big,small', names=['scales'],
                 must_fail=True)

@probe('params')
def p_predict_bs_zero(c): return stage(c, tta_predict, EXP, train_run='vit', split='testb', bs=0, names=['bs'],
                                        must_fail=True)

@probe('params')
def p_predict_manifest_missing(c):
    return stage(c, tta_predict, EXP, train_run='vit', split='testb', manifest=str(c.t/'none.parquet'),
                 names=['none.parquet'], must_fail=True)

@probe('params')
def p_predict_truncated_checkpoint(c):
    out = with_pipeline(c)
    ck = out/'04_finetune'/'vit'/'epoch_001.safetensors'
    ck.write_bytes(ck.read_bytes()[:100_000])
    return stage(c, tta_predict, EXP, train_run='vit', split='testb', names=['epoch_001.safetensors'], pipeline=False,
                 must_fail=True)

@probe('params')
def p_stage01_bs_zero(c): return stage(c, stage_dls, EXP, bs=0, names=['bs'], must_fail=True)

@probe('params')
def p_stage01_crop_misspelt(c): return stage(c, stage_dls, EXP, crop='zoom', names=['crop', 'zoom'], must_fail=True)

@probe('params')
def p_stage01_manifest_missing(c):
    return stage(c, stage_dls, EXP, manifest=str(c.t/'none.parquet'), names=['none.parquet'], must_fail=True)

def mae(c, names, must_fail=True, **kw):
    "Stage 02 on the small pipeline's images (bs 16) with `kw`."
    def run(): return mae_pretrain(EXP, **{**dict(epochs=1, max_images=64, bs=16, evaluate=False), **kw})['steps']
    return stage(c, run, names=names, must_fail=must_fail,
                 check=lambda steps: '' if steps > 0 else f'pretraining "finished" after {steps} steps')

@probe('params')
def p_mae_mask_ratio_above_one(c): return mae(c, ['mask_ratio', 'mask ratio'], mask_ratio=1.5)

@probe('params')
def p_mae_img_size_not_a_multiple(c): return mae(c, ['img_size', 'image size'], img_size=30)

@probe('params')
def p_mae_epochs_zero(c): return mae(c, ['epochs'], epochs=0)

@probe('params')
def p_mae_source_missing(c): return mae(c, ['nowhere'], source=str(c.t/'nowhere'))

@probe('params')
def p_mae_arch_unknown(c): return mae(c, ['vit_huge_demo'], arch='vit_huge_demo')

@probe('params')
def p_mae_fewer_images_than_a_batch(c):
    "64 images and bs=128: fastai drops the last partial batch, so an epoch has no step at all."
    return mae(c, ['bs'], bs=128)

@probe('params')
def p_mae_init_weights_of_a_classifier(c):
    "A stage-04 checkpoint (a classifier, head and all) as the MAE start."
    ck = CACHE['fm_out']/EXP/'04_finetune'/'vit'/'epoch_001.safetensors'
    return mae(c, [ck.name], must_fail=False, init=str(ck))

@probe('params')
def p_soup_k_zero(c): return stage(c, model_soup, EXP, train_run='vit', k=0, names=['k'], must_fail=True)

@probe('params')
def p_soup_k_negative(c): return stage(c, model_soup, EXP, train_run='vit', k=-1, names=['k'], must_fail=True)

@probe('params')
def p_soup_k_more_than_checkpoints(c):
    "k=10 with 2 checkpoints: a soup of the 2 there are is fine if the record says so."
    def check(m): return '' if m['vit']['ingredients'] == ['epoch_000.safetensors', 'epoch_001.safetensors'] else str(m)
    return stage(c, model_soup, EXP, train_run='vit', k=10, names=['k'], check=check)

@probe('params')
def p_soup_method_misspelt(c):
    return stage(c, model_soup, EXP, train_run='vit', method='greedyy', names=['method', 'greedyy'], must_fail=True)

@probe('params')
def p_soup_train_run_missing(c): return stage(c, model_soup, EXP, train_run='nope', names=['nope'], must_fail=True)

@probe('params')
def p_clean_max_pixels_zero(c):
    root = with_data(c)
    return clean(c, root, {'train/0000/0000_0.jpg': {'too_large'}}, max_pixels=0)

@probe('params')
def p_clean_negative_workers(c):
    root = with_data(c)
    return clean(c, root, names=['n_workers'], n_workers=-1)

# ================================================================================================ 3. post-processing
def _logits_copy(c, src:Path, dst_name:str)->Path:
    dst = src.with_name(dst_name)
    shutil.copytree(src, dst)
    return dst

@probe('post')
def p_ensemble_logits_with_nan(c):
    out = with_pipeline(c)
    bad = _logits_copy(c, out/'05_tta_predict'/'vit2-testb', 'nan-testb')
    a = np.load(bad/'logits.npy')
    a[3, 2] = np.nan
    np.save(bad/'logits.npy', a)
    return stage(c, ensemble_models, EXP, split='testb', run='x', names=['nan-testb'], pipeline=False,
                 models=f"{out/'05_tta_predict'/'vit-testb'},{bad}", must_fail=True)

@probe('post')
def p_ensemble_different_lengths(c):
    out = with_pipeline(c)
    bad = _logits_copy(c, out/'05_tta_predict'/'vit2-testb', 'short-testb')
    np.save(bad/'logits.npy', np.load(bad/'logits.npy')[:-2])
    idx = pd.read_csv(bad/'index.csv', dtype=str, keep_default_na=False)
    idx.iloc[:-2].to_csv(bad/'index.csv', index=False)
    return stage(c, ensemble_models, EXP, split='testb', run='x', names=['short-testb'], pipeline=False,
                 models=f"{out/'05_tta_predict'/'vit-testb'},{bad}", must_fail=True)

@probe('post')
def p_ensemble_different_class_orders(c):
    out = with_pipeline(c)
    bad = _logits_copy(c, out/'05_tta_predict'/'vit2-testb', 'perm-testb')
    cl = json.loads((bad/'classes.json').read_text())
    (bad/'classes.json').write_text(json.dumps(cl[::-1]))
    np.save(bad/'logits.npy', np.load(bad/'logits.npy')[:, ::-1].copy())
    return stage(c, ensemble_models, EXP, split='testb', run='x', names=['perm-testb', 'class'], pipeline=False,
                 models=f"{out/'05_tta_predict'/'vit-testb'},{bad}", must_fail=True)

@probe('post')
def p_ensemble_different_row_orders(c):
    out = with_pipeline(c)
    bad = _logits_copy(c, out/'05_tta_predict'/'vit2-testb', 'rows-testb')
    np.save(bad/'logits.npy', np.load(bad/'logits.npy')[::-1].copy())
    idx = pd.read_csv(bad/'index.csv', dtype=str, keep_default_na=False)
    idx.iloc[::-1].to_csv(bad/'index.csv', index=False)
    return stage(c, ensemble_models, EXP, split='testb', run='x', names=['rows-testb', 'order', 'index.csv'],
                 pipeline=False, models=f"{out/'05_tta_predict'/'vit-testb'},{bad}", must_fail=True)

@probe('post')
def p_ensemble_of_one_model(c):
    out = with_pipeline(c)
    return stage(c, ensemble_models, EXP, split='testb', run='one', pipeline=False,
                 models=str(out/'05_tta_predict'/'vit-testb'))

@probe('post')
def p_ensemble_model_folder_missing(c):
    out = with_pipeline(c)
    return stage(c, ensemble_models, EXP, split='testb', run='x', names=['gone-testb'], pipeline=False,
                 models=f"{out/'05_tta_predict'/'vit-testb'},{out/'05_tta_predict'/'gone-testb'}", must_fail=True)

@probe('post')
def p_ensemble_accs_count_mismatch(c):
    out = with_pipeline(c)
    return stage(c, ensemble_models, EXP, split='testb', run='x', weighting='winners', accs='0.5', names=['accs'],
                 pipeline=False, must_fail=True,
                 models=f"{out/'05_tta_predict'/'vit-testb'},{out/'05_tta_predict'/'vit2-testb'}")

@probe('post')
def p_ensemble_weighting_misspelt(c):
    return stage(c, ensemble_models, EXP, split='testb', run='x', weighting='equall', names=['weighting', 'equall'],
                 must_fail=True)

@probe('post')
def p_ensemble_leaderboard_missing(c):
    return stage(c, ensemble_models, EXP, split='testb', run='x', weighting='winners',
                 leaderboard=str(c.t/'testa.csv'), names=['testa.csv'], must_fail=True)

@probe('post')
def p_logits_index_shorter_than_array(c):
    out = with_pipeline(c)
    idx = pd.read_csv(out/'05_tta_predict'/'vit2-testb'/'index.csv', dtype=str, keep_default_na=False)
    idx.iloc[:-1].to_csv(out/'05_tta_predict'/'vit2-testb'/'index.csv', index=False)
    return stage(c, ensemble_models, EXP, split='testb', run='x', names=['vit2-testb'], pipeline=False, must_fail=True)

@probe('post')
def p_redistribute_K_larger_than_N(c):
    out = with_pipeline(c)
    def check(df): return '' if (out/'09_redistribute'/'testb'/'pred_results.csv').exists() else 'no submission'
    return stage(c, redistribute_scores, EXP, split='testb', method='winners', K=10_000, names=['K'], pipeline=False,
                 check=check)

@probe('post')
def p_redistribute_scores_with_nan(c):
    out = with_pipeline(c)
    s = out/'08_ensemble'/'testb'
    a = np.load(s/'scores.npy')
    a[0] = np.nan
    np.save(s/'scores.npy', a)
    return stage(c, redistribute_scores, EXP, split='testb', names=['scores.npy', str(s)], pipeline=False,
                 must_fail=True)

@probe('post')
def p_redistribute_scores_dir_missing(c):
    return stage(c, redistribute_scores, EXP, split='testb', scores_dir=str(c.t/'nope'), names=['nope'],
                 must_fail=True)

@probe('post')
def p_redistribute_answers_malformed(c):
    (c.t/'answers.csv').write_text('this is not, a csv of\nfilename and labels\n')
    return stage(c, redistribute_scores, EXP, split='testb', answers=str(c.t/'answers.csv'), names=['answers.csv'])

@probe('post')
def p_pseudo_rule_misspelt(c):
    return stage(c, pseudo_label, EXP, split='testb', rule='quot', names=['rule'], must_fail=True)

@probe('post')
def p_pseudo_threshold_above_one(c):
    "threshold=2 keeps nothing: fine if it says so (an empty manifest with the count 0)."
    return stage(c, pseudo_label, EXP, split='testb', threshold=2.0, names=['threshold'],
                 check=lambda df: '')

@probe('post')
def p_pseudo_split_not_in_manifest(c):
    "Scores of testb used to pseudo-label split='testa': the rows are not testa's."
    return stage(c, pseudo_label, EXP, split='testa', scores_dir=str(c.t/'outputs'/EXP/'08_ensemble'/'testb'),
                 names=['testa'], must_fail=True)

# =============================================================================================== 4. recipes (fgia run)
RECIPE = """experiment: {exp}
params: {{valid_pct: 0, num_workers: 0}}
steps:
  - {{name: clean, notebook: 00_data_clean, params: {{data_root: '{data}', n_workers: 0}}}}
  - {{name: vit, notebook: 04_finetune, params: {{arch: vit_demo, head: linear, epochs: 2, max_items: 64, bs: 16, img_size: 32, run: vit}}}}
  - {{name: predict, notebook: 05_tta_predict, params: {{train_run: vit, split: testb, flip: {flip}}}}}
  - {{name: ensemble, notebook: 08_ensemble, params: {{split: testb, models: '{{out}}/05_tta_predict/vit-testb', weighting: equal}}}}
  - {{name: redistribute, notebook: 09_redistribute, params: {{split: testb}}}}
"""

def recipe(c, exp='r', flip='true', text=None)->Path:
    p = c.probe/f'{exp}.yaml'
    p.write_text(text if text is not None else RECIPE.format(exp=exp, data=CACHE['fm'], flip=flip))
    return p

def recipe_fails(c, text, names, *extra):
    p = c.probe/'bad.yaml'
    p.write_text(text)
    before = snapshot(c.t)
    return verdict(c, c.fgia('run', p, *extra, timeout=120), before, names=names, must_fail=True)

@probe('recipe')
def p_recipe_bad_yaml(c): return recipe_fails(c, 'experiment: x\nsteps:\n  - {name: a, notebook: 00_data_clean\n', ['bad.yaml'])

@probe('recipe')
def p_recipe_tab_indented(c): return recipe_fails(c, 'experiment: x\nsteps:\n\t- {name: a}\n', ['bad.yaml'])

@probe('recipe')
def p_recipe_is_a_list(c): return recipe_fails(c, '- a\n- b\n', ['bad.yaml'])

@probe('recipe')
def p_recipe_missing_file(c):
    before = snapshot(c.t)
    return verdict(c, c.fgia('run', c.t/'nope.yaml', timeout=60), before, names=['nope.yaml'], must_fail=True)

@probe('recipe')
def p_recipe_unknown_notebook(c):
    return recipe_fails(c, 'experiment: x\nsteps:\n  - {name: a, notebook: 04_finetuning}\n', ['04_finetuning'])

@probe('recipe')
def p_recipe_unknown_placeholder(c):
    return recipe_fails(c, "experiment: x\nsteps:\n  - {name: a, notebook: 09_redistribute, params: {scores_dir: '{nosuch}/x'}}\n",
                        ['nosuch'])

@probe('recipe')
def p_recipe_unknown_var_option(c):
    return recipe_fails(c, 'experiment: x\nvars: {a: 1}\nsteps:\n  - {name: a, notebook: 09_redistribute}\n', ['nosuch'],
                        '--var', 'nosuch=3')

@probe('recipe')
def p_recipe_unknown_until(c):
    return recipe_fails(c, 'experiment: x\nsteps:\n  - {name: a, notebook: 09_redistribute}\n', ['nosuch'],
                        '--until', 'nosuch')

@probe('recipe')
def p_recipe_param_wrong_type(c):
    return recipe_fails(c, "experiment: x\nsteps:\n  - {name: a, notebook: 04_finetune, params: {epochs: three}}\n",
                        ['epochs'])

@probe('recipe')
def p_recipe_unknown_param(c):
    return recipe_fails(c, "experiment: x\nsteps:\n  - {name: a, notebook: 04_finetune, params: {epoch: 3}}\n",
                        ['epoch'])

@probe('recipe')
def p_recipe_step_fails_midway(c):
    "A step that fails (epochs: -1): the recipe must stop there, naming the step and the parameter."
    text = RECIPE.format(exp='r', data=CACHE['fm'], flip='true').replace('epochs: 2', 'epochs: -1')
    p = recipe(c, text=text)
    before = snapshot(c.t)
    return verdict(c, c.fgia('run', p, '--until', 'vit'), before, names=['epochs'], allowed=['outputs'], must_fail=True)

UNINTERRUPTED: dict = {}   # the uninterrupted run's result hashes, and its folder (later probes continue in it)

def code_state()->str:
    "A hash of the package and the notebooks: a recipe re-runs every step after a change (other sessions edit too)."
    h = hashlib.sha1()
    for f in sorted([*(ROOT/'fgia_nb').glob('*.py'), *(ROOT/'nbs').rglob('*.ipynb')]): h.update(f.read_bytes())
    return h.hexdigest()

def results(out:Path)->dict:
    "The files a recipe run ends with that must not depend on interruptions: submission, logits, scores."
    return {str(f.relative_to(out)): hashlib.sha1(f.read_bytes()).hexdigest()
            for f in [out/'09_redistribute'/'testb'/'pred_results.csv', out/'05_tta_predict'/'vit-testb'/'logits.npy',
                      out/'08_ensemble'/'testb'/'scores.npy']}

def same_as_uninterrupted(out:Path)->str:
    "'' if the run in `out` ended with the uninterrupted run's results, else what differs (or why it cannot be told)."
    if UNINTERRUPTED.get('code') != code_state(): return 'the code changed since the uninterrupted run'
    got = results(out)
    diff = [k for k in got if got[k] != UNINTERRUPTED['results'].get(k)]
    return f'the rerun differs from an uninterrupted run in {diff}' if diff else ''

@probe('recipe')
def p_recipe_uninterrupted(c):
    "The tiny recipe, start to end: the reference for the interrupted runs."
    before, code = snapshot(c.t), code_state()
    r = c.fgia('run', recipe(c))
    res = verdict(c, r, before, allowed=['outputs'])
    if r.status == 'ok':
        UNINTERRUPTED.update(results=results(c.t/'outputs'/'r'), code=code, ctx=c)
        c.keep = True
    return res

@probe('recipe')
def p_recipe_edit_parameter_then_rerun(c):
    "recipe_uninterrupted's finished run; predict's flip changed: predict, ensemble, redistribute re-run, no other."
    if 'ctx' not in UNINTERRUPTED: return Res('SKIPPED', 'needs recipe_uninterrupted to have finished')
    c = UNINTERRUPTED['ctx']
    if UNINTERRUPTED['code'] != code_state(): return Res('SKIPPED', 'the code changed since recipe_uninterrupted')
    rec = recipe(c, flip='false')
    before = snapshot(c.t)
    out = 'outputs/r'
    r = c.fgia('run', rec)
    res = verdict(c, r, before, allowed=[f'{out}/05_tta_predict', f'{out}/08_ensemble', f'{out}/09_redistribute',
                                         f'{out}/recipe'])
    if res.outcome == 'OK':
        ran = re.findall(r'\] (\w+) \(', r.out)
        if ran != ['predict', 'ensemble', 'redistribute']: return Res('WRONG', f're-ran {ran}')
        flip = core.read_run(c.t/out/'05_tta_predict'/'vit-testb')['params']['flip']
        if flip is not False: return Res('WRONG', f'predict record says flip={flip}')
        res.msg = f're-ran {ran}; clean and vit untouched'
    return res

@probe('recipe')
def p_recipe_read_only_outputs(c):
    "recipe_uninterrupted's finished run made read-only; the user changes a parameter back and runs again."
    if 'ctx' not in UNINTERRUPTED: return Res('SKIPPED', 'needs recipe_uninterrupted to have finished')
    c = UNINTERRUPTED['ctx']
    rec = recipe(c, flip='true')
    if not mount_ro(c.t/'outputs'): return Res('SKIPPED', 'a read-only bind mount is not allowed here')
    try:
        before = snapshot(c.t)
        return verdict(c, c.fgia('run', rec, timeout=120), before, names=['outputs', 'Read-only', 'read-only'],
                       must_fail=True)
    finally: subprocess.run(['umount', str(c.t/'outputs')])

def start_and_wait(c, args, until, timeout=600):
    "Start `fgia` and wait until the file `until` exists; the Popen (or None if it ended first)."
    p = subprocess.Popen([str(BIN/'fgia'), *map(str, args)], cwd=ROOT, env={**os.environ, **c.env},
                         stdout=open(c.log, 'a'), stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    while not until.exists():
        if p.poll() is not None or time.time() - t0 > timeout:
            _killpg(p.pid)
            return None
        time.sleep(0.05)
    return p

def interrupted(c, sig, step_file):
    """The tiny recipe interrupted by `sig` (sent to fgia's process group, as a terminal's Ctrl-C is) once `step_file`
    exists, then run again: every JSON whole, nothing left behind, the result an uninterrupted run's."""
    if not UNINTERRUPTED: return Res('SKIPPED', 'needs recipe_uninterrupted to have finished')
    rec = recipe(c)
    out = c.t/'outputs'/'r'
    p = start_and_wait(c, ['run', rec], out/step_file)
    if p is None: return Res('SKIPPED', f'the recipe ended before {step_file} appeared')
    os.killpg(p.pid, sig)
    try: p.wait(timeout=300)
    except subprocess.TimeoutExpired:
        _killpg(p.pid)
        return Res('HANG', f'fgia still running 300 s after {signal.Signals(sig).name}')
    time.sleep(3)   # an orphaned kernel notices its parent is gone
    name = signal.Signals(sig).name
    if p.returncode == 0:
        return Res('WRONG', f'{name} once {step_file} existed did not stop `fgia run`: it went on and finished, rc 0')
    state = {n.removesuffix('.json'): json.loads((out/'recipe'/'steps'/n).read_text()).get('status')
             for n in sorted(os.listdir(out/'recipe'/'steps')) if n.endswith('.json')}
    broken = [str(f.relative_to(c.t)) for f in out.rglob('*.json') if not f.name.startswith('.') and not _json_ok(f)]
    if broken: return Res('LOST', f'unreadable JSON after the {name}: {broken[:3]}')
    before = snapshot(c.t)
    r = c.fgia('run', rec)
    res = verdict(c, r, before, allowed=['outputs/r'])
    if res.outcome != 'OK': return res
    if left := [str(f.relative_to(out)) for f in out.rglob('*') if TEMP_NAME.search(f.name)]:
        return Res('WRONG', f'the rerun finished but left the killed run\'s temporaries: {left[:3]}')
    if diff := same_as_uninterrupted(out): return Res('SKIPPED' if 'code changed' in diff else 'WRONG', diff)
    return Res('OK', f'rc {p.returncode} after {name} (steps {state}); the rerun equals an uninterrupted run')

def _json_ok(f:Path)->bool:
    try: json.loads(f.read_text()); return True
    except Exception: return False

@probe('recipe')
def p_recipe_sigkill_mid_finetune_then_rerun(c):
    return interrupted(c, signal.SIGKILL, '04_finetune/vit/epoch_000.safetensors')

@probe('recipe')
def p_recipe_ctrl_c_mid_finetune_then_rerun(c):
    return interrupted(c, signal.SIGINT, '04_finetune/vit/epoch_000.safetensors')

@probe('recipe')
def p_recipe_ctrl_c_mid_predict_then_rerun(c):
    return interrupted(c, signal.SIGINT, '05_tta_predict/vit-testb/run.json')

def mount_ro(path:Path)->bool:
    ok = subprocess.run(['mount', '--bind', str(path), str(path)], capture_output=True).returncode == 0
    if ok and subprocess.run(['mount', '-o', 'remount,bind,ro', str(path)], capture_output=True).returncode:
        subprocess.run(['umount', str(path)])
        return False
    return ok

@probe('recipe')
def p_recipe_concurrent_runs(c):
    "Two `fgia run` of one experiment at once: the second must say the first holds it."
    rec = recipe(c)
    p = start_and_wait(c, ['run', rec], c.t/'outputs'/'r'/'recipe'/'steps'/'clean.json', timeout=120)
    if p is None: return Res('SKIPPED', 'the first run ended too soon')
    try:
        os.killpg(p.pid, signal.SIGSTOP)   # frozen while the second runs: the snapshot sees only the second's doing
        before = snapshot(c.t)
        r = c.fgia('run', rec, timeout=60)
        res = verdict(c, r, before, names=['another fgia run', '.lock'], must_fail=True)
    finally:
        _killpg(p.pid)
        p.wait()
    return res

def tmpfs(path:Path, size:str)->bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                          capture_output=True).returncode == 0

def fill(path:Path, leave:int):
    "Fill the file system of `path` until about `leave` bytes are free."
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(path/'.filler', 'wb') as f:
        n = max(0, free - leave)
        while n > 0:
            k = min(n, 1 << 20)
            try: f.write(b'\0' * k); f.flush()
            except OSError: break
            n -= k

@probe('recipe')
def p_recipe_disk_full_then_space_freed(c):
    "The recipe on a 4 MB outputs disk fails (a checkpoint is 6.6 MB); given room, the rerun equals an uninterrupted run."
    if not UNINTERRUPTED: return Res('SKIPPED', 'needs recipe_uninterrupted to have finished')
    if not tmpfs(c.t/'outputs', '4m'): return Res('SKIPPED', 'mounting a tmpfs is not allowed here')
    try:
        rec = recipe(c)
        before = snapshot(c.t)
        r = c.fgia('run', rec)
        res = verdict(c, r, before, names=['No space left', 'space'], allowed=['outputs'], must_fail=True)
        if res.outcome != 'OK': return res
        first = res.msg
        subprocess.run(['mount', '-o', 'remount,size=200m', str(c.t/'outputs')], check=True)
        before = snapshot(c.t)
        r = c.fgia('run', rec)
        res = verdict(c, r, before, allowed=['outputs/r'])
        if res.outcome != 'OK': return res
        if diff := same_as_uninterrupted(c.t/'outputs'/'r'):
            return Res('SKIPPED' if 'code changed' in diff else 'WRONG', diff)
        return Res('OK', f'{first} | the rerun with room equals an uninterrupted run')
    finally: subprocess.run(['umount', '-l', str(c.t/'outputs')])

# ====================================================================================== 5. full disk, stage by stage
def full_disk(c, fn, *a, leaves=(0, 12_000, 40_000, 200_000), allowed=(), **kw)->Res:
    """Re-run a stage over the finished pipeline's outputs on a nearly full disk (several amounts of room left, each
    from a fresh copy): each run either succeeds or fails naming the full disk, and leaves the old outputs whole."""
    if not tmpfs(c.t/'outputs', '64m'): return Res('SKIPPED', 'mounting a tmpfs is not allowed here')
    try:
        msgs = []
        for leave in leaves:
            for p in list((c.t/'outputs').iterdir()): shutil.rmtree(p) if p.is_dir() else p.unlink()
            for p in list(c.t.iterdir()):
                if p.name not in ('outputs', '_probe', '_tmp'): shutil.rmtree(p) if p.is_dir() else p.unlink()
            with_pipeline(c)
            before = snapshot(c.t)
            fill(c.t/'outputs', leave)
            r = c.call(fn, *a, timeout=180, **kw)
            (c.t/'outputs'/'.filler').unlink()
            res = verdict(c, r, before, names=['No space left', 'Errno 28', 'disk full'], allowed=allowed)
            msgs.append(f'{leave // 1000} kB free: {res.outcome} {res.msg[:90]}')
            if res.outcome != 'OK': return Res(res.outcome, f'with {leave} bytes free: {res.msg}', res.note)
            if r.status == 'error' and not any(t in r.msg for t in (str(c.t), 'outputs')):
                return Res('UNCLEAR', f'with {leave} bytes free: no path named: {r.msg[:200]}')
        return Res('OK', ' | '.join(msgs))
    finally: subprocess.run(['umount', '-l', str(c.t/'outputs')])

@probe('disk')
def p_full_disk_stage00_rerun(c):
    def rerun():   # new images since the last run, so every output changes
        for i in range(40): (c.t/'data'/'testa'/f'new_{i}.jpg').write_bytes(jpeg(noise(seed=500 + i)))
        return len(data_clean(str(c.t/'data'), experiment=EXP, n_workers=0))
    return full_disk(c, rerun, allowed=['outputs/p/00_data_clean'])

@probe('disk')
def p_full_disk_finetune_new_run(c):
    return full_disk(c, lambda: str(finetune(**TINY, run='new')), allowed=['outputs/p/04_finetune/new'],
                     leaves=(12_000, 3_000_000))

@probe('disk')
def p_full_disk_predict_rerun(c):
    return full_disk(c, lambda: tta_predict(EXP, train_run='vit', split='testb', flip=False, plain=False).to_dict(),
                     allowed=['outputs/p/05_tta_predict/vit-testb'])

@probe('disk')
def p_full_disk_ensemble_rerun(c):
    return full_disk(c, lambda: ensemble_models(EXP, split='testb', weighting='equal', average='logit'),
                     allowed=['outputs/p/08_ensemble/testb'])

@probe('disk')
def p_full_disk_redistribute(c):
    "Stage 09 twice: once to make a submission, then again (another method) on a full disk."
    def two():
        redistribute_scores(EXP, split='testb', method='argmax')
        return 'ok'
    return full_disk(c, two, allowed=['outputs/p/09_redistribute/testb'])

@probe('disk')
def p_full_disk_soup_rerun(c):
    return full_disk(c, lambda: model_soup(EXP, train_run='vit', k=1), allowed=['outputs/p/07_model_soup/vit'],
                     leaves=(12_000, 3_000_000))

@probe('disk')
def p_read_only_outputs_stage00(c):
    root = with_data(c)
    (c.t/'outputs').mkdir()
    if not mount_ro(c.t/'outputs'): return Res('SKIPPED', 'a read-only bind mount is not allowed here')
    try:
        before = snapshot(c.t)
        r = c.call(data_clean_rows, str(root), None, timeout=60)
        return verdict(c, r, before, names=[str(c.t/'outputs')], must_fail=True)
    finally: subprocess.run(['umount', str(c.t/'outputs')])

@probe('disk')
def p_read_only_outputs_ensemble(c):
    with_pipeline(c)
    if not mount_ro(c.t/'outputs'): return Res('SKIPPED', 'a read-only bind mount is not allowed here')
    try:
        before = snapshot(c.t)
        r = c.call(ensemble_models, EXP, split='testb', run='new', timeout=60)
        return verdict(c, r, before, names=[str(c.t/'outputs')], must_fail=True)
    finally: subprocess.run(['umount', str(c.t/'outputs')])

# =========================================================================================== 6. fgia-default-data
def dd(c, *args, timeout=180)->Run: return c.sh(BIN/'fgia-default-data', *args, timeout=timeout)

@probe('default_data')
def p_default_data_dest_is_a_file(c):
    (c.t/'taken').write_text('my notes')
    before = snapshot(c.t)
    return verdict(c, dd(c, '--dest', c.t/'taken', '--n-max', '20'), before, names=['taken'], must_fail=True)

@probe('default_data')
def p_default_data_misspelt_option(c):
    before = snapshot(c.t)
    return verdict(c, dd(c, '--dest', c.t/'d', '--n_max', '20'), before, names=['--n_max'], must_fail=True)

@probe('default_data')
def p_default_data_n_max_zero(c):
    before = snapshot(c.t)
    return verdict(c, dd(c, '--dest', c.t/'d', '--n-max', '0'), before, names=['n_max', 'n-max'], must_fail=True,
                   allowed=['d', 'd_answers'])

@probe('default_data')
def p_default_data_read_only_parent(c):
    (c.t/'ro').mkdir()
    if not mount_ro(c.t/'ro'): return Res('SKIPPED', 'a read-only bind mount is not allowed here')
    try:
        before = snapshot(c.t)
        return verdict(c, dd(c, '--dest', c.t/'ro'/'d', '--n-max', '20'), before, names=[str(c.t/'ro')],
                       must_fail=True)
    finally: subprocess.run(['umount', str(c.t/'ro')])

@probe('default_data')
def p_default_data_killed_during_forced_rebuild(c):
    "A built dataset; `--force` rebuild killed mid-way: the old one stays whole; a rerun rebuilds the same bytes."
    r = dd(c, '--dest', c.t/'d', '--n-max', '20')
    if r.status != 'ok': return Res('UNCLEAR', f'first build failed: {r.msg}')
    before = snapshot(c.t)
    p = subprocess.Popen([str(BIN/'fgia-default-data'), '--dest', str(c.t/'d'), '--n-max', '20', '--force'],
                         env={**os.environ, **c.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    t0 = time.time()
    while not any(n.startswith('d.building-') for n in os.listdir(c.t)) and time.time() - t0 < 60: time.sleep(0.05)
    time.sleep(1.0)
    _killpg(p.pid)
    p.wait()
    after = snapshot(c.t)
    if lost := damage(before, after):
        return Res('LOST', f'the killed rebuild changed the dataset: {lost[:3]}')
    r = dd(c, '--dest', c.t/'d', '--n-max', '20', '--force')
    res = verdict(c, r, before, allowed=['d', 'd_answers'])
    if res.outcome != 'OK': return res
    now = snapshot(c.t)
    diff = [k for k, v in before.items() if k.startswith('d') and now.get(k) != v]
    if diff: return Res('WRONG', f'the rebuild differs from the first build: {diff[:3]}')
    if left := [n for n in os.listdir(c.t) if 'building' in n]:
        return Res('WRONG', f"the rebuild finished but left the killed build's temporary folders: {left}")
    return Res('OK', 'the killed rebuild left the dataset whole; the rebuild gave the same bytes')

# ================================================================================================== main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', help='CSV of the results (default: a temp file)')
    ap.add_argument('--only', help='run only the probes whose name matches this regular expression')
    ap.add_argument('--keep', action='store_true', help='keep the temp folders (their path is printed)')
    a = ap.parse_args()
    # a terminal's Ctrl-C reaches a program whose SIGINT is the default; started in the background of a script, this
    # process (and so every program it starts) would ignore it, and the Ctrl-C probes would test nothing
    signal.signal(signal.SIGINT, signal.default_int_handler)
    base = Path(tempfile.mkdtemp(prefix='fgia-probe-'))
    out_csv = Path(a.out) if a.out else Path(tempfile.mkstemp(prefix='fgia-probe-', suffix='.csv')[1])
    todo = [(g, n, f) for g, n, f in PROBES if not a.only or re.search(a.only, n)]
    t0 = time.time()
    print(f'fgia_nb probe: {len(todo)} probes; temp folders under {base}', flush=True)
    setup(base)
    print(f'set-up (a tiny pipeline to start from) done in {time.time() - t0:.0f} s', flush=True)
    rows = []
    for i, (group, name, f) in enumerate(todo, 1):
        t = base/'probes'/f'{i:03d}_{name}'
        t.mkdir(parents=True)
        c, t1 = Ctx(t), time.time()
        try: res = f(c)
        except Exception as e:
            res = Res('UNCLEAR', f'PROBE SCRIPT ERROR {type(e).__name__}: {e}', traceback.format_exc()[-500:])
        rows.append(dict(group=group, probe=name, outcome=res.outcome, seconds=round(time.time() - t1, 1),
                         message=first_line(res.msg), note=res.note, folder=str(t)))
        print(f'{i:3d} {res.outcome:8s} {group:12s} {name:50s} {first_line(res.msg)[:160]}'
              + (f'  [{res.note[:160]}]' if res.note else ''), flush=True)
        if not a.keep and res.outcome == 'OK' and not c.keep: shutil.rmtree(t, ignore_errors=True)
    with open(out_csv, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    n = {o: sum(r['outcome'] == o for r in rows) for o in OUTCOMES}
    tried = len(rows) - n['SKIPPED']
    print(f"\ninputs tried {tried}: OK {n['OK']}, UNCLEAR {n['UNCLEAR']}, WRONG {n['WRONG']}, LOST {n['LOST']}, "
          f"HANG {n['HANG']}; skipped {n['SKIPPED']}; {time.time() - t0:.0f} s")
    if not a.keep:
        for d in ('small', 'fm'): shutil.rmtree(base/d, ignore_errors=True)
        if 'ctx' in UNINTERRUPTED: shutil.rmtree(UNINTERRUPTED['ctx'].t, ignore_errors=True)
        if not list((base/'probes').iterdir()): shutil.rmtree(base, ignore_errors=True)
    print(f'results: {out_csv}' + ('' if a.keep or not base.exists() else f'; the non-OK probes\' folders are under {base}'))

if __name__ == '__main__': main()
