//! Micro-batched updates (`train.micro_batch_tokens`), fp32 on CPU: for every algorithm ×
//! `loss_agg_mode`, on real rollouts with ragged response lengths and an engine whose logits
//! differ from the trainer's (so the corrections weigh and reject), the micro-batched
//! forward/backward gives the unsplit mini-batch's loss, metrics and gradients (policy and critic)
//! within 1e-5; a micro-batched update still takes one AdamW step per mini-batch; and a short
//! micro-batched run's metrics rows equal the unsplit run's.
use super::batch::Batch;
use super::step::Updated;
use super::tests::{fast_config, read_jsonl, train};
use super::trainer::{step_seed, Trainer};
use crate::config::RunConfig;
use crate::objective::{build_algorithm, LossAggMode, StepStats};
use std::collections::BTreeSet;
use tch::{Kind, Tensor};

const TOL: f64 = 1e-5;

/// One configuration per algorithm, with the sequence-level corrections, the KL penalty and
/// DPPO's top-K divergence among them.
const ALGORITHMS: [&str; 6] = [
    "{ name: grpo, kl: { coef: 0.1 }, corrections: [ { type: seq-tis }, { type: seq-mis, c: 1.3 }, \
     { type: geo-rs, lower: 0.97, upper: 1.03 } ] }",
    "{ name: ppo, kl: { coef: 0.05 }, corrections: [ { type: tis }, { type: mis, c: 1.5 } ] }",
    "{ name: dppo }",
    "{ name: dppo, divergence: topk-kl }",
    "{ name: drpo, delta: 0.5 }",
    "{ name: dcmdp, c: 0.0, lambda_0: 0.5, corrections: [ { type: geo-rs, upper: 1.05 } ] }",
];

/// `fast_config` with the engine's logits noised (μ ≠ π_old) and top-K log-probs reported.
fn config(algorithm: &str, steps: usize) -> RunConfig {
    fast_config("{ name: grpo }", steps)
        .edit(|c| {
            c.rollout.engine.logit_noise = 0.3;
            if algorithm.contains("topk") {
                c.rollout.engine.topk_logprobs = 4;
            }
            c.algorithm = serde_yaml::from_str(algorithm).unwrap();
        })
        .unwrap()
}

/// With `mode` spliced into the algorithm's YAML.
fn with_mode(algorithm: &str, mode: LossAggMode) -> String {
    let mode = serde_json::to_value(mode).unwrap();
    format!(
        "{{ loss_agg_mode: {}, {}",
        mode.as_str().unwrap(),
        &algorithm[1..]
    )
}

/// The policy's (and the critic's) gradients, copied.
fn grads(t: &Trainer) -> Vec<Tensor> {
    let mut g: Vec<Tensor> = t.actor.model.trainable_parameters();
    if let Some(c) = &t.critic {
        g.extend(c.parameters());
    }
    g.iter().map(|p| p.grad().copy()).collect()
}

fn zero_grad(t: &mut Trainer) {
    t.actor.zero_grad();
    if let Some(c) = &mut t.critic {
        c.zero_grad();
    }
}

/// Step 1's update input, and a mini-batch of it: 16 of the 32 rows, shuffled.
fn mini_batch(t: &mut Trainer) -> (Batch, StepStats) {
    tch::manual_seed(step_seed(7, 1, 1));
    let c = t.collect(1).unwrap();
    let scores = t.score(&c);
    let stats = scores.stats(&c);
    let adv = t.algo.advantages(&scores.advantage_input(&c, 4));
    let (batch, _) = scores.into_batch(&c, adv);
    let idx: Vec<i64> = (0..16).map(|i| (i * 7 + 3) % 32).collect();
    (batch.select(Some(&Tensor::from_slice(&idx))), stats)
}

fn max_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    let d = a.iter().zip(b).map(|(x, y)| {
        let d = (x - y).abs().max().double_value(&[]);
        assert!(d.is_finite());
        d
    });
    d.fold(0.0, f64::max)
}

#[test]
fn micro_batched_gradients_equal_the_unsplit_mini_batch() {
    let _rng = crate::rng_lock();
    tch::set_num_threads(1);
    for alg in ALGORITHMS {
        let cfg = config(alg, 1);
        let mut t = Trainer::new(&cfg, 7, false).unwrap();
        let (mb, stats) = mini_batch(&mut t);
        let ext = mb.rows.extents();
        let lens: BTreeSet<usize> = ext.iter().map(|e| e.1).collect();
        assert!(lens.len() > 1, "{alg}: ragged responses {ext:?}");
        let width = ext.iter().map(|e| e.0 + e.1).max().unwrap();
        for mode in LossAggMode::ALL {
            let mode_cfg = config(&with_mode(alg, mode), 1);
            t.algo = build_algorithm(&mode_cfg.algorithm);
            t.algo.begin_step(&stats);
            if alg.contains("seq-mis") {
                let kept = t
                    .algo
                    .agg_totals(&mb.old_logp, &mb.rollout_logp, &mb.rows.mask);
                let tokens = mb.rows.mask.sum(Kind::Double).double_value(&[]);
                assert!(
                    kept.tokens < tokens && kept.tokens > 0.0,
                    "{alg}: some rejected"
                );
            }
            zero_grad(&mut t);
            let whole = t.forward_backward(&mb, None, false);
            let g_whole = grads(&t);
            // Two rows per pass; then every row its own pass (each longer than the budget).
            for budget in [2 * width, 1] {
                zero_grad(&mut t);
                let split = t.forward_backward_micro(&mb, budget, false);
                let what = format!("{alg} {mode:?} budget {budget}");
                let passes = if budget == 1 { 16..=16 } else { 2..=8 };
                assert!(
                    passes.contains(&split.passes),
                    "{what}: {} passes",
                    split.passes
                );
                let d = max_diff(&g_whole, &grads(&t));
                assert!(d <= TOL, "{what}: gradient differs by {d}");
                assert!((whole.loss - split.loss).abs() <= TOL, "{what}: loss");
                let keys = |m: &crate::objective::Metrics| m.keys().cloned().collect::<Vec<_>>();
                assert_eq!(keys(&whole.metrics), keys(&split.metrics), "{what}");
                for (k, v) in &whole.metrics {
                    let s = split.metrics[k];
                    assert!(
                        (v - s).abs() <= TOL * (1.0 + v.abs()),
                        "{what}: {k} {v} vs {s}"
                    );
                }
            }
        }
    }
}

#[test]
fn micro_batched_update_takes_one_adamw_step_per_mini_batch() {
    let _rng = crate::rng_lock();
    tch::set_num_threads(1);
    let cfg = config(ALGORITHMS[1], 1)
        .edit(|c| {
            c.train.ppo_epochs = 2;
            c.train.micro_batch_tokens = Some(30);
        })
        .unwrap();
    let mut t = Trainer::new(&cfg, 7, false).unwrap();
    assert!(!t.fused_old_logp());
    tch::manual_seed(step_seed(7, 1, 1));
    let c = t.collect(1).unwrap();
    let scores = t.score(&c);
    let adv = t.algo.advantages(&scores.advantage_input(&c, 4));
    let (batch, fused) = scores.into_batch(&c, adv);
    let before = t.actor.updates();
    let Updated::Done(u) = t.update(1, &batch, fused, 1.0, 1e-3) else {
        panic!("diverged")
    };
    assert_eq!(t.actor.updates() - before, 2 * 2, "epochs × mini-batches");
    // 32 rows, ≥ 4 tokens each: at most 7 rows per 30-token pass, so ≥ 3 passes per mini-batch.
    assert!(u.means["perf/micro_batches"] >= 4.0 * 3.0, "{:?}", u.means);
    assert!(u.grad_norm > 0.0 && u.means["critic/vf_loss"].is_finite());
}

/// Steps 1–2 with and without micro-batches: the same metrics rows (timings aside).
#[test]
fn micro_batched_run_has_the_unsplit_runs_metrics() {
    let _rng = crate::rng_lock();
    for alg in [ALGORITHMS[1], ALGORITHMS[5]] {
        let plain = config(alg, 2);
        let micro = config(alg, 2)
            .edit(|c| c.train.micro_batch_tokens = Some(24))
            .unwrap();
        let rows = |cfg: &RunConfig| {
            let dir = tempfile::tempdir().unwrap();
            train(cfg, 3, dir.path());
            read_jsonl(&dir.path().join("metrics.jsonl"))
        };
        let (a, b) = (rows(&plain), rows(&micro));
        assert_eq!(a.len(), 2);
        assert_eq!(a.len(), b.len());
        for (ra, rb) in a.iter().zip(&b) {
            assert!(!ra.contains_key("perf/micro_batches"));
            assert!(rb["perf/micro_batches"].as_f64().unwrap() > 2.0, "{rb:?}");
            let timing = |k: &str| k.starts_with("timing_s/") || k == "perf/throughput";
            for (k, va) in ra.iter().filter(|(k, _)| !timing(k)) {
                let (x, y) = (va.as_f64(), rb[k].as_f64());
                match (x, y) {
                    (Some(x), Some(y)) => {
                        assert!(
                            (x - y).abs() <= TOL * (1.0 + x.abs()),
                            "{alg} {k}: {x} vs {y}"
                        )
                    }
                    _ => assert_eq!(va, &rb[k], "{alg} {k}"),
                }
            }
        }
    }
}

/// Scoring (π_old, π_ref, V_old) with `train.micro_batch_tokens` runs in parts of that many
/// tokens and reassembles them: the same `[N, R]` tensors as one pass (MoE: the same experts on
/// every response token), and no part longer than the budget.
#[test]
fn scoring_in_parts_equals_one_pass() {
    let _rng = crate::rng_lock();
    tch::set_num_threads(1);
    for (model, alg) in [
        ("tiny-qwen3", ALGORITHMS[1]),
        ("tiny-qwen3-moe", ALGORITHMS[0]),
    ] {
        let plain = config(alg, 1)
            .edit(|c| c.model.name = model.into())
            .unwrap();
        let micro = plain
            .clone()
            .edit(|c| c.train.micro_batch_tokens = Some(20))
            .unwrap();
        let scores = |cfg: &RunConfig| {
            let t = Trainer::new(cfg, 5, false).unwrap();
            tch::manual_seed(step_seed(5, 1, 1));
            let c = t.collect(1).unwrap();
            let parts = super::batch::Rows::of(&c.rollouts).parts(20).len();
            (t.score(&c), c, parts)
        };
        let (a, ca, parts) = scores(&plain);
        let (b, _, _) = scores(&micro);
        assert!(parts >= 3, "{model}: {parts} parts");
        let mask = &ca.rollouts.response_mask;
        let close = |x: &Tensor, y: &Tensor, what: &str| {
            assert_eq!(x.size(), y.size(), "{model} {what}");
            let d = ((x - y) * mask).abs().max().double_value(&[]);
            assert!(d <= TOL, "{model} {what}: max |Δ| {d}");
        };
        close(&a.old.logp, &b.old.logp, "π_old");
        close(&a.old.entropy, &b.old.entropy, "entropy");
        let opt = |x: &Option<Tensor>| x.as_ref().expect("scored").shallow_clone();
        close(&opt(&a.ref_logp), &opt(&b.ref_logp), "π_ref");
        if model == "tiny-qwen3" {
            close(&opt(&a.old_values), &opt(&b.old_values), "V_old");
        }
        assert_eq!(a.old.experts.len(), b.old.experts.len());
        for (x, y) in a.old.experts.iter().zip(&b.old.experts) {
            let on = mask.unsqueeze(-1).gt(0.0);
            assert!(
                x.masked_select(&on).equal(&y.masked_select(&on)),
                "{model} experts"
            );
        }
    }
}
