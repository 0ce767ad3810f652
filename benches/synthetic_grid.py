"""Fill a prepared grid directory with fake run outputs, for timing `harness table` / `report`.

Usage: python benches/synthetic_grid.py DIR/<grid> [--steps 200] [--metrics 30] [--eval-every 20]

DIR/<grid> must be prepared by `harness slurm` (or `harness run`): for every run directory in
`runs/` (each holds the pending `status.json` that names the run) this writes what the training
loop would: `metrics.jsonl` (one object per
step: the report's metrics plus filler metrics up to --metrics), `eval.jsonl` and a `done`
status (every 37th run `diverged`). Deterministic (seeded by the run id). Standard library only.
"""
import argparse
import json
import math
import os
import random


def prepared_runs(grid_dir):
    """(id, label) of every prepared run, from its pending status.json, sorted by id."""
    runs = []
    root = os.path.join(grid_dir, "runs")
    for rid in sorted(os.listdir(root)):
        with open(os.path.join(root, rid, "status.json")) as f:
            runs.append((rid, json.load(f)["label"]))
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("grid_dir")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--metrics", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=20)
    a = ap.parse_args()
    runs = prepared_runs(a.grid_dir)
    assert runs, f"no prepared runs in {a.grid_dir}/runs"
    named = ["critic/score/mean", "rollout_corr/abs_prob_diff", "dc/lambda", "actor/entropy",
             "actor/grad_norm"]
    filler = [f"extra/m{i:02d}" for i in range(max(0, a.metrics - len(named)))]
    for n, (rid, label) in enumerate(runs):
        rng = random.Random(rid)
        d = os.path.join(a.grid_dir, "runs", rid)
        os.makedirs(d, exist_ok=True)
        level = rng.uniform(0.2, 0.6)
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
            for s in range(1, a.steps + 1):
                row = {"step": s,
                       "critic/score/mean": level * (1 - math.exp(-s / 50)) + rng.gauss(0, 0.02),
                       "rollout_corr/abs_prob_diff": 0.004 + rng.gauss(0, 0.0005),
                       "dc/lambda": 0.1 + 0.001 * s,
                       "actor/entropy": 2.0 - s / a.steps + rng.gauss(0, 0.01),
                       "actor/grad_norm": 0.5 + rng.gauss(0, 0.05)}
                row.update({m: rng.random() for m in filler})
                f.write(json.dumps(row) + "\n")
        with open(os.path.join(d, "eval.jsonl"), "w") as f:
            for s in range(0, a.steps + 1, a.eval_every):
                f.write(json.dumps({"step": s, "eval/addition/avg@4": level * s / a.steps}) + "\n")
        state = "diverged" if n % 37 == 36 else "done"
        with open(os.path.join(d, "status.json"), "w") as f:
            json.dump({"id": rid, "label": label, "state": state, "step": a.steps,
                       "total_steps": a.steps}, f)
    print(f"{len(runs)} run(s) × {a.steps} step(s) × {a.metrics} metric(s) in {a.grid_dir}")


if __name__ == "__main__":
    main()
