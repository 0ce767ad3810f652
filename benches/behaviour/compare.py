"""Compare two runs of benches/behaviour/grid.yaml value by value.

Usage: python compare.py OLD_GRID_DIR NEW_GRID_DIR
Every numeric value of every run's metrics.jsonl and eval.jsonl, matched by run label, file, step
and key (timing and throughput excluded: they measure the machine). Exit 0 when all are identical
and both grids have the same runs and keys, 1 otherwise.
"""
import json
import math
import os
import sys

SKIP = ("timing_s/", "perf/")


def values(grid):
    """{label: {(file, step, key): value}} for every run of a grid directory."""
    out = {}
    for run_id in sorted(os.listdir(os.path.join(grid, "runs"))):
        run = os.path.join(grid, "runs", run_id)
        with open(os.path.join(run, "status.json")) as f:
            label = json.load(f)["label"]
        vals = {}
        for name in ("metrics.jsonl", "eval.jsonl"):
            path = os.path.join(run, name)
            if not os.path.exists(path):
                continue
            with open(path) as f:
                for i, line in enumerate(f):
                    row = json.loads(line)
                    for k, v in row.items():
                        if isinstance(v, (int, float)) and not k.startswith(SKIP):
                            vals[(name, row.get("step", i), k)] = v
        out[label] = vals
    return out


def same(x, y):
    return x == y or (math.isnan(x) and math.isnan(y))


def main(old, new):
    a, b = values(old), values(new)
    problems = [f"run `{l}` only in {'old' if l in a else 'new'}" for l in sorted(set(a) ^ set(b))]
    n = differ = 0
    for label in sorted(set(a) & set(b)):
        for k in sorted(set(a[label]) ^ set(b[label]), key=str):
            problems.append(f"{label}: {k} only in {'old' if k in a[label] else 'new'}")
        for k in sorted(set(a[label]) & set(b[label]), key=str):
            n += 1
            if not same(a[label][k], b[label][k]):
                differ += 1
                if differ <= 20:
                    problems.append(f"{label}: {k}: {a[label][k]!r} -> {b[label][k]!r}")
    print(f"{len(a)} runs, {n} values compared, {n - differ} identical, {differ} differ")
    for p in problems:
        print("  " + p)
    return 0 if not problems and n > 0 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
