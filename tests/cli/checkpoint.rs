//! `harness run --resume` over a run whose newest checkpoint is damaged: it falls back to the
//! previous one, says so in the run's log and `status.json`, and finishes with the same metrics.
use super::run_resume;
use std::path::Path;

const GRID: &str = "
name: ck
base:
  model: { name: tiny-qwen3 }
  task: { name: addition, difficulty: 1 }
  algorithm: { name: grpo }
  rollout: { prompts_per_step: 2, group_size: 4, max_new_tokens: 3 }
  optim: { lr: 1.0e-3 }
  train: { steps: 4 }
  eval: { every: 2, prompts: 8 }
  checkpoint: { every: 2 }
seeds: [0]
";

/// Metrics rows without the wall-clock keys.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.retain(|k, _| !k.starts_with("timing_s/") && !k.starts_with("perf/"));
            v
        })
        .collect()
}

#[test]
fn resume_falls_back_from_a_truncated_checkpoint_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("ck.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let out = tmp.path().join("out");
    run_resume(&grid, &out);
    let runs: Vec<_> = std::fs::read_dir(out.join("ck/runs")).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let dir = runs[0].as_ref().unwrap().path();
    let before = metrics(&dir);
    assert_eq!(before.len(), 4);

    // As a killed run leaves it: `running` in status.json; and the newest checkpoint truncated.
    let status = dir.join("status.json");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap();
    st["state"] = "running".into();
    std::fs::write(&status, st.to_string()).unwrap();
    let policy = dir.join("checkpoints/step-000004/policy.safetensors");
    let len = std::fs::metadata(&policy).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&policy)
        .unwrap()
        .set_len(len - 100)
        .unwrap();

    run_resume(&grid, &out);
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap();
    assert_eq!(st["state"], "done", "{st}");
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("step-000004/policy.safetensors")
            && reason.contains("truncated")
            && reason.contains("resumed from")
            && reason.contains("step-000002"),
        "{st}"
    );
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(log.contains("warning: resumed from"), "{log}");
    assert!(!log.contains("PytorchStreamReader"), "{log}");
    assert_eq!(metrics(&dir), before);
}
