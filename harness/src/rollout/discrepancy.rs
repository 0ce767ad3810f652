//! How the inference copy is made to differ from the trainer: precision, fake-quantised weights
//! (FP8 e4m3 or int8, per-tensor or per-channel scales), MoE router perturbation.
use crate::config::{Precision, QuantScale, WeightQuant};
use crate::model::quant::{dequantise, quantise};
use tch::{Kind, Tensor};

pub fn precision_kind(p: Precision) -> Kind {
    match p {
        Precision::Fp32 => Kind::Float,
        Precision::Bf16 => Kind::BFloat16,
        Precision::Fp16 => Kind::Half,
    }
}

/// Whether a parameter is a linear-layer weight that real FP8/int8 serving quantises (attention
/// and MLP projections, experts); embeddings, LM head, norms and the router stay in full precision.
pub fn is_quantised(name: &str) -> bool {
    name.contains("_proj") && !name.ends_with("_scale")
}

/// Fake-quantise `w` (`[out, in]` or stacked `[E, out, in]`): quantise and dequantise in fp32, return
/// in `w`'s kind. Per-channel scales are per output row. An engine keeps the quantised values in
/// 1-byte storage instead (`model::quant`) and dequantises them on use, to the same weights.
pub fn fake_quant(w: &Tensor, quant: WeightQuant, scale: QuantScale) -> Tensor {
    match quantise(w, quant, scale) {
        None => w.shallow_clone(),
        Some((q, s)) => dequantise(&q, &s, w.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_quant_error_orders_as_expected() {
        tch::manual_seed(0);
        let w = Tensor::randn([64, 128], (Kind::Float, tch::Device::Cpu)) * 0.05;
        let err = |q, s| {
            (fake_quant(&w, q, s) - &w)
                .abs()
                .mean(Kind::Float)
                .double_value(&[])
        };
        let none = err(WeightQuant::None, QuantScale::PerTensor);
        let int8 = err(WeightQuant::Int8, QuantScale::PerChannel);
        let fp8c = err(WeightQuant::Fp8E4m3, QuantScale::PerChannel);
        assert_eq!(none, 0.0);
        assert!(0.0 < int8 && int8 < fp8c, "{int8} {fp8c}");
        // Int8 per-tensor is coarser than per-channel when rows have different ranges.
        let rows = Tensor::linspace(0.1, 10.0, 64, (Kind::Float, tch::Device::Cpu)).unsqueeze(1);
        let w2 = &w * rows;
        let e = |s| {
            (fake_quant(&w2, WeightQuant::Int8, s) - &w2)
                .abs()
                .mean(Kind::Float)
                .double_value(&[])
        };
        assert!(e(QuantScale::PerChannel) < e(QuantScale::PerTensor));
    }

    #[test]
    fn fp8_values_are_representable() {
        let w = Tensor::from_slice(&[0.3f32, -1.7, 448.0, 0.0]);
        let q = fake_quant(&w, WeightQuant::Fp8E4m3, QuantScale::PerTensor);
        // Scale is 1 here, so the result is exactly e4m3-rounded.
        let want = w.to_kind(Kind::Float8e4m3fn).to_kind(Kind::Float);
        assert!(q.equal(&want));
    }
}
