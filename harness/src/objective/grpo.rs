//! PPO-clip policy loss (used by `grpo`, `ppo` and `dcmdp`) and the `grpo` algorithm.
//!
//! Per token, with `r_t = π_θ/π_old`:
//! `l_t = max(−Â_t·r_t, −Â_t·clip(r_t, 1−ε_low, 1+ε_high))`, and for `Â_t < 0` the dual clip
//! `l_t = min(l_t, −c·Â_t)`. Mismatch corrections weight or drop tokens, an optional KL penalty to a
//! reference policy is added, everything aggregated by `loss_agg_mode`.
use super::agg::{LossAgg, LossAggMode};
use super::correction::{apply_corrections, Correction};
use super::kl::{kl_loss, KlPenalty};
use super::{
    check, masked_mean, scalar, valid, zero_pad, AdvantageInput, Advantages, Algorithm, Metrics,
    PolicyBatch, LOG_RATIO_CLAMP,
};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Clip ranges. Defaults ε_low = ε_high = 0.2 (DAPO's clip-higher uses ε_high = 0.28), dual clip
/// `c` = 3 (verl's default; `None` turns it off).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipParams {
    pub low: f64,
    pub high: f64,
    pub dual: Option<f64>,
}

impl Default for ClipParams {
    fn default() -> Self {
        ClipParams {
            low: 0.2,
            high: 0.2,
            dual: Some(3.0),
        }
    }
}

/// Everything the clipped policy loss needs, shared by `grpo`, `ppo` and `dcmdp`.
#[derive(Clone, Debug, PartialEq)]
pub struct PgConfig {
    pub clip: ClipParams,
    pub agg: LossAgg,
    pub kl: Option<KlPenalty>,
    pub corrections: Vec<Correction>,
}

impl PgConfig {
    pub fn validate(&self) -> Result<(), String> {
        let ClipParams { low, high, dual } = self.clip;
        check((0.0..1.0).contains(&low), || {
            format!("`clip_ratio_low` must be in [0, 1), got {low}")
        })?;
        check(high.is_finite() && high >= 0.0, || {
            format!("`clip_ratio_high` must be >= 0, got {high}")
        })?;
        if let Some(c) = dual {
            check(c.is_finite() && c > 1.0, || {
                format!("`clip_ratio_c` (dual clip) must be > 1 or null, got {c}")
            })?;
        }
        validate_norm(self.agg.norm)?;
        if let Some(kl) = &self.kl {
            kl.validate("kl")?;
        }
        self.corrections.iter().try_for_each(Correction::validate)
    }
}

pub(crate) fn validate_norm(norm: Option<f64>) -> Result<(), String> {
    match norm {
        Some(n) => check(n.is_finite() && n > 0.0, || {
            format!("`loss_agg_norm` must be positive, got {n}")
        }),
        None => Ok(()),
    }
}

/// `algorithm: { name: grpo, … }`. Defaults: group-normalised advantages, ε 0.2/0.2, dual clip 3,
/// `token-mean`, no KL, no corrections. Dr.GRPO: `norm_adv_by_std: false` with
/// `loss_agg_mode: seq-mean-token-sum-norm` and `loss_agg_norm` = the max response length.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// Divide by the group's std (GRPO); `false` is Dr.GRPO.
    pub norm_adv_by_std: bool,
    pub clip_ratio_low: f64,
    pub clip_ratio_high: f64,
    /// Dual-clip constant for negative advantages; `null` disables it.
    pub clip_ratio_c: Option<f64>,
    pub loss_agg_mode: LossAggMode,
    /// Constant of `seq-mean-token-sum-norm`; unset: the batch's padded length.
    pub loss_agg_norm: Option<f64>,
    /// KL penalty to the reference policy in the loss.
    pub kl: Option<KlPenalty>,
    pub corrections: Vec<Correction>,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        let clip = ClipParams::default();
        GrpoConfig {
            norm_adv_by_std: true,
            clip_ratio_low: clip.low,
            clip_ratio_high: clip.high,
            clip_ratio_c: clip.dual,
            loss_agg_mode: LossAggMode::TokenMean,
            loss_agg_norm: None,
            kl: None,
            corrections: Vec::new(),
        }
    }
}

impl GrpoConfig {
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
}

/// The clipped surrogate. `mask` is the aggregation mask (response mask minus rejected tokens),
/// `is_weights` optional constant per-token weights. Gradient flows through `logp` only.
///
/// Metrics: `actor/pg_loss`, `actor/pg_clipfrac` (share of tokens where the clipped branch is the
/// larger), `actor/pg_clipfrac_lower` (dual clip active), `actor/ppo_kl` (mean of −log r).
pub fn ppo_clip_loss(
    logp: &Tensor,
    old_logp: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    is_weights: Option<&Tensor>,
    clip: &ClipParams,
    agg: LossAgg,
) -> (Tensor, Metrics) {
    let v = valid(mask);
    let logp = zero_pad(logp, &v);
    let old = zero_pad(&old_logp.detach(), &v);
    let adv = zero_pad(&advantages.detach(), &v);
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
    let per_token = match is_weights {
        Some(w) => per_token * zero_pad(&w.detach(), &v),
        None => per_token,
    };
    let loss = agg.apply(&per_token, mask);
    let mut m = Metrics::new();
    m.insert("actor/pg_loss".into(), scalar(&loss));
    m.insert(
        "actor/pg_clipfrac".into(),
        masked_mean(&l2.gt_tensor(&l1), mask),
    );
    m.insert(
        "actor/pg_clipfrac_lower".into(),
        dual_active.map_or(0.0, |a| masked_mean(&a, mask)),
    );
    m.insert("actor/ppo_kl".into(), masked_mean(&(-log_ratio), mask));
    (loss, m)
}

/// The full policy loss of `grpo`/`ppo`/`dcmdp` for given advantages: corrections → clipped
/// surrogate → `+ β·KL` (aggregated over the same tokens). Metrics of all three, plus
/// `actor/kl_loss` and `actor/kl_coef` when the KL penalty is on.
pub fn policy_loss(batch: &PolicyBatch, advantages: &Tensor, cfg: &PgConfig) -> (Tensor, Metrics) {
    let corrected = apply_corrections(
        batch.old_logp,
        batch.rollout_logp,
        batch.mask,
        &cfg.corrections,
    );
    let (pg, mut m) = ppo_clip_loss(
        batch.logp,
        batch.old_logp,
        advantages,
        &corrected.mask,
        corrected.weights.as_ref(),
        &cfg.clip,
        cfg.agg,
    );
    m.extend(corrected.metrics);
    let Some(kl) = &cfg.kl else {
        return (pg, m);
    };
    let ref_logp = batch
        .ref_logp
        .expect("a KL penalty needs PolicyBatch::ref_logp (see Algorithm::needs_ref_policy)");
    let k = kl_loss(batch.logp, ref_logp, &corrected.mask, kl.estimator, cfg.agg);
    m.insert("actor/kl_loss".into(), scalar(&k));
    m.insert("actor/kl_coef".into(), kl.coef);
    (pg + k * kl.coef, m)
}

/// `grpo`: group-normalised (or Dr.GRPO) advantages and the clipped loss.
pub struct Grpo {
    cfg: GrpoConfig,
    pg: PgConfig,
}

impl Grpo {
    pub fn new(cfg: GrpoConfig) -> Self {
        let pg = cfg.pg();
        Grpo { cfg, pg }
    }
}

impl Algorithm for Grpo {
    fn name(&self) -> &'static str {
        "grpo"
    }

    fn advantages(&mut self, input: &AdvantageInput) -> Advantages {
        Advantages::grouped(input, self.cfg.norm_adv_by_std)
    }

    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics) {
        policy_loss(batch, batch.advantages, &self.pg)
    }

    fn needs_ref_policy(&self) -> bool {
        self.pg.kl.is_some()
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

    fn agg_strategy() -> impl Strategy<Value = LossAgg> {
        (0usize..4, prop::option::of(2.0f64..10.0))
            .prop_map(|(i, norm)| LossAgg::new(LossAggMode::ALL[i], norm))
    }

    #[test]
    fn one_token_by_hand() {
        let mask = t2(&[1.0], 1, 1);
        let old = t2(&[0.5f64.ln()], 1, 1);
        let agg = LossAgg::new(LossAggMode::TokenMean, None);
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
            let (loss, grad) = value_and_grad(&logp, |x| {
                ppo_clip_loss(x, &old, &adv, &mask, None, &clip, agg).0
            });
            assert_close(loss, l, 1e-12);
            assert_close(grad.double_value(&[0, 0]), g, 1e-12);
        }
    }

    #[test]
    fn f32_in_f32_out() {
        let x = Tensor::from_slice(&[-0.5f32, -1.0]).view([1, 2]);
        let mask = Tensor::from_slice(&[1.0f32, 1.0]).view([1, 2]);
        let (l, _) = ppo_clip_loss(
            &x,
            &(&x - 0.1),
            &mask,
            &mask,
            None,
            &ClipParams::default(),
            LossAgg::new(LossAggMode::TokenMean, None),
        );
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
                vec![Correction::SeqTis { c: 2.0 }, Correction::SeqMis { c: 2.0 }, Correction::Mis { c: 2.0 }],
                vec![Correction::GeoRs { lower: None, upper: 1.001 }],
            ][k].clone();
            let cfg = PgConfig { clip, agg, kl: None, corrections };
            let batch = PolicyBatch::new(&x.logp, &x.old, &x.mu, &x.adv, &x.mask);
            let (loss, _) = policy_loss(&batch, &x.adv, &cfg);
            let want = -agg.apply(&x.adv, &x.mask).double_value(&[]);
            prop_assert!((loss.double_value(&[]) - want).abs() < 1e-12);
        }

        /// Tokens whose clipped (or dual-clipped) branch is strictly active get exactly zero gradient;
        /// every other response token with Â ≠ 0 gets a non-zero one.
        #[test]
        fn clipped_tokens_get_zero_gradient(case in policy_case(4, 6, 0.8), clip in clip_strategy()) {
            let x = case.tensors();
            let agg = LossAgg::new(LossAggMode::TokenMean, None);
            let (_, grad) = value_and_grad(&x.logp, |lp| {
                ppo_clip_loss(lp, &x.old, &x.adv, &x.mask, None, &clip, agg).0
            });
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
            let plain = PgConfig { clip, agg, kl: None, corrections: vec![] };
            let tis = PgConfig { corrections: vec![Correction::Tis { c: 2.0 }], ..plain.clone() };
            let run = |cfg: &PgConfig| value_and_grad(&x.logp, |lp| {
                policy_loss(&PolicyBatch::new(lp, &x.old, &x.old, &x.adv, &x.mask), &x.adv, cfg).0
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
            let cfg = PgConfig {
                clip, agg,
                kl: Some(KlPenalty { coef: 0.3, estimator: est }),
                corrections: vec![Correction::Tis { c: 1.5 }, Correction::Icepop { low: 0.7, high: 1.6 }],
            };
            check_grad(&x.logp, |lp| {
                let b = PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask).with_ref(&x.ref_);
                policy_loss(&b, &x.adv, &cfg).0
            });
        }
    }
}
