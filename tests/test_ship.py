"`fgia predict` and `fgia export` as a user runs them, on tiny `cnn_demo` models trained for one epoch."
import json, subprocess, sys
import numpy as np, pandas as pd, pytest, torch, timm
from pathlib import Path
from PIL import Image
from timm.data import resolve_data_config, create_transform
from fgia_nb.finetune import finetune, load_model as load_checkpoint
from fgia_nb.data_clean import to_rgb
from fgia_nb.predict import load_model
from fgia_nb.recipe import main

CLASSES = ['0000', '0001', '0002']

@pytest.fixture(scope='module')
def runs(tmp_path_factory, make_manifest):
    "A linear and an ArcFace `cnn_demo`, one epoch each, and a folder of the manifest's test-like images plus oddities."
    t = tmp_path_factory.mktemp('ship')
    man = make_manifest(t, counts=(12, 10, 8))
    out = {h: finetune('cnn_demo', epochs=1, bs=8, head=h, train_manifest=str(man), out_dir=str(t/f'run_{h}'),
                       valid_pct=0., num_workers=0, seed=0) for h in ('linear', 'arcface')}
    imgs = t/'images'
    (imgs/'sub').mkdir(parents=True)
    for i, p in enumerate(sorted((t/'data'/'train').rglob('*.jpg'))[::5]):
        (imgs/('sub' if i % 2 else '.')/p.name).write_bytes(p.read_bytes())
    Image.new('LA', (24, 30), (90, 200)).save(imgs/'grey_alpha.png')
    (imgs/'broken.jpg').write_bytes(b'\xff\xd8 this is not a jpeg')
    return t, out, imgs

def fgia(*argv):
    "`fgia ARGV...` in this process (`fgia_nb.recipe.main`)."
    return main([str(a) for a in argv])

def _fgia(*argv):
    "`fgia ARGV...` in a fresh interpreter, as a user types it; (returncode, stdout, stderr)."
    r = subprocess.run([sys.executable, '-c', 'from fgia_nb.recipe import main; main()', *map(str, argv)],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr

def _read(path):
    return pd.read_csv(path, dtype={f'label_{j}': str for j in range(3)}, keep_default_na=False, na_values=[''])

def _timm_probs(model, files):
    "Flip-averaged softmax of each file, read the training way (stage 00's `to_rgb`), transformed by timm from the export's config."
    tf = create_transform(**resolve_data_config(model=model))
    x = torch.stack([tf(to_rgb(Image.open(f))) for f in files])
    with torch.no_grad(): return ((model(x) + model(x.flip(-1))) / 2).softmax(1).numpy()

def test_predict_export_round_trip(runs, tmp_path):
    t, out, imgs = runs
    # export both heads with `fgia export`; the linear one is a plain timm model
    for h in out: fgia('export', out[h], tmp_path/f'exp_{h}')
    cfg = json.loads((tmp_path/'exp_linear'/'config.json').read_text())
    assert (cfg['architecture'], cfg['num_classes'], cfg['label_names'], cfg['head']) == ('cnn_demo', 3, CLASSES, 'linear')
    assert cfg['pretrained_cfg']['input_size'] == [3, 28, 28] and cfg['pretrained_cfg']['crop_mode'] == 'squash'
    x = torch.rand(4, 3, 28, 28)
    tm = timm.create_model(f'local-dir:{tmp_path/"exp_linear"}', pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(tm(x), load_checkpoint(out['linear']/'epoch_000.safetensors')(x))
        assert torch.equal(load_model(tmp_path/'exp_arcface')(x), load_checkpoint(out['arcface']/'epoch_000.safetensors')(x))
    # predict a folder with the run folder, and with the export: the same table
    fgia('predict', imgs, '-m', out['linear'], '--topk', '2', '-o', tmp_path/'run.csv', '--no-progress')
    fgia('predict', imgs, '-m', tmp_path/'exp_linear', '--topk', '2', '-o', tmp_path/'exp.json', '--no-progress')
    a = _read(tmp_path/'run.csv')
    b = pd.read_json(tmp_path/'exp.json', orient='index', dtype=False).rename_axis('filename').reset_index()
    assert list(a.columns) == ['filename', 'label_0', 'label_1', 'prob_0', 'prob_1', 'error']
    assert a.filename.tolist() == b.filename.tolist() == sorted(p.relative_to(imgs).as_posix() for p in imgs.rglob('*.*'))
    assert a.label_0.fillna('').tolist() == b.label_0.fillna('').tolist()
    np.testing.assert_allclose(a.prob_0, b.prob_0.astype(float), atol=1e-6)
    # only the broken file is an error row; the grey image with transparency is classified
    ok = a.error.isna()
    assert a.loc[~ok, 'filename'].tolist() == ['broken.jpg'] and a.loc[~ok, 'error'].str.startswith('unreadable').all()
    assert a.loc[~ok, ['label_0', 'prob_0']].isna().all().all()
    # the top-2 are timm's own rebuild's best two classes, in order, with its probabilities (flip TTA)
    p = _timm_probs(tm, [imgs/f for f in a.filename[ok]])
    top = np.argsort(-p, 1)[:, :2]
    assert a.loc[ok, 'label_0'].tolist() == [CLASSES[i] for i in top[:, 0]]
    assert a.loc[ok, 'label_1'].tolist() == [CLASSES[i] for i in top[:, 1]]
    np.testing.assert_allclose(a.loc[ok, ['prob_0', 'prob_1']].to_numpy(), np.take_along_axis(p, top, 1), atol=3e-3)

def test_ensemble_file_list_and_errors(runs, tmp_path):
    t, out, imgs = runs
    names = sorted(p.relative_to(imgs).as_posix() for p in imgs.rglob('*.jpg') if p.name != 'broken.jpg')[:4]
    (tmp_path/'list.txt').write_text('\n'.join([str(imgs/n) for n in names] + [str(imgs/'broken.jpg'), 'gone.jpg']) + '\n')
    rc, so, se = _fgia('predict', tmp_path/'list.txt', '-m', out['linear'], '-m', out['arcface'], '--weights', '0.6,0.4',
                       '--topk', '3', '--no-flip', '--device', 'cpu', '-o', tmp_path/'ens.parquet', '--no-progress')
    assert rc == 0, se
    assert 'broken.jpg: unreadable' in se and 'gone.jpg: missing' in se
    e = pd.read_parquet(tmp_path/'ens.parquet').reset_index()
    assert e.error[:4].tolist() == [''] * 4 and e.error[4].startswith('unreadable: ') and e.error[5] == 'missing: no such file'
    assert e.filename.tolist()[4:] == [str(imgs/'broken.jpg'), 'gone.jpg'] and e.prob_0[4:].isna().all()
    singles = [fgia('predict', tmp_path/'list.txt', '-m', out[h], '--topk', '3', '--no-flip', '--no-progress', '-o',
                     tmp_path/f'{h}.csv') for h in ('linear', 'arcface')]
    def dense(d):   # (N, C) probabilities back from the top-3 columns (C = 3)
        L, P = d[[f'label_{j}' for j in range(3)]].to_numpy(), d[[f'prob_{j}' for j in range(3)]].to_numpy(float)
        return np.stack([(P * (L == c)).sum(1) for c in CLASSES], 1)[:4]
    np.testing.assert_allclose(dense(e), 0.6 * dense(singles[0]) + 0.4 * dense(singles[1]), atol=3e-3)
    assert (np.diff(e[['prob_0', 'prob_1', 'prob_2']].to_numpy()[:4], axis=1) <= 0).all()   # best first

def test_cli_help_and_bad_input(runs, tmp_path, capsys):
    t, out, imgs = runs
    with pytest.raises(SystemExit) as e: fgia('predict', '--help')
    so = capsys.readouterr().out
    assert e.value.code == 0 and so.startswith('usage: fgia predict') and all(f in so for f in ('--topk', '--weights', '--format', '--device'))
    with pytest.raises(SystemExit, match='one weight per model'):
        fgia('predict', imgs, '-m', out['linear'], '--weights', '0.5,0.5')
    with pytest.raises(SystemExit, match='not a fine-tuned checkpoint|cannot read this checkpoint'):
        fgia('export', imgs/'grey_alpha.png', tmp_path/'x')
    fgia('export', out['arcface'], tmp_path/'e')
    with pytest.raises(SystemExit, match='already an export'): fgia('export', tmp_path/'e', tmp_path/'y')
