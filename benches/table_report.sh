#!/usr/bin/env bash
# Wall time of `harness table` and `harness report` on a synthetic 200-run grid (5 grid points ×
# 4 learning rates × 10 seeds, 200 steps, 30 metrics per step; benches/synthetic_grid.py fakes the
# run outputs), for one binary or two side by side (interleaved, several runs each: the machine
# is noisy).
# Usage: bash benches/table_report.sh [runs=3] [BIN …]   (default BIN: this checkout's debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
RUNS=${1:-3}; shift || true
if [ $# -eq 0 ]; then
    cargo build --locked --bin harness >&2
    set -- "$CARGO_TARGET_DIR/debug/harness"
fi
PY="${HARNESS_VENV:-${HARNESS_CACHE:-$HOME/.cache/harness}/venv}/bin/python"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/bench200.yaml" <<'YAML'
name: bench200
base:
  model: { name: tiny-qwen3 }
  task: { name: addition }
  algorithm: { name: grpo }
  train: { steps: 200 }
seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
axes: { optim.lr: [1.0e-4, 2.0e-4, 3.0e-4, 4.0e-4] }
cases:
  grpo: {}
  dcmdp:
    set: { algorithm: { name: dcmdp } }
    axes: { algorithm.c: [0.001, 0.002, 0.004, 0.008] }
YAML
# One prepared grid per binary (each writes its own manifest format), the same fake outputs.
for b in "$@"; do
    k=$(echo "$b" | md5sum | cut -c1-8)
    "$b" slurm "$tmp/bench200.yaml" --out "$tmp/$k" --gpus-per-run 0 >/dev/null
    "$PY" benches/synthetic_grid.py "$tmp/$k/bench200" >&2
done
now() { date +%s.%N; }
printf '| binary | run | table (s) | report (s) |\n|---|---:|---:|---:|\n'
for i in $(seq "$RUNS"); do
    for b in "$@"; do
        g="$tmp/$(echo "$b" | md5sum | cut -c1-8)/bench200"
        t0=$(now); "$b" table "$g" >/dev/null
        t1=$(now); "$b" report "$g" >/dev/null
        t2=$(now)
        printf '| %s | %s | %.2f | %.2f |\n' "$b" "$i" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
    done
done
