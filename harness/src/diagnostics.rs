//! Train–inference mismatch diagnostics (`rollout_corr/*`, names as in verl), logged every step
//! whatever the algorithm, from the trainer's `π_old`, the engine's `μ` and the response mask.
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// All `rollout_corr/*` metrics. `old_logp`, `rollout_logp`, `mask`: `[N, R]`. `experts`: optional
/// (engine, trainer) per-layer expert selections `[N, R, k]` for `rollout_corr/router_mismatch`.
pub fn rollout_corr(
    old_logp: &Tensor,
    rollout_logp: &Tensor,
    mask: &Tensor,
    experts: Option<(&[Tensor], &[Tensor])>,
) -> BTreeMap<String, f64> {
    tch::no_grad(|| {
        let m = mask.to_kind(Kind::Double);
        let old = old_logp.to_kind(Kind::Double) * &m;
        let mu = rollout_logp.to_kind(Kind::Double) * &m;
        let n_tok = m.sum(Kind::Double).clamp_min(1.0);
        let mean = |x: &Tensor| (x * &m).sum(Kind::Double) / &n_tok;
        let seq_len = m.sum_dim_intlist(-1, false, Kind::Double);
        let has = seq_len.gt(0.0).to_kind(Kind::Double);
        let n_seq = has.sum(Kind::Double).clamp_min(1.0);
        let seq_mean = |x: &Tensor| (x * &has).sum(Kind::Double) / &n_seq;
        let tok_mean_per_seq =
            |x: &Tensor| (x * &m).sum_dim_intlist(-1, false, Kind::Double) / seq_len.clamp_min(1.0);

        let log_rho = &old - &mu; // log(π_old / μ), 0 on padding
        let rho = log_rho.exp();
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: f64| {
            out.insert(format!("rollout_corr/{k}"), v);
        };
        // KL(μ ‖ π_old) estimated on tokens sampled from μ.
        put("kl", scalar(&mean(&(-&log_rho))));
        put("k3_kl", scalar(&mean(&(&rho - 1.0 - &log_rho))));
        put(
            "training_ppl",
            scalar(&seq_mean(&(-tok_mean_per_seq(&old)).exp())),
        );
        put(
            "rollout_ppl",
            scalar(&seq_mean(&(-tok_mean_per_seq(&mu)).exp())),
        );
        put(
            "ppl_ratio",
            scalar(&seq_mean(&tok_mean_per_seq(&log_rho).exp())),
        );
        put("chi2_token", scalar(&(mean(&rho.square()) - 1.0)));
        let seq_log_rho = log_rho.sum_dim_intlist(-1, false, Kind::Double);
        put(
            "chi2_seq",
            scalar(&(seq_mean(&(seq_log_rho * 2.0).clamp_max(80.0).exp()) - 1.0)),
        );
        let w = &rho * &m;
        let (sw, sw2) = (w.sum(Kind::Double), w.square().sum(Kind::Double));
        put(
            "rollout_is_eff_sample_size",
            scalar(&(sw.square() / (&n_tok * sw2.clamp_min(1e-300)))),
        );
        let diff = (old.exp() - mu.exp()).abs() * &m;
        put("abs_prob_diff", scalar(&(diff.sum(Kind::Double) / &n_tok)));
        put("abs_prob_diff_max", scalar(&diff.max()));
        if let Some((engine, trainer)) = experts {
            if !engine.is_empty() && engine.len() == trainer.len() {
                let mut differs = m.zeros_like().to_kind(Kind::Bool);
                for (e, t) in engine.iter().zip(trainer) {
                    differs = differs.logical_or(&e.ne_tensor(t).any_dim(-1, false));
                }
                put(
                    "router_mismatch",
                    scalar(&mean(&differs.to_kind(Kind::Double))),
                );
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64], shape: [i64; 2]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    #[test]
    fn identical_policies_have_no_mismatch() {
        let lp = t(&[-0.5, -1.0, -2.0, -0.1], [2, 2]);
        let mask = t(&[1.0, 1.0, 1.0, 0.0], [2, 2]);
        let m = rollout_corr(&lp, &lp, &mask, None);
        for k in [
            "kl",
            "k3_kl",
            "chi2_token",
            "chi2_seq",
            "abs_prob_diff",
            "abs_prob_diff_max",
        ] {
            assert!(m[&format!("rollout_corr/{k}")].abs() < 1e-12, "{k}");
        }
        assert!((m["rollout_corr/ppl_ratio"] - 1.0).abs() < 1e-12);
        assert!((m["rollout_corr/rollout_is_eff_sample_size"] - 1.0).abs() < 1e-12);
        // training ppl: seq 1 exp(0.75), seq 2 exp(2.0), mean of the two.
        let want = (0.75f64.exp() + 2.0f64.exp()) / 2.0;
        assert!((m["rollout_corr/training_ppl"] - want).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_values() {
        // One sequence, two tokens: π_old = (0.5, 0.25), μ = (0.25, 0.25); one padded token.
        let old = t(&[0.5f64.ln(), 0.25f64.ln(), -3.0], [1, 3]);
        let mu = t(&[0.25f64.ln(), 0.25f64.ln(), -9.0], [1, 3]);
        let mask = t(&[1.0, 1.0, 0.0], [1, 3]);
        let m = rollout_corr(&old, &mu, &mask, None);
        let ln2 = 2f64.ln();
        assert!((m["rollout_corr/kl"] - (-ln2 / 2.0)).abs() < 1e-12);
        assert!((m["rollout_corr/k3_kl"] - (1.0 - ln2) / 2.0).abs() < 1e-12);
        assert!((m["rollout_corr/abs_prob_diff"] - 0.125).abs() < 1e-12);
        assert!((m["rollout_corr/abs_prob_diff_max"] - 0.25).abs() < 1e-12);
        assert!((m["rollout_corr/chi2_token"] - 1.5).abs() < 1e-12); // (4+1)/2 - 1
        assert!((m["rollout_corr/chi2_seq"] - 3.0).abs() < 1e-12); // ρ_seq = 2
        assert!((m["rollout_corr/rollout_is_eff_sample_size"] - 0.9).abs() < 1e-12); // 9/(2·5)
        assert!((m["rollout_corr/ppl_ratio"] - 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn router_mismatch_counts_tokens_with_any_layer_differing() {
        let mask = t(&[1.0, 1.0, 1.0, 0.0], [2, 2]);
        let lp = t(&[-1.0; 4], [2, 2]);
        let e = Tensor::from_slice(&[0i64, 1, 0, 1, 2, 3, 2, 3]).view([2, 2, 2]);
        let t1 = Tensor::from_slice(&[0i64, 1, 0, 2, 2, 3, 5, 6]).view([2, 2, 2]);
        let m = rollout_corr(&lp, &lp, &mask, Some((&[e.shallow_clone()], &[t1])));
        // Token (0,1) differs; (1,1) differs but is padding: 1 of 3 real tokens.
        assert!((m["rollout_corr/router_mismatch"] - 1.0 / 3.0).abs() < 1e-12);
    }
}
