//! DC-GRPO's diagnostics probe and `eval.engine` (issue 15): the probe logs its `diag/*` metrics
//! and leaves training bitwise unchanged; evaluation samples through the chosen copy.
use super::tests::{fast_config, metrics_of, train};
use super::trainer::Trainer;
use super::RunState;
use crate::config::{EvalEngine, RunConfig};

fn dcmdp(diagnostics: bool) -> RunConfig {
    let alg = format!(
        "{{ name: dcmdp, c: 0.0001, lambda_0: 1.0, eta_lambda: 100.0, diagnostics: {diagnostics} }}"
    );
    // A bf16 engine against the fp32 trainer, so δ̄ (~1e-3) exceeds c and the penalty acts.
    fast_config(&alg, 3)
        .edit(|c| c.rollout.engine.precision = crate::config::Precision::Bf16)
        .unwrap()
}

#[test]
fn probe_logs_diag_and_changes_nothing() {
    let _rng = crate::rng_lock();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(train(&dcmdp(false), 3, a.path()).state, RunState::Done);
    assert_eq!(train(&dcmdp(true), 3, b.path()).state, RunState::Done);
    let plain = metrics_of(a.path());
    let probed = metrics_of(b.path());
    for (p, q) in plain.iter().zip(&probed) {
        assert!(p.keys().all(|k| !k.starts_with("diag/")));
        let rest: serde_json::Map<_, _> = q
            .iter()
            .filter(|(k, _)| !k.starts_with("diag/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(p, &rest, "the probe changed training");
        for k in [
            "diag/grad_norm/policy",
            "diag/grad_norm/penalty",
            "diag/w_absmax/max",
            "diag/engine_weight_err",
            "diag/delta_before",
            "diag/delta_trained",
            "diag/delta_synced",
            "diag/sign_flip_trained",
            "diag/sign_flip_synced",
        ] {
            let v = q[k].as_f64().unwrap_or_else(|| panic!("{k}: {q:?}"));
            assert!(v.is_finite() && v >= 0.0, "{k} = {v}");
        }
        // δ before the update is the step's δ̄ (same tokens, same π_old and μ).
        let d = q["diag/delta_before"].as_f64().unwrap();
        let want = q["rollout_corr/abs_prob_diff"].as_f64().unwrap();
        // Both are means of |p − q| over the same tokens, recomputed in fp32 on other paths.
        assert!((d - want).abs() <= 1e-4 * want, "{d} vs {want}");
        // c = 1e-4 binds and λ ≥ 1: the penalty has a gradient.
        assert!(q["diag/grad_norm/penalty"].as_f64().unwrap() > 0.0);
    }
}

/// With an engine identical to the trainer (fp32, no quantisation, no noise) both choices sample
/// the same responses; with a noisy engine only `inference` sees the noise.
#[test]
fn eval_engine_chooses_the_sampling_copy() {
    let _rng = crate::rng_lock();
    tch::set_num_threads(1);
    let with = |engine: EvalEngine, noise: f64| {
        let cfg = fast_config("{ name: grpo }", 1)
            .edit(|c| {
                c.eval.engine = engine;
                c.rollout.engine.precision = crate::config::Precision::Fp32;
                c.rollout.engine.weight_quant = crate::config::WeightQuant::None;
                c.rollout.engine.logit_noise = noise;
            })
            .unwrap();
        let t = Trainer::new(&cfg, 5, false).unwrap();
        t.evaluate(0)
    };
    assert_eq!(
        with(EvalEngine::Trainer, 0.0),
        with(EvalEngine::Inference, 0.0)
    );
    assert_eq!(
        with(EvalEngine::Trainer, 0.0),
        with(EvalEngine::Trainer, 50.0)
    );
    assert_ne!(
        with(EvalEngine::Inference, 50.0),
        with(EvalEngine::Trainer, 50.0)
    );
}

#[test]
fn eval_engine_key_parses_and_keeps_run_ids() {
    let d = crate::config::EvalConfig::default();
    assert_eq!(d.engine, EvalEngine::Inference);
    let text = serde_yaml::to_string(&d).unwrap();
    assert!(!text.contains("engine"), "{text}");
    let t: crate::config::EvalConfig = serde_yaml::from_str("engine: trainer").unwrap();
    assert_eq!(t.engine, EvalEngine::Trainer);
    assert!(serde_yaml::from_str::<crate::config::EvalConfig>("engine: gpu").is_err());
}

/// The seed on which DC-GRPO as reported runs away in `experiments/dcgrpo-feedback.yaml`: seed 3
/// since the problem streams were fixed on 2026-12-02 (before, on the old streams, seed 0).
const FAILING_SEED: i64 = 3;

/// The committed `experiments/dcgrpo-feedback.yaml` run `case`/[`FAILING_SEED`] (evaluation off:
/// it draws nothing training uses), its steps' metrics.
fn feedback_run(case: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../experiments/dcgrpo-feedback.yaml");
    let grid = crate::grid::Grid::load(&file).unwrap();
    let run = grid
        .runs
        .iter()
        .find(|r| r.case.as_deref() == Some(case) && r.seed == FAILING_SEED)
        .unwrap();
    let cfg = run.config.clone().edit(|c| c.eval.every = 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(train(&cfg, FAILING_SEED, dir.path()).state, RunState::Done);
    metrics_of(dir.path())
}

/// Mean of `key` over steps 21–40.
fn late_mean(rows: &[serde_json::Map<String, serde_json::Value>], key: &str) -> f64 {
    let xs: Vec<f64> = rows[20..40]
        .iter()
        .map(|r| r[key].as_f64().unwrap())
        .collect();
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Issue 15's failing seed (quickstart setting). What holds on every seed of
/// reports/dcgrpo-feedback/ and on both CPUs it was run on: as reported, λ winds up against a
/// tolerance below the engine's δ̄ floor (λ40 1.4–4.4 from λ_0 = 0.1), and the dual update's rate
/// limit (`lambda_rate: 0.02`) keeps it below 1.1 and below the reported run's. The runaway itself
/// (λ40 > 3, the penalty's gradient above the policy's, twice the rate-limited gradient norm) is
/// seed 3 on the AMD EPYC VM the report was made on (λ40 4.4, grad norm 5.6, penalty 4.6 vs policy
/// 2.8; rate-limited λ40 0.81, grad norm 2.3). Float results differ between CPUs (MKL and ATen pick
/// AVX2 or AVX-512 kernels), and RL amplifies that: on an Intel Xeon VM the same seed ends at λ40
/// 1.94, grad norm 2.3. So those assertions run where this seed runs away, and the test says which
/// it saw. About a minute of CPU.
#[test]
fn rate_limited_dual_update_stops_the_runaway_on_the_failing_seed() {
    let _rng = crate::rng_lock();
    let reported = feedback_run("dc-reported");
    let limited = feedback_run("dc-rate");
    let lambda = |rows: &[serde_json::Map<_, _>]| rows[39]["dc/lambda"].as_f64().unwrap();
    let (pen, pol) = ("diag/grad_norm/penalty", "diag/grad_norm/policy");
    let grad = |rows: &[serde_json::Map<_, _>]| late_mean(rows, "actor/grad_norm");
    let ran_away = lambda(&reported) > 3.0;
    eprintln!(
        "seed {FAILING_SEED}, steps 21-40: reported λ40 {:.2} grad {:.1} pen {:.2} pol {:.2} δ̄ {:.2e}; \
         rate-limited λ40 {:.2} grad {:.1} pen {:.2} pol {:.2} δ̄ {:.2e}; runaway on this CPU: {ran_away}",
        lambda(&reported),
        grad(&reported),
        late_mean(&reported, pen),
        late_mean(&reported, pol),
        late_mean(&reported, "rollout_corr/abs_prob_diff"),
        lambda(&limited),
        grad(&limited),
        late_mean(&limited, pen),
        late_mean(&limited, pol),
        late_mean(&limited, "rollout_corr/abs_prob_diff"),
    );
    assert!(lambda(&reported) > 1.0, "λ {}", lambda(&reported));
    assert!(lambda(&limited) < 1.1, "λ {}", lambda(&limited));
    assert!(lambda(&limited) < lambda(&reported));
    assert!(late_mean(&limited, pen) < late_mean(&limited, pol));
    if ran_away {
        assert!(grad(&reported) > 2.0 * grad(&limited));
        assert!(late_mean(&reported, pen) > late_mean(&reported, pol));
        assert!(lambda(&limited) < 1.0, "λ {}", lambda(&limited));
    }
}
