//! The PPO-clip policy loss shared by `grpo`, `ppo` and `dcmdp` (verl's `vanilla` policy loss),
//! its seven config keys ([`PolicyLossConfig`], declared once), and the `grpo` algorithm.
//!
//! Per token, with `r_t = π_θ/π_old`:
//! `l_t = max(−Â_t·r_t, −Â_t·clip(r_t, 1−ε_low, 1+ε_high))`, and for `Â_t < 0` the dual clip
//! `l_t = min(l_t, −c·Â_t)`. Mismatch corrections weight tokens or drop them from the loss mask,
//! an optional KL penalty to a reference policy is added over the same tokens, everything is
//! aggregated by `loss_agg_mode`.
use super::agg::{AggTotals, LossAgg, LossAggMode};
use super::correction::{apply_corrections, Corrected, Correction};
use super::kl::{kl_estimate, KlPenalty};
use super::{
    scalar, sum_over, valid, zero_pad, AdvantageInput, Advantages, Algorithm, ConfigProblem,
    Metrics, PolicyBatch, LOG_RATIO_CLAMP,
};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Clip ranges: `ε_low`, `ε_high` and the dual-clip constant (`None`: off).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipParams {
    pub low: f64,
    pub high: f64,
    pub dual: Option<f64>,
}

/// The policy-loss keys of `grpo`, `ppo` and `dcmdp` (flattened into each one's config).
/// Defaults as verl's actor: ε 0.2 / 0.2 (DAPO's clip-higher is `clip_ratio_high: 0.28`), dual
/// clip 3, `token-mean`, no KL penalty, no corrections.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PolicyLossConfig {
    pub clip_ratio_low: f64,
    pub clip_ratio_high: f64,
    /// Dual-clip constant for negative advantages; `null` disables it.
    pub clip_ratio_c: Option<f64>,
    pub loss_agg_mode: LossAggMode,
    /// Horizon of `seq-mean-token-sum-norm`; unset: the mini-batch's padded length.
    pub loss_agg_norm: Option<f64>,
    /// KL penalty to the reference policy, added to the loss.
    pub kl: Option<KlPenalty>,
    pub corrections: Vec<Correction>,
}

impl Default for PolicyLossConfig {
    fn default() -> Self {
        PolicyLossConfig {
            clip_ratio_low: 0.2,
            clip_ratio_high: 0.2,
            clip_ratio_c: Some(3.0),
            loss_agg_mode: LossAggMode::TokenMean,
            loss_agg_norm: None,
            kl: None,
            corrections: Vec::new(),
        }
    }
}

impl PolicyLossConfig {
    pub fn clip(&self) -> ClipParams {
        ClipParams {
            low: self.clip_ratio_low,
            high: self.clip_ratio_high,
            dual: self.clip_ratio_c,
        }
    }

    pub fn agg(&self) -> LossAgg {
        LossAgg::new(self.loss_agg_mode, self.loss_agg_norm)
    }

    /// Every invalid value, keyed relative to `algorithm`.
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let (low, high) = (self.clip_ratio_low, self.clip_ratio_high);
        if !(0.0..1.0).contains(&low) {
            out.push(ConfigProblem::new(
                "clip_ratio_low",
                format!("must be in [0, 1), got {low}"),
            ));
        }
        if !(high.is_finite() && high >= 0.0) {
            out.push(ConfigProblem::new(
                "clip_ratio_high",
                format!("must be >= 0, got {high}"),
            ));
        }
        if let Some(c) = self.clip_ratio_c {
            if !(c.is_finite() && c > 1.0) {
                out.push(ConfigProblem::new(
                    "clip_ratio_c",
                    format!("(dual clip) must be > 1 or null, got {c}"),
                ));
            }
        }
        out.extend(check_norm(self.loss_agg_norm));
        if let Some(kl) = &self.kl {
            out.extend(kl.check().into_iter().map(|p| p.under("kl")));
        }
        for (i, c) in self.corrections.iter().enumerate() {
            out.extend(
                c.check()
                    .into_iter()
                    .map(|p| p.under_item("corrections", i)),
            );
        }
        out
    }

    /// The loss mask after this config's rejections (for [`AggTotals`]).
    pub fn totals(&self, old_logp: &Tensor, rollout_logp: &Tensor, mask: &Tensor) -> AggTotals {
        let kept = super::correction::kept_mask(old_logp, rollout_logp, mask, &self.corrections);
        AggTotals::of(mask, &kept)
    }
}

pub(crate) fn check_norm(norm: Option<f64>) -> Option<ConfigProblem> {
    norm.filter(|n| !(n.is_finite() && *n > 0.0))
        .map(|n| ConfigProblem::new("loss_agg_norm", format!("must be positive, got {n}")))
}

/// `algorithm: { name: grpo, … }`: the policy-loss keys plus the advantage's. Dr.GRPO:
/// `norm_adv_by_std: false` with `loss_agg_mode: seq-mean-token-sum-norm` and `loss_agg_norm` =
/// the max response length.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct GrpoConfig {
    /// Divide by the group's std (GRPO); `false` is Dr.GRPO.
    pub norm_adv_by_std: bool,
    #[serde(flatten)]
    pub policy: PolicyLossConfig,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            norm_adv_by_std: true,
            policy: PolicyLossConfig::default(),
        }
    }
}

/// The clipped surrogate over `kept` with optional constant per-token weights; gradient through
/// `batch.logp` only. Metrics are sums over `kept` divided by `totals.tokens`, so micro-batch
/// parts add up: `actor/pg_clipfrac` (the clipped branch is the larger), `actor/pg_clipfrac_lower`
/// (dual clip active), `actor/ppo_kl` (mean of −log r), and `actor/pg_loss`.
pub(crate) fn ppo_clip_loss(
    batch: &PolicyBatch,
    corrected: &Corrected,
    clip: &ClipParams,
    agg: LossAgg,
) -> (Tensor, Metrics) {
    let kept = &corrected.kept;
    let totals = batch.totals(kept);
    let v = valid(kept);
    let logp = zero_pad(batch.logp, &v);
    let old = zero_pad(&batch.old_logp.detach(), &v);
    let adv = zero_pad(&batch.advantages.detach(), &v);
    let log_ratio = (&logp - &old).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
    let ratio = log_ratio.exp();
    let l1 = -&adv * &ratio;
    let l2 = -&adv * ratio.clamp(1.0 - clip.low, 1.0 + clip.high);
    let clipped = l1.maximum(&l2);
    let (per_token, dual_active) = match clip.dual {
        Some(c) => {
            let l3 = &adv * (-c);
            let neg = adv.lt(0.0);
            let dual = clipped.minimum(&l3);
            let active = neg.logical_and(&clipped.gt_tensor(&l3));
            (dual.where_self(&neg, &clipped), Some(active))
        }
        None => (clipped, None),
    };
    let per_token = match &corrected.weights {
        Some(w) => per_token * zero_pad(&w.detach(), &v),
        None => per_token,
    };
    let loss = agg.apply(&per_token, kept, &totals);
    let mean = |x: &Tensor| totals.per_token(sum_over(x, kept));
    let mut m = Metrics::new();
    m.insert("actor/pg_loss".into(), scalar(&loss));
    m.insert("actor/pg_clipfrac".into(), mean(&l2.gt_tensor(&l1)));
    m.insert(
        "actor/pg_clipfrac_lower".into(),
        dual_active.map_or(0.0, |a| mean(&a)),
    );
    m.insert("actor/ppo_kl".into(), mean(&(-log_ratio)));
    (loss, m)
}

/// `β·agg(KL(π_θ ‖ π_ref))` over `kept`, the policy loss's tokens (`actor/kl_loss` is the
/// aggregated KL before β).
pub(crate) fn kl_term(
    batch: &PolicyBatch,
    kl: &KlPenalty,
    kept: &Tensor,
    agg: LossAgg,
) -> (Tensor, Metrics) {
    let ref_logp = batch
        .ref_logp
        .expect("a KL penalty needs PolicyBatch::ref_logp (see Algorithm::needs_ref_policy)");
    let v = valid(kept);
    let k = kl_estimate(
        &zero_pad(batch.logp, &v),
        &zero_pad(ref_logp, &v),
        kl.estimator,
    );
    let k = agg.apply(&zero_pad(&k, &v), kept, &batch.totals(kept));
    let mut m = Metrics::new();
    m.insert("actor/kl_loss".into(), scalar(&k));
    m.insert("actor/kl_coef".into(), kl.coef);
    (k * kl.coef, m)
}

/// The policy loss of `grpo`/`ppo`/`dcmdp` for `batch.advantages`: corrections → clipped
/// surrogate → `+ β·KL` over the same tokens.
pub fn policy_loss(batch: &PolicyBatch, cfg: &PolicyLossConfig) -> (Tensor, Metrics) {
    let (loss, m, _) = policy_loss_parts(batch, cfg);
    (loss, m)
}

/// [`policy_loss`] and what the corrections made of the batch (PPO's value loss uses its mask).
pub(crate) fn policy_loss_parts(
    batch: &PolicyBatch,
    cfg: &PolicyLossConfig,
) -> (Tensor, Metrics, Corrected) {
    let corrected = apply_corrections(
        batch.old_logp,
        batch.rollout_logp,
        batch.mask,
        &cfg.corrections,
    );
    let (pg, mut m) = ppo_clip_loss(batch, &corrected, &cfg.clip(), cfg.agg());
    let Some(kl) = &cfg.kl else {
        return (pg, m, corrected);
    };
    let (k, km) = kl_term(batch, kl, &corrected.kept, cfg.agg());
    m.extend(km);
    (pg + k, m, corrected)
}

/// `grpo`: group-normalised (or Dr.GRPO) advantages and the clipped loss.
pub struct Grpo {
    cfg: GrpoConfig,
}

impl Grpo {
    pub fn new(cfg: GrpoConfig) -> Self {
        Grpo { cfg }
    }
}

impl Algorithm for Grpo {
    fn name(&self) -> &'static str {
        "grpo"
    }

    fn advantages(&mut self, input: &AdvantageInput) -> Advantages {
        Advantages::grouped(input, self.cfg.norm_adv_by_std)
    }

    fn agg_totals(&self, old_logp: &Tensor, rollout_logp: &Tensor, mask: &Tensor) -> AggTotals {
        self.cfg.policy.totals(old_logp, rollout_logp, mask)
    }

    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics) {
        policy_loss(batch, &self.cfg.policy)
    }

    fn needs_ref_policy(&self) -> bool {
        self.cfg.policy.kl.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;
    use tch::Kind;

    fn clip_strategy() -> impl Strategy<Value = ClipParams> {
        (0.05f64..0.5, 0.05f64..0.5, prop::option::of(1.5f64..5.0))
            .prop_map(|(low, high, dual)| ClipParams { low, high, dual })
    }

    fn cfg_of(clip: ClipParams, agg: LossAgg, corrections: Vec<Correction>) -> PolicyLossConfig {
        PolicyLossConfig {
            clip_ratio_low: clip.low,
            clip_ratio_high: clip.high,
            clip_ratio_c: clip.dual,
            loss_agg_mode: agg.mode,
            loss_agg_norm: agg.norm,
            kl: None,
            corrections,
        }
    }

    fn agg_strategy() -> impl Strategy<Value = LossAgg> {
        (0usize..4, prop::option::of(2.0f64..10.0))
            .prop_map(|(i, norm)| LossAgg::new(LossAggMode::ALL[i], norm))
    }

    fn clip_only(
        lp: &Tensor,
        old: &Tensor,
        adv: &Tensor,
        mask: &Tensor,
        clip: &ClipParams,
    ) -> Tensor {
        let b = PolicyBatch::new(lp, old, old, adv, mask);
        let c = Corrected {
            weights: None,
            kept: mask.shallow_clone(),
        };
        ppo_clip_loss(&b, &c, clip, LossAgg::new(LossAggMode::TokenMean, None)).0
    }

    #[test]
    fn one_token_by_hand() {
        let mask = t2(&[1.0], 1, 1);
        let old = t2(&[0.5f64.ln()], 1, 1);
        let clip = ClipParams {
            low: 0.2,
            high: 0.28,
            dual: Some(3.0),
        };
        // (ratio, Â, loss, d loss / d logp)
        for (r, a, l, g) in [
            (1.1f64, 1.0, -1.1, -1.1), // inside
            (1.5, 1.0, -1.28, 0.0),    // clip high
            (0.5, 1.0, -0.5, -0.5),    // below range, Â > 0: unclipped is larger
            (0.5, -1.0, 0.8, 0.0),     // clip low
            (4.0, -1.0, 3.0, 0.0),     // dual clip
            (2.0, -1.0, 2.0, 2.0),     // above range, Â < 0, under the dual bound
        ] {
            let logp = t2(&[(0.5 * r).ln()], 1, 1);
            let adv = t2(&[a], 1, 1);
            let (loss, grad) = value_and_grad(&logp, |x| clip_only(x, &old, &adv, &mask, &clip));
            assert_close(loss, l, 1e-12);
            assert_close(grad.double_value(&[0, 0]), g, 1e-12);
        }
    }

    #[test]
    fn f32_in_f32_out() {
        let x = Tensor::from_slice(&[-0.5f32, -1.0]).view([1, 2]);
        let mask = Tensor::from_slice(&[1.0f32, 1.0]).view([1, 2]);
        let l = policy_loss(
            &PolicyBatch::new(&x, &(&x - 0.1), &x, &mask, &mask),
            &PolicyLossConfig::default(),
        )
        .0;
        assert_eq!(l.kind(), Kind::Float);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// π_θ = π_old = μ: every clip setting, aggregation and correction gives −agg(Â).
        #[test]
        fn on_policy_loss_is_minus_mean_advantage(case in policy_case(4, 6, 0.5), clip in clip_strategy(),
                                                  agg in agg_strategy(), k in 0usize..4) {
            let x = case.on_policy().tensors();
            let corrections = [
                vec![],
                vec![Correction::Tis { c: 2.0 }, Correction::Icepop { low: 0.5, high: 5.0 }],
                vec![Correction::SeqTis { c: 2.0 }, Correction::SeqMis { c: 2.0, weight: true },
                     Correction::Mis { c: 2.0, one_sided: false }],
                vec![Correction::GeoRs { lower: None, upper: 1.001 }],
            ][k].clone();
            let cfg = cfg_of(clip, agg, corrections);
            let batch = PolicyBatch::new(&x.logp, &x.old, &x.mu, &x.adv, &x.mask);
            let (loss, _) = policy_loss(&batch, &cfg);
            let tot = AggTotals::from_mask(&x.mask);
            let want = -agg.apply(&x.adv, &x.mask, &tot).double_value(&[]);
            prop_assert!((loss.double_value(&[]) - want).abs() < 1e-12);
        }

        /// Tokens whose clipped (or dual-clipped) branch is strictly active get exactly zero gradient;
        /// every other response token with Â ≠ 0 gets a non-zero one.
        #[test]
        fn clipped_tokens_get_zero_gradient(case in policy_case(4, 6, 0.8), clip in clip_strategy()) {
            let x = case.tensors();
            let (_, grad) = value_and_grad(&x.logp, |lp| clip_only(lp, &x.old, &x.adv, &x.mask, &clip));
            let grad = to_vec(&grad);
            let mask = to_vec(&x.mask);
            for i in 0..grad.len() {
                let r = case.theta_p[i] / case.old_p[i];
                let a = case.adv[i];
                let clipped = (a > 0.0 && r > 1.0 + clip.high) || (a < 0.0 && r < 1.0 - clip.low);
                let dual = clip.dual.is_some_and(|c| a < 0.0 && r > c);
                if mask[i] == 0.0 || clipped || dual {
                    prop_assert_eq!(grad[i], 0.0, "token {} r={} a={}", i, r, a);
                } else {
                    prop_assert!(grad[i] != 0.0, "token {} r={} a={}", i, r, a);
                }
            }
        }

        /// TIS with ρ ≡ 1 is plain GRPO, bitwise (loss and gradient).
        #[test]
        fn tis_with_unit_rho_is_grpo(case in policy_case(4, 6, 0.8), clip in clip_strategy(),
                                     agg in agg_strategy()) {
            let x = case.tensors();
            let plain = cfg_of(clip, agg, vec![]);
            let tis = PolicyLossConfig { corrections: vec![Correction::Tis { c: 2.0 }], ..plain.clone() };
            let run = |cfg: &PolicyLossConfig| value_and_grad(&x.logp, |lp| {
                policy_loss(&PolicyBatch::new(lp, &x.old, &x.old, &x.adv, &x.mask), cfg).0
            });
            let (l0, g0) = run(&plain);
            let (l1, g1) = run(&tis);
            prop_assert_eq!(l0.to_bits(), l1.to_bits());
            prop_assert!(g0.equal(&g1));
        }

        /// Autograd against finite differences in f64: every aggregation, corrections, KL.
        #[test]
        fn grad_check(case in policy_case(3, 5, 0.8), clip in clip_strategy(), agg in agg_strategy(),
                      est in 0usize..3) {
            let x = case.tensors();
            let est = [super::super::KlEstimator::K1, super::super::KlEstimator::K2,
                       super::super::KlEstimator::K3][est];
            let mut cfg = cfg_of(clip, agg, vec![Correction::Tis { c: 1.5 },
                                                  Correction::Icepop { low: 0.7, high: 1.6 },
                                                  Correction::Mis { c: 1.8, one_sided: false }]);
            cfg.kl = Some(KlPenalty { coef: 0.3, estimator: est });
            check_grad(&x.logp, |lp| {
                let b = PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask).with_ref(&x.ref_);
                policy_loss(&b, &cfg).0
            });
        }
    }
}
