//! `drpo`: Divergence Regularized Policy Optimization (Yao, Zhou, Qi et al., arXiv 2606.09821),
//! as the authors' code computes it (Tencent-Hunyuan/UniRL, `unirl/algorithms/drpo.py` and
//! `DRPO/config.yaml`). With `r̃_t = π_θ/μ` differentiable, the per-token loss is
//!
//! `l_t = −Â_t·r̃_t + |Â_t|·μ·(r̃_t − 1)²/(2δ)  =  −Â_t·r̃_t + |Â_t|·(π_θ − μ)²/(2δ·μ)`
//!
//! whose derivative in π_θ, `−(Â − |Â|·(π_θ − μ)/δ)/μ`, vanishes where `π_θ − μ = δ·sign(Â)`:
//! a token moving past that boundary is pulled back instead of dropped (a smooth version of
//! DPPO's Binary-TV mask). `mu_weighted: false` is plain SPO, `|Â|·(r̃ − 1)²/(2δ)`.
//!
//! Defaults from the authors' recipe: δ = 12.5 (the paper's §4 "regularization threshold"), the
//! log-ratio clamped to ±20, no IS truncation, advantages centred per group without the std
//! division, `seq-mean-token-sum-norm` (their horizon is 8192: set `loss_agg_norm`).
use super::agg::{AggTotals, LossAgg, LossAggMode};
use super::grpo::check_norm;
use super::{
    scalar, sum_over, valid, zero_pad, AdvantageInput, Advantages, Algorithm, ConfigProblem,
    Metrics, PolicyBatch, LOG_RATIO_CLAMP,
};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `algorithm: { name: drpo, … }`. Defaults: δ = 12.5, μ-weighted penalty, advantages without
/// the std division, `seq-mean-token-sum-norm`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrpoConfig {
    /// Regularisation threshold δ (the authors' `drpo_epsilon`).
    pub delta: f64,
    /// Weight the penalty by μ (token-adaptive trust region, the authors' default); `false` is SPO.
    pub mu_weighted: bool,
    pub norm_adv_by_std: bool,
    pub loss_agg_mode: LossAggMode,
    pub loss_agg_norm: Option<f64>,
}

impl Default for DrpoConfig {
    fn default() -> Self {
        DrpoConfig {
            delta: 12.5,
            mu_weighted: true,
            norm_adv_by_std: false,
            loss_agg_mode: LossAggMode::SeqMeanTokenSumNorm,
            loss_agg_norm: None,
        }
    }
}

impl DrpoConfig {
    pub fn agg(&self) -> LossAgg {
        LossAgg::new(self.loss_agg_mode, self.loss_agg_norm)
    }

    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        if !(self.delta.is_finite() && self.delta > 0.0) {
            out.push(ConfigProblem::new(
                "delta",
                format!("must be a positive number, got {}", self.delta),
            ));
        }
        out.extend(check_norm(self.loss_agg_norm));
        out
    }
}

/// Loss (the negated objective, aggregated) and metrics `actor/pg_loss`, `actor/ppo_kl` (mean of
/// `log μ − log π_θ`), `drpo/penalty` (the regulariser's aggregated value), `drpo/beyond_frac`
/// (share of tokens past the boundary in the advantage's direction), `drpo/tv_mean`
/// (mean |π_θ − μ|); means are sums over the response tokens / the totals' tokens.
pub fn drpo_loss(batch: &PolicyBatch, cfg: &DrpoConfig) -> (Tensor, Metrics) {
    let mask = batch.mask;
    let totals = batch.totals(mask);
    let v = valid(mask);
    let logp = zero_pad(batch.logp, &v);
    let mu_log = zero_pad(&batch.rollout_logp.detach(), &v);
    let adv = zero_pad(&batch.advantages.detach(), &v);
    let mu = mu_log.exp();
    let log_rt = (&logp - &mu_log).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
    let rt = log_rt.exp();
    let weight = if cfg.mu_weighted {
        mu.shallow_clone()
    } else {
        mu.ones_like()
    };
    let reg = adv.abs() * weight * (&rt - 1.0).square() / (2.0 * cfg.delta);
    let per_token = -(&rt * &adv) + &reg;
    let agg = cfg.agg();
    let loss = agg.apply(&per_token, mask, &totals);
    let mean = |x: &Tensor| totals.per_token(sum_over(x, mask));
    let diff = logp.detach().exp() - &mu;
    let mut m = Metrics::new();
    m.insert("actor/pg_loss".into(), scalar(&loss));
    m.insert("actor/ppo_kl".into(), mean(&(-log_rt.detach())));
    m.insert(
        "drpo/penalty".into(),
        scalar(&agg.apply(&reg.detach(), mask, &totals)),
    );
    m.insert(
        "drpo/beyond_frac".into(),
        mean(&(&diff * adv.sign()).gt(cfg.delta)),
    );
    m.insert("drpo/tv_mean".into(), mean(&diff.abs()));
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

    fn agg_totals(&self, _old: &Tensor, _rollout: &Tensor, mask: &Tensor) -> AggTotals {
        AggTotals::from_mask(mask)
    }

    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics) {
        drpo_loss(batch, &self.cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::agg::agg_loss;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    fn cfg(mode: usize, delta: f64) -> DrpoConfig {
        DrpoConfig {
            delta,
            loss_agg_mode: LossAggMode::ALL[mode],
            ..DrpoConfig::default()
        }
    }

    fn loss_of(lp: &Tensor, mu: &Tensor, adv: &Tensor, mask: &Tensor, c: &DrpoConfig) -> Tensor {
        drpo_loss(&PolicyBatch::new(lp, mu, mu, adv, mask), c).0
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The per-token gradient in π_θ is zero exactly on the boundary π_θ − μ = δ·sign(Â),
        /// pushes π_θ towards it from inside and pulls it back from beyond.
        #[test]
        fn stationary_on_the_boundary(mu in 0.05f64..0.6, a in prop_oneof![-2.0f64..-0.1, 0.1f64..2.0],
                                      delta in 0.02f64..0.3, off in -0.05f64..0.05) {
            let boundary = mu + delta * a.signum();
            let pi = boundary + off;
            prop_assume!(boundary.min(pi) > 1e-3 && boundary.max(pi) < 0.999 && off.abs() > 1e-6);
            let mask = t2(&[1.0], 1, 1);
            let adv = t2(&[a], 1, 1);
            let mu_t = t2(&[mu.ln()], 1, 1);
            let c = cfg(0, delta);
            let (_, g) = value_and_grad(&t2(&[pi.ln()], 1, 1), |lp| loss_of(lp, &mu_t, &adv, &mask, &c));
            // Loss gradient in log π: |Â|·off·π/(δμ): descent moves π back towards the boundary.
            let g = g.double_value(&[0, 0]);
            prop_assert_eq!(g > 0.0, off > 0.0, "g={}", g);
            let (_, g0) = value_and_grad(&t2(&[boundary.ln()], 1, 1), |lp| loss_of(lp, &mu_t, &adv, &mask, &c));
            prop_assert!(g0.double_value(&[0, 0]).abs() < 1e-9);
        }

        /// π_θ = μ: the loss is −agg(Â), whatever δ and weighting.
        #[test]
        fn on_policy(case in policy_case(4, 6, 0.5), mode in 0usize..4, mu_weighted: bool) {
            let x = case.on_policy().tensors();
            let c = DrpoConfig { mu_weighted, ..cfg(mode, 0.15) };
            let l = loss_of(&x.logp, &x.mu, &x.adv, &x.mask, &c);
            let want = -agg_loss(&x.adv, &x.mask, LossAggMode::ALL[mode], None).double_value(&[]);
            prop_assert!((l.double_value(&[]) - want).abs() < 1e-12);
        }

        #[test]
        fn grad_check(case in policy_case(3, 5, 0.8), mode in 0usize..4, delta in 0.05f64..13.0,
                      mu_weighted: bool) {
            let x = case.tensors();
            let c = DrpoConfig { mu_weighted, ..cfg(mode, delta) };
            check_grad(&x.logp, |lp| loss_of(lp, &x.mu, &x.adv, &x.mask, &c));
        }
    }
}
