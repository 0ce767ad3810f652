//! Train–inference mismatch corrections, composable with `grpo`, `ppo` and `dcmdp`. All use the
//! constant `ρ_t = π_old/μ` (no gradient). Weights multiply the per-token policy loss; rejections
//! remove tokens or whole sequences from the aggregation mask (as verl's rejection sampling does), so
//! they leave the means' denominators too. A list applies every item: weights multiply, masks AND.
//!
//! ```yaml
//! corrections: [ { type: tis, c: 2.0 }, { type: icepop, low: 0.5, high: 5.0 } ]
//! ```
use super::{check, masked_max, masked_mean, scalar, valid, zero_pad, Metrics};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

fn two() -> f64 {
    2.0
}
fn geo_upper() -> f64 {
    1.001
}
fn icepop_low() -> f64 {
    0.5
}
fn icepop_high() -> f64 {
    5.0
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Correction {
    /// Truncated IS: weight `min(ρ_t, c)`; `c` = 2.
    Tis {
        #[serde(default = "two")]
        c: f64,
    },
    /// Masked IS: drop tokens with `ρ_t > c`; `c` = 2.
    Mis {
        #[serde(default = "two")]
        c: f64,
    },
    /// Sequence TIS: weight `min(ρ_seq, c)` with `ρ_seq = exp(Σ_t log ρ_t)`; `c` = 2.
    SeqTis {
        #[serde(default = "two")]
        c: f64,
    },
    /// Sequence MIS: drop the sequence when `ρ_seq > c`; `c` = 2.
    SeqMis {
        #[serde(default = "two")]
        c: f64,
    },
    /// Geometric rejection: drop the sequence when `exp(mean_t log ρ_t) ∉ [lower, upper]`;
    /// `upper` = 1.001, `lower` = 1/upper when unset (verl's defaults).
    GeoRs {
        #[serde(default)]
        lower: Option<f64>,
        #[serde(default = "geo_upper")]
        upper: f64,
    },
    /// IcePop: drop tokens with `ρ_t ∉ [low, high]`; [0.5, 5].
    Icepop {
        #[serde(default = "icepop_low")]
        low: f64,
        #[serde(default = "icepop_high")]
        high: f64,
    },
}

impl Correction {
    pub fn validate(&self) -> Result<(), String> {
        let positive = |what: &str, v: f64| {
            check(v.is_finite() && v > 0.0, || {
                format!("correction `{what}`: thresholds must be positive, got {v}")
            })
        };
        match *self {
            Correction::Tis { c }
            | Correction::Mis { c }
            | Correction::SeqTis { c }
            | Correction::SeqMis { c } => positive(self.name(), c),
            Correction::GeoRs { lower, upper } => {
                let lower = lower.unwrap_or(1.0 / upper);
                positive("geo-rs", lower)?;
                positive("geo-rs", upper)?;
                check(lower <= upper, || {
                    format!("correction `geo-rs`: lower {lower} > upper {upper}")
                })
            }
            Correction::Icepop { low, high } => {
                positive("icepop", low)?;
                positive("icepop", high)?;
                check(low <= high, || {
                    format!("correction `icepop`: low {low} > high {high}")
                })
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Correction::Tis { .. } => "tis",
            Correction::Mis { .. } => "mis",
            Correction::SeqTis { .. } => "seq-tis",
            Correction::SeqMis { .. } => "seq-mis",
            Correction::GeoRs { .. } => "geo-rs",
            Correction::Icepop { .. } => "icepop",
        }
    }
}

/// What the corrections make of a batch.
pub struct Corrected {
    /// Per-token IS weights `[B, T]` (constant), `None` when no correction weights.
    pub weights: Option<Tensor>,
    /// The response mask with rejected tokens and sequences removed.
    pub mask: Tensor,
    /// `actor/is_weight_mean`, `actor/is_weight_max`, `actor/is_masked_frac` (empty for no list).
    pub metrics: Metrics,
}

/// Apply `list` to a batch. Works in log space (`ρ > c ⇔ log ρ > ln c`) so nothing overflows.
pub fn apply_corrections(
    old_logp: &Tensor,
    rollout_logp: &Tensor,
    mask: &Tensor,
    list: &[Correction],
) -> Corrected {
    let mask = mask.detach();
    if list.is_empty() {
        return Corrected {
            weights: None,
            mask,
            metrics: Metrics::new(),
        };
    }
    let kind = mask.kind();
    let v = valid(&mask);
    let log_rho = zero_pad(&(old_logp.detach() - rollout_logp.detach()), &v);
    let seq_log = (&log_rho * &mask).sum_dim_intlist(-1, true, kind);
    let n_tok = mask.sum_dim_intlist(-1, true, kind).clamp_min(1.0);
    let mut log_w: Option<Tensor> = None;
    let mut keep = mask.ones_like();
    let mut add_w = |lw: Tensor| {
        log_w = Some(match log_w.take() {
            Some(a) => a + lw,
            None => lw,
        })
    };
    for item in list {
        let drop = match *item {
            Correction::Tis { c } => {
                add_w(log_rho.clamp_max(c.ln()));
                None
            }
            Correction::SeqTis { c } => {
                add_w(seq_log.clamp_max(c.ln()).expand_as(&log_rho));
                None
            }
            Correction::Mis { c } => Some(log_rho.gt(c.ln())),
            Correction::SeqMis { c } => Some(seq_log.gt(c.ln()).expand_as(&log_rho)),
            Correction::GeoRs { lower, upper } => {
                let g = &seq_log / &n_tok;
                let lower = lower.unwrap_or(1.0 / upper);
                Some(
                    g.lt(lower.ln())
                        .logical_or(&g.gt(upper.ln()))
                        .expand_as(&log_rho),
                )
            }
            Correction::Icepop { low, high } => {
                Some(log_rho.lt(low.ln()).logical_or(&log_rho.gt(high.ln())))
            }
        };
        if let Some(d) = drop {
            keep = keep.masked_fill(&d, 0.0);
        }
    }
    let new_mask = &mask * keep;
    let weights = log_w.map(|lw| lw.exp());
    let mut metrics = Metrics::new();
    let (w_mean, w_max) = match &weights {
        Some(w) => (masked_mean(w, &new_mask), masked_max(w, &new_mask)),
        None => (1.0, 1.0),
    };
    metrics.insert("actor/is_weight_mean".into(), w_mean);
    metrics.insert("actor/is_weight_max".into(), w_max);
    let total = scalar(&mask.sum(Kind::Double));
    let kept = scalar(&new_mask.sum(Kind::Double));
    let frac = if total > 0.0 { 1.0 - kept / total } else { 0.0 };
    metrics.insert("actor/is_masked_frac".into(), frac);
    Corrected {
        weights,
        mask: new_mask,
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    fn rho_batch(rho: &[f64], lens: &[usize], t: usize) -> (Tensor, Tensor, Tensor) {
        let b = lens.len() as i64;
        let old = t2(&vec![0.5f64.ln(); rho.len()], b, t as i64);
        let mu = t2(
            &rho.iter().map(|r| (0.5 / r).ln()).collect::<Vec<_>>(),
            b,
            t as i64,
        );
        (old, mu, right_padded(lens, t))
    }

    #[test]
    fn token_level_by_hand() {
        let (old, mu, mask) = rho_batch(&[1.0, 2.5, 0.4, 6.0, 1.5, 9.0], &[3, 2], 3);
        let c = apply_corrections(&old, &mu, &mask, &[Correction::Tis { c: 2.0 }]);
        let w = to_vec(c.weights.as_ref().unwrap());
        for (got, want) in w.iter().zip([1.0, 2.0, 0.4, 2.0, 1.5]) {
            assert_close(*got, want, 1e-12);
        }
        assert_eq!(to_vec(&c.mask), to_vec(&mask));
        let c = apply_corrections(&old, &mu, &mask, &[Correction::Mis { c: 2.0 }]);
        assert_eq!(to_vec(&c.mask), [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        assert!(c.weights.is_none());
        assert_close(c.metrics["actor/is_masked_frac"], 2.0 / 5.0, 1e-12);
        let ice = Correction::Icepop {
            low: 0.5,
            high: 5.0,
        };
        let c = apply_corrections(&old, &mu, &mask, &[ice]);
        assert_eq!(to_vec(&c.mask), [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn sequence_level_by_hand() {
        // ρ_seq: 1·2.5·0.4 = 1.0 and 6·1.5 = 9; geometric means 1.0 and 3.
        let (old, mu, mask) = rho_batch(&[1.0, 2.5, 0.4, 6.0, 1.5, 9.0], &[3, 2], 3);
        let c = apply_corrections(&old, &mu, &mask, &[Correction::SeqTis { c: 2.0 }]);
        let w = to_vec(c.weights.as_ref().unwrap());
        assert_close(w[0], 1.0, 1e-12);
        assert_close(w[4], 2.0, 1e-12);
        let c = apply_corrections(&old, &mu, &mask, &[Correction::SeqMis { c: 2.0 }]);
        assert_eq!(to_vec(&c.mask), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        let geo = Correction::GeoRs {
            lower: None,
            upper: 2.0,
        };
        let c = apply_corrections(&old, &mu, &mask, &[geo]);
        assert_eq!(to_vec(&c.mask), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn defaults() {
        let c: Vec<Correction> = serde_json::from_value(serde_json::json!([
            {"type": "tis"}, {"type": "mis"}, {"type": "seq-tis"}, {"type": "seq-mis"},
            {"type": "geo-rs"}, {"type": "icepop"}
        ]))
        .unwrap();
        assert_eq!(
            c,
            [
                Correction::Tis { c: 2.0 },
                Correction::Mis { c: 2.0 },
                Correction::SeqTis { c: 2.0 },
                Correction::SeqMis { c: 2.0 },
                Correction::GeoRs {
                    lower: None,
                    upper: 1.001
                },
                Correction::Icepop {
                    low: 0.5,
                    high: 5.0
                },
            ]
        );
        for x in &c {
            x.validate().unwrap();
        }
    }

    #[test]
    fn garbage_in_padding_is_ignored_and_f32_is_kept() {
        let old = Tensor::from_slice(&[0.0f32, f32::NAN]).view([1, 2]);
        let mu = Tensor::from_slice(&[-0.1f32, f32::INFINITY]).view([1, 2]);
        let mask = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
        let list = [Correction::Tis { c: 2.0 }, Correction::SeqMis { c: 2.0 }];
        let c = apply_corrections(&old, &mu, &mask, &list);
        let w = c.weights.unwrap();
        assert_eq!(w.kind(), Kind::Float);
        assert!(w.isfinite().all().int64_value(&[]) == 1);
        assert_eq!(to_vec(&c.mask), [1.0, 0.0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// With ρ ≡ 1 every correction is the identity (weights 1, nothing dropped).
        #[test]
        fn identity_when_no_mismatch(case in policy_case(4, 6, 0.5)) {
            let x = case.on_policy().tensors();
            let all = [
                Correction::Tis { c: 2.0 }, Correction::Mis { c: 2.0 },
                Correction::SeqTis { c: 2.0 }, Correction::SeqMis { c: 2.0 },
                Correction::GeoRs { lower: None, upper: 1.001 },
                Correction::Icepop { low: 0.5, high: 5.0 },
            ];
            let c = apply_corrections(&x.old, &x.mu, &x.mask, &all);
            prop_assert_eq!(to_vec(&c.mask), to_vec(&x.mask));
            prop_assert!(to_vec(c.weights.as_ref().unwrap()).iter().all(|w| *w == 1.0));
        }

        /// Token rejections drop exactly the tokens outside their thresholds.
        #[test]
        fn token_rejection_is_exact(case in policy_case(4, 6, 2.0)) {
            let x = case.tensors();
            let ice = apply_corrections(&x.old, &x.mu, &x.mask, &[Correction::Icepop { low: 0.5, high: 5.0 }]);
            let mis = apply_corrections(&x.old, &x.mu, &x.mask, &[Correction::Mis { c: 2.0 }]);
            let m = to_vec(&x.mask);
            for (i, ((ki, km), mm)) in to_vec(&ice.mask).iter().zip(to_vec(&mis.mask)).zip(&m).enumerate() {
                let rho = case.old_p[i] / case.mu_p[i];
                prop_assert_eq!(*ki, if *mm > 0.0 && (0.5..=5.0).contains(&rho) { 1.0 } else { 0.0 });
                prop_assert_eq!(km, if *mm > 0.0 && rho <= 2.0 { 1.0 } else { 0.0 });
            }
        }
    }
}
