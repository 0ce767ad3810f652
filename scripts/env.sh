# Sourced by scripts/main.sh and scripts/test.sh, and by users (`. scripts/env.sh`) before running
# cargo by hand: makes sure LibTorch (from PyPI's torch wheel) is installed in a virtualenv outside
# the checkout, then points cargo/tch at it. Idempotent: a second run finds everything in place and
# installs nothing. It sets no shell options (`set -e` and friends stay with the scripts that
# source it: an interactive shell keeps its own), and fails with `return`, never `exit`.

TORCH_VERSION="2.11.0"
HARNESS_CACHE="${HARNESS_CACHE:-$HOME/.cache/harness}"
VENV="${HARNESS_VENV:-$HARNESS_CACHE/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HARNESS_CACHE/target}"

_harness_have_torch() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null
}

# CPU cores this shell may use. GNU `nproc` honours OMP_NUM_THREADS (set to 1 below), so it is
# asked without it.
harness_cores() {
    env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
}

# The kind of CPU, as far as float results go: MKL and ATen pick their kernels by vendor and
# vector ISA, so fp32 training reproduces bit for bit only on the same kind (e.g. intel-avx512,
# amd-avx512, amd-avx2). Names the CPU-specific baselines (`harness_smoke_baseline`).
harness_cpu_kind() {
    local vendor isa flags
    vendor=$(awk -F': ' '/^vendor_id/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)
    flags=$(awk -F': ' '/^flags/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)
    case "$vendor" in
        GenuineIntel) vendor=intel ;;
        AuthenticAMD) vendor=amd ;;
        *) vendor=other ;;
    esac
    case " $flags " in
        *" avx512f "*) isa=avx512 ;;
        *" avx2 "*) isa=avx2 ;;
        *) isa=other ;;
    esac
    echo "$vendor-$isa"
}

# The smoke grid's gate baseline for this CPU: baselines/smoke.<kind>.csv where one was made on
# this kind of CPU, else baselines/smoke.csv (made on the AMD EPYC VMs). Says which on stderr.
harness_smoke_baseline() {
    local root kind file
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    kind=$(harness_cpu_kind)
    file="baselines/smoke.$kind.csv"
    [ -f "$root/$file" ] || file="baselines/smoke.csv"
    echo "[gate] CPU kind $kind: baseline $file" >&2
    echo "$root/$file"
}

_harness_setup() {
    if ! _harness_have_torch; then
        echo "[setup] installing torch==$TORCH_VERSION (LibTorch) into $VENV" >&2
        mkdir -p "$HARNESS_CACHE" || return 1
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || return 1
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
        _harness_have_torch || { echo "[setup] torch install failed" >&2; return 1; }
    fi
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || { echo "[setup] cargo not found: install Rust (rustup)" >&2; return 1; }

    export PATH="$VENV/bin:$PATH"
    export LIBTORCH_USE_PYTORCH=1
    export PYTHON_SYS_EXECUTABLE="$VENV/bin/python"
    # libtorch's bundled OpenMP otherwise spins all cores; the harness sets intra-op threads itself.
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
}

_harness_setup || return 1 2>/dev/null || exit 1
