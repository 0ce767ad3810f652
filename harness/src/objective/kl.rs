//! KL estimators to a reference policy, per token: with `x = log π_θ − log π_ref`,
//! `k1 = x`, `k2 = ½x²`, `k3 = exp(−x) − 1 + x` (verl's `low_var_kl`, clamped to [−10, 10]).
use super::agg::LossAgg;
use super::{check, valid, zero_pad, LOG_RATIO_CLAMP};
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `x` (verl: `kl`).
    #[serde(alias = "kl")]
    K1,
    /// `½x²` (verl: `mse`).
    #[serde(alias = "mse")]
    K2,
    /// `exp(−x) − 1 + x`, unbiased and non-negative (verl: `low_var_kl`). The default.
    #[default]
    #[serde(alias = "low_var_kl")]
    K3,
}

/// `β·KL(π_θ ‖ π_ref)` added to the loss (or, for PPO's `kl_in_reward`, subtracted from the reward).
/// Defaults: `coef` 0.001, `estimator` k3 (verl's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KlPenalty {
    pub coef: f64,
    pub estimator: KlEstimator,
}

impl Default for KlPenalty {
    fn default() -> Self {
        KlPenalty {
            coef: 0.001,
            estimator: KlEstimator::K3,
        }
    }
}

impl KlPenalty {
    pub fn validate(&self, key: &str) -> Result<(), String> {
        check(self.coef.is_finite() && self.coef >= 0.0, || {
            format!("`{key}.coef` must be >= 0, got {}", self.coef)
        })
    }
}

/// Per-token estimate `[B, T]`; gradient flows through `logp` only. The log-ratio is clamped to
/// ±20 first so `exp(−x)` stays finite in f32.
pub fn kl_estimate(logp: &Tensor, ref_logp: &Tensor, estimator: KlEstimator) -> Tensor {
    let x = (logp - ref_logp.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
    match estimator {
        KlEstimator::K1 => x,
        KlEstimator::K2 => x.square() * 0.5,
        KlEstimator::K3 => ((-&x).exp() - 1.0 + &x).clamp(-10.0, 10.0),
    }
}

/// The estimate aggregated like the policy loss (`actor/kl_loss`).
pub fn kl_loss(
    logp: &Tensor,
    ref_logp: &Tensor,
    mask: &Tensor,
    estimator: KlEstimator,
    agg: LossAgg,
) -> Tensor {
    let v = valid(mask);
    let k = kl_estimate(&zero_pad(logp, &v), &zero_pad(ref_logp, &v), estimator);
    agg.apply(&k, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::agg::LossAggMode;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    #[test]
    fn by_hand() {
        let logp = t2(&[0.3f64.ln()], 1, 1);
        let r = t2(&[0.5f64.ln()], 1, 1);
        let x = (0.3f64 / 0.5).ln();
        let v = |e| kl_estimate(&logp, &r, e).double_value(&[0, 0]);
        assert_close(v(KlEstimator::K1), x, 1e-15);
        assert_close(v(KlEstimator::K2), 0.5 * x * x, 1e-15);
        assert_close(v(KlEstimator::K3), (-x).exp() - 1.0 + x, 1e-15);
    }

    #[test]
    fn k3_is_clamped_and_finite_in_f32() {
        let logp = Tensor::from_slice(&[-200.0f32]).view([1, 1]);
        let r = Tensor::from_slice(&[0.0f32]).view([1, 1]);
        let v = kl_estimate(&logp, &r, KlEstimator::K3);
        assert_eq!(v.double_value(&[0, 0]), 10.0);
    }

    #[test]
    fn aliases() {
        for (s, e) in [
            ("k1", KlEstimator::K1),
            ("kl", KlEstimator::K1),
            ("mse", KlEstimator::K2),
            ("low_var_kl", KlEstimator::K3),
        ] {
            let got: KlEstimator = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(got, e);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Every estimator against central differences in f64; k2 and k3 are zero at π_θ = π_ref.
        #[test]
        fn grad_check(b in ragged_batch(3, 5)) {
            let r = &b.x * 0.7 - 0.4;
            for e in [KlEstimator::K1, KlEstimator::K2, KlEstimator::K3] {
                for mode in LossAggMode::ALL {
                    let agg = LossAgg::new(mode, None);
                    check_grad(&(&b.x * 0.5 - 1.0), |x| kl_loss(x, &r, &b.mask, e, agg));
                }
                if e != KlEstimator::K1 {
                    let z = kl_loss(&r, &r, &b.mask, e, LossAgg::new(LossAggMode::TokenMean, None));
                    prop_assert_eq!(z.double_value(&[]), 0.0);
                }
            }
        }
    }
}
