"Stage 00 on inputs a new user may have (issue 12 items 2, 5-9): every file gets a row and a reason, no crash."
import os, sys, json, signal, subprocess
from pathlib import Path
import numpy as np, pandas as pd, pytest
import nbformat
from PIL import Image
from fgia_nb.core import project_root
from fgia_nb.data_clean import clean_data, read_manifest

NB = project_root()/'nbs'/'00_data_clean.ipynb'

def jpegs(d:Path, n:int=5, seed:int=0):
    "`n` different random-noise JPEGs in folder `d`."
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n): Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(d/f'img_{i}.jpg')

def train_list(out:Path)->list:
    "`train_clean.txt` as `(path, label)` pairs, checking every line has both."
    lines = (out/'train_clean.txt').read_bytes().decode('utf-8').split('\n')
    assert lines[-1] == ''
    pairs = [ln.rsplit(' ', 1) for ln in lines[:-1]]
    assert all(len(p) == 2 and p[1].isdigit() for p in pairs), lines
    return pairs

def test_plain_imagefolder(tmp_path):
    "Item 2: two class folders of 5 JPEGs, no image shared: `clean_data` raised UFuncTypeError."
    for i, c in enumerate('ab'): jpegs(tmp_path/'data'/c, seed=i)
    df = clean_data(tmp_path/'data', tmp_path/'out', n_workers=0, progress=False)
    assert (df.status == 'ok').all() and len(df) == 10
    assert json.loads((tmp_path/'out'/'classes.json').read_text()) == ['a', 'b']
    assert len(train_list(tmp_path/'out')) == 10

def test_bad_file_names(tmp_path):
    "Item 5: a non-UTF-8 name stopped the run (UnicodeEncodeError); a newline split its line in train_clean.txt."
    root = tmp_path/'data'
    for i, c in enumerate('ab'): jpegs(root/c, seed=i)
    good = (root/'a'/'img_0.jpg').read_bytes()
    (root/os.fsdecode(b'a/caf\xe9.jpg')).write_bytes(good)
    (root/'b'/'new\nline 1.jpg').write_bytes(good)
    df = clean_data(root, tmp_path/'out', n_workers=0, progress=False)
    bad = df[df.reason == 'bad_name'].set_index('path')
    assert sorted(bad.index) == ['a/caf\\xe9.jpg', 'b/new\nline 1.jpg']
    assert (bad.status == 'dropped').all() and bad.detail.str.contains('file name').all()
    pairs = train_list(tmp_path/'out')
    assert len(pairs) == 10 and all((root/p).is_file() for p, _ in pairs)
    assert len(read_manifest(tmp_path/'out')) == 12

def test_stray_files(tmp_path):
    "Item 6: a subfolder became a class, train/ became a class, a file at the root was missing from the manifest."
    root = tmp_path/'data'
    jpegs(root/'train'/'0000')
    jpegs(root/'train'/'0001', seed=1)
    jpegs(root/'testa', n=3, seed=2)
    jpegs(root/'train'/'0000'/'subdir', n=1, seed=3)
    jpegs(root/'elsewhere', n=1, seed=4)
    (root/'train'/'stray.jpg').write_bytes((root/'testa'/'img_0.jpg').read_bytes())
    (root/'notes.txt').write_text('a file at the data root')
    df = clean_data(root, tmp_path/'out', n_workers=0, progress=False)
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob('*') if p.is_file()}
    assert set(df.path) == on_disk
    assert json.loads((tmp_path/'out'/'classes.json').read_text()) == ['0000', '0001']
    stray = df[df.reason == 'unexpected_path']
    assert sorted(stray.path) == ['elsewhere/img_0.jpg', 'notes.txt', 'train/0000/subdir/img_0.jpg', 'train/stray.jpg']
    assert stray.label.isna().all() and (stray.status == 'dropped').all()
    assert len(train_list(tmp_path/'out')) == 10

def test_high_bit_depth_thumbnails(tmp_path):
    "Item 7: stage 00 hashed a float TIFF as black; its thumbnail must be the gradient it holds."
    ramp = np.linspace(0, 1, 64*64, dtype=np.float32).reshape(64, 64)
    jpegs(tmp_path/'data'/'a')
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path/'data'/'a'/'ramp16.png')
    Image.fromarray(ramp).save(tmp_path/'data'/'a'/'ramp.tif')
    df = clean_data(tmp_path/'data', tmp_path/'out', n_workers=0, progress=False)
    thumbs = np.load(tmp_path/'out'/'thumbs.npy')
    for name in ('ramp16.png', 'ramp.tif'):
        t = thumbs[df.index[df.path == f'a/{name}'][0]].astype(int)
        assert t[0, 0] < 20 and t[-1, -1] > 235 and (np.diff(t.mean(1)) > 0).all(), (name, t.mean(1))

def run_killed_after(args, timeout, **kw):
    "`subprocess.run` in its own process group, the whole group killed (workers too) if it outlasts `timeout`."
    p = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         **kw)
    try: out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError(f'still running after {timeout} s')
    return p.returncode, out

def test_named_pipe(tmp_path):
    "Item 8: a named pipe among the images hung stage 00 forever; only regular files may be opened."
    root = tmp_path/'data'
    jpegs(root/'a')
    os.mkfifo(root/'a'/'pipe.jpg')
    os.mkfifo(root/'pipe_at_root')
    code = ('import sys; from fgia_nb.data_clean import data_clean; '
            'm = data_clean(sys.argv[1], sys.argv[2], n_workers=2); print(dict(zip(m.path, m.reason)))')
    rc, out = run_killed_after([sys.executable, '-c', code, str(root), str(tmp_path/'out')], timeout=180)
    assert rc == 0, out[-3000:]
    assert "'a/pipe.jpg': 'not_a_file'" in out and "'pipe_at_root': 'unexpected_path'" in out, out[-3000:]

def test_failed_run_leaves_no_temp_folder(tmp_path):
    "Item 9: a stage-00 notebook run that failed after its lessons made their images left them in /tmp/tmpXXXX."
    nb = nbformat.read(NB, as_version=4)
    upto = [c.get('id') for c in nb.cells].index('b67b40bf')   # the cell that writes one file per kind of trouble
    nb.cells = [c for c in nb.cells[:upto+1] if c.cell_type == 'code']
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('a cell failed')"))
    src, tmp = tmp_path/'failing.ipynb', tmp_path/'tmp'
    tmp.mkdir()
    nbformat.write(nb, src)
    env = {**os.environ, 'TMPDIR': str(tmp), 'FGIA_OUTPUTS': str(tmp_path/'outputs'), 'PYTHONWARNINGS': 'ignore'}
    rc, out = run_killed_after([sys.executable, '-m', 'papermill', str(src), str(tmp_path/'out.ipynb'),
                                '--cwd', str(NB.parent)], timeout=600, env=env)
    assert rc != 0 and 'a cell failed' in out, out[-3000:]
    assert [p.name for p in tmp.iterdir() if p.name.startswith('tmp')] == []

def test_failed_rerun_keeps_the_last_outputs_whole(tmp_path, monkeypatch):
    """A re-run that failed while writing its outputs (a full disk after the manifest) left the new manifest and
    thumbnails beside the last run's class list and training list."""
    import fgia_nb.data_clean as dc
    for i, c in enumerate('ab'): jpegs(tmp_path/'data'/c, seed=i)
    clean_data(tmp_path/'data', tmp_path/'out', n_workers=0, progress=False)
    outputs = lambda: {p.name: p.read_bytes() for p in (tmp_path/'out').iterdir() if p.name != 'run.json'}
    before = outputs()
    jpegs(tmp_path/'data'/'c', seed=2)   # a class more since: every output changes
    real = dc.atomic_write_text
    def disk_full_at_the_train_list(path, text):
        if Path(path).name == 'train_clean.txt': raise OSError(28, 'No space left on device')
        return real(path, text)
    monkeypatch.setattr(dc, 'atomic_write_text', disk_full_at_the_train_list)
    with pytest.raises(OSError, match='No space left on device'):
        clean_data(tmp_path/'data', tmp_path/'out', n_workers=0, progress=False)
    assert outputs() == before
    assert json.loads((tmp_path/'out'/'run.json').read_text())['status'] == 'failed'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data', 'out']   # no temporary folder left

def test_train_txt_disagreements(tmp_path):
    """Probe: a file listed twice with labels 0 and 1, a label 99 in train/0000/, a train.txt that is a folder: the
    files were kept under an invented class (0099), or left out of the manifest."""
    root = tmp_path/'data'
    jpegs(root/'train'/'0000')
    jpegs(root/'train'/'0001', seed=1)
    (root/'train.txt').write_text(''.join(f'train/0000/img_{i}.jpg 0\n' for i in range(5)) +
                                  'train/0000/img_0.jpg 0\ntrain/0000/img_1.jpg 1\n'     # a repeat, a conflict
                                  + 'train/0001/img_0.jpg 99\n')                          # a mismatch
    df = clean_data(root, tmp_path/'out', n_workers=0, progress=False).set_index('path')
    assert df.loc['train/0000/img_0.jpg', 'reason'] == ''
    assert df.loc['train/0000/img_1.jpg', ['status', 'reason', 'detail']].tolist() == [
        'dropped', 'label_conflict', 'train.txt gives it labels 0 and 1']
    assert df.loc['train/0001/img_0.jpg', ['status', 'reason', 'detail']].tolist() == [
        'dropped', 'label_mismatch', 'train.txt gives it label 99, its class folder 0001']
    assert json.loads((tmp_path/'out'/'classes.json').read_text()) == ['0000', '0001']
    (root/'train.txt').unlink()
    (root/'train.txt').mkdir()
    (root/'train.txt'/'hidden.jpg').write_bytes((root/'train'/'0000'/'img_0.jpg').read_bytes())
    with pytest.warns(UserWarning, match='train.txt is not a regular file'):
        df = clean_data(root, tmp_path/'out', n_workers=0, progress=False).set_index('path')
    assert df.loc['train.txt/hidden.jpg', 'reason'] == 'unexpected_path'
    assert 'labels come from the class folders' in df.loc['train.txt/hidden.jpg', 'detail']
    assert (df.reason[df.index.str.startswith('train/')] == '').all() and len(df) == 11

def test_default_data_stale_builds(tmp_path):
    """Probe: `fgia-default-data --force` killed mid-build left `<dest>.building-<pid>`, which the next build kept;
    `--n-max 0` was accepted; a forced build over a user's file must not replace it."""
    from fgia_nb.sources import make_default_dataset
    small = dict(n_max=60, n_testa=5, n_testb=5, seed=1)
    dest = make_default_dataset(tmp_path/'d', **small)
    dead = subprocess.Popen(['true'])
    dead.wait()
    live = subprocess.Popen(['sleep', '60'])
    try:
        for name in (f'd.building-{dead.pid}', f'd_answers.building-{dead.pid}', f'd.building-{live.pid}'):
            (tmp_path/name/'train').mkdir(parents=True)
        make_default_dataset(tmp_path/'d', force=True, **small)
        assert sorted(p.name for p in tmp_path.iterdir()) == ['d', f'd.building-{live.pid}', 'd_answers']
    finally: live.kill(); live.wait()
    assert json.loads((dest/'dataset.json').read_text()) == json.loads((tmp_path/'d_answers'/'dataset.json').read_text())
    with pytest.raises(ValueError, match='n_max'): make_default_dataset(tmp_path/'e', n_max=0)
    (tmp_path/'taken').write_text('my notes')
    with pytest.raises(NotADirectoryError, match='taken exists and is not a folder'):
        make_default_dataset(tmp_path/'taken', force=True, **small)
    assert (tmp_path/'taken').read_text() == 'my notes'
