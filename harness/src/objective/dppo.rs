//! `dppo`: divergence-based trust region anchored to the rollout policy μ (Qi et al.,
//! arXiv 2602.04879). Per token, with `r̃_t = π_θ/μ`:
//!
//! `l_t = −Â_t · sg(min(r̃_t, C)) · M_t · log π_θ(o_t)`   (C = 10)
//!
//! i.e. the truncated-IS policy gradient, where the trust-region mask `M_t = 0` drops a token whose
//! divergence from μ exceeds δ *and* whose probability already moved in the advantage's direction
//! (`Â > 0` and π_θ > μ, or `Â < 0` and π_θ < μ). Divergences: `binary-tv` `|π_θ − μ|` (δ 0.15),
//! `binary-kl` the sampled token's Bernoulli `KL(μ ‖ π_θ)` (δ 0.05), `topk-tv` / `topk-kl` the same
//! over μ's top-K tokens plus one "rest" bucket. Aggregation Dr.GRPO-style by default.
use super::agg::{LossAgg, LossAggMode};
use super::grpo::validate_norm;
use super::{
    bool_to, check, check_positive, masked_max, masked_mean, scalar, valid, zero_pad,
    AdvantageInput, Advantages, Algorithm, Metrics, PolicyBatch, LOG_RATIO_CLAMP,
};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Probabilities are clamped to [ε, 1 − ε] inside KL divergences so that π = 1 (common for
/// confident tokens) or μ = 0 stay finite; the divergence only decides the mask.
const PROB_EPS: f64 = 1e-6;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DppoDivergence {
    #[default]
    BinaryTv,
    BinaryKl,
    TopkTv,
    TopkKl,
}

impl DppoDivergence {
    /// δ_TV = 0.15, δ_KL = 0.05.
    pub fn default_delta(self) -> f64 {
        match self {
            DppoDivergence::BinaryTv | DppoDivergence::TopkTv => 0.15,
            DppoDivergence::BinaryKl | DppoDivergence::TopkKl => 0.05,
        }
    }

    pub fn needs_topk(self) -> bool {
        matches!(self, DppoDivergence::TopkTv | DppoDivergence::TopkKl)
    }
}

/// `algorithm: { name: dppo, … }`. Defaults: `binary-tv`, δ by divergence (0.15 TV, 0.05 KL),
/// `is_cap` C = 10, group-normalised advantages, `seq-mean-token-sum-norm`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DppoConfig {
    pub divergence: DppoDivergence,
    /// Trust-region radius; unset: the divergence's default.
    pub delta: Option<f64>,
    /// IS truncation C.
    pub is_cap: f64,
    pub norm_adv_by_std: bool,
    pub loss_agg_mode: LossAggMode,
    pub loss_agg_norm: Option<f64>,
}

impl Default for DppoConfig {
    fn default() -> Self {
        DppoConfig {
            divergence: DppoDivergence::BinaryTv,
            delta: None,
            is_cap: 10.0,
            norm_adv_by_std: true,
            loss_agg_mode: LossAggMode::SeqMeanTokenSumNorm,
            loss_agg_norm: None,
        }
    }
}

impl DppoConfig {
    pub fn delta(&self) -> f64 {
        self.delta.unwrap_or(self.divergence.default_delta())
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(d) = self.delta {
            check_positive("delta", d)?;
        }
        check(self.is_cap.is_finite() && self.is_cap > 0.0, || {
            format!("`is_cap` must be positive, got {}", self.is_cap)
        })?;
        validate_norm(self.loss_agg_norm)
    }
}

fn bernoulli_kl(mu: &Tensor, pi: &Tensor) -> Tensor {
    let mu = mu.clamp(PROB_EPS, 1.0 - PROB_EPS);
    let pi = pi.clamp(PROB_EPS, 1.0 - PROB_EPS);
    let one_mu = 1.0f64 - &mu;
    let one_pi = 1.0f64 - &pi;
    &mu * (&mu / pi).log() + &one_mu * (&one_mu / one_pi).log()
}

/// Per-token divergence `[B, T]` between π_θ and μ (no gradient), zero on padding.
/// `topk`: (μ's top-K log-probs, π_θ's log-probs at the same ids), each `[B, T, K]`.
pub fn divergence(
    logp: &Tensor,
    rollout_logp: &Tensor,
    mask: &Tensor,
    topk: Option<(&Tensor, &Tensor)>,
    kind: DppoDivergence,
) -> Tensor {
    let v = valid(mask);
    let pi = zero_pad(&logp.detach(), &v).exp();
    let mu = zero_pad(&rollout_logp.detach(), &v).exp();
    let d = match kind {
        DppoDivergence::BinaryTv => (&pi - &mu).abs(),
        DppoDivergence::BinaryKl => bernoulli_kl(&mu, &pi),
        DppoDivergence::TopkTv | DppoDivergence::TopkKl => {
            let (mu_topk, pi_topk) = topk
                .expect("topk divergences need the rollout's top-K log-probs (needs_rollout_topk)");
            let vk = v.unsqueeze(-1);
            let mk = zero_pad(&mu_topk.detach(), &vk).exp();
            let pk = zero_pad(&pi_topk.detach(), &vk).exp();
            let k = mk.kind();
            let rest = |p: &Tensor| (1.0f64 - p.sum_dim_intlist(-1, false, k)).clamp_min(PROB_EPS);
            let (mrest, prest) = (rest(&mk), rest(&pk));
            if kind == DppoDivergence::TopkTv {
                ((&pk - &mk).abs().sum_dim_intlist(-1, false, k) + (&prest - &mrest).abs()) * 0.5
            } else {
                let mk = mk.clamp_min(PROB_EPS);
                let pk = pk.clamp_min(PROB_EPS);
                (&mk * (&mk / pk).log()).sum_dim_intlist(-1, false, k)
                    + &mrest * (&mrest / prest).log()
            }
        }
    };
    zero_pad(&d, &v)
}

/// Bool `[B, T]`: the tokens DPPO masks — beyond δ and moved in the advantage's direction.
pub fn trust_region_violations(
    logp: &Tensor,
    rollout_logp: &Tensor,
    advantages: &Tensor,
    div: &Tensor,
    mask: &Tensor,
    delta: f64,
) -> Tensor {
    let v = valid(mask);
    let moved = zero_pad(&(logp.detach() - rollout_logp.detach()), &v);
    let adv = zero_pad(&advantages.detach(), &v);
    let toward = adv
        .gt(0.0)
        .logical_and(&moved.gt(0.0))
        .logical_or(&adv.lt(0.0).logical_and(&moved.lt(0.0)));
    toward.logical_and(&div.gt(delta)).logical_and(&v)
}

/// The surrogate with the stop-gradient parts given: `Σ g ⊙ (−Â · w · keep · log π_θ)`.
pub fn dppo_surrogate(
    logp: &Tensor,
    is_weights: &Tensor,
    keep: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    agg: LossAgg,
) -> Tensor {
    let v = valid(mask);
    let logp = zero_pad(logp, &v);
    let adv = zero_pad(&advantages.detach(), &v);
    let per_token = -adv * is_weights.detach() * keep.detach() * logp;
    agg.apply(&per_token, mask)
}

/// DPPO loss and metrics `dppo/mask_frac`, `dppo/div_mean`, `dppo/div_max`, `actor/pg_loss`,
/// `actor/ppo_kl`. The loss value is the documented surrogate (it contains log π_θ, so it is not
/// the policy's performance); its gradient is the masked truncated-IS policy gradient.
pub fn dppo_loss(batch: &PolicyBatch, advantages: &Tensor, cfg: &DppoConfig) -> (Tensor, Metrics) {
    let mask = batch.mask;
    let v = valid(mask);
    let topk = batch.rollout_topk_logp.zip(batch.topk_logp);
    let div = divergence(batch.logp, batch.rollout_logp, mask, topk, cfg.divergence);
    let masked = trust_region_violations(
        batch.logp,
        batch.rollout_logp,
        advantages,
        &div,
        mask,
        cfg.delta(),
    );
    let keep = bool_to(&masked.logical_not(), mask);
    let log_rt = zero_pad(&(batch.logp.detach() - batch.rollout_logp.detach()), &v);
    let w = log_rt.clamp_max(cfg.is_cap.ln().min(LOG_RATIO_CLAMP)).exp();
    let agg = LossAgg::new(cfg.loss_agg_mode, cfg.loss_agg_norm);
    let loss = dppo_surrogate(batch.logp, &w, &keep, advantages, mask, agg);
    let mut m = Metrics::new();
    m.insert("actor/pg_loss".into(), scalar(&loss));
    m.insert(
        "actor/ppo_kl".into(),
        masked_mean(&(batch.old_logp - batch.logp.detach()), mask),
    );
    let n = scalar(&mask.detach().sum(Kind::Double));
    let frac = if n > 0.0 {
        scalar(&masked.to_kind(Kind::Double).sum(Kind::Double)) / n
    } else {
        0.0
    };
    m.insert("dppo/mask_frac".into(), frac);
    m.insert("dppo/div_mean".into(), masked_mean(&div, mask));
    m.insert("dppo/div_max".into(), masked_max(&div, mask));
    (loss, m)
}

pub struct Dppo {
    cfg: DppoConfig,
}

impl Dppo {
    pub fn new(cfg: DppoConfig) -> Self {
        Dppo { cfg }
    }
}

impl Algorithm for Dppo {
    fn name(&self) -> &'static str {
        "dppo"
    }

    fn advantages(&mut self, input: &AdvantageInput) -> Advantages {
        Advantages::grouped(input, self.cfg.norm_adv_by_std)
    }

    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics) {
        dppo_loss(batch, batch.advantages, &self.cfg)
    }

    fn needs_rollout_topk(&self) -> bool {
        self.cfg.divergence.needs_topk()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    const ALL: [DppoDivergence; 4] = [
        DppoDivergence::BinaryTv,
        DppoDivergence::BinaryKl,
        DppoDivergence::TopkTv,
        DppoDivergence::TopkKl,
    ];

    /// Top-K log-probs for a case: μ's K = 3 tokens and π_θ at them, built from the sampled
    /// token's probabilities so that the sampled token is the top-1.
    fn topk_of(case: &PolicyCase, spread: &[f64]) -> (Tensor, Tensor) {
        let mut mk = Vec::new();
        let mut pk = Vec::new();
        for (i, (m, p)) in case.mu_p.iter().zip(&case.theta_p).enumerate() {
            let s = spread[i % spread.len()];
            for (j, share) in [1.0, 0.3, 0.1].iter().enumerate() {
                let jitter = if j == 0 { 1.0 } else { (s * j as f64).exp() };
                mk.push((m * share).max(1e-6).ln());
                pk.push((p * share * jitter).max(1e-6).ln());
            }
        }
        let shape = [case.b, case.t, 3];
        (
            Tensor::from_slice(&mk).view(shape),
            Tensor::from_slice(&pk).view(shape),
        )
    }

    #[test]
    fn binary_kl_is_finite_at_certainty() {
        let mask = t2(&[1.0, 1.0], 1, 2);
        let logp = t2(&[0.0, -1e-9], 1, 2);
        let mu = t2(&[-1e-3, 0.0], 1, 2);
        let d = divergence(&logp, &mu, &mask, None, DppoDivergence::BinaryKl);
        assert!(to_vec(&d).iter().all(|x| x.is_finite() && *x >= 0.0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// DPPO masks exactly the tokens beyond δ in the advantage's direction: they, and only
        /// they (with padding and Â = 0), get zero gradient; the rest get −Â·min(r̃, C)·g.
        #[test]
        fn masks_exactly_the_violations(case in policy_case(4, 6, 0.8), which in 0usize..4,
                                        delta in 0.01f64..0.3, spread in proptest::collection::vec(-1.0f64..1.0, 3)) {
            let x = case.tensors();
            let (mk, pk) = topk_of(&case, &spread);
            let cfg = DppoConfig { divergence: ALL[which], delta: Some(delta), loss_agg_mode: LossAggMode::TokenMean,
                                   ..DppoConfig::default() };
            let (_, grad) = value_and_grad(&x.logp, |lp| {
                // π_θ's top-1 is the sampled token: keep the two consistent under the perturbation.
                dppo_loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask).with_topk(&mk, &pk), &x.adv, &cfg).0
            });
            let div = to_vec(&divergence(&x.logp, &x.mu, &x.mask, Some((&mk, &pk)), cfg.divergence));
            let grad = to_vec(&grad);
            let mask = to_vec(&x.mask);
            let n = case.tokens() as f64;
            for i in 0..grad.len() {
                let (a, moved) = (case.adv[i], case.theta_p[i] - case.mu_p[i]);
                let violation = mask[i] > 0.0 && div[i] > delta && ((a > 0.0 && moved > 0.0) || (a < 0.0 && moved < 0.0));
                if mask[i] == 0.0 || violation {
                    prop_assert_eq!(grad[i], 0.0);
                } else {
                    let w = (case.theta_p[i] / case.mu_p[i]).min(10.0);
                    prop_assert!((grad[i] - (-a * w / n)).abs() < 1e-12, "token {i}");
                }
            }
        }

        /// Gradient check against finite differences in f64 with the stop-gradient parts (IS weight,
        /// trust-region mask) held at their values; and the full loss's autograd gradient equals it.
        #[test]
        fn grad_check(case in policy_case(3, 5, 0.8), which in 0usize..4, mode in 0usize..4) {
            let x = case.tensors();
            let (mk, pk) = topk_of(&case, &[0.3, -0.2]);
            let cfg = DppoConfig { divergence: ALL[which], loss_agg_mode: LossAggMode::ALL[mode], ..DppoConfig::default() };
            let agg = LossAgg::new(cfg.loss_agg_mode, None);
            let div = divergence(&x.logp, &x.mu, &x.mask, Some((&mk, &pk)), cfg.divergence);
            let keep = trust_region_violations(&x.logp, &x.mu, &x.adv, &div, &x.mask, cfg.delta()).logical_not().to_kind(Kind::Double);
            let w = (&x.logp - &x.mu).exp().clamp_max(10.0);
            check_grad(&x.logp, |lp| dppo_surrogate(lp, &w, &keep, &x.adv, &x.mask, agg));
            let (_, full) = value_and_grad(&x.logp, |lp| {
                dppo_loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask).with_topk(&mk, &pk), &x.adv, &cfg).0
            });
            let (_, frozen) = value_and_grad(&x.logp, |lp| dppo_surrogate(lp, &w, &keep, &x.adv, &x.mask, agg));
            prop_assert!(max_abs_diff(&full, &frozen) < 1e-14);
        }
    }
}
