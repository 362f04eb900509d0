"Stages 06 and 08 end to end on synthetic scores: prior-corrected pseudo-labels, ensemble weights chosen on test-A."
import json
import numpy as np, pandas as pd, pytest
from fgia_nb.logits import open_logits, softmax_np, logits_writer, top1
from fgia_nb.testing import uniform_labels, tail_bias, synthetic_logits, synthetic_models
from fgia_nb.pseudo_label import pseudo_label
from fgia_nb.ensemble import ensemble_models, FACTORS

C = 10

@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv('FGIA_OUTPUTS', str(tmp_path/'outputs'))
    monkeypatch.setenv('FGIA_DATA', str(tmp_path/'data'))
    return tmp_path

def _answers(root, split, names, y):
    "Hidden answers beside the default dataset (`<FGIA_DATA>/fmnist_web_answers/<split>.csv`)."
    d = root/'data'/'fmnist_web_answers'
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(dict(filename=names, label=[f'{c:04d}' for c in y])).to_csv(d/f'{split}.csv', index=False)
    return d/f'{split}.csv'

@pytest.fixture
def long_tail_scores(env):
    "A balanced 3,000-image test split scored by a model trained on a 100x long tail, its manifest and answers."
    y = uniform_labels(3000, C, seed=1)
    bias = tail_bias(C, 100, seed=1)
    names, classes = [f'{i:06d}.jpg' for i in range(len(y))], [f'{c:04d}' for c in range(C)]
    with logits_writer(env/'scores', names, classes, 'scores') as w:
        w(softmax_np(next(synthetic_logits(y, C, signal=3, bias=bias, seed=1, chunk=len(y)))))
    man = pd.DataFrame(dict(path=[f'testx/{n}' for n in names], label=None, split='testx', source='synthetic',
                            sha1=names, status='ok', reason='', detail=''))
    from fgia_nb.data_clean import write_manifest
    write_manifest(man, env/'s00'/'manifest.parquet', env/'data'/'fmnist_web')   # the default dataset's test split
    _answers(env, 'testx', names, y)
    return env, y, bias

def _run(env, **kw):
    res = pseudo_label('t', 'testx', scores_dir=str(env/'scores'), manifest=str(env/'s00'/'manifest.parquet'),
                       rule='threshold', threshold=.45, **kw)
    out = env/'outputs'/'t'/'06_pseudo_label'/kw['run']
    return res, json.loads((out/'run.json').read_text()), out

def test_prior_correction_gives_the_tail_its_share(long_tail_scores):
    env, y, bias = long_tail_scores
    res, rec, out = _run(env, run='corrected', soft=True)
    none, rec0, _ = _run(env, run='none', prior='none')
    # the scores' own prior is recovered from the test split alone
    q = np.array(rec['metrics']['scores_prior'])
    np.testing.assert_allclose(np.log(q), np.log(softmax_np(bias[None])[0]), atol=.3)
    assert 'scores_prior' not in rec0['metrics'] and list(none.index) == ['threshold', 'quota']
    # without the correction, tail classes get a handful of (mostly wrong) labels; with it, every class its share
    assert none.loc['threshold', 'min_per_class'] < 20 and none.loc['threshold', 'precision'] < .8
    assert res.loc['threshold', 'min_per_class'] > 150 and res.loc['threshold', 'precision'] > .95
    # the run reports the uncorrected selection too, which is what prior='none' selects
    pd.testing.assert_series_equal(res.loc['threshold, uncorrected'], none.loc['threshold'], check_names=False)
    man = pd.read_parquet(out/'manifest.parquet')
    assert len(man) == res.loc['threshold', 'kept'] and man.label.nunique() == C
    # soft targets are the corrected probabilities of the kept rows
    soft = np.load(out/'soft.npy').astype(np.float32)
    np.testing.assert_allclose(soft.sum(1), 1, atol=2e-3)
    np.testing.assert_allclose(soft.max(1), man.confidence.values, atol=2e-3)

def test_bad_prior_fails_before_any_work(long_tail_scores):
    env, *_ = long_tail_scores
    with pytest.raises(ValueError, match='10 positive comma-separated numbers'):
        _run(env, run='bad', prior='1,2')
    assert not (env/'outputs'/'t'/'06_pseudo_label'/'bad').exists()

def _own(env, split='testx', extra=None):
    "The stage-00 manifest of `long_tail_scores`, moved to a data root of one's own (no hidden answers beside it)."
    from fgia_nb.data_clean import read_manifest, write_manifest
    man = read_manifest(env/'s00'/'manifest.parquet')
    if extra is not None: man = pd.concat([man, extra])
    return write_manifest(man, env/'own00'/'manifest.parquet', env/'own')

def test_own_data_is_not_scored_against_the_default_answers(long_tail_scores):
    "Issue items 1-2: stage 06 on a dataset of one's own read the default dataset's answers (a KeyError on NaNs)."
    env, *_ = long_tail_scores      # the default dataset's testx answers exist, and name these very files
    res = pseudo_label('t', 'testx', scores_dir=str(env/'scores'), manifest=str(_own(env)), run='own')
    rec = json.loads((env/'outputs'/'t'/'06_pseudo_label'/'own'/'run.json').read_text())
    assert 'precision' not in res.columns and res.loc['threshold', 'kept'] > 0
    assert rec['metrics']['answers'].startswith(f"not scored: {(env/'own').resolve()} has no hidden answers")
    _, rec, _ = _run(env, run='web')                   # on the default dataset's manifest they are used
    assert rec['metrics']['answers'].startswith('scored against') and 'precision' in rec['metrics']['threshold']

def test_scores_of_another_split_fail_first(long_tail_scores):
    "Issue item 4: testx's scores pseudo-labelling split 'testy' ended in a KeyError on NaNs; now named, before work."
    env, *_ = long_tail_scores
    other = pd.DataFrame(dict(path=['testy/a.jpg'], label=None, split='testy', source='synthetic', sha1='a',
                              status='ok', reason='', detail=''))
    with pytest.raises(ValueError, match="split='testy': 3000 of the 3000 files of .*scores are not among .*own00"):
        pseudo_label('t', 'testy', scores_dir=str(env/'scores'), manifest=str(_own(env, extra=other)), run='y')
    with pytest.raises(ValueError, match=r"split='testz': .* has no 'testz' rows \(its splits: \['testx', 'testy'\]\)"):
        pseudo_label('t', 'testz', scores_dir=str(env/'scores'), manifest=str(_own(env, extra=other)), run='z')
    assert not (env/'outputs'/'t'/'06_pseudo_label').exists()

def test_misspelt_rule_fails_first(long_tail_scores):
    "Issue item 5: rule='quot' gave KeyError 'quot' after all the work; now before it, listing the rules."
    env, *_ = long_tail_scores
    with pytest.raises(ValueError, match=r"rule must be one of \['threshold', 'quota'\], not 'quot'"):
        pseudo_label('t', 'testx', scores_dir=str(env/'scores'), manifest=str(env/'s00'/'manifest.parquet'),
                     rule='quot')
    assert not (env/'outputs'/'t'/'06_pseudo_label').exists()

@pytest.fixture
def members(env):
    "Five stage-05 members of quality 2 to 4 (shared noise) on test-A (1,000 rows) and test-B (3,000), and test-A's answers."
    ya, yb = uniform_labels(1000, 100, seed=3), uniform_labels(3000, 100, seed=4)
    s05 = env/'outputs'/'t'/'05_tta_predict'
    s05.mkdir(parents=True)
    for split, y, seed in (('testa', ya, 3), ('testb', yb, 4)):
        for m, f in enumerate(synthetic_models(env/split, y, 100, seed=seed)): f.rename(s05/f'm{m}-{split}')
    names = open_logits(s05/'m0-testb').paths
    lb = _answers(env, 'testa', open_logits(s05/'m0-testa').paths, ya)
    answers_b = pd.Series([f'{c:04d}' for c in yb], index=names)
    return env, s05, lb, answers_b

def _ens(env, s05, weighting, **kw):
    models = ','.join(str(s05/f'm{m}-testb') for m in range(5))
    rec = ensemble_models('t', 'testb', models=models, weighting=weighting, run=weighting, **kw)
    return rec, open_logits(env/'outputs'/'t'/'08_ensemble'/weighting)

def test_weights_chosen_on_test_a_do_not_degenerate(members):
    env, s05, lb, answers_b = members
    got = {w: _ens(env, s05, w, leaderboard=str(lb)) for w in ('winners', 'tempered', 'fitted')}
    wts = {k: np.array(list(r['weights'].values())) for k, (r, _) in got.items()}
    assert wts['winners'].max() > .9                     # the winners' exponent: nearly all on the best member
    assert wts['tempered'].max() < .8 and wts['fitted'].max() < .8
    rec = got['tempered'][0]
    assert rec['factor'] in FACTORS and list(map(float, rec['factor_top1'])) == list(FACTORS)
    assert rec['chosen_top1'] == max(rec['factor_top1'].values())
    assert all(r['weights_chosen_on'] == 'testa' for r, _ in got.values())
    # on test-B (never used to choose), both beat the winners' weights
    acc = {k: top1(lg, answers_b) for k, (_, lg) in got.items()}
    assert min(acc['tempered'], acc['fitted']) > acc['winners']

def test_weightings_that_need_labelled_rows_say_so(members):
    env, s05, *_ = members
    for w in ('tempered', 'fitted'):
        with pytest.raises(ValueError, match='needs labelled rows'): _ens(env, s05, w)
    with pytest.raises(ValueError, match='weighting must be one of'): _ens(env, s05, 'best')

def _stage00(env, root):
    "The experiment's stage-00 manifest, its data root `root` (test-B's files are the members')."
    from fgia_nb.data_clean import write_manifest
    names = open_logits(env/'outputs'/'t'/'05_tta_predict'/'m0-testb').paths
    man = pd.DataFrame(dict(path=[f'testb/{n}' for n in names], label=None, split='testb', source='synthetic',
                            sha1=names, status='ok', reason='', detail=''))
    write_manifest(man, env/'outputs'/'t'/'00_data_clean'/'default'/'manifest.parquet', root)

def test_ensemble_scores_against_its_own_datas_answers(members):
    """Issue item 1: on a dataset of one's own, stage 08 scored against the default dataset's answers: it replaced
    scores.npy, then failed ('no file of its index.csv is in the answers'). Now those answers are never read."""
    env, s05, lb, answers_b = members
    _answers(env, 'testb', ['x.jpg'], [0])             # the default dataset's test-B answers: none of these files
    _stage00(env, env/'own')
    rec, _ = _ens(env, s05, 'equal')
    assert 'top1' not in rec and rec['answers'].startswith(f"not scored: {(env/'own').resolve()} has no hidden")
    _stage00(env, env/'data'/'fmnist_web')             # on the default dataset: answers that name none of its files
    rec, _ = _ens(env, s05, 'equal')
    assert 'top1' not in rec and 'names none of the 3000 files' in rec['answers']
    _answers(env, 'testb', list(answers_b.index), [int(c) for c in answers_b])   # ... and its real answers
    rec, lg = _ens(env, s05, 'equal')
    assert rec['top1']['ensemble'] == top1(lg, answers_b) and rec['answers'].startswith('scored against')

def test_accs_count_names_the_members(members):
    "Issue item 6: accs with one value for five members said 'need 5 non-negative weights, got [1.0]'."
    env, s05, *_ = members
    with pytest.raises(ValueError, match=r"accs='0.5': 1 value\(s\) for 5 members \(m0-testb, m1-testb, .*m4-testb\)"):
        _ens(env, s05, 'winners', accs='0.5')
    with pytest.raises(ValueError, match="accs='0.5,x': expected comma-separated numbers"):
        _ens(env, s05, 'winners', accs='0.5,x')
    assert not (env/'outputs'/'t'/'08_ensemble').exists()
