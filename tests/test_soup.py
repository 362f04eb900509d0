"Stage 07 on real stage-04 checkpoints: the soup loads with train.load_model; greedy soup with a held-out scorer."
import numpy as np, torch, json
from safetensors import safe_open
from fgia_nb.testing import synthetic_manifest
from fgia_nb.clean import write_manifest
from fgia_nb.heads import create_model
from fgia_nb.train import save_checkpoint, model_config, load_model
from fgia_nb.soup import uniform_soup, greedy_soup, accuracy_scorer, check_soupable

def _cks(t, n=3):
    out = []
    for i in range(n):
        torch.manual_seed(i)
        m = create_model('vit_demo', 3, head='linear', img_size=32)
        opt = torch.optim.AdamW(m.parameters()); m(torch.rand(2, 3, 32, 32)).sum().backward(); opt.step()
        out.append(save_checkpoint(t/f'epoch_{i:03d}.safetensors', m, model_config(m, ['0000', '0001', '0002'], crop='center'), epoch=i, opt=opt.state_dict()))
    return out

def test_uniform_soup_loads(tmp_path):
    cks = _cks(tmp_path)
    sp = uniform_soup(cks, tmp_path/'soup.safetensors')
    m = load_model(sp)
    ms = [load_model(c) for c in cks]
    for k, v in m.state_dict().items():
        if v.is_floating_point(): torch.testing.assert_close(v, sum(x.state_dict()[k] for x in ms)/3)
    with safe_open(str(sp), 'pt') as f: assert not [k for k in f.keys() if not k.startswith('model.')]

def test_greedy_with_scorer(tmp_path):
    cks = _cks(tmp_path)
    man = synthetic_manifest(tmp_path/'data', counts=(6, 6, 6), size=32)
    mp = write_manifest(man, tmp_path/'manifest.parquet', tmp_path/'data')
    res = greedy_soup(cks, accuracy_scorer(cks[0], mp, 'train'), tmp_path/'g.safetensors')
    assert 1 <= len(res['used']) <= 3 and res['score'] >= max(res['single'].values())
    load_model(res['path'])
