#!/usr/bin/env bash
# GPU comparison for issue #9 (and #4's decode number): this harness vs transformers / plain torch,
# same GPU, random weights, interleaved runs. Writes reports/perf/gpu-<date>.md (+ .jsonl raw rows).
#
#   bash benches/gpu/compare.sh            # full set (about 10-20 min on one H100)
#   QUICK=1 bash benches/gpu/compare.sh    # smoke test with tiny shapes (works on CPU: DEVICE=cpu)
#
# Needs: python3 with torch (CUDA build) and transformers (peft optional, for the HF LoRA row), and
# the `harness` binary built on a machine with Rust (`cargo test --workspace --no-run` leaves it in
# $CARGO_TARGET_DIR/debug/harness; copy it along if the GPU machine has no Rust toolchain). The
# binary links the libtorch inside that python's torch package (LD_LIBRARY_PATH is set below).
#
# Env: HARNESS_BIN (path of the binary), PYTHON (default python3), DEVICE (default cuda), RUNS
# (interleaved repetitions, default 2), PEAK_TFLOPS (bf16 dense peak for MFU; default from the GPU
# name: H100/H200 SXM 989), TRAIN_BATCH/TRAIN_SEQ (default 16/2048), DECODE_BATCH/DECODE_NEW
# (64/512), MOE_TOKENS (16384), LORA_BATCH/LORA_SEQ (8/4096).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
RUNS=${RUNS:-2}
QUICK=${QUICK:-0}
if [ -z "${HARNESS_BIN:-}" ]; then
    for c in "${CARGO_TARGET_DIR:-target}/release/harness" "${CARGO_TARGET_DIR:-target}/debug/harness" \
             "$HOME/.cache/harness/target/debug/harness" ./harness; do
        [ -x "$c" ] && HARNESS_BIN=$c && break
    done
fi
[ -x "${HARNESS_BIN:-}" ] || { echo "harness binary not found: set HARNESS_BIN" >&2; exit 2; }
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"

if [ "$QUICK" = 1 ]; then
    PRESET=tiny-qwen3; LORA_PRESET=tiny-qwen3; DT=${DTYPE:-fp32}
    TB=2; TS=32; DB=4; DP=8; DN=16; MH=64; ME=8; MK=2; MI=32; MT=256; LB=2; LS=32; STEPS=2; WARM=1
else
    PRESET=qwen3-1.7b; LORA_PRESET=qwen3-8b; DT=${DTYPE:-bf16}
    TB=${TRAIN_BATCH:-16}; TS=${TRAIN_SEQ:-2048}; DB=${DECODE_BATCH:-64}; DP=128; DN=${DECODE_NEW:-512}
    MH=2048; ME=128; MK=8; MI=768; MT=${MOE_TOKENS:-16384}; LB=${LORA_BATCH:-8}; LS=${LORA_SEQ:-4096}
    STEPS=5; WARM=2
fi

stamp=$(date -u +%Y%m%d-%H%M%S)
mkdir -p reports/perf
RAW=reports/perf/gpu-$stamp.jsonl
MD=reports/perf/gpu-$stamp.md
: >"$RAW"

# Run one bench command; append its JSON line with the sampled GPU memory (nvidia-smi, MiB, max
# over the run: what the process really holds, caching allocator included), or an error row.
run() {
    local bench=$1 impl=$2; shift 2
    local log; log=$(mktemp)
    local memf; memf=$(mktemp)
    local sampler=""
    if [ "$DEVICE" != cpu ] && command -v nvidia-smi >/dev/null; then
        ( m=0; while true; do
              u=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1)
              [ -n "$u" ] && [ "$u" -gt "$m" ] && m=$u && echo "$m" >"$memf"
              sleep 0.2
          done ) &
        sampler=$!
    fi
    echo "+ $*" >&2
    timeout 900 "$@" >"$log" 2>"$log.err"
    local rc=$?
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null
    local gmem; gmem=$(cat "$memf" 2>/dev/null || true)
    "$PY" - "$log" "$log.err" "$rc" "$bench" "$impl" "${gmem:-}" "$*" >>"$RAW" <<'PY'
import json, sys
log, err, rc, bench, impl, gmem, cmd = sys.argv[1:8]
rows = [l for l in open(log) if l.strip().startswith("{")]
if rc == "0" and rows:
    row = json.loads(rows[-1])
    row["bench"] = bench  # the table's section (lora-memory rows come from bench-train)
else:
    tail = open(err).read().strip().splitlines()[-3:]
    row = {"bench": bench, "impl": impl, "error": f"exit {rc}: " + " | ".join(tail)[-400:]}
row["command"] = cmd
if gmem:
    row["gpu_mem_used_mib"] = float(gmem)
print(json.dumps(row))
PY
    rm -f "$log" "$log.err" "$memf"
}

H=("$HARNESS_BIN"); P=("$PY" benches/gpu/hf_bench.py)
C=(--device "$DEVICE" --dtype "$DT" --steps "$STEPS" --warmup "$WARM")
for i in $(seq "$RUNS"); do
    # 1. Training step: forward + backward + AdamW, activation recompute on both sides.
    run train harness "${H[@]}" bench-train --preset "$PRESET" --batch "$TB" --seq "$TS" --recompute "${C[@]}"
    run train transformers "${P[@]}" train --preset "$PRESET" --batch "$TB" --seq "$TS" --recompute "${C[@]}"
    # 2. Batched greedy decode with the KV cache.
    run decode harness "${H[@]}" bench-decode --preset "$PRESET" --batch "$DB" --prompt-len "$DP" --new-tokens "$DN" \
        --device "$DEVICE" --dtype "$DT" --steps 2 --warmup 1
    run decode transformers "${P[@]}" decode --preset "$PRESET" --batch "$DB" --prompt-len "$DP" --new-tokens "$DN" \
        --device "$DEVICE" --dtype "$DT" --steps 2 --warmup 1
    # 3. One Qwen3-30B-A3B MoE layer, grouped GEMM vs per-expert loop.
    for impl in grouped loop; do
        run moe "harness-$impl" "${H[@]}" bench-moe --hidden $MH --experts $ME --top-k $MK --inter $MI --tokens $MT \
            --impl $impl "${C[@]}"
        run moe "torch-$impl" "${P[@]}" moe --hidden $MH --experts $ME --top-k $MK --inter $MI --tokens $MT \
            --impl $impl "${C[@]}"
    done
done
# 4. Peak memory of a LoRA step of qwen3-8b at 8 x 4096 with recompute (once).
run lora-memory harness "${H[@]}" bench-train --preset "$LORA_PRESET" --batch "$LB" --seq "$LS" --recompute \
    --lora-rank 16 --head-chunk 512 --device "$DEVICE" --dtype "$DT" --steps 2 --warmup 1
if "$PY" -c "import peft" 2>/dev/null; then
    run lora-memory transformers "${P[@]}" train --preset "$LORA_PRESET" --batch "$LB" --seq "$LS" --recompute \
        --lora-rank 16 --device "$DEVICE" --dtype "$DT" --steps 2 --warmup 1
fi

"$PY" benches/gpu/report.py "$RAW" "$0 $*" "$HARNESS_BIN" "$DEVICE" >"$MD"
echo "wrote $MD and $RAW" >&2
cat "$MD"
