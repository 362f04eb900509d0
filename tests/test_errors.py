"Issue 12 item 10: bad input that ended in a traceback now stops early with a message naming what is wrong."
import os, re, subprocess, sys, textwrap
from pathlib import Path
import numpy as np, pytest
from fgia_nb.logits import logits_writer

def run_py(code:str, env:dict):
    "Run `code` in a fresh Python (so hub settings from `env` apply from the start): (rc, output)."
    r = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env={**os.environ, **env}, capture_output=True,
                       text=True, timeout=600)
    return r.returncode, r.stdout + r.stderr

@pytest.fixture
def read_only():
    """Factory: `read_only(top, *inner)` makes the folders read-only for this process: mode 0555 and, as root (whom
    modes do not stop), `top` bind-mounted read-only (skipped where mounting is not allowed). Undone afterwards."""
    done, mounted = [], []
    def make(top:Path, *inner:Path):
        for p in (*inner, top):
            p.chmod(0o555)
            done.append(p)
        if os.geteuid() != 0: return
        if subprocess.run(['mount', '--bind', str(top), str(top)], capture_output=True).returncode:
            pytest.skip('running as root, and a read-only bind mount is not allowed here')
        mounted.append(top)
        if subprocess.run(['mount', '-o', 'remount,bind,ro', str(top)], capture_output=True).returncode:
            pytest.skip('running as root, and a read-only bind mount is not allowed here')
    yield make
    for p in mounted: subprocess.run(['umount', str(p)], check=True)
    for p in done: p.chmod(0o755)

def test_hub_weights_offline(tmp_path):
    "`-p arch swinv2_l` without internet ended in huggingface_hub's LocalEntryNotFoundError traceback."
    rc, out = run_py("""
        from fgia_nb.finetune import finetune_config, build_model
        build_model(finetune_config('swinv2_l'), 5)
        """, dict(HF_HOME=str(tmp_path/'hf'), HF_HUB_OFFLINE='1', PYTHONWARNINGS='ignore'))
    assert rc != 0
    assert ("FileNotFoundError: 'swinv2_l' needs the pretrained weights "
            "swinv2_large_window12to24_192to384.ms_in22k_ft_in1k") in out, out[-3000:]
    assert f"not in the hub cache {tmp_path/'hf'/'hub'}" in out and '`-p weights FILE`' in out, out[-3000:]
    assert 'LocalEntryNotFoundError' not in out

@pytest.mark.parametrize('exists', [False, True])
def test_read_only_outputs_folder_finetune(tmp_path, make_manifest, read_only, exists):
    "A read-only outputs folder failed on a temporary file's name (or mid-way); now it is named before any work."
    from fgia_nb.finetune import finetune_config, fit_run
    man = make_manifest(tmp_path)
    ro = tmp_path/'outputs'
    (ro/'run').mkdir(parents=True) if exists else ro.mkdir()
    read_only(ro, *([ro/'run'] if exists else []))
    with pytest.raises(PermissionError, match=f"cannot write the run folder {re.escape(str(ro/'run'))}"):
        fit_run(finetune_config('vit_demo', train_manifest=str(man), out_dir=str(ro/'run')), quiet=True)
    assert os.listdir(ro/'run' if exists else ro) == []   # nothing written

def test_read_only_outputs_folder_redistribute(tmp_path, read_only, monkeypatch):
    "Stage 09 into a read-only outputs folder: named before any work."
    from fgia_nb.redistribute import redistribute_scores
    scores = tmp_path/'scores'
    p = np.full((4, 2), 0.5, np.float32)
    with logits_writer(scores, [f'{i}.jpg' for i in range(4)], ['0000', '0001'], 'scores') as w: w(p)
    ro = tmp_path/'outputs'
    out = ro/'x'/'09_redistribute'/'testb'
    out.mkdir(parents=True)
    read_only(ro, out, out.parent, ro/'x')
    monkeypatch.setenv('FGIA_OUTPUTS', str(ro))
    with pytest.raises(PermissionError, match=f'cannot write the outputs folder {re.escape(str(out))}'):
        redistribute_scores('x', scores_dir=str(scores))
    assert os.listdir(out) == []

def test_misspelt_method_fails_first(tmp_path):
    "Stage 09's `method` misspelt gave a KeyError after all the work; now before it, listing the methods."
    from fgia_nb.redistribute import redistribute_scores
    with pytest.raises(ValueError, match=r"method must be one of \['prior_match', 'winners', 'argmax'\]"):
        redistribute_scores('x', scores_dir=str(tmp_path/'nowhere'), method='prior_matching')

@pytest.fixture
def full_disk(tmp_path):
    "A folder on a 1 MB tmpfs filled to the last byte (skipped where mounting is not allowed); unmounted afterwards."
    d = tmp_path/'disk'
    d.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(d)],
                                           capture_output=True).returncode:
        pytest.skip('mounting a tmpfs is not allowed here')
    try:
        with open(d/'filler', 'wb') as f:
            while True: f.write(bytes(4096)); f.flush()
    except OSError: pass
    yield d
    subprocess.run(['umount', '-l', str(d)], check=True)

@pytest.mark.parametrize('writer', ['run_record', 'checkpoint', 'soup'])
def test_full_disk_names_the_file(full_disk, writer):
    "A write to a full disk said only '[Errno 28] No space left on device', or safetensors' '(os error 28)': no file."
    import torch
    from fgia_nb.core import RunRecord
    from fgia_nb.finetune import save_checkpoint
    from fgia_nb.model_soup import save_streamed
    dest = {'run_record': full_disk/'run'/'run.json', 'checkpoint': full_disk/'epoch_000.safetensors',
            'soup': full_disk/'soup.safetensors'}[writer]
    with pytest.raises(OSError, match=re.escape(f"No space left on device: '{dest}'")):
        if writer == 'run_record':
            with RunRecord(dest.parent, 'x'): pass
        elif writer == 'checkpoint': save_checkpoint(dest, torch.nn.Linear(64, 64))
        else: save_streamed({'w': torch.ones(4096)}, dest)
    assert sorted(p.name for p in full_disk.rglob('*') if p.is_file()) == ['filler']   # no temporary left

@pytest.mark.parametrize('kw,msg', [(dict(method='greedyy'), "method must be 'uniform' or 'greedy', not 'greedyy'"),
                                    (dict(k='two'), "k='two' (str) does not fit int"),
                                    (dict(k=0), 'k=0: a soup takes the last k checkpoints')])
def test_soup_settings_fail_first(tmp_path, monkeypatch, kw, msg):
    "Stage 07 souped uniformly with a misspelt `method`, souped every checkpoint with k=0, and k='two' gave `-'two'`."
    from fgia_nb.model_soup import model_soup
    from fgia_nb.testing import toy_checkpoints
    monkeypatch.setenv('FGIA_OUTPUTS', str(tmp_path))
    (tmp_path/'x'/'04_finetune'/'r').mkdir(parents=True)
    toy_checkpoints(tmp_path/'x'/'04_finetune'/'r', n=2)
    with pytest.raises((ValueError, TypeError), match=re.escape(msg)): model_soup('x', train_run='r', **kw)
    assert not (tmp_path/'x'/'07_model_soup').exists()

def test_negative_scan_workers_fail_first(tmp_path):
    "Stage 00 with n_workers=-1 failed in the scan with concurrent.futures' 'max_workers must be greater than 0'."
    from fgia_nb.data_clean import clean_data
    with pytest.raises(ValueError, match='n_workers=-1: scan processes are 0'):
        clean_data(tmp_path, tmp_path/'out', n_workers=-1, progress=False)
    assert not (tmp_path/'out').exists()

def test_full_disk_names_a_short_array_write(full_disk):
    "np.save of a large array onto a full disk said only '800000 requested and 0 written' (the probe's stage-00 thumbs)."
    from fgia_nb.core import atomic_path
    dest = full_disk/'thumbs.npy'
    os.truncate(full_disk/'filler', os.path.getsize(full_disk/'filler') - 16384)   # room for part of the array
    with pytest.raises(OSError, match=re.escape(f"only part of '{dest}' could be written (is its disk full?)")):
        with atomic_path(dest) as t: np.save(t, np.zeros(100_000))
    assert sorted(p.name for p in full_disk.iterdir()) == ['filler']

def test_full_disk_redistribute_keeps_the_last_submission(tmp_path, monkeypatch):
    """Stage 09 rerun on a nearly full disk wrote its files one by one: pred_results.csv was replaced, then the plot
    failed. Now the run folder is replaced whole or not at all (on a real tmpfs; skipped where mounting is not allowed)."""
    from fgia_nb.redistribute import redistribute_scores
    scores, outputs = tmp_path/'scores', tmp_path/'outputs'
    with logits_writer(scores, [f'{i:03d}.jpg' for i in range(40)], ['0000', '0001', '0002', '0003'], 'scores') as w:
        w(np.random.default_rng(0).dirichlet([1]*4, 40).astype(np.float32))
    outputs.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(outputs)],
                                           capture_output=True).returncode:
        pytest.skip('mounting a tmpfs is not allowed here')
    monkeypatch.setenv('FGIA_OUTPUTS', str(outputs))
    try:
        redistribute_scores('x', scores_dir=str(scores), method='winners')
        out = outputs/'x'/'09_redistribute'/'testb'
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != 'run.json'}
        try:
            with open(outputs/'filler', 'wb') as f:
                while True: f.write(bytes(4096)); f.flush()
        except OSError: pass
        os.truncate(outputs/'filler', os.path.getsize(outputs/'filler') - 12_288)   # room for run.json, not the rest
        with pytest.raises(OSError, match=r"No space left on device: '.*outputs"):
            redistribute_scores('x', scores_dir=str(scores), method='argmax')
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != 'run.json'} == before
        assert sorted(p.name for p in out.parent.iterdir()) == ['testb']   # no temporary folder left
    finally: subprocess.run(['umount', '-l', str(outputs)], check=True)
