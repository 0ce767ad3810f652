//! `drpo`: Divergence Regularized Policy Optimization (Yao, Zhou, Qi et al., arXiv 2606.09821),
//! in the form algorithms.md gives *(as reported)*. With `r̃_t = π_θ/μ` differentiable, maximise
//!
//! `Σ_t [ r̃_t·Â_t − |Â_t|·(π_θ − μ)² / (2δ·μ) ]`
//!
//! whose derivative in π_θ, `(Â − |Â|·(π_θ − μ)/δ)/μ`, vanishes exactly on DPPO's Binary-TV
//! boundary `π_θ − μ = δ·sign(Â)`: a token past it is pulled back instead of dropped.
//!
//! Default δ = 0.15, the Binary-TV radius the derivation above identifies it with. (One summary
//! reports "12.5", which would be `1/δ` with δ = 0.08; set `delta: 0.08` to follow that reading.)
use super::agg::{LossAgg, LossAggMode};
use super::grpo::validate_norm;
use super::{
    check_positive, masked_mean, scalar, valid, zero_pad, AdvantageInput, Advantages, Algorithm,
    Metrics, PolicyBatch, LOG_RATIO_CLAMP,
};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `algorithm: { name: drpo, … }`. Defaults: δ = 0.15, group-normalised advantages,
/// `seq-mean-token-sum-norm` (as DPPO, whose geometry it keeps).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrpoConfig {
    pub delta: f64,
    pub norm_adv_by_std: bool,
    pub loss_agg_mode: LossAggMode,
    pub loss_agg_norm: Option<f64>,
}

impl Default for DrpoConfig {
    fn default() -> Self {
        DrpoConfig {
            delta: 0.15,
            norm_adv_by_std: true,
            loss_agg_mode: LossAggMode::SeqMeanTokenSumNorm,
            loss_agg_norm: None,
        }
    }
}

impl DrpoConfig {
    pub fn validate(&self) -> Result<(), String> {
        check_positive("delta", self.delta)?;
        validate_norm(self.loss_agg_norm)
    }
}

/// Loss (the negated objective, aggregated) and metrics `actor/pg_loss`, `actor/ppo_kl`,
/// `drpo/penalty` (the regulariser's aggregated value), `drpo/beyond_frac` (share of tokens past
/// the boundary in the advantage's direction), `drpo/tv_mean` (mean |π_θ − μ|).
pub fn drpo_loss(
    logp: &Tensor,
    old_logp: &Tensor,
    rollout_logp: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    delta: f64,
    agg: LossAgg,
) -> (Tensor, Metrics) {
    let v = valid(mask);
    let logp = zero_pad(logp, &v);
    let mu_log = zero_pad(&rollout_logp.detach(), &v);
    let adv = zero_pad(&advantages.detach(), &v);
    let pi = logp.exp();
    let mu = mu_log.exp();
    let rt = (&logp - &mu_log)
        .clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        .exp();
    let diff = &pi - &mu;
    let reg = adv.abs() * diff.square() / (&mu * (2.0 * delta));
    let per_token = -(&rt * &adv) + &reg;
    let loss = agg.apply(&per_token, mask);
    let mut m = Metrics::new();
    m.insert("actor/pg_loss".into(), scalar(&loss));
    m.insert(
        "actor/ppo_kl".into(),
        masked_mean(&(old_logp.detach() - logp.detach()), mask),
    );
    m.insert(
        "drpo/penalty".into(),
        scalar(&agg.apply(&reg.detach(), mask)),
    );
    let beyond = (diff.detach() * adv.sign()).gt(delta);
    m.insert("drpo/beyond_frac".into(), masked_mean(&beyond, mask));
    m.insert("drpo/tv_mean".into(), masked_mean(&diff.abs(), mask));
    (loss, m)
}

pub struct Drpo {
    cfg: DrpoConfig,
}

impl Drpo {
    pub fn new(cfg: DrpoConfig) -> Self {
        Drpo { cfg }
    }
}

impl Algorithm for Drpo {
    fn name(&self) -> &'static str {
        "drpo"
    }

    fn advantages(&mut self, input: &AdvantageInput) -> Advantages {
        Advantages::grouped(input, self.cfg.norm_adv_by_std)
    }

    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics) {
        drpo_loss(
            batch.logp,
            batch.old_logp,
            batch.rollout_logp,
            batch.advantages,
            batch.mask,
            self.cfg.delta,
            LossAgg::new(self.cfg.loss_agg_mode, self.cfg.loss_agg_norm),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    fn agg(mode: usize) -> LossAgg {
        LossAgg::new(LossAggMode::ALL[mode], None)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The per-token gradient in π_θ is zero exactly on the Binary-TV boundary, pushes
        /// π_θ towards larger objective inside it and pulls it back beyond it.
        #[test]
        fn stationary_on_the_tv_boundary(mu in 0.05f64..0.6, a in prop_oneof![-2.0f64..-0.1, 0.1f64..2.0],
                                          delta in 0.02f64..0.3, off in -0.05f64..0.05) {
            let boundary = mu + delta * a.signum();
            let pi = boundary + off;
            prop_assume!(boundary.min(pi) > 1e-3 && boundary.max(pi) < 0.999 && off.abs() > 1e-6);
            let mask = t2(&[1.0], 1, 1);
            let adv = t2(&[a], 1, 1);
            let mu_t = t2(&[mu.ln()], 1, 1);
            let (_, g) = value_and_grad(&t2(&[pi.ln()], 1, 1), |lp| drpo_loss(lp, &mu_t, &mu_t, &adv, &mask, delta, agg(0)).0);
            // Loss gradient in log π: −π·(Â − |Â|(π − μ)/δ)/μ = |Â|·off·π/(δμ): descent moves π
            // back towards the boundary from either side.
            let g = g.double_value(&[0, 0]);
            prop_assert_eq!(g > 0.0, off > 0.0, "g={}", g);
            let (_, g0) = value_and_grad(&t2(&[boundary.ln()], 1, 1),
                |lp| drpo_loss(lp, &mu_t, &mu_t, &adv, &mask, delta, agg(0)).0);
            prop_assert!(g0.double_value(&[0, 0]).abs() < 1e-9);
        }

        /// π_θ = μ: the loss is −agg(Â).
        #[test]
        fn on_policy(case in policy_case(4, 6, 0.5), mode in 0usize..4) {
            let x = case.on_policy().tensors();
            let (l, _) = drpo_loss(&x.logp, &x.old, &x.mu, &x.adv, &x.mask, 0.15, agg(mode));
            let want = -agg(mode).apply(&x.adv, &x.mask).double_value(&[]);
            prop_assert!((l.double_value(&[]) - want).abs() < 1e-12);
        }

        #[test]
        fn grad_check(case in policy_case(3, 5, 0.8), mode in 0usize..4, delta in 0.05f64..0.3) {
            let x = case.tensors();
            check_grad(&x.logp, |lp| drpo_loss(lp, &x.old, &x.mu, &x.adv, &x.mask, delta, agg(mode)).0);
        }
    }
}
