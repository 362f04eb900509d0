"Stage 07: soups are exact weight averages; the greedy soup keeps an ingredient only when its held-out score improves."
import json, pytest, torch
from safetensors import safe_open
from safetensors.torch import save_file, load_file
from fgia_nb.testing import synthetic_manifest, toy_checkpoints
from fgia_nb.data_clean import write_manifest
from fgia_nb.heads import create_model
from fgia_nb.finetune import save_checkpoint, model_config, load_model
from fgia_nb.model_soup import uniform_soup, greedy_soup, accuracy_scorer

def _cks(t, n=3):
    "`n` stage-04 checkpoints of the demo ViT with a linear head (optimizer state included)."
    out = []
    for i in range(n):
        torch.manual_seed(i)
        m = create_model('vit_demo', 3, head='linear', img_size=32)
        opt = torch.optim.AdamW(m.parameters())
        m(torch.rand(2, 3, 32, 32)).sum().backward()
        opt.step()
        cfg = model_config(m, ['0000', '0001', '0002'], crop='center')
        out.append(save_checkpoint(t/f'epoch_{i:03d}.safetensors', m, cfg, epoch=i, opt=opt.state_dict()))
    return out

def test_uniform_soup_is_the_exact_mean(tmp_path):
    cks = toy_checkpoints(tmp_path, n=3)
    ins = [load_file(str(p)) for p in cks]
    soup = load_file(str(uniform_soup(cks, tmp_path/'soup.safetensors')))
    assert sorted(soup) == ['model.bn.num_batches_tracked', 'model.fc.bias', 'model.fc.weight']  # no optimizer state
    for k in ('model.fc.weight', 'model.fc.bias'):
        assert torch.equal(soup[k], (ins[0][k] + ins[1][k] + ins[2][k]) / 3)   # bit for bit
    assert torch.equal(soup['model.bn.num_batches_tracked'], ins[2]['model.bn.num_batches_tracked'])  # the last one's
    w = [1., 2., 5.]
    ws = load_file(str(uniform_soup(cks, tmp_path/'w.safetensors', weights=w)))
    want = (ins[0]['model.fc.weight']*w[0] + ins[1]['model.fc.weight']*w[1] + ins[2]['model.fc.weight']*w[2]) / 8
    assert torch.equal(ws['model.fc.weight'], want)

def test_uniform_soup_keeps_dtypes(tmp_path):
    "Half-precision tensors are averaged in float32 and cast back, not summed in their own precision."
    a = torch.tensor([1000., 1., -3.], dtype=torch.bfloat16)
    b = torch.tensor([1001., 2., 3.], dtype=torch.bfloat16)
    cks = []
    for i, t in enumerate((a, b)):
        cks.append(tmp_path/f'{i}.safetensors')
        save_file({'model.w': t, 'model.i': torch.tensor([i], dtype=torch.int32)}, str(cks[-1]),
                  metadata={'fgia_config': '{}'})
    soup = load_file(str(uniform_soup(cks, tmp_path/'soup.safetensors')))
    assert soup['model.w'].dtype == torch.bfloat16 and soup['model.i'].dtype == torch.int32
    assert torch.equal(soup['model.w'], ((a.float() + b.float()) / 2).to(torch.bfloat16))
    assert soup['model.i'].tolist() == [1]

def test_uniform_soup_of_stage04_checkpoints_loads(tmp_path):
    cks = _cks(tmp_path)
    sp = uniform_soup(cks, tmp_path/'soup.safetensors')
    m, ms = load_model(sp), [load_model(c) for c in cks]
    for k, v in m.state_dict().items():
        if v.is_floating_point(): torch.testing.assert_close(v, sum(x.state_dict()[k] for x in ms)/3)
    with safe_open(str(sp), 'pt') as f:
        assert not [k for k in f.keys() if not k.startswith('model.')]
        assert json.loads(f.metadata()['soup'])['ingredients'] == [str(p) for p in cks]

def _vec(t, name, v):
    p = t/f'{name}.safetensors'
    save_file({'model.w': torch.tensor(v)}, str(p), metadata={'fgia_config': '{}'})
    return p

class _Scorer:
    "A held-out score we control: a table from the (averaged) weight vector to a number; records every call."
    def __init__(self, table): self.table, self.calls = {tuple(k): v for k, v in table.items()}, []
    def __call__(self, sd):
        assert list(sd) == ['w']                       # the prefix is removed
        k = tuple(round(x, 4) for x in sd['w'].tolist())
        self.calls.append(k)
        return self.table[k]

def test_greedy_soup_adds_only_what_improves(tmp_path):
    # singles: a=0.5, b=0.9 (best), c=0.7, d=0.6; soups: {b,c}=0.8 (worse: c rejected), {b,d}=0.95 (better: d joins)
    ps = [_vec(tmp_path, n, v) for n, v in (('a', [0., 0.]), ('b', [1., 0.]), ('c', [0., 1.]), ('d', [1., 2.]))]
    sc = _Scorer({(0., 0.): .5, (1., 0.): .9, (0., 1.): .7, (1., 2.): .6,
                  (.5, .5): .8, (1., 1.): .95, (.6667, .6667): .4})
    res = greedy_soup(ps, sc, tmp_path/'g.safetensors')
    assert [p.name for p in res['used']] == ['b.safetensors', 'd.safetensors']
    assert res['score'] == .95
    # ingredients tried in order of their own score: b (start), c, d, then a against the soup of b and d
    assert [t['path'] for t in res['trace']] == [str(ps[2]), str(ps[3]), str(ps[0])]
    assert [(t['soup'], t['added']) for t in res['trace']] == [(.8, False), (.95, True), (.4, False)]
    assert sc.calls[4:] == [(.5, .5), (1., 1.), (.6667, .6667)]
    assert torch.equal(load_file(str(res['path']))['model.w'], torch.tensor([1., 1.]))   # the soup of b and d

def test_greedy_soup_rejects_a_tie(tmp_path):
    "An ingredient that leaves the score unchanged is not added (the soup stays the smaller one)."
    ps = [_vec(tmp_path, n, v) for n, v in (('a', [0.]), ('b', [2.]))]
    res = greedy_soup(ps, _Scorer({(0.,): .5, (2.,): .6, (1.,): .6}))
    assert [p.name for p in res['used']] == ['b.safetensors'] and res['trace'][0]['added'] is False

@pytest.mark.parametrize('cls, want', [(0, 8/14), (2, 2/14)])
def test_accuracy_scorer_counts_the_right_class(tmp_path, cls, want):
    "A model made to predict one class scores exactly that class's share of the labelled rows."
    cks = _cks(tmp_path, n=1)
    man = synthetic_manifest(tmp_path/'data', counts=(8, 4, 2), size=32)
    mp = write_manifest(man, tmp_path/'manifest.parquet', tmp_path/'data')
    score = accuracy_scorer(cks[0], mp, 'train')
    sd = load_model(cks[0]).state_dict()
    sd['head.fc.weight'] = torch.zeros_like(sd['head.fc.weight'])
    sd['head.fc.bias'] = torch.nn.functional.one_hot(torch.tensor(cls), 3).float() * 10
    assert score(sd) == pytest.approx(want)


def test_soup_metadata_is_written_in_one_order(tmp_path):
    "safetensors hands metadata back in no set order; a soup written from it must not depend on that order."
    import struct
    from fgia_nb.model_soup import save_streamed
    t = {'w': torch.ones(2)}
    a = save_streamed(t, tmp_path/'a.safetensors', {'b': '1', 'a': '2', 'c': '3'})
    b = save_streamed(t, tmp_path/'b.safetensors', {'c': '3', 'a': '2', 'b': '1'})
    assert a.read_bytes() == b.read_bytes()
    raw = a.read_bytes()
    head = json.loads(raw[8:8 + struct.unpack('<Q', raw[:8])[0]])
    assert list(head['__metadata__']) == ['a', 'b', 'c']
