"Stage 09: `winners_redistribute` gives the same labels as the winners' own script, on every input tried."
import numpy as np, pytest
from collections import defaultdict
from fgia_nb.logits import write_logits, open_logits
from fgia_nb.redistribute import winners_redistribute

# --- The winners' loop, transcribed as literally as Python allows --------------------------------------------------
# Source: https://github.com/Ezra-Yu/ACCV2022_FGIA_1st/blob/main/tools/re-distribute-label.py
# (`post_process`, the counting part of `plot_labels`, and the loop in `main`). Changes, none of which touches the
# logic: CLASSES has C names instead of 5,000; the scores come in as the dict their pickle held ({filename: scores});
# the plots, prints, argparse, pickle and CSV are left out; `main` returns the class indices it would have written.
CLASSES = []

def post_process(data_dict):
    result_list = []
    for filename, scores in data_dict.items():
        pred_label = np.argmax(scores)
        pred_class = CLASSES[pred_label]
        result_list.append( [filename, pred_class, scores] )
    return result_list

def plot_labels(data, K):
    data_list = post_process(data)
    data_dict = defaultdict(list)
    for i, (filename, classname, score) in enumerate( data_list ):
        data_dict[classname].append(i)
    max_counts = 0
    for classname in CLASSES:
        max_counts = max(max_counts, len(data_dict[classname]))
    counts = list(range(max_counts + 1))
    less_count_classes = defaultdict(list)
    count_dict = defaultdict(int)
    for i in counts:
        count_dict[i] = 0
    for classname in CLASSES:
        count_dict[len(data_dict[classname])] += 1
        if len(data_dict[classname]) < K:
            less_count_classes[len(data_dict[classname])].append(classname)
    return data_list, less_count_classes

def main(data_dict, K):
    result_list, less_count_classes  = plot_labels(data_dict, K)
    pred_labels = np.array([int(r[1]) for r in result_list])
    all_soreces= np.stack([r[2] for r in result_list], axis=0)
    for count, classname_list in less_count_classes.items():
        for classname in classname_list:
            class_idx = int(classname)
            soreces = all_soreces[:, class_idx]
            soreces[pred_labels==class_idx] = 0
            topk = K - count
            indxs = np.argpartition(soreces, -topk)[-topk:]
            for ind in indxs:
                result_list[int(ind)][1] = classname
    return np.array([int(r[1]) for r in result_list])
# --- end of the transcription ---------------------------------------------------------------------------------------

def their_redistribute(S, K):
    "Run the transcribed script on an (N, C) score matrix."
    global CLASSES
    CLASSES = [f"{i:0>4d}" for i in range(S.shape[1])]
    return main({f'{i:06d}.jpg': S[i] for i in range(len(S))}, K)

def _scores(rng, N, C, kind='uniform'):
    "Ties-free float64 scores: uniform, sharpened (uneven argmax counts), long-tailed, or logits (negative values)."
    if kind == 'uniform': return rng.random((N, C))
    if kind == 'sharp': return rng.random((N, C)) ** rng.uniform(2, 8)
    if kind == 'tail': return rng.random((N, C)) * np.exp(np.linspace(0, 3, C))[rng.permutation(C)]
    if kind == 'logits': return rng.normal(size=(N, C)) * 2
    raise ValueError(kind)

@pytest.mark.parametrize('kind', ['uniform', 'sharp', 'tail', 'logits'])
def test_same_labels_as_their_script(kind):
    "Many random matrices (N, C and K varied): the labels are identical, row for row."
    rng = np.random.default_rng(['uniform', 'sharp', 'tail', 'logits'].index(kind))
    moved = 0
    for _ in range(25):
        N, C = int(rng.integers(20, 1500)), int(rng.integers(2, 120))
        K = max(1, int(rng.uniform(.3, 1.2) * N / C))
        S = _scores(rng, N, C, kind)
        theirs = their_redistribute(S, K)
        np.testing.assert_array_equal(winners_redistribute(S, K, chunk=int(rng.integers(7, 600))), theirs)
        moved += (theirs != S.argmax(1)).sum()
    assert moved > 100                                   # the rule did move images: the comparison had work to check

def test_many_classes_share_a_count():
    "Few images per class: most classes are short, in a handful of count groups that interleave across the classes."
    rng = np.random.default_rng(5)
    for _ in range(20):
        C = int(rng.integers(50, 300)); N = 3*C
        S = _scores(rng, N, C, 'sharp')
        counts = np.bincount(S.argmax(1), minlength=C)
        short = counts[counts < 4]
        assert len(np.unique(short)) >= 3 and (np.diff(short) < 0).any()   # groups met out of order
        np.testing.assert_array_equal(winners_redistribute(S, 4), their_redistribute(S, 4))

def _index_order_current_mask(S, K):
    "The rule as `winners_redistribute` used to run it: classes in index order, masked by the labels as they stand."
    pred = S.argmax(1); counts = np.bincount(pred, minlength=S.shape[1]); out = pred.copy()
    for c in np.flatnonzero(counts < K):
        col = S[:, c].copy(); col[out == c] = -np.inf
        need = K - counts[c]
        out[np.argpartition(-col, need-1)[:need]] = c
    return out

def test_a_case_the_index_order_gets_wrong():
    "Seed 3, 600 x 30, K = 18: visiting in index order with the current labels as mask differs on 9 images."
    S = np.random.default_rng(3).random((600, 30))
    theirs = their_redistribute(S, 18)
    assert (_index_order_current_mask(S, 18) != theirs).sum() == 9
    np.testing.assert_array_equal(winners_redistribute(S, 18), theirs)

def test_streamed_float16_folder(tmp_path):
    "Through a float16 `Logits` folder (many ties) in small chunks: the same labels as their loop on the stored array."
    rng = np.random.default_rng(11)
    for t in range(6):
        N, C = int(rng.integers(300, 1500)), int(rng.integers(20, 150))
        K = max(1, int(.9 * N / C))
        S = (rng.random((N, C)) ** 6).astype(np.float16)
        f = write_logits(tmp_path/f's{t}', S, [f'{i}.jpg' for i in range(N)], [f'{c:04d}' for c in range(C)], name='scores')
        stored = np.load(f/'scores.npy')
        assert all(len(np.unique(col)) < N for col in stored.T)   # every column has ties
        np.testing.assert_array_equal(winners_redistribute(open_logits(f), K, chunk=97), their_redistribute(stored, K))

def test_K_beyond_N_fails_as_theirs():
    "A short class asked for more images than there are: their `np.argpartition` raises, and so does this."
    S = np.random.default_rng(0).random((5, 3))
    with pytest.raises(ValueError): their_redistribute(S, 7)
    with pytest.raises(ValueError, match='asks for up to'): winners_redistribute(S, 7)
    np.testing.assert_array_equal(winners_redistribute(S, 0), S.argmax(1))   # K = 0: nobody is short

# --- Stage 09 as a run: which answers it scores against, and a submission folder replaced whole ----------------------
import errno, json
import pandas as pd
from fgia_nb.logits import logits_writer
from fgia_nb.core import read_run
from fgia_nb.redistribute import redistribute_scores

@pytest.fixture
def stage08(tmp_path, monkeypatch):
    "An experiment 't' with stage-08 scores of test-B (40 images, 4 classes) and the default dataset's answers."
    monkeypatch.setenv('FGIA_OUTPUTS', str(tmp_path/'outputs'))
    monkeypatch.setenv('FGIA_DATA', str(tmp_path/'data'))
    names, classes = [f'{i:03d}.jpg' for i in range(40)], [f'{c:04d}' for c in range(4)]
    with logits_writer(tmp_path/'outputs'/'t'/'08_ensemble'/'testb', names, classes, 'scores') as w:
        w(np.random.default_rng(0).dirichlet([1]*4, 40).astype(np.float32))
    (tmp_path/'data'/'fmnist_web_answers').mkdir(parents=True)
    pd.DataFrame(dict(filename=names, label=[classes[i % 4] for i in range(40)])
                ).to_csv(tmp_path/'data'/'fmnist_web_answers'/'testb.csv', index=False)
    return tmp_path, names

def _stage00(tmp_path, names, root):
    from fgia_nb.data_clean import write_manifest
    man = pd.DataFrame(dict(path=[f'testb/{n}' for n in names], label=None, split='testb', source='x', sha1=names,
                            status='ok', reason='', detail=''))
    write_manifest(man, tmp_path/'outputs'/'t'/'00_data_clean'/'default'/'manifest.parquet', root)

def test_own_data_is_not_scored_against_the_default_answers(stage08):
    "Issue item 3: on a dataset of one's own, stage 09 scored against the default dataset's answers."
    tmp_path, names = stage08
    _stage00(tmp_path, names, tmp_path/'own')
    assert redistribute_scores('t').empty
    m = read_run(tmp_path/'outputs'/'t'/'09_redistribute'/'testb')['metrics']
    assert set(m) == {'answers'} and m['answers'].startswith('not scored')
    _stage00(tmp_path, names, tmp_path/'data'/'fmnist_web')    # the default dataset: its answers are used
    res = redistribute_scores('t')
    assert list(res.index) == ['argmax', 'winners', 'prior_match'] and (res.n == 40).all() and (res.missing == 0).all()

def test_explicit_answers_are_checked_first(stage08):
    "An answers file that is not a filename,label CSV (KeyError 'filename' after the work), or names none of the files."
    tmp_path, names = stage08
    (tmp_path/'bad.csv').write_text('this is not, a csv of\nfilename and labels\n')
    with pytest.raises(ValueError, match=f"{tmp_path/'bad.csv'} is not an answers CSV"):
        redistribute_scores('t', answers=str(tmp_path/'bad.csv'))
    (tmp_path/'other.csv').write_text('filename,label\nx.jpg,0000\n')
    with pytest.raises(ValueError, match='other.csv: names none of the 40 files'):
        redistribute_scores('t', answers=str(tmp_path/'other.csv'))
    assert not (tmp_path/'outputs'/'t'/'09_redistribute').exists()

def test_a_failed_rerun_leaves_the_last_submission_whole(stage08, monkeypatch):
    "Issue item 7: a rerun that failed writing class_counts.png (a full disk) had already replaced pred_results.csv."
    import matplotlib.figure
    tmp_path, _ = stage08
    out = tmp_path/'outputs'/'t'/'09_redistribute'/'testb'
    redistribute_scores('t', method='winners')
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != 'run.json'}
    def full(self, *a, **kw): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(matplotlib.figure.Figure, 'savefig', full)
    with pytest.raises(OSError, match='No space left on device'): redistribute_scores('t', method='argmax')
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != 'run.json'} == before
    assert read_run(out)['status'] == 'failed' and sorted(p.name for p in out.parent.iterdir()) == ['testb']
    monkeypatch.undo()
    monkeypatch.setenv('FGIA_OUTPUTS', str(tmp_path/'outputs'))
    redistribute_scores('t', method='argmax')
    assert (out/'pred_results.csv').read_bytes() == (out/'pred_argmax.csv').read_bytes() != before['pred_results.csv']
