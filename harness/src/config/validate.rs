//! Range and cross-field checks on a [`RunConfig`], run once when a grid is expanded (every run of
//! every grid is checked before anything is written); code after that trusts the config. Each
//! error names the full key path of the value to change.
use super::RunConfig;
use crate::objective::{build_algorithm, AlgorithmConfig};
use std::fmt;

/// One problem: the dotted key path (`rollout.group_size`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub path: String,
    pub msg: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.msg)
    }
}

/// Synthetic task names (CPU-learnable) and the math task.
pub const TASKS: &[&str] = &["addition", "reversal", "sorting", "counting", "math"];
/// Projections LoRA can adapt.
pub const LORA_TARGETS: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// LoRA targets inside the MLP (experts on MoE layers, which take no adapters).
const MLP_TARGETS: &[&str] = &["gate_proj", "up_proj", "down_proj"];

/// Algorithms whose advantages are normalised within a prompt's group of responses.
fn group_normalised(a: &AlgorithmConfig) -> bool {
    !matches!(a, AlgorithmConfig::Ppo(_))
}

struct Errs(Vec<ValidationError>);

impl Errs {
    fn check(&mut self, ok: bool, path: &str, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(ValidationError {
                path: path.to_string(),
                msg: msg(),
            });
        }
    }
    fn positive(&mut self, path: &str, v: f64) {
        self.check(v.is_finite() && v > 0.0, path, || {
            format!("must be a positive number, got {v}")
        });
    }
    fn non_negative(&mut self, path: &str, v: f64) {
        self.check(v.is_finite() && v >= 0.0, path, || {
            format!("must be ≥ 0, got {v}")
        });
    }
    fn at_least(&mut self, path: &str, v: usize, min: usize) {
        self.check(v >= min, path, || format!("must be ≥ {min}, got {v}"));
    }
}

/// Is `name` a model preset, or does it look like a path to a model directory?
fn model_known(name: &str) -> bool {
    crate::model::presets::PRESETS.contains(&name)
        || name.contains('/')
        || name.contains('\\')
        || name.starts_with('.')
        || name.starts_with('~')
        || std::path::Path::new(name).exists()
}

/// Every problem of `cfg`, empty when it is valid.
pub fn validate(cfg: &RunConfig) -> Vec<ValidationError> {
    let mut e = Errs(Vec::new());

    // model
    let m = &cfg.model;
    e.check(model_known(&m.name), "model.name", || {
        format!(
            "unknown model `{}`: a preset ({}) or a path to a Hugging Face model directory",
            m.name,
            crate::model::presets::PRESETS.join(", ")
        )
    });
    // The model's shape, when it can be had without loading weights.
    let shape = if model_known(&m.name) {
        crate::model::model_config(&m.name).ok()
    } else {
        None
    };
    if let Some(l) = &m.lora {
        e.check(l.rank > 0, "model.lora.rank", || {
            format!("must be ≥ 1, got {}", l.rank)
        });
        e.positive("model.lora.alpha", l.alpha);
        e.check(!l.targets.is_empty(), "model.lora.targets", || {
            "needs at least one projection".into()
        });
        for (i, t) in l.targets.iter().enumerate() {
            e.check(
                LORA_TARGETS.contains(&t.as_str()),
                "model.lora.targets",
                || {
                    format!(
                        "unknown projection `{t}` (one of {})",
                        LORA_TARGETS.join(", ")
                    )
                },
            );
            e.check(!l.targets[..i].contains(t), "model.lora.targets", || {
                format!("`{t}` is listed twice")
            });
            let moe = shape.as_ref().is_some_and(|c| c.moe.is_some());
            e.check(
                !(moe && MLP_TARGETS.contains(&t.as_str())),
                "model.lora.targets",
                || {
                    format!(
                        "`{t}` is not supported on MoE models: stacked experts take no adapters \
                         (use attention projections: q_proj, k_proj, v_proj, o_proj)"
                    )
                },
            );
        }
    }

    // task
    let t = &cfg.task;
    e.check(TASKS.contains(&t.name.as_str()), "task.name", || {
        format!("unknown task `{}` (one of {})", t.name, TASKS.join(", "))
    });
    let math = t.name == "math";
    if math {
        let preset = crate::model::presets::PRESETS.contains(&m.name.as_str());
        let dir = std::path::Path::new(&m.name);
        e.check(
            !preset && (!dir.is_dir() || dir.join("tokenizer.json").exists()),
            "model.name",
            || {
                format!(
                    "the math task needs a Hugging Face model directory with tokenizer.json;                      `{}` {}",
                    m.name,
                    if preset {
                        "is a preset (character vocabulary)"
                    } else {
                        "has no tokenizer.json"
                    }
                )
            },
        );
    }
    if !math {
        e.check((1..=32).contains(&t.difficulty), "task.difficulty", || {
            format!("must be in 1..=32, got {}", t.difficulty)
        });
        e.check(t.train_file.is_none(), "task.train_file", || {
            format!("only the math task reads data files (task is `{}`)", t.name)
        });
        e.check(t.eval_files.is_empty(), "task.eval_files", || {
            format!("only the math task reads data files (task is `{}`)", t.name)
        });
    } else {
        e.check(
            t.train_file.as_ref().is_some_and(|f| !f.is_empty()),
            "task.train_file",
            || "the math task needs a training file (JSONL or Parquet with prompt/answer)".into(),
        );
    }
    if let Some(s) = &t.sft {
        e.at_least("task.sft.steps", s.steps, 1);
        e.positive("task.sft.lr", s.lr);
        e.at_least("task.sft.batch_size", s.batch_size, 1);
    }

    // rollout
    let r = &cfg.rollout;
    e.at_least("rollout.prompts_per_step", r.prompts_per_step, 1);
    if group_normalised(&cfg.algorithm) {
        e.check(r.group_size >= 2, "rollout.group_size", || {
            format!(
                "must be ≥ 2: {} normalises advantages within a prompt's group of responses, got {}",
                cfg.algorithm.name(),
                r.group_size
            )
        });
    } else {
        e.at_least("rollout.group_size", r.group_size, 1);
    }
    e.at_least("rollout.max_new_tokens", r.max_new_tokens, 1);
    e.positive("rollout.temperature", r.temperature);
    e.check(
        r.top_p.is_finite() && r.top_p > 0.0 && r.top_p <= 1.0,
        "rollout.top_p",
        || format!("must be in (0, 1], got {}", r.top_p),
    );
    if let Some(s) = &shape {
        e.check(r.top_k <= s.vocab_size, "rollout.top_k", || {
            format!("exceeds the vocabulary ({}), got {}", s.vocab_size, r.top_k)
        });
        e.check(
            r.max_new_tokens < s.max_position_embeddings,
            "rollout.max_new_tokens",
            || {
                format!(
                    "must be below the model's context ({}), got {}",
                    s.max_position_embeddings, r.max_new_tokens
                )
            },
        );
    }
    let g = &r.engine;
    e.non_negative("rollout.engine.router.noise_std", g.router.noise_std);
    e.non_negative("rollout.engine.logit_noise", g.logit_noise);
    if let Some(s) = &shape {
        if !s.is_moe() {
            e.check(
                g.router.noise_std == 0.0 && g.router.precision.is_none(),
                "rollout.engine.router",
                || format!("router knobs need a MoE model; `{}` is dense", m.name),
            );
        }
        e.check(
            g.topk_logprobs <= s.vocab_size,
            "rollout.engine.topk_logprobs",
            || {
                format!(
                    "exceeds the vocabulary ({}), got {}",
                    s.vocab_size, g.topk_logprobs
                )
            },
        );
    }
    if let Some(x) = &g.external {
        e.check(!x.is_empty(), "rollout.engine.external", || {
            "must name a JSONL file".into()
        });
    }

    // algorithm: its own checks (the message names the key), then what it needs from the rest.
    if let Err(msg) = cfg.algorithm.validate() {
        let path = msg
            .split('`')
            .nth(1)
            .filter(|k| !k.contains(' ') && !k.is_empty())
            .map(|k| format!("algorithm.{k}"))
            .unwrap_or_else(|| "algorithm".into());
        e.0.push(ValidationError { path, msg });
    } else if let Ok(alg) = build_algorithm(&cfg.algorithm) {
        if alg.needs_rollout_topk() {
            e.check(g.topk_logprobs > 0, "algorithm.divergence", || {
                "a top-K divergence needs the engine's top-K log-probs: set \
                 rollout.engine.topk_logprobs > 0"
                    .into()
            });
        }
    }

    // optimiser
    let o = &cfg.optim;
    e.positive("optim.lr", o.lr);
    e.check(
        (0.0..1.0).contains(&o.betas.0) && (0.0..1.0).contains(&o.betas.1),
        "optim.betas",
        || format!("both must be in [0, 1), got ({}, {})", o.betas.0, o.betas.1),
    );
    e.positive("optim.eps", o.eps);
    e.non_negative("optim.weight_decay", o.weight_decay);
    e.non_negative("optim.grad_clip", o.grad_clip);
    e.check(
        o.warmup_steps <= cfg.train.steps,
        "optim.warmup_steps",
        || {
            format!(
                "exceeds train.steps ({}), got {}",
                cfg.train.steps, o.warmup_steps
            )
        },
    );

    // train
    let tr = &cfg.train;
    e.at_least("train.steps", tr.steps, 1);
    e.at_least("train.ppo_epochs", tr.ppo_epochs, 1);
    e.at_least("train.mini_batches", tr.mini_batches, 1);
    let batch = r.prompts_per_step * r.group_size;
    if tr.mini_batches >= 1 {
        e.check(
            batch.is_multiple_of(tr.mini_batches),
            "train.mini_batches",
            || {
                format!(
                "must divide the step's batch (prompts_per_step × group_size = {batch}), got {}",
                tr.mini_batches
            )
            },
        );
    }
    e.positive("train.max_grad_norm", tr.max_grad_norm);
    e.non_negative("train.min_entropy", tr.min_entropy);

    // eval protocol and the task's own keys (checked where they are defined)
    for (path, msg) in crate::task::eval::check_config(cfg) {
        e.check(false, &path, || msg);
    }

    e.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> RunConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    const OK: &str = "
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: grpo }
";

    fn paths(c: &RunConfig) -> Vec<String> {
        validate(c).into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&cfg(OK)), vec![]);
    }

    #[test]
    fn lora_mlp_targets_are_rejected_on_moe_models_only() {
        let moe = cfg("
model: { name: tiny-qwen3-moe, lora: { rank: 4, targets: [q_proj, up_proj] } }
task: { name: addition }
algorithm: { name: grpo }
");
        let errs = validate(&moe);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "model.lora.targets");
        assert!(
            errs[0].msg.contains("`up_proj` is not supported on MoE"),
            "{}",
            errs[0]
        );
        let dense = cfg("
model: { name: tiny-qwen3, lora: { rank: 4, targets: [q_proj, up_proj] } }
task: { name: addition }
algorithm: { name: grpo }
");
        assert_eq!(validate(&dense), vec![]);
        let attn = cfg("
model: { name: tiny-qwen3-moe, lora: { rank: 4, targets: [q_proj, o_proj] }, moe_impl: grouped }
task: { name: addition }
algorithm: { name: grpo }
train: { precision: bf16, recompute: true }
");
        assert_eq!(validate(&attn), vec![]);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let c = cfg("
model: { name: qwen9, lora: { rank: 0, targets: [q_proj, foo] } }
task: { name: addition, difficulty: 0 }
algorithm: { name: grpo }
rollout: { group_size: 1, top_p: 1.5, temperature: 0.0 }
optim: { lr: 0.0, betas: [0.9, 1.0] }
train: { mini_batches: 3 }
");
        let p = paths(&c);
        for want in [
            "model.name",
            "model.lora.rank",
            "model.lora.targets",
            "task.difficulty",
            "rollout.group_size",
            "rollout.top_p",
            "rollout.temperature",
            "optim.lr",
            "optim.betas",
            "train.mini_batches",
        ] {
            assert!(p.contains(&want.to_string()), "{want} missing from {p:?}");
        }
    }

    #[test]
    fn cross_field_rules() {
        // Top-K DPPO needs top-K log-probs from the engine.
        let c = cfg("
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: dppo, divergence: topk-tv }
");
        assert_eq!(paths(&c), vec!["algorithm.divergence"]);
        let c = cfg("
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: dppo, divergence: topk-tv }
rollout: { engine: { topk_logprobs: 8 } }
");
        assert_eq!(paths(&c), Vec::<String>::new());
        // PPO has no groups; router knobs need a MoE model; math needs data.
        let c = cfg("
model: { name: tiny-qwen3 }
task: { name: math }
algorithm: { name: ppo }
rollout: { group_size: 1, engine: { router: { noise_std: 0.1 } } }
");
        assert_eq!(
            paths(&c),
            vec!["model.name", "task.train_file", "rollout.engine.router"]
        );
    }

    #[test]
    fn algorithm_errors_name_the_key() {
        let c = cfg("
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: dcmdp, c: -0.1 }
");
        assert_eq!(paths(&c), vec!["algorithm.c"]);
    }
}
