//! Qwen3 decoder (dense layers here; the sparse MoE block lives in `qwen3_moe.rs`). Matches Hugging Face
//! `Qwen3ForCausalLM` / `Qwen3MoeForCausalLM` numerics: fp32 RMSNorm, q/k RMSNorm before rotate-half
//! RoPE, GQA, SwiGLU, tied or untied head.
use super::config::Qwen3Config;
use super::kv_cache::KvCache;
use super::qwen3_moe::{load_balancing_loss, MoeBlock};
use super::weights::WeightSource;
use crate::Result;
use tch::{Device, Kind, Tensor};

pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Tensor {
    x.linear::<&Tensor>(w, None)
}

/// RMSNorm computed in fp32, cast back, then scaled (HF order).
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
    let kind = x.kind();
    let xf = x.to_kind(Kind::Float);
    let var = xf.square().mean_dim(-1, true, Kind::Float);
    let y = xf * (var + eps).rsqrt();
    w * y.to_kind(kind)
}

/// `down(silu(gate(x)) * up(x))`.
pub(crate) fn swiglu(x: &Tensor, gate: &Tensor, up: &Tensor, down: &Tensor) -> Tensor {
    linear(&(linear(x, gate).silu() * linear(x, up)), down)
}

fn rotate_half(x: &Tensor) -> Tensor {
    let d = *x.size().last().unwrap();
    let x1 = x.narrow(-1, 0, d / 2);
    let x2 = x.narrow(-1, d / 2, d / 2);
    Tensor::cat(&[x2.neg(), x1], -1)
}

struct DenseMlp {
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

enum Mlp {
    Dense(DenseMlp),
    Sparse(MoeBlock),
}

struct Layer {
    input_norm: Tensor,
    post_attn_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    q_norm: Tensor,
    k_norm: Tensor,
    mlp: Mlp,
}

/// What one forward pass returns.
pub struct ModelOutput {
    /// `[B, T, vocab]` in the compute dtype.
    pub logits: Tensor,
    /// Router load-balancing loss (already multiplied by nothing: apply `router_aux_loss_coef`).
    pub aux_loss: Option<Tensor>,
    /// Per sparse layer, router logits `[B*T, num_experts]`.
    pub router_logits: Vec<Tensor>,
}

/// Hidden states after the final norm, before the LM head.
pub struct HiddenOutput {
    pub hidden: Tensor,
    pub router_logits: Vec<Tensor>,
}

/// Qwen3 dense or MoE causal LM.
pub struct Qwen3 {
    pub cfg: Qwen3Config,
    kind: Kind,
    device: Device,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
    /// Std of Gaussian noise added to router logits (inference-copy discrepancy knob); 0 = off.
    pub router_noise_std: f64,
    /// Precision the router's logits are computed in (inference-copy knob); `None` = the model's dtype.
    pub router_kind: Option<Kind>,
}

impl Qwen3 {
    /// Build the model by taking every tensor from `src` (checkpoint or random init).
    pub fn from_source(cfg: &Qwen3Config, src: &mut dyn WeightSource) -> Result<Self> {
        cfg.validate()?;
        let (h, hd) = (cfg.hidden_size as i64, cfg.head_dim as i64);
        let (nh, nkv) = (
            cfg.num_attention_heads as i64,
            cfg.num_key_value_heads as i64,
        );
        let embed = src.take(
            "model.embed_tokens.weight",
            &[cfg.vocab_size as i64, h],
            false,
        )?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mlp = if cfg.is_sparse_layer(l) {
                Mlp::Sparse(MoeBlock::from_source(cfg, &format!("{p}.mlp"), src)?)
            } else {
                let i = cfg.intermediate_size as i64;
                Mlp::Dense(DenseMlp {
                    gate: src.take(&format!("{p}.mlp.gate_proj.weight"), &[i, h], false)?,
                    up: src.take(&format!("{p}.mlp.up_proj.weight"), &[i, h], false)?,
                    down: src.take(&format!("{p}.mlp.down_proj.weight"), &[h, i], false)?,
                })
            };
            layers.push(Layer {
                input_norm: src.take(&format!("{p}.input_layernorm.weight"), &[h], true)?,
                post_attn_norm: src.take(
                    &format!("{p}.post_attention_layernorm.weight"),
                    &[h],
                    true,
                )?,
                q: src.take(
                    &format!("{p}.self_attn.q_proj.weight"),
                    &[nh * hd, h],
                    false,
                )?,
                k: src.take(
                    &format!("{p}.self_attn.k_proj.weight"),
                    &[nkv * hd, h],
                    false,
                )?,
                v: src.take(
                    &format!("{p}.self_attn.v_proj.weight"),
                    &[nkv * hd, h],
                    false,
                )?,
                o: src.take(
                    &format!("{p}.self_attn.o_proj.weight"),
                    &[h, nh * hd],
                    false,
                )?,
                q_norm: src.take(&format!("{p}.self_attn.q_norm.weight"), &[hd], true)?,
                k_norm: src.take(&format!("{p}.self_attn.k_norm.weight"), &[hd], true)?,
                mlp,
            });
        }
        let norm = src.take("model.norm.weight", &[h], true)?;
        let lm_head = if cfg.tie_word_embeddings {
            src.skip("lm_head.weight");
            None
        } else {
            Some(src.take("lm_head.weight", &[cfg.vocab_size as i64, h], false)?)
        };
        src.finish()?;
        let (kind, device) = (embed.kind(), embed.device());
        let half = cfg.head_dim as i64 / 2;
        // HF: inv_freq = 1 / theta^(arange(0, d, 2) / d), computed in fp32.
        let exps = Tensor::arange(half, (Kind::Int64, device)).to_kind(Kind::Float) * 2.0
            / cfg.head_dim as f64;
        let inv_freq = (exps * cfg.rope_theta.ln()).exp().reciprocal();
        Ok(Qwen3 {
            cfg: cfg.clone(),
            kind,
            device,
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
            router_noise_std: 0.0,
            router_kind: None,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Every parameter with its name (experts are stacked: `…mlp.experts.gate_proj` is `[E, I, H]`).
    /// The tensors share storage with the model.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed.shallow_clone(),
        )];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            let mut push = |n: &str, t: &Tensor| out.push((format!("{p}.{n}"), t.shallow_clone()));
            push("input_layernorm.weight", &layer.input_norm);
            push("post_attention_layernorm.weight", &layer.post_attn_norm);
            push("self_attn.q_proj.weight", &layer.q);
            push("self_attn.k_proj.weight", &layer.k);
            push("self_attn.v_proj.weight", &layer.v);
            push("self_attn.o_proj.weight", &layer.o);
            push("self_attn.q_norm.weight", &layer.q_norm);
            push("self_attn.k_norm.weight", &layer.k_norm);
            match &layer.mlp {
                Mlp::Dense(m) => {
                    push("mlp.gate_proj.weight", &m.gate);
                    push("mlp.up_proj.weight", &m.up);
                    push("mlp.down_proj.weight", &m.down);
                }
                Mlp::Sparse(m) => {
                    for (n, t) in m.named_parameters() {
                        push(&format!("mlp.{n}"), &t);
                    }
                }
            }
        }
        out.push(("model.norm.weight".into(), self.norm.shallow_clone()));
        if let Some(w) = &self.lm_head {
            out.push(("lm_head.weight".into(), w.shallow_clone()));
        }
        out
    }

    /// Parameters as a plain list (same order as `named_parameters`).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Mark all parameters as requiring (or not) gradients.
    pub fn set_requires_grad(&mut self, on: bool) {
        for (_, t) in self.named_parameters() {
            let _ = t.set_requires_grad(on);
        }
    }

    /// Overwrite this model's weights with `other`'s (converting dtype/device). Used to sync the
    /// inference copy from the trainer.
    pub fn copy_weights_from(&mut self, other: &Qwen3) {
        tch::no_grad(|| {
            for ((_, mut dst), (_, src)) in self
                .named_parameters()
                .into_iter()
                .zip(other.named_parameters())
            {
                dst.copy_(&src);
            }
        });
    }

    /// Position ids: `past + arange(T)` without a mask; with a (left-padding) mask `[B, past+T]`,
    /// positions count real tokens so each row starts at 0 on its first real token.
    pub fn position_ids(
        &self,
        batch: i64,
        seq: i64,
        past: i64,
        attention_mask: Option<&Tensor>,
    ) -> Tensor {
        match attention_mask {
            None => (Tensor::arange(seq, (Kind::Int64, self.device)) + past)
                .unsqueeze(0)
                .expand([batch, seq], false),
            Some(m) => {
                let pos = m.to_kind(Kind::Int64).cumsum(-1, Kind::Int64) - 1;
                pos.clamp_min(0).narrow(1, past, seq)
            }
        }
    }

    fn rope(&self, positions: &Tensor) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1); // [B,1,T,D]
        (emb.cos().to_kind(self.kind), emb.sin().to_kind(self.kind))
    }

    /// Boolean attention mask `[B,1,T,past+T]` (true = attend), or `None` where plain causal
    /// attention is exact. Padding rows may attend to themselves so no row is fully masked.
    fn attn_mask(
        &self,
        batch: i64,
        seq: i64,
        past: i64,
        attention_mask: Option<&Tensor>,
    ) -> Option<Tensor> {
        if attention_mask.is_none() && (past == 0 || seq == 1) {
            return None;
        }
        let total = past + seq;
        let opts = (Kind::Int64, self.device);
        let q_pos = (Tensor::arange(seq, opts) + past).view([seq, 1]);
        let k_pos = Tensor::arange(total, opts).view([1, total]);
        let causal = k_pos.le_tensor(&q_pos); // bottom-right aligned
        let mask = match attention_mask {
            None => causal
                .view([1, 1, seq, total])
                .expand([batch, 1, seq, total], false),
            Some(m) => {
                let real = m.to_kind(Kind::Bool).view([batch, 1, 1, total]);
                let diag = k_pos.eq_tensor(&q_pos).view([1, 1, seq, total]);
                causal
                    .view([1, 1, seq, total])
                    .logical_and(&real)
                    .logical_or(&diag)
            }
        };
        Some(mask)
    }

    /// Final hidden states for `input_ids` `[B, T]`. `attention_mask` is `[B, past+T]` (1 = real
    /// token) for left-padded batches; `cache` holds earlier keys/values and is extended.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
    ) -> HiddenOutput {
        let (b, t) = input_ids.size2().expect("input_ids must be [B, T]");
        let past = cache.as_ref().map_or(0, |c| c.seq_len());
        let positions = self.position_ids(b, t, past, attention_mask);
        let (cos, sin) = self.rope(&positions);
        let mask = self.attn_mask(b, t, past, attention_mask);
        let is_causal = mask.is_none() && past == 0 && t > 1;
        let (nh, nkv, hd) = (
            self.cfg.num_attention_heads as i64,
            self.cfg.num_key_value_heads as i64,
            self.cfg.head_dim as i64,
        );
        let eps = self.cfg.rms_norm_eps;
        let mut x = Tensor::embedding(&self.embed, input_ids, -1, false, false);
        let mut router_logits = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let hn = rms_norm(&x, &layer.input_norm, eps);
            let q = rms_norm(
                &linear(&hn, &layer.q).view([b, t, nh, hd]),
                &layer.q_norm,
                eps,
            )
            .transpose(1, 2);
            let k = rms_norm(
                &linear(&hn, &layer.k).view([b, t, nkv, hd]),
                &layer.k_norm,
                eps,
            )
            .transpose(1, 2);
            let v = linear(&hn, &layer.v).view([b, t, nkv, hd]).transpose(1, 2);
            let q = &q * &cos + rotate_half(&q) * &sin;
            let k = &k * &cos + rotate_half(&k) * &sin;
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.append(l, k, v),
                None => (k, v),
            };
            let attn = Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                mask.as_ref(),
                0.0,
                is_causal,
                1.0 / (hd as f64).sqrt(),
                nkv != nh,
            );
            let attn = attn.transpose(1, 2).reshape([b, t, nh * hd]);
            x = x + linear(&attn, &layer.o);
            let hn = rms_norm(&x, &layer.post_attn_norm, eps);
            let m = match &layer.mlp {
                Mlp::Dense(m) => swiglu(&hn, &m.gate, &m.up, &m.down),
                Mlp::Sparse(m) => {
                    let (y, logits) = m.forward(&hn, self.router_noise_std, self.router_kind);
                    router_logits.push(logits);
                    y
                }
            };
            x = x + m;
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        HiddenOutput {
            hidden: rms_norm(&x, &self.norm, eps),
            router_logits,
        }
    }

    /// LM head on hidden states (any leading shape).
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        linear(hidden, self.lm_head.as_ref().unwrap_or(&self.embed))
    }

    /// Full forward: logits for every position, plus MoE router outputs.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> ModelOutput {
        let out = self.forward_hidden(input_ids, attention_mask, cache);
        let aux_loss = self
            .cfg
            .moe
            .as_ref()
            .filter(|_| !out.router_logits.is_empty())
            .map(|m| {
                // Only the current chunk's tokens have router logits; mask padding among them.
                let t = input_ids.size()[1];
                let mask = attention_mask.map(|am| am.narrow(1, am.size()[1] - t, t));
                load_balancing_loss(
                    &out.router_logits,
                    m.num_experts as i64,
                    m.num_experts_per_tok as i64,
                    mask.as_ref(),
                )
            });
        ModelOutput {
            logits: self.logits(&out.hidden),
            aux_loss,
            router_logits: out.router_logits,
        }
    }
}

/// Log-probability of each next token: `logits [B,T,V]` at positions `0..T-1` scored against
/// `tokens[:, 1..]`. Returns `[B, T-1]` in fp32.
pub fn next_token_logprobs(logits: &Tensor, tokens: &Tensor) -> Tensor {
    let t = tokens.size()[1];
    let lp = logits.narrow(1, 0, t - 1).log_softmax(-1, Kind::Float);
    lp.gather(-1, &tokens.narrow(1, 1, t - 1).unsqueeze(-1), false)
        .squeeze_dim(-1)
}
