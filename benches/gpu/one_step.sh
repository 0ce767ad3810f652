#!/usr/bin/env bash
# One training step of each 1-GPU paper grid at full shape (issue #14): 64 prompts × 8 responses
# of up to 8192 tokens, LoRA, recompute, micro-batched updates, rollouts in waves. For each grid's
# `grpo` runs (BF16 and FP8 engine) it records the peak GPU memory (nvidia-smi, sampled every 0.2 s:
# what the process holds, caching allocator and CUDA context included), the step's seconds
# (`timing_s/step` and its gen / old_log_prob / update parts) and `harness plan`'s estimates for the
# same run, in reports/perf/one-step-<date>.md (+ .jsonl).
#
#   bash benches/gpu/one_step.sh                 # both grids, two grpo runs each: hours on one
#                                                # H200 (plan's upper bound: 1.1 h per 8B step,
#                                                # 1.6 h per 30B-A3B step, at 8192-token answers)
#   MAX_NEW_TOKENS=512 GRIDS=experiments/paper-qwen3-8b-1gpu.yaml bash benches/gpu/one_step.sh
#   QUICK=1 bash benches/gpu/one_step.sh         # the same pipeline on tiny models (minutes)
#   QUICK=1 DEVICE=cpu bash benches/gpu/one_step.sh   # ... on the CPU (a test runs this)
#
# Weights: models/Qwen3-8B and models/Qwen3-30B-A3B when present (the grids' model.name); otherwise
# random weights from `harness init` (bf16, in $WORK: 16 GB / 61 GB of disk, one model at a time)
# and — with no tokenizer.json to serve the `math` task — the `addition` task (prompts of ≤ 19
# tokens instead of ~256; responses still run to 8192 tokens, as random weights rarely stop). Put
# a Qwen3 tokenizer.json at $TOKENIZER to keep the math task with random weights. The math task
# reads the grid's data files (task.train_file, task.eval_files); where one is missing, generated
# prompts of about 256 tokens stand in for all of them (the report says so).
#
# QUICK=1 keeps every feature of the grid (LoRA, recompute, micro-batches, waves, FP8 engine, the
# MoE's grouped experts) but runs it on `harness init tiny-qwen3` (tiny-qwen3-moe for the MoE grid)
# with the addition task, 4 prompts × 2 responses of ≤ 8 tokens, waves of 4, 2 mini-batches of
# 64-token micro-batches: it checks that the bench runs, not how fast. With DEVICE=cpu the memory
# column is the run's peak RSS (its processes' maximum) instead of nvidia-smi's.
#
# Env: HARNESS_BIN (default $CARGO_TARGET_DIR/release/harness, then debug), WORK (scratch, default
# /tmp/harness-one-step), GRIDS (space-separated grid files), MAX_NEW_TOKENS (override for a quick
# check; the default keeps the grid's 8192), TOKENIZER, QUICK, DEVICE (cuda, or cpu with QUICK=1),
# OUT (report folder: reports/perf, with QUICK=1 $WORK). Exit 2 when it cannot run (no GPU, no
# binary); exit 1 when a run failed (its row has the error).
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK=${QUICK:-0}
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then
    if [ "$QUICK" != 1 ]; then
        echo "DEVICE=cpu needs QUICK=1: a full-shape step of Qwen3-8B / 30B-A3B does not run on a CPU." >&2
        exit 2
    fi
elif ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    echo "benches/gpu/one_step.sh needs an NVIDIA GPU (nvidia-smi lists none here): nothing was run." >&2
    echo "Plan-only estimates for the same grids: harness plan experiments/paper-qwen3-8b-1gpu.yaml --gpu-mem 141" >&2
    echo "The pipeline on tiny models on the CPU: QUICK=1 DEVICE=cpu bash benches/gpu/one_step.sh" >&2
    exit 2
fi
WORK=${WORK:-/tmp/harness-one-step}
if [ "$QUICK" = 1 ]; then OUT=${OUT:-$WORK}; else OUT=${OUT:-reports/perf}; fi
GRIDS=${GRIDS:-experiments/paper-qwen3-8b-1gpu.yaml experiments/paper-qwen3-30b-a3b-1gpu.yaml}
if [ -z "${HARNESS_BIN:-}" ]; then
    for c in "${CARGO_TARGET_DIR:-target}/release/harness" "${CARGO_TARGET_DIR:-target}/debug/harness" ./harness; do
        [ -x "$c" ] && HARNESS_BIN=$c && break
    done
fi
[ -x "${HARNESS_BIN:-}" ] || { echo "harness binary not found: set HARNESS_BIN" >&2; exit 2; }
PY=${PYTHON:-python3}
mkdir -p "$WORK" "$OUT"
stamp=$(date -u +%Y%m%d-%H%M%S)
RAW=$OUT/one-step-$stamp.jsonl
MD=$OUT/one-step-$stamp.md
: >"$RAW"
if [ "$DEVICE" = cpu ]; then
    DEVICE_NAME="CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(getconf _NPROCESSORS_ONLN) cores)"
    MEM_SOURCE="peak RSS of the run's processes"
else
    DEVICE_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 | head -1)
    MEM_SOURCE="max nvidia-smi memory.used during the run (CUDA context and caching allocator included)"
fi

# The keys of the grid's data files that are missing (task.train_file, task.eval_files.<set>).
missing_data() {
    "$PY" - "$1" <<'PY'
import os, sys, yaml
task = yaml.safe_load(open(sys.argv[1]))["base"].get("task", {})
files = {"task.train_file": task.get("train_file")}
files.update({f"task.eval_files.{k}": v for k, v in (task.get("eval_files") or {}).items()})
print(" ".join(k for k, f in files.items() if f and not os.path.exists(f)))
PY
}

# Math prompts of about 256 tokens with integer answers, standing in for missing data files.
math_prompts() {
    [ -f "$1" ] || "$PY" - "$1" <<'PY'
import json, sys
with open(sys.argv[1], "w") as out:
    for i in range(256):
        q = f"Let x = {i + 3}. Compute the sum of the first x positive integers, then reduce it modulo 97. " * 6
        out.write(json.dumps({"prompt": q.strip(), "answer": str(((i + 3) * (i + 4) // 2) % 97)}) + "\n")
PY
}

# A random-weight model directory for preset $1 (bf16) in $WORK, made once.
random_model() {
    local rand=$WORK/$1
    if [ ! -f "$rand/config.json" ]; then
        [ "$QUICK" = 1 ] || rm -rf "$WORK"/qwen3-*  # one released-size model on disk at a time
        echo "+ harness init $1 (random weights, bf16) -> $rand" >&2
        "$HARNESS_BIN" init "$1" --out "$rand" --dtype bf16 >&2
    fi
    echo "$rand"
}

# Runs "$@" with stdout+stderr in $1.log; writes the peak memory in MiB to $1.mem (nvidia-smi's
# memory.used sampled every 0.2 s on a GPU, the processes' peak RSS on the CPU). Returns its exit.
measured() {
    local log=$1; shift
    if [ "$DEVICE" = cpu ]; then
        "$PY" -c 'import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:], stdout=open(sys.argv[1] + ".log", "w"), stderr=subprocess.STDOUT)
open(sys.argv[1] + ".mem", "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024))
sys.exit(rc)' "$log" "$@"
        return
    fi
    : >"$log.mem"
    ( m=0; while true; do
          u=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1)
          [ -n "$u" ] && [ "$u" -gt "$m" ] && m=$u && echo "$m" >"$log.mem"
          sleep 0.2
      done ) &
    local sampler=$! rc=0
    "$@" >"$log.log" 2>&1 || rc=$?
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    return $rc
}

failed=0
for grid in $GRIDS; do
    model=$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["base"]["model"]["name"])' "$grid" 2>/dev/null \
            || grep -m1 -oE 'name: models/[^ ,}]+' "$grid" | sed 's/name: //')
    preset=$(basename "$model" | tr 'A-Z' 'a-z')
    sets=(--set train.steps=1 --set eval.every=0 --set eval.prompts=1 --set eval.k=1 --set checkpoint.every=0)
    [ -n "${MAX_NEW_TOKENS:-}" ] && sets+=(--set "rollout.max_new_tokens=$MAX_NEW_TOKENS")
    addition=(--set task.name=addition --set task.train_file=null --set task.eval_files=null --set eval.k_per_set=null)
    prompt_len=()
    if [ "$QUICK" = 1 ]; then
        case $preset in *a3b*) tiny=tiny-qwen3-moe ;; *) tiny=tiny-qwen3 ;; esac
        sets+=(--set "model.name=$(random_model "$tiny")" "${addition[@]}" --set task.difficulty=2
               --set rollout.prompts_per_step=4 --set rollout.group_size=2 --set rollout.max_new_tokens=8
               --set rollout.max_num_seqs=4 --set train.mini_batches=2 --set train.micro_batch_tokens=64
               --set eval.max_new_tokens=8 --set eval.batch_size=4)
        source_note="QUICK: random weights (harness init $tiny), addition task"
    elif [ -f "$model/config.json" ]; then
        source_note="checkpoint $model"
    else
        sets+=(--set "model.name=$(random_model "$preset")")
        source_note="random weights (harness init $preset)"
        if [ -n "${TOKENIZER:-}" ]; then
            cp "$TOKENIZER" "$WORK/$preset/tokenizer.json"
        else
            sets+=("${addition[@]}" --set task.difficulty=8)
            prompt_len=(--prompt-len 19)
            source_note="$source_note, addition task (no tokenizer)"
        fi
    fi
    if [ "$QUICK" != 1 ] && [ -z "${prompt_len[*]}" ]; then
        missing=$(missing_data "$grid")
        if [ -n "$missing" ]; then
            math_prompts "$WORK/math-prompts.jsonl"
            for key in $missing; do sets+=(--set "$key=$WORK/math-prompts.jsonl"); done
            source_note="$source_note, generated math prompts for the missing $missing"
        fi
    fi
    "$HARNESS_BIN" plan "$grid" "${sets[@]}" "${prompt_len[@]}" --json >"$WORK/plan.json"
    ids=$("$PY" -c 'import json, sys; print(" ".join(r["id"] for r in json.load(open(sys.argv[1]))["runs"] if r.get("case") == "grpo"))' "$WORK/plan.json")
    for id in $ids; do
        out=$WORK/runs-$id
        rm -rf "$out"
        echo "+ harness run $grid --only $id --device $DEVICE ${sets[*]}" >&2
        start=$(date +%s)
        rc=0
        measured "$WORK/$id" "$HARNESS_BIN" run "$grid" --only "$id" --device "$DEVICE" "${sets[@]}" --out "$out" || rc=$?
        wall=$(( $(date +%s) - start ))
        [ "$rc" = 0 ] || failed=1
        "$PY" - "$grid" "$id" "$rc" "$wall" "$(cat "$WORK/$id.mem" 2>/dev/null || echo)" "$out" "$WORK/plan.json" \
            "$source_note" "$DEVICE_NAME" "$WORK/$id.log" >>"$RAW" <<'PY'
import glob, json, sys
grid, rid, rc, wall, mem, out, plan, source, device, log = sys.argv[1:]
p = next(r for r in json.load(open(plan))["runs"] if r["id"] == rid)
row = {"grid": grid, "run": rid, "label": p["label"], "device": device, "weights": source, "exit": int(rc),
       "wall_s": int(wall), "peak_mib": int(mem) if mem else None,
       "plan_peak_mib": p["mem_peak"] >> 20, "plan_phase": p["mem"]["peak_phase"],
       "plan_s_per_step": p["time"]["total"]}
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
        rm -rf "$out"
    done
done

CMD="bash benches/gpu/one_step.sh"
[ -n "${MAX_NEW_TOKENS:-}" ] && CMD="MAX_NEW_TOKENS=$MAX_NEW_TOKENS $CMD"
[ "$QUICK" = 1 ] && CMD="QUICK=1 DEVICE=$DEVICE $CMD"
CMD="GRIDS='$GRIDS' $CMD"
"$PY" - "$RAW" "$MD" "$DEVICE_NAME" "$MEM_SOURCE" "$CMD" <<'PY'
import json, sys
raw, md, device, mem_source, command = sys.argv[1:]
rows = [json.loads(l) for l in open(raw) if l.strip()]
lines = ["# One step of the 1-GPU paper grids (benches/gpu/one_step.sh)", "",
         f"Device: {device}. Peak = {mem_source}; plan = `harness plan`'s estimate of the GPU peak "
         "for the same run; s/step = `timing_s/step` of the one step (model load and the end-of-run "
         "evaluation excluded).", "",
         "| grid | run | weights | peak GiB | plan GiB | s/step | plan s/step | gen s | old_log_prob s | update s | exit |",
         "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
f = lambda v: "" if v is None else f"{v:.3g}"  # 3 significant digits: full shape and QUICK alike
for r in rows:
    lines.append(f"| {r['grid']} | {r['label']} | {r['weights']} | {f(r['peak_mib'] and r['peak_mib'] / 1024)} | "
                 f"{f(r['plan_peak_mib'] / 1024)} | {f(r.get('timing_s/step'))} | {f(r['plan_s_per_step'])} | "
                 f"{f(r.get('timing_s/gen'))} | {f(r.get('timing_s/old_log_prob'))} | {f(r.get('timing_s/update_actor'))} | "
                 f"{r['exit']}{' ' + r['error'] if 'error' in r else ''} |")
lines += ["", f"Command: `{command}`", ""]
open(md, "w").write("\n".join(lines))
PY
cat "$MD"
exit "$failed"
