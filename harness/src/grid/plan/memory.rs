//! The memory model of one run, component by component (bytes).
//!
//! Three phases never overlap in a step, so the peak is what persists across the step plus the
//! largest phase:
//! - **persistent**: trainer weights, gradients, AdamW state, a frozen reference copy, the
//!   engine's copy and its staleness snapshots;
//! - **rollout**: the KV cache of one wave of `rollout.max_num_seqs` sequences of
//!   `prompt + max_new_tokens` tokens, plus the prefill's logits over the wave's distinct prompts;
//! - **scoring** (π_old / π_ref without a graph): the fp32 logits of the scored rows (the whole
//!   batch; one micro-batch when `train.micro_batch_tokens` is set);
//! - **training**: one micro-batch's activations (all layers, or with `train.recompute` the layer
//!   inputs plus one layer's internals), its fp32 logits with their gradient, (full fine-tuning
//!   below fp32) the compute-precision casts of the weights autograd keeps, and
//!   [`GRAD_TRANSIENTS`] fresh fp32 gradients of the largest trainable tensor that autograd builds
//!   before adding them into `.grad` (the tied embedding gets one from the LM head and a dense one
//!   from the lookup: with full fine-tuning of a 0.6B-shaped model, 2 × 622 MB);
//! - **sync** (LoRA with an engine of its own): one target at a time is merged (`W + BA`, in fp32)
//!   and copied into the engine, so [`MERGE_TEMPORARIES`] fp32 tensors of the largest target are
//!   alive (`BA`, its scaled copy, the sum); a MoE layer's three stacked expert weights are merged
//!   together ([`MERGE_TEMPORARIES_EXPERTS`]);
//! - **optimizer step**: AdamW updates its flat buffers in slices of at most
//!   [`ADAMW_CHUNK`] elements, keeping [`ADAMW_TEMPORARIES`] fp32 temporaries of a slice's size.
//!
//! The per-token constants count the tensors autograd saves in `model::qwen3::layer_forward`,
//! `model::ops::rms_norm` and `rollout::score` and are checked against measured CPU peaks in
//! `reports/memory/README.md`.
use crate::config::{Precision, RunConfig, WeightQuant};
use crate::model::Qwen3Config;
use crate::train::optim::ADAMW_CHUNK;

/// Bytes per response token and vocabulary entry of the training pass's head besides the
/// compute-dtype logits and their fp32 copy ([`fp32_copy`]): `log_softmax` and `exp` saved for
/// the backward, and the backward's fp32 gradients of those (calibrated on CPU, see the module
/// docs).
pub const LOGIT_BYTES_TRAIN: u64 = 20;
/// The same for a pass without a graph (scoring): log-probs, `exp`, product.
pub const LOGIT_BYTES_SCORE: u64 = 12;

/// Bytes per element of the fp32 copy of compute-dtype logits: none in fp32, where the cast is
/// the same tensor (`to_kind` to its own dtype).
pub fn fp32_copy(compute_bytes: u64) -> u64 {
    if compute_bytes < 4 {
        4
    } else {
        0
    }
}

/// Fresh fp32 gradients of the largest trainable tensor alive at once in a backward pass (see the
/// module docs; measured on CPU, `reports/memory/README.md`).
pub const GRAD_TRANSIENTS: u64 = 2;

/// fp32 tensors of the largest LoRA target alive while a sync merges it (`model::lora`'s
/// `for_each_merged`): `BA`, `BA · α/r`, `W + …`.
pub const MERGE_TEMPORARIES: u64 = 3;
/// The same when the largest target is a stacked MoE expert weight: the layer's three merged
/// expert weights plus two temporaries of the one being merged.
pub const MERGE_TEMPORARIES_EXPERTS: u64 = 5;

/// fp32 temporaries of one slice's size alive at once in `AdamW::step`: its two scratch buffers
/// and, for gradients not in fp32, the gradient's fp32 copy (an upper bound: the fused CPU fp32
/// update keeps one).
pub const ADAMW_TEMPORARIES: u64 = 3;

/// Bytes per element of a precision.
pub fn bytes(p: Precision) -> u64 {
    match p {
        Precision::Fp32 => 4,
        Precision::Bf16 | Precision::Fp16 => 2,
    }
}

/// One run's memory, by component.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Memory {
    /// Trainer weights: fp32 master copy (full fine-tuning) or the frozen base at
    /// `train.precision` plus fp32 adapters (LoRA); a PPO value model and a KL reference copy.
    pub weights: u64,
    /// fp32 gradients of the trainable parameters.
    pub grads: u64,
    /// AdamW's two fp32 moments.
    pub optimizer: u64,
    /// The engine's copy: 0 when it shares the frozen base with LoRA (engine at the trainer's
    /// precision, no quantisation), 1 byte/weight when FP8/int8-quantised, else its precision.
    pub engine: u64,
    /// Staleness snapshots: adapters only when the engine shares the base, else full copies.
    pub snapshots: u64,
    /// KV cache of one rollout wave (or of one evaluation call, when larger).
    pub kv_cache: u64,
    /// The prefill's logits over one wave's distinct prompts.
    pub prefill_logits: u64,
    /// The scoring pass's transient (fp32 logits of the rows scored at once).
    pub scoring: u64,
    /// One micro-batch's layer activations.
    pub activations: u64,
    /// One micro-batch's head: logits, log-probs and their gradients.
    pub logits: u64,
    /// Compute-precision casts of fp32 master weights kept for the backward.
    pub casts: u64,
    /// Fresh gradients of the largest trainable tensor during the backward.
    pub grad_transients: u64,
    /// The merge temporaries of a sync into an engine of its own (0 without LoRA or when the
    /// engine shares the base): the targets are merged and copied one at a time.
    pub sync: u64,
    /// AdamW's temporaries for one slice of its flat buffers.
    pub optimizer_step: u64,
    /// Whether the engine shares the trainer's frozen base.
    pub engine_shared: bool,
    /// persistent + max(rollout, scoring, training, sync, optimizer).
    pub peak: u64,
    /// The phase that sets the peak: `rollout`, `scoring`, `training`, `sync` or `optimizer`.
    pub peak_phase: &'static str,
}

/// The shapes the memory and time models read.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub total: u64,
    pub trainable: u64,
    pub value_params: u64,
    pub value_trainable: u64,
    pub ref_model: bool,
    pub prompt_len: u64,
    /// Sequences in the step.
    pub seqs: u64,
    /// Sequences in one mini-batch.
    pub mini_rows: u64,
    /// Sequences in one forward/backward pass.
    pub micro_rows: u64,
    /// Sequences the engine decodes at once.
    pub wave: u64,
    /// Tokens an evaluation call keeps in the KV cache (its batch × prompt + eval length).
    pub eval_kv_tokens: u64,
    /// Elements of the largest trainable tensor.
    pub largest_trainable: u64,
    /// Elements of the largest of them, and whether it is a stacked MoE expert weight.
    pub largest_lora_target: (u64, bool),
}

impl Sizes {
    pub fn seq_len(&self, cfg: &RunConfig) -> u64 {
        self.prompt_len + cfg.rollout.max_new_tokens as u64
    }
}

/// Rows of one forward/backward pass: as many padded sequences of `seq_len` tokens as
/// `micro_batch_tokens` holds (at least one), at most the mini-batch.
pub fn micro_rows(cfg: &RunConfig, mini_rows: u64, seq_len: u64) -> u64 {
    match cfg.train.micro_batch_tokens {
        Some(t) => (t as u64 / seq_len).clamp(1, mini_rows),
        None => mini_rows,
    }
}

/// Elements of the largest tensor AdamW updates: with full fine-tuning the embedding, LM head,
/// a stacked expert projection or a dense projection; with LoRA the largest adapter matrix.
pub fn largest_trainable(m: &Qwen3Config, lora: Option<(u64, &[String])>) -> u64 {
    let h = m.hidden_size as u64;
    let q = (m.num_attention_heads * m.head_dim) as u64;
    let inter = m.intermediate_size as u64;
    let experts = m.moe.as_ref().map_or(0, |e| {
        e.num_experts as u64 * e.moe_intermediate_size as u64 * h
    });
    match lora {
        None => (m.vocab_size as u64 * h)
            .max(experts)
            .max(inter * h)
            .max(q * h),
        Some((rank, targets)) => {
            let mlp = targets
                .iter()
                .any(|t| matches!(t.as_str(), "gate_proj" | "up_proj" | "down_proj"));
            let widest = if mlp { inter.max(h).max(q) } else { h.max(q) };
            rank * widest
        }
    }
}

/// Whether the engine runs on the trainer's frozen base and adapters (no copy of its own).
pub fn engine_shares_base(cfg: &RunConfig) -> bool {
    cfg.model.lora.is_some()
        && cfg.rollout.engine.weight_quant == WeightQuant::None
        && cfg.rollout.engine.precision == cfg.train.precision
}

/// Elements per token that one decoder layer's autograd graph keeps, at compute precision, and
/// the extra fp32 bytes of the RMSNorm upcasts when computing below fp32.
fn layer_elems(m: &Qwen3Config, l: usize, cb: u64) -> u64 {
    let h = m.hidden_size as u64;
    let qd = (m.num_attention_heads * m.head_dim) as u64;
    let kvd = (m.num_key_value_heads * m.head_dim) as u64;
    // Attention: norm input/output/scaled (3h); q: proj, norm, scaled, rotary, SDPA out and its
    // reshaped copy (6qd); k: proj, norm, scaled, rotary (4kvd); v (kvd).
    let attn = 3 * h + 6 * qd + 5 * kvd;
    // MLP: norm (3h); gate, silu(gate), up, product (4I). Sparse: router logits, and per routed
    // copy the gathered input and output (2h) and four intermediates.
    let mlp = match (&m.moe, m.is_sparse_layer(l)) {
        (Some(moe), true) => {
            let k = moe.num_experts_per_tok as u64;
            3 * h + moe.num_experts as u64 + k * (2 * h + 4 * moe.moe_intermediate_size as u64)
        }
        _ => 3 * h + 4 * m.intermediate_size as u64,
    };
    let upcast = if cb < 4 { 4 * (2 * h + qd + kvd) } else { 0 };
    (attn + mlp) * cb + upcast
}

/// Bytes of the layers' activations for `tokens` tokens: every layer's graph, or with recompute
/// each layer's input plus the largest layer's graph.
pub fn activation_bytes(m: &Qwen3Config, tokens: u64, cb: u64, recompute: bool) -> u64 {
    let per_layer: Vec<u64> = (0..m.num_hidden_layers)
        .map(|l| layer_elems(m, l, cb))
        .collect();
    let h = m.hidden_size as u64;
    if recompute {
        let inputs = m.num_hidden_layers as u64 * h * cb;
        tokens * (inputs + per_layer.iter().copied().max().unwrap_or(0))
    } else {
        tokens * per_layer.iter().sum::<u64>()
    }
}

/// Bytes of K and V per token at `kv_bytes` per element, all layers.
pub fn kv_bytes_per_token(m: &Qwen3Config, kv_bytes: u64) -> u64 {
    2 * m.num_hidden_layers as u64 * (m.num_key_value_heads * m.head_dim) as u64 * kv_bytes
}

/// The memory model (see the module docs).
pub fn estimate(cfg: &RunConfig, m: &Qwen3Config, z: &Sizes) -> Memory {
    let tb = bytes(cfg.train.precision);
    let full = cfg.model.lora.is_none();
    let eng = &cfg.rollout.engine;
    let engine_compute = bytes(eng.precision);
    let shared = engine_shares_base(cfg);
    let policy_weights = if full {
        z.total * 4
    } else {
        z.total * tb + z.trainable * 4
    };
    let value_weights = if full {
        z.value_params * 4
    } else {
        z.value_params * tb + z.value_trainable * 4
    };
    let reference = if z.ref_model { z.total * tb } else { 0 };
    let all_trainable = z.trainable + z.value_trainable;
    let engine_store = match eng.weight_quant {
        WeightQuant::None => engine_compute,
        WeightQuant::Fp8E4m3 | WeightQuant::Int8 => 1,
    };
    let (engine, snapshots) = if shared {
        (0, eng.staleness as u64 * z.trainable * 4)
    } else {
        let copy = z.total * engine_store;
        (copy, eng.staleness as u64 * copy)
    };

    let s = z.seq_len(cfg);
    let r = cfg.rollout.max_new_tokens as u64;
    let v = m.vocab_size as u64;
    let h = m.hidden_size as u64;
    // The rollout wave's or an evaluation call's cache, whichever is larger.
    let kv_cache = (z.wave * s).max(z.eval_kv_tokens) * kv_bytes_per_token(m, engine_compute);
    let prompts_per_wave = z.wave.div_ceil(cfg.rollout.group_size as u64);
    let prefill_logits = prompts_per_wave * z.prompt_len * v * engine_compute;

    let score_rows = if cfg.train.micro_batch_tokens.is_some() {
        z.micro_rows
    } else {
        z.seqs
    };
    let head = tb + fp32_copy(tb);
    let scoring = score_rows * (r * v * (head + LOGIT_BYTES_SCORE) + s * h * tb * 4);

    let tokens = z.micro_rows * s;
    let activations = activation_bytes(m, tokens, tb, cfg.train.recompute);
    let logits = z.micro_rows * r * v * (head + LOGIT_BYTES_TRAIN);
    let casts = match (full, tb < 4, cfg.train.recompute) {
        (true, true, false) => z.total * tb,
        (true, true, true) => z.total.div_ceil(m.num_hidden_layers as u64) * tb,
        _ => 0,
    };

    let persistent =
        policy_weights + value_weights + reference + all_trainable * 12 + engine + snapshots;
    let grad_transients = GRAD_TRANSIENTS * 4 * z.largest_trainable;
    let optimizer_step = ADAMW_TEMPORARIES * 4 * all_trainable.min(ADAMW_CHUNK as u64);
    let sync = match z.largest_lora_target {
        _ if full || shared => 0,
        (elems, false) => MERGE_TEMPORARIES * elems * 4,
        (elems, true) => MERGE_TEMPORARIES_EXPERTS * elems * 4,
    };
    let phases = [
        ("rollout", kv_cache + prefill_logits),
        ("scoring", scoring),
        ("training", activations + logits + casts + grad_transients),
        ("sync", sync),
        ("optimizer", optimizer_step),
    ];
    let (peak_phase, phase) = phases.iter().copied().max_by_key(|p| p.1).unwrap();
    Memory {
        weights: policy_weights + value_weights + reference,
        grads: all_trainable * 4,
        optimizer: all_trainable * 8,
        engine,
        snapshots,
        kv_cache,
        prefill_logits,
        scoring,
        activations,
        logits,
        casts,
        grad_transients,
        sync,
        optimizer_step,
        engine_shared: shared,
        peak: persistent + phase,
        peak_phase,
    }
}
