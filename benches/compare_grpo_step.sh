#!/usr/bin/env bash
# One GRPO step on tiny Qwen3 (CPU, fp32): this harness vs a PyTorch-eager + transformers loop vs
# TRL's GRPOTrainer, interleaved, several runs each, same threads. Needs the project venv
# (scripts/env.sh) with `transformers` (and `trl` for the TRL column) installed:
#   ~/.cache/harness/venv/bin/pip install transformers trl
# Usage: bash benches/compare_grpo_step.sh [runs=3] [threads=2] [steps=20]
# BASE_BIN=path/to/older/harness adds that binary as a column `harness-base` (before/after a
# change, in the same interleaved runs).
# PROFILE=release builds an optimised binary first (about 25 min cold on 2 cores); the default uses
# the binary `cargo test` builds (dependencies at opt-level 2, this crate at 1): the step's time is
# spent inside libtorch either way.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
RUNS=${1:-3}; THREADS=${2:-2}; STEPS=${3:-20}
if [ "${PROFILE:-dev}" = release ]; then
    cargo build --release --locked --bin harness >&2
    BIN="$CARGO_TARGET_DIR/release/harness"
else
    cargo test --workspace --locked --no-run >&2
    BIN="$CARGO_TARGET_DIR/debug/harness"
fi
PY="$VENV/bin/python"
export OMP_NUM_THREADS=$THREADS
out=$(mktemp)
for i in $(seq "$RUNS"); do
    "$BIN" bench-step --steps "$STEPS" --threads "$THREADS" >>"$out"
    if [ -n "${BASE_BIN:-}" ]; then
        "$BASE_BIN" bench-step --steps "$STEPS" --threads "$THREADS" |
            sed 's/"impl":"harness"/"impl":"harness-base"/' >>"$out"
    fi
    "$PY" benches/grpo_step_eager.py --steps "$STEPS" --threads "$THREADS" 2>/dev/null | tail -1 >>"$out"
    if "$PY" -c "import trl" 2>/dev/null; then
        "$PY" benches/grpo_step_trl.py --steps "$STEPS" --threads "$THREADS" 2>/dev/null | tail -1 >>"$out"
    fi
done
"$PY" - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
by = {}
for r in rows:
    by.setdefault(r["impl"], []).append(r)
base = statistics.median(r["s_per_step"] for r in by["harness"])
# Per round: each impl's s/step over the harness's in the same round (runs next to each other in
# time share the machine's load), so the spread says how much the noise moves the ratio.
def paired(rs):
    q = sorted(a["s_per_step"] / b["s_per_step"] for a, b in zip(rs, by["harness"]))
    return f"{statistics.median(q):.2f}x ({q[0]:.2f}-{q[-1]:.2f})"
print("| impl | runs | median s/step | steps/s | harness speed-up | per-round speed-up, median (min-max) | peak RSS MiB |")
print("|---|---|---|---|---|---|---|")
for impl, rs in by.items():
    s = statistics.median(r["s_per_step"] for r in rs)
    rss = max(r["peak_rss_mib"] for r in rs)
    print(f"| {impl} | {len(rs)} | {s:.4f} | {1/s:.1f} | {s/base:.2f}x | {paired(rs)} | {rss:.0f} |")
PY
