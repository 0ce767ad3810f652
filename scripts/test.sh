#!/usr/bin/env bash
# Runs the whole test suite (installs LibTorch into a cached virtualenv first if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo test --workspace --locked "$@"
