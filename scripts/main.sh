#!/usr/bin/env bash
# The main job: builds the CLI (installing LibTorch first if missing) and runs it on a tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release --locked --bin harness
BIN="$CARGO_TARGET_DIR/release/harness"
"$BIN" inspect tiny-qwen3
"$BIN" inspect tiny-qwen3-moe
