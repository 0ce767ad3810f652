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
