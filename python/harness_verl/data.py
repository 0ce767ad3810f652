"""The harness's math files (JSONL or Parquet with `prompt` and `answer`) in verl's RL dataset
schema: Parquet with `data_source` (selects verl's answer checker, e.g. `math_dapo`), `prompt`
(a chat: one user message), `ability`, `reward_model` {style: rule, ground_truth} and
`extra_info` {index, split}."""
import json
import os

import pandas as pd


def read_rows(path):
    if path.endswith(".parquet"):
        return pd.read_parquet(path).to_dict("records")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def to_verl(rows, data_source, split):
    out = []
    for i, r in enumerate(rows):
        if "reward_model" in r and "prompt" in r:  # already verl's layout (DAPO-Math-17K's Parquet)
            out.append({**r, "data_source": r.get("data_source") or data_source})
            continue
        if "prompt" not in r or "answer" not in r:
            raise ValueError(f"row {i}: needs `prompt` and `answer`, has {sorted(r)}")
        prompt = r["prompt"]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        out.append({"data_source": data_source, "prompt": prompt, "ability": "math",
                    "reward_model": {"style": "rule", "ground_truth": str(r["answer"])},
                    "extra_info": {"index": i, "split": split}})
    return pd.DataFrame(out)


def convert(files, out_dir, data_source):
    """`files`: name → source path; writes `<out_dir>/<name>.parquet`, skipping current ones."""
    os.makedirs(out_dir, exist_ok=True)
    for name, src in files.items():
        dst = os.path.join(out_dir, f"{name}.parquet")
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
            continue
        to_verl(read_rows(src), data_source, "train" if name == "train" else "test").to_parquet(dst + ".tmp")
        os.replace(dst + ".tmp", dst)
