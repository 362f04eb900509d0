"Softmax-EQL's gradient statistics under torch.distributed (two gloo processes on CPU) and through a safetensors checkpoint."
import os, tempfile
import torch, torch.distributed as dist, torch.multiprocessing as mp
from safetensors.torch import save_file, load_file
from fgia_nb.losses import SoftmaxEQL

C = 6

def _batch(rank):
    "Rank `rank`'s half of a long-tailed batch: logits and labels."
    g = torch.Generator().manual_seed(rank)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 5]) if rank == 0 else torch.tensor([0, 0, 1, 3, 4, 4, 0, 2])
    return torch.randn(len(y), C, generator=g), y

def _step(loss, rank):
    z, y = _batch(rank)
    z.requires_grad_()
    loss(z, y).backward()

def _worker(rank, world, init_file, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    try:
        loss = SoftmaxEQL(C)
        for _ in range(2): _step(loss, rank)   # second step already uses the all-reduced statistics
        torch.save(loss.state_dict(), f'{out_dir}/rank{rank}.pt')
    finally: dist.destroy_process_group()

def _single_process_reference():
    "What the statistics must be: each step, each rank's |grad| added, with shifts from the shared statistics."
    ref = SoftmaxEQL(C)
    for _ in range(2):
        snap = {k: v.clone() for k, v in ref.state_dict().items()}
        per_rank = []
        for r in range(2):
            l = SoftmaxEQL(C); l.load_state_dict(snap); _step(l, r)
            per_rank.append({k: l.state_dict()[k] - snap[k] for k in snap})
        ref.load_state_dict({k: snap[k] + per_rank[0][k] + per_rank[1][k] for k in snap})
    return ref.state_dict()

def test_eql_stats_all_reduced():
    with tempfile.TemporaryDirectory() as t:
        mp.spawn(_worker, args=(2, f'{t}/init', t), nprocs=2, join=True)
        s0, s1 = (torch.load(f'{t}/rank{r}.pt', weights_only=True) for r in range(2))
    ref = _single_process_reference()
    for k in ('pos_grad', 'neg_grad'):
        assert torch.equal(s0[k], s1[k]), f'{k} differs between ranks'
        assert torch.allclose(s0[k], ref[k], rtol=1e-6, atol=1e-9), f'{k}: {s0[k]} vs single-process {ref[k]}'
    assert (s0['pos_grad'][[0, 1, 2, 3, 4, 5]] > 0).all()

def test_eql_state_in_checkpoint():
    loss = SoftmaxEQL(C)
    _step(loss, 0)
    with tempfile.TemporaryDirectory() as t:
        save_file({f'eql.{k}': v for k, v in loss.state_dict().items()}, f'{t}/ckpt.safetensors')
        sd = load_file(f'{t}/ckpt.safetensors')
    resumed = SoftmaxEQL(C)
    resumed.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith('eql.')})
    z, y = _batch(1)
    assert torch.equal(resumed(z, y), loss(z, y))
    assert resumed.pos_grad.sum() > 0
