//! KL estimators to a reference policy, per token, as verl's `kl_penalty`: with
//! `x = log π_θ − log π_ref`, `k1 = x`, `abs = |x|`, `k2 = ½x²`, `k3 = exp(−x) − 1 + x` (verl's
//! `low_var_kl`: `x` clamped to ±20 first, the estimate to [−10, 10]).
use super::{ConfigProblem, LOG_RATIO_CLAMP};
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `x` (verl: `kl`).
    #[serde(alias = "kl")]
    K1,
    /// `|x|` (verl: `abs`).
    Abs,
    /// `½x²` (verl: `mse`).
    #[serde(alias = "mse")]
    K2,
    /// `exp(−x) − 1 + x`, unbiased and non-negative (verl: `low_var_kl`).
    #[serde(alias = "low_var_kl")]
    K3,
}

/// `β·KL(π_θ ‖ π_ref)` added to the loss. Defaults as verl's actor: `coef` 0.001 (`kl_loss_coef`),
/// `estimator` k3 (`kl_loss_type: low_var_kl`).
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

/// PPO's per-token `−β·KL(π_old ‖ π_ref)` folded into the reward. Defaults as verl's algorithm
/// config: `coef` 0.001 (`kl_ctrl.kl_coef`, fixed controller), `estimator` k1 (`kl_penalty: kl`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KlInReward {
    pub coef: f64,
    pub estimator: KlEstimator,
}

impl Default for KlInReward {
    fn default() -> Self {
        KlInReward {
            coef: 0.001,
            estimator: KlEstimator::K1,
        }
    }
}

pub(crate) fn check_coef(coef: f64) -> Vec<ConfigProblem> {
    if coef.is_finite() && coef >= 0.0 {
        vec![]
    } else {
        vec![ConfigProblem::new(
            "coef",
            format!("must be >= 0, got {coef}"),
        )]
    }
}

impl KlPenalty {
    pub fn check(&self) -> Vec<ConfigProblem> {
        check_coef(self.coef)
    }
}

impl KlInReward {
    pub fn check(&self) -> Vec<ConfigProblem> {
        check_coef(self.coef)
    }
}

/// Per-token estimate `[B, T]`; gradient flows through `logp` only.
pub fn kl_estimate(logp: &Tensor, ref_logp: &Tensor, estimator: KlEstimator) -> Tensor {
    let x = logp - ref_logp.detach();
    match estimator {
        KlEstimator::K1 => x,
        KlEstimator::Abs => x.abs(),
        KlEstimator::K2 => x.square() * 0.5,
        KlEstimator::K3 => {
            let x = x.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
            ((-&x).exp() - 1.0 + &x).clamp(-10.0, 10.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::agg::{agg_loss, LossAggMode};
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    #[test]
    fn by_hand() {
        let logp = t2(&[0.3f64.ln()], 1, 1);
        let r = t2(&[0.5f64.ln()], 1, 1);
        let x = (0.3f64 / 0.5).ln();
        let v = |e| kl_estimate(&logp, &r, e).double_value(&[0, 0]);
        assert_close(v(KlEstimator::K1), x, 1e-15);
        assert_close(v(KlEstimator::Abs), x.abs(), 1e-15);
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
    fn aliases_and_defaults() {
        for (s, e) in [
            ("k1", KlEstimator::K1),
            ("kl", KlEstimator::K1),
            ("abs", KlEstimator::Abs),
            ("mse", KlEstimator::K2),
            ("low_var_kl", KlEstimator::K3),
        ] {
            let got: KlEstimator = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(got, e);
        }
        assert_eq!(KlPenalty::default().estimator, KlEstimator::K3);
        assert_eq!(KlInReward::default().estimator, KlEstimator::K1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Every estimator against central differences in f64; k2 and k3 are zero at π_θ = π_ref.
        #[test]
        fn grad_check(b in ragged_batch(3, 5)) {
            let r = &b.x * 0.7 - 0.4;
            for e in [KlEstimator::K1, KlEstimator::K2, KlEstimator::K3] {
                for mode in LossAggMode::ALL {
                    check_grad(&(&b.x * 0.5 - 1.0), |x| {
                        agg_loss(&(kl_estimate(x, &r, e) * &b.mask), &b.mask, mode, None)
                    });
                }
                if e != KlEstimator::K1 {
                    let z = agg_loss(&kl_estimate(&r, &r, e), &b.mask, LossAggMode::TokenMean, None);
                    prop_assert_eq!(z.double_value(&[]), 0.0);
                }
            }
        }
    }
}
