"A papermill parameter a stage does not take stops the notebook before any work, naming it (issue 12 item 1)."
import os, sys, subprocess
from pathlib import Path
import nbformat
from fgia_nb.core import project_root
from fgia_nb.recipe import step_notebook

NBS = project_root()/'nbs'

def papermill(nb, out, *params, env):
    "Run papermill on `nb` with `-p` pairs `params`; its return code and output."
    args = [a for k, v in params for a in ('-p', k, v)]
    r = subprocess.run([sys.executable, '-m', 'papermill', str(nb), str(out), *args, '--cwd', str(NBS)],
                       env=env, capture_output=True, text=True, timeout=900)
    return r.returncode, r.stdout + r.stderr

def stopped_at_check(executed):
    "Did the run stop at the `check_injected` cell, running no cell after it?"
    cells = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == 'code']
    i = next(i for i, c in enumerate(cells) if c.source.startswith('check_injected('))
    return cells[i].outputs[-1].get('ename') == 'ValueError' and all(c.execution_count is None for c in cells[i+1:])

def env_for(tmp_path):
    return {**os.environ, 'FGIA_OUTPUTS': str(tmp_path/'outputs')}

def test_unknown_parameter_does_not_delete_a_folder(tmp_path):
    "The issue's reproduction: stage 00's cleanup removed the folder an unknown `-p bad` named."
    victim = tmp_path/'victim'
    victim.mkdir()
    (victim/'keep.txt').write_text('precious')
    rc, out = papermill(NBS/'00_data_clean.ipynb', tmp_path/'out.ipynb', ('bad', str(victim)), env=env_for(tmp_path))
    assert rc != 0
    assert "unknown parameter(s) ['bad']: data_clean takes [" in out, out[-3000:]
    assert (victim/'keep.txt').read_text() == 'precious'
    assert stopped_at_check(tmp_path/'out.ipynb')   # before any work

def test_parameter_that_rebinds_a_lesson_variable(tmp_path):
    "`-p epoch 1` rebinds a global of 04_finetune's lessons; it used to train anyway and end with rc 0."
    rc, out = papermill(NBS/'04_finetune.ipynb', tmp_path/'out.ipynb', ('epoch', '1'), env=env_for(tmp_path))
    assert rc != 0
    assert "unknown parameter(s) ['epoch']: finetune takes [" in out, out[-3000:]
    assert stopped_at_check(tmp_path/'out.ipynb')

def test_recipe_step_notebook_checks_too(tmp_path):
    "What a recipe step runs (`step_notebook`) keeps the guard: an unknown name stops it before any work."
    src = tmp_path/'step.ipynb'
    nbformat.write(step_notebook(NBS/'04_finetune.ipynb'), src)
    rc, out = papermill(src, tmp_path/'out.ipynb', ('epoch', '1'), env=env_for(tmp_path))
    assert rc != 0
    assert "unknown parameter(s) ['epoch']: finetune takes [" in out, out[-3000:]
    assert stopped_at_check(tmp_path/'out.ipynb')
