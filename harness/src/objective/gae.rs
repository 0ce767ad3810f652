//! PPO's advantage estimation and value loss.
//!
//! GAE over the response tokens, with the sequence reward on the last token (plus an optional
//! per-token reward such as −β·KL): `δ_t = r_t + γ·V_{t+1} − V_t`, `A_t = δ_t + γλ·A_{t+1}`, the
//! value after the last token being 0; returns `R_t = A_t + V_t`. Masked positions are skipped (the
//! recursion carries over them), which also handles holes in the mask. Clipped value loss:
//! `½·max((V − R)², (V_old + clip(V − V_old, −ε_v, ε_v) − R)²)`. As verl's
//! `compute_gae_advantage_return` and `compute_value_loss`.
use super::agg::LossAgg;
use super::{scalar, sum_over, valid, zero_pad, Metrics, PolicyBatch};
use tch::{Device, Kind, Tensor};

/// Put each sequence's reward `[B]` on its last response token → `[B, T]` (zeros elsewhere).
pub fn last_token_rewards(rewards: &Tensor, mask: &Tensor) -> Tensor {
    let (_, t) = mask.size2().expect("mask is [B, T]");
    let kind = mask.kind();
    let pos = Tensor::arange_start(1, t + 1, (kind, mask.device()));
    // The last valid position has the largest `mask · (t + 1)`.
    let last = (mask.detach() * pos).argmax(-1, true);
    let has_tokens = mask.detach().sum_dim_intlist(-1, true, kind).gt(0.0);
    let r = rewards.detach().to_kind(kind).view([-1, 1]) * has_tokens.to_kind(kind);
    mask.zeros_like().scatter(-1, &last, &r)
}

fn host(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        t.detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Double)
            .contiguous()
            .view([-1]),
    )
    .expect("tensor to host")
}

/// GAE `(advantages, returns)`, both `[B, T]`, zero on padding, in `values`' kind and device.
/// The recursion is sequential in `t`, so it runs on the host in f64 (cheap next to a forward pass).
pub fn gae(
    token_rewards: &Tensor,
    values: &Tensor,
    mask: &Tensor,
    gamma: f64,
    lam: f64,
) -> (Tensor, Tensor) {
    let (b, t) = mask.size2().expect("mask is [B, T]");
    let (b_us, t_us) = (b as usize, t as usize);
    let v = valid(mask);
    let r = host(&zero_pad(token_rewards, &v));
    let val = host(&zero_pad(values, &v));
    let m = host(mask);
    let mut adv = vec![0.0; b_us * t_us];
    for i in 0..b_us {
        let row = i * t_us..(i + 1) * t_us;
        let (r, val, m, adv) = (
            &r[row.clone()],
            &val[row.clone()],
            &m[row.clone()],
            &mut adv[row],
        );
        let (mut next_value, mut last_gae) = (0.0, 0.0);
        for j in (0..t_us).rev() {
            if m[j] > 0.0 {
                let delta = r[j] + gamma * next_value - val[j];
                last_gae = delta + gamma * lam * last_gae;
                next_value = val[j];
                adv[j] = last_gae;
            }
        }
    }
    let back = |x: Vec<f64>| {
        Tensor::from_slice(&x)
            .view([b, t])
            .to_kind(values.kind())
            .to_device(values.device())
    };
    let adv = back(adv);
    let ret = (&adv + zero_pad(&values.detach(), &v)) * mask.detach().to_kind(values.kind());
    (adv, ret)
}

/// `(x − mean) / sqrt(var + 1e-8)` over the mask (unbiased variance, as verl's `masked_whiten`),
/// zero on padding. Fewer than two tokens: returned unchanged.
pub fn masked_whiten(x: &Tensor, mask: &Tensor) -> Tensor {
    let kind = x.kind();
    let m = mask.detach().to_kind(kind);
    let n = scalar(&m.sum(Kind::Double));
    let x = zero_pad(&x.detach(), &valid(mask));
    if n < 2.0 {
        return x * m;
    }
    let mean = (&x * &m).sum(kind) / n;
    let centred = (&x - &mean) * &m;
    let var = centred.square().sum(kind) / (n - 1.0);
    centred * (var + 1e-8).rsqrt()
}

/// Clipped value loss over `kept` (the policy loss's tokens, as verl's critic sees the response
/// mask after rejection), aggregated like the policy loss; gradient through `batch.values` only.
/// Metrics (sums over `kept` / the totals' tokens): `critic/vf_loss`, `critic/vf_clipfrac`
/// (clipped branch strictly larger), `critic/vpred_mean`.
pub(crate) fn value_loss(
    batch: &PolicyBatch,
    kept: &Tensor,
    cliprange_value: f64,
    agg: LossAgg,
) -> (Tensor, Metrics) {
    let (values, old_values, returns) = match (batch.values, batch.old_values, batch.returns) {
        (Some(v), Some(o), Some(r)) => (v, o, r),
        _ => panic!("ppo needs PolicyBatch::with_values (values, old values, returns)"),
    };
    let totals = batch.totals(kept);
    let v = valid(kept);
    let values = zero_pad(values, &v);
    let old = zero_pad(&old_values.detach(), &v);
    let ret = zero_pad(&returns.detach(), &v);
    let clipped = &old + (&values - &old).clamp(-cliprange_value, cliprange_value);
    let a = (&values - &ret).square();
    let b = (clipped - &ret).square();
    let per_token = a.maximum(&b) * 0.5;
    let loss = agg.apply(&per_token, kept, &totals);
    let mean = |x: &Tensor| totals.per_token(sum_over(x, kept));
    let mut m = Metrics::new();
    m.insert("critic/vf_loss".into(), scalar(&loss));
    m.insert("critic/vf_clipfrac".into(), mean(&b.gt_tensor(&a)));
    m.insert("critic/vpred_mean".into(), mean(&values));
    (loss, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::agg::LossAggMode;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    #[test]
    fn reward_goes_on_the_last_token() {
        let mask = right_padded(&[3, 1, 0], 3);
        let r = last_token_rewards(&Tensor::from_slice(&[1.0f64, 2.0, 3.0]), &mask);
        assert_eq!(to_vec(&r), [0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn gae_by_hand() {
        // One sequence of 3 tokens, γ = 0.9, λ = 0.5, reward 1 at the end.
        let mask = right_padded(&[3], 4);
        let rew = t2(&[0.0, 0.0, 1.0, 7.0], 1, 4);
        let val = t2(&[0.1, 0.2, 0.3, 9.0], 1, 4);
        let (a, r) = gae(&rew, &val, &mask, 0.9, 0.5);
        let d2 = 1.0 - 0.3;
        let d1 = 0.9 * 0.3 - 0.2;
        let d0 = 0.9 * 0.2 - 0.1;
        let a2 = d2;
        let a1 = d1 + 0.45 * a2;
        let a0 = d0 + 0.45 * a1;
        for (g, w) in to_vec(&a).iter().zip([a0, a1, a2, 0.0]) {
            assert_close(*g, w, 1e-12);
        }
        for (g, w) in to_vec(&r).iter().zip([a0 + 0.1, a1 + 0.2, a2 + 0.3, 0.0]) {
            assert_close(*g, w, 1e-12);
        }
    }

    #[test]
    fn gae_with_lambda_one_and_gamma_one_is_monte_carlo() {
        let mask = right_padded(&[4, 2], 4);
        let rew = last_token_rewards(&Tensor::from_slice(&[1.0f64, -1.0]), &mask);
        let val = t2(&[0.3, -0.2, 0.5, 0.1, 0.4, 0.4, 5.0, 5.0], 2, 4);
        let (_, ret) = gae(&rew, &val, &mask, 1.0, 1.0);
        for (g, w) in to_vec(&ret)
            .iter()
            .zip([1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 0.0, 0.0])
        {
            assert_close(*g, w, 1e-12);
        }
    }

    #[test]
    fn whiten_by_hand() {
        let mask = right_padded(&[3], 4);
        let x = t2(&[1.0, 2.0, 3.0, 100.0], 1, 4);
        let w = to_vec(&masked_whiten(&x, &mask));
        let s = (1.0f64 + 1e-8).sqrt();
        for (g, want) in w.iter().zip([-1.0 / s, 0.0, 1.0 / s, 0.0]) {
            assert_close(*g, want, 1e-12);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Value loss: gradient check in f64 (every aggregation); zero at V = R = V_old.
        #[test]
        fn value_loss_grad_check(b in ragged_batch(3, 5), shift in -1.0f64..1.0, mode in 0usize..4) {
            let agg = LossAgg::new(LossAggMode::ALL[mode], None);
            let old = &b.x * 0.5;
            let ret = &b.x * 0.3 + shift;
            let vl = |v: &Tensor, o: &Tensor, r: &Tensor| {
                let batch = PolicyBatch::new(v, v, v, v, &b.mask).with_values(v, o, r);
                value_loss(&batch, &b.mask, 0.5, agg)
            };
            check_grad(&(&b.x * 0.9 + 0.2), |v| vl(v, &old, &ret).0);
            let (z, _) = vl(&ret, &ret, &ret);
            prop_assert_eq!(z.double_value(&[]), 0.0);
        }

        /// Advantages and returns are zero on padding and unaffected by padded garbage.
        #[test]
        fn gae_ignores_padding(b in ragged_batch(3, 5), garbage in -9.0f64..9.0) {
            let rew = last_token_rewards(&b.x.select(1, 0), &b.mask);
            let (a, r) = gae(&rew, &b.x, &b.mask, 1.0, 0.95);
            let (xp, mp) = pad(&b.x, &b.mask, 2, 1, garbage);
            let rewp = last_token_rewards(&xp.select(1, 0), &mp);
            let (ap, rp) = gae(&rewp, &xp, &mp, 1.0, 0.95);
            let (bb, tt) = b.x.size2().unwrap();
            prop_assert!(max_abs_diff(&ap.narrow(0, 0, bb).narrow(1, 0, tt), &a) == 0.0);
            prop_assert!(max_abs_diff(&rp.narrow(0, 0, bb).narrow(1, 0, tt), &r) == 0.0);
            prop_assert!(to_vec(&ap.masked_select(&mp.eq(0.0))).iter().all(|x| *x == 0.0));
        }
    }
}
