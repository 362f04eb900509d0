"Issue 15 part 5: training curves and parameters to TensorBoard or MLflow; progress bars where a person watches, never in papermill's output."
import json, os, sys, subprocess
import nbformat, pandas as pd, pytest, torch
from safetensors.torch import load_file
from fgia_nb.core import project_root
from fgia_nb.finetune import finetune, finetune_config, fit_run, list_checkpoints
from fgia_nb.recipe import step_notebook

NBS = project_root()/'nbs'
SMALL = dict(epochs=1, bs=16, valid_pct=0.2, max_items=48, seed=3)

@pytest.fixture(scope='module')
def manifest(tmp_path_factory, make_manifest): return make_manifest(tmp_path_factory.mktemp('data'))

def train(manifest, out, **kw):
    return fit_run(finetune_config('cnn_demo', train_manifest=str(manifest), out_dir=str(out), **{**SMALL, **kw}), quiet=True)

def model_weights(out): return {k: v for k, v in load_file(str(list_checkpoints(out)[-1])).items() if k.startswith('model.')}

def test_tensorboard_curves_and_params(manifest, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = train(manifest, tmp_path/'tb', tracker='tensorboard')
    ea = EventAccumulator(str(out/'tensorboard'), size_guidance={'tensors': 0, 'scalars': 0}).Reload()
    m, b = pd.read_csv(out/'metrics.csv'), pd.read_csv(out/'batches.csv')
    assert [(e.step, round(e.value, 5)) for e in ea.Scalars('epoch/train_loss')] == [(0, round(m.train_loss[0], 5))]
    assert {'epoch/valid_loss', 'epoch/accuracy', 'train_loss', 'lr'} <= set(ea.Tags()['scalars'])
    assert [e.step for e in ea.Scalars('train_loss')] == b['iter'].tolist()
    text = ea.Tensors('params/text_summary')[0].tensor_proto.string_val[0].decode()
    assert '| arch | cnn_demo |' in text and '| tracker | tensorboard |' in text
    assert b'cnn_demo' in ea.PluginTagToContent('hparams')['_hparams_/session_start_info']   # the HPARAMS tab
    # the tracker changes nothing: an untracked run trains the same weights, and may continue the tracked run's folder
    plain = train(manifest, tmp_path/'plain')
    wa, wb = model_weights(out), model_weights(plain)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    before = list_checkpoints(out)[-1].read_bytes()
    train(manifest, out, tracker='')   # RESUME_FREE: a finished run with another tracker is not trained again
    assert list_checkpoints(out)[-1].read_bytes() == before

def test_mlflow_curves_and_params(manifest, tmp_path):
    pytest.importorskip('mlflow')
    from mlflow.tracking import MlflowClient
    out = train(manifest, tmp_path/'ml', tracker='mlflow')
    c = MlflowClient((out/'mlruns').absolute().as_uri())
    runs = c.search_runs([c.get_experiment_by_name('demo').experiment_id])
    assert [r.info.run_name for r in runs] == ['cnn_demo'] and runs[0].info.status == 'FINISHED'
    rid, m = runs[0].info.run_id, pd.read_csv(out/'metrics.csv')
    assert [(h.step, round(h.value, 5)) for h in c.get_metric_history(rid, 'epoch/train_loss')] == [(0, round(m.train_loss[0], 5))]
    assert len(c.get_metric_history(rid, 'train_loss')) == len(pd.read_csv(out/'batches.csv'))
    assert runs[0].data.params['arch'] == 'cnn_demo' and runs[0].data.params['lr'] == '0.003'

def test_missing_or_unknown_tracker_fails_first(manifest, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'mlflow', None)   # as if not installed
    kw = dict(train_manifest=str(manifest), out_dir=str(tmp_path/'x'), **SMALL)
    with pytest.raises(ImportError, match=r"tracker='mlflow' needs the mlflow package.*pip install mlflow-skinny"):
        finetune('cnn_demo', tracker='mlflow', **kw)
    with pytest.raises(ValueError, match=r"tracker must be '' \(off\), 'tensorboard' or 'mlflow', got 'wandb'"):
        finetune('cnn_demo', tracker='wandb', **kw)
    assert not (tmp_path/'x').exists()

def html_outputs(outputs): return [o for o in outputs if 'text/html' in o.get('data', {})]

def test_papermill_run_has_no_progress_bars(manifest, tmp_path):
    "What a recipe step runs of stage 04, under papermill with its log on: curves go to TensorBoard, no bar anywhere."
    src, executed, out = tmp_path/'step.ipynb', tmp_path/'out.ipynb', tmp_path/'run'
    nbformat.write(step_notebook(NBS/'04_finetune.ipynb'), src)
    params = dict(arch='cnn_demo', train_manifest=str(manifest), out_dir=str(out), tracker='tensorboard', **SMALL)
    args = [a for k, v in params.items() for a in ('-p', k, str(v))]
    r = subprocess.run([sys.executable, '-m', 'papermill', str(src), str(executed), *args, '--log-output',
                        '--cwd', str(NBS)], env={**os.environ, 'FGIA_OUTPUTS': str(tmp_path/'outputs')},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '<progress' not in r.stdout + r.stderr and '|█' not in r.stdout + r.stderr
    outs = [o for c in nbformat.read(executed, as_version=4).cells if c.cell_type == 'code' for o in c.outputs]
    assert not [o for o in html_outputs(outs) if '<progress' in o['data']['text/html']]
    assert list((out/'tensorboard').glob('events.out.tfevents.*'))

def test_interactive_kernel_shows_progress_bars(manifest, tmp_path):
    "A kernel driven by a frontend that takes input (JupyterLab) gets fastai's bar by default; the old default hid it."
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name='python3', env={**os.environ, 'FGIA_OUTPUTS': str(tmp_path/'outputs')})
    try:
        code = (f"from fgia_nb.finetune import finetune\nfinetune('cnn_demo', train_manifest={str(manifest)!r}, "
                f"out_dir={str(tmp_path/'run')!r}, **{SMALL!r})")
        mid, html = kc.execute(code, allow_stdin=True), []
        while True:
            msg = kc.get_iopub_msg(timeout=120)
            if msg['parent_header'].get('msg_id') != mid: continue
            if msg['msg_type'] == 'error': pytest.fail('\n'.join(msg['content']['traceback'])[-3000:])
            if msg['msg_type'] in ('display_data', 'update_display_data'): html.append(msg['content'].get('data', {}).get('text/html', ''))
            if msg['msg_type'] == 'status' and msg['content']['execution_state'] == 'idle': break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert any('<progress' in h for h in html)
    assert list_checkpoints(tmp_path/'run')
