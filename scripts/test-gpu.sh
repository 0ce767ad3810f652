#!/usr/bin/env bash
# Runs the tests that need a CUDA device (marked `#[ignore = "needs a CUDA device: …"]`, so a
# plain `cargo test` reports them as ignored). Fails if no CUDA device is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo test --workspace --locked "$@" -- --ignored cuda
