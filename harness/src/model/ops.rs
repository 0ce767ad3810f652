//! The model's shared tensor ops: projections (`x Wᵀ` with an optional LoRA delta), RMSNorm and
//! SwiGLU. Dense layers (`qwen3.rs`), MoE experts (`qwen3_moe.rs`) and adapters (`lora.rs`) all
//! build on these, so none of them imports another for its arithmetic.
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

/// `down(silu(gate(x)) * up(x))`.
pub(crate) fn swiglu(x: &Tensor, gate: &Tensor, up: &Tensor, down: &Tensor) -> Tensor {
    linear(&(linear(x, gate).silu() * linear(x, up)), down)
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
            lora: self.lora.as_ref().map(|a| LoraAdapter {
                a: a.a.detach().copy(),
                b: a.b.detach().copy(),
                scale: a.scale,
            }),
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

pub(crate) struct LoraAdapter {
    /// `[r, in]`
    pub(crate) a: Tensor,
    /// `[out, r]`
    pub(crate) b: Tensor,
    /// `α / r`
    pub(crate) scale: f64,
}

impl LoraAdapter {
    /// `(α/r)·(x Aᵀ) Bᵀ` in the dtype of `x`.
    pub(crate) fn delta(&self, x: &Tensor) -> Tensor {
        linear(&linear(x, &self.a), &self.b) * self.scale
    }

    /// `W + (α/r)·B A`, computed in fp32 and stored in `W`'s dtype (no gradient).
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
