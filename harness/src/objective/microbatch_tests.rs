//! Micro-batches: for every algorithm × `loss_agg_mode`, with ragged lengths and corrections that
//! reject, splitting a mini-batch's rows into micro-batches (each trimmed to its own longest
//! response) that carry the mini-batch's [`AggTotals`] gives losses, gradients and merged metrics
//! equal to the unsplit mini-batch's, in f32 within 1e-5.
use super::metrics::merge_micro_metrics;
use super::tests::Full;
use super::testutil::*;
use super::{
    build_algorithm, Algorithm, AlgorithmConfig, LossAggMode, Metrics, PolicyBatch, StepStats,
};
use proptest::prelude::*;
use serde_json::json;
use tch::{Kind, Tensor};

fn algorithms(mode: LossAggMode) -> Vec<Box<dyn Algorithm>> {
    let mode = serde_json::to_value(mode).unwrap();
    [
        json!({"name": "grpo", "kl": {"coef": 0.2},
               "corrections": [{"type": "tis"}, {"type": "icepop", "low": 0.8, "high": 1.3}, {"type": "mis", "c": 1.6}]}),
        json!({"name": "grpo", "clip_ratio_high": 0.28,
               "corrections": [{"type": "seq-mis", "c": 1.5}, {"type": "geo-rs", "lower": 0.9, "upper": 1.1}]}),
        json!({"name": "ppo", "kl": {"coef": 0.1, "estimator": "k2"},
               "corrections": [{"type": "seq-tis"}, {"type": "mis", "c": 1.6}]}),
        json!({"name": "dppo"}),
        json!({"name": "dppo", "divergence": "binary-kl"}),
        json!({"name": "dppo", "divergence": "topk-tv", "delta_low": 0.05}),
        json!({"name": "dppo", "divergence": "topk-kl", "delta": 0.02}),
        json!({"name": "drpo", "delta": 0.1}),
        json!({"name": "dcmdp", "lambda_0": 0.5, "c": 0.0, "corrections": [{"type": "mis", "c": 1.6}]}),
        json!({"name": "dcmdp", "lambda_0": 0.5, "gating": false, "form": "advantage", "kl": {"coef": 0.1},
               "corrections": [{"type": "geo-rs", "upper": 1.2}]}),
    ]
    .into_iter()
    .map(|mut v| {
        v["loss_agg_mode"] = mode.clone();
        build_algorithm(&serde_json::from_value::<AlgorithmConfig>(v).unwrap())
    })
    .collect()
}

struct Outcome {
    loss: f64,
    grad: Tensor,
    grad_values: Option<Tensor>,
    metrics: Metrics,
}

/// Loss, gradients and merged metrics over the row ranges `parts` (one range: the whole batch,
/// with its own totals).
fn run(algo: &dyn Algorithm, x: &Full, parts: &[(i64, i64)]) -> Outcome {
    let logp = x.logp.detach().copy().set_requires_grad(true);
    let values = x.values.detach().copy().set_requires_grad(true);
    let totals = algo.agg_totals(&x.old, &x.mu, &x.mask);
    let whole = parts.len() == 1;
    let lens = x.mask.sum_dim_intlist(-1, false, Kind::Double);
    let mut loss = 0.0;
    let mut metrics = Metrics::new();
    for &(start, n) in parts.iter().filter(|(_, n)| *n > 0) {
        // Micro-batches are trimmed to their longest response; the unsplit batch keeps its width.
        let t = if whole {
            x.mask.size()[1]
        } else {
            lens.narrow(0, start, n).max().double_value(&[]).max(1.0) as i64
        };
        let cut = |v: &Tensor| v.narrow(0, start, n).narrow(1, 0, t);
        let (lp, v) = (cut(&logp), cut(&values));
        let (old, mu, adv, mask, r) = (
            cut(&x.old),
            cut(&x.mu),
            cut(&x.adv),
            cut(&x.mask),
            cut(&x.ref_),
        );
        let (mk, pk, ov, ret) = (
            cut(&x.mu_topk),
            cut(&x.pi_topk),
            cut(&x.old_values),
            cut(&x.returns),
        );
        let mut batch = PolicyBatch::new(&lp, &old, &mu, &adv, &mask)
            .with_ref(&r)
            .with_topk(&mk, &pk)
            .with_values(&v, &ov, &ret);
        if !whole {
            batch = batch.with_agg_totals(totals);
        }
        let (l, m) = algo.loss(&batch);
        l.backward();
        loss += l.double_value(&[]);
        merge_micro_metrics(&mut metrics, &m);
    }
    Outcome {
        loss,
        grad: logp.grad(),
        grad_values: algo.needs_value_model().then(|| values.grad()),
        metrics,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn split_equals_unsplit(case in policy_case(7, 6, 1.2), cuts in proptest::collection::vec(0i64..8, 1..4)) {
        let x = Full::new(&case.tensors()).map(|t| t.to_kind(Kind::Float));
        let b = case.b;
        let mut bounds: Vec<i64> = cuts.into_iter().map(|c| c.min(b)).collect();
        bounds.extend([0, b]);
        bounds.sort();
        let parts: Vec<(i64, i64)> = bounds.windows(2).map(|w| (w[0], w[1] - w[0])).collect();
        let stats = StepStats::from_logps(&x.old, &x.mu, &x.mask);
        for mode in LossAggMode::ALL {
            for mut algo in algorithms(mode) {
                algo.begin_step(&stats);
                let whole = run(algo.as_ref(), &x, &[(0, b)]);
                let split = run(algo.as_ref(), &x, &parts);
                let what = format!("{} {mode:?} {parts:?}", algo.name());
                prop_assert!((whole.loss - split.loss).abs() <= 1e-5, "{what}: {} vs {}", whole.loss, split.loss);
                prop_assert!(max_abs_diff(&whole.grad, &split.grad) <= 1e-5, "{what}");
                if let (Some(a), Some(b)) = (&whole.grad_values, &split.grad_values) {
                    prop_assert!(max_abs_diff(a, b) <= 1e-5, "{what}");
                }
                prop_assert_eq!(whole.metrics.keys().collect::<Vec<_>>(), split.metrics.keys().collect::<Vec<_>>());
                for (k, v) in &whole.metrics {
                    let s = split.metrics[k];
                    prop_assert!((v - s).abs() <= 1e-5 * (1.0 + v.abs()), "{what}: {k} {v} vs {s}");
                }
            }
        }
    }
}
