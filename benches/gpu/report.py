#!/usr/bin/env python3
"""Markdown table from benches/gpu/compare.sh's JSON rows: device, versions, exact commands,
medians over runs, speed-ups and MFU against the issue's goals."""
import json
import os
import statistics
import subprocess
import sys

raw, cmd, binary, device = sys.argv[1:5]
rows = [json.loads(l) for l in open(raw) if l.strip()]


def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return ""


gpu = sh("nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader") or "none (CPU)"
try:
    import torch
    torch_v = f"{torch.__version__} (CUDA {torch.version.cuda})"
except Exception:
    torch_v = "?"
try:
    import transformers
    tf_v = transformers.__version__
except Exception:
    tf_v = "?"
peak = os.environ.get("PEAK_TFLOPS")
if peak is None:
    name = gpu.upper()
    peak = 989.4 if ("H100" in name or "H200" in name) and "PCIE" not in name else (756.0 if "H100" in name else None)
peak = float(peak) if peak else None

ok = lambda b, i: [r for r in rows if r.get("bench") == b and r.get("impl") == i and "error" not in r]
errs = [r for r in rows if "error" in r]


def med(b, i, key):
    rs = ok(b, i)
    return statistics.median(r[key] for r in rs) if rs else None


def fmt(x, f="{:.1f}"):
    return "n/a" if x is None else f.format(x)


print(f"# GPU path: measured speed ({device})\n")
print(f"- device: {gpu}")
print(f"- torch {torch_v}, transformers {tf_v}, harness `{sh(binary, '--version')}` "
      f"(commit {sh('git', 'rev-parse', '--short', 'HEAD') or '?'})")
print(f"- command: `{cmd}`; raw rows: `{raw}`")
print(f"- MFU peak: {fmt(peak, '{:.0f}')} TFLOP/s bf16 dense; model FLOPs = 6·N_active(+head) + 6·L·T·d_attn per token")
print()

print("## Training step (forward + backward + AdamW, recompute on both sides)\n")
print("| impl | tokens/s | s/step | MFU | GPU mem MiB |\n|---|---|---|---|---|")
fpt = next((r["flops_per_token"] for r in ok("train", "harness")), None)
for i in ["harness", "transformers"]:
    tps = med("train", i, "tokens_per_s")
    mfu = tps * fpt / (peak * 1e12) if (tps and fpt and peak) else None
    mem = max((r["gpu_mem_used_mib"] for r in ok("train", i) if "gpu_mem_used_mib" in r), default=None)
    print(f"| {i} | {fmt(tps, '{:.0f}')} | {fmt(med('train', i, 's_per_step'), '{:.3f}')} | "
          f"{fmt(mfu and 100 * mfu, '{:.1f}%')} | {fmt(mem, '{:.0f}')} |")
a, b = med("train", "harness", "tokens_per_s"), med("train", "transformers", "tokens_per_s")
print(f"\nharness / transformers: **{fmt(a and b and a / b, '{:.2f}x')}** (goal ≥ 1.2x, MFU ≥ 45 %)\n")

print("## Batched decode (greedy, KV cache)\n")
print("| impl | tokens/s | s | GPU mem MiB |\n|---|---|---|---|")
for i in ["harness", "transformers"]:
    mem = max((r["gpu_mem_used_mib"] for r in ok("decode", i) if "gpu_mem_used_mib" in r), default=None)
    print(f"| {i} | {fmt(med('decode', i, 'tokens_per_s'), '{:.0f}')} | {fmt(med('decode', i, 's'), '{:.2f}')} | "
          f"{fmt(mem, '{:.0f}')} |")
a, b = med("decode", "harness", "tokens_per_s"), med("decode", "transformers", "tokens_per_s")
print(f"\nharness / transformers generate: **{fmt(a and b and a / b, '{:.2f}x')}** (goal ≥ 3x)\n")

print("## One Qwen3-30B-A3B MoE layer, forward + backward\n")
print("| impl | tokens/s | s | expert TFLOP/s |\n|---|---|---|---|")
for i in ["harness-grouped", "harness-loop", "torch-grouped", "torch-loop"]:
    print(f"| {i} | {fmt(med('moe', i, 'tokens_per_s'), '{:.0f}')} | {fmt(med('moe', i, 's'), '{:.4f}')} | "
          f"{fmt(med('moe', i, 'expert_tflops'), '{:.1f}')} |")
a, b = med("moe", "harness-grouped", "s"), med("moe", "harness-loop", "s")
print(f"\nharness grouped vs loop: **{fmt(a and b and b / a, '{:.2f}x')}** (goal ≥ 2x)\n")

print("## LoRA step memory (recompute, rank 16 on q/k/v/o)\n")
print("| impl | GPU mem used MiB (nvidia-smi max) | torch max reserved MiB | tokens/s |\n|---|---|---|---|")
for i in ["harness", "transformers"]:
    for r in ok("lora-memory", i):
        print(f"| {i} | {fmt(r.get('gpu_mem_used_mib'), '{:.0f}')} | {fmt(r.get('cuda_max_reserved_mib'), '{:.0f}')} | "
              f"{fmt(r.get('tokens_per_s'), '{:.0f}')} |")
print()
if errs:
    print("## Failed runs\n")
    for r in errs:
        print(f"- {r['bench']} / {r['impl']}: {r['error']}  \n  `{r['command']}`")
    print()
print("## Commands\n")
seen = []
for r in rows:
    if r["command"] not in seen:
        seen.append(r["command"])
for c in seen:
    print(f"- `{c}`")
