//! Qwen3 decoder (dense layers here; the sparse MoE block lives in `qwen3_moe.rs`). Matches Hugging Face
//! `Qwen3ForCausalLM` / `Qwen3MoeForCausalLM` numerics: fp32 RMSNorm, q/k RMSNorm before rotate-half
//! RoPE, GQA, SwiGLU, tied or untied head.
use super::config::Qwen3Config;
use super::kv_cache::KvCache;
use super::ops::{linear, rms_norm, Proj};
use super::quant::Quantised;
use super::quant::{QuantScale, WeightQuant};
use super::qwen3_moe::{load_balancing_loss, MoeBlock, MoeImpl};
use super::rope::apply_rope;
use super::weights::WeightSource;
use crate::Result;
use tch::{Device, Kind, Tensor};

pub(crate) struct DenseMlp {
    pub(crate) gate: Proj,
    pub(crate) up: Proj,
    pub(crate) down: Proj,
}

pub(crate) enum Mlp {
    Dense(DenseMlp),
    Sparse(MoeBlock),
}

pub(crate) struct Layer {
    input_norm: Tensor,
    post_attn_norm: Tensor,
    pub(crate) q: Proj,
    pub(crate) k: Proj,
    pub(crate) v: Proj,
    pub(crate) o: Proj,
    q_norm: Tensor,
    k_norm: Tensor,
    pub(crate) mlp: Mlp,
}

impl Layer {
    /// The LoRA-adaptable projections by HF module path (relative to the layer).
    pub(crate) fn projections_mut(&mut self) -> Vec<(&'static str, &mut Proj)> {
        let mut out: Vec<(&'static str, &mut Proj)> = vec![
            ("self_attn.q_proj", &mut self.q),
            ("self_attn.k_proj", &mut self.k),
            ("self_attn.v_proj", &mut self.v),
            ("self_attn.o_proj", &mut self.o),
        ];
        if let Mlp::Dense(m) = &mut self.mlp {
            out.push(("mlp.gate_proj", &mut m.gate));
            out.push(("mlp.up_proj", &mut m.up));
            out.push(("mlp.down_proj", &mut m.down));
        }
        out
    }

    /// The same layer sharing every base tensor's storage, with detached copies of the adapters.
    fn share_base(&self) -> Layer {
        Layer {
            input_norm: self.input_norm.shallow_clone(),
            post_attn_norm: self.post_attn_norm.shallow_clone(),
            q: self.q.share_base(),
            k: self.k.share_base(),
            v: self.v.share_base(),
            o: self.o.share_base(),
            q_norm: self.q_norm.shallow_clone(),
            k_norm: self.k_norm.shallow_clone(),
            mlp: match &self.mlp {
                Mlp::Dense(m) => Mlp::Dense(DenseMlp {
                    gate: m.gate.share_base(),
                    up: m.up.share_base(),
                    down: m.down.share_base(),
                }),
                Mlp::Sparse(m) => Mlp::Sparse(m.share_base()),
            },
        }
    }

    pub(crate) fn projections(&self) -> Vec<(&'static str, &Proj)> {
        let mut out: Vec<(&'static str, &Proj)> = vec![
            ("self_attn.q_proj", &self.q),
            ("self_attn.k_proj", &self.k),
            ("self_attn.v_proj", &self.v),
            ("self_attn.o_proj", &self.o),
        ];
        if let Mlp::Dense(m) = &self.mlp {
            out.push(("mlp.gate_proj", &m.gate));
            out.push(("mlp.up_proj", &m.up));
            out.push(("mlp.down_proj", &m.down));
        }
        out
    }
}

/// Per-forward inputs shared by every layer: RoPE tables, the attention mask and shape.
pub struct LayerCtx {
    cos: Tensor,
    /// `[-sin, sin]` halves (see [`super::rope::apply_rope`]).
    sin_signed: Tensor,
    mask: Option<Tensor>,
    is_causal: bool,
    b: i64,
    t: i64,
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
    /// Dtype the weights are stored in.
    kind: Kind,
    /// Dtype activations are computed in (weights are cast on use when it differs from `kind`).
    compute: Kind,
    device: Device,
    embed: Tensor,
    pub(crate) layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
    /// Std of Gaussian noise added to router logits (inference-copy discrepancy knob); 0 = off.
    pub router_noise_std: f64,
    /// Precision the router's logits are computed in (inference-copy knob); `None` = the model's dtype.
    pub router_kind: Option<Kind>,
    /// How MoE experts run (per-expert loop or grouped GEMM).
    pub moe_impl: MoeImpl,
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
                    gate: Proj::new(src.take(
                        &format!("{p}.mlp.gate_proj.weight"),
                        &[i, h],
                        false,
                    )?),
                    up: Proj::new(src.take(&format!("{p}.mlp.up_proj.weight"), &[i, h], false)?),
                    down: Proj::new(src.take(
                        &format!("{p}.mlp.down_proj.weight"),
                        &[h, i],
                        false,
                    )?),
                })
            };
            layers.push(Layer {
                input_norm: src.take(&format!("{p}.input_layernorm.weight"), &[h], true)?,
                post_attn_norm: src.take(
                    &format!("{p}.post_attention_layernorm.weight"),
                    &[h],
                    true,
                )?,
                q: Proj::new(src.take(
                    &format!("{p}.self_attn.q_proj.weight"),
                    &[nh * hd, h],
                    false,
                )?),
                k: Proj::new(src.take(
                    &format!("{p}.self_attn.k_proj.weight"),
                    &[nkv * hd, h],
                    false,
                )?),
                v: Proj::new(src.take(
                    &format!("{p}.self_attn.v_proj.weight"),
                    &[nkv * hd, h],
                    false,
                )?),
                o: Proj::new(src.take(
                    &format!("{p}.self_attn.o_proj.weight"),
                    &[h, nh * hd],
                    false,
                )?),
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
            moe_impl: MoeImpl::default(),
            compute: kind,
        })
    }

    /// A second model on the same base tensors (no copy: every base parameter shares storage with
    /// `self`'s) holding detached copies of `self`'s LoRA adapters, which it can change on its own.
    /// The inference engine of a LoRA run uses this instead of a full copy of the weights.
    pub fn share_base(&self) -> Qwen3 {
        Qwen3 {
            cfg: self.cfg.clone(),
            kind: self.kind,
            compute: self.compute,
            device: self.device,
            embed: self.embed.shallow_clone(),
            layers: self.layers.iter().map(Layer::share_base).collect(),
            norm: self.norm.shallow_clone(),
            lm_head: self.lm_head.as_ref().map(Tensor::shallow_clone),
            inv_freq: self.inv_freq.shallow_clone(),
            router_noise_std: self.router_noise_std,
            router_kind: self.router_kind,
            moe_impl: self.moe_impl,
        }
    }

    /// Dtype the weights are stored in.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Dtype activations are computed in (equal to `kind()` unless set otherwise).
    pub fn compute_kind(&self) -> Kind {
        self.compute
    }

    /// Compute in `kind` while keeping the stored weights (e.g. fp32 master weights, bf16 compute:
    /// each weight is cast on use and its gradient lands on the fp32 tensor). Log-probs and losses
    /// are computed in fp32 by their callers either way.
    pub fn set_compute_kind(&mut self, kind: Kind) {
        self.compute = kind;
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Every base parameter with its name (experts are stacked: `…mlp.experts.gate_proj` is
    /// `[E, I, H]`). The tensors share storage with the model. LoRA adapters are not included (see
    /// `lora_parameters` and `merged_named_parameters`).
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
            push("self_attn.q_proj.weight", &layer.q.w);
            push("self_attn.k_proj.weight", &layer.k.w);
            push("self_attn.v_proj.weight", &layer.v.w);
            push("self_attn.o_proj.weight", &layer.o.w);
            push("self_attn.q_norm.weight", &layer.q_norm);
            push("self_attn.k_norm.weight", &layer.k_norm);
            match &layer.mlp {
                Mlp::Dense(m) => {
                    push("mlp.gate_proj.weight", &m.gate.w);
                    push("mlp.up_proj.weight", &m.up.w);
                    push("mlp.down_proj.weight", &m.down.w);
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

    /// Keep every linear-layer weight (attention and MLP projections, stacked experts) in 1-byte
    /// storage with fp32 scales, dequantised per layer on use (see `quant`). The weights become
    /// zeros: fill the values through `named_parameters` and the scales through `quant_scales`.
    /// `WeightQuant::None` changes nothing.
    pub fn store_quantised(&mut self, quant: WeightQuant, scale: QuantScale) {
        for layer in &mut self.layers {
            for (_, proj) in layer.projections_mut() {
                proj.quant = Quantised::store(&mut proj.w, quant, scale);
            }
            if let Mlp::Sparse(m) = &mut layer.mlp {
                m.store_quantised(quant, scale);
            }
        }
    }

    /// `named_parameters` as the forward uses them: LoRA adapters merged in and 1-byte weights
    /// dequantised (fresh tensors there, shared storage elsewhere).
    pub fn effective_named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut fresh: std::collections::HashMap<String, Tensor> = Default::default();
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            for (path, proj) in layer.projections() {
                if proj.lora.is_some() || proj.quant.is_some() {
                    fresh.insert(format!("{p}.{path}.weight"), proj.effective());
                }
            }
            if let Mlp::Sparse(m) = &layer.mlp {
                for (n, t) in m.effective_experts() {
                    fresh.insert(format!("{p}.mlp.{n}"), t);
                }
            }
        }
        self.named_parameters()
            .into_iter()
            .map(|(n, t)| match fresh.remove(&n) {
                Some(f) => (n, f),
                None => (n, t),
            })
            .collect()
    }

    /// The scales of the weights kept quantised, named `<weight name>_scale`.
    pub fn quant_scales(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            for (path, proj) in layer.projections() {
                if let Some(q) = &proj.quant {
                    out.push((format!("{p}.{path}.weight_scale"), q.scale.shallow_clone()));
                }
            }
            if let Mlp::Sparse(m) = &layer.mlp {
                for (n, t) in m.quant_scales() {
                    out.push((format!("{p}.mlp.{n}"), t));
                }
            }
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

    /// Overwrite this model's weights with `other`'s effective weights (LoRA merged in; converting
    /// dtype/device). Used to make reference and value copies of the trainer.
    pub fn copy_weights_from(&mut self, other: &Qwen3) {
        tch::no_grad(|| {
            for ((_, mut dst), (_, src)) in self
                .named_parameters()
                .into_iter()
                .zip(other.merged_named_parameters())
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

    /// `cos` and the sign-folded `sin` of [`super::rope::apply_rope`], `[B,1,T,D]` in the compute dtype.
    fn rope(&self, positions: &Tensor) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let cos = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1).cos(); // [B,1,T,D]
        let sin = freqs.sin();
        let sin_signed = Tensor::cat(&[sin.neg(), sin], -1).unsqueeze(1);
        (cos.to_kind(self.compute), sin_signed.to_kind(self.compute))
    }

    /// Additive attention mask `[B,1,T,past+T]` (0 = attend, −∞ = masked), or `None` where plain
    /// causal attention is exact. Padding rows may attend to themselves so no row is fully masked.
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
            None => self
                .additive(&causal.view([1, 1, seq, total]))
                .expand([batch, 1, seq, total], false),
            Some(m) => {
                let real = m.to_kind(Kind::Bool).view([batch, 1, 1, total]);
                let diag = k_pos.eq_tensor(&q_pos).view([1, 1, seq, total]);
                self.additive(
                    &causal
                        .view([1, 1, seq, total])
                        .logical_and(&real)
                        .logical_or(&diag),
                )
            }
        };
        Some(mask)
    }

    /// A boolean mask as the additive one SDPA makes of it (0 where attended, −∞ elsewhere, in
    /// the compute dtype): built once per forward here instead of once per layer inside SDPA;
    /// the same values, so the same attention.
    fn additive(&self, mask: &Tensor) -> Tensor {
        Tensor::zeros(mask.size(), (self.compute, self.device))
            .masked_fill(&mask.logical_not(), f64::NEG_INFINITY)
    }

    /// Everything the layers share for one forward over `input_ids` `[B, T]` after `past` cached
    /// positions (RoPE tables, mask).
    pub fn layer_ctx(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        past: i64,
    ) -> LayerCtx {
        let (b, t) = input_ids.size2().expect("input_ids must be [B, T]");
        let positions = self.position_ids(b, t, past, attention_mask);
        let (cos, sin_signed) = self.rope(&positions);
        let mask = self.attn_mask(b, t, past, attention_mask);
        let is_causal = mask.is_none() && past == 0 && t > 1;
        LayerCtx {
            cos,
            sin_signed,
            mask,
            is_causal,
            b,
            t,
        }
    }

    /// Token embeddings `[B, T, H]` in the compute dtype.
    pub fn embed(&self, input_ids: &Tensor) -> Tensor {
        let x = Tensor::embedding(&self.embed, input_ids, -1, false, false);
        if x.kind() == self.compute {
            x
        } else {
            x.to_kind(self.compute)
        }
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Decoder layer `l` on `x` `[B, T, H]`: the residual stream after the layer, and the router
    /// logits `[B*T, E]` of a sparse layer. `cache` (if any) gets this layer's keys/values appended
    /// (the caller advances it once all layers ran).
    pub fn layer_forward(
        &self,
        l: usize,
        x: &Tensor,
        ctx: &LayerCtx,
        cache: Option<&mut KvCache>,
    ) -> (Tensor, Option<Tensor>) {
        let layer = &self.layers[l];
        let (b, t) = (ctx.b, ctx.t);
        let (nh, nkv, hd) = (
            self.cfg.num_attention_heads as i64,
            self.cfg.num_key_value_heads as i64,
            self.cfg.head_dim as i64,
        );
        let eps = self.cfg.rms_norm_eps;
        let hn = rms_norm(x, &layer.input_norm, eps);
        let q = rms_norm(
            &layer.q.forward(&hn).view([b, t, nh, hd]),
            &layer.q_norm,
            eps,
        )
        .transpose(1, 2);
        let k = rms_norm(
            &layer.k.forward(&hn).view([b, t, nkv, hd]),
            &layer.k_norm,
            eps,
        )
        .transpose(1, 2);
        let v = layer.v.forward(&hn).view([b, t, nkv, hd]).transpose(1, 2);
        let q = apply_rope(&q, &ctx.cos, &ctx.sin_signed);
        let k = apply_rope(&k, &ctx.cos, &ctx.sin_signed);
        let (k, v) = match cache {
            Some(c) => c.append(l, k, v),
            None => (k, v),
        };
        // SDPA: CUDA picks the flash / memory-efficient kernels (plain causal prefill and
        // training without padding) or the masked memory-efficient one (padding, cached decode).
        let attn = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            ctx.mask.as_ref(),
            0.0,
            ctx.is_causal,
            1.0 / (hd as f64).sqrt(),
            nkv != nh,
        );
        let attn = attn.transpose(1, 2).reshape([b, t, nh * hd]);
        let x = x + layer.o.forward(&attn);
        let hn = rms_norm(&x, &layer.post_attn_norm, eps);
        let (m, logits) = match &layer.mlp {
            Mlp::Dense(m) => (
                m.down
                    .forward(&(m.gate.forward(&hn).silu() * m.up.forward(&hn))),
                None,
            ),
            Mlp::Sparse(m) => {
                let (y, logits) =
                    m.forward(&hn, self.router_noise_std, self.router_kind, self.moe_impl);
                (y, Some(logits))
            }
        };
        (x + m, logits)
    }

    /// The final RMSNorm.
    pub fn final_norm(&self, x: &Tensor) -> Tensor {
        rms_norm(x, &self.norm, self.cfg.rms_norm_eps)
    }

    /// Final hidden states for `input_ids` `[B, T]`. `attention_mask` is `[B, past+T]` (1 = real
    /// token) for left-padded batches; `cache` holds earlier keys/values and is extended.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
    ) -> HiddenOutput {
        let t = input_ids.size()[1];
        let past = cache.as_ref().map_or(0, |c| c.seq_len());
        let ctx = self.layer_ctx(input_ids, attention_mask, past);
        let mut x = self.embed(input_ids);
        let mut router_logits = Vec::new();
        for l in 0..self.layers.len() {
            let (y, logits) = self.layer_forward(l, &x, &ctx, cache.as_deref_mut());
            router_logits.extend(logits);
            x = y;
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        HiddenOutput {
            hidden: self.final_norm(&x),
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

#[cfg(test)]
mod mask_tests {
    use super::*;
    use crate::model::{presets::preset, RandomInit};

    #[test]
    fn additive_mask_is_the_boolean_rule_and_attends_alike() {
        let model = Qwen3::from_source(
            &preset("tiny-qwen3").unwrap(),
            &mut RandomInit::zeros(Kind::Float, Device::Cpu),
        )
        .unwrap();
        // Left padding: row 0 starts at key 2, row 1 at key 0; 2 cached positions, 3 new.
        let real = [[0i64, 0, 1, 1, 1], [1, 1, 1, 1, 1]];
        let am = Tensor::from_slice2(&real);
        let (past, t) = (2, 3);
        let mask = model.attn_mask(2, t, past, Some(&am)).unwrap();
        assert_eq!(mask.size(), [2, 1, 3, 5]);
        assert_eq!(mask.kind(), Kind::Float);
        let mut attend = vec![];
        for row in real {
            for i in 0..t {
                let q = past + i;
                for (k, &r) in row.iter().enumerate() {
                    let k = k as i64;
                    attend.push((k <= q && r == 1) || k == q);
                }
            }
        }
        let want = Tensor::from_slice(&attend).view([2, 1, 3, 5]);
        let zeros = mask.eq(0.0);
        assert!(zeros.equal(&want));
        assert!(
            mask.masked_select(&want.logical_not())
                .eq(f64::NEG_INFINITY)
                .all()
                .int64_value(&[])
                == 1
        );
        // SDPA turns a boolean mask into this one: same attention, bit for bit. (Values from a
        // formula: tests alongside seed libtorch's global RNG.)
        let wave = |shape: [i64; 4], f: f64| {
            let n = shape.iter().product::<i64>();
            (Tensor::arange(n, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float) * f)
                .sin()
                .view(shape)
        };
        let (q, k, v) = (
            wave([2, 4, 3, 32], 0.7),
            wave([2, 2, 5, 32], 1.3),
            wave([2, 2, 5, 32], 2.9),
        );
        let sdpa = |m: &Tensor| {
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(m), 0.0, false, None, true)
        };
        assert!(sdpa(&mask).equal(&sdpa(&want)));
    }
}
