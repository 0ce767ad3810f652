#!/usr/bin/env python3
"""Python side of benches/gpu/compare.sh: the same measurements as `harness bench-train`,
`bench-decode` and `bench-moe`, with transformers (sdpa attention) + torch.optim.AdamW, transformers
`generate` with its KV cache, and a pure-torch MoE layer (per-expert loop or torch._grouped_mm).
Random weights, shapes from the harness presets. Prints one JSON line per run."""
import argparse
import json
import resource
import statistics
import time

import torch

# Mirrors harness/src/model/presets.rs.
PRESETS = {
    "tiny-qwen3": dict(vocab_size=64, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=32, intermediate_size=384, tie_word_embeddings=True),
    "qwen3-0.6b": dict(vocab_size=151936, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, intermediate_size=3072, tie_word_embeddings=True),
    "qwen3-1.7b": dict(vocab_size=151936, hidden_size=2048, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, intermediate_size=6144, tie_word_embeddings=True),
    "qwen3-8b": dict(vocab_size=151936, hidden_size=4096, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, intermediate_size=12288, tie_word_embeddings=False),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(args, dev, fn):
    times = []
    for i in range(args.warmup + max(args.steps, 1)):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mem(dev):
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if dev.type == "cuda":
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved(dev) / 2**20
    return out


def hf_model(preset, dtype, dev):
    from transformers import AutoModelForCausalLM, Qwen3Config
    cfg = Qwen3Config(**PRESETS[preset], rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=40960,
                      attention_bias=False, use_cache=True)
    torch.manual_seed(0)
    with dev:
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    return model


def bench_train(a):
    dev = torch.device(a.device)
    dtype = DTYPES[a.dtype]
    # Mixed precision as the harness does it: fp32 master weights and AdamW state, compute in dtype.
    model = hf_model(a.preset, torch.float32, dev)
    if a.lora_rank > 0:
        from peft import LoraConfig, get_peft_model  # optional dependency
        model = model.to(dtype)
        model = get_peft_model(model, LoraConfig(r=a.lora_rank, lora_alpha=2 * a.lora_rank,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    if a.recompute:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                            betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, model.config.vocab_size, (a.batch, a.seq), generator=g).pin_memory() \
        if dev.type == "cuda" else torch.randint(1, model.config.vocab_size, (a.batch, a.seq), generator=g)
    ids = ids.to(dev, non_blocking=True)
    last = {}

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        last["loss"] = loss.item()

    s = timed(a, dev, step)
    print(json.dumps({"bench": "train", "impl": "transformers", "preset": a.preset, "device": a.device,
                      "dtype": a.dtype, "batch": a.batch, "seq": a.seq, "recompute": a.recompute,
                      "lora_rank": a.lora_rank, "s_per_step": s, "tokens_per_s": a.batch * a.seq / s,
                      "loss": last["loss"], **mem(dev)}))


def bench_decode(a):
    dev = torch.device(a.device)
    model = hf_model(a.preset, DTYPES[a.dtype], dev).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, model.config.vocab_size, (a.batch, a.prompt_len), generator=g).to(dev)
    mask = torch.ones_like(ids)
    out = {}

    @torch.inference_mode()
    def run():
        seqs = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=a.new_tokens,
                              min_new_tokens=a.new_tokens, do_sample=False, use_cache=True,
                              pad_token_id=0, eos_token_id=None)
        out["generated"] = (seqs.shape[1] - a.prompt_len) * a.batch

    s = timed(a, dev, run)
    print(json.dumps({"bench": "decode", "impl": "transformers", "preset": a.preset, "device": a.device,
                      "dtype": a.dtype, "batch": a.batch, "prompt_len": a.prompt_len,
                      "new_tokens": a.new_tokens, "generated": out["generated"], "s": s,
                      "tokens_per_s": out["generated"] / s, **mem(dev)}))


def bench_moe(a):
    """Qwen3-MoE block in plain torch: router softmax → top-k → renormalise → SwiGLU experts."""
    dev = torch.device(a.device)
    dtype = DTYPES[a.dtype]
    torch.manual_seed(0)
    H, I, E, K = a.hidden, a.inter, a.experts, a.top_k
    mk = lambda *s: (torch.randn(*s, device=dev) * 0.02).to(dtype).requires_grad_()
    router, gate, up, down = mk(E, H), mk(E, I, H), mk(E, I, H), mk(E, H, I)
    x = torch.randn(a.tokens, H, device=dev).to(dtype).requires_grad_()
    gy = torch.randn(a.tokens, H, device=dev).to(dtype)

    def layer():
        probs = (x @ router.t()).softmax(-1, dtype=torch.float32)
        w, idx = probs.topk(K, -1)
        w = (w / w.sum(-1, keepdim=True)).to(dtype)
        flat = idx.reshape(-1)
        order = flat.argsort(stable=True)
        tok = order // K
        xs = x[tok]
        counts = torch.bincount(flat, minlength=E)
        if a.impl == "grouped":
            offs = counts.cumsum(0).to(torch.int32)
            h = torch.nn.functional.silu(torch._grouped_mm(xs, gate.transpose(1, 2), offs=offs)) \
                * torch._grouped_mm(xs, up.transpose(1, 2), offs=offs)
            ys = torch._grouped_mm(h, down.transpose(1, 2), offs=offs)
        else:
            outs, start = [], 0
            for e, c in enumerate(counts.tolist()):
                if c:
                    xe = xs[start:start + c]
                    outs.append((torch.nn.functional.silu(xe @ gate[e].t()) * (xe @ up[e].t())) @ down[e].t())
                    start += c
            ys = torch.cat(outs)
        ys = ys * w.reshape(-1)[order].unsqueeze(-1)
        y = torch.zeros_like(x).index_add(0, tok, ys)
        (y * gy).sum(dtype=torch.float32).backward()

    s = timed(a, dev, layer)
    flops = 6.0 * 3 * H * I * K * a.tokens
    print(json.dumps({"bench": "moe", "impl": f"torch-{a.impl}", "device": a.device, "dtype": a.dtype,
                      "hidden": H, "experts": E, "top_k": K, "inter": I, "tokens": a.tokens, "s": s,
                      "tokens_per_s": a.tokens / s, "expert_tflops": flops / s / 1e12, **mem(dev)}))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--device", default="cpu")
        sp.add_argument("--dtype", default="fp32", choices=list(DTYPES))
        sp.add_argument("--steps", type=int, default=5)
        sp.add_argument("--warmup", type=int, default=2)
        sp.add_argument("--threads", type=int, default=None)

    t = sub.add_parser("train")
    common(t)
    t.add_argument("--preset", default="tiny-qwen3", choices=list(PRESETS))
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--seq", type=int, default=128)
    t.add_argument("--recompute", action="store_true")
    t.add_argument("--lora-rank", type=int, default=0)
    d = sub.add_parser("decode")
    common(d)
    d.add_argument("--preset", default="tiny-qwen3", choices=list(PRESETS))
    d.add_argument("--batch", type=int, default=8)
    d.add_argument("--prompt-len", type=int, default=16)
    d.add_argument("--new-tokens", type=int, default=32)
    m = sub.add_parser("moe")
    common(m)
    m.add_argument("--hidden", type=int, default=2048)
    m.add_argument("--experts", type=int, default=128)
    m.add_argument("--top-k", type=int, default=8)
    m.add_argument("--inter", type=int, default=768)
    m.add_argument("--tokens", type=int, default=16384)
    m.add_argument("--impl", default="grouped", choices=["grouped", "loop"])
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    {"train": bench_train, "decode": bench_decode, "moe": bench_moe}[a.cmd](a)


if __name__ == "__main__":
    main()
