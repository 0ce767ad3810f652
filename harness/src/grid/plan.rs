//! What a grid costs before it runs: parameters, memory, FLOPs, tokens and time per run and in
//! total.
//!
//! Estimates (for planning, not a profiler):
//! - **Parameters** from the model's shape ([`Qwen3Config::param_counts`]): total, active per
//!   token (MoE), trainable (all, or the LoRA adapters `rank · (in + out)` per adapted projection,
//!   per expert on MoE layers). PPO adds a value model (the trunk + a scalar head); a KL penalty
//!   adds a frozen reference copy.
//! - **Memory** by component and phase: [`memory`] (weights, gradients, AdamW, the engine's copy
//!   and snapshots, the KV cache of one rollout wave or of one evaluation call — with
//!   `eval.max_new_tokens` and `eval.batch_size` — whichever is larger, one micro-batch's
//!   activations and logits).
//! - **FLOPs** per step, with `N` active parameters and `T = prompts_per_step · group_size · s`
//!   tokens (`s` = prompt + `max_new_tokens`): rollout `2·N·T`, π_old recompute `2·N·T`, reference
//!   `2·N·T` (KL), training `6·N·T·ppo_epochs` (`4·N·T` with LoRA: no weight gradients of the
//!   frozen base) plus `2·N·T·ppo_epochs` with `train.recompute`; PPO's value model adds
//!   `2·N·T + 6·N·T·ppo_epochs`. Evaluation: `2·N·prompts·k·s` per evaluation. Attention FLOPs
//!   are left out here and counted in the time estimate.
//! - **Time per step** on one GPU at a stated MFU and decode bandwidth: [`time`].
//! - **Tokens**: `T` per step (responses counted at their maximum length).
pub mod memory;
pub mod time;

use super::{Grid, Run};
use crate::config::RunConfig;
use crate::model::{model_config, Qwen3Config};
use crate::objective::build_algorithm;
use crate::Result;
use memory::{Memory, Sizes};
use serde::Serialize;
use time::{Gpu, StepTime};

/// Planning inputs that are not in the config.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Prompt length in tokens; `None` = estimated from the task.
    pub prompt_len: Option<usize>,
    /// The GPU the time per step is estimated for.
    pub gpu: Gpu,
}

/// One run's estimate.
#[derive(Debug, Clone, Serialize)]
pub struct RunPlan {
    pub id: String,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// Axis key → value.
    pub axes: serde_yaml::Mapping,
    pub seed: i64,
    pub model: String,
    pub params_total: u64,
    pub params_active: u64,
    pub params_trainable: u64,
    pub value_model: bool,
    pub ref_model: bool,
    /// Sequences per mini-batch.
    pub mini_batch: usize,
    /// Sequences per forward/backward pass (`train.micro_batch_tokens`).
    pub micro_batch: usize,
    /// Sequences the engine decodes at once (`rollout.max_num_seqs`).
    pub rollout_wave: usize,
    pub prompt_len: usize,
    pub seq_len: usize,
    /// Memory by component; `mem.peak` is the run's estimated peak.
    pub mem: Memory,
    pub mem_peak: u64,
    pub tokens_per_step: u64,
    pub generated_per_step: u64,
    pub tokens_total: u64,
    pub flops_per_step: f64,
    pub flops_eval: f64,
    pub flops_total: f64,
    /// Estimated seconds per step on `PlanOptions::gpu`.
    pub time: StepTime,
    pub steps: usize,
}

/// A grid's estimate.
#[derive(Debug, Clone, Serialize)]
pub struct GridPlan {
    pub grid: String,
    pub runs: Vec<RunPlan>,
    pub total_flops: f64,
    pub total_tokens: u64,
    /// The largest per-run peak memory.
    pub peak_mem: u64,
    /// The GPU and utilisation the times assume.
    pub gpu: Gpu,
    /// Estimated GPU-hours of the whole grid (one GPU per run).
    pub gpu_hours: f64,
}

/// Estimated prompt length of a task (tokens): character-level synthetic prompts are a few
/// operands, math problems a few hundred tokens with the chat template.
pub fn estimate_prompt_len(cfg: &RunConfig) -> usize {
    match cfg.task.name.as_str() {
        "math" => 256,
        _ => 4 * cfg.task.difficulty + 8,
    }
}

/// `(in, out, copies)` of every projection the LoRA `targets` adapt, layer by layer (`copies`: the
/// experts of a stacked MoE projection).
fn adapted_shapes(m: &Qwen3Config, targets: &[String]) -> Vec<(u64, u64, u64)> {
    let h = m.hidden_size as u64;
    let q = (m.num_attention_heads * m.head_dim) as u64;
    let kv = (m.num_key_value_heads * m.head_dim) as u64;
    let mut shapes = Vec::new();
    for l in 0..m.num_hidden_layers {
        let (inter, copies) = match (&m.moe, m.is_sparse_layer(l)) {
            (Some(moe), true) => (moe.moe_intermediate_size as u64, moe.num_experts as u64),
            _ => (m.intermediate_size as u64, 1),
        };
        for t in targets {
            shapes.push(match t.as_str() {
                "q_proj" => (h, q, 1),
                "k_proj" | "v_proj" => (h, kv, 1),
                "o_proj" => (q, h, 1),
                "gate_proj" | "up_proj" => (h, inter, copies),
                "down_proj" => (inter, h, copies),
                _ => (0, 0, 0),
            });
        }
    }
    shapes
}

/// Elements of the largest base tensor LoRA adapts (a stacked MoE expert weight counts whole), and
/// whether it is a stacked expert weight.
pub fn largest_lora_target(m: &Qwen3Config, targets: &[String]) -> (u64, bool) {
    adapted_shapes(m, targets)
        .iter()
        .map(|&(i, o, n)| (i * o * n, n > 1))
        .max()
        .unwrap_or((0, false))
}

/// Trainable parameters of LoRA adapters on the configured projections.
pub fn lora_params(m: &Qwen3Config, rank: u64, targets: &[String]) -> u64 {
    adapted_shapes(m, targets)
        .iter()
        .map(|(i, o, n)| rank * (i + o) * n)
        .sum()
}

/// The shape of a model spec; a model directory that is not there (yet) falls back to the preset
/// its name ends with (`models/Qwen3-8B` → `qwen3-8b`), so a grid can be planned before the
/// weights are downloaded.
pub fn model_shape(name: &str) -> Result<Qwen3Config> {
    model_config(name).or_else(|e| {
        let base = std::path::Path::new(name)
            .file_name()
            .map(|b| b.to_string_lossy().to_lowercase());
        match base {
            Some(b) if !std::path::Path::new(name).exists() => {
                crate::model::presets::preset(&b).map_err(|_| e)
            }
            _ => Err(e),
        }
    })
}

/// Estimate one run.
pub fn plan_run(run: &Run, opts: &PlanOptions) -> Result<RunPlan> {
    let cfg = &run.config;
    let m = model_shape(&cfg.model.name)?;
    let (total, active) = m.param_counts();
    let lora = cfg.model.lora.as_ref();
    let trainable = match lora {
        Some(l) => lora_params(&m, l.rank as u64, &l.targets),
        None => total,
    };
    let alg = build_algorithm(&cfg.algorithm);
    let value_model = alg.needs_value_model();
    let ref_model = alg.needs_ref_policy();
    let h = m.hidden_size as u64;
    let head = if m.tie_word_embeddings {
        0
    } else {
        m.vocab_size as u64 * h
    };
    let value_params = if value_model { total - head + h } else { 0 };
    let value_trainable = match (value_model, lora.is_some()) {
        (false, _) => 0,
        (true, true) => trainable + h,
        (true, false) => value_params,
    };

    let prompt_len = opts.prompt_len.unwrap_or_else(|| estimate_prompt_len(cfg)) as u64;
    let s = prompt_len + cfg.rollout.max_new_tokens as u64;
    let seqs = (cfg.rollout.prompts_per_step * cfg.rollout.group_size) as u64;
    // Checked: mini_batches ≥ 1 divides the batch.
    let mini_rows = seqs / cfg.train.mini_batches as u64;
    let eval_len = prompt_len + crate::task::eval::max_new_tokens(cfg) as u64;
    // The engine decodes an evaluation call in waves of `rollout.max_num_seqs` too.
    let eval_batch = crate::task::eval::eval_workload(cfg)
        .iter()
        .map(|(_, _, k)| crate::task::eval::sequences_per_call(cfg, *k) as u64)
        .max()
        .unwrap_or(0)
        .min(cfg.rollout.max_num_seqs.map_or(u64::MAX, |w| w as u64));
    let sizes = Sizes {
        total,
        trainable,
        value_params,
        value_trainable,
        ref_model,
        prompt_len,
        seqs,
        mini_rows,
        micro_rows: memory::micro_rows(cfg, mini_rows, s),
        wave: cfg
            .rollout
            .max_num_seqs
            .map_or(seqs, |w| (w as u64).min(seqs)),
        eval_kv_tokens: eval_len * eval_batch,
        largest_trainable: memory::largest_trainable(
            &m,
            lora.map(|l| (l.rank as u64, l.targets.as_slice())),
        ),
        largest_lora_target: lora.map_or((0, false), |l| largest_lora_target(&m, &l.targets)),
    };
    let mem = memory::estimate(cfg, &m, &sizes);
    let t = &cfg.train;
    let fused_old = t.ppo_epochs == 1 && t.mini_batches == 1 && !t.recompute;
    let time = time::estimate(cfg, &m, &sizes, active, fused_old, &opts.gpu);

    let n = active as f64;
    let flops_step = step_flops(
        cfg,
        n,
        (seqs * s) as f64,
        lora.is_some(),
        ref_model,
        value_model,
    );
    let steps = cfg.train.steps;
    // Every `eval.every` steps from step 0, and at the end; only at the end when 0.
    let evals = match steps.checked_div(cfg.eval.every) {
        None => 1,
        Some(q) => q + 1 + usize::from(!steps.is_multiple_of(cfg.eval.every)),
    };
    let eval_seqs: usize = crate::task::eval::eval_workload(cfg)
        .iter()
        .map(|(_, n, k)| n * k)
        .sum();
    let eval_tokens = (evals * eval_seqs) as u64 * eval_len;
    let flops_eval = 2.0 * n * eval_tokens as f64;
    Ok(RunPlan {
        id: run.id.clone(),
        label: run.label.clone(),
        case: run.case.clone(),
        axes: run
            .axes
            .iter()
            .map(|(k, v)| (serde_yaml::Value::String(k.clone()), v.clone()))
            .collect(),
        seed: run.seed,
        model: cfg.model.name.clone(),
        params_total: total,
        params_active: active,
        params_trainable: trainable + value_trainable,
        value_model,
        ref_model,
        mini_batch: mini_rows as usize,
        micro_batch: sizes.micro_rows as usize,
        rollout_wave: sizes.wave as usize,
        prompt_len: prompt_len as usize,
        seq_len: s as usize,
        mem_peak: mem.peak,
        mem,
        tokens_per_step: seqs * s,
        generated_per_step: seqs * cfg.rollout.max_new_tokens as u64,
        tokens_total: seqs * s * steps as u64 + eval_tokens,
        flops_per_step: flops_step,
        flops_eval,
        flops_total: flops_step * steps as f64 + flops_eval,
        time,
        steps,
    })
}

/// FLOPs of one step for `n` active parameters and `tok` tokens: sampling and π_old's scoring
/// (2N per token each), the update (6N per token per epoch, 4N with LoRA, +2N to recompute
/// activations), π_ref's scoring and the critic's scoring and update when the algorithm has them.
fn step_flops(cfg: &RunConfig, n: f64, tok: f64, lora: bool, ref_model: bool, value: bool) -> f64 {
    let epochs = cfg.train.ppo_epochs as f64;
    let train_mult = if lora { 4.0 } else { 6.0 };
    let recompute = if cfg.train.recompute { 2.0 } else { 0.0 };
    let update = (train_mult + recompute) * n * tok * epochs;
    let mut flops = 2.0 * n * tok + 2.0 * n * tok + update;
    if ref_model {
        flops += 2.0 * n * tok;
    }
    if value {
        flops += 2.0 * n * tok + update;
    }
    flops
}

/// Estimate every run of a grid.
pub fn plan(grid: &Grid, opts: &PlanOptions) -> Result<GridPlan> {
    let runs = grid
        .runs
        .iter()
        .map(|r| plan_run(r, opts))
        .collect::<Result<Vec<_>>>()?;
    Ok(GridPlan {
        grid: grid.name.clone(),
        total_flops: runs.iter().map(|r| r.flops_total).sum(),
        total_tokens: runs.iter().map(|r| r.tokens_total).sum(),
        peak_mem: runs.iter().map(|r| r.mem_peak).max().unwrap_or(0),
        gpu: opts.gpu.clone(),
        gpu_hours: runs
            .iter()
            .map(|r| r.time.total * r.steps as f64 / 3600.0)
            .sum(),
        runs,
    })
}

/// `1.2 GiB`, `340 MiB`.
pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    const K: f64 = 1024.0;
    if b >= K * K * K {
        format!("{:.1} GiB", b / (K * K * K))
    } else if b >= K * K {
        format!("{:.0} MiB", b / (K * K))
    } else if b >= K {
        format!("{:.0} KiB", b / K)
    } else {
        format!("{b:.0} B")
    }
}

/// `8.19B`, `0.80M`.
pub fn human_count(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// `3.2e15`.
pub fn human_flops(f: f64) -> String {
    format!("{f:.2e}")
}

/// `95 s`, `41 min`, `3.2 h`.
pub fn human_secs(secs: f64) -> String {
    if secs >= 3600.0 {
        format!("{:.1} h", secs / 3600.0)
    } else if secs >= 60.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{secs:.1} s")
    }
}

/// Rows of cells, left-aligned in the first two columns, right-aligned after.
fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < 2 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The plan as a text table.
pub fn render(p: &GridPlan) -> String {
    let head = [
        "id",
        "label",
        "params",
        "trainable",
        "weights",
        "grad+opt",
        "engine",
        "kv",
        "activ.",
        "logits",
        "peak",
        "phase",
        "s/step",
        "FLOPs/run",
        "tokens/run",
    ];
    let mut rows = vec![head.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for r in &p.runs {
        let m = &r.mem;
        rows.push(vec![
            r.id.clone(),
            r.label.clone(),
            human_count(r.params_total as f64),
            human_count(r.params_trainable as f64),
            human_bytes(m.weights),
            human_bytes(m.grads + m.optimizer),
            human_bytes(m.engine + m.snapshots),
            human_bytes(m.kv_cache),
            human_bytes(m.activations),
            human_bytes(m.logits),
            human_bytes(r.mem_peak),
            m.peak_phase.to_string(),
            format!("{:.0}", r.time.total),
            human_flops(r.flops_total),
            human_count(r.tokens_total as f64),
        ]);
    }
    let mut out = table(&rows);
    let peak_run = p.runs.iter().max_by_key(|r| r.mem_peak);
    out.push_str(&format!(
        "total: {} runs, {} FLOPs, {} tokens, ≈ {:.0} GPU-hours; largest peak memory {}{}\n",
        p.runs.len(),
        human_flops(p.total_flops),
        human_count(p.total_tokens as f64),
        p.gpu_hours,
        human_bytes(p.peak_mem),
        peak_run
            .map(|r| format!(" ({})", r.label))
            .unwrap_or_default()
    ));
    if let Some(r) = p.runs.first() {
        out.push_str(&format!(
            "assumed: prompt ≈ {} tokens (set --prompt-len to change), sequence {} tokens, \
             mini-batch {} sequences, {} per forward/backward, rollout waves of {}\n",
            r.prompt_len, r.seq_len, r.mini_batch, r.micro_batch, r.rollout_wave
        ));
        let g = &p.gpu;
        out.push_str(&format!(
            "time/step on one {} ({:.0} TFLOP/s, {:.1} TB/s; MFU {:.2}, decode at {:.0}% of \
             bandwidth, every response at max length): {} = prefill {} + decode {} + training {} \
             (run {}: ≈ {} for {} steps)\n",
            g.name,
            g.tflops,
            g.tbs,
            g.mfu,
            g.mbu * 100.0,
            human_secs(r.time.total),
            human_secs(r.time.prefill),
            human_secs(r.time.decode),
            human_secs(r.time.train),
            r.id,
            human_secs(r.time.total * r.steps as f64),
            r.steps
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::LoadOptions;
    use std::path::Path;

    /// Plan without the model directory and data files (as `harness plan` does).
    fn parse(text: &str) -> Grid {
        let opts = LoadOptions {
            check_inputs: false,
            ..Default::default()
        };
        Grid::parse_with(text, Path::new("p.yaml"), &opts).unwrap()
    }

    #[test]
    fn qwen3_8b_full_finetune_in_bf16_is_16_bytes_per_param() {
        let text = "
base:
  model: { name: models/Qwen3-8B }
  task: { name: math, train_file: data.jsonl }
  algorithm: { name: dcmdp }
  train: { precision: bf16, mini_batches: 64 }
  rollout: { prompts_per_step: 64, group_size: 8, max_new_tokens: 8192,
             engine: { precision: bf16 } }
  eval: { every: 0, prompts: 10, k: 1 }
";
        let g = parse(text);
        let p = plan(&g, &PlanOptions::default()).unwrap();
        let r = &p.runs[0];
        let n = r.params_total;
        assert!((8.1e9..8.3e9).contains(&(n as f64)), "{n}");
        // fp32 master weights (4), fp32 gradients (4), AdamW moments (8); a bf16 engine copy (2).
        assert_eq!(r.mem.weights, n * 4);
        assert_eq!(r.mem.grads, n * 4);
        assert_eq!(r.mem.optimizer, n * 8);
        assert_eq!(r.mem.engine, n * 2);
        assert!(!r.mem.engine_shared);
        assert_eq!(r.mini_batch, 8);
        assert_eq!(r.micro_batch, 8);
        assert_eq!(r.rollout_wave, 512);
        assert_eq!(r.seq_len, 256 + 8192);
        assert_eq!(r.tokens_per_step, 512 * (256 + 8192));
        let f = r.flops_per_step;
        let want = 10.0 * r.params_active as f64 * (512.0 * 8448.0);
        assert!((f - want).abs() / want < 1e-12);
        assert!(r.mem_peak > n * 18);
        assert_eq!(p.total_tokens, r.tokens_total);
    }

    #[test]
    fn lora_trains_adapters_only() {
        let text = "
base:
  model: { name: qwen3-0.6b, lora: { rank: 8, targets: [q_proj, v_proj] } }
  task: { name: addition }
  algorithm: { name: grpo }
";
        let g = parse(text);
        let r = plan_run(&g.runs[0], &PlanOptions::default()).unwrap();
        // 28 layers × 8 × ((1024 + 2048) + (1024 + 1024)).
        assert_eq!(r.params_trainable, 28 * 8 * (3072 + 2048));
        assert_eq!(r.mem.optimizer + r.mem.grads, r.params_trainable * 12);
    }

    #[test]
    fn lora_engine_of_its_own_is_synced_one_merged_target_at_a_time() {
        let grid = |engine: &str| {
            parse(&format!(
                "
base:
  model: {{ name: qwen3-0.6b, lora: {{ rank: 8, targets: [q_proj, v_proj] }} }}
  task: {{ name: addition }}
  algorithm: {{ name: grpo }}
  rollout: {{ engine: {{ precision: {engine} }} }}
"
            ))
        };
        // A bf16 engine against the fp32 base has a copy of its own: each sync merges q and v one
        // at a time, the largest (q: 1024 × 2048) with its temporaries, before it copies them.
        let g = grid("bf16");
        let r = plan_run(&g.runs[0], &PlanOptions::default()).unwrap();
        assert!(!r.mem.engine_shared);
        assert_eq!(r.mem.sync, memory::MERGE_TEMPORARIES * 1024 * 2048 * 4);
        // An fp32 engine shares the base and its adapters: nothing to merge.
        let g = grid("fp32");
        let r = plan_run(&g.runs[0], &PlanOptions::default()).unwrap();
        assert!(r.mem.engine_shared);
        assert_eq!(r.mem.sync, 0);
        // AdamW's temporaries cover one slice of the flat buffers, here smaller than the adapters.
        let slice = crate::train::optim::ADAMW_CHUNK as u64;
        assert!(r.params_trainable > slice);
        assert_eq!(r.mem.optimizer_step, memory::ADAMW_TEMPORARIES * 4 * slice);
    }
}
