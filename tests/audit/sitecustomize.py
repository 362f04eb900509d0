"""Loaded at start-up by every Python process whose PYTHONPATH starts with this folder (tests/test_train_ddp.py, tests/test_post_ddp.py).

When `FGIA_AUDIT_DIR` names a folder, the process records through an audit hook every file operation that writes
under it (open for writing, rename with the size of the file renamed, delete), and at exit writes them to
`$FGIA_AUDIT_LOG/writes-rank<RANK>.json`.
Only processes started with a `RANK` (the ranks of `accelerate launch`) write a log."""
import os, sys, json, atexit

_dir, _log, _rank = os.environ.get('FGIA_AUDIT_DIR'), os.environ.get('FGIA_AUDIT_LOG'), os.environ.get('RANK')
_writes, _off = [], [False]

def _audit(event, args):
    if _off[0] or event not in ('open', 'os.rename', 'os.remove') or not isinstance(args[0], str): return
    p = os.path.abspath(args[0])
    if not p.startswith(_dir + os.sep): return
    if event == 'open':
        mode, flags = args[1], args[2] or 0
        if not ((mode and any(c in mode for c in 'wax+')) or flags & (os.O_WRONLY | os.O_RDWR)): return
    if event == 'os.rename':
        size = f' ({os.path.getsize(p)} bytes)' if os.path.isfile(p) else ''
        dst = f' -> {os.path.relpath(str(args[1]), _dir)}{size}'
    else: dst = ''
    _writes.append(f'{event} {os.path.relpath(p, _dir)}{dst}')

def _dump():
    _off[0] = True
    with open(os.path.join(_log, f'writes-rank{_rank}.json'), 'w') as f: json.dump(_writes, f)

if _dir and _log and _rank is not None:
    _dir = os.path.abspath(_dir)
    sys.addaudithook(_audit)
    atexit.register(_dump)
