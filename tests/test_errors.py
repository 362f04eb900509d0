"Issue 12 item 10: bad input that ended in a traceback now stops early with a message naming what is wrong."
import os, shutil, stat, subprocess, sys, tempfile, textwrap
from pathlib import Path
import numpy as np, pytest
from fgia_nb.logits import logits_writer

NOBODY = 65534

def run_py(code:str, env:dict, as_nobody:bool=False):
    "Run `code` in a fresh Python; as the unprivileged user `nobody` when asked and we are root. (rc, output)"
    def drop():
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    pre = drop if as_nobody and os.geteuid() == 0 else None
    r = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env={**os.environ, **env}, capture_output=True,
                       text=True, timeout=600, preexec_fn=pre)
    return r.returncode, r.stdout + r.stderr

@pytest.fixture
def shared():
    "A folder every user can read (pytest's tmp_path is root's alone), with a writable home for the subprocess."
    d = Path(tempfile.mkdtemp(prefix='fgia-errors-'))
    d.chmod(0o755)
    (d/'home').mkdir()
    (d/'home').chmod(0o777)
    yield d
    for p in d.rglob('*'):
        if p.is_dir(): p.chmod(0o755)
    shutil.rmtree(d)

def user_env(d:Path)->dict:
    return dict(HOME=str(d/'home'), MPLCONFIGDIR=str(d/'home'/'mpl'), HF_HOME=str(d/'home'/'hf'),
                PYTHONWARNINGS='ignore')

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
def test_read_only_outputs_folder_finetune(shared, make_manifest, exists):
    "A read-only outputs folder failed on a temporary file's name (or mid-way); now it is named before any work."
    man = make_manifest(shared)
    ro = shared/'outputs'
    (ro/'run').mkdir(parents=True) if exists else ro.mkdir()
    for p in (ro/'run', ro) if exists else (ro,): p.chmod(0o555)
    target = ro/'run' if exists else ro
    rc, out = run_py(f"""
        from fgia_nb.finetune import finetune_config, fit_run
        fit_run(finetune_config('vit_demo', train_manifest='{man}', out_dir='{ro/'run'}'), quiet=True)
        """, user_env(shared), as_nobody=True)
    assert rc != 0
    assert f"PermissionError: cannot write the run folder {ro/'run'}" in out, out[-3000:]
    assert os.listdir(target) == []   # nothing written

def test_read_only_outputs_folder_redistribute(shared):
    "Stage 09 into a read-only outputs folder: named before any work."
    scores = shared/'scores'
    p = np.full((4, 2), 0.5, np.float32)
    with logits_writer(scores, [f'{i}.jpg' for i in range(4)], ['0000', '0001'], 'scores') as w: w(p)
    ro = shared/'outputs'
    (ro/'x'/'09_redistribute'/'testb').mkdir(parents=True)
    for q in [ro/'x'/'09_redistribute'/'testb', ro/'x'/'09_redistribute', ro/'x', ro]: q.chmod(0o555)
    rc, out = run_py(f"""
        from fgia_nb.redistribute import redistribute_scores
        redistribute_scores('x', scores_dir='{scores}')
        """, {**user_env(shared), 'FGIA_OUTPUTS': str(ro)}, as_nobody=True)
    assert rc != 0
    assert f"PermissionError: cannot write the outputs folder {ro/'x'/'09_redistribute'/'testb'}" in out, out[-3000:]
    assert os.listdir(ro/'x'/'09_redistribute'/'testb') == []

def test_misspelt_method_fails_first(tmp_path):
    "Stage 09's `method` misspelt gave a KeyError after all the work; now before it, listing the methods."
    from fgia_nb.redistribute import redistribute_scores
    with pytest.raises(ValueError, match=r"method must be one of \['prior_match', 'winners', 'argmax'\]"):
        redistribute_scores('x', scores_dir=str(tmp_path/'nowhere'), method='prior_matching')
