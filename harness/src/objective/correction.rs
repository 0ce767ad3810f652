//! Train–inference mismatch corrections, composable with `grpo`, `ppo` and `dcmdp`, computed as
//! verl 0.9.1's `rollout_corr_helper` computes them (decoupled mode: `ρ_t = π_old/μ`, constant).
//!
//! - Weights (`tis`, `seq-tis`, `icepop`, and `seq-mis`'s weight) multiply the per-token policy
//!   loss. IcePop zeroes a token's weight but leaves it in the loss mask, so it still counts in
//!   the token-mean denominator.
//! - Rejections (`mis`, `seq-mis`, `geo-rs`) remove tokens or whole sequences from the loss mask,
//!   as verl's rejection sampling removes them from `response_mask`. They test verl's k1 statistic
//!   `log(μ/π_old) = −log ρ` (per token, summed over the sequence, or its sequence mean) against
//!   `[ln lower, ln upper]`; with one threshold `c` the bounds are `[1/c, c]`.
//!
//! A list applies every item: weights multiply, masks AND. Log-ratios are clamped to ±20 before
//! `exp` (verl's `SAFETY_BOUND`).
//!
//! ```yaml
//! corrections: [ { type: tis, c: 2.0 }, { type: geo-rs, lower: 0.999, upper: 1.001 } ]
//! ```
use super::{valid, zero_pad, ConfigProblem, LOG_RATIO_CLAMP};
use serde::{Deserialize, Serialize};
use tch::Tensor;

fn two() -> f64 {
    2.0
}
fn geo_upper() -> f64 {
    1.001
}
fn icepop_low() -> f64 {
    0.5
}
fn icepop_high() -> f64 {
    5.0
}
fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Correction {
    /// Truncated IS: weight `min(ρ_t, c)`; `c` = 2 (verl `rollout_is: token`).
    Tis {
        #[serde(default = "two")]
        c: f64,
    },
    /// Masked IS: drop tokens with `ρ_t ∉ [1/c, c]`; `c` = 2 (verl `rollout_rs: token_k1`).
    /// `one_sided: true` drops only `ρ_t > c` (the harness's earlier rule).
    Mis {
        #[serde(default = "two")]
        c: f64,
        #[serde(default)]
        one_sided: bool,
    },
    /// Sequence TIS: weight `min(ρ_seq, c)`, `ρ_seq = exp(Σ_t log ρ_t)`; `c` = 2
    /// (verl `rollout_is: sequence`).
    SeqTis {
        #[serde(default = "two")]
        c: f64,
    },
    /// Sequence MIS: drop the sequence when `ρ_seq ∉ [1/c, c]` and weight the kept ones by
    /// `min(ρ_seq, c)`; `c` = 2 (verl's `decoupled_seq_is_rs` preset: `rollout_is: sequence` +
    /// `rollout_rs: seq_sum_k1`). `weight: false` only rejects.
    SeqMis {
        #[serde(default = "two")]
        c: f64,
        #[serde(default = "yes")]
        weight: bool,
    },
    /// Geometric rejection: drop the sequence when the geometric mean of `μ/π_old`,
    /// `exp(−mean_t log ρ_t)`, lies outside `[lower, upper]`; `upper` = 1.001, `lower` = 1/upper
    /// when unset (verl `rollout_rs: seq_mean_k1`; its preset `"0.999_1.001"` is
    /// `{lower: 0.999, upper: 1.001}`).
    GeoRs {
        #[serde(default)]
        lower: Option<f64>,
        #[serde(default = "geo_upper")]
        upper: f64,
    },
    /// IcePop: weight `ρ_t` on tokens with `ρ_t ∈ [low, high]`, 0 elsewhere (kept in the mask);
    /// [0.5, 5] (verl `rollout_is: token` with threshold `"low_high"`).
    Icepop {
        #[serde(default = "icepop_low")]
        low: f64,
        #[serde(default = "icepop_high")]
        high: f64,
    },
}

/// How a correction weights tokens, for the loss and for `rollout_corr/rollout_is_*`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum IsWeight {
    /// `min(ρ_t, cap)`.
    Token { cap: f64 },
    /// `min(ρ_seq, cap)` on every token of the sequence.
    Sequence { cap: f64 },
    /// `ρ_t` on `[low, high]`, 0 elsewhere.
    TokenBand { low: f64, high: f64 },
}

/// Which k1 statistic a rejection tests, and its bounds (on `μ/π_old`; `lower` may be 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rejection {
    pub level: RejectLevel,
    pub lower: f64,
    pub upper: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectLevel {
    /// `log(μ/π_old)` per token (verl `token_k1`).
    Token,
    /// Its sum over the sequence (verl `seq_sum_k1`).
    SeqSum,
    /// Its mean over the sequence (verl `seq_mean_k1`).
    SeqMean,
}

impl RejectLevel {
    /// verl's option name (metric keys `rollout_corr/rollout_rs_<name>_*`).
    pub fn verl_name(self) -> &'static str {
        match self {
            RejectLevel::Token => "token_k1",
            RejectLevel::SeqSum => "seq_sum_k1",
            RejectLevel::SeqMean => "seq_mean_k1",
        }
    }
}

impl Correction {
    pub fn name(&self) -> &'static str {
        match self {
            Correction::Tis { .. } => "tis",
            Correction::Mis { .. } => "mis",
            Correction::SeqTis { .. } => "seq-tis",
            Correction::SeqMis { .. } => "seq-mis",
            Correction::GeoRs { .. } => "geo-rs",
            Correction::Icepop { .. } => "icepop",
        }
    }

    /// Every invalid value, with its key relative to this item.
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut positive = |key: &str, v: f64| {
            if !(v.is_finite() && v > 0.0) {
                out.push(ConfigProblem::new(
                    key,
                    format!("must be a positive number, got {v}"),
                ));
            }
        };
        match *self {
            Correction::Tis { c }
            | Correction::Mis { c, .. }
            | Correction::SeqTis { c }
            | Correction::SeqMis { c, .. } => positive("c", c),
            Correction::GeoRs { lower, upper } => {
                positive("upper", upper);
                if let Some(l) = lower {
                    positive("lower", l);
                }
            }
            Correction::Icepop { low, high } => {
                positive("low", low);
                positive("high", high);
            }
        }
        let ordered = match *self {
            Correction::GeoRs { lower, upper } => lower.is_none_or(|l| l <= upper),
            Correction::Icepop { low, high } => low <= high,
            _ => true,
        };
        if !ordered {
            let key = if matches!(self, Correction::GeoRs { .. }) {
                "lower"
            } else {
                "low"
            };
            out.push(ConfigProblem::new(
                key,
                "the lower bound exceeds the upper one".into(),
            ));
        }
        out
    }

    /// The IS weight this item applies, if any.
    pub fn is_weight(&self) -> Option<IsWeight> {
        match *self {
            Correction::Tis { c } => Some(IsWeight::Token { cap: c }),
            Correction::SeqTis { c } => Some(IsWeight::Sequence { cap: c }),
            Correction::SeqMis { c, weight: true } => Some(IsWeight::Sequence { cap: c }),
            Correction::Icepop { low, high } => Some(IsWeight::TokenBand { low, high }),
            _ => None,
        }
    }

    /// The rejection this item applies, if any.
    pub fn rejection(&self) -> Option<Rejection> {
        let (level, lower, upper) = match *self {
            Correction::Mis { c, one_sided } => {
                // ρ ≤ c ⇔ μ/π_old ≥ 1/c: one-sided keeps no upper bound on μ/π_old.
                let upper = if one_sided { f64::INFINITY } else { c };
                (RejectLevel::Token, 1.0 / c, upper)
            }
            Correction::SeqMis { c, .. } => (RejectLevel::SeqSum, 1.0 / c, c),
            Correction::GeoRs { lower, upper } => {
                (RejectLevel::SeqMean, lower.unwrap_or(1.0 / upper), upper)
            }
            _ => return None,
        };
        Some(Rejection {
            level,
            lower,
            upper,
        })
    }
}

/// `log ρ = log π_old − log μ` on response tokens, 0 on padding.
pub fn log_rho(old_logp: &Tensor, rollout_logp: &Tensor, mask: &Tensor) -> Tensor {
    zero_pad(&(old_logp.detach() - rollout_logp.detach()), &valid(mask))
}

/// Per-sequence sum over the mask, `[B, 1]`.
pub(crate) fn seq_sum(x: &Tensor, mask: &Tensor) -> Tensor {
    (x * mask).sum_dim_intlist(-1, true, x.kind())
}

/// Per-sequence mean over the mask, `[B, 1]` (0 for an empty row).
pub(crate) fn seq_mean(x: &Tensor, mask: &Tensor) -> Tensor {
    seq_sum(x, mask) / mask.sum_dim_intlist(-1, true, mask.kind()).clamp_min(1.0)
}

impl IsWeight {
    /// The weights `[B, T]` (0 on padding) before `cap`/band processing, and after.
    pub fn weights(&self, log_rho: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
        let raw = match self {
            IsWeight::Sequence { .. } => seq_sum(log_rho, mask)
                .clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
                .exp()
                .expand_as(log_rho),
            _ => log_rho.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp(),
        } * mask;
        let applied = match *self {
            IsWeight::Token { cap } | IsWeight::Sequence { cap } => raw.clamp_max(cap),
            IsWeight::TokenBand { low, high } => {
                let inside = raw.ge(low).logical_and(&raw.le(high));
                raw.where_self(&inside, &raw.zeros_like())
            }
        };
        (raw, applied)
    }
}

impl Rejection {
    /// The per-token statistic `[B, T]` (sequence levels broadcast) and the keep mask (bool).
    pub fn statistic(&self, log_rho: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
        let k1 = -log_rho.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
        let stat = match self.level {
            RejectLevel::Token => k1,
            RejectLevel::SeqSum => seq_sum(&k1, mask).expand_as(log_rho),
            RejectLevel::SeqMean => seq_mean(&k1, mask).expand_as(log_rho),
        };
        let keep = stat
            .ge(self.lower.ln())
            .logical_and(&stat.le(self.upper.ln()));
        (stat, keep)
    }
}

/// What the corrections make of a batch.
pub struct Corrected {
    /// Per-token IS weights `[B, T]` (constant), `None` when no item weights.
    pub weights: Option<Tensor>,
    /// The loss mask: the response mask minus rejected tokens and sequences.
    pub kept: Tensor,
}

/// Apply `list` to a batch (no gradient).
pub fn apply_corrections(
    old_logp: &Tensor,
    rollout_logp: &Tensor,
    mask: &Tensor,
    list: &[Correction],
) -> Corrected {
    let mask = mask.detach();
    if list.is_empty() {
        return Corrected {
            weights: None,
            kept: mask,
        };
    }
    let lr = log_rho(old_logp, rollout_logp, &mask);
    let mut weights: Option<Tensor> = None;
    let mut keep = mask.ones_like();
    for item in list {
        if let Some(w) = item.is_weight() {
            let (_, applied) = w.weights(&lr, &mask);
            weights = Some(match weights.take() {
                Some(acc) => acc * applied,
                None => applied,
            });
        }
        if let Some(r) = item.rejection() {
            let (_, ok) = r.statistic(&lr, &mask);
            keep *= ok.to_kind(mask.kind());
        }
    }
    Corrected {
        weights,
        kept: &mask * keep,
    }
}

/// The loss mask of a batch under `list` (the rejections only), e.g. for [`super::AggTotals`].
pub fn kept_mask(
    old_logp: &Tensor,
    rollout_logp: &Tensor,
    mask: &Tensor,
    list: &[Correction],
) -> Tensor {
    let rejecting: Vec<Correction> = list
        .iter()
        .filter(|c| c.rejection().is_some())
        .copied()
        .collect();
    apply_corrections(old_logp, rollout_logp, mask, &rejecting).kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    fn rho_batch(rho: &[f64], lens: &[usize], t: usize) -> (Tensor, Tensor, Tensor) {
        let b = lens.len() as i64;
        let old = t2(&vec![0.5f64.ln(); rho.len()], b, t as i64);
        let mu = t2(
            &rho.iter().map(|r| (0.5 / r).ln()).collect::<Vec<_>>(),
            b,
            t as i64,
        );
        (old, mu, right_padded(lens, t))
    }

    #[test]
    fn token_level_by_hand() {
        let (old, mu, mask) = rho_batch(&[1.0, 2.5, 0.4, 6.0, 1.5, 9.0], &[3, 2], 3);
        let c = apply_corrections(&old, &mu, &mask, &[Correction::Tis { c: 2.0 }]);
        let w = to_vec(c.weights.as_ref().unwrap());
        for (got, want) in w.iter().zip([1.0, 2.0, 0.4, 2.0, 1.5, 0.0]) {
            assert_close(*got, want, 1e-12);
        }
        assert_eq!(to_vec(&c.kept), to_vec(&mask));
        // Two-sided: 2.5, 0.4 and 6 leave; one-sided: only 2.5 and 6.
        let mis = |one_sided| {
            let list = [Correction::Mis { c: 2.0, one_sided }];
            to_vec(&apply_corrections(&old, &mu, &mask, &list).kept)
        };
        assert_eq!(mis(false), [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(mis(true), [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        // IcePop: weight ρ inside [0.5, 5], 0 outside; the mask is untouched.
        let ice = Correction::Icepop {
            low: 0.5,
            high: 5.0,
        };
        let c = apply_corrections(&old, &mu, &mask, &[ice]);
        assert_eq!(to_vec(&c.kept), to_vec(&mask));
        let w = to_vec(c.weights.as_ref().unwrap());
        for (got, want) in w.iter().zip([1.0, 2.5, 0.0, 0.0, 1.5, 0.0]) {
            assert_close(*got, want, 1e-12);
        }
    }

    #[test]
    fn sequence_level_by_hand() {
        // ρ_seq: 1·2.5·0.4 = 1.0 and 6·1.5 = 9; geometric means 1.0 and 3.
        let (old, mu, mask) = rho_batch(&[1.0, 2.5, 0.4, 6.0, 1.5, 9.0], &[3, 2], 3);
        let c = apply_corrections(&old, &mu, &mask, &[Correction::SeqTis { c: 2.0 }]);
        let w = to_vec(c.weights.as_ref().unwrap());
        assert_close(w[0], 1.0, 1e-12);
        assert_close(w[4], 2.0, 1e-12);
        let seq_mis = Correction::SeqMis {
            c: 2.0,
            weight: true,
        };
        let c = apply_corrections(&old, &mu, &mask, &[seq_mis]);
        assert_eq!(to_vec(&c.kept), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        assert_close(to_vec(c.weights.as_ref().unwrap())[0], 1.0, 1e-12);
        // The geometric mean of μ/π_old is 1/3 for row 1: [1/2, 2] rejects it.
        let geo = Correction::GeoRs {
            lower: None,
            upper: 2.0,
        };
        let c = apply_corrections(&old, &mu, &mask, &[geo]);
        assert_eq!(to_vec(&c.kept), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        // Asymmetric bounds apply to μ/π_old: [0.3, 1.5] keeps 1/3 and 1, [0.5, 4] only 1.
        let geo = |lower: f64, upper: f64| {
            let list = [Correction::GeoRs {
                lower: Some(lower),
                upper,
            }];
            to_vec(&apply_corrections(&old, &mu, &mask, &list).kept)
        };
        assert_eq!(geo(0.3, 1.5), to_vec(&mask));
        assert_eq!(geo(0.5, 4.0), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn defaults() {
        let c: Vec<Correction> = serde_json::from_value(serde_json::json!([
            {"type": "tis"}, {"type": "mis"}, {"type": "seq-tis"}, {"type": "seq-mis"},
            {"type": "geo-rs"}, {"type": "icepop"}
        ]))
        .unwrap();
        assert_eq!(
            c,
            [
                Correction::Tis { c: 2.0 },
                Correction::Mis {
                    c: 2.0,
                    one_sided: false
                },
                Correction::SeqTis { c: 2.0 },
                Correction::SeqMis {
                    c: 2.0,
                    weight: true
                },
                Correction::GeoRs {
                    lower: None,
                    upper: 1.001
                },
                Correction::Icepop {
                    low: 0.5,
                    high: 5.0
                },
            ]
        );
        for x in &c {
            assert!(x.check().is_empty());
        }
    }

    #[test]
    fn check_names_the_key() {
        let bad = Correction::Icepop {
            low: 5.0,
            high: -1.0,
        };
        let keys: Vec<String> = bad.check().iter().map(|p| p.key()).collect();
        assert_eq!(keys, ["high", "low"]);
        let bad = Correction::GeoRs {
            lower: Some(0.0),
            upper: 1.1,
        };
        assert_eq!(bad.check()[0].key(), "lower");
    }

    #[test]
    fn garbage_in_padding_is_ignored_and_f32_is_kept() {
        let old = Tensor::from_slice(&[0.0f32, f32::NAN]).view([1, 2]);
        let mu = Tensor::from_slice(&[-0.1f32, f32::INFINITY]).view([1, 2]);
        let mask = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
        let list = [
            Correction::Tis { c: 2.0 },
            Correction::SeqMis {
                c: 2.0,
                weight: true,
            },
        ];
        let c = apply_corrections(&old, &mu, &mask, &list);
        let w = c.weights.unwrap();
        assert_eq!(w.kind(), tch::Kind::Float);
        assert!(w.isfinite().all().int64_value(&[]) == 1);
        assert_eq!(to_vec(&c.kept), [1.0, 0.0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// With ρ ≡ 1 every correction is the identity (weights 1, nothing dropped).
        #[test]
        fn identity_when_no_mismatch(case in policy_case(4, 6, 0.5)) {
            let x = case.on_policy().tensors();
            let all = [
                Correction::Tis { c: 2.0 }, Correction::Mis { c: 2.0, one_sided: false },
                Correction::SeqTis { c: 2.0 }, Correction::SeqMis { c: 2.0, weight: true },
                Correction::GeoRs { lower: None, upper: 1.001 },
                Correction::Icepop { low: 0.5, high: 5.0 },
            ];
            let c = apply_corrections(&x.old, &x.mu, &x.mask, &all);
            prop_assert_eq!(to_vec(&c.kept), to_vec(&x.mask));
            let w = to_vec(c.weights.as_ref().unwrap());
            for (w, m) in w.iter().zip(to_vec(&x.mask)) {
                prop_assert_eq!(*w, m);
            }
        }

        /// Token rejection drops exactly the tokens outside [1/c, c]; IcePop zeroes exactly the
        /// weights outside [low, high].
        #[test]
        fn token_rules_are_exact(case in policy_case(4, 6, 2.0)) {
            let x = case.tensors();
            let ice = apply_corrections(&x.old, &x.mu, &x.mask, &[Correction::Icepop { low: 0.5, high: 5.0 }]);
            let mis = apply_corrections(&x.old, &x.mu, &x.mask, &[Correction::Mis { c: 2.0, one_sided: false }]);
            let m = to_vec(&x.mask);
            let w = to_vec(ice.weights.as_ref().unwrap());
            for (i, (km, mm)) in to_vec(&mis.kept).iter().zip(&m).enumerate() {
                let rho = case.old_p[i] / case.mu_p[i];
                let inside = *mm > 0.0 && (0.5..=5.0).contains(&rho);
                let want = if inside { rho } else { 0.0 };
                prop_assert!((w[i] - want).abs() < 1e-9, "token {}", i);
                prop_assert_eq!(*km, if *mm > 0.0 && (0.5..=2.0).contains(&rho) { 1.0 } else { 0.0 });
            }
        }
    }
}
