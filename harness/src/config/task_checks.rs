//! The task's and the evaluation protocol's own keys (`task.*`, `eval.*`), checked once with
//! the rest of the config; the task module reads them already checked.
use super::RawRunConfig;

/// Checks of the task's and the evaluation protocol's keys: `(key path, problem)` for each.
pub fn check(cfg: &RawRunConfig) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let mut fail = |path: &str, msg: String| errs.push((path.to_string(), msg));
    let ev = &cfg.eval;
    let math = cfg.task.name == "math";
    let set_names: Vec<String> = if math {
        cfg.task.eval_files.keys().cloned().collect()
    } else {
        vec![cfg.task.name.clone()]
    };
    if ev.prompts == Some(0) {
        fail("eval.prompts", "must be ≥ 1 (or unset: whole sets)".into());
    }
    if ev.k == 0 {
        fail("eval.k", "must be ≥ 1, got 0".into());
    }
    for (set, &k) in &ev.k_per_set {
        let path = format!("eval.k_per_set.{set}");
        if !set_names.contains(set) {
            fail(
                &path,
                format!(
                    "no eval set `{set}` (the sets are: {})",
                    set_names.join(", ")
                ),
            );
        }
        if k == 0 {
            fail(&path, "must be ≥ 1, got 0".into());
        }
    }
    if !(ev.temperature.is_finite() && ev.temperature >= 0.0) {
        fail(
            "eval.temperature",
            format!("must be ≥ 0, got {}", ev.temperature),
        );
    }
    if !(ev.top_p > 0.0 && ev.top_p <= 1.0) {
        fail("eval.top_p", format!("must be in (0, 1], got {}", ev.top_p));
    }
    if ev.max_new_tokens == Some(0) {
        fail("eval.max_new_tokens", "must be ≥ 1, got 0".into());
    }
    if ev.batch_size == Some(0) {
        fail("eval.batch_size", "must be ≥ 1, got 0".into());
    }
    if !math {
        if cfg.task.enable_thinking {
            fail(
                "task.enable_thinking",
                format!(
                    "only the math task uses a chat template (task is `{}`)",
                    cfg.task.name
                ),
            );
        }
        if cfg.task.instruction.is_some() {
            fail(
                "task.instruction",
                format!(
                    "only the math task reads problem texts (task is `{}`)",
                    cfg.task.name
                ),
            );
        }
    }
    errs
}
