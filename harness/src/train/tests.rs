//! Training-loop acceptance on CPU: learning after SFT warm-start (GRPO, DC-GRPO, DPPO), exact
//! kill-and-resume, and the divergence guard.
use super::*;
use crate::config::RunConfig;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Tiny Qwen3 on single-digit addition with an SFT warm-start; evaluated by avg@4 at temperature 1
/// (the sampled policy RL optimises).
pub(crate) fn tiny_config(algorithm: &str, steps: usize) -> RunConfig {
    let yaml = format!(
        r#"
model: {{ name: tiny-qwen3, init_seed: 0 }}
task: {{ name: addition, difficulty: 1, sft: {{ steps: 60, lr: 0.003, batch_size: 64 }} }}
rollout: {{ prompts_per_step: 16, group_size: 8, max_new_tokens: 4, temperature: 1.0 }}
algorithm: {algorithm}
optim: {{ lr: 0.0003, grad_clip: 1.0 }}
train: {{ steps: {steps}, mini_batches: 2 }}
eval: {{ every: 0, prompts: 64, k: 4, temperature: 1.0 }}
checkpoint: {{ every: 2 }}
"#
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn final_eval(dir: &Path) -> (f64, f64) {
    let rows = read_jsonl(&dir.join("eval.jsonl"));
    let acc =
        |r: &serde_json::Map<String, serde_json::Value>| r["eval/addition/avg@4"].as_f64().unwrap();
    (acc(&rows[0]), acc(rows.last().unwrap()))
}

fn train(cfg: &RunConfig, seed: i64, dir: &Path) -> RunOutcome {
    tch::set_num_threads(1);
    run_training(cfg, seed, dir, &AtomicBool::new(false), &mut |_| {}).unwrap()
}

#[test]
fn grpo_dcmdp_dppo_learn_after_sft() {
    let _rng = crate::rng_lock();
    for alg in [
        "{ name: grpo }",
        "{ name: dcmdp, c: 0.001 }",
        "{ name: dppo }",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tiny_config(alg, 60);
        let out = train(&cfg, 1, tmp.path());
        assert_eq!(out.state, RunState::Done, "{alg}: {out:?}");
        let (before, after) = final_eval(tmp.path());
        eprintln!("{alg}: held-out accuracy {before:.3} -> {after:.3}");
        assert!(before > 0.02 && before < 0.9, "{alg}: SFT start {before}");
        assert!(after >= before + 0.1, "{alg}: {before} -> {after}");
    }
}

fn without_timing(
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
) -> Vec<serde_json::Map<String, serde_json::Value>> {
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .filter(|(k, _)| !k.starts_with("timing_s/") && !k.starts_with("perf/"))
                .collect()
        })
        .collect()
}

/// Run `cfg` in `dir` and die abruptly (a panic, no checkpoint) right after step `step`.
pub(crate) fn crash_after_step(cfg: &RunConfig, seed: i64, dir: &Path, step: usize) {
    let crashed = std::panic::catch_unwind(|| {
        let _ = run_training(cfg, seed, dir, &AtomicBool::new(false), &mut |r| {
            if r.step == step {
                panic!("simulated kill");
            }
        });
    });
    assert!(crashed.is_err());
}

#[test]
fn kill_and_resume_gives_the_same_metrics() {
    let _rng = crate::rng_lock();
    let cfg = tiny_config("{ name: dcmdp, c: 0.001 }", 5);
    let full = tempfile::tempdir().unwrap();
    train(&cfg, 3, full.path());

    let cut = tempfile::tempdir().unwrap();
    // Die abruptly after step 3 (checkpoint is at step 2): step 3's row must be redone.
    crash_after_step(&cfg, 3, cut.path(), 3);
    assert_eq!(read_jsonl(&cut.path().join("metrics.jsonl")).len(), 3);
    let out = train(&cfg, 3, cut.path());
    assert_eq!(out.state, RunState::Done);
    let a = without_timing(read_jsonl(&full.path().join("metrics.jsonl")));
    let b = without_timing(read_jsonl(&cut.path().join("metrics.jsonl")));
    assert_eq!(a.len(), 5);
    assert_eq!(a, b);
    assert_eq!(
        read_jsonl(&full.path().join("eval.jsonl")),
        read_jsonl(&cut.path().join("eval.jsonl"))
    );
}

#[test]
fn stop_flag_checkpoints_and_resumes() {
    let _rng = crate::rng_lock();
    let cfg = tiny_config("{ name: grpo }", 4);
    let tmp = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let out = run_training(&cfg, 4, tmp.path(), &stop, &mut |r| {
        if r.step == 1 {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .unwrap();
    assert_eq!((out.state, out.step), (RunState::Running, 1));
    assert_eq!(checkpoint::latest(tmp.path()).unwrap().0, 1);
    let out = train(&cfg, 4, tmp.path());
    assert_eq!((out.state, out.step), (RunState::Done, 4));
    assert_eq!(read_jsonl(&tmp.path().join("metrics.jsonl")).len(), 4);
}

#[test]
fn injected_nan_marks_the_run_diverged_at_its_step() {
    let _rng = crate::rng_lock();
    let cfg = tiny_config("{ name: grpo }", 5)
        .edit(|c| c.train.fault_nan_at_step = Some(3))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = train(&cfg, 5, tmp.path());
    assert_eq!(out.state, RunState::Diverged);
    assert_eq!(out.step, 3);
    assert!(out.reason.unwrap().contains("non-finite loss"));
}
