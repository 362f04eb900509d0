"""Bring your own data: `recipes/custom.yaml` end to end on an ImageFolder of real photographs (scikit-image's), and
the clear errors a dataset the recipe cannot run on gets."""
import os, sys, json, subprocess
from pathlib import Path
import pandas as pd, pytest
from fgia_nb.core import project_root, read_run
from fgia_nb.testing import photo_imagefolder

FGIA = str(Path(sys.executable).parent/'fgia')
RECIPE = str(project_root()/'recipes'/'custom.yaml')

def fgia(*args, env):
    return subprocess.run([FGIA, *args], cwd=project_root(), env=env, capture_output=True, text=True, timeout=1500)

@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    "The custom recipe run once on the photographs: (data root, experiment folder, the run's output)."
    t = tmp_path_factory.mktemp('custom')
    root = photo_imagefolder(t/'photos')
    env = {**os.environ, 'FGIA_OUTPUTS': str(t/'outputs'), 'HF_HUB_OFFLINE': '1'}
    # Few epochs: the test checks the flow, not the accuracy (the README's figures come from the default recipe)
    p = fgia('run', RECIPE, '--var', f'data={root}', '--var', 'epochs=4', '--experiment', 'photos', env=env)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return root, t/'outputs'/'photos', p.stdout + p.stderr

def test_every_image_is_accounted_for(photos):
    root, exp, _ = photos
    man = pd.read_parquet(exp/'00_data_clean'/'default'/'manifest.parquet')
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob('*') if p.is_file())
    assert sorted(man.path) == files
    st = man.set_index('path')
    assert st.loc['train/cat/truncated.jpg', 'status'] == 'dropped'
    assert st.loc['train/coffee/copy_of_a_cat.jpg', 'reason'] != ''       # the duplicate, of another class
    assert set(man.split) == {'train', 'valid', 'test'}

def test_the_data_sets_the_recipe(photos):
    root, exp, _ = photos
    cfg = read_run(exp/'04_finetune'/'teacher')['params']
    assert cfg['img_size'] == 64 and cfg['epochs'] == 4                  # from the data; from --var
    assert json.loads((exp/'00_data_clean'/'default'/'classes.json').read_text()) == \
        ['astronaut', 'cat', 'coffee', 'galaxy', 'motorcycle', 'rocket']
    ens = read_run(exp/'08_ensemble'/'test')['metrics']
    assert ens['weights_chosen_on'] == 'valid'                            # the labelled valid/ chooses the weights

def test_each_test_image_is_submitted_and_scored(photos):
    root, exp, _ = photos
    sub = pd.read_csv(exp/'09_redistribute'/'test'/'pred_results.csv', header=None, names=['file', 'label'])
    assert sorted(sub.file) == sorted(p.name for p in (root/'test').rglob('*.*'))
    assert set(sub.label) <= {d.name for d in (root/'train').iterdir()}
    abl = pd.read_csv(exp/'ablation.csv')
    assert len(abl) == 10 and abl.top1.notna().all()
    assert (abl.ref == 'valid').sum() == 3                                # the first rows again, on valid/
    assert abl.set_index('step').top1['the submission'] > 0.5             # 6 classes: chance is 1/6

def test_transparent_images_leave_no_warnings_in_the_logs(photos):
    root, exp, log = photos
    nbs = list((exp/'recipe').rglob('*.ipynb'))
    assert nbs
    text = '\n'.join(p.read_text() for p in nbs) + log
    assert 'Palette images with Transparency' not in text

@pytest.mark.parametrize('layout,says', [
    ({'a.jpg': 1, 'b.jpg': 1}, 'No files found under'),
    ({'train/cat/a.jpg': 1, 'test/b.jpg': 1}, "1 class folder(s) with images ['cat']"),
    ({'train/cat/a.jpg': 1, 'train/dog/b.jpg': 1, 'test/bird/c.jpg': 1}, "class(es) ['bird'] are not among the 2 classes"),
    ({'train/cat/a.jpg': 1, 'train/dog/b.jpg': 1}, 'no test images to predict'),
])
def test_data_the_recipe_cannot_run_on_stops_before_any_step(tmp_path, layout, says):
    from PIL import Image
    for rel in layout:
        (tmp_path/'d'/rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new('RGB', (40, 40)).save(tmp_path/'d'/rel, format='PNG')
    env = {**os.environ, 'FGIA_OUTPUTS': str(tmp_path/'outputs')}
    p = fgia('run', RECIPE, '--var', f'data={tmp_path/"d"}', env=env)
    assert p.returncode != 0 and says in p.stderr, p.stderr[-2000:]
    assert str(tmp_path/'d') in p.stderr
    assert not (tmp_path/'outputs').exists()
