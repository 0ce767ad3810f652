#!/usr/bin/env python3
"""Descriptive tables of a testbed grid's runs (reports/testbed/README.md): per grid point, the
mean over seeds of the held-out accuracy at each evaluation (step 0 is the SFT policy, before
any RL step), the training reward per 50-step window, δ̄ and the gradient norm (mean over all
steps and over the last 5), and the entropy of the last 5 steps. Standard library only.

    python3 reports/testbed/analyse.py runs/testbed [runs/testbed-lowlr …]
"""
import json
import os
import statistics as st
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def runs(grid_dir):
    out = {}
    for rid in sorted(os.listdir(os.path.join(grid_dir, "runs"))):
        d = os.path.join(grid_dir, "runs", rid)
        try:
            status = json.load(open(os.path.join(d, "status.json")))
        except FileNotFoundError:
            continue
        if status.get("state") not in ("done", "diverged"):
            continue
        point = status["label"].rsplit("/seed=", 1)[0]
        seed = int(status["label"].rsplit("/seed=", 1)[1])
        out.setdefault(point, []).append((seed, d))
    return out


def fmt(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = st.mean(xs)
    return f"{m:.3f}" if len(xs) < 2 else f"{m:.3f} ± {st.stdev(xs):.3f}"


def table(grid_dir):
    pts = runs(grid_dir)
    metric = None
    print(f"\n### `{os.path.basename(grid_dir.rstrip('/'))}` (mean ± sd over seeds)\n")
    print("| point | seeds | eval by step | reward by 50 steps | δ̄ (all / last 5) | grad norm (all / last 5) | entropy (last 5) |")
    print("|---|---:|---|---|---|---|---|")
    for point, seeds in pts.items():
        evals, rewards, dbar, dbar5, gn, gn5, ent5 = {}, {}, [], [], [], [], []
        for _, d in sorted(seeds):
            ev = rows(os.path.join(d, "eval.jsonl"))
            metric = metric or next(k for k in ev[0] if k.startswith("eval/") and "avg@" in k)
            for e in ev:
                evals.setdefault(e["step"], []).append(e.get(metric))
            m = rows(os.path.join(d, "metrics.jsonl"))
            r = [x["critic/score/mean"] for x in m]
            for i in range(0, len(r), 50):
                rewards.setdefault(i, []).append(st.mean(r[i:i + 50]))
            key = "rollout_corr/abs_prob_diff"
            dbar.append(st.mean(x[key] for x in m))
            dbar5.append(st.mean(x[key] for x in m[-5:]))
            gn.append(st.mean(x["actor/grad_norm"] for x in m))
            gn5.append(st.mean(x["actor/grad_norm"] for x in m[-5:]))
            ent5.append(st.mean(x["actor/entropy"] for x in m[-5:]))
        ev_s = "; ".join(f"{s}: {fmt(v)}" for s, v in sorted(evals.items()))
        rw_s = "; ".join(fmt(v) for _, v in sorted(rewards.items()))
        print(f"| `{point}` | {len(seeds)} | {ev_s} | {rw_s} | {fmt(dbar)} / {fmt(dbar5)} "
              f"| {fmt(gn)} / {fmt(gn5)} | {fmt(ent5)} |")
    print(f"\nAccuracy: `{metric}`; δ̄: `rollout_corr/abs_prob_diff`.")


if __name__ == "__main__":
    for g in sys.argv[1:]:
        table(g)
