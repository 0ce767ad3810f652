//! `dppo`: divergence-based trust region anchored to the rollout policy μ (Qi et al.,
//! arXiv 2602.04879), as the authors' code computes it (sail-sg/Stable-RL,
//! `verl/trainer/ppo/core_algos.py`: `compute_policy_loss_with_mask`; verl 0.9.1's `dppo_tv` /
//! `dppo_kl` in bypass mode are the binary variants). Per token, with `r̃_t = π_θ/μ`:
//!
//! `l_t = −Â_t · sg(min(r̃_t, C)) · M_t · log π_θ(o_t)`   (C = 10, the authors' `clip_ratio_c`)
//!
//! i.e. the truncated-IS policy gradient, where the trust-region mask `M_t = 0` drops a token that
//! left the region in the advantage's direction: for `Â > 0`, `π_θ > μ` and divergence > δ_high;
//! otherwise `π_θ < μ` and divergence > δ_low. Divergences: `binary-tv` `|π_θ − μ|` (δ 0.15),
//! `binary-kl` the sampled token's Bernoulli `KL(μ ‖ π_θ)` (δ 0.05), `topk-tv` / `topk-kl` the
//! same over μ's top-K tokens plus one "rest" bucket. Defaults follow the authors' verl recipe:
//! no std division of the advantages (Dr.GRPO) and `seq-mean-token-sum-norm`.
use super::agg::{AggTotals, LossAgg, LossAggMode};
use super::grpo::check_norm;
use super::{
    bool_to, masked_max, scalar, sum_over, valid, zero_pad, AdvantageInput, Advantages, Algorithm,
    ConfigProblem, Metrics, PolicyBatch, LOG_RATIO_CLAMP,
};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Added inside the binary KL's `log((1 − μ)/(1 − π))` (the authors' 1e-8).
const BINARY_KL_EPS: f64 = 1e-8;
/// Floor of the top-K masses (the authors' `compute_topk_kl` clamps them at 1e-12).
const TOPK_MASS_FLOOR: f64 = 1e-12;

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
    /// δ_TV = 0.15, δ_KL = 0.05 (the authors' recipe).
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

/// `algorithm: { name: dppo, … }`. Defaults: `binary-tv`, δ by divergence (0.15 TV, 0.05 KL) on
/// both sides (`delta_low` / `delta_high` set one side), `is_cap` C = 10, advantages centred per
/// group without the std division, `seq-mean-token-sum-norm`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DppoConfig {
    pub divergence: DppoDivergence,
    /// Trust-region radius of both sides; unset: the divergence's default.
    pub delta: Option<f64>,
    /// Radius for `Â ≤ 0` (the authors' `clip_ratio_low`); unset: `delta`.
    pub delta_low: Option<f64>,
    /// Radius for `Â > 0` (the authors' `clip_ratio_high`); unset: `delta`.
    pub delta_high: Option<f64>,
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
            delta_low: None,
            delta_high: None,
            is_cap: 10.0,
            norm_adv_by_std: false,
            loss_agg_mode: LossAggMode::SeqMeanTokenSumNorm,
            loss_agg_norm: None,
        }
    }
}

impl DppoConfig {
    /// `(δ_low, δ_high)`.
    pub fn deltas(&self) -> (f64, f64) {
        let d = self.delta.unwrap_or(self.divergence.default_delta());
        (self.delta_low.unwrap_or(d), self.delta_high.unwrap_or(d))
    }

    pub fn agg(&self) -> LossAgg {
        LossAgg::new(self.loss_agg_mode, self.loss_agg_norm)
    }

    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        for (key, v) in [
            ("delta", self.delta),
            ("delta_low", self.delta_low),
            ("delta_high", self.delta_high),
            ("is_cap", Some(self.is_cap)),
        ] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                out.push(ConfigProblem::new(
                    key,
                    format!("must be a positive number, got {v}"),
                ));
            }
        }
        out.extend(check_norm(self.loss_agg_norm));
        out
    }
}

fn binary_kl(mu_log: &Tensor, pi_log: &Tensor) -> Tensor {
    let mu = mu_log.exp();
    let pi = pi_log.exp();
    let one_mu = 1.0f64 - &mu + BINARY_KL_EPS;
    let one_pi = 1.0f64 - &pi + BINARY_KL_EPS;
    &mu * (mu_log - pi_log) + (1.0f64 - &mu) * (one_mu / one_pi).log()
}

/// Top-K TV and KL between μ (its top-K log-probs) and π_θ (at the same ids), `[B, T]`.
fn topk_divergence(mu_topk: &Tensor, pi_topk: &Tensor, kind: DppoDivergence) -> Tensor {
    let k = mu_topk.kind();
    let (p, q) = (mu_topk.exp(), pi_topk.exp());
    let rest = |x: &Tensor| (1.0f64 - x.sum_dim_intlist(-1, false, k)).clamp_min(TOPK_MASS_FLOOR);
    let (p_rest, q_rest) = (rest(&p), rest(&q));
    if kind == DppoDivergence::TopkTv {
        ((&p - &q).abs().sum_dim_intlist(-1, false, k) + (&p_rest - &q_rest).abs()) * 0.5
    } else {
        (&p * (mu_topk - pi_topk)).sum_dim_intlist(-1, false, k)
            + &p_rest * (p_rest.log() - q_rest.log())
    }
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
    let pi_log = zero_pad(&logp.detach(), &v);
    let mu_log = zero_pad(&rollout_logp.detach(), &v);
    let d = match kind {
        DppoDivergence::BinaryTv => (pi_log.exp() - mu_log.exp()).abs(),
        DppoDivergence::BinaryKl => binary_kl(&mu_log, &pi_log),
        DppoDivergence::TopkTv | DppoDivergence::TopkKl => {
            let (mu_topk, pi_topk) = topk
                .expect("topk divergences need the rollout's top-K log-probs (needs_rollout_topk)");
            let vk = v.unsqueeze(-1);
            let mk = zero_pad(&mu_topk.detach(), &vk);
            let pk = zero_pad(&pi_topk.detach(), &vk);
            topk_divergence(&mk, &pk, kind)
        }
    };
    zero_pad(&d, &v)
}

/// Bool `[B, T]`: the tokens DPPO masks. For `Â > 0`: moved up and beyond δ_high; otherwise
/// moved down and beyond δ_low (TV: the signed difference is the divergence).
pub fn trust_region_violations(
    logp: &Tensor,
    rollout_logp: &Tensor,
    advantages: &Tensor,
    div: &Tensor,
    mask: &Tensor,
    (delta_low, delta_high): (f64, f64),
) -> Tensor {
    let v = valid(mask);
    let diff = zero_pad(&(logp.detach().exp() - rollout_logp.detach().exp()), &v);
    let adv = zero_pad(&advantages.detach(), &v);
    let up = diff.gt(0.0).logical_and(&div.gt(delta_high));
    let down = diff.lt(0.0).logical_and(&div.gt(delta_low));
    up.where_self(&adv.gt(0.0), &down).logical_and(&v)
}

/// DPPO loss. Metrics (sums over the response tokens / the totals' tokens, except the max):
/// `actor/pg_loss`, `actor/ppo_kl` (mean of `log μ − log π_θ`), `actor/pg_clipfrac` and
/// `dppo/mask_frac` (share of tokens masked), `actor/pg_clipfrac_lower` (share kept with `r̃ > C`),
/// `dppo/div_mean`, `dppo/div_max` (absent when the batch has no token). The loss value is the
/// documented surrogate (it contains log π_θ, so it is not the policy's performance); its
/// gradient is the masked truncated-IS policy gradient.
pub fn dppo_loss(batch: &PolicyBatch, cfg: &DppoConfig) -> (Tensor, Metrics) {
    let mask = batch.mask;
    let totals = batch.totals(mask);
    let v = valid(mask);
    let topk = batch.rollout_topk_logp.zip(batch.topk_logp);
    let div = divergence(batch.logp, batch.rollout_logp, mask, topk, cfg.divergence);
    let masked = trust_region_violations(
        batch.logp,
        batch.rollout_logp,
        batch.advantages,
        &div,
        mask,
        cfg.deltas(),
    );
    let keep = bool_to(&masked.logical_not(), mask);
    let log_rt = zero_pad(&(batch.logp.detach() - batch.rollout_logp.detach()), &v)
        .clamp_max(LOG_RATIO_CLAMP);
    let w = log_rt.exp().clamp_max(cfg.is_cap);
    let logp = zero_pad(batch.logp, &v);
    let adv = zero_pad(&batch.advantages.detach(), &v);
    let per_token = -adv * &w * &keep * logp;
    let loss = cfg.agg().apply(&per_token, mask, &totals);
    let mean = |x: &Tensor| totals.per_token(sum_over(x, mask));
    let mut m = Metrics::new();
    m.insert("actor/pg_loss".into(), scalar(&loss));
    m.insert("actor/ppo_kl".into(), mean(&(-&log_rt)));
    let frac = mean(&masked);
    m.insert("actor/pg_clipfrac".into(), frac);
    m.insert("dppo/mask_frac".into(), frac);
    m.insert(
        "actor/pg_clipfrac_lower".into(),
        mean(&(log_rt.exp().gt(cfg.is_cap).to_kind(Kind::Double) * &keep)),
    );
    m.insert("dppo/div_mean".into(), mean(&div));
    // Absent without tokens (not 0): a micro-batch's max merges by max.
    if has_tokens(mask) {
        m.insert("dppo/div_max".into(), masked_max(&div, mask));
    }
    (loss, m)
}

fn has_tokens(mask: &Tensor) -> bool {
    mask.detach().gt(0.0).any().int64_value(&[]) != 0
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

    fn agg_totals(&self, _old: &Tensor, _rollout: &Tensor, mask: &Tensor) -> AggTotals {
        AggTotals::from_mask(mask)
    }

    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics) {
        dppo_loss(batch, &self.cfg)
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

        /// DPPO masks exactly the tokens beyond δ in the advantage's direction (the low side for
        /// Â ≤ 0): they, and only they (with padding and Â = 0), get zero gradient; the rest get
        /// −Â·min(r̃, C)·g with g the aggregation coefficient.
        #[test]
        fn masks_exactly_the_violations(case in policy_case(4, 6, 0.8), which in 0usize..4,
                                        low in 0.01f64..0.3, high in 0.01f64..0.3,
                                        spread in proptest::collection::vec(-1.0f64..1.0, 3)) {
            let x = case.tensors();
            let (mk, pk) = topk_of(&case, &spread);
            let cfg = DppoConfig { divergence: ALL[which], delta_low: Some(low), delta_high: Some(high),
                                   loss_agg_mode: LossAggMode::TokenMean, ..DppoConfig::default() };
            let (_, grad) = value_and_grad(&x.logp, |lp| {
                dppo_loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask).with_topk(&mk, &pk), &cfg).0
            });
            let div = to_vec(&divergence(&x.logp, &x.mu, &x.mask, Some((&mk, &pk)), cfg.divergence));
            let grad = to_vec(&grad);
            let mask = to_vec(&x.mask);
            let n = case.tokens() as f64;
            for i in 0..grad.len() {
                let (a, moved) = (case.adv[i], case.theta_p[i] - case.mu_p[i]);
                let violation = mask[i] > 0.0
                    && if a > 0.0 { moved > 0.0 && div[i] > high } else { moved < 0.0 && div[i] > low };
                if mask[i] == 0.0 || violation || a == 0.0 {
                    prop_assert_eq!(grad[i], 0.0);
                } else {
                    let w = (case.theta_p[i] / case.mu_p[i]).min(10.0);
                    prop_assert!((grad[i] - (-a * w / n)).abs() < 1e-12, "token {i}");
                }
            }
        }

        /// The IS weight and the mask carry no gradient: the loss's gradient in log π_θ is
        /// −Â·w·keep·g, and finite differences of the surrogate with w and keep frozen agree.
        #[test]
        fn grad_check(case in policy_case(3, 5, 0.8), which in 0usize..4, mode in 0usize..4) {
            let x = case.tensors();
            let (mk, pk) = topk_of(&case, &[0.3, -0.2]);
            let cfg = DppoConfig { divergence: ALL[which], loss_agg_mode: LossAggMode::ALL[mode], ..DppoConfig::default() };
            let div = divergence(&x.logp, &x.mu, &x.mask, Some((&mk, &pk)), cfg.divergence);
            let keep = trust_region_violations(&x.logp, &x.mu, &x.adv, &div, &x.mask, cfg.deltas())
                .logical_not().to_kind(Kind::Double);
            let w = (&x.logp - &x.mu).exp().clamp_max(10.0);
            let tot = AggTotals::from_mask(&x.mask);
            let frozen = |lp: &Tensor| cfg.agg().apply(&(-&x.adv * &w * &keep * lp * &x.mask), &x.mask, &tot);
            check_grad(&x.logp, frozen);
            let (_, full) = value_and_grad(&x.logp, |lp| {
                dppo_loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask).with_topk(&mk, &pk), &cfg).0
            });
            let (_, want) = value_and_grad(&x.logp, frozen);
            prop_assert!(max_abs_diff(&full, &want) < 1e-14);
        }
    }
}
