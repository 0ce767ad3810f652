#!/usr/bin/env bash
# Measured peak memory vs `harness plan`'s estimate (issue #14): one training step of a
# qwen3-0.6b-shaped model (the released layer shapes and vocabulary, random weights, LAYERS decoder
# layers) on the CPU, for full fine-tuning and LoRA × recompute on/off × two batch sizes per
# forward/backward. Each case runs alone (one after another, `nice`d); its peak RSS (`/usr/bin/time`)
# less the runtime's own (the same step on tiny-qwen3: libtorch, allocator, binary) is set beside
# plan's peak for the same config. Writes reports/memory/README.md (+ results.jsonl).
#
#   bash benches/memory/measure.sh            # 8 cases, ~8 min on 2 idle cores, peak < 9 GB
#
# Env: HARNESS_BIN (default: $CARGO_TARGET_DIR/debug/harness), PYTHON (a python with torch and
# safetensors, default the project venv), LAYERS (decoder layers, default 8: full fine-tuning of
# all 28 needs ≈ 12 GB), WORK (scratch, default /tmp/harness-memory; holds ≈ 1 GB of weights plus
# one run's checkpoint at a time; REUSE=1 keeps earlier measurements), BATCH (how the forward/backward size is set: `micro` =
# train.micro_batch_tokens, `mini` = train.mini_batches; default micro, falling back to mini
# when this build rejects or ignores the key), ENGINE_PRECISION (default bf16; fp32 with LoRA
# measures the engine sharing the trainer's base), MEASURE_ONLY=1 (runs only: no estimates, no
# table; then REUSE=1 with the binary whose `plan` to compare), ONLY_MEASURED=1 (with REUSE=1:
# tabulate the cases measured so far, run none).
set -euo pipefail
cd "$(dirname "$0")/../.."
# Peak RSS should track live tensors: glibc's own trimming (runtime::tune_allocator otherwise keeps
# up to 1 GiB of freed memory in the process), and a fixed 1 MiB mmap threshold, so every tensor of
# 1 MiB or more is its own mapping, returned when freed. With glibc's dynamic threshold such tensors
# come from the heap once one was freed, and the heap grew by fragmentation in some runs and not in
# others (seen 2026-12-02 in an RSS time series: ≈ 600 MB during one LoRA case's generation).
export HARNESS_MALLOC_DEFAULTS=1
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576
ROOT=$PWD
HARNESS=${HARNESS_BIN:-${CARGO_TARGET_DIR:-target}/debug/harness}
PY=${PYTHON:-$HOME/.cache/harness/venv/bin/python}
LAYERS=${LAYERS:-8}
WORK=${WORK:-/tmp/harness-memory}
BATCH=${BATCH:-micro}
ENGINE=${ENGINE_PRECISION:-bf16}
OUT=reports/memory
[ -x "$HARNESS" ] || { echo "harness binary not found at $HARNESS: set HARNESS_BIN" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time (GNU time) is needed for peak RSS" >&2; exit 2; }
mkdir -p "$WORK" "$OUT"
MODEL=$WORK/qwen3-0.6b-L$LAYERS

# The model: qwen3-0.6b from `harness init` (bf16 on disk), cut to its first LAYERS layers.
if [ ! -f "$MODEL/config.json" ]; then
    rm -rf "$WORK/init"
    nice "$HARNESS" init qwen3-0.6b --out "$WORK/init" --dtype bf16 --seed 0
    nice "$PY" "$ROOT/benches/memory/cut_layers.py" "$WORK/init" "$MODEL" "$LAYERS"
    rm -rf "$WORK/init"
fi

# Workload: 16 rows (4 prompts × 4) of an addition prompt (≤ 11 tokens) + 32 new tokens, one
# PPO-clip step; fp32 trainer (the CPU's precision), the engine at ENGINE.
PROMPT_LEN=11
config() { # name model lora recompute rows_per_pass
    local name=$1 model=$2 lora=$3 rc=$4 rows=$5 batch
    if [ "$BATCH" = micro ]; then
        batch="mini_batches: 2, micro_batch_tokens: $((rows * (PROMPT_LEN + 32)))"
    else
        batch="mini_batches: $((16 / rows))"
    fi
    cat >"$WORK/$name.yaml" <<EOF
name: $name
base:
  model: { name: $model, init_seed: 0$lora }
  task: { name: addition, difficulty: 4 }
  algorithm: { name: grpo }
  rollout: { prompts_per_step: 4, group_size: 4, max_new_tokens: 32, engine: { precision: $ENGINE } }
  train: { steps: 1, precision: fp32, recompute: $rc, $batch }
  eval: { every: 0, prompts: 4, k: 1 }
  checkpoint: { every: 0, keep: 1 }
seeds: [0]
EOF
}

# Peak RSS (bytes) of one `harness run`; the run's directory is removed afterwards. REUSE=1 takes
# a case's earlier measurement from $WORK (to redo only the estimates and the table).
measure() {
    local name=$1 kb
    if [ "${REUSE:-0}" = 1 ] && [ -s "$WORK/$name.rss" ]; then
        echo $(( $(tail -1 "$WORK/$name.rss") * 1024 ))
        return
    fi
    rm -rf "$WORK/runs"
    /usr/bin/time -f '%M' -o "$WORK/$name.rss" nice "$HARNESS" run "$WORK/$name.yaml" --out "$WORK/runs" \
        >"$WORK/$name.log" 2>&1 || { echo "run $name failed: see $WORK/$name.log" >&2; tail -5 "$WORK/$name.log" >&2; exit 1; }
    kb=$(tail -1 "$WORK/$name.rss")
    rm -rf "$WORK/runs"
    echo $((kb * 1024))
}

# With BATCH=micro, check that this build splits the update (a build without micro-batching
# accepts the key and runs one pass per mini-batch: the measurement would not be what it says).
if [ "$BATCH" = micro ] && ! grep -rqs "micro_batch_tokens" "$ROOT/harness/src/train/step/update.rs" "$ROOT/harness/src/train/actor.rs"; then
    echo "note: train.micro_batch_tokens is not implemented in this checkout: measuring with mini-batches" >&2
    BATCH=mini
fi

RAW=$OUT/results.jsonl
: >"$RAW"
config baseline tiny-qwen3 "" false 8
base=$(measure baseline)
echo "runtime baseline (tiny-qwen3): $((base >> 20)) MiB" >&2
LORA=", lora: { rank: 16, alpha: 32.0, targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] }"
for ft in full lora; do
    for rc in false true; do
        for rows in 8 2; do
            name=$ft-rc$rc-rows$rows
            l=""; [ "$ft" = lora ] && l=$LORA
            config "$name" "$MODEL" "$l" "$rc" "$rows"
            if [ "${ONLY_MEASURED:-0}" = 1 ] && [ ! -s "$WORK/$name.rss" ]; then
                echo "$name: not measured (ONLY_MEASURED=1)" >&2
                continue
            fi
            peak=$(measure "$name")
            "$HARNESS" plan "$WORK/$name.yaml" --json --prompt-len $PROMPT_LEN >"$WORK/$name.plan.json"
            echo "$name: peak RSS $((peak >> 20)) MiB" >&2
            [ "${MEASURE_ONLY:-0}" = 1 ] && continue
            "$PY" - "$name" "$ft" "$rc" "$rows" "$peak" "$base" "$BATCH" "$ENGINE" "$LAYERS" "$WORK/$name.plan.json" <<'PY' >>"$RAW"
import json, sys
name, ft, rc, rows, peak, base, batch, engine, layers, plan = sys.argv[1:]
plan = json.load(open(plan))["runs"][0]
print(json.dumps({"case": name, "finetune": ft, "recompute": rc == "true", "rows_per_pass": int(rows),
                  "batch_key": batch, "engine": engine, "layers": int(layers),
                  "peak_rss": int(peak), "runtime_rss": int(base), "measured": int(peak) - int(base),
                  "estimate": plan["mem"]["peak"], "phase": plan["mem"]["peak_phase"], "mem": plan["mem"]}))
PY
        done
    done
done
[ "${MEASURE_ONLY:-0}" = 1 ] && exit 0
"$PY" "$ROOT/benches/memory/report.py" "$RAW" "$OUT/README.md" "bash benches/memory/measure.sh" "$BATCH"
cat "$OUT/README.md"
