//! Group-relative advantages: GRPO `A_i = (R_i − mean_j R_j) / (std_j R_j + 1e-6)` over the `G`
//! responses to one prompt (unbiased std, as `torch.std`), Dr.GRPO without the division. Every
//! token of response `i` gets `A_i`.
use tch::Tensor;

/// Added to the group std (algorithms.md).
pub const STD_EPS: f64 = 1e-6;

/// Rewards `[B]` (groups of `group_size` consecutive rows) → advantages `[B, T]`, zero on padding,
/// in the mask's kind. A group of one has no baseline: mean 0 and std 1 (verl's choice).
pub fn group_advantages(
    rewards: &Tensor,
    mask: &Tensor,
    group_size: i64,
    norm_by_std: bool,
) -> Tensor {
    let b = rewards.numel() as i64;
    assert!(
        group_size > 0 && b % group_size == 0,
        "{b} rewards do not split into groups of {group_size}"
    );
    let r = rewards
        .detach()
        .to_kind(mask.kind())
        .view([b / group_size, group_size]);
    let a = if group_size == 1 {
        if norm_by_std {
            r / (1.0 + STD_EPS)
        } else {
            r
        }
    } else {
        let centred = &r - r.mean_dim(1, true, r.kind());
        if norm_by_std {
            centred / (r.std_dim(1, true, true) + STD_EPS)
        } else {
            centred
        }
    };
    a.view([b, 1]) * mask.detach()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;
    use tch::Kind;

    #[test]
    fn by_hand() {
        let r = Tensor::from_slice(&[1.0f64, 0.0, 0.5, 0.5]);
        let mask = right_padded(&[2, 1, 2, 0], 2);
        let a = to_vec(&group_advantages(&r, &mask, 2, true));
        let s = 0.5 / (0.5f64.sqrt() + STD_EPS);
        let want = [s, s, -s, 0.0, 0.0, 0.0, 0.0, 0.0];
        for (g, w) in a.iter().zip(want) {
            assert_close(*g, w, 1e-12);
        }
        let a = to_vec(&group_advantages(&r, &mask, 4, false));
        for (g, w) in a.iter().zip([0.5, 0.5, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0]) {
            assert_close(*g, w, 1e-12);
        }
    }

    #[test]
    fn follows_mask_kind() {
        let r = Tensor::from_slice(&[1.0f64, 0.0]);
        let mask = Tensor::ones([2, 3], (Kind::Float, tch::Device::Cpu));
        assert_eq!(group_advantages(&r, &mask, 2, true).kind(), Kind::Float);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Each group's advantages sum to zero; with std normalisation a group with spread has
        /// unit sample std (up to the 1e-6); shifting every reward changes nothing.
        #[test]
        fn centred_and_scaled(rs in proptest::collection::vec(-3.0f64..3.0, 8), g in prop::sample::select(vec![2i64, 4, 8]),
                              shift in -5.0f64..5.0) {
            let r = Tensor::from_slice(&rs);
            let mask = Tensor::ones([8, 1], (Kind::Double, tch::Device::Cpu));
            let a = group_advantages(&r, &mask, g, true);
            let shifted = group_advantages(&(&r + shift), &mask, g, true);
            prop_assert!(max_abs_diff(&a, &shifted) < 1e-8);
            let groups = a.view([8 / g, g]);
            prop_assert!(groups.sum_dim_intlist(1, false, Kind::Double).abs().max().double_value(&[]) < 1e-9);
            let rg = r.view([8 / g, g]);
            for i in 0..8 / g {
                let spread = rg.get(i).std(true).double_value(&[]);
                if spread > 1e-3 {
                    let s = groups.get(i).std(true).double_value(&[]);
                    prop_assert!((s - spread / (spread + STD_EPS)).abs() < 1e-9);
                }
            }
        }
    }
}
