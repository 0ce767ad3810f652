#!/usr/bin/env bash
# The main job: builds the CLI (installing LibTorch first if missing), then runs a small grid on a
# tiny model on CPU (experiments/quickstart.yaml: GRPO vs DC-GRPO under a bf16 + FP8 engine)
# and writes its tables to out/quickstart/tables/ and its report to out/quickstart/report/.
# Re-running resumes/reuses finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# `cargo test --no-run` builds the CLI with the same features as the test suite, so both commands
# share one build of every dependency.
cargo test --workspace --locked --no-run
BIN="$CARGO_TARGET_DIR/debug/harness"
GRID=experiments/quickstart.yaml
"$BIN" validate "$GRID"
"$BIN" plan "$GRID"
# Two jobs when there are two cores (`harness_cores` from env.sh: plain `nproc` would honour the
# OMP_NUM_THREADS=1 that env.sh exports and always say 1).
JOBS=$(( $(harness_cores) >= 2 ? 2 : 1 ))
"$BIN" run "$GRID" --out out --jobs "$JOBS" --resume
"$BIN" report out/quickstart
echo "tables: out/quickstart/tables/{steps.parquet,summary.parquet,summary.csv}"
echo "report: out/quickstart/report/report.md (+ SVG curves)"
