//! Train–inference mismatch diagnostics (`rollout_corr/*`), logged every step whatever the
//! algorithm, from the trainer's `π_old`, the engine's `μ` and the response mask. Each metric is
//! computed as verl 0.9.1's `rollout_corr_helper` computes the metric of that name
//! (`compute_offpolicy_metrics`, `compute_is_metrics`, `compute_rs_metrics`); see
//! `docs/algorithms.md`. Beyond verl: `abs_prob_diff(_max)` (DCMDP's discrepancy) and
//! `router_mismatch` (MoE).
use crate::objective::correction::{log_rho, IsWeight, RejectLevel, Rejection};
use crate::objective::{masked_mean, Correction, Metrics};
use tch::{Kind, Tensor};

/// The token-level TIS cap used for `rollout_is_eff_sample_size` when the algorithm has no IS
/// weight of its own (verl's default `rollout_is_threshold`).
pub const DEFAULT_IS_CAP: f64 = 2.0;

/// verl's `masked_mean` (its `+ 1e-8` in the denominator included).
fn vmean(x: &Tensor, mask: &Tensor) -> Tensor {
    (x * mask).sum(Kind::Double) / (mask.sum(Kind::Double) + 1e-8)
}

/// verl's per-row `masked_mean`, `[B]`.
fn vmean_rows(x: &Tensor, mask: &Tensor) -> Tensor {
    (x * mask).sum_dim_intlist(-1, false, Kind::Double)
        / (mask.sum_dim_intlist(-1, false, Kind::Double) + 1e-8)
}

fn f(t: &Tensor) -> f64 {
    t.double_value(&[])
}

fn frac(b: &Tensor) -> f64 {
    f(&b.to_kind(Kind::Double).mean(Kind::Double))
}

/// `reduce` (max or min) of `x` over the entries where `sel` is true (0 when none).
fn reduce_where(x: &Tensor, sel: &Tensor, reduce: fn(&Tensor) -> Tensor) -> f64 {
    let v = x.masked_select(sel);
    if v.numel() == 0 {
        0.0
    } else {
        f(&reduce(&v))
    }
}

fn max_where(x: &Tensor, sel: &Tensor) -> f64 {
    reduce_where(x, sel, Tensor::max)
}

fn min_where(x: &Tensor, sel: &Tensor) -> f64 {
    reduce_where(x, sel, Tensor::min)
}

/// `std` of the masked values clamped to `[lo, hi]` (verl's `*_std`), 0 for fewer than two tokens.
fn clamped_std(x: &Tensor, mask: &Tensor, lo: f64, hi: f64) -> f64 {
    if f(&mask.sum(Kind::Double)) <= 1.0 {
        return 0.0;
    }
    let c = x.clamp(lo, hi);
    let mean = vmean(&c, mask);
    let var = vmean(&c.square(), mask) - mean.square();
    f(&var.clamp_min(0.0).sqrt())
}

/// Summary over rows: mean, unbiased std (0 for one row), max, min.
fn row_stats(x: &Tensor) -> (f64, f64, f64, f64) {
    if x.numel() == 0 {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let std = if x.numel() > 1 { f(&x.std(true)) } else { 0.0 };
    (f(&x.mean(Kind::Double)), std, f(&x.max()), f(&x.min()))
}

/// The `rollout_corr/*` metrics of a batch for an algorithm without corrections: the off-policy
/// metrics, `rollout_is_eff_sample_size` of token-level TIS at [`DEFAULT_IS_CAP`], and the
/// harness's extras. See [`rollout_corr_with`].
pub fn rollout_corr(
    old_logp: &Tensor,
    rollout_logp: &Tensor,
    mask: &Tensor,
    experts: Option<(&[Tensor], &[Tensor])>,
) -> Metrics {
    rollout_corr_with(old_logp, rollout_logp, mask, &[], experts)
}

/// All `rollout_corr/*` metrics of a batch. `old_logp`, `rollout_logp`, `mask`: `[N, R]`.
/// `corrections`: the algorithm's ([`crate::objective::AlgorithmConfig::corrections`]); its first
/// IS weight gives the `rollout_is_*` metrics (without one, `rollout_is_eff_sample_size` is that of
/// token-level TIS at [`DEFAULT_IS_CAP`]), each rejection its `rollout_rs_<verl option>_*`.
/// `experts`: optional (engine, trainer) per-layer expert selections `[N, R, k]` for
/// `rollout_corr/router_mismatch`.
pub fn rollout_corr_with(
    old_logp: &Tensor,
    rollout_logp: &Tensor,
    mask: &Tensor,
    corrections: &[Correction],
    experts: Option<(&[Tensor], &[Tensor])>,
) -> Metrics {
    tch::no_grad(|| {
        let m = mask.detach().to_kind(Kind::Double);
        let old = old_logp.detach().to_kind(Kind::Double);
        let mu = rollout_logp.detach().to_kind(Kind::Double);
        let lr = log_rho(&old, &mu, &m);
        let mut out = offpolicy(&old, &mu, &lr, &m);
        let weight = corrections.iter().find_map(Correction::is_weight);
        match weight {
            Some(w) => out.extend(is_metrics(&w, &lr, &m)),
            None => {
                let w = IsWeight::Token {
                    cap: DEFAULT_IS_CAP,
                };
                let ess = is_metrics(&w, &lr, &m)["rollout_is_eff_sample_size"];
                out.insert("rollout_is_eff_sample_size".into(), ess);
            }
        }
        let rejections: Vec<Rejection> = corrections
            .iter()
            .filter_map(Correction::rejection)
            .collect();
        if !rejections.is_empty() {
            out.extend(rs_metrics(&rejections, &lr, &m));
        }
        let diff = (old.exp() - mu.exp()).abs() * &m;
        out.insert("abs_prob_diff".into(), masked_mean(&diff, &m));
        out.insert("abs_prob_diff_max".into(), f(&diff.max()));
        if let Some(rm) = experts.and_then(|(e, t)| router_mismatch(e, t, &m)) {
            out.insert("router_mismatch".into(), rm);
        }
        out.into_iter()
            .map(|(k, v)| (format!("rollout_corr/{k}"), v))
            .collect()
    })
}

/// verl's `compute_offpolicy_metrics`, over the rows that have a response token (verl averages
/// per-row quantities over every row; an all-padding row would count there as ppl 1).
fn offpolicy(old: &Tensor, mu: &Tensor, lr: &Tensor, m: &Tensor) -> Metrics {
    let rows = m.sum_dim_intlist(-1, false, Kind::Double).gt(0.0);
    let row_mean = |x: &Tensor| f(&x.masked_select(&rows).mean(Kind::Double));
    let mean_old = vmean_rows(old, m);
    let mean_mu = vmean_rows(mu, m);
    let diff = &mean_mu - &mean_old;
    let safe = lr.clamp(-20.0, 20.0);
    let seq_sum = (lr * m)
        .sum_dim_intlist(-1, false, Kind::Double)
        .clamp(-20.0, 20.0);
    let mut out = Metrics::new();
    out.insert("training_ppl".into(), row_mean(&(-&mean_old).exp()));
    out.insert("training_log_ppl".into(), row_mean(&(-&mean_old)));
    out.insert("rollout_ppl".into(), row_mean(&(-&mean_mu).exp()));
    out.insert("rollout_log_ppl".into(), row_mean(&(-&mean_mu)));
    out.insert("kl".into(), f(&vmean(&(mu - old), m)));
    out.insert("k3_kl".into(), f(&vmean(&(lr.exp() - lr - 1.0), m)));
    out.insert("log_ppl_diff".into(), row_mean(&diff));
    out.insert("log_ppl_abs_diff".into(), row_mean(&diff.abs()));
    out.insert("log_ppl_diff_max".into(), max_where(&diff, &rows));
    out.insert("log_ppl_diff_min".into(), min_where(&diff, &rows));
    out.insert("ppl_ratio".into(), row_mean(&diff.exp()));
    out.insert(
        "chi2_token".into(),
        f(&vmean(&(safe.exp().square()), m)) - 1.0,
    );
    out.insert("chi2_seq".into(), row_mean(&(seq_sum * 2.0).exp()) - 1.0);
    out
}

/// verl's `compute_is_metrics` for one IS weight (`rollout_is_*`).
fn is_metrics(w: &IsWeight, lr: &Tensor, m: &Tensor) -> Metrics {
    let (raw, applied) = w.weights(lr, m);
    let (upper, lower) = match *w {
        IsWeight::Token { cap } | IsWeight::Sequence { cap } => (cap, 1.0 / cap),
        IsWeight::TokenBand { low, high } => (high, low),
    };
    let valid = m.gt(0.0);
    let mut out = Metrics::new();
    out.insert("rollout_is_mean".into(), f(&vmean(&applied, m)));
    if let IsWeight::Sequence { .. } = w {
        let log_sum = (lr * m).sum_dim_intlist(-1, false, Kind::Double);
        out.insert("rollout_is_max".into(), f(&log_sum.max()).min(20.0).exp());
        out.insert("rollout_is_min".into(), f(&log_sum.min()).exp());
        out.insert(
            "rollout_is_ratio_fraction_high".into(),
            frac(&log_sum.gt(upper.ln())),
        );
        out.insert(
            "rollout_is_ratio_fraction_low".into(),
            frac(&log_sum.lt(lower.ln())),
        );
    } else {
        out.insert(
            "rollout_is_ratio_fraction_high".into(),
            f(&vmean(&raw.gt(upper).to_kind(Kind::Double), m)),
        );
        out.insert(
            "rollout_is_ratio_fraction_low".into(),
            f(&vmean(&raw.lt(lower).to_kind(Kind::Double), m)),
        );
        out.insert("rollout_is_max".into(), max_where(&applied, &valid));
        out.insert("rollout_is_min".into(), min_where(&applied, &valid));
    }
    out.insert(
        "rollout_is_std".into(),
        clamped_std(&applied, m, 0.0, upper),
    );
    let w_ess = applied.clamp(0.0, upper);
    let normalized = &w_ess / (vmean(&w_ess, m) + 1e-8);
    out.insert(
        "rollout_is_eff_sample_size".into(),
        1.0 / f(&vmean(&normalized.square(), m)),
    );
    let seq = vmean_rows(&applied, m);
    let (mean, std, max, min) = row_stats(&seq);
    out.insert("rollout_is_seq_mean".into(), mean);
    out.insert("rollout_is_seq_std".into(), std);
    out.insert("rollout_is_seq_max".into(), max);
    out.insert("rollout_is_seq_min".into(), min);
    out.insert(
        "rollout_is_seq_max_deviation".into(),
        f(&(&seq - 1.0).abs().max()),
    );
    let raw_seq = vmean_rows(&raw, m);
    out.insert(
        "rollout_is_seq_fraction_high".into(),
        frac(&raw_seq.gt(upper)),
    );
    out.insert(
        "rollout_is_seq_fraction_low".into(),
        frac(&raw_seq.lt(lower)),
    );
    if let IsWeight::TokenBand { low, high } = *w {
        let oob = raw.lt(low).logical_or(&raw.gt(high)).to_kind(Kind::Double);
        out.insert("rollout_is_oob_ratio".into(), f(&vmean(&oob, m)));
    }
    out
}

/// verl's `compute_rs_metrics` per rejection and the combined masked fractions (`rollout_rs_*`).
fn rs_metrics(list: &[Rejection], lr: &Tensor, m: &Tensor) -> Metrics {
    let valid = m.gt(0.0);
    let seq_valid = valid.any_dim(-1, false);
    let mut combined = m.ones_like();
    let mut out = Metrics::new();
    for r in list {
        let (stat, keep) = r.statistic(lr, m);
        let p = format!("rollout_rs_{}", r.level.verl_name());
        let (lo, hi) = (r.lower.ln(), r.upper.ln());
        let seq_values = match r.level {
            RejectLevel::Token => vmean_rows(&stat, m),
            _ => stat.select(-1, 0),
        };
        let seq_v = seq_values.masked_select(&seq_valid);
        out.insert(format!("{p}_mean"), f(&vmean(&stat, m)));
        if r.level == RejectLevel::Token || seq_v.numel() == 0 {
            out.insert(format!("{p}_max"), max_where(&stat, &valid));
            out.insert(format!("{p}_min"), min_where(&stat, &valid));
            out.insert(
                format!("{p}_fraction_high"),
                f(&vmean(&stat.gt(hi).to_kind(Kind::Double), m)),
            );
            out.insert(
                format!("{p}_fraction_low"),
                f(&vmean(&stat.lt(lo).to_kind(Kind::Double), m)),
            );
        } else {
            out.insert(format!("{p}_max"), f(&seq_v.max()));
            out.insert(format!("{p}_min"), f(&seq_v.min()));
            out.insert(format!("{p}_fraction_high"), frac(&seq_v.gt(hi)));
            out.insert(format!("{p}_fraction_low"), frac(&seq_v.lt(lo)));
        }
        out.insert(format!("{p}_std"), clamped_std(&stat, m, lo, hi));
        let (mean, std, max, min) = row_stats(&seq_v);
        out.insert(format!("{p}_seq_mean"), mean);
        out.insert(format!("{p}_seq_std"), std);
        out.insert(format!("{p}_seq_max"), max);
        out.insert(format!("{p}_seq_min"), min);
        let dev = if seq_v.numel() > 0 {
            f(&seq_v.abs().max())
        } else {
            0.0
        };
        out.insert(format!("{p}_seq_max_deviation"), dev);
        let (sh, sl) = if seq_v.numel() > 0 {
            (frac(&seq_v.gt(hi)), frac(&seq_v.lt(lo)))
        } else {
            (0.0, 0.0)
        };
        out.insert(format!("{p}_seq_fraction_high"), sh);
        out.insert(format!("{p}_seq_fraction_low"), sl);
        let keep = keep.to_kind(Kind::Double);
        out.insert(format!("{p}_masked_fraction"), f(&vmean(&(1.0 - &keep), m)));
        let dropped_rows = keep.lt(0.5).logical_and(&valid).any_dim(-1, false);
        out.insert(
            format!("{p}_seq_masked_fraction"),
            seq_frac(&dropped_rows, &seq_valid),
        );
        combined *= keep;
    }
    out.insert(
        "rollout_rs_masked_fraction".into(),
        f(&vmean(&(1.0 - &combined), m)),
    );
    let dropped = combined.lt(0.5).logical_and(&valid).any_dim(-1, false);
    out.insert("rollout_rs_seq_masked_fraction".into(), frac(&dropped));
    out
}

/// Share of the valid rows that are `hit`.
fn seq_frac(hit: &Tensor, rows: &Tensor) -> f64 {
    let n = f(&rows.to_kind(Kind::Double).sum(Kind::Double));
    if n > 0.0 {
        f(&hit
            .logical_and(rows)
            .to_kind(Kind::Double)
            .sum(Kind::Double))
            / n
    } else {
        0.0
    }
}

/// Share of response tokens where any layer picked different experts.
fn router_mismatch(engine: &[Tensor], trainer: &[Tensor], m: &Tensor) -> Option<f64> {
    if engine.is_empty() || engine.len() != trainer.len() {
        return None;
    }
    let mut differs = m.zeros_like().to_kind(Kind::Bool);
    for (e, t) in engine.iter().zip(trainer) {
        differs = differs.logical_or(&e.ne_tensor(t).any_dim(-1, false));
    }
    Some(masked_mean(&differs, m))
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
            "log_ppl_diff",
        ] {
            assert!(m[&format!("rollout_corr/{k}")].abs() < 1e-7, "{k}");
        }
        assert!((m["rollout_corr/ppl_ratio"] - 1.0).abs() < 1e-12);
        assert!((m["rollout_corr/rollout_is_eff_sample_size"] - 1.0).abs() < 1e-7);
        // training ppl: seq 1 exp(0.75), seq 2 exp(2.0), mean of the two.
        let want = (0.75f64.exp() + 2.0f64.exp()) / 2.0;
        assert!((m["rollout_corr/training_ppl"] - want).abs() < 1e-6);
    }

    #[test]
    fn hand_computed_values() {
        // One sequence, two tokens: π_old = (0.5, 0.25), μ = (0.25, 0.25); one padded token.
        let old = t(&[0.5f64.ln(), 0.25f64.ln(), -3.0], [1, 3]);
        let mu = t(&[0.25f64.ln(), 0.25f64.ln(), -9.0], [1, 3]);
        let mask = t(&[1.0, 1.0, 0.0], [1, 3]);
        let m = rollout_corr(&old, &mu, &mask, None);
        let ln2 = 2f64.ln();
        let close = |k: &str, want: f64| {
            let got = m[&format!("rollout_corr/{k}")];
            assert!((got - want).abs() < 1e-7, "{k}: {got} vs {want}");
        };
        close("kl", -ln2 / 2.0);
        close("k3_kl", (1.0 - ln2) / 2.0);
        close("abs_prob_diff", 0.125);
        close("abs_prob_diff_max", 0.25);
        close("chi2_token", 1.5); // (4+1)/2 - 1
        close("chi2_seq", 3.0); // ρ_seq = 2
                                // training_ppl / rollout_ppl = exp(mean log μ − mean log π_old) = 2^(−1/2).
        close("ppl_ratio", 0.5f64.sqrt());
        close("log_ppl_diff", -ln2 / 2.0);
        // ESS of min(ρ, 2) = (2, 1): (3/2)² / ((4 + 1)/2) = 0.9.
        close("rollout_is_eff_sample_size", 0.9);
    }

    #[test]
    fn correction_metrics_follow_the_items() {
        let old = t(
            &[0.5f64.ln(), 0.25f64.ln(), 0.4f64.ln(), 0.4f64.ln()],
            [2, 2],
        );
        let mu = t(
            &[0.1f64.ln(), 0.25f64.ln(), 0.4f64.ln(), 0.4f64.ln()],
            [2, 2],
        );
        let mask = t(&[1.0, 1.0, 1.0, 1.0], [2, 2]);
        let list = [
            Correction::Icepop {
                low: 0.5,
                high: 4.0,
            },
            Correction::Mis {
                c: 2.0,
                one_sided: false,
            },
        ];
        let m = rollout_corr_with(&old, &mu, &mask, &list, None);
        // ρ = (5, 1, 1, 1): IcePop zeroes the first weight.
        assert!((m["rollout_corr/rollout_is_oob_ratio"] - 0.25).abs() < 1e-7);
        assert!((m["rollout_corr/rollout_is_mean"] - 0.75).abs() < 1e-7);
        assert!((m["rollout_corr/rollout_rs_token_k1_masked_fraction"] - 0.25).abs() < 1e-7);
        assert!((m["rollout_corr/rollout_rs_seq_masked_fraction"] - 0.5).abs() < 1e-12);
        assert!((m["rollout_corr/rollout_rs_token_k1_min"] + 5f64.ln()).abs() < 1e-12);
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
