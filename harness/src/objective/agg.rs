//! `loss_agg_mode`: how per-token losses `[B, T]` become one scalar (names as in verl).
//!
//! Every mode is linear in the per-token loss, so it is written as `Σ g ⊙ l` with constant
//! coefficients `g` ([`agg_coefficients`]); a sequence with no token left in the mask (all padding,
//! or rejected by a mismatch correction) takes no part in the sequence means. That makes every mode
//! invariant to padding (extra masked columns or rows), except that `seq-mean-token-sum-norm` with
//! no explicit `norm` divides by the padded length `T`: give it a fixed norm (the max response length)
//! in training.
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossAggMode {
    /// Σ over all tokens of the mini-batch / number of tokens (DAPO).
    #[default]
    TokenMean,
    /// Mean over sequences of each sequence's token mean (original GRPO).
    SeqMeanTokenMean,
    /// Mean over sequences of each sequence's token sum.
    SeqMeanTokenSum,
    /// Mean over sequences of the token sum / a fixed constant (Dr.GRPO).
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

/// A mode plus the constant of `seq-mean-token-sum-norm` (`None`: the batch's padded length `T`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossAgg {
    pub mode: LossAggMode,
    pub norm: Option<f64>,
}

impl LossAgg {
    pub fn new(mode: LossAggMode, norm: Option<f64>) -> Self {
        LossAgg { mode, norm }
    }

    /// `Σ g ⊙ loss_mat` over the mask (see [`agg_coefficients`]).
    pub fn apply(&self, loss_mat: &Tensor, mask: &Tensor) -> Tensor {
        agg_loss(loss_mat, mask, self.mode, self.norm)
    }
}

/// Constant coefficients `g [B, T]` with `loss = Σ g ⊙ l`; zero outside the mask.
pub fn agg_coefficients(mask: &Tensor, mode: LossAggMode, norm: Option<f64>) -> Tensor {
    let kind = mask.kind();
    let mask = mask.detach();
    let per_seq = mask.sum_dim_intlist(-1, true, kind);
    let n_seqs = per_seq.gt(0.0).to_kind(kind).sum(kind).clamp_min(1.0);
    match mode {
        LossAggMode::TokenMean => &mask / mask.sum(kind).clamp_min(1.0),
        LossAggMode::SeqMeanTokenMean => &mask / per_seq.clamp_min(1.0) / n_seqs,
        LossAggMode::SeqMeanTokenSum => &mask / n_seqs,
        LossAggMode::SeqMeanTokenSumNorm => {
            let t = *mask.size().last().expect("mask is [B, T]") as f64;
            &mask / n_seqs / norm.unwrap_or(t)
        }
    }
}

/// Aggregate a per-token loss `[B, T]` to a scalar. Entries outside the mask must be finite (the
/// objectives zero them first) since they are multiplied by 0.
pub fn agg_loss(loss_mat: &Tensor, mask: &Tensor, mode: LossAggMode, norm: Option<f64>) -> Tensor {
    (loss_mat * agg_coefficients(mask, mode, norm)).sum(loss_mat.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;
    use tch::Kind;

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
