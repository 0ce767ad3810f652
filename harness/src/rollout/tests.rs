//! Rollout acceptance: knobs off ⇒ π_old = μ; each knob raises `abs_prob_diff` monotonically;
//! determinism; sampling filters and stop tokens.
use super::*;
use crate::config::{EngineConfig, Precision, QuantScale, RouterKnob, WeightQuant};
use crate::diagnostics::rollout_corr;
use crate::model::{load_model, Qwen3};
use tch::{Device, Kind, Tensor};

/// A tiny preset with weights scaled up from HF's 0.02 init so distributions are peaked, as in a
/// trained model (a near-uniform model hides every discrepancy).
fn peaked(preset: &str, seed: i64) -> Qwen3 {
    let m = load_model(preset, Kind::Float, Device::Cpu, seed).unwrap();
    tch::no_grad(|| {
        for (name, mut p) in m.named_parameters() {
            if !name.contains("norm") {
                let _ = p.g_mul_scalar_(6.0);
            }
        }
    });
    m
}

fn prompts() -> Vec<Vec<i64>> {
    // Different lengths: left padding is exercised.
    (0..8)
        .map(|i| {
            (0..(3 + i % 4))
                .map(|j| 3 + ((i * 7 + j * 5) % 60) as i64)
                .collect()
        })
        .collect()
}

fn params() -> SamplingParams {
    SamplingParams {
        max_new_tokens: 10,
        stop_tokens: vec![2],
        ..SamplingParams::default()
    }
}

/// The trainer's π_old for the engine's rollouts (temperature 1, no graph).
fn trainer_scores(m: &Qwen3, ro: &Rollouts) -> Scored {
    tch::no_grad(|| {
        score_responses(
            m,
            &ro.prompt_ids,
            &ro.prompt_mask,
            &ro.response_ids,
            &ro.response_mask,
            1.0,
            None,
        )
    })
}

/// Knobs off: every token's |π_old − μ| ≤ 1e-5 and, for MoE, the same experts.
fn assert_engine_matches_trainer(preset: &str, ro: &Rollouts, old: &Scored) {
    let diff = (old.logp.exp() - ro.rollout_logp.exp()).abs() * &ro.response_mask;
    let max = diff.max().double_value(&[]);
    assert!(max <= 1e-5, "{preset}: max |π_old − μ| = {max:e}");
    if preset.ends_with("moe") {
        let rc = rollout_corr(
            &old.logp,
            &ro.rollout_logp,
            &ro.response_mask,
            Some((&ro.engine_experts, &old.experts)),
        );
        assert_eq!(rc["rollout_corr/router_mismatch"], 0.0);
    }
}

/// `abs_prob_diff` of an engine built with `cfg` against the trainer `m`, sampling with `seed`.
fn mismatch(m: &Qwen3, cfg: &EngineConfig, seed: i64) -> (f64, Rollouts, Scored) {
    let engine = Engine::new(m, cfg, Device::Cpu).unwrap();
    tch::manual_seed(seed);
    let ro = engine.generate(&prompts(), &params());
    let old = trainer_scores(m, &ro);
    let d = rollout_corr(&old.logp, &ro.rollout_logp, &ro.response_mask, None)
        ["rollout_corr/abs_prob_diff"];
    (d, ro, old)
}

#[test]
fn knobs_off_engine_matches_trainer_per_token() {
    let _rng = crate::rng_lock();
    for preset in ["tiny-qwen3", "tiny-qwen3-moe"] {
        let m = peaked(preset, 1);
        let (_, ro, old) = mismatch(&m, &EngineConfig::default(), 5);
        assert_engine_matches_trainer(preset, &ro, &old);
        assert!(ro.response_mask.sum(Kind::Float).double_value(&[]) > 8.0);
    }
}

fn assert_increasing(name: &str, preset: &str, settings: &[EngineConfig]) {
    let m = peaked(preset, 2);
    let means: Vec<f64> = settings
        .iter()
        .map(|c| (0..3).map(|s| mismatch(&m, c, 10 + s).0).sum::<f64>() / 3.0)
        .collect();
    for w in means.windows(2) {
        assert!(
            w[0] < w[1],
            "{name}: abs_prob_diff not increasing: {means:?}"
        );
    }
}

#[test]
fn each_knob_increases_abs_prob_diff() {
    let _rng = crate::rng_lock();
    let base = EngineConfig::default();
    let with = |f: &dyn Fn(&mut EngineConfig)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    assert_increasing(
        "precision",
        "tiny-qwen3",
        &[
            base.clone(),
            with(&|c| c.precision = Precision::Fp16),
            with(&|c| c.precision = Precision::Bf16),
        ],
    );
    assert_increasing(
        "weight_quant",
        "tiny-qwen3",
        &[
            base.clone(),
            with(&|c| {
                c.weight_quant = WeightQuant::Int8;
                c.quant_scale = QuantScale::PerChannel
            }),
            with(&|c| {
                c.weight_quant = WeightQuant::Fp8E4m3;
                c.quant_scale = QuantScale::PerChannel
            }),
        ],
    );
    assert_increasing(
        "logit_noise",
        "tiny-qwen3",
        &[0.0, 0.05, 0.2, 0.8].map(|s| with(&|c| c.logit_noise = s)),
    );
    assert_increasing(
        "router noise",
        "tiny-qwen3-moe",
        &[0.0, 0.3, 1.0, 3.0].map(|s| {
            with(&|c| {
                c.router = RouterKnob {
                    noise_std: s,
                    precision: None,
                }
            })
        }),
    );
}

#[test]
fn router_noise_flips_experts() {
    let _rng = crate::rng_lock();
    let m = peaked("tiny-qwen3-moe", 3);
    let cfg = EngineConfig {
        router: RouterKnob {
            noise_std: 1.0,
            precision: None,
        },
        ..EngineConfig::default()
    };
    let (_, ro, old) = mismatch(&m, &cfg, 4);
    let rc = rollout_corr(
        &old.logp,
        &ro.rollout_logp,
        &ro.response_mask,
        Some((&ro.engine_experts, &old.experts)),
    );
    assert!(rc["rollout_corr/router_mismatch"] > 0.05, "{rc:?}");
}

#[test]
fn staleness_lags_the_trainer() {
    let _rng = crate::rng_lock();
    let means: Vec<f64> = [0usize, 1, 3]
        .iter()
        .map(|&k| {
            let m = peaked("tiny-qwen3", 4);
            let cfg = EngineConfig {
                staleness: k,
                ..EngineConfig::default()
            };
            let mut engine = Engine::new(&m, &cfg, Device::Cpu).unwrap();
            tch::manual_seed(99);
            // Four "updates": small random steps of the trainer, each followed by a sync.
            for _ in 0..4 {
                tch::no_grad(|| {
                    for (name, mut p) in m.named_parameters() {
                        if !name.contains("norm") {
                            let _ = p.g_add_(&(p.randn_like() * 0.02));
                        }
                    }
                });
                engine.sync(&m);
            }
            assert_eq!(engine.pending().len(), k);
            (0..3)
                .map(|s| {
                    tch::manual_seed(7 + s);
                    let ro = engine.generate(&prompts(), &params());
                    let old = trainer_scores(&m, &ro);
                    rollout_corr(&old.logp, &ro.rollout_logp, &ro.response_mask, None)
                        ["rollout_corr/abs_prob_diff"]
                })
                .sum::<f64>()
                / 3.0
        })
        .collect();
    assert!(means[0] < 1e-5, "{means:?}");
    assert!(means[0] < means[1] && means[1] < means[2], "{means:?}");
}

#[test]
fn same_seed_same_rollouts_different_seed_different() {
    let _rng = crate::rng_lock();
    let m = peaked("tiny-qwen3-moe", 5);
    let cfg = EngineConfig {
        logit_noise: 0.1,
        ..EngineConfig::default()
    };
    let (_, a, _) = mismatch(&m, &cfg, 1);
    let (_, b, _) = mismatch(&m, &cfg, 1);
    let (_, c, _) = mismatch(&m, &cfg, 2);
    assert!(a.response_ids.equal(&b.response_ids));
    assert!(a.rollout_logp.equal(&b.rollout_logp));
    assert!(!a.response_ids.equal(&c.response_ids));
}

#[test]
fn stop_tokens_top_k_and_greedy() {
    let _rng = crate::rng_lock();
    let m = peaked("tiny-qwen3", 6);
    let e = Engine::new(&m, &EngineConfig::default(), Device::Cpu).unwrap();
    // top_k = 1 is greedy.
    let greedy = e.generate(
        &prompts(),
        &SamplingParams {
            temperature: 0.0,
            ..params()
        },
    );
    tch::manual_seed(3);
    let k1 = e.generate(
        &prompts(),
        &SamplingParams {
            top_k: 1,
            ..params()
        },
    );
    assert!(greedy.response_ids.equal(&k1.response_ids));
    // A tiny nucleus is greedy too.
    tch::manual_seed(4);
    let p = e.generate(
        &prompts(),
        &SamplingParams {
            top_p: 1e-6,
            ..params()
        },
    );
    assert!(greedy.response_ids.equal(&p.response_ids));
    // Make every sampled token a stop token: responses have length 1, then padding.
    let all_stop: Vec<i64> = (0..64).collect();
    tch::manual_seed(5);
    let s = e.generate(
        &prompts(),
        &SamplingParams {
            stop_tokens: all_stop,
            pad_token: 0,
            ..params()
        },
    );
    assert_eq!(s.lengths, vec![1; 8]);
    assert!(s.finish.iter().all(|f| *f == FinishReason::Stop));
    assert_eq!(s.response_mask.sum(Kind::Float).double_value(&[]), 8.0);
    assert_eq!(
        s.response_ids
            .narrow(1, 1, 9)
            .abs()
            .sum(Kind::Int64)
            .int64_value(&[]),
        0
    );
    // Without stops every row runs to the length limit.
    let l = e.generate(
        &prompts(),
        &SamplingParams {
            stop_tokens: vec![],
            ..params()
        },
    );
    assert!(l.finish.iter().all(|f| *f == FinishReason::Length));
    assert_eq!(l.lengths, vec![10; 8]);
}

#[test]
fn topk_logprobs_are_reported_and_sorted() {
    let _rng = crate::rng_lock();
    let m = peaked("tiny-qwen3", 8);
    let cfg = EngineConfig {
        topk_logprobs: 5,
        ..EngineConfig::default()
    };
    let e = Engine::new(&m, &cfg, Device::Cpu).unwrap();
    let ro = e.generate(&prompts(), &params());
    let (lp, ids) = ro.topk.unwrap();
    assert_eq!(lp.size(), [8, 10, 5]);
    assert_eq!(ids.size(), [8, 10, 5]);
    let first = lp.select(1, 0);
    assert!(bool::try_from(
        first
            .narrow(1, 0, 4)
            .ge_tensor(&first.narrow(1, 1, 4))
            .all()
    )
    .unwrap());
    // Scoring at those ids with the same weights gives the same log-probs.
    let s = score_responses(
        &m,
        &ro.prompt_ids,
        &ro.prompt_mask,
        &ro.response_ids,
        &ro.response_mask,
        1.0,
        Some(&ids),
    );
    let g = s.gathered.unwrap().select(1, 0);
    assert!((g - first).abs().max().double_value(&[]) < 1e-5);
}

/// GRPO layout: every prompt repeated `g` times in a row.
fn grouped_prompts(g: usize) -> Vec<Vec<i64>> {
    prompts()
        .into_iter()
        .take(4)
        .flat_map(|p| std::iter::repeat_n(p, g))
        .collect()
}

#[test]
fn grouped_prompts_share_prefill_and_still_match_the_trainer() {
    let _rng = crate::rng_lock();
    for preset in ["tiny-qwen3", "tiny-qwen3-moe"] {
        let m = peaked(preset, 2);
        let engine = Engine::new(&m, &EngineConfig::default(), Device::Cpu).unwrap();
        tch::manual_seed(11);
        let ro = engine.generate(&grouped_prompts(3), &params());
        assert_eq!(ro.prompt_ids.size()[0], 12);
        assert_engine_matches_trainer(preset, &ro, &trainer_scores(&m, &ro));
        // Rows of a group sample independently.
        let row = |i: i64| ro.response_ids.get(i);
        let differs = (0..4).any(|g| (1..3).any(|i| !row(3 * g).equal(&row(3 * g + i))));
        assert!(differs, "{preset}: every group sampled identical responses");
    }
}

/// Log-probs, entropy, experts, aux loss and every parameter gradient of the shared-prefix path
/// (grouped rows) equal the plain full-sequence path (the same rows interleaved, so no neighbours
/// share a prompt).
#[test]
fn shared_prefix_scoring_equals_full_forward_with_gradients() {
    let _rng = crate::rng_lock();
    for preset in ["tiny-qwen3", "tiny-qwen3-moe"] {
        let m = peaked(preset, 3);
        let engine = Engine::new(&m, &EngineConfig::default(), Device::Cpu).unwrap();
        tch::manual_seed(4);
        let ro = engine.generate(&grouped_prompts(3), &params());
        // Grouped row i = prompt i/3, copy i%3; interleaved row j = copy j/4 of prompt j%4.
        let perm: Vec<i64> = (0..12).map(|j| (j % 4) * 3 + j / 4).collect();
        let perm = Tensor::from_slice(&perm);
        let sel = |t: &Tensor| t.index_select(0, &perm);
        assert!(score::prompt_groups(&ro.prompt_ids, &ro.prompt_mask).is_some());
        assert!(score::prompt_groups(&sel(&ro.prompt_ids), &sel(&ro.prompt_mask)).is_none());
        let run = |pi: &Tensor, pm: &Tensor, ri: &Tensor, rm: &Tensor| {
            let mut m = peaked(preset, 3);
            m.set_requires_grad(true);
            let s = score_responses(&m, pi, pm, ri, rm, 0.7, None);
            let loss = (&s.logp * rm).sum(Kind::Float) - (&s.entropy * rm).sum(Kind::Float);
            let loss = match &s.aux_loss {
                Some(aux) => loss + aux * 10.0,
                None => loss,
            };
            loss.backward();
            let grads: Vec<Tensor> = m.parameters().iter().map(|p| p.grad().copy()).collect();
            (s, grads)
        };
        let (a, ga) = run(
            &ro.prompt_ids,
            &ro.prompt_mask,
            &ro.response_ids,
            &ro.response_mask,
        );
        let (b, gb) = run(
            &sel(&ro.prompt_ids),
            &sel(&ro.prompt_mask),
            &sel(&ro.response_ids),
            &sel(&ro.response_mask),
        );
        let close = |x: &Tensor, y: &Tensor, what: &str| {
            let d = (x - y).abs().max().double_value(&[]);
            let s = y.abs().max().double_value(&[]).max(1.0);
            assert!(d <= 1e-5 * s, "{preset} {what}: max diff {d:e}");
        };
        close(&sel(&a.logp), &b.logp, "logp");
        close(&sel(&a.entropy), &b.entropy, "entropy");
        for (x, y) in a.experts.iter().zip(&b.experts) {
            assert!(sel(x).equal(y), "{preset}: experts differ");
        }
        assert_eq!(a.aux_loss.is_some(), preset.ends_with("moe"));
        if let (Some(x), Some(y)) = (&a.aux_loss, &b.aux_loss) {
            close(x, y, "aux loss");
        }
        for (x, y) in ga.iter().zip(&gb) {
            close(x, y, "gradient");
        }
    }
}
