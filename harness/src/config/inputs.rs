//! Checks on the files a config names, which depend on the machine rather than on the config: the
//! model directory exists with `config.json` (and `tokenizer.json` for the math task), the task's
//! data files exist, and an external engine's rollout file parses, line by line, into whole groups.
//! `validate`, `run` and `slurm` do these (a grid fails before it starts or queues, not at run
//! time); `plan` does not (it sizes a grid before its weights are downloaded).
use super::validate::{is_preset, model_shape, names_a_directory};
use super::{external, ConfigError, KeyPath, RunConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Checks the inputs of many runs, each distinct file once.
#[derive(Debug, Default)]
pub struct InputChecker {
    seen: HashMap<String, Option<String>>,
}

impl InputChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every problem with the files `cfg` names.
    pub fn check(&mut self, cfg: &RunConfig) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let mut push = |path: &str, problem: Option<String>| {
            if let Some(msg) = problem {
                out.push(ConfigError::new(KeyPath::dotted(path), msg));
            }
        };
        let name = &cfg.model.name;
        let math = cfg.task.name == "math";
        if !is_preset(name) && names_a_directory(name) {
            let p = self.memo(format!("model {name} {math}"), || model_dir(name, math));
            push("model.name", p);
        }
        if let Some(f) = &cfg.task.train_file {
            push(
                "task.train_file",
                self.memo(format!("file {f}"), || file(f)),
            );
        }
        for (k, f) in &cfg.task.eval_files {
            let p = self.memo(format!("file {f}"), || file(f));
            push(&format!("task.eval_files.{k}"), p);
        }
        if let Some(f) = &cfg.rollout.engine.external {
            let vocab = model_shape(name).map(|s| s.vocab_size);
            let (g, mb) = (cfg.rollout.group_size, cfg.train.mini_batches);
            let key = format!("external {f} {vocab:?} {g} {mb}");
            let p = self.memo(key, || external_file(f, vocab, g, mb));
            push("rollout.engine.external", p);
        }
        out
    }

    fn memo(&mut self, key: String, f: impl FnOnce() -> Option<String>) -> Option<String> {
        self.seen.entry(key).or_insert_with(f).clone()
    }
}

/// Where Hub ids (`Qwen/Qwen3-8B`) are resolved through the local Hugging Face cache: helper
/// `climisc` adds `model::hub::resolve(name)`; call it here (`Some(Ok(dir))` when cached,
/// `Some(Err(msg))` naming the id and the cache searched, `None` for a name that is no Hub id).
/// Until then every non-preset name is checked as a local directory.
fn resolve_hub_id(_name: &str) -> Option<Result<PathBuf, String>> {
    None
}

/// The model directory `name` names, or what is wrong with it.
fn model_dir(name: &str, math: bool) -> Option<String> {
    let p = Path::new(name);
    let dir = if p.is_dir() {
        p.to_path_buf()
    } else if let Some(r) = resolve_hub_id(name) {
        match r {
            Ok(d) => d,
            Err(msg) => return Some(msg),
        }
    } else if p.exists() {
        return Some(format!("`{name}` is not a directory"));
    } else {
        return Some(format!("model directory `{name}` does not exist"));
    };
    if !dir.join("config.json").is_file() {
        return Some(format!(
            "`{}` has no config.json (not a Hugging Face model directory)",
            dir.display()
        ));
    }
    if math && !dir.join("tokenizer.json").is_file() {
        return Some(format!(
            "the math task needs the model's tokenizer: `{}` has no tokenizer.json",
            dir.display()
        ));
    }
    None
}

fn file(f: &str) -> Option<String> {
    let p = Path::new(f);
    if p.is_file() {
        None
    } else if p.exists() {
        Some(format!("`{f}` is not a file"))
    } else {
        Some(format!("file `{f}` does not exist"))
    }
}

/// The external rollout file: every bad line, then whether its rollouts make whole groups and
/// mini-batches (the step's batch is the whole file).
fn external_file(
    f: &str,
    vocab: Option<usize>,
    group: usize,
    mini_batches: usize,
) -> Option<String> {
    let rows = match external::read(Path::new(f), vocab) {
        Ok(rows) => rows,
        Err(lines) => return Some(lines.join("; ")),
    };
    let n = rows.len();
    if group > 0 && !n.is_multiple_of(group) {
        return Some(format!(
            "`{f}` has {n} rollouts, not a multiple of rollout.group_size ({group}): the lines \
             of one prompt's group must be consecutive and complete"
        ));
    }
    if mini_batches > 0 && !n.is_multiple_of(mini_batches) {
        return Some(format!(
            "`{f}` has {n} rollouts, which train.mini_batches ({mini_batches}) does not divide"
        ));
    }
    None
}
