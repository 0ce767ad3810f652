//! What a grid costs before it runs: parameters, memory, FLOPs and tokens per run and in total.
//!
//! Estimates (state of the art for planning, not a profiler; attention FLOPs and framework
//! overheads are left out):
//! - **Parameters** from the model's shape ([`Qwen3Config::param_counts`]): total, active per
//!   token (MoE), trainable (all, or the LoRA adapters `rank · (in + out)` per adapted projection).
//!   PPO adds a value model (the trunk + a scalar head); a KL penalty adds a frozen reference copy.
//! - **Weights**: trainer copy at `train.precision` (4 or 2 bytes/param), reference copy likewise,
//!   and the rollout engine's copy at `rollout.engine.precision` (1 byte with fp8/int8 weight
//!   quantisation) × (1 + `staleness`) held snapshots.
//! - **Optimizer**: AdamW moments in fp32 (8 B per trainable param), an fp32 master copy when the
//!   trainer is not fp32 (+4 B), and gradients at trainer precision (full fine-tuning in bf16:
//!   2 + 2 + 12 = 16 B/param with the weights).
//! - **Activations** of one mini-batch, `b = prompts_per_step · group_size / mini_batches`
//!   sequences of `s = prompt_len + max_new_tokens` tokens, without recomputation (Korthikanti et
//!   al. 2022): per layer `s·b·h·(34 + 5·a·s/h)` bytes at 16 bits (×2 in fp32), plus the fp32
//!   logits and their gradient, `2 · 4 · s·b·V`.
//! - **KV cache** of the rollout (or of evaluation, with `eval.max_new_tokens` and
//!   `eval.batch_size`, when larger): `2 · L · kv_heads · head_dim · s` values per sequence for all
//!   `prompts_per_step · group_size` sequences, at engine precision.
//! - **Peak** = weights + optimizer + max(activations, KV cache) (rollout and training do not
//!   overlap).
//! - **FLOPs** per step, with `N` active parameters and `T = prompts_per_step · group_size · s`
//!   tokens: rollout `2·N·T`, π_old recompute `2·N·T`, reference `2·N·T` (KL), training
//!   `6·N·T·ppo_epochs` (`4·N·T` with LoRA: no weight gradients of the frozen base); PPO's value
//!   model adds `2·N·T + 6·N·T·ppo_epochs`. Evaluation: `2·N·prompts·k·s` per evaluation.
//! - **Tokens**: `T` per step (responses counted at their maximum length).
use super::{Grid, Run};
use crate::config::{Precision, RunConfig, WeightQuant};
use crate::model::{model_config, Qwen3Config};
use crate::objective::build_algorithm;
use crate::Result;
use serde::Serialize;

/// Planning inputs that are not in the config.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Prompt length in tokens; `None` = estimated from the task.
    pub prompt_len: Option<usize>,
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
    pub micro_batch: usize,
    pub prompt_len: usize,
    pub seq_len: usize,
    pub mem_weights: u64,
    pub mem_optimizer: u64,
    pub mem_activations: u64,
    pub mem_kv_cache: u64,
    pub mem_peak: u64,
    pub tokens_per_step: u64,
    pub generated_per_step: u64,
    pub tokens_total: u64,
    pub flops_per_step: f64,
    pub flops_eval: f64,
    pub flops_total: f64,
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
}

fn bytes(p: Precision) -> u64 {
    match p {
        Precision::Fp32 => 4,
        Precision::Bf16 | Precision::Fp16 => 2,
    }
}

/// Estimated prompt length of a task (tokens): character-level synthetic prompts are a few
/// operands, math problems a few hundred tokens with the chat template.
pub fn estimate_prompt_len(cfg: &RunConfig) -> usize {
    match cfg.task.name.as_str() {
        "math" => 256,
        _ => 4 * cfg.task.difficulty + 8,
    }
}

/// Trainable parameters of LoRA adapters on the configured projections.
pub fn lora_params(m: &Qwen3Config, rank: u64, targets: &[String]) -> u64 {
    let h = m.hidden_size as u64;
    let q = (m.num_attention_heads * m.head_dim) as u64;
    let kv = (m.num_key_value_heads * m.head_dim) as u64;
    let mut total = 0;
    for l in 0..m.num_hidden_layers {
        let (inter, copies) = match (&m.moe, m.is_sparse_layer(l)) {
            (Some(moe), true) => (moe.moe_intermediate_size as u64, moe.num_experts as u64),
            _ => (m.intermediate_size as u64, 1),
        };
        for t in targets {
            let (i, o, n) = match t.as_str() {
                "q_proj" => (h, q, 1),
                "k_proj" | "v_proj" => (h, kv, 1),
                "o_proj" => (q, h, 1),
                "gate_proj" | "up_proj" => (h, inter, copies),
                "down_proj" => (inter, h, copies),
                _ => (0, 0, 0),
            };
            total += rank * (i + o) * n;
        }
    }
    total
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
    let vocab = m.vocab_size as u64;
    let head = if m.tie_word_embeddings { 0 } else { vocab * h };
    let value_params = if value_model { total - head + h } else { 0 };
    let value_trainable = if value_model {
        if lora.is_some() {
            trainable + h
        } else {
            value_params
        }
    } else {
        0
    };

    let tb = bytes(cfg.train.precision);
    let eb = match cfg.rollout.engine.weight_quant {
        WeightQuant::None => bytes(cfg.rollout.engine.precision),
        WeightQuant::Fp8E4m3 | WeightQuant::Int8 => 1,
    };
    let engine_copies = 1 + cfg.rollout.engine.staleness as u64;
    let mem_weights = (total + value_params + if ref_model { total } else { 0 }) * tb
        + total * eb * engine_copies;
    let all_trainable = trainable + value_trainable;
    let master = if tb == 4 { 0 } else { 4 };
    let mem_optimizer = all_trainable * (8 + master + tb);

    let prompt_len = opts.prompt_len.unwrap_or_else(|| estimate_prompt_len(cfg)) as u64;
    let s = prompt_len + cfg.rollout.max_new_tokens as u64;
    let seqs = (cfg.rollout.prompts_per_step * cfg.rollout.group_size) as u64;
    // Checked: mini_batches ≥ 1 divides the batch.
    let b = seqs / cfg.train.mini_batches as u64;
    let layers = m.num_hidden_layers as u64;
    let a = m.num_attention_heads as u64;
    let act16 = layers * (s * b * h * 34 + 5 * a * s * s * b);
    let mut mem_activations = act16 * tb / 2 + 2 * 4 * s * b * vocab;
    if value_model {
        mem_activations += act16 * tb / 2;
    }
    let kv = (m.num_key_value_heads * m.head_dim) as u64;
    // The larger of the rollout's and the evaluation's (its own length and batch) KV cache.
    let eval_len = prompt_len + crate::task::eval::max_new_tokens(cfg) as u64;
    let eval_batch = crate::task::eval::eval_workload(cfg)
        .iter()
        .map(|(_, _, k)| crate::task::eval::sequences_per_call(cfg, *k) as u64)
        .max()
        .unwrap_or(0);
    let kv_bytes = 2 * layers * kv * bytes(cfg.rollout.engine.precision);
    let mem_kv_cache = (kv_bytes * s * seqs).max(kv_bytes * eval_len * eval_batch);
    let mem_peak = mem_weights + mem_optimizer + mem_activations.max(mem_kv_cache);

    let n = active as f64;
    let t = (seqs * s) as f64;
    let epochs = cfg.train.ppo_epochs as f64;
    let train_mult = if lora.is_some() { 4.0 } else { 6.0 };
    let mut flops_step = 2.0 * n * t + 2.0 * n * t + train_mult * n * t * epochs;
    if ref_model {
        flops_step += 2.0 * n * t;
    }
    if value_model {
        flops_step += 2.0 * n * t + train_mult * n * t * epochs;
    }
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
        params_trainable: all_trainable,
        value_model,
        ref_model,
        micro_batch: b as usize,
        prompt_len: prompt_len as usize,
        seq_len: s as usize,
        mem_weights,
        mem_optimizer,
        mem_activations,
        mem_kv_cache,
        mem_peak,
        tokens_per_step: seqs * s,
        generated_per_step: seqs * cfg.rollout.max_new_tokens as u64,
        tokens_total: seqs * s * steps as u64 + eval_tokens,
        flops_per_step: flops_step,
        flops_eval,
        flops_total: flops_step * steps as f64 + flops_eval,
        steps,
    })
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

/// The plan as a text table.
pub fn render(p: &GridPlan) -> String {
    let mut rows = vec![[
        "id".to_string(),
        "label".into(),
        "params".into(),
        "trainable".into(),
        "weights".into(),
        "optim".into(),
        "activ.".into(),
        "kv".into(),
        "peak".into(),
        "FLOPs/step".into(),
        "FLOPs/run".into(),
        "tokens/run".into(),
    ]];
    for r in &p.runs {
        rows.push([
            r.id.clone(),
            r.label.clone(),
            human_count(r.params_total as f64),
            human_count(r.params_trainable as f64),
            human_bytes(r.mem_weights),
            human_bytes(r.mem_optimizer),
            human_bytes(r.mem_activations),
            human_bytes(r.mem_kv_cache),
            human_bytes(r.mem_peak),
            human_flops(r.flops_per_step),
            human_flops(r.flops_total),
            human_count(r.tokens_total as f64),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
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
    let peak_run = p.runs.iter().max_by_key(|r| r.mem_peak);
    out.push_str(&format!(
        "total: {} runs, {} FLOPs, {} tokens; largest peak memory {}{}\n",
        p.runs.len(),
        human_flops(p.total_flops),
        human_count(p.total_tokens as f64),
        human_bytes(p.peak_mem),
        peak_run
            .map(|r| format!(" ({})", r.label))
            .unwrap_or_default()
    ));
    if let Some(r) = p.runs.first() {
        out.push_str(&format!(
            "assumed: prompt ≈ {} tokens, sequence {} tokens, mini-batch {} sequences \
             (set --prompt-len to change)\n",
            r.prompt_len, r.seq_len, r.micro_batch
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
        // Trainer bf16 (2) + engine bf16 (2) weights; 2 (grad) + 12 (fp32 master + moments).
        assert_eq!(r.mem_weights, n * 4);
        assert_eq!(r.mem_optimizer, n * 14);
        assert_eq!(r.micro_batch, 8);
        assert_eq!(r.seq_len, 256 + 8192);
        assert_eq!(r.tokens_per_step, 512 * (256 + 8192));
        let f = r.flops_per_step;
        let want = 10.0 * r.params_active as f64 * (512.0 * 8448.0);
        assert!((f - want).abs() / want < 1e-12);
        assert!(r.mem_peak > r.mem_weights + r.mem_optimizer);
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
        assert_eq!(r.mem_optimizer, r.params_trainable * 12);
    }
}
