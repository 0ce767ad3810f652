//! Rotate-half RoPE, `x·cos + rotate_half(x)·sin` as Hugging Face computes it. On the CPU in fp32
//! it runs as one fused op with its own backward (`csrc/rope.cpp`): the same products and sums
//! element for element, so the same bits as the tensor ops, which every other case runs.
use std::ffi::c_void;
use tch::Tensor;

extern "C" {
    fn harness_rope(x: *const c_void, cos: *const c_void, sin: *const c_void) -> *mut c_void;
}

/// RoPE on `x` `[B,H,T,D]` with the tables `[B,1,T,D]` of [`crate::model::Qwen3`]: `cos` and
/// the sign-folded `sin_signed`. `rotate_half(x)·sin = [x₂, x₁]·[-sin₁, sin₂]`, and flipping a
/// factor's sign is exact, so this is bit for bit HF's.
pub(crate) fn apply_rope(x: &Tensor, cos: &Tensor, sin_signed: &Tensor) -> Tensor {
    #[cfg(test)]
    if super::ops::OPS_ONLY.with(|f| f.get()) {
        return apply_rope_ops(x, cos, sin_signed);
    }
    fused(x, cos, sin_signed).unwrap_or_else(|| apply_rope_ops(x, cos, sin_signed))
}

/// The tensor-op form (any device, any dtype): what the fused op must equal.
pub(crate) fn apply_rope_ops(x: &Tensor, cos: &Tensor, sin_signed: &Tensor) -> Tensor {
    let d = *x.size().last().unwrap();
    x * cos + x.roll([d / 2], [-1]) * sin_signed
}

/// The fused op, or `None` where it does not apply (not CPU fp32 with unit stride along `D`).
fn fused(x: &Tensor, cos: &Tensor, sin_signed: &Tensor) -> Option<Tensor> {
    // SAFETY: the pointers are live `at::Tensor`s owned by the arguments for the call's duration;
    // a non-null result is a new `at::Tensor` whose ownership passes to the returned `Tensor`.
    super::ops::owned(unsafe {
        harness_rope(
            x.as_ptr().cast(),
            cos.as_ptr().cast(),
            sin_signed.as_ptr().cast(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Tables shaped as the model makes them, and `x` as the attention's transposed view.
    fn inputs(b: i64, h: i64, t: i64, d: i64, seed: i64) -> (Tensor, Tensor, Tensor) {
        tch::manual_seed(seed);
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([b, t, h, d], opts).transpose(1, 2);
        let ang = Tensor::rand([b, 1, t, d / 2], opts) * 50.0;
        let cos = Tensor::cat(&[&ang, &ang], -1).cos();
        let sin = ang.sin();
        let sin_signed = Tensor::cat(&[sin.neg(), sin], -1);
        (x, cos, sin_signed)
    }

    fn bits_equal(a: &Tensor, b: &Tensor) -> bool {
        a.size() == b.size()
            && a.stride() == b.stride()
            && a.view_dtype(Kind::Int).equal(&b.view_dtype(Kind::Int))
    }

    #[test]
    fn fused_rope_equals_the_tensor_ops_bit_for_bit_forward_and_backward() {
        let _rng = crate::rng_lock(); // seeds and draws from libtorch's global RNG
        for (b, h, t, d, seed) in [
            (2, 3, 5, 8, 1),
            (4, 2, 1, 16, 2),
            (1, 4, 300, 64, 3),
            (2, 1, 3, 8, 6),
            (64, 4, 1, 16, 7),
        ] {
            let (x, cos, sin) = inputs(b, h, t, d, seed);
            let x = x.detach().set_requires_grad(true);
            let y_fused = fused(&x, &cos, &sin).expect("fp32 CPU input is fused");
            let y_ops = apply_rope_ops(&x, &cos, &sin);
            assert!(bits_equal(&y_fused, &y_ops), "forward {b}x{h}x{t}x{d}");
            // An upstream gradient with its own layout, as attention's backward hands over.
            let g = Tensor::randn([b, h, t, d], (Kind::Float, Device::Cpu));
            let gf = Tensor::run_backward(&[(&y_fused * &g).sum(Kind::Float)], &[&x], false, false);
            let go = Tensor::run_backward(&[(&y_ops * &g).sum(Kind::Float)], &[&x], false, false);
            assert!(bits_equal(&gf[0], &go[0]), "backward {b}x{h}x{t}x{d}");
        }
    }

    #[test]
    fn other_dtypes_and_layouts_take_the_tensor_ops() {
        let _rng = crate::rng_lock();
        let (x, cos, sin) = inputs(2, 2, 3, 8, 4);
        assert!(fused(
            &x.to_kind(Kind::Double),
            &cos.to_kind(Kind::Double),
            &sin.to_kind(Kind::Double)
        )
        .is_none());
        let strided = Tensor::randn([2, 2, 3, 16], (Kind::Float, Device::Cpu)).slice(3, 0, 16, 2);
        assert!(fused(&strided, &cos, &sin).is_none());
        let y = apply_rope(
            &x.to_kind(Kind::Double),
            &cos.to_kind(Kind::Double),
            &sin.to_kind(Kind::Double),
        );
        assert!(y.allclose(
            &apply_rope_ops(&x, &cos, &sin).to_kind(Kind::Double),
            1e-6,
            1e-6,
            false
        ));
    }

    #[test]
    fn fused_rope_runs_in_inference_mode() {
        let _rng = crate::rng_lock();
        let (x, cos, sin) = inputs(2, 2, 4, 8, 5);
        let _guard = crate::runtime::InferenceMode::enter();
        let y = fused(&x, &cos, &sin).expect("fused");
        assert!(bits_equal(&y, &apply_rope_ops(&x, &cos, &sin)));
    }
}
