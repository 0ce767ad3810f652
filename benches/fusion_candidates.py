"""Issue #14's fusion candidates for the CPU GRPO step, measured in plain PyTorch (the same LibTorch
kernels the harness calls) on the tiny Qwen3's shapes:

1. q/k/v and gate/up as one GEMM each (hidden 128, q 128, k/v 64, intermediate 384, 4 layers;
   attention and norms left out, they are the same either way):
   - training: forward + backward over 64 rows x 9 positions (the bench's response tokens + one);
   - decode: one forward of 64 rows x 1 position without gradients (the engine's decode step).
2. AdamW over the tiny model's ~0.8 M parameters in one flat buffer: the harness's op sequence
   (`train/optim.rs`) against LibTorch's fused kernel `_fused_adamw_` (which tch 0.24 does not
   expose).

Variants run interleaved, `--reps` rounds of `--iters` calls each; prints medians, whether the fused
forward is bit for bit the separate one (the backward's input gradient is summed in another order by
a fused GEMM) and how far the fused AdamW's parameters land from the harness's. Run it with the
harness's allocator settings, as benches/compare_grpo_step.sh's numbers are:
    MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824 \
        python fusion_candidates.py --threads 2 --reps 5 --iters 50
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--iters", type=int, default=50)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
H, I, L, NQ, NKV = 128, 384, 4, 128, 64


def weight(*shape):
    return (torch.randn(*shape) * 0.05).requires_grad_()


sep = [dict(q=weight(NQ, H), k=weight(NKV, H), v=weight(NKV, H), o=weight(H, NQ),
            g=weight(I, H), u=weight(I, H), d=weight(H, I)) for _ in range(L)]
# The same values, concatenated: [Wq; Wk; Wv] and [Wgate; Wup].
fus = [dict(qkv=torch.cat([s["q"], s["k"], s["v"]]).detach().requires_grad_(), o=s["o"],
            gu=torch.cat([s["g"], s["u"]]).detach().requires_grad_(), d=s["d"]) for s in sep]


def attn_stand_in(q, k, v):
    # Uses k and v so their gradients exist; the real attention is the same in both variants.
    return q + k.repeat(1, 1, 2) + v.repeat(1, 1, 2)


def run_separate(x):
    for w in sep:
        q, k, v = F.linear(x, w["q"]), F.linear(x, w["k"]), F.linear(x, w["v"])
        x = x + F.linear(attn_stand_in(q, k, v), w["o"])
        x = x + F.linear(F.silu(F.linear(x, w["g"])) * F.linear(x, w["u"]), w["d"])
    return x


def run_fused(x):
    for w in fus:
        q, k, v = F.linear(x, w["qkv"]).split([NQ, NKV, NKV], -1)
        x = x + F.linear(attn_stand_in(q, k, v), w["o"])
        g, u = F.linear(x, w["gu"]).split([I, I], -1)
        x = x + F.linear(F.silu(g) * u, w["d"])
    return x


def timed(f, iters):
    t = time.perf_counter()
    for _ in range(iters):
        f()
    return (time.perf_counter() - t) / iters


x_train = torch.randn(64, 9, H)
x_decode = torch.randn(64, 1, H)
times = {k: [] for k in ["train_separate", "train_fused", "decode_separate", "decode_fused",
                         "adamw_harness", "adamw_fused"]}
for _ in range(a.reps):
    for name, f in [("separate", run_separate), ("fused", run_fused)]:
        for _ in range(3):
            f(x_train).sum().backward()
        times[f"train_{name}"].append(timed(lambda: f(x_train).sum().backward(), a.iters))
        with torch.no_grad():
            times[f"decode_{name}"].append(timed(lambda: f(x_decode), a.iters * 4))

ADAM_N, B1, B2, LR, EPS, WD = 800_000, 0.9, 0.95, 1e-4, 1e-8, 0.01


def adamw_harness(p, g, m, v, t):
    # train/optim.rs `AdamW::update`, op for op.
    bc1, bc2 = 1 - B1**t, 1 - B2**t
    m.mul_(B1).add_(g * (1 - B1))
    v.mul_(B2).add_(g.square() * (1 - B2))
    p.mul_(1 - LR * WD)
    p.sub_((m / bc1) / ((v / bc2).sqrt() + EPS) * LR)


def adamw_fused(p, g, m, v, t):
    torch._fused_adamw_([p], [g], [m], [v], [], [torch.tensor(float(t))], lr=LR, beta1=B1,
                        beta2=B2, weight_decay=WD, eps=EPS, amsgrad=False, maximize=False)


def adam_state():
    gen = torch.Generator().manual_seed(1)
    p, g = torch.randn(ADAM_N, generator=gen), torch.randn(ADAM_N, generator=gen) * 1e-3
    return p, g, torch.zeros(ADAM_N), torch.zeros(ADAM_N)


for _ in range(a.reps):
    for name, f in [("harness", adamw_harness), ("fused", adamw_fused)]:
        p_, g_, m_, v_ = adam_state()
        times[f"adamw_{name}"].append(timed(lambda: f(p_, g_, m_, v_, 5), a.iters * 4))
finals = []
for f in [adamw_harness, adamw_fused]:
    p_, g_, m_, v_ = adam_state()
    for t in range(1, 11):
        f(p_, g_, m_, v_, t)
    finals.append(p_)

with torch.no_grad():
    same_forward = torch.equal(run_separate(x_decode), run_fused(x_decode)) and torch.equal(
        run_separate(x_train), run_fused(x_train))
xs, xf = x_train.clone().requires_grad_(), x_train.clone().requires_grad_()
run_separate(xs).sum().backward()
run_fused(xf).sum().backward()
print(json.dumps({
    "threads": a.threads, "reps": a.reps, "iters": a.iters,
    **{f"{k}_ms": round(statistics.median(v) * 1e3, 3) for k, v in times.items()},
    "forward_bit_identical": same_forward,
    "input_grad_max_abs_diff": (xs.grad - xf.grad).abs().max().item(),
    "adamw_fused_param_max_abs_diff_after_10_steps": (finals[0] - finals[1]).abs().max().item(),
}))
