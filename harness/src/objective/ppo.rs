//! `ppo`: PPO-clip with a value model. Advantages by GAE over the response (verl's defaults:
//! γ = 1, λ = 1, reward on the last token, optional per-token −β·KL(π_old ‖ π_ref) in the reward,
//! advantages whitened over the batch's tokens), the clipped policy loss of
//! [`grpo`](super::grpo) with its corrections, plus `vf_coef ·` the clipped value loss (ε_v = 0.5)
//! over the same tokens. The value model (same trunk shape as the policy + a scalar head) belongs
//! to the loop: it has its own parameters, so one backward through the summed loss trains both.
use super::agg::AggTotals;
use super::gae::{gae, last_token_rewards, masked_whiten, value_loss};
use super::grpo::{policy_loss_parts, PolicyLossConfig};
use super::kl::{kl_estimate, KlInReward};
use super::{
    correction, masked_mean, valid, zero_pad, AdvantageInput, Advantages, Algorithm, ConfigProblem,
    Metrics, PolicyBatch,
};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `algorithm: { name: ppo, … }`: the policy-loss keys (as `grpo`), then the critic's.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PpoConfig {
    #[serde(flatten)]
    pub policy: PolicyLossConfig,
    /// GAE discount γ (1.0).
    pub gamma: f64,
    /// GAE λ (1.0, verl's `algorithm.lam`).
    pub lam: f64,
    /// Value clip ε_v (0.5).
    pub cliprange_value: f64,
    /// Weight of the value loss in the summed loss (1.0).
    pub vf_coef: f64,
    /// Whiten advantages over the batch's tokens (verl always does; true).
    pub whiten_advantages: bool,
    /// Per-token `−β·KL(π_old ‖ π_ref)` folded into the reward (off; k1 when on, as verl).
    pub kl_in_reward: Option<KlInReward>,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            policy: PolicyLossConfig::default(),
            gamma: 1.0,
            lam: 1.0,
            cliprange_value: 0.5,
            vf_coef: 1.0,
            whiten_advantages: true,
            kl_in_reward: None,
        }
    }
}

impl PpoConfig {
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut out = self.policy.check();
        for (key, v) in [("gamma", self.gamma), ("lam", self.lam)] {
            if !(0.0..=1.0).contains(&v) {
                out.push(ConfigProblem::new(
                    key,
                    format!("must be in [0, 1], got {v}"),
                ));
            }
        }
        let c = self.cliprange_value;
        if !(c.is_finite() && c > 0.0) {
            out.push(ConfigProblem::new(
                "cliprange_value",
                format!("must be a positive number, got {c}"),
            ));
        }
        if !(self.vf_coef.is_finite() && self.vf_coef >= 0.0) {
            out.push(ConfigProblem::new(
                "vf_coef",
                format!("must be >= 0, got {}", self.vf_coef),
            ));
        }
        if let Some(k) = &self.kl_in_reward {
            out.extend(k.check().into_iter().map(|p| p.under("kl_in_reward")));
        }
        out
    }
}

/// PPO's loss: the policy loss (corrections, clip, KL) plus `vf_coef ·` the value loss, both over
/// the tokens the corrections keep.
pub fn ppo_loss(batch: &PolicyBatch, cfg: &PpoConfig) -> (Tensor, Metrics) {
    let p = &cfg.policy;
    let (pg, mut m, corrected) = policy_loss_parts(batch, p);
    let (vf, vm) = value_loss(batch, &corrected.kept, cfg.cliprange_value, p.agg());
    m.extend(vm);
    (pg + vf * cfg.vf_coef, m)
}

pub struct Ppo {
    cfg: PpoConfig,
}

impl Ppo {
    pub fn new(cfg: PpoConfig) -> Self {
        Ppo { cfg }
    }

    /// The sequence rewards on their last tokens, minus β·KL per token when `kl_in_reward` is on
    /// (metrics `actor/reward_kl_penalty`, the mean over sequences of each one's token mean, and
    /// `actor/reward_kl_penalty_coeff`, as verl's `apply_kl_penalty`).
    fn token_rewards(&self, input: &AdvantageInput, metrics: &mut Metrics) -> Tensor {
        let last = last_token_rewards(input.rewards, input.mask);
        let Some(kl) = &self.cfg.kl_in_reward else {
            return last;
        };
        let (old, reference) = input
            .old_logp
            .zip(input.ref_logp)
            .expect("kl_in_reward needs AdvantageInput::with_logps");
        let v = valid(input.mask);
        let k = zero_pad(
            &kl_estimate(&zero_pad(old, &v), &zero_pad(reference, &v), kl.estimator),
            &v,
        );
        let m = input.mask.detach().to_kind(k.kind());
        let per_seq = correction::seq_mean(&k, &m).mean(Kind::Double);
        metrics.insert("actor/reward_kl_penalty".into(), per_seq.double_value(&[]));
        metrics.insert("actor/reward_kl_penalty_coeff".into(), kl.coef);
        last - k * kl.coef
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
        let rewards = self.token_rewards(input, &mut metrics);
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

    fn agg_totals(&self, old_logp: &Tensor, rollout_logp: &Tensor, mask: &Tensor) -> AggTotals {
        self.cfg.policy.totals(old_logp, rollout_logp, mask)
    }

    /// Policy loss + `vf_coef ·` value loss; needs `batch.values`, `old_values`, `returns`.
    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics) {
        ppo_loss(batch, &self.cfg)
    }

    fn needs_value_model(&self) -> bool {
        true
    }

    fn needs_ref_policy(&self) -> bool {
        self.cfg.policy.kl.is_some() || self.cfg.kl_in_reward.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::agg::{agg_loss, LossAggMode};
    use crate::objective::correction::Correction;
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
            lam: 0.95,
            ..PpoConfig::default()
        });
        let mut kl = Ppo::new(PpoConfig {
            whiten_advantages: false,
            lam: 0.95,
            kl_in_reward: Some(KlInReward {
                coef: 0.1,
                estimator: crate::objective::KlEstimator::K1,
            }),
            ..PpoConfig::default()
        });
        let input = AdvantageInput::new(&rewards, &mask, 1)
            .with_values(&values)
            .with_logps(&old, &reference);
        let a = plain.advantages(&input).returns.unwrap();
        let out = kl.advantages(&input);
        let b = out.returns.unwrap();
        assert_close(out.metrics["actor/reward_kl_penalty"], 0.5, 1e-12);
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
                policy: PolicyLossConfig {
                    loss_agg_mode: LossAggMode::ALL[mode],
                    corrections: vec![Correction::Tis { c: 1.5 }, Correction::Mis { c: 1.8, one_sided: false }],
                    ..PolicyLossConfig::default()
                },
                vf_coef: 0.7,
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
            let policy = PolicyLossConfig { loss_agg_mode: LossAggMode::ALL[mode], ..PolicyLossConfig::default() };
            let algo = Ppo::new(PpoConfig { policy, ..PpoConfig::default() });
            let (l, _) = algo.loss(&PolicyBatch::new(&x.logp, &x.old, &x.mu, &x.adv, &x.mask)
                .with_values(&x.adv, &x.adv, &x.adv));
            let want = -agg_loss(&x.adv, &x.mask, LossAggMode::ALL[mode], None).double_value(&[]);
            prop_assert!((l.double_value(&[]) - want).abs() < 1e-12);
        }
    }
}
