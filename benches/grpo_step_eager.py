"""One full GRPO step in plain PyTorch eager + transformers, the same work as `harness bench-step`:
tiny Qwen3 (hidden 128, 4 layers, 4/2 heads, head_dim 32, intermediate 384, tied, vocab 64),
8 prompts x 8 samples, <= 8 new tokens with the KV cache, pi_old recompute, one PPO-clip update with
AdamW over the whole batch. Prints JSON: seconds per step (median over steps after warm-up) and
peak RSS. Usage: python grpo_step_eager.py --steps 20 --threads 2
"""
import argparse
import json
import resource
import time

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
cfg = Qwen3Config(vocab_size=64, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=True,
                  max_position_embeddings=512, attn_implementation="sdpa")
model = Qwen3ForCausalLM(cfg).float()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
G, P, NEW = 8, 8, 8


def step(i):
    g = torch.Generator().manual_seed(i)
    prompts = torch.randint(3, 64, (P, 6), generator=g).repeat_interleave(G, 0)
    mask = torch.ones_like(prompts)
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=prompts, attention_mask=mask, max_new_tokens=NEW, do_sample=True,
                             temperature=1.0, top_k=0, top_p=1.0, eos_token_id=2, pad_token_id=0,
                             output_scores=True, return_dict_in_generate=True)
    seq = out.sequences
    resp = seq[:, prompts.shape[1]:]
    scores = torch.stack(out.scores, 1).log_softmax(-1)
    mu = scores.gather(-1, resp[..., None]).squeeze(-1)
    rmask = torch.ones_like(resp, dtype=torch.float32)
    ended = (resp == 2).cumsum(1)
    rmask = (ended - (resp == 2).long() == 0).float()
    rewards = (resp[:, 0] % 2 == 0).float()  # any verifiable reward; cost is negligible
    adv = (rewards.view(P, G) - rewards.view(P, G).mean(1, keepdim=True)) / (rewards.view(P, G).std(1, keepdim=True) + 1e-6)
    adv = adv.view(-1, 1).expand_as(rmask)
    full_mask = torch.cat([mask, rmask.long()], 1)
    with torch.no_grad():
        logits = model(input_ids=seq, attention_mask=full_mask).logits[:, prompts.shape[1] - 1:-1]
        old = logits.float().log_softmax(-1).gather(-1, resp[..., None]).squeeze(-1)
    model.train()
    logits = model(input_ids=seq, attention_mask=full_mask).logits[:, prompts.shape[1] - 1:-1]
    logp = logits.float().log_softmax(-1).gather(-1, resp[..., None]).squeeze(-1)
    ratio = (logp - old).exp()
    l = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2))
    loss = (l * rmask).sum() / rmask.sum()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return mu


times = []
for i in range(a.warmup + a.steps):
    t = time.perf_counter()
    step(i)
    if i >= a.warmup:
        times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"impl": "pytorch-eager", "s_per_step": times[len(times) // 2],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
