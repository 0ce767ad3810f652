//! `ppo`: PPO-clip with a value model. Advantages by GAE over the response (γ = 1, λ = 0.95, reward
//! on the last token, optional −β·KL per token in the reward), the clipped policy loss of
//! [`grpo`](super::grpo) with its corrections, plus `vf_coef ·` the clipped value loss (ε_v = 0.5).
//! The value model (same trunk shape as the policy + a scalar head) belongs to the loop: it has its
//! own parameters, so one backward through the summed loss trains both.
use super::agg::{LossAgg, LossAggMode};
use super::correction::Correction;
use super::gae::{gae, last_token_rewards, masked_whiten, value_loss};
use super::grpo::{policy_loss, ClipParams, GrpoConfig, PgConfig};
use super::kl::{kl_estimate, KlPenalty};
use super::{
    check, masked_mean, valid, zero_pad, AdvantageInput, Advantages, Algorithm, Metrics,
    PolicyBatch,
};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `algorithm: { name: ppo, … }`. Policy-loss keys as in `grpo` (same defaults), then the critic's.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    pub clip_ratio_low: f64,
    pub clip_ratio_high: f64,
    pub clip_ratio_c: Option<f64>,
    pub loss_agg_mode: LossAggMode,
    pub loss_agg_norm: Option<f64>,
    pub kl: Option<KlPenalty>,
    pub corrections: Vec<Correction>,
    /// GAE discount (1.0).
    pub gamma: f64,
    /// GAE λ (0.95).
    pub lam: f64,
    /// Value clip ε_v (0.5).
    pub cliprange_value: f64,
    /// Weight of the value loss in the summed loss (1.0).
    pub vf_coef: f64,
    /// Whiten advantages over the batch's tokens (verl does; true).
    pub whiten_advantages: bool,
    /// Per-token `−β·KL(π_old ‖ π_ref)` folded into the reward (off).
    pub kl_in_reward: Option<KlPenalty>,
}

impl Default for PpoConfig {
    fn default() -> Self {
        let g = GrpoConfig::default();
        PpoConfig {
            clip_ratio_low: g.clip_ratio_low,
            clip_ratio_high: g.clip_ratio_high,
            clip_ratio_c: g.clip_ratio_c,
            loss_agg_mode: g.loss_agg_mode,
            loss_agg_norm: g.loss_agg_norm,
            kl: None,
            corrections: Vec::new(),
            gamma: 1.0,
            lam: 0.95,
            cliprange_value: 0.5,
            vf_coef: 1.0,
            whiten_advantages: true,
            kl_in_reward: None,
        }
    }
}

impl PpoConfig {
    pub fn pg(&self) -> PgConfig {
        PgConfig {
            clip: ClipParams {
                low: self.clip_ratio_low,
                high: self.clip_ratio_high,
                dual: self.clip_ratio_c,
            },
            agg: LossAgg::new(self.loss_agg_mode, self.loss_agg_norm),
            kl: self.kl,
            corrections: self.corrections.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.pg().validate()?;
        let unit = |key: &str, v: f64| {
            check((0.0..=1.0).contains(&v), || {
                format!("`{key}` must be in [0, 1], got {v}")
            })
        };
        unit("gamma", self.gamma)?;
        unit("lam", self.lam)?;
        super::check_positive("cliprange_value", self.cliprange_value)?;
        check(self.vf_coef.is_finite() && self.vf_coef >= 0.0, || {
            format!("`vf_coef` must be >= 0, got {}", self.vf_coef)
        })?;
        if let Some(k) = &self.kl_in_reward {
            k.validate("kl_in_reward")?;
        }
        Ok(())
    }
}

pub struct Ppo {
    cfg: PpoConfig,
    pg: PgConfig,
}

impl Ppo {
    pub fn new(cfg: PpoConfig) -> Self {
        let pg = cfg.pg();
        Ppo { cfg, pg }
    }
}

impl Algorithm for Ppo {
    fn name(&self) -> &'static str {
        "ppo"
    }

    /// GAE from `input.values` (required); `returns` are the value targets.
    fn advantages(&mut self, input: &AdvantageInput) -> Advantages {
        let values = input
            .values
            .expect("ppo needs AdvantageInput::values (see Algorithm::needs_value_model)");
        let mut metrics = Metrics::new();
        let last = last_token_rewards(input.rewards, input.mask);
        let rewards = if let Some(kl) = &self.cfg.kl_in_reward {
            let (old, reference) = input
                .old_logp
                .zip(input.ref_logp)
                .expect("kl_in_reward needs AdvantageInput::with_logps");
            let v = valid(input.mask);
            let k = kl_estimate(&zero_pad(old, &v), &zero_pad(reference, &v), kl.estimator);
            metrics.insert("critic/kl_in_reward".into(), masked_mean(&k, input.mask));
            last - zero_pad(&k, &v) * kl.coef
        } else {
            last
        };
        let (adv, returns) = gae(&rewards, values, input.mask, self.cfg.gamma, self.cfg.lam);
        metrics.insert(
            "critic/returns_mean".into(),
            masked_mean(&returns, input.mask),
        );
        metrics.insert("critic/values_mean".into(), masked_mean(values, input.mask));
        let adv = if self.cfg.whiten_advantages {
            masked_whiten(&adv, input.mask)
        } else {
            adv
        };
        Advantages {
            advantages: adv,
            returns: Some(returns),
            metrics,
        }
    }

    /// Policy loss + `vf_coef ·` value loss; needs `batch.values`, `old_values`, `returns`.
    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics) {
        let (pg, mut m) = policy_loss(batch, batch.advantages, &self.pg);
        let (values, old_values, returns) = match (batch.values, batch.old_values, batch.returns) {
            (Some(v), Some(o), Some(r)) => (v, o, r),
            _ => panic!("ppo needs PolicyBatch::with_values (values, old values, returns)"),
        };
        let (vf, vm) = value_loss(
            values,
            old_values,
            returns,
            batch.mask,
            self.cfg.cliprange_value,
            self.pg.agg,
        );
        m.extend(vm);
        (pg + vf * self.cfg.vf_coef, m)
    }

    fn needs_value_model(&self) -> bool {
        true
    }

    fn needs_ref_policy(&self) -> bool {
        self.cfg.kl.is_some() || self.cfg.kl_in_reward.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    #[test]
    fn kl_in_reward_lowers_returns() {
        let mask = right_padded(&[2], 2);
        let rewards = Tensor::from_slice(&[1.0f64]);
        let values = t2(&[0.0, 0.0], 1, 2);
        let old = t2(&[-0.5, -0.5], 1, 2);
        let reference = t2(&[-1.0, -1.0], 1, 2);
        let mut plain = Ppo::new(PpoConfig {
            whiten_advantages: false,
            ..PpoConfig::default()
        });
        let mut kl = Ppo::new(PpoConfig {
            whiten_advantages: false,
            kl_in_reward: Some(KlPenalty {
                coef: 0.1,
                estimator: crate::objective::KlEstimator::K1,
            }),
            ..PpoConfig::default()
        });
        let input = AdvantageInput::new(&rewards, &mask, 1)
            .with_values(&values)
            .with_logps(&old, &reference);
        let a = plain.advantages(&input).returns.unwrap();
        let b = kl.advantages(&input).returns.unwrap();
        // γ = 1, λ = 0.95, V = 0: returns are the discounted-by-λ sums of rewards.
        assert_eq!(to_vec(&a), [0.95, 1.0]);
        let r = [-0.05, 1.0 - 0.05];
        let want = [r[0] + 0.95 * r[1], r[1]];
        for (g, w) in to_vec(&b).iter().zip(want) {
            assert_close(*g, w, 1e-12);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Gradient check of the whole PPO loss in f64, w.r.t. log-probs and values.
        #[test]
        fn grad_check(case in policy_case(3, 5, 0.8), mode in 0usize..4) {
            let x = case.tensors();
            let algo = Ppo::new(PpoConfig {
                loss_agg_mode: LossAggMode::ALL[mode],
                vf_coef: 0.7,
                corrections: vec![Correction::Tis { c: 1.5 }],
                ..PpoConfig::default()
            });
            let old_v = &x.adv * 0.3;
            let ret = &x.adv * 0.8 - 0.1;
            let values = &x.adv * 0.5 + 0.2;
            check_grad(&x.logp, |lp| {
                algo.loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask)
                    .with_values(&values, &old_v, &ret)).0
            });
            check_grad(&values, |v| {
                algo.loss(&PolicyBatch::new(&x.logp, &x.old, &x.mu, &x.adv, &x.mask)
                    .with_values(v, &old_v, &ret)).0
            });
        }

        /// π_θ = π_old = μ and V = R: the loss is −agg(Â).
        #[test]
        fn on_policy(case in policy_case(3, 5, 0.5), mode in 0usize..4) {
            let x = case.on_policy().tensors();
            let algo = Ppo::new(PpoConfig { loss_agg_mode: LossAggMode::ALL[mode], ..PpoConfig::default() });
            let (l, _) = algo.loss(&PolicyBatch::new(&x.logp, &x.old, &x.mu, &x.adv, &x.mask)
                .with_values(&x.adv, &x.adv, &x.adv));
            let want = -LossAgg::new(LossAggMode::ALL[mode], None).apply(&x.adv, &x.mask).double_value(&[]);
            prop_assert!((l.double_value(&[]) - want).abs() < 1e-12);
        }
    }
}
