//! Estimated seconds per step on one GPU, from FLOPs and bytes moved.
//!
//! With `N` the parameters a token's matmuls touch (active parameters, the input embedding
//! excluded), `L` layers, `q` = heads × head_dim, `P` prompt and `R` response tokens,
//! `s = P + R`, `T` = rows × s tokens in the step:
//! - **prefill** (distinct prompts only): `(2N + 2·L·q·P) · P` FLOPs per prompt, at `mfu × peak`;
//! - **decode**, `R` steps per wave (every response at its maximum length: an upper bound), each
//!   step bounded by the larger of its bytes over `mbu × bandwidth` (the engine's weights that the
//!   wave touches, plus the wave's KV cache at its mean length `P + R/2`) and its FLOPs over
//!   `mfu × peak`;
//! - **training** per epoch: a forward `(2N + 2·L·q·s) · T` (attention at the mean causal context
//!   `s/2`), a backward `(4N or 2N with LoRA's frozen base) · T + 4·L·q·s · T`, and one more
//!   forward with `train.recompute`; π_old (unless the update's forward is reused) and π_ref are
//!   one forward each; all at `mfu × peak`.
//!
//! Not modelled: kernel launch overheads (eager decode of small waves), optimizer time, host work,
//! evaluation. Measured numbers replace these estimates (`benches/gpu/one_step.sh`).
use super::memory::{kv_bytes_per_token, Sizes};
use crate::config::{RunConfig, WeightQuant};
use crate::model::Qwen3Config;
use serde::Serialize;

/// The GPU the time is estimated for.
#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    pub name: String,
    /// Dense bf16 peak, TFLOP/s.
    pub tflops: f64,
    /// Memory bandwidth, TB/s.
    pub tbs: f64,
    /// Model FLOPs utilisation of prefill and training.
    pub mfu: f64,
    /// Fraction of the bandwidth decode reaches.
    pub mbu: f64,
}

impl Default for Gpu {
    /// One H200 SXM: 989 TFLOP/s bf16 dense, 4.8 TB/s; MFU 0.35, decode at 50% of bandwidth.
    fn default() -> Self {
        Gpu {
            name: "H200".into(),
            tflops: 989.0,
            tbs: 4.8,
            mfu: 0.35,
            mbu: 0.5,
        }
    }
}

/// Seconds of one step, by stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepTime {
    pub prefill: f64,
    pub decode: f64,
    pub train: f64,
    pub total: f64,
}

/// Matmul parameters per token: the active parameters less an untied input embedding (a lookup).
fn matmul_params(m: &Qwen3Config, active: u64) -> f64 {
    let embed = m.vocab_size as u64 * m.hidden_size as u64;
    let untied_embed = if m.tie_word_embeddings { 0 } else { embed };
    (active - untied_embed) as f64
}

/// Bytes of engine weights one decode step of `rows` sequences reads: dense weights all; of each
/// sparse layer's experts the expected share that at least one of the rows routes to.
fn decode_weight_bytes(m: &Qwen3Config, total: u64, store: f64, rows: u64) -> f64 {
    let Some(moe) = &m.moe else {
        return total as f64 * store;
    };
    let h = m.hidden_size as f64;
    let expert = 3.0 * h * moe.moe_intermediate_size as f64;
    let e = moe.num_experts as f64;
    let untouched = (1.0 - moe.num_experts_per_tok as f64 / e).powf(rows as f64);
    let sparse = (0..m.num_hidden_layers)
        .filter(|&l| m.is_sparse_layer(l))
        .count() as f64;
    let skipped = sparse * e * expert * untouched;
    (total as f64 - skipped) * store
}

/// The time model (see the module docs).
pub fn estimate(
    cfg: &RunConfig,
    m: &Qwen3Config,
    z: &Sizes,
    active: u64,
    fused_old: bool,
    gpu: &Gpu,
) -> StepTime {
    let n = matmul_params(m, active);
    let flops_s = gpu.tflops * 1e12 * gpu.mfu;
    let bw = gpu.tbs * 1e12 * gpu.mbu;
    let layers = m.num_hidden_layers as f64;
    let q = (m.num_attention_heads * m.head_dim) as f64;
    let p = z.prompt_len as f64;
    let r = cfg.rollout.max_new_tokens as f64;
    let s = p + r;
    let prompts = cfg.rollout.prompts_per_step as f64;
    let prefill = prompts * p * (2.0 * n + 2.0 * layers * q * p) / flops_s;

    let eng = &cfg.rollout.engine;
    let store = match eng.weight_quant {
        WeightQuant::None => super::memory::bytes(eng.precision) as f64,
        _ => 1.0,
    };
    let kv_tok = kv_bytes_per_token(m, super::memory::bytes(eng.precision)) as f64;
    let mut decode = 0.0;
    let mut left = z.seqs;
    while left > 0 {
        let rows = left.min(z.wave);
        left -= rows;
        let bytes =
            decode_weight_bytes(m, z.total, store, rows) + rows as f64 * (p + r / 2.0) * kv_tok;
        let flops = rows as f64 * (2.0 * n + 4.0 * layers * q * (p + r / 2.0));
        decode += r * (bytes / bw).max(flops / flops_s);
    }

    let t = z.seqs as f64 * s;
    let fwd = (2.0 * n + 2.0 * layers * q * s) * t;
    let train_mult = if cfg.model.lora.is_some() { 2.0 } else { 3.0 };
    // Backward of the matmuls: 2× forward (weights and inputs), 1× with a frozen base; attention
    // always 2×.
    let bwd = (train_mult - 1.0) * 2.0 * n * t + 2.0 * 2.0 * layers * q * s * t;
    let recompute = if cfg.train.recompute { fwd } else { 0.0 };
    let epochs = cfg.train.ppo_epochs as f64;
    let mut train_flops = epochs * (fwd + bwd + recompute);
    if !fused_old {
        train_flops += fwd;
    }
    if z.ref_model {
        train_flops += fwd;
    }
    if z.value_params > 0 {
        train_flops += fwd + epochs * (fwd + bwd + recompute);
    }
    let train = train_flops / flops_s;
    StepTime {
        prefill,
        decode,
        train,
        total: prefill + decode + train,
    }
}
