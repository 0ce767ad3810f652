//! The model's shared tensor ops: projections (`x Wᵀ` with an optional LoRA delta) and RMSNorm.
//! Dense layers (`qwen3.rs`), MoE experts (`qwen3_moe.rs`) and adapters (`lora.rs`) all build on
//! these, so none of them imports another for its arithmetic.
use super::quant::{weight_of, Quantised};
use tch::{Kind, Tensor};

/// `x Wᵀ`, with `W` cast to the activation's dtype when they differ (fp32 master weights under a
/// bf16 compute dtype: autograd carries the gradient back to the fp32 tensor).
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Tensor {
    if w.kind() == x.kind() {
        x.linear::<&Tensor>(w, None)
    } else {
        x.linear::<&Tensor>(&w.to_kind(x.kind()), None)
    }
}

/// RMSNorm computed in fp32, cast back, then scaled (HF order).
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
    let kind = x.kind();
    let xf = x.to_kind(Kind::Float);
    let var = xf.square().mean_dim(-1, true, Kind::Float);
    let y = xf * (var + eps).rsqrt();
    if w.kind() == kind {
        w * y.to_kind(kind)
    } else {
        w.to_kind(kind) * y.to_kind(kind)
    }
}

/// A dense projection: the (possibly frozen) base weight `[out, in]` and an optional LoRA adapter.
/// With `quant`, `w` holds 1-byte quantised values, dequantised on use.
pub(crate) struct Proj {
    pub(crate) w: Tensor,
    pub(crate) lora: Option<LoraAdapter>,
    pub(crate) quant: Option<Quantised>,
}

impl Proj {
    pub(crate) fn new(w: Tensor) -> Self {
        Proj {
            w,
            lora: None,
            quant: None,
        }
    }

    /// The weight to compute with (dequantised when stored quantised).
    pub(crate) fn weight(&self) -> Tensor {
        weight_of(&self.w, self.quant.as_ref())
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let y = linear(x, &self.weight());
        match &self.lora {
            None => y,
            Some(a) => y + a.delta(x),
        }
    }

    /// The same base weight (shared storage) with a detached copy of the adapter, if any.
    pub(crate) fn share_base(&self) -> Proj {
        Proj {
            w: self.w.shallow_clone(),
            lora: self.lora.as_ref().map(LoraAdapter::detached_copy),
            quant: None,
        }
    }

    /// The weight the projection applies: `W + (α/r)·B A` with an adapter, else `W` (shared).
    pub(crate) fn effective(&self) -> Tensor {
        match &self.lora {
            None => self.weight(),
            Some(a) => a.merged(&self.weight()),
        }
    }
}

/// One projection's adapter (`A` `[r, in]`, `B` `[out, r]`), or stacked MoE experts' adapters
/// (`A` `[E, r, in]`, `B` `[E, out, r]`: one adapter per expert).
pub(crate) struct LoraAdapter {
    /// `[r, in]` (stacked: `[E, r, in]`)
    pub(crate) a: Tensor,
    /// `[out, r]` (stacked: `[E, out, r]`)
    pub(crate) b: Tensor,
    /// `α / r`
    pub(crate) scale: f64,
}

impl LoraAdapter {
    /// `(α/r)·(x Aᵀ) Bᵀ` in the dtype of `x`.
    pub(crate) fn delta(&self, x: &Tensor) -> Tensor {
        linear(&linear(x, &self.a), &self.b) * self.scale
    }

    /// Expert `e`'s adapter of a stacked one (views: gradients reach the stacked tensors).
    pub(crate) fn expert(&self, e: i64) -> LoraAdapter {
        LoraAdapter {
            a: self.a.get(e),
            b: self.b.get(e),
            scale: self.scale,
        }
    }

    /// A copy that shares nothing with `self` and tracks no gradient.
    pub(crate) fn detached_copy(&self) -> LoraAdapter {
        LoraAdapter {
            a: self.a.detach().copy(),
            b: self.b.detach().copy(),
            scale: self.scale,
        }
    }

    /// `W + (α/r)·B A` (per expert for stacked `W` `[E, out, in]`), computed in fp32 and stored in
    /// `W`'s dtype (no gradient).
    pub(crate) fn merged(&self, w: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let d = self
                .b
                .to_kind(Kind::Float)
                .matmul(&self.a.to_kind(Kind::Float))
                * self.scale;
            (w.to_kind(Kind::Float) + d).to_kind(w.kind())
        })
    }
}
