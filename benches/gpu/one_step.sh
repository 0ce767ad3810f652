#!/usr/bin/env bash
# One training step of each 1-GPU paper grid at full shape (issue #14): 64 prompts × 8 responses
# of up to 8192 tokens, LoRA, recompute, micro-batched updates, rollouts in waves. For each grid's
# `grpo` runs (BF16 and FP8 engine) it records the peak GPU memory (nvidia-smi, sampled every 0.2 s:
# what the process holds, caching allocator and CUDA context included), the step's seconds
# (`timing_s/step` and its gen / old_log_prob / update parts) and `harness plan`'s estimates for the
# same run, in reports/perf/one-step-<date>.md (+ .jsonl).
#
#   bash benches/gpu/one_step.sh                 # both grids; roughly 1-2 h on one H200
#   GRIDS=experiments/paper-qwen3-8b-1gpu.yaml bash benches/gpu/one_step.sh
#
# Weights: models/Qwen3-8B and models/Qwen3-30B-A3B when present (the grids' model.name); otherwise
# random weights from `harness init` (bf16, in $WORK: 16 GB / 61 GB of disk, one model at a time)
# and — with no tokenizer.json to serve the `math` task — the `addition` task (prompts of ≤ 19
# tokens instead of ~256; responses still run to 8192 tokens, as random weights rarely stop). Put
# a Qwen3 tokenizer.json at $TOKENIZER to keep the math task with random weights (a generated
# prompt file is used then).
#
# Env: HARNESS_BIN (default $CARGO_TARGET_DIR/release/harness, then debug), WORK (scratch, default
# /tmp/harness-one-step), GRIDS (space-separated grid files), MAX_NEW_TOKENS (override for a quick
# check; the default keeps the grid's 8192), TOKENIZER. Needs an NVIDIA GPU: refuses otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    echo "benches/gpu/one_step.sh needs an NVIDIA GPU (nvidia-smi lists none here): nothing was run." >&2
    echo "Plan-only estimates for the same grids: harness plan experiments/paper-qwen3-8b-1gpu.yaml --gpu-mem 141" >&2
    exit 2
fi
WORK=${WORK:-/tmp/harness-one-step}
GRIDS=${GRIDS:-experiments/paper-qwen3-8b-1gpu.yaml experiments/paper-qwen3-30b-a3b-1gpu.yaml}
if [ -z "${HARNESS_BIN:-}" ]; then
    for c in "${CARGO_TARGET_DIR:-target}/release/harness" "${CARGO_TARGET_DIR:-target}/debug/harness" ./harness; do
        [ -x "$c" ] && HARNESS_BIN=$c && break
    done
fi
[ -x "${HARNESS_BIN:-}" ] || { echo "harness binary not found: set HARNESS_BIN" >&2; exit 2; }
PY=${PYTHON:-python3}
mkdir -p "$WORK" reports/perf
stamp=$(date -u +%Y%m%d-%H%M%S)
RAW=reports/perf/one-step-$stamp.jsonl
MD=reports/perf/one-step-$stamp.md
: >"$RAW"
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 | head -1)

# Prompt files for the math task (the grid's paths, relative to the repository root).
math_data() {
    mkdir -p data
    for f in data/dapo-math-17k.jsonl data/aime24.jsonl data/aime25.jsonl data/amc23.jsonl \
             data/math500.jsonl data/minerva.jsonl data/olympiadbench.jsonl; do
        [ -f "$f" ] || "$PY" - "$f" <<'PY'
import json, sys
with open(sys.argv[1], "w") as out:
    for i in range(256):
        q = f"Let x = {i + 3}. Compute the sum of the first x positive integers, then reduce it modulo 97. " * 6
        out.write(json.dumps({"prompt": q.strip(), "answer": str(((i + 3) * (i + 4) // 2) % 97)}) + "\n")
PY
    done
}

for grid in $GRIDS; do
    model=$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["base"]["model"]["name"])' "$grid" 2>/dev/null \
            || grep -m1 -oE 'name: models/[^ ,}]+' "$grid" | sed 's/name: //')
    sets=(--set train.steps=1 --set eval.every=0 --set eval.prompts=1 --set eval.k=1 --set checkpoint.every=0)
    [ -n "${MAX_NEW_TOKENS:-}" ] && sets+=(--set "rollout.max_new_tokens=$MAX_NEW_TOKENS")
    source_note="checkpoint $model"
    prompt_len=()
    if [ ! -f "$model/config.json" ]; then
        preset=$(basename "$model" | tr 'A-Z' 'a-z')
        rand=$WORK/$preset
        if [ ! -f "$rand/config.json" ]; then
            rm -rf "$WORK"/qwen3-*  # one random model on disk at a time
            echo "+ harness init $preset (random weights, bf16) -> $rand" >&2
            "$HARNESS_BIN" init "$preset" --out "$rand" --dtype bf16
        fi
        sets+=(--set "model.name=$rand")
        source_note="random weights (harness init $preset)"
        if [ -n "${TOKENIZER:-}" ]; then
            cp "$TOKENIZER" "$rand/tokenizer.json"
        else
            sets+=(--set task.name=addition --set task.difficulty=8 --set task.train_file=null --set 'task.eval_files={}')
            prompt_len=(--prompt-len 19)
            source_note="$source_note, addition task (no tokenizer)"
        fi
    fi
    math_data
    "$HARNESS_BIN" plan "$grid" "${sets[@]}" "${prompt_len[@]}" --json >"$WORK/plan.json"
    ids=$("$PY" -c 'import json, sys; print(" ".join(r["id"] for r in json.load(open(sys.argv[1]))["runs"] if r.get("case") == "grpo"))' "$WORK/plan.json")
    for id in $ids; do
        out=$WORK/runs-$id
        rm -rf "$out"
        memf=$(mktemp)
        ( m=0; while true; do
              u=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1)
              [ -n "$u" ] && [ "$u" -gt "$m" ] && m=$u && echo "$m" >"$memf"
              sleep 0.2
          done ) &
        sampler=$!
        echo "+ harness run $grid --only $id ${sets[*]}" >&2
        start=$(date +%s)
        rc=0
        "$HARNESS_BIN" run "$grid" --only "$id" "${sets[@]}" --out "$out" >"$WORK/$id.log" 2>&1 || rc=$?
        wall=$(( $(date +%s) - start ))
        kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
        "$PY" - "$grid" "$id" "$rc" "$wall" "$(cat "$memf" 2>/dev/null || echo)" "$out" "$WORK/plan.json" \
            "$source_note" "$GPU_NAME" "$WORK/$id.log" >>"$RAW" <<'PY'
import glob, json, sys
grid, rid, rc, wall, mem, out, plan, source, gpu, log = sys.argv[1:]
p = next(r for r in json.load(open(plan))["runs"] if r["id"] == rid)
row = {"grid": grid, "run": rid, "label": p["label"], "gpu": gpu, "weights": source, "exit": int(rc),
       "wall_s": int(wall), "peak_gpu_mib": int(mem) if mem else None,
       "plan_peak_mib": p["mem_peak"] >> 20, "plan_phase": p["mem"]["peak_phase"],
       "plan_s_per_step": round(p["time"]["total"], 1)}
metrics = sorted(glob.glob(f"{out}/**/metrics*.jsonl", recursive=True))
steps = [json.loads(l) for f in metrics for l in open(f) if l.strip()]
steps = [m for m in steps if "timing_s/step" in m]
if steps:
    m = steps[0]
    for k in ("timing_s/step", "timing_s/gen", "timing_s/old_log_prob", "timing_s/update_actor"):
        row[k] = m.get(k)
if int(rc) != 0:
    row["error"] = " | ".join(open(log).read().strip().splitlines()[-3:])[-400:]
print(json.dumps(row))
PY
        rm -f "$memf"
        rm -rf "$out"
    done
done

"$PY" - "$RAW" "$MD" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lines = ["# One step of the 1-GPU paper grids (benches/gpu/one_step.sh)", "",
         f"GPU: {rows[0]['gpu'] if rows else '?'}. Peak = max `nvidia-smi` memory.used during the run "
         "(CUDA context and caching allocator included); s/step = `timing_s/step` of the one step "
         "(model load and the end-of-run evaluation excluded).", "",
         "| grid | run | weights | peak GiB | plan GiB | s/step | plan s/step | gen s | old_log_prob s | update s | exit |",
         "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
f = lambda v, d=0: "" if v is None else f"{v:.{d}f}"
for r in rows:
    lines.append(f"| {r['grid']} | {r['label']} | {r['weights']} | {f(r['peak_gpu_mib'] and r['peak_gpu_mib'] / 1024, 1)} | "
                 f"{r['plan_peak_mib'] / 1024:.1f} | {f(r.get('timing_s/step'))} | {r['plan_s_per_step']:.0f} | "
                 f"{f(r.get('timing_s/gen'))} | {f(r.get('timing_s/old_log_prob'))} | {f(r.get('timing_s/update_actor'))} | "
                 f"{r['exit']}{' ' + r['error'] if 'error' in r else ''} |")
lines += ["", "Command: `bash benches/gpu/one_step.sh`", ""]
open(sys.argv[2], "w").write("\n".join(lines))
PY
cat "$MD"
