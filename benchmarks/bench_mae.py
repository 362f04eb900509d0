"""MAE training throughput against a full-token forward and backward of the same encoder.

Hiding 75% of the patches before the encoder is what makes MAE cheap: the encoder, by far the larger network, sees
a quarter of the tokens, and only the light decoder sees them all. This measures training throughput (forward,
backward and AdamW step, in images/s) of the MAE model against a full-token forward and backward of the same
encoder (the baseline), on the same batch in the same run, interleaving the two over `--rounds` rounds and
reporting each one's median round. On a CPU it also reports throughput per CPU-second, which other processes' load
does not distort, and by default uses one thread (with two, a descheduled thread leaves the other spinning at every
barrier on a busy machine, which blurs both figures). The default decoder keeps the paper's proportions at demo
scale: ViT-L's 512-wide, 8-block decoder is half the encoder's width and a third of its 24 blocks, so `vit_demo`
(128 wide, 4 blocks) gets 64 wide and 1 block.

    .venv/bin/python benchmarks/bench_mae.py             # or: make bench-mae
    .venv/bin/python benchmarks/bench_mae.py --arch vit_large_patch16_224 --img-size 224 --bs 64 \\
        --decoder-dim 512 --decoder-depth 8 --decoder-heads 16 --device cuda
"""
import time, json
import numpy as np, torch
from fastcore.script import call_parse


def throughput(step, x, steps:int)->tuple:
    "Images/s of `steps` calls of `step(x)`, by the wall clock and by this process's CPU time."
    if x.is_cuda: torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps): step(x)
    if x.is_cuda: torch.cuda.synchronize()
    n = steps * len(x)
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def compare(step_fns:dict, x, steps:int, warmup:int, rounds:int)->dict:
    "Median (wall, CPU-time) throughput of each step function over `rounds` interleaved rounds."
    for f in step_fns.values(): throughput(f, x, warmup)
    runs = {k: [] for k in step_fns}
    for _ in range(rounds):
        for k, f in step_fns.items(): runs[k].append(throughput(f, x, steps))
    return {k: tuple(np.median(np.array(v), 0).tolist()) for k, v in runs.items()}


@call_parse
def bench_mae(arch:str='vit_demo', # Encoder: `vit_demo` or a timm ViT name
              img_size:int=32, # Input size
              bs:int=128, # Batch size
              mask_ratio:float=0.75, # Fraction of patches hidden
              decoder_dim:int=64, decoder_depth:int=1, decoder_heads:int=4, # The MAE decoder (512/8/16 at full size)
              steps:int=5, warmup:int=2, rounds:int=3, # Timed steps per round, untimed steps, interleaved rounds
              device:str='auto', # 'cpu', 'cuda' or 'auto'
              threads:int=1 # CPU threads for torch (0: torch's default); 1 is the steadiest on a shared machine
             )->dict:
    "Print MAE training throughput as a ratio to a full-token forward+backward of the same encoder."
    from fgia_nb.mae_pretrain import MAE, create_encoder
    dev = torch.device(('cuda' if torch.cuda.is_available() else 'cpu') if device == 'auto' else device)
    if threads: torch.set_num_threads(threads)
    torch.manual_seed(0)
    mae = MAE(create_encoder(arch, img_size=img_size), decoder_dim, decoder_depth, decoder_heads, mask_ratio).to(dev)
    opt = torch.optim.AdamW(mae.parameters(), lr=1e-4, betas=(0.9, 0.95))
    def mae_step(x):
        mae(x).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    def full_step(x):
        mae.encoder.forward_features(x).float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    x = torch.randn(bs, 3, img_size, img_size, device=dev)
    med = compare(dict(full=full_step, mae=mae_step), x, steps, warmup, rounds)
    (full, full_cpu), (fast, fast_cpu) = med['full'], med['mae']
    res = dict(arch=arch, device=str(dev), bs=bs, mask_ratio=mask_ratio,
               decoder=(decoder_dim, decoder_depth, decoder_heads),
               full_img_s=round(full, 1), mae_img_s=round(fast, 1), speedup=round(fast/full, 2))
    print(f"{arch} on {dev} ({torch.get_num_threads()} threads), batch {bs}, decoder "
          f"{decoder_dim}/{decoder_depth}/{decoder_heads}, median of {rounds} rounds: "
          f"full-token encoder {full:.1f} img/s, MAE (mask {mask_ratio}) {fast:.1f} img/s, speed-up {fast/full:.2f}x")
    if dev.type == 'cpu':  # on a shared CPU the wall clock also counts other processes' load; CPU time does not
        res.update(full_cpu_img_s=round(full_cpu, 1), mae_cpu_img_s=round(fast_cpu, 1),
                   speedup_cpu=round(fast_cpu/full_cpu, 2))
        print(f"  by CPU time: full-token {full_cpu:.1f} img/s, MAE {fast_cpu:.1f} img/s, "
              f"speed-up {fast_cpu/full_cpu:.2f}x")
    print('RESULT', json.dumps(res))
    return res
