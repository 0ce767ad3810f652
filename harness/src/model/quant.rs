//! 1-byte weight storage for a quantised inference copy: each linear-layer weight (attention and
//! MLP projections, stacked experts) is kept as its quantised values `q` (Int8, or FP8 e4m3fn) with
//! fp32 scales `s` (one per tensor, or one per output row), and dequantised per layer when it is
//! used: `W = (q · s)` computed in fp32 and cast to the model's dtype. That is bit for bit the
//! weight the fake-quantised path (`rollout::discrepancy::fake_quant`) produces, at a quarter of
//! fp32's bytes (half of bf16's).
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `rollout.engine.weight_quant`: the inference copy's weight format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WeightQuant {
    #[default]
    None,
    Fp8E4m3,
    Int8,
}

/// `rollout.engine.quant_scale`: one scale per tensor or per output channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum QuantScale {
    #[default]
    PerTensor,
    PerChannel,
}

/// Largest finite value of FP8 e4m3fn.
pub const FP8_E4M3_MAX: f64 = 448.0;

/// Largest magnitude a quantised value takes.
fn qmax(quant: WeightQuant) -> Option<f64> {
    match quant {
        WeightQuant::None => None,
        WeightQuant::Fp8E4m3 => Some(FP8_E4M3_MAX),
        WeightQuant::Int8 => Some(127.0),
    }
}

/// The 1-byte dtype of `quant`'s values (`None` for no quantisation).
pub fn storage_kind(quant: WeightQuant) -> Option<Kind> {
    match quant {
        WeightQuant::None => None,
        WeightQuant::Fp8E4m3 => Some(Kind::Float8e4m3fn),
        WeightQuant::Int8 => Some(Kind::Int8),
    }
}

/// Shape of the scales of a weight of shape `shape` (`[out, in]` or stacked `[E, out, in]`).
pub fn scale_shape(shape: &[i64], scale: QuantScale) -> Vec<i64> {
    match scale {
        QuantScale::PerTensor => vec![],
        QuantScale::PerChannel => {
            let mut s = shape.to_vec();
            *s.last_mut().unwrap() = 1;
            s
        }
    }
}

/// Quantise `w`: its 1-byte values and fp32 scales (`None` for `WeightQuant::None`).
pub fn quantise(w: &Tensor, quant: WeightQuant, scale: QuantScale) -> Option<(Tensor, Tensor)> {
    let qmax = qmax(quant)?;
    let wf = w.to_kind(Kind::Float);
    let amax = match scale {
        QuantScale::PerTensor => wf.abs().max(),
        QuantScale::PerChannel => wf.abs().amax(-1, true),
    };
    let s = (amax / qmax).clamp_min(1e-12);
    let x = &wf / &s;
    let q = match quant {
        WeightQuant::Fp8E4m3 => x.to_kind(Kind::Float8e4m3fn),
        _ => x.round().clamp(-qmax, qmax).to_kind(Kind::Int8),
    };
    Some((q, s))
}

/// `q · s` in fp32, cast to `kind`.
pub fn dequantise(q: &Tensor, s: &Tensor, kind: Kind) -> Tensor {
    (q.to_kind(Kind::Float) * s).to_kind(kind)
}

/// A weight kept in 1-byte storage: its scales and the dtype it is used in.
pub(crate) struct Quantised {
    pub(crate) scale: Tensor,
    pub(crate) kind: Kind,
}

impl Quantised {
    /// Replace `w` by zeroed 1-byte storage of its shape; returns the (zeroed) scales to fill.
    pub(crate) fn store(w: &mut Tensor, quant: WeightQuant, scale: QuantScale) -> Option<Self> {
        let qk = storage_kind(quant)?;
        let (kind, device) = (w.kind(), w.device());
        let shape = w.size();
        *w = Tensor::zeros(&shape, (qk, device));
        Some(Quantised {
            scale: Tensor::zeros(scale_shape(&shape, scale), (Kind::Float, device)),
            kind,
        })
    }

    /// The weight to compute with.
    pub(crate) fn weight(&self, q: &Tensor) -> Tensor {
        dequantise(q, &self.scale, self.kind)
    }
}

/// `w` itself, or its dequantised value when it is stored quantised.
pub(crate) fn weight_of(w: &Tensor, quant: Option<&Quantised>) -> Tensor {
    match quant {
        None => w.shallow_clone(),
        Some(q) => q.weight(w),
    }
}
