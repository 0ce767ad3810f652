//! The model's shared tensor ops: projections (`x Wᵀ` with an optional LoRA delta) and RMSNorm.
//! Dense layers (`qwen3.rs`), MoE experts (`qwen3_moe.rs`) and adapters (`lora.rs`) all build on
//! these, so none of them imports another for its arithmetic.
use super::quant::{weight_of, Quantised};
use std::ffi::c_void;
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

/// RMSNorm computed in fp32, cast back, then scaled (HF order). On the CPU in fp32 one fused op
/// (`csrc/rms_norm.cpp`) with the tensor ops' bits, forward and backward.
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
    #[cfg(test)]
    if OPS_ONLY.with(|f| f.get()) {
        return rms_norm_ops(x, w, eps);
    }
    fused_rms_norm(x, w, eps).unwrap_or_else(|| rms_norm_ops(x, w, eps))
}

extern "C" {
    fn harness_rms_norm(x: *const c_void, w: *const c_void, eps: f64) -> *mut c_void;
}

/// The fused op, or `None` where it does not apply (not fp32 on the CPU, `x` not contiguous).
fn fused_rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Option<Tensor> {
    // SAFETY: the pointers are live `at::Tensor`s owned by the arguments for the call's duration;
    // a non-null result is a new `at::Tensor` whose ownership passes to the returned `Tensor`.
    owned(unsafe { harness_rms_norm(x.as_ptr().cast(), w.as_ptr().cast(), eps) })
}

/// The tensor a fused op (`csrc/`) returned, or `None` for its null ("not fusable").
/// `p` must be null or a new `at::Tensor` nobody else owns.
pub(crate) fn owned(p: *mut c_void) -> Option<Tensor> {
    // SAFETY: per the contract above, the returned `Tensor` becomes its only owner.
    (!p.is_null()).then(|| unsafe { Tensor::from_ptr(p.cast()) })
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the model on the tensor ops alone (no fused RMSNorm or RoPE), to
    /// compare it with the fused ops.
    pub(crate) static OPS_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The tensor-op form (any device, any dtype): what the fused op must equal.
pub(crate) fn rms_norm_ops(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn bits(t: &Tensor) -> Tensor {
        t.view_dtype(Kind::Int)
    }

    /// `x` feeds the norm and a residual branch, as in a decoder layer: its gradient sums three
    /// parts, in the order autograd sums them for the tensor ops.
    fn grads(x: &Tensor, w: &Tensor, fused: bool) -> (Tensor, Vec<Tensor>) {
        let y = if fused {
            fused_rms_norm(x, w, 1e-6).expect("fp32 CPU contiguous input is fused")
        } else {
            rms_norm_ops(x, w, 1e-6)
        };
        let loss = ((&y * 3.0).sin() + (x * 0.5).cos()).sum(Kind::Float);
        let inputs: Vec<&Tensor> = [x, w].into_iter().filter(|t| t.requires_grad()).collect();
        (
            y.detach(),
            Tensor::run_backward(&[loss], &inputs, false, false),
        )
    }

    #[test]
    fn fused_rms_norm_equals_the_tensor_ops_bit_for_bit() {
        let _rng = crate::rng_lock(); // seeds and draws from libtorch's global RNG
        tch::manual_seed(0);
        for (shape, x_grad, w_grad) in [
            (vec![3, 7, 64], true, true),
            (vec![2, 5, 4, 16], true, false),
            (vec![4, 1, 32], false, true),
            (vec![300, 48], true, true),
        ] {
            let x = Tensor::randn(&shape, (Kind::Float, Device::Cpu)).set_requires_grad(x_grad);
            let d = *shape.last().unwrap();
            let w = (Tensor::randn([d], (Kind::Float, Device::Cpu)) * 0.3 + 1.0)
                .set_requires_grad(w_grad);
            let (yf, gf) = grads(&x, &w, true);
            let (yo, go) = grads(&x, &w, false);
            assert!(bits(&yf).equal(&bits(&yo)), "{shape:?}: forward");
            assert_eq!(gf.len(), go.len());
            for (a, b) in gf.iter().zip(&go) {
                assert!(bits(a).equal(&bits(b)), "{shape:?}: gradient");
                assert_eq!(a.stride(), b.stride(), "{shape:?}: gradient layout");
            }
        }
    }

    #[test]
    fn other_inputs_take_the_tensor_ops() {
        let _rng = crate::rng_lock();
        let x = Tensor::randn([2, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::ones([8], (Kind::Float, Device::Cpu));
        assert!(fused_rms_norm(&x.to_kind(Kind::BFloat16), &w, 1e-6).is_none());
        assert!(fused_rms_norm(
            &x.tr(),
            &Tensor::ones([2], (Kind::Float, Device::Cpu)),
            1e-6
        )
        .is_none());
        let y = rms_norm(&x.to_kind(Kind::Double), &w.to_kind(Kind::Double), 1e-6);
        assert!(y
            .to_kind(Kind::Float)
            .allclose(&rms_norm_ops(&x, &w, 1e-6), 1e-6, 1e-6, false));
    }
}
