#!/usr/bin/env bash
# Behaviour unchanged? Trains benches/behaviour/grid.yaml (every path of the training loop, 24 tiny
# runs, ≈ 1 min per binary on 2 idle cores) with two binaries, one job at a time so that both use
# the same threads, and compares every logged metric and evaluation value (compare.py) and the
# `harness report` each binary writes of its own runs. Exit 0: identical; 1: something differs
# (listed). Build the old binary from a worktree of the old commit with the same target dir:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && . scripts/env.sh &&
#     cargo test --workspace --no-run) && cp "$CARGO_TARGET_DIR/debug/harness" /tmp/harness-old
# Then rebuild this checkout with `touch build.rs harness/build.rs && cargo test --workspace
# --no-run`: cargo hashes path packages by their place in the workspace, so the worktree shared
# this checkout's build directories — its debug/harness and its build scripts' outputs (an old
# build.rs that linked all of libtorch stays in effect until the build scripts run again).
# Usage: bash benches/behaviour/compare.sh OLD_BIN [NEW_BIN]   (NEW_BIN: this checkout's debug build)
# THREADS=T runs both with `--threads T` (default: all cores). Results are bitwise reproducible for
# a fixed thread count; the committed grids ran with `--jobs 2` on 2 cores, i.e. THREADS=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
OLD=${1:?usage: compare.sh OLD_BIN [NEW_BIN]}
NEW=${2:-$CARGO_TARGET_DIR/debug/harness}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
status=0
for side in old new; do
    bin=$OLD; [ "$side" = new ] && bin=$NEW
    echo "[behaviour] $side: $bin" >&2
    "$bin" run benches/behaviour/grid.yaml --jobs 1 ${THREADS:+--threads "$THREADS"} --out "$tmp/$side" >"$tmp/$side.log" 2>&1 ||
        { tail -5 "$tmp/$side.log" >&2; exit 2; }
    "$bin" report "$tmp/$side/behaviour" --out "$tmp/report-$side" >/dev/null
done
"$VENV/bin/python" benches/behaviour/compare.py "$tmp/old/behaviour" "$tmp/new/behaviour" || status=1
# The list of written files (.report-files) is newer than some binaries: not part of the report.
if diff -r -x .report-files "$tmp/report-old" "$tmp/report-new" >"$tmp/report.diff"; then
    echo "reports: identical (report.md and every figure)"
else
    echo "reports differ:"; head -20 "$tmp/report.diff"; status=1
fi
exit $status
