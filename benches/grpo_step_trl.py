"""TRL's GRPOTrainer on the same tiny Qwen3 and batch as `harness bench-step` (CPU, fp32): 8 prompts
x 8 generations, <= 8 new tokens, one update per step (AdamW), no reference model (beta 0). Prints
JSON: median seconds per step after warm-up, and peak RSS. Usage:
    python grpo_step_trl.py --steps 20 --threads 2
"""
import argparse
import json
import os
import resource
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

# The harness's 64-symbol char vocabulary as a HF tokenizer.
chars = "0123456789abcdefghijklmnopqrstuvwxyz +-*/=<>()[]{},.:;?!|#_'\""
vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")
tok.padding_side = "left"

cfg = Qwen3Config(vocab_size=64, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=True,
                  max_position_embeddings=512, pad_token_id=0, eos_token_id=2, bos_token_id=1)
model = Qwen3ForCausalLM(cfg).float()
g = torch.Generator().manual_seed(0)
prompts = [f"{int(x)}+{int(y)}=" for x, y in torch.randint(0, 100, (8 * (a.steps + a.warmup + 2), 2), generator=g)]
ds = Dataset.from_dict({"prompt": prompts})


def reward(completions, **kw):
    return [float(len(c) % 2 == 0) for c in completions]


class Timer(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_step_begin(self, args, state, control, **kw):
        self.t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.t)


timer = Timer()
with tempfile.TemporaryDirectory() as d:
    args = GRPOConfig(output_dir=d, per_device_train_batch_size=64, num_generations=8,
                      max_completion_length=8, learning_rate=1e-4, adam_beta2=0.95, beta=0.0,
                      max_steps=a.steps + a.warmup, logging_steps=10_000, save_strategy="no",
                      report_to=[], use_cpu=True, bf16=False, temperature=1.0, seed=0,
                      dataloader_num_workers=0, disable_tqdm=True, gradient_checkpointing=False)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds,
                          processing_class=tok, callbacks=[timer])
    trainer.train()
times = sorted(timer.times[a.warmup:])
print(json.dumps({"impl": "trl-grpo", "s_per_step": times[len(times) // 2],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
