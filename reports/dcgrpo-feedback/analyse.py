#!/usr/bin/env python3
"""The tables of reports/dcgrpo-feedback/2026-12-01.md from a finished run of
experiments/dcgrpo-feedback.yaml (standard library only):

    harness run experiments/dcgrpo-feedback.yaml --jobs 2 --out runs
    python3 reports/dcgrpo-feedback/analyse.py runs/dcgrpo-feedback

Per case and seed: λ at step 40, means over steps 21-40 of δ̄ (rollout_corr/abs_prob_diff), the
gradient norm (before clipping) and the probe's diag/*, and avg@4 at steps 20 and 40. Then each
case minus GRPO on the same seed (paired): mean difference, 95 % t interval (n - 1 df) and the
smallest difference the run could detect (t_{0.975} + t_{0.8}) * sd / sqrt(n); n < 2 is n/a.
"""
import collections, glob, json, math, statistics as st, sys

CASES = ["grpo", "dc-reported", "dc-squared", "dc-smooth", "dc-rate", "dc-conditional"]
# Two-sided 97.5 % and one-sided 80 % quantiles of Student's t by degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
T80 = {1: 1.376, 2: 1.061, 3: 0.978, 4: 0.941, 5: 0.920, 6: 0.906, 7: 0.896, 8: 0.889, 9: 0.883}


def load(grid_dir):
    runs = collections.defaultdict(dict)
    for d in sorted(glob.glob(grid_dir + "/runs/*")):
        s = json.load(open(d + "/status.json"))
        case, seed = s["label"].split("/")
        rows = [json.loads(l) for l in open(d + "/metrics.jsonl")]
        ev = [json.loads(l) for l in open(d + "/eval.jsonl")]
        runs[case][int(seed.split("=")[1])] = (rows, ev)
    return runs


def late(rows, key):
    xs = [r[key] for r in rows if 21 <= r["step"] <= 40 and r.get(key) is not None]
    return st.mean(xs) if xs else float("nan")


def avg4(ev, step):
    return next(v for e in ev if e["step"] == step for k, v in e.items() if k.endswith("avg@4"))


def per_seed(rows, ev):
    lam = [r["dc/lambda"] for r in rows if "dc/lambda" in r]
    return {
        "λ40": lam[-1] if lam else float("nan"),
        "δ̄": late(rows, "rollout_corr/abs_prob_diff"),
        "grad": late(rows, "actor/grad_norm"),
        "pen": late(rows, "diag/grad_norm/penalty"),
        "pol": late(rows, "diag/grad_norm/policy"),
        "cos": late(rows, "diag/grad_cos"),
        "flip": late(rows, "diag/sign_flip_trained"),
        "δ_tr": late(rows, "diag/delta_trained"),
        "δ_sy": late(rows, "diag/delta_synced"),
        "absmax": late(rows, "diag/w_absmax/max"),
        "werr": late(rows, "diag/engine_weight_err"),
        "avg20": avg4(ev, 20),
        "avg40": avg4(ev, 40),
    }


def paired(diffs):
    n = len(diffs)
    if n < 2:
        return "n/a"
    m, sd = st.mean(diffs), st.stdev(diffs)
    h = T975[n - 1] * sd / math.sqrt(n)
    mdd = (T975[n - 1] + T80[n - 1]) * sd / math.sqrt(n)
    return f"{m:+.3g} [{m - h:+.3g}, {m + h:+.3g}], detectable {mdd:.2g}"


def main(grid_dir):
    runs = load(grid_dir)
    vals = {c: {s: per_seed(*runs[c][s]) for s in sorted(runs[c])} for c in CASES}
    cols = list(next(iter(vals["dc-reported"].values())).keys())
    print("| case | seed | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for c in CASES:
        for s, v in vals[c].items():
            print(f"| {c} | {s} | " + " | ".join(f"{v[k]:.3g}" for k in cols) + " |")
    print()
    print("| case − grpo (paired by seed) | n | δ̄ steps 21–40 | avg@4 step 40 | grad norm 21–40 |")
    print("|---|---|---|---|---|")
    for c in CASES[1:]:
        seeds = sorted(set(vals[c]) & set(vals["grpo"]))
        d = lambda k: [vals[c][s][k] - vals["grpo"][s][k] for s in seeds]
        print(f"| {c} | {len(seeds)} | {paired(d('δ̄'))} | {paired(d('avg40'))} | {paired(d('grad'))} |")


if __name__ == "__main__":
    main(sys.argv[1])
