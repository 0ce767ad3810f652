#!/usr/bin/env bash
# The CI gate against mutants of the smoke grid (tests/cli/gate_mutants.rs, `#[ignore]`d in the
# plain test run because it trains five smoke grids, about 7 min on 2 cores): a no-learning run
# (lr 1e-9; it must fail the reward's `learns` check), lr x 100, logit noise 0.3 and a 4-step
# stale engine (both must fail the discrepancy check) must each fail the smoke baseline of this
# kind of CPU (`harness_smoke_baseline` in env.sh) at every grid point; the unchanged grid with
# other seeds must pass. `.ci/run` calls it after the smoke gate. Extra arguments go to cargo test
# (e.g. --release); HARNESS_SMOKE_BASELINE=FILE checks another baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
if [ -z "${HARNESS_SMOKE_BASELINE:-}" ]; then
    HARNESS_SMOKE_BASELINE=$(harness_smoke_baseline)
    export HARNESS_SMOKE_BASELINE
fi
cargo test --workspace --locked --test tests "$@" gate_mutants -- --ignored --nocapture
