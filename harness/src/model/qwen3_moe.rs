//! Qwen3-MoE sparse block: router softmax in fp32 → top-k → (renormalise) → weighted SwiGLU experts,
//! no shared expert. Experts are stored stacked (`[E, I, H]`); tokens are sorted by expert and then
//! run either through one grouped GEMM per projection (`_grouped_mm` with per-expert offsets: no
//! host sync) or through the per-expert loop (the reference path: one host sync per layer for the
//! counts). `MoeImpl::Auto` picks grouped on CUDA and the loop on CPU.
//!
//! LoRA on experts: each stacked projection can carry one adapter per expert (`A` `[E, r, in]`,
//! `B` `[E, out, r]`); both paths add expert `e`'s `(α/r)·(x Aₑᵀ) Bₑᵀ` to its rows (the grouped
//! path through two more grouped GEMMs on the same offsets).
use super::config::Qwen3Config;
use super::ops::{linear, LoraAdapter};
use super::quant::{weight_of, Quantised};
use super::quant::{QuantScale, WeightQuant};
use super::weights::WeightSource;
use crate::Result;
use tch::{Device, Kind, Tensor};

/// How the experts of a sparse block run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MoeImpl {
    /// Grouped GEMM on CUDA, per-expert loop on CPU.
    #[default]
    Auto,
    /// `_grouped_mm` over the expert-sorted tokens (CPU and CUDA; needs 16-byte aligned rows).
    Grouped,
    /// One matmul per expert with tokens (the reference path).
    Loop,
}

impl MoeImpl {
    /// Whether to run grouped for activations of `kind` on `device` with widths `h` and `i`.
    pub fn grouped(self, device: Device, kind: Kind, h: i64, i: i64) -> bool {
        let aligned = |d: i64| (d * kind.elt_size_in_bytes() as i64) % 16 == 0;
        match self {
            MoeImpl::Grouped => true,
            MoeImpl::Loop => false,
            MoeImpl::Auto => device.is_cuda() && aligned(h) && aligned(i),
        }
    }
}

fn cast(w: &Tensor, kind: Kind) -> Tensor {
    if w.kind() == kind {
        w.shallow_clone()
    } else {
        w.to_kind(kind)
    }
}

pub struct MoeBlock {
    router: Tensor,
    /// `[E, I, H]`
    gate: Tensor,
    /// `[E, I, H]`
    up: Tensor,
    /// `[E, H, I]`
    down: Tensor,
    top_k: i64,
    norm_topk_prob: bool,
    /// 1-byte storage of `gate`, `up`, `down` (quantised inference copy).
    quant: Option<[Quantised; 3]>,
    /// Per-expert LoRA adapters of `gate`, `up`, `down` (see `lora.rs`).
    pub(crate) lora: [Option<LoraAdapter>; 3],
}

/// The stacked expert projections by HF module name, in `gate`, `up`, `down` order.
pub(crate) const EXPERT_PROJS: [&str; 3] = ["gate_proj", "up_proj", "down_proj"];

impl MoeBlock {
    pub fn from_source(
        cfg: &Qwen3Config,
        prefix: &str,
        src: &mut dyn WeightSource,
    ) -> Result<Self> {
        let m = cfg.moe.as_ref().expect("sparse layer in a dense config");
        let (h, i, e) = (
            cfg.hidden_size as i64,
            m.moe_intermediate_size as i64,
            m.num_experts as i64,
        );
        let router = src.take(&format!("{prefix}.gate.weight"), &[e, h], false)?;
        let stack = |src: &mut dyn WeightSource, proj: &str, shape: [i64; 2]| -> Result<Tensor> {
            let parts = (0..e)
                .map(|x| {
                    src.take(
                        &format!("{prefix}.experts.{x}.{proj}.weight"),
                        &shape,
                        false,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Tensor::stack(&parts, 0))
        };
        Ok(MoeBlock {
            router,
            gate: stack(src, "gate_proj", [i, h])?,
            up: stack(src, "up_proj", [i, h])?,
            down: stack(src, "down_proj", [h, i])?,
            top_k: m.num_experts_per_tok as i64,
            norm_topk_prob: m.norm_topk_prob,
            quant: None,
            lora: [None, None, None],
        })
    }

    /// The same block sharing every base tensor's storage, with detached copies of the adapters.
    pub(crate) fn share_base(&self) -> MoeBlock {
        MoeBlock {
            router: self.router.shallow_clone(),
            gate: self.gate.shallow_clone(),
            up: self.up.shallow_clone(),
            down: self.down.shallow_clone(),
            top_k: self.top_k,
            norm_topk_prob: self.norm_topk_prob,
            quant: None,
            lora: self
                .lora
                .each_ref()
                .map(|l| l.as_ref().map(LoraAdapter::detached_copy)),
        }
    }

    /// The stacked weights (as stored) with their adapter slots, by HF module name.
    pub(crate) fn experts_mut(&mut self) -> [(&'static str, &Tensor, &mut Option<LoraAdapter>); 3] {
        let [g, u, d] = &mut self.lora;
        [
            (EXPERT_PROJS[0], &self.gate, g),
            (EXPERT_PROJS[1], &self.up, u),
            (EXPERT_PROJS[2], &self.down, d),
        ]
    }

    /// The adapters attached, by HF module name.
    pub(crate) fn adapters(&self) -> Vec<(&'static str, &LoraAdapter)> {
        EXPERT_PROJS
            .iter()
            .zip(&self.lora)
            .filter_map(|(n, l)| l.as_ref().map(|a| (*n, a)))
            .collect()
    }

    /// Keep the stacked experts in 1-byte storage (zeroed; fill through `named_parameters` and
    /// `quant_scales`).
    pub(crate) fn store_quantised(&mut self, quant: WeightQuant, scale: QuantScale) {
        let g = Quantised::store(&mut self.gate, quant, scale);
        let u = Quantised::store(&mut self.up, quant, scale);
        let d = Quantised::store(&mut self.down, quant, scale);
        if let (Some(g), Some(u), Some(d)) = (g, u, d) {
            self.quant = Some([g, u, d]);
        }
    }

    /// Scales of the quantised experts, named as in `named_parameters` plus `_scale`.
    pub(crate) fn quant_scales(&self) -> Vec<(String, Tensor)> {
        let Some([g, u, d]) = &self.quant else {
            return vec![];
        };
        vec![
            ("experts.gate_proj_scale".into(), g.scale.shallow_clone()),
            ("experts.up_proj_scale".into(), u.scale.shallow_clone()),
            ("experts.down_proj_scale".into(), d.scale.shallow_clone()),
        ]
    }

    /// The stacked experts as the forward applies them, named as in `named_parameters`: those
    /// that differ from what is stored (adapters merged in, 1-byte storage dequantised).
    pub(crate) fn effective_experts(&self) -> Vec<(String, Tensor)> {
        if self.quant.is_none() && self.lora.iter().all(Option::is_none) {
            return vec![];
        }
        let quantised = self.quant.is_some();
        EXPERT_PROJS
            .iter()
            .zip(self.expert_weights())
            .zip(&self.lora)
            .filter(|(_, l)| quantised || l.is_some())
            .map(|((n, w), l)| {
                let w = match l {
                    Some(a) => a.merged(&w),
                    None => w,
                };
                (format!("experts.{n}"), w)
            })
            .collect()
    }

    /// The stacked expert weights to compute with (this layer's, dequantised when quantised).
    fn expert_weights(&self) -> [Tensor; 3] {
        let q = |i: usize| self.quant.as_ref().map(|q| &q[i]);
        [
            weight_of(&self.gate, q(0)),
            weight_of(&self.up, q(1)),
            weight_of(&self.down, q(2)),
        ]
    }

    /// Names relative to `…mlp.`; stacked experts use the `experts.<proj>` names.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("gate.weight".into(), self.router.shallow_clone()),
            ("experts.gate_proj".into(), self.gate.shallow_clone()),
            ("experts.up_proj".into(), self.up.shallow_clone()),
            ("experts.down_proj".into(), self.down.shallow_clone()),
        ]
    }

    /// Router logits `[N, E]` (fp32 when `router_kind` is fp32), with optional inference noise.
    fn route_logits(&self, x2: &Tensor, noise_std: f64, router_kind: Option<Kind>) -> Tensor {
        let logits = match router_kind {
            Some(k) if k != x2.kind() => linear(&x2.to_kind(k), &self.router.to_kind(k)),
            _ => linear(x2, &self.router),
        };
        if noise_std > 0.0 {
            let noise = logits.randn_like().to_kind(Kind::Float) * noise_std;
            (logits.to_kind(Kind::Float) + noise).to_kind(logits.kind())
        } else {
            logits
        }
    }

    /// Top-k expert ids `[N, k]` and their (renormalised) weights in fp32.
    pub(crate) fn select(&self, logits: &Tensor) -> (Tensor, Tensor) {
        let probs = logits.softmax(-1, Kind::Float);
        let (w, idx) = probs.topk(self.top_k, -1, true, true);
        let w = if self.norm_topk_prob {
            &w / w.sum_dim_intlist(-1, true, Kind::Float)
        } else {
            w
        };
        (idx, w)
    }

    /// `x` `[B, T, H]` → (`[B, T, H]`, router logits `[B*T, E]`).
    pub fn forward(
        &self,
        x: &Tensor,
        noise_std: f64,
        router_kind: Option<Kind>,
        moe_impl: MoeImpl,
    ) -> (Tensor, Tensor) {
        let shape = x.size();
        let h = *shape.last().unwrap();
        let x2 = x.reshape([-1, h]);
        let logits = self.route_logits(&x2, noise_std, router_kind);
        let (idx, w) = self.select(&logits);
        let w = w.to_kind(x.kind());
        let flat = idx.reshape([-1]);
        let order = flat.argsort_stable(true, 0, false);
        let n_experts = self.router.size()[0];
        let token_of = order.floor_divide_scalar(self.top_k);
        let xs = x2.index_select(0, &token_of);
        let ws = w.reshape([-1]).index_select(0, &order).unsqueeze(-1);
        let counts = flat.bincount::<Tensor>(None, n_experts);
        let i = self.gate.size()[1];
        let w = self.expert_weights();
        let ys = if moe_impl.grouped(x.device(), x.kind(), h, i) {
            experts_grouped(&xs, &counts, &w, &self.lora)
        } else {
            experts_loop(&xs, &counts, &w, &self.lora)
        } * ws;
        let out = x2.zeros_like().index_add(0, &token_of, &ys);
        (out.reshape(&shape), logits)
    }
}

/// Experts `[gate, up, down]` (with their adapters) on expert-sorted rows `xs` via one grouped
/// GEMM per projection, and two more per adapted projection.
fn experts_grouped(
    xs: &Tensor,
    counts: &Tensor,
    w: &[Tensor; 3],
    lora: &[Option<LoraAdapter>; 3],
) -> Tensor {
    let offs = counts.cumsum(0, Kind::Int).to_kind(Kind::Int);
    let k = xs.kind();
    // `[E, I, H]` transposed to `[E, H, I]` (column-major per expert, the layout the CUDA
    // kernel wants); `down` `[E, H, I]` → `[E, I, H]`.
    let mm = |a: &Tensor, w: &Tensor| {
        a.internal_grouped_mm(&cast(w, k).transpose(1, 2), Some(&offs), None, None::<Kind>)
    };
    let proj = |x: &Tensor, j: usize| {
        let y = mm(x, &w[j]);
        match &lora[j] {
            None => y,
            Some(l) => {
                let (a, b) = rank_padded(l, k);
                y + mm(&mm(x, &a), &b) * l.scale
            }
        }
    };
    let g = proj(xs, 0);
    let u = proj(xs, 1);
    proj(&(g.silu() * u), 2)
}

/// A stacked adapter's `A` `[E, r, in]` and `B` `[E, out, r]` with the rank zero-padded to a
/// multiple of 16 bytes in `kind`: `_grouped_mm` needs 16-byte aligned strides, and the zero rows
/// and columns add exact zeros.
fn rank_padded(l: &LoraAdapter, kind: Kind) -> (Tensor, Tensor) {
    let r = l.a.size()[1];
    let m = 16 / kind.elt_size_in_bytes() as i64;
    let pad = (m - r % m) % m;
    if pad == 0 {
        return (l.a.shallow_clone(), l.b.shallow_clone());
    }
    (
        l.a.constant_pad_nd([0, 0, 0, pad]),
        l.b.constant_pad_nd([0, pad]),
    )
}

/// Expert `e`'s projection `x Wₑᵀ` plus its adapter's delta, if any.
fn expert_proj(x: &Tensor, w: &Tensor, lora: &Option<LoraAdapter>, e: i64) -> Tensor {
    let y = linear(x, &w.get(e));
    match lora {
        None => y,
        Some(l) => y + l.expert(e).delta(x),
    }
}

/// The reference path: one SwiGLU per expert that received tokens.
fn experts_loop(
    xs: &Tensor,
    counts: &Tensor,
    w: &[Tensor; 3],
    lora: &[Option<LoraAdapter>; 3],
) -> Tensor {
    let counts = Vec::<i64>::try_from(counts.to_device(Device::Cpu)).expect("bincount to host");
    let mut outs = Vec::with_capacity(counts.len());
    let mut start = 0;
    for (e, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let e = e as i64;
        let xe = xs.narrow(0, start, c);
        let h = expert_proj(&xe, &w[0], &lora[0], e).silu() * expert_proj(&xe, &w[1], &lora[1], e);
        outs.push(expert_proj(&h, &w[2], &lora[2], e));
        start += c;
    }
    Tensor::cat(&outs, 0)
}

/// Switch-Transformer load-balancing loss as in HF `load_balancing_loss_func`: over all sparse
/// layers, `E · Σ_e f_e · P_e` where `f_e` is the share of (token, slot) pairs routed to `e` and
/// `P_e` the mean router probability; padding (mask 0) is excluded.
pub fn load_balancing_loss(
    router_logits: &[Tensor],
    num_experts: i64,
    top_k: i64,
    attention_mask: Option<&Tensor>,
) -> Tensor {
    let logits = Tensor::cat(router_logits, 0);
    let probs = logits.softmax(-1, Kind::Float);
    let (_, selected) = probs.topk(top_k, -1, true, true);
    let expert_mask = selected.one_hot(num_experts).to_kind(Kind::Float); // [N, k, E]
    let (tokens_per_expert, prob_per_expert) = match attention_mask {
        None => (
            expert_mask.mean_dim(0, false, Kind::Float),
            probs.mean_dim(0, false, Kind::Float),
        ),
        Some(m) => {
            let layers = router_logits.len() as i64;
            let mf = m
                .to_kind(Kind::Float)
                .reshape([1, -1])
                .repeat([layers, 1])
                .reshape([-1]);
            let denom = mf.sum(Kind::Float);
            let tpe =
                (expert_mask * mf.view([-1, 1, 1])).sum_dim_intlist(0, false, Kind::Float) / &denom;
            let ppe = (&probs * mf.view([-1, 1])).sum_dim_intlist(0, false, Kind::Float) / &denom;
            (tpe, ppe)
        }
    };
    (tokens_per_expert * prob_per_expert.unsqueeze(0)).sum(Kind::Float) * num_experts as f64
}
