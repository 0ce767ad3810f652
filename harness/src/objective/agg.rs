//! `loss_agg_mode`: how per-token losses `[B, T]` become one scalar (names and denominators as in
//! verl 0.9.1's `agg_loss`; see `docs/algorithms.md`).
//!
//! Every mode is linear in the per-token loss, so it is written as `Σ g ⊙ l` with constant
//! coefficients `g` ([`agg_coefficients`]). The denominators are mini-batch totals ([`AggTotals`]):
//! the tokens left after rejections (verl's `batch_num_tokens`) and the sequences that have a
//! response token (verl's `global_batch_size`; a sequence rejected by a correction still counts).
//! A batch that is one micro-batch of a larger mini-batch is given the mini-batch's totals, so the
//! micro-batch losses add up to the mini-batch loss.
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossAggMode {
    /// Σ over the mini-batch's tokens / its token count (DAPO).
    #[default]
    TokenMean,
    /// Σ over sequences of each sequence's token mean / the sequence count (original GRPO).
    SeqMeanTokenMean,
    /// Σ over sequences of each sequence's token sum / the sequence count.
    SeqMeanTokenSum,
    /// As `seq-mean-token-sum`, divided by a constant horizon (Dr.GRPO).
    SeqMeanTokenSumNorm,
}

impl LossAggMode {
    pub const ALL: [LossAggMode; 4] = [
        LossAggMode::TokenMean,
        LossAggMode::SeqMeanTokenMean,
        LossAggMode::SeqMeanTokenSum,
        LossAggMode::SeqMeanTokenSumNorm,
    ];
}

/// A mode plus the constant of `seq-mean-token-sum-norm` (`None`: the mini-batch's padded length
/// `T`, [`AggTotals::horizon`], as verl's `loss_scale_factor: null`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossAgg {
    pub mode: LossAggMode,
    pub norm: Option<f64>,
}

/// Mini-batch-wide denominators of the aggregation (and of the mean-type metrics).
///
/// - `tokens`: response tokens that enter the loss, i.e. the response mask minus the tokens and
///   sequences a correction rejects (MIS, Seq-MIS, Geo-RS). IcePop's zero-weighted tokens stay in.
/// - `seqs`: sequences with at least one response token, before any rejection.
/// - `horizon`: the padded response length `T` of the mini-batch.
///
/// Take them once per mini-batch with [`Algorithm::agg_totals`](super::Algorithm::agg_totals)
/// (it applies the algorithm's rejections) and hand them to every micro-batch with
/// [`PolicyBatch::with_agg_totals`](super::PolicyBatch::with_agg_totals).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AggTotals {
    pub tokens: f64,
    pub seqs: f64,
    pub horizon: f64,
}

impl AggTotals {
    /// Totals of a batch whose loss mask is `kept` (the response mask after rejections) and whose
    /// response mask is `mask`.
    pub fn of(mask: &Tensor, kept: &Tensor) -> AggTotals {
        let horizon = *mask.size().last().expect("mask is [B, T]") as f64;
        let seqs = mask
            .detach()
            .gt(0.0)
            .any_dim(-1, false)
            .to_kind(Kind::Double)
            .sum(Kind::Double);
        AggTotals {
            tokens: kept
                .detach()
                .to_kind(Kind::Double)
                .sum(Kind::Double)
                .double_value(&[]),
            seqs: seqs.double_value(&[]),
            horizon,
        }
    }

    /// Totals of a batch without rejections.
    pub fn from_mask(mask: &Tensor) -> AggTotals {
        AggTotals::of(mask, mask)
    }

    /// `x / tokens`, 0 when there are none: a mean-type metric whose micro-batch parts add up.
    pub fn per_token(&self, x: f64) -> f64 {
        if self.tokens > 0.0 {
            x / self.tokens
        } else {
            0.0
        }
    }
}

impl LossAgg {
    pub fn new(mode: LossAggMode, norm: Option<f64>) -> Self {
        LossAgg { mode, norm }
    }

    /// `Σ g ⊙ loss_mat` (see [`agg_coefficients`]).
    pub fn apply(&self, loss_mat: &Tensor, kept: &Tensor, totals: &AggTotals) -> Tensor {
        (loss_mat * agg_coefficients(kept, self, totals)).sum(loss_mat.kind())
    }
}

/// Constant coefficients `g [B, T]` with `loss = Σ g ⊙ l`, zero outside `kept` (the loss mask).
pub fn agg_coefficients(kept: &Tensor, agg: &LossAgg, totals: &AggTotals) -> Tensor {
    let kind = kept.kind();
    let kept = kept.detach();
    let seqs = totals.seqs.max(1.0);
    match agg.mode {
        LossAggMode::TokenMean => &kept / totals.tokens.max(1.0),
        LossAggMode::SeqMeanTokenMean => {
            let per_seq = kept.sum_dim_intlist(-1, true, kind).clamp_min(1.0);
            &kept / per_seq / seqs
        }
        LossAggMode::SeqMeanTokenSum => &kept / seqs,
        LossAggMode::SeqMeanTokenSumNorm => &kept / seqs / agg.norm.unwrap_or(totals.horizon),
    }
}

/// Aggregate a per-token loss `[B, T]` with the batch's own totals (no rejection). Entries outside
/// the mask must be finite (the objectives zero them first) since they are multiplied by 0.
pub fn agg_loss(loss_mat: &Tensor, mask: &Tensor, mode: LossAggMode, norm: Option<f64>) -> Tensor {
    LossAgg::new(mode, norm).apply(loss_mat, mask, &AggTotals::from_mask(mask))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    #[test]
    fn modes_by_hand() {
        // Rows: 2 tokens, 1 token, none.
        let l = t2(&[1.0, 3.0, 0.0, 5.0, 7.0, 0.0, 9.0, 9.0, 9.0], 3, 3);
        let m = t2(&[1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], 3, 3);
        let v = |mode, norm| agg_loss(&l, &m, mode, norm).double_value(&[]);
        assert_close(v(LossAggMode::TokenMean, None), 9.0 / 3.0, 1e-12);
        assert_close(
            v(LossAggMode::SeqMeanTokenMean, None),
            (2.0 + 5.0) / 2.0,
            1e-12,
        );
        assert_close(
            v(LossAggMode::SeqMeanTokenSum, None),
            (4.0 + 5.0) / 2.0,
            1e-12,
        );
        assert_close(
            v(LossAggMode::SeqMeanTokenSumNorm, None),
            9.0 / 2.0 / 3.0,
            1e-12,
        );
        assert_close(v(LossAggMode::SeqMeanTokenSumNorm, Some(10.0)), 0.45, 1e-12);
    }

    #[test]
    fn rejected_sequences_stay_in_the_sequence_count() {
        // Row 1 rejected: token-mean divides by the tokens left, the seq-means by both rows (verl).
        let l = t2(&[1.0, 3.0, 5.0, 7.0], 2, 2);
        let mask = t2(&[1.0, 1.0, 1.0, 1.0], 2, 2);
        let kept = t2(&[1.0, 1.0, 0.0, 0.0], 2, 2);
        let tot = AggTotals::of(&mask, &kept);
        assert_eq!((tot.tokens, tot.seqs, tot.horizon), (2.0, 2.0, 2.0));
        let v = |mode| {
            LossAgg::new(mode, None)
                .apply(&l, &kept, &tot)
                .double_value(&[])
        };
        assert_close(v(LossAggMode::TokenMean), 2.0, 1e-12);
        assert_close(v(LossAggMode::SeqMeanTokenMean), 1.0, 1e-12);
        assert_close(v(LossAggMode::SeqMeanTokenSum), 2.0, 1e-12);
        assert_close(v(LossAggMode::SeqMeanTokenSumNorm), 1.0, 1e-12);
    }

    #[test]
    fn empty_mask_gives_zero_not_nan() {
        let l = t2(&[1.0, 2.0], 1, 2);
        let m = t2(&[0.0, 0.0], 1, 2);
        for mode in LossAggMode::ALL {
            assert_eq!(agg_loss(&l, &m, mode, None).double_value(&[]), 0.0);
        }
    }

    #[test]
    fn keeps_float_kind() {
        let l = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2]);
        let m = Tensor::from_slice(&[1.0f32, 1.0]).view([1, 2]);
        for mode in LossAggMode::ALL {
            assert_eq!(agg_loss(&l, &m, mode, None).kind(), Kind::Float);
        }
    }

    #[test]
    fn names_parse() {
        for (s, m) in [
            ("token-mean", LossAggMode::TokenMean),
            ("seq-mean-token-mean", LossAggMode::SeqMeanTokenMean),
            ("seq-mean-token-sum", LossAggMode::SeqMeanTokenSum),
            ("seq-mean-token-sum-norm", LossAggMode::SeqMeanTokenSumNorm),
        ] {
            let got: LossAggMode = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(got, m);
        }
        assert!(serde_json::from_value::<LossAggMode>(serde_json::json!("seq-mean")).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Padding columns and all-padding rows, whatever they hold, change neither the loss nor the
        /// gradient on real tokens (fixed norm for `seq-mean-token-sum-norm`).
        #[test]
        fn invariant_to_padding(b in ragged_batch(4, 6), pad_t in 1i64..4, pad_rows in 0i64..3,
                                garbage in -50.0f64..50.0) {
            for mode in LossAggMode::ALL {
                let (loss, grad) = value_and_grad(&b.x, |x| agg_loss(x, &b.mask, mode, Some(6.0)));
                let (xp, mp) = pad(&b.x, &b.mask, pad_t, pad_rows, garbage);
                let (loss_p, grad_p) = value_and_grad(&xp, |x| agg_loss(x, &mp, mode, Some(6.0)));
                prop_assert!((loss - loss_p).abs() <= 1e-12 * (1.0 + loss.abs()), "{mode:?}");
                let (bb, tt) = b.x.size2().unwrap();
                let inner = grad_p.narrow(0, 0, bb).narrow(1, 0, tt);
                prop_assert!(max_abs_diff(&inner, &grad) <= 1e-14, "{mode:?}");
                let on_padding = to_vec(&grad_p.masked_select(&mp.eq(0.0)));
                prop_assert!(on_padding.iter().all(|g| *g == 0.0));
            }
        }

        /// Split the rows into two micro-batches that carry the whole batch's totals: the two
        /// losses add up to the whole batch's loss under every mode.
        #[test]
        fn micro_batches_add_up(b in ragged_batch(5, 6), cut in 0i64..6) {
            let (rows, _) = b.x.size2().unwrap();
            let cut = cut.min(rows);
            for mode in LossAggMode::ALL {
                let agg = LossAgg::new(mode, None);
                let tot = AggTotals::from_mask(&b.mask);
                let whole = agg.apply(&b.x, &b.mask, &tot).double_value(&[]);
                let part = |s: i64, n: i64| agg
                    .apply(&b.x.narrow(0, s, n), &b.mask.narrow(0, s, n), &tot)
                    .double_value(&[]);
                let split = part(0, cut) + part(cut, rows - cut);
                prop_assert!((whole - split).abs() <= 1e-12 * (1.0 + whole.abs()), "{mode:?}");
            }
        }

        /// A constant loss aggregates to that constant under every mode that averages.
        #[test]
        fn constant_is_preserved(b in ragged_batch(4, 6), c in -5.0f64..5.0) {
            prop_assume!(b.mask.sum(Kind::Double).double_value(&[]) > 0.0);
            let l = b.x.full_like(c);
            for mode in [LossAggMode::TokenMean, LossAggMode::SeqMeanTokenMean] {
                let v = agg_loss(&l, &b.mask, mode, None).double_value(&[]);
                prop_assert!((v - c).abs() < 1e-12);
            }
        }
    }
}
