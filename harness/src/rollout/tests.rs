//! Rollout acceptance: knobs off ⇒ π_old = μ; each knob raises `abs_prob_diff` monotonically;
//! determinism; sampling filters and stop tokens.
use super::*;
use crate::config::{EngineConfig, Precision, QuantScale, RouterKnob, WeightQuant};
use crate::diagnostics::rollout_corr;
use crate::model::{load_model, Qwen3};
use tch::{Device, Kind, Tensor};

/// Held by every test here for its whole run: most seed libtorch's global RNG and compare two
/// seeded generations, which a test drawing from it alongside would break.
fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

/// The trainer's scores of the engine's rollouts at temperature 1 (with a graph in grad mode),
/// with the log-probs at `gather` ids when given.
fn scores(m: &Qwen3, ro: &Rollouts, gather: Option<&Tensor>) -> Scored {
    score_responses(
        m,
        &ro.prompt_ids,
        &ro.prompt_mask,
        &ro.response_ids,
        &ro.response_mask,
        1.0,
        gather,
    )
}

/// The trainer's π_old for the engine's rollouts (temperature 1, no graph).
fn trainer_scores(m: &Qwen3, ro: &Rollouts) -> Scored {
    tch::no_grad(|| scores(m, ro, None))
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
    let _rng = rng_lock();
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
    let _rng = rng_lock();
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
    let _rng = rng_lock();
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
    let _rng = rng_lock();
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
    let _rng = rng_lock();
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
    let _rng = rng_lock();
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
    let _rng = rng_lock();
    let _rng = crate::rng_lock();
    let m = peaked("tiny-qwen3", 8);
    let cfg = EngineConfig {
        topk_logprobs: 5,
        ..EngineConfig::default()
    };
    let e = Engine::new(&m, &cfg, Device::Cpu).unwrap();
    let ro = e.generate(&prompts(), &params());
    let (lp, ids) = ro.topk.as_ref().unwrap();
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
    let s = scores(&m, &ro, Some(ids));
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
    let _rng = rng_lock();
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
    let _rng = rng_lock();
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

/// `rollout.max_num_seqs`: every wave size gives the same rows as one wave holding them all:
/// tokens, masks, finish reasons, top-K ids and experts bitwise; log-probs to 1e-5 (a wave of
/// one row runs its matmuls as matrix-vector products, which sum in another order: measured
/// 5.7e-6 on the CPU).
#[test]
fn waves_give_the_same_rollouts_as_one_batch() {
    let _rng = rng_lock();
    let _rng = crate::rng_lock();
    for preset in ["tiny-qwen3", "tiny-qwen3-moe"] {
        let m = peaked(preset, 3);
        let ps: Vec<Vec<i64>> = grouped_prompts(4).into_iter().chain(prompts()).collect();
        let run = |w: usize| {
            tch::manual_seed(11);
            let p = SamplingParams {
                max_num_seqs: Some(w),
                logit_noise: 0.05,
                topk_logprobs: 3,
                top_p: 0.95,
                ..params()
            };
            generate(&m, &ps, &p)
        };
        let one = run(ps.len());
        assert!(
            one.lengths.iter().any(|&l| l < 10),
            "{preset}: some rows stop early"
        );
        assert!(
            one.lengths.iter().any(|&l| l > 1),
            "{preset}: some rows continue"
        );
        for w in [1, 3, 7] {
            let ro = run(w);
            let tag = format!("{preset}, max_num_seqs {w}");
            assert!(ro.prompt_ids.equal(&one.prompt_ids), "{tag}");
            assert!(ro.response_ids.equal(&one.response_ids), "{tag}: tokens");
            assert!(ro.response_mask.equal(&one.response_mask), "{tag}");
            assert_eq!(ro.finish, one.finish, "{tag}");
            let d = (&ro.rollout_logp - &one.rollout_logp)
                .abs()
                .max()
                .double_value(&[]);
            assert!(d <= 1e-5, "{tag}: log-probs differ by {d:e}");
            let (tv, ti) = ro.topk.as_ref().unwrap();
            assert!(ti.equal(&one.topk.as_ref().unwrap().1), "{tag}: top-K ids");
            assert!(
                tv.allclose(&one.topk.as_ref().unwrap().0, 0.0, 1e-5, true),
                "{tag}"
            );
            for (a, b) in ro.engine_experts.iter().zip(&one.engine_experts) {
                assert!((a * &ro.response_mask.unsqueeze(-1).to_kind(Kind::Int64))
                    .equal(&(b * &one.response_mask.unsqueeze(-1).to_kind(Kind::Int64))));
            }
        }
        // Another seed gives other tokens.
        tch::manual_seed(12);
        let p = SamplingParams {
            max_num_seqs: Some(3),
            ..params()
        };
        assert!(!generate(&m, &ps, &p).response_ids.equal(&one.response_ids));
    }
}

/// Unset `max_num_seqs`: finished rows leave the batch, and each live row still gets exactly the
/// draws it got when every row was decoded to the end: the same rollouts as the full-batch
/// sampler (`keep_finished_rows`), and as decoding each row alone with its slice of the global
/// generator's `[N, V]` draws and no KV cache.
#[test]
fn dropping_finished_rows_keeps_the_full_batch_draws() {
    let _rng = rng_lock();
    let _rng = crate::rng_lock();
    let m = peaked("tiny-qwen3", 4);
    let ps = prompts();
    let p = params();
    tch::manual_seed(21);
    let ro = generate(&m, &ps, &p);
    assert!(
        ro.lengths.iter().any(|&l| l < p.max_new_tokens),
        "rows stop early"
    );
    tch::manual_seed(21);
    let full = generate(
        &m,
        &ps,
        &SamplingParams {
            keep_finished_rows: true,
            ..p.clone()
        },
    );
    assert!(ro.response_ids.equal(&full.response_ids));
    assert!(ro.response_mask.equal(&full.response_mask));
    assert_eq!(ro.finish, full.finish);
    let d = (&ro.rollout_logp - &full.rollout_logp)
        .abs()
        .max()
        .double_value(&[]);
    assert!(d <= 1e-6, "{d:e}");
    // Reference: the exponential race per row, on the draws of every decode step.
    let n = ps.len() as i64;
    let v = m.cfg.vocab_size as i64;
    tch::manual_seed(21);
    let draws: Vec<Tensor> = (0..ro.lengths.iter().max().copied().unwrap())
        .map(|_| Tensor::empty([n, v], (Kind::Float, Device::Cpu)).exponential_(1.0))
        .collect();
    tch::no_grad(|| {
        for (i, prompt) in ps.iter().enumerate() {
            let mut seq = prompt.clone();
            for (t, q) in draws.iter().enumerate().take(ro.lengths[i]) {
                let ids = Tensor::from_slice(&seq).unsqueeze(0);
                let logits = m
                    .forward(&ids, None, None)
                    .logits
                    .select(1, -1)
                    .to_kind(Kind::Float);
                let probs = logits.softmax(-1, Kind::Float);
                let tok = (probs / q.get(i as i64).unsqueeze(0))
                    .argmax(-1, false)
                    .int64_value(&[0]);
                assert_eq!(
                    tok,
                    ro.response_ids.int64_value(&[i as i64, t as i64]),
                    "row {i} t {t}"
                );
                seq.push(tok);
            }
        }
    });
}

#[test]
fn kv_cache_with_capacity_allocates_once() {
    let _rng = rng_lock();
    let mut c = crate::model::KvCache::with_capacity(2, 12);
    let kv = || Tensor::ones([3, 2, 5, 4], (Kind::Float, Device::Cpu));
    for l in 0..2 {
        let _ = c.append(l, kv(), kv());
    }
    c.advance(5);
    // 2 layers × (k, v) × 3 rows × 2 heads × 12 positions × 4 dims × 4 bytes.
    assert_eq!(c.bytes(), 2 * 2 * 3 * 2 * 12 * 4 * 4);
    let one = || Tensor::ones([3, 2, 1, 4], (Kind::Float, Device::Cpu));
    for l in 0..2 {
        let (k, _) = c.append(l, one(), one());
        assert_eq!(k.size()[2], 6);
    }
    assert_eq!(
        c.bytes(),
        2 * 2 * 3 * 2 * 12 * 4 * 4,
        "no regrowth within the capacity"
    );
    c.select_rows(&Tensor::from_slice(&[0i64, 2]));
    assert_eq!(
        c.bytes(),
        2 * 2 * 2 * 2 * 12 * 4 * 4,
        "dropped rows free their share"
    );
}

/// Tokens/s of the sampler with and without dropping finished rows, on a CPU workload with mixed
/// response lengths (a 4-layer 512-wide model, 64 rows, ≤ 64 new tokens, stop tokens that end
/// about one row in 16 per step). Run:
/// `cargo test --workspace --lib bench_dropping_finished_rows -- --ignored --nocapture`
#[test]
#[ignore = "timing; run by hand"]
fn bench_dropping_finished_rows() {
    let _rng = rng_lock();
    let _rng = crate::rng_lock();
    let mut cfg = crate::model::model_config("tiny-qwen3").unwrap();
    cfg.hidden_size = 512;
    cfg.intermediate_size = 1536;
    cfg.num_attention_heads = 8;
    cfg.num_key_value_heads = 4;
    cfg.head_dim = 64;
    let m = Qwen3::from_source(
        &cfg,
        &mut crate::model::RandomInit::new(0, Kind::Float, Device::Cpu),
    )
    .unwrap();
    let ps: Vec<Vec<i64>> = (0..64).map(|i| vec![5 + i % 50, 7, 9, 11]).collect();
    let p = SamplingParams {
        max_new_tokens: 64,
        stop_tokens: vec![60, 61, 62, 63],
        ..SamplingParams::default()
    };
    let time = |keep: bool| {
        tch::manual_seed(1);
        let t = std::time::Instant::now();
        let ro = generate(
            &m,
            &ps,
            &SamplingParams {
                keep_finished_rows: keep,
                ..p.clone()
            },
        );
        let toks: usize = ro.lengths.iter().sum();
        (toks as f64 / t.elapsed().as_secs_f64(), ro)
    };
    let (mut drop, mut keep) = (vec![], vec![]);
    for _ in 0..3 {
        let (a, ra) = time(true);
        let (b, rb) = time(false);
        assert!(ra.response_ids.equal(&rb.response_ids));
        keep.push(a);
        drop.push(b);
    }
    let (_, ro) = time(false);
    let mut lens = ro.lengths.clone();
    lens.sort();
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, k) = (med(&mut drop), med(&mut keep));
    println!(
        "response lengths: min {} median {} max {} mean {:.1}",
        lens[0],
        lens[lens.len() / 2],
        lens[lens.len() - 1],
        lens.iter().sum::<usize>() as f64 / lens.len() as f64
    );
    println!(
        "tokens/s (median of 3, threads {}): keep finished rows {k:.0}, drop them {d:.0}: {:.2}x",
        tch::get_num_threads(),
        d / k
    );
}

/// `peaked(preset, 5)` with rank-4 adapters (α 8, seed 9) on `targets`.
fn with_lora(preset: &str, targets: &[&str]) -> Qwen3 {
    let mut m = peaked(preset, 5);
    let lora = crate::model::lora::LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: targets.iter().map(|s| s.to_string()).collect(),
    };
    m.attach_lora(&lora, 9).unwrap();
    m
}

/// Add N(0, by²) noise to every adapter's `B` (a fresh adapter is a no-op).
fn nudge(m: &Qwen3, by: f64) {
    tch::no_grad(|| {
        for (n, mut t) in m.lora_parameters() {
            if n.contains("lora_B") {
                let _ = t.g_add_(&(t.randn_like() * by));
            }
        }
    })
}

/// LoRA with an engine at the base's precision and no quantisation: the engine's base tensors
/// are the trainer's (same storage), it holds only adapters, staleness queues adapter snapshots,
/// and it samples what the trainer scores.
#[test]
fn lora_engine_shares_the_frozen_base() {
    let _rng = rng_lock();
    let _rng = crate::rng_lock();
    let m = with_lora("tiny-qwen3", crate::model::lora::LORA_TARGETS);
    nudge(&m, 0.3);
    let cfg = EngineConfig {
        staleness: 1,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(&m, &cfg, Device::Cpu).unwrap();
    assert!(e.shares_base());
    let sizes = assert_shares_base(&e, &m);
    let (shared, base_bytes) = (sizes.len(), sizes.iter().sum::<usize>() * 4);
    assert_eq!(shared, m.named_parameters().len());
    let own: usize = e.named_weights().iter().map(|(_, t)| t.numel() * 4).sum();
    assert!(e.named_weights().iter().all(|(n, _)| n.contains(".lora_")));
    assert!(
        own * 5 < base_bytes,
        "engine holds {own} B of adapters vs a {base_bytes} B base"
    );
    // Knobs off: μ equals the trainer's π_old.
    tch::manual_seed(3);
    let ro = e.generate(&prompts(), &params());
    assert_engine_matches_trainer("tiny-qwen3", &ro, &trainer_scores(&m, &ro));
    // Staleness 1: a sync queues the adapters; the engine keeps sampling the old ones.
    let before = e.weights();
    nudge(&m, 0.3);
    e.sync(&m);
    assert_eq!(e.pending().len(), 1);
    assert_eq!(
        e.pending()[0].len(),
        e.named_weights().len(),
        "adapter snapshots only"
    );
    assert!(e.weights().iter().zip(&before).all(|(a, b)| a.equal(b)));
    tch::manual_seed(3);
    assert!(e
        .generate(&prompts(), &params())
        .response_ids
        .equal(&ro.response_ids));
    e.sync(&m);
    let now: Vec<Tensor> = m.lora_parameters().into_iter().map(|(_, t)| t).collect();
    assert!(e.pending()[0].iter().zip(&now).all(|(a, b)| a.equal(b)));
    assert!(
        !e.weights().iter().zip(&before).all(|(a, b)| a.equal(b)),
        "first snapshot applied"
    );
    // Another precision or quantisation needs its own copy.
    for c in [
        EngineConfig {
            precision: Precision::Bf16,
            ..EngineConfig::default()
        },
        EngineConfig {
            weight_quant: WeightQuant::Int8,
            ..EngineConfig::default()
        },
    ] {
        let e = Engine::new(&m, &c, Device::Cpu).unwrap();
        assert!(!e.shares_base());
        let (a, b) = (
            &e.model().named_parameters()[0].1,
            &m.named_parameters()[0].1,
        );
        assert_ne!(a.data_ptr(), b.data_ptr());
    }
}

/// LoRA on MoE experts: a shared-base engine holds detached copies of the expert adapters (the
/// stacked base experts are the trainer's) and samples what the trainer scores; a quantised engine
/// holds the quantised merged experts `Wₑ + (α/r)·Bₑ Aₑ`.
#[test]
fn lora_engine_on_moe_experts_shares_the_base_or_syncs_merged_weights() {
    let _rng = rng_lock();
    let _rng = crate::rng_lock();
    let m = with_lora(
        "tiny-qwen3-moe",
        &["q_proj", "gate_proj", "up_proj", "down_proj"],
    );
    nudge(&m, 0.3);
    let mut e = Engine::new(&m, &EngineConfig::default(), Device::Cpu).unwrap();
    assert!(e.shares_base());
    assert_shares_base(&e, &m);
    let expert = "model.layers.1.mlp.experts.down_proj.lora_B.weight";
    let of = |named: Vec<(String, Tensor)>| named.into_iter().find(|(n, _)| n == expert).unwrap().1;
    assert!(of(e.named_weights()).equal(&of(m.lora_parameters())));
    assert_ne!(
        of(e.named_weights()).data_ptr(),
        of(m.lora_parameters()).data_ptr(),
        "the engine's adapters are its own"
    );
    tch::manual_seed(3);
    let ro = e.generate(&prompts(), &params());
    assert_engine_matches_trainer("tiny-qwen3-moe", &ro, &trainer_scores(&m, &ro));
    nudge(&m, 0.3);
    assert!(!of(e.named_weights()).equal(&of(m.lora_parameters())));
    e.sync(&m);
    assert!(of(e.named_weights()).equal(&of(m.lora_parameters())));

    let cfg = EngineConfig {
        weight_quant: WeightQuant::Int8,
        ..EngineConfig::default()
    };
    let q = Engine::new(&m, &cfg, Device::Cpu).unwrap();
    assert!(!q.shares_base() && !q.model().has_lora());
    let merged: std::collections::HashMap<String, Tensor> =
        m.merged_named_parameters().into_iter().collect();
    let base: std::collections::HashMap<String, Tensor> =
        m.named_parameters().into_iter().collect();
    let mut experts = 0;
    for (n, t) in q.model().effective_named_parameters() {
        let want = if discrepancy::is_quantised(&n) {
            discrepancy::fake_quant(&merged[&n], WeightQuant::Int8, QuantScale::PerTensor)
        } else {
            merged[&n].shallow_clone()
        };
        assert!(
            t.equal(&want),
            "{n}: the quantised engine holds the merged weights"
        );
        if n.contains(".experts.") {
            experts += 1;
            assert!(!merged[&n].equal(&base[&n]), "{n}: adapters merged in");
        }
    }
    assert_eq!(experts, 3 * m.cfg.num_hidden_layers);
}

/// A quantised engine keeps its linear weights in 1-byte storage and samples exactly what an
/// engine holding the fake-quantised weights in its own precision samples.
#[test]
fn one_byte_engine_equals_the_fake_quantised_copy() {
    let _rng = rng_lock();
    use crate::model::RandomInit;
    let _rng = crate::rng_lock();
    for preset in ["tiny-qwen3", "tiny-qwen3-moe"] {
        let m = peaked(preset, 6);
        for (q, s, want_kind) in [
            (
                WeightQuant::Fp8E4m3,
                QuantScale::PerChannel,
                Kind::Float8e4m3fn,
            ),
            (WeightQuant::Int8, QuantScale::PerTensor, Kind::Int8),
        ] {
            let cfg = EngineConfig {
                precision: Precision::Bf16,
                weight_quant: q,
                quant_scale: s,
                ..EngineConfig::default()
            };
            let e = Engine::new(&m, &cfg, Device::Cpu).unwrap();
            // The reference: bf16 weights holding the fake-quantised values.
            let r = Qwen3::from_source(&m.cfg, &mut RandomInit::zeros(Kind::BFloat16, Device::Cpu))
                .unwrap();
            tch::no_grad(|| {
                for ((name, mut dst), (_, src)) in
                    r.named_parameters().into_iter().zip(m.named_parameters())
                {
                    if discrepancy::is_quantised(&name) {
                        dst.copy_(&discrepancy::fake_quant(&src, q, s));
                    } else {
                        dst.copy_(&src);
                    }
                }
            });
            let tag = format!("{preset} {q:?} {s:?}");
            let (mut one_byte, mut bf16) = (0, 0);
            for ((name, a), (_, b)) in e
                .model()
                .named_parameters()
                .iter()
                .zip(r.named_parameters())
            {
                if discrepancy::is_quantised(name) {
                    assert_eq!(a.kind(), want_kind, "{tag}: {name}");
                    one_byte += a.numel() * a.kind().elt_size_in_bytes();
                    bf16 += b.numel() * b.kind().elt_size_in_bytes();
                }
            }
            assert_eq!(2 * one_byte, bf16, "{tag}: 1 byte per weight");
            let eff = e.model().effective_named_parameters();
            for ((name, a), (_, b)) in eff.iter().zip(r.named_parameters()) {
                assert!(a.equal(&b), "{tag}: dequantised {name} = fake-quantised");
            }
            let (own, reference) = (
                e.own_weight_bytes(),
                r.named_parameters()
                    .iter()
                    .map(|(_, t)| t.numel() * 2)
                    .sum::<usize>(),
            );
            assert!(
                (own as f64) < 0.6 * reference as f64,
                "{tag}: {own} vs {reference} B"
            );
            let p = params();
            tch::manual_seed(8);
            let a = e.generate(&prompts(), &p);
            tch::manual_seed(8);
            let b = generate(&r, &prompts(), &p);
            assert!(a.response_ids.equal(&b.response_ids), "{tag}: tokens");
            assert!(a.rollout_logp.equal(&b.rollout_logp), "{tag}: log-probs");
            for (x, y) in a.engine_experts.iter().zip(&b.engine_experts) {
                assert!(x.equal(y), "{tag}: experts");
            }
        }
    }
}

/// Every base parameter of the engine's model is the trainer's tensor (no second copy); their
/// element counts.
fn assert_shares_base(e: &Engine, m: &Qwen3) -> Vec<usize> {
    let engine = e.model().named_parameters();
    engine
        .iter()
        .zip(m.named_parameters())
        .map(|((n, a), (_, b))| {
            assert_eq!(a.data_ptr(), b.data_ptr(), "{n} is a second copy");
            a.numel()
        })
        .collect()
}

/// Generation runs in LibTorch's inference mode; what it returns must still serve the trainer's
/// graph (autograd refuses to save inference tensors for backward), and grad mode comes back.
#[test]
fn rollouts_made_in_inference_mode_feed_a_backward() {
    let _rng = rng_lock();
    // Nothing here touches libtorch's global RNG, which tests running alongside seed and draw
    // from: weights from a formula, greedy sampling.
    let wave = |n: i64, phase: f64| {
        (Tensor::arange(n, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float) * 0.37 + phase).sin()
    };
    let cfg = crate::model::presets::preset("tiny-qwen3").unwrap();
    let mut zeros = crate::model::RandomInit::zeros(Kind::Float, Device::Cpu);
    let mut m = Qwen3::from_source(&cfg, &mut zeros).unwrap();
    tch::no_grad(|| {
        for (i, (name, mut w)) in m.named_parameters().into_iter().enumerate() {
            if !name.contains("norm") {
                let v = wave(w.numel() as i64, i as f64) * 0.5;
                w.copy_(&v.view(w.size().as_slice()));
            }
        }
    });
    m.set_requires_grad(true);
    let p = SamplingParams {
        temperature: 0.0,
        topk_logprobs: 2,
        ..params()
    };
    let ro = sampler::generate(&m, &prompts(), &p);
    assert!(!ro.rollout_logp.requires_grad());
    let table = (wave(64 * 4, 0.0).view([64, 4])).set_requires_grad(true);
    let (topk_lp, topk_ids) = ro.topk.as_ref().unwrap();
    // Each op saves the rollout tensor it is given (indices, a factor) for its backward.
    let loss = Tensor::embedding(&table, &ro.response_ids, -1, false, false).sum(Kind::Float)
        + Tensor::embedding(&table, &ro.prompt_ids, -1, false, false).sum(Kind::Float)
        + Tensor::embedding(&table, topk_ids, -1, false, false).sum(Kind::Float)
        + (table.sum(Kind::Float) * &ro.rollout_logp * &ro.response_mask).sum(Kind::Float)
        + (table.sum(Kind::Float) * topk_lp.clamp_min(-1e3)).sum(Kind::Float);
    loss.backward();
    assert!(table.grad().defined());
    // The trainer scores the same rollouts (with a graph) as before.
    let scored = scores(&m, &ro, None);
    assert!(
        scored.logp.requires_grad(),
        "grad mode is back after generation"
    );
    (scored.logp * &ro.response_mask)
        .sum(Kind::Float)
        .backward();
}
