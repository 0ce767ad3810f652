#!/usr/bin/env bash
# Wall time of one grid with `--jobs 1` vs `--jobs N` (default: the core count), interleaved,
# several runs each, fresh output folders every time. Target on 2 cores: --jobs 2 ≥ 1.7× --jobs 1.
# Usage: bash benches/jobs_scaling.sh [grid=experiments/smoke.yaml] [runs=2] [jobs=cores]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
GRID=${1:-experiments/smoke.yaml}; RUNS=${2:-2}; JOBS=${3:-$(harness_cores)}
cargo test --workspace --locked --no-run >&2
BIN="$CARGO_TARGET_DIR/debug/harness"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
declare -A best
for i in $(seq "$RUNS"); do
    for j in 1 "$JOBS"; do
        start=$(date +%s.%N)
        "$BIN" run "$GRID" --out "$tmp/$i-$j" --jobs "$j" >/dev/null 2>&1
        t=$(echo "$(date +%s.%N) - $start" | bc)
        echo "run $i, --jobs $j: $t s" >&2
        if [ -z "${best[$j]:-}" ] || [ "$(echo "$t < ${best[$j]}" | bc)" = 1 ]; then best[$j]=$t; fi
    done
done
printf '| grid | --jobs 1 (best of %s) | --jobs %s | speed-up |\n|---|---|---|---|\n' "$RUNS" "$JOBS"
printf '| %s | %.1f s | %.1f s | %.2fx |\n' "$GRID" "${best[1]}" "${best[$JOBS]}" \
    "$(echo "${best[1]} / ${best[$JOBS]}" | bc -l)"
