//! The evaluation protocol: which sets, how many samples per problem (`eval.k`, per set
//! `eval.k_per_set`), how they are sampled (`eval.temperature`, `top_p`, `top_k`,
//! `max_new_tokens`), how many sequences at once; and avg@k / pass@k over a held-out set.
use crate::config::{EvalConfig, RunConfig};

/// Problems generated for a synthetic task's eval set when `eval.prompts` is unset.
pub use super::synthetic::DEFAULT_EVAL_SIZE;

/// Samples per problem for eval set `set`.
pub fn k_for(cfg: &EvalConfig, set: &str) -> usize {
    cfg.k_per_set.get(set).copied().unwrap_or(cfg.k)
}

/// Longest evaluation response.
pub fn max_new_tokens(cfg: &RunConfig) -> usize {
    cfg.eval
        .max_new_tokens
        .unwrap_or(cfg.rollout.max_new_tokens)
}

/// Sequences the engine generates at once during evaluation.
pub fn batch_size(cfg: &RunConfig) -> usize {
    cfg.eval
        .batch_size
        .unwrap_or(cfg.rollout.prompts_per_step * cfg.rollout.group_size)
        .max(1)
}

/// Sequences per engine call for a set with `k` samples per problem: whole problems, as many
/// as fit in [`batch_size`], at least one.
pub fn sequences_per_call(cfg: &RunConfig, k: usize) -> usize {
    (batch_size(cfg) / k.max(1)).max(1) * k
}

/// Published sizes of the usual evaluation sets, by the names the paper grids use; `plan` takes
/// them when a file cannot be read.
const PUBLISHED_SIZES: &[(&str, usize)] = &[
    ("aime24", 30),
    ("aime25", 30),
    ("amc23", 40),
    ("math500", 500),
    ("minerva", 272),
    ("olympiad", 675),
    ("olympiadbench", 675),
];

/// `(set, problems, k)` for every eval set of a run, as [`crate::grid::plan`] sizes them:
/// problems counted in the file when it can be read (after dropping repeats), else the
/// published size of a known benchmark, else `eval.prompts` (or 0 when that is unset too);
/// then capped at `eval.prompts`.
pub fn eval_workload(cfg: &RunConfig) -> Vec<(String, usize, usize)> {
    let cap = cfg.eval.prompts;
    let sets: Vec<(String, usize)> = if cfg.task.name == "math" {
        cfg.task
            .eval_files
            .iter()
            .map(|(name, path)| {
                let counted = super::math::load_items(std::path::Path::new(path), "")
                    .ok()
                    .map(|l| l.items.len());
                let published = PUBLISHED_SIZES
                    .iter()
                    .find(|(n, _)| *n == name.as_str())
                    .map(|(_, s)| *s);
                let n = counted.or(published).or(cap).unwrap_or(0);
                (name.clone(), n)
            })
            .collect()
    } else {
        vec![(cfg.task.name.clone(), DEFAULT_EVAL_SIZE)]
    };
    sets.into_iter()
        .map(|(name, n)| {
            let k = k_for(&cfg.eval, &name);
            (name, cap.map_or(n, |c| n.min(c)), k)
        })
        .collect()
}

/// `correct[i][j]`: whether sample `j` of problem `i` was right. Returns (avg@k, pass@k) with
/// k = samples per problem: the mean accuracy over all samples, and the share of problems with at
/// least one correct sample.
pub fn avg_and_pass_at_k(correct: &[Vec<bool>]) -> (f64, f64) {
    if correct.is_empty() {
        return (0.0, 0.0);
    }
    let n = correct.len() as f64;
    let avg = correct
        .iter()
        .map(|s| s.iter().filter(|&&c| c).count() as f64 / s.len().max(1) as f64)
        .sum::<f64>()
        / n;
    let pass = correct.iter().filter(|s| s.iter().any(|&c| c)).count() as f64 / n;
    (avg, pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawRunConfig;

    #[test]
    fn avg_and_pass() {
        let c = vec![vec![true, false], vec![false, false], vec![true, true]];
        let (avg, pass) = avg_and_pass_at_k(&c);
        assert!((avg - 0.5).abs() < 1e-12);
        assert!((pass - 2.0 / 3.0).abs() < 1e-12);
    }

    fn cfg(extra: &str) -> RunConfig {
        raw(extra).check().unwrap()
    }

    fn raw(extra: &str) -> RawRunConfig {
        let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/math/data");
        serde_yaml::from_str(&format!(
            "model: {{ name: models/m }}\n\
             task: {{ name: math, train_file: t.jsonl, eval_files: {{ aime24: {}/aime24.parquet, \
             math500: missing/math500.jsonl, mine: missing.jsonl }} }}\n\
             algorithm: {{ name: grpo }}\n\
             rollout: {{ prompts_per_step: 4, group_size: 2, max_new_tokens: 16 }}\n{extra}",
            data.display()
        ))
        .unwrap()
    }

    #[test]
    fn per_set_k_sizes_and_sampling() {
        let c = cfg("eval: { k: 4, k_per_set: { aime24: 32 }, max_new_tokens: 64 }");
        assert_eq!(k_for(&c.eval, "aime24"), 32);
        assert_eq!(k_for(&c.eval, "math500"), 4);
        assert_eq!(max_new_tokens(&c), 64);
        assert_eq!(batch_size(&c), 8);
        assert_eq!(sequences_per_call(&c, 4), 8);
        assert_eq!(sequences_per_call(&c, 3), 6);
        assert_eq!(sequences_per_call(&c, 32), 32);
        // counted in the file / published size / unknown and no cap
        assert_eq!(
            eval_workload(&c),
            vec![
                ("aime24".to_string(), 3, 32),
                ("math500".to_string(), 500, 4),
                ("mine".to_string(), 0, 4)
            ]
        );
        let capped = cfg("eval: { prompts: 100 }");
        assert_eq!(eval_workload(&capped)[1], ("math500".to_string(), 100, 1));
        assert_eq!(max_new_tokens(&capped), 16);
        assert!(crate::config::task_checks::check(&c.clone().into_raw()).is_empty());
    }

    #[test]
    fn bad_protocol_keys_are_named() {
        let c = raw("eval: { prompts: 0, k_per_set: { aime: 32, math500: 0 }, top_p: 0 }");
        let paths: Vec<String> = crate::config::task_checks::check(&c)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            paths,
            [
                "eval.prompts",
                "eval.k_per_set.aime",
                "eval.k_per_set.math500",
                "eval.top_p"
            ]
        );
        let synthetic: RawRunConfig = serde_yaml::from_str(
            "model: { name: tiny-qwen3 }\ntask: { name: addition, enable_thinking: true }\n\
             algorithm: { name: grpo }\n",
        )
        .unwrap();
        let e = crate::config::task_checks::check(&synthetic);
        assert_eq!(e[0].0, "task.enable_thinking");
    }
}
