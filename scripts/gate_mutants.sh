#!/usr/bin/env bash
# The CI gate against mutants of the smoke grid (tests/cli/gate_mutants.rs, `#[ignore]`d in the
# plain test run because it trains five smoke grids, about 5 min on 2 cores): a no-learning run
# (lr 1e-9), lr x 100, logit noise 0.3 and a 4-step stale engine must each fail
# baselines/smoke.csv at every grid point; the unchanged grid with other seeds must pass.
# `.ci/run` does not call it yet (README, "CI": the no-learning mutant still passes). Extra arguments go to cargo test (e.g. --release);
# HARNESS_SMOKE_BASELINE=FILE checks another baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo test --workspace --locked --test tests "$@" gate_mutants -- --ignored --nocapture
