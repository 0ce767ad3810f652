//! Group-relative advantages, as verl's `compute_grpo_outcome_advantage`: over the responses that
//! share a group id (the responses to one prompt), `A_i = (R_i − mean_j R_j) / (std_j R_j + 1e-6)`
//! with the unbiased std (`torch.std`), Dr.GRPO without the division. A group of one has no
//! baseline: mean 0, std 1. Every token of response `i` gets `A_i`. Two entry points: groups of
//! consecutive rows (the trainer's, in the mask's float kind) and explicit group ids (any sizes).
use tch::{Device, Kind, Tensor};

/// Added to the group std (verl's `epsilon`).
pub const STD_EPS: f64 = 1e-6;

/// Rewards `[B]` in groups of `group_size` consecutive rows → advantages `[B, T]`, zero on
/// padding, computed in the mask's kind (the trainer's path).
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

/// Rewards `[B]` and group ids `[B]` (any integers, groups of any size and order) → advantages
/// `[B, T]`, zero on padding, in the mask's kind and device. Statistics in f64 on the host (B
/// numbers).
pub fn group_advantages_by_id(
    rewards: &Tensor,
    group_ids: &Tensor,
    mask: &Tensor,
    norm_by_std: bool,
) -> Tensor {
    let host = |t: &Tensor, k: Kind| t.detach().to_device(Device::Cpu).to_kind(k).view([-1]);
    let r = Vec::<f64>::try_from(host(rewards, Kind::Double)).expect("rewards to host");
    let ids = Vec::<i64>::try_from(host(group_ids, Kind::Int64)).expect("group ids to host");
    assert_eq!(r.len(), ids.len(), "one group id per reward");
    let mut groups: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for (id, x) in ids.iter().zip(&r) {
        groups.entry(*id).or_default().push(*x);
    }
    let stats: std::collections::BTreeMap<i64, (f64, f64)> = groups
        .into_iter()
        .map(|(id, xs)| {
            let n = xs.len() as f64;
            if xs.len() == 1 {
                return (id, (0.0, 1.0));
            }
            let mean = xs.iter().sum::<f64>() / n;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (id, (mean, var.sqrt()))
        })
        .collect();
    let a: Vec<f64> = ids
        .iter()
        .zip(&r)
        .map(|(id, x)| {
            let (mean, std) = stats[id];
            if norm_by_std {
                (x - mean) / (std + STD_EPS)
            } else {
                x - mean
            }
        })
        .collect();
    let a = Tensor::from_slice(&a)
        .to_kind(mask.kind())
        .to_device(mask.device())
        .view([-1, 1]);
    a * mask.detach()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    fn consecutive(r: &Tensor, mask: &Tensor, g: i64, by_std: bool) -> Tensor {
        group_advantages(r, mask, g, by_std)
    }

    #[test]
    fn by_hand() {
        let r = Tensor::from_slice(&[1.0f64, 0.0, 0.5, 0.5]);
        let mask = right_padded(&[2, 1, 2, 0], 2);
        let a = to_vec(&consecutive(&r, &mask, 2, true));
        let s = 0.5 / (0.5f64.sqrt() + STD_EPS);
        let want = [s, s, -s, 0.0, 0.0, 0.0, 0.0, 0.0];
        for (g, w) in a.iter().zip(want) {
            assert_close(*g, w, 1e-12);
        }
        let a = to_vec(&consecutive(&r, &mask, 4, false));
        for (g, w) in a.iter().zip([0.5, 0.5, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0]) {
            assert_close(*g, w, 1e-12);
        }
        // Group of one: mean 0, std 1 (verl).
        let a = to_vec(&consecutive(&r, &mask, 1, true));
        assert_close(a[0], 1.0 / (1.0 + STD_EPS), 1e-15);
    }

    #[test]
    fn ids_in_any_order_and_size() {
        let r = Tensor::from_slice(&[1.0f64, 5.0, 0.0, 3.0, 7.0]);
        let ids = Tensor::from_slice(&[7i64, 2, 7, 2, 9]);
        let mask = Tensor::ones([5, 1], (Kind::Double, Device::Cpu));
        let a = to_vec(&group_advantages_by_id(&r, &ids, &mask, false));
        assert_eq!(a, [0.5, 1.0, -0.5, -1.0, 7.0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Ids of consecutive groups give the trainer's path's advantages.
        #[test]
        fn ids_agree_with_group_size(rs in proptest::collection::vec(-3.0f64..3.0, 8),
                                     g in prop::sample::select(vec![1i64, 2, 4, 8]), by_std: bool) {
            let r = Tensor::from_slice(&rs);
            let mask = Tensor::ones([8, 2], (Kind::Double, Device::Cpu));
            let ids: Vec<i64> = (0..8).map(|i| i / g).collect();
            let a = group_advantages_by_id(&r, &Tensor::from_slice(&ids), &mask, by_std);
            prop_assert!(max_abs_diff(&a, &consecutive(&r, &mask, g, by_std)) < 1e-12);
        }
    }

    #[test]
    fn follows_mask_kind() {
        let r = Tensor::from_slice(&[1.0f64, 0.0]);
        let mask = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        assert_eq!(consecutive(&r, &mask, 2, true).kind(), Kind::Float);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Each group's advantages sum to zero; with std normalisation a group with spread has
        /// unit sample std (up to the 1e-6); shifting every reward changes nothing.
        #[test]
        fn centred_and_scaled(rs in proptest::collection::vec(-3.0f64..3.0, 8), g in prop::sample::select(vec![2i64, 4, 8]),
                              shift in -5.0f64..5.0) {
            let r = Tensor::from_slice(&rs);
            let mask = Tensor::ones([8, 1], (Kind::Double, Device::Cpu));
            let a = consecutive(&r, &mask, g, true);
            let shifted = consecutive(&(&r + shift), &mask, g, true);
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
