#!/usr/bin/env bash
# Runs the whole test suite (installs LibTorch into a cached virtualenv first if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo test --workspace --locked "$@"
# The verl backend's plugins and fixtures, where verl 0.9.1 is installed in the venv (see
# tests/fixtures/verl_backend/make_fixtures.py); the committed fixtures are checked by cargo above.
if "$VENV/bin/python" -c "import verl, hydra" 2>/dev/null; then
    PYTHONPATH=python "$VENV/bin/python" tests/fixtures/verl_backend/make_fixtures.py --check
else
    echo "verl not installed in $VENV: plugin fixtures not regenerated (committed ones checked)"
fi
