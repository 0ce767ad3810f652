//! Value checks on a [`RawRunConfig`]: required values, ranges and cross-field rules, every problem
//! at once, each naming the full key path of the value to change. Run once, by
//! [`RawRunConfig::check`](super::RawRunConfig::check) / [`check_document`](super::check_document);
//! a [`RunConfig`](super::RunConfig) exists only when they found nothing.
use super::server::{Reload, ServerConfig};
use super::{ConfigError, EngineConfig, KeyPath, RawRunConfig, Seg};
use crate::model::lora::LORA_TARGETS;
use crate::model::Qwen3Config;
use crate::objective::{build_algorithm, AlgorithmConfig, KeySeg};

/// Synthetic task names (CPU-learnable) and the math task.
pub const TASKS: &[&str] = &["addition", "reversal", "sorting", "counting", "math"];

struct Errs(Vec<ConfigError>);

impl Errs {
    fn check(&mut self, ok: bool, path: &str, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(ConfigError::new(KeyPath::dotted(path), msg()));
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

/// Is `name` a preset?
pub fn is_preset(name: &str) -> bool {
    crate::model::presets::PRESETS.contains(&name)
}

/// Does `name` name a directory (an existing path, or one written as a path) or a Hub id
/// (`org/name`) rather than a preset?
pub fn names_a_directory(name: &str) -> bool {
    name.contains('/')
        || name.contains('\\')
        || name.starts_with('.')
        || name.starts_with('~')
        || std::path::Path::new(name).exists()
}

/// The model's shape, when it can be had without loading weights (a preset, or a directory with
/// a readable config.json).
pub fn model_shape(name: &str) -> Option<Qwen3Config> {
    if is_preset(name) || std::path::Path::new(name).is_dir() {
        crate::model::model_config(name).ok()
    } else {
        None
    }
}

/// Every problem of `cfg`, empty when it is valid.
pub fn validate(cfg: &RawRunConfig) -> Vec<ConfigError> {
    let mut e = Errs(Vec::new());
    let shape = model_shape(&cfg.model.name);
    model(&mut e, cfg);
    task(&mut e, cfg);
    rollout(&mut e, cfg, shape.as_ref());
    algorithm(&mut e, cfg);
    optim(&mut e, cfg);
    train(&mut e, cfg);
    eval(&mut e, cfg);
    e.0.extend(super::verl::check(cfg));
    e.0
}

fn model(e: &mut Errs, cfg: &RawRunConfig) {
    let m = &cfg.model;
    let presets = crate::model::presets::PRESETS.join(", ");
    if m.name.is_empty() {
        e.check(false, "model.name", || {
            format!("required: a preset ({presets}) or a path to a Hugging Face model directory")
        });
    } else {
        e.check(
            is_preset(&m.name) || names_a_directory(&m.name),
            "model.name",
            || {
                format!(
                    "unknown model `{}`: a preset ({presets}) or a path to a Hugging Face model \
                 directory",
                    m.name
                )
            },
        );
    }
    let Some(l) = &m.lora else { return };
    e.check(l.rank > 0, "model.lora.rank", || {
        format!("must be ≥ 1 (required with `lora`), got {}", l.rank)
    });
    e.positive("model.lora.alpha", l.alpha);
    e.check(!l.targets.is_empty(), "model.lora.targets", || {
        "needs at least one projection".into()
    });
    for (i, t) in l.targets.iter().enumerate() {
        let path = "model.lora.targets";
        e.check(LORA_TARGETS.contains(&t.as_str()), path, || {
            format!(
                "unknown projection `{t}` (one of {})",
                LORA_TARGETS.join(", ")
            )
        });
        e.check(!l.targets[..i].contains(t), path, || {
            format!("`{t}` is listed twice")
        });
    }
}

fn task(e: &mut Errs, cfg: &RawRunConfig) {
    let t = &cfg.task;
    if t.name.is_empty() {
        e.check(false, "task.name", || {
            format!("required: one of {}", TASKS.join(", "))
        });
    } else {
        e.check(TASKS.contains(&t.name.as_str()), "task.name", || {
            format!("unknown task `{}` (one of {})", t.name, TASKS.join(", "))
        });
    }
    if t.name == "math" {
        e.check(!is_preset(&cfg.model.name), "model.name", || {
            format!(
                "the math task needs a Hugging Face model directory with tokenizer.json; `{}` is \
                 a preset (character vocabulary)",
                cfg.model.name
            )
        });
        e.check(
            t.train_file.as_ref().is_some_and(|f| !f.is_empty()),
            "task.train_file",
            || "the math task needs a training file (JSONL or Parquet with prompt/answer)".into(),
        );
    } else {
        e.check((1..=32).contains(&t.difficulty), "task.difficulty", || {
            format!("must be in 1..=32, got {}", t.difficulty)
        });
        let only_math = || format!("only the math task reads data files (task is `{}`)", t.name);
        e.check(t.train_file.is_none(), "task.train_file", only_math);
        e.check(t.eval_files.is_empty(), "task.eval_files", only_math);
    }
    if let Some(s) = &t.sft {
        e.at_least("task.sft.steps", s.steps, 1);
        e.positive("task.sft.lr", s.lr);
        e.at_least("task.sft.batch_size", s.batch_size, 1);
    }
}

fn rollout(e: &mut Errs, cfg: &RawRunConfig, shape: Option<&Qwen3Config>) {
    let r = &cfg.rollout;
    e.at_least("rollout.prompts_per_step", r.prompts_per_step, 1);
    if let Some(n) = r.max_num_seqs {
        e.at_least("rollout.max_num_seqs", n, 1);
    }
    // Every algorithm but PPO normalises advantages within a prompt's group of responses.
    match &cfg.algorithm {
        Some(a) if !matches!(a, AlgorithmConfig::Ppo(_)) => {
            e.check(r.group_size >= 2, "rollout.group_size", || {
                format!(
                    "must be ≥ 2: {} normalises advantages within a prompt's group of responses, \
                     got {}",
                    a.name(),
                    r.group_size
                )
            })
        }
        _ => e.at_least("rollout.group_size", r.group_size, 1),
    }
    e.at_least("rollout.max_new_tokens", r.max_new_tokens, 1);
    e.positive("rollout.temperature", r.temperature);
    e.check(
        r.top_p.is_finite() && r.top_p > 0.0 && r.top_p <= 1.0,
        "rollout.top_p",
        || format!("must be in (0, 1], got {}", r.top_p),
    );
    let g = &r.engine;
    e.non_negative("rollout.engine.router.noise_std", g.router.noise_std);
    e.non_negative("rollout.engine.logit_noise", g.logit_noise);
    if let Some(x) = &g.external {
        e.check(!x.is_empty(), "rollout.engine.external", || {
            "must name a JSONL file".into()
        });
    }
    if let Some(srv) = &g.server {
        server(e, srv, g);
    }
    let Some(s) = shape else { return };
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
    e.check(
        s.is_moe() || (g.router.noise_std == 0.0 && g.router.precision.is_none()),
        "rollout.engine.router",
        || {
            format!(
                "router knobs need a MoE model; `{}` is dense",
                cfg.model.name
            )
        },
    );
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

/// `rollout.engine.server`: its own values, and the in-process engine's knobs that a server
/// cannot honour (its precision, quantisation and staleness are the server's own).
fn server(e: &mut Errs, srv: &ServerConfig, g: &EngineConfig) {
    e.check(
        srv.url.starts_with("http://") && srv.url.len() > "http://".len(),
        "rollout.engine.server.url",
        || {
            format!(
                "must be a plain http:// URL such as http://127.0.0.1:8000 (no TLS client is \
                 built in), got `{}`",
                srv.url
            )
        },
    );
    e.check(!srv.model.is_empty(), "rollout.engine.server.model", || {
        "must name the served model (the request's `model` field)".into()
    });
    e.positive("rollout.engine.server.timeout_s", srv.timeout_s);
    let has_dir = srv.weights_dir.as_deref().is_some_and(|d| !d.is_empty());
    match srv.reload {
        Reload::None => e.check(
            srv.weights_dir.is_none(),
            "rollout.engine.server.weights_dir",
            || "is only written for a reload: set `reload: vllm | sglang` or remove it".into(),
        ),
        _ => e.check(has_dir, "rollout.engine.server.weights_dir", || {
            "required with a reload: the directory the trainer writes its weights to and the \
             server loads them from"
                .into()
        }),
    }
    let d = EngineConfig::default();
    let knobs = [
        ("external", g.external.is_some()),
        ("precision", g.precision != d.precision),
        ("weight_quant", g.weight_quant != d.weight_quant),
        ("quant_scale", g.quant_scale != d.quant_scale),
        ("router", g.router != d.router),
        ("staleness", g.staleness != d.staleness),
        ("logit_noise", g.logit_noise != d.logit_noise),
        ("topk_logprobs", g.topk_logprobs != d.topk_logprobs),
    ];
    for (knob, set) in knobs {
        e.check(!set, &format!("rollout.engine.{knob}"), || {
            "the in-process engine's knob has no effect with rollout.engine.server (the server's \
             own precision, weights and lag are what it measures): remove one of them"
                .into()
        });
    }
}

/// The algorithm's own checks (paths under `algorithm`), then what it needs from the rest.
fn algorithm(e: &mut Errs, cfg: &RawRunConfig) {
    let Some(a) = &cfg.algorithm else {
        e.check(false, "algorithm", || {
            "required: `algorithm: { name: grpo | ppo | dppo | drpo | dcmdp, … }`".into()
        });
        return;
    };
    let problems = a.check();
    for p in &problems {
        let mut path = KeyPath::dotted("algorithm");
        path.0.extend(p.path.iter().map(|s| match s {
            KeySeg::Key(k) => Seg::Key(k.clone()),
            KeySeg::Index(i) => Seg::Idx(*i),
        }));
        e.0.push(ConfigError::new(path, p.message.clone()));
    }
    if problems.is_empty() && build_algorithm(a).needs_rollout_topk() {
        e.check(
            cfg.rollout.engine.topk_logprobs > 0,
            "algorithm.divergence",
            || {
                "a top-K divergence needs the engine's top-K log-probs: set \
                 rollout.engine.topk_logprobs > 0"
                    .into()
            },
        );
    }
}

fn optim(e: &mut Errs, cfg: &RawRunConfig) {
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
}

fn train(e: &mut Errs, cfg: &RawRunConfig) {
    let tr = &cfg.train;
    e.at_least("train.steps", tr.steps, 1);
    e.at_least("train.ppo_epochs", tr.ppo_epochs, 1);
    e.at_least("train.mini_batches", tr.mini_batches, 1);
    let batch = cfg.rollout.prompts_per_step * cfg.rollout.group_size;
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
    e.at_least("checkpoint.keep", cfg.checkpoint.keep, 1);
    if let Some(t) = tr.micro_batch_tokens {
        e.at_least("train.micro_batch_tokens", t, 1);
    }
}

/// The eval protocol and the task's own keys, checked where they are defined.
fn eval(e: &mut Errs, cfg: &RawRunConfig) {
    for (path, msg) in super::task_checks::check(cfg) {
        e.check(false, &path, || msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawRunConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    const OK: &str = "
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: grpo }
";

    fn paths(c: &RawRunConfig) -> Vec<String> {
        validate(c)
            .into_iter()
            .map(|e| e.path.to_string())
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&raw(OK)), vec![]);
        assert!(raw(OK).check().is_ok());
    }

    #[test]
    fn required_values_are_reported_together() {
        let p = paths(&raw("model: { lora: { alpha: 8.0 } }\ntask: {}"));
        assert_eq!(
            p,
            vec!["model.name", "model.lora.rank", "task.name", "algorithm"]
        );
    }

    #[test]
    fn lora_mlp_targets_are_accepted_on_dense_and_moe_models() {
        // On MoE models they adapt every expert of the stacked projections.
        let moe = raw("
model: { name: tiny-qwen3-moe, lora: { rank: 4, targets: [q_proj, gate_proj, up_proj, down_proj] } }
task: { name: addition }
algorithm: { name: grpo }
");
        assert_eq!(validate(&moe), vec![]);
        let unknown = raw("
model: { name: tiny-qwen3-moe, lora: { rank: 4, targets: [q_proj, experts] } }
task: { name: addition }
algorithm: { name: grpo }
");
        let errs = validate(&unknown);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path.to_string(), "model.lora.targets");
        assert!(
            errs[0].msg.contains("unknown projection `experts`"),
            "{}",
            errs[0]
        );
        let dense = raw("
model: { name: tiny-qwen3, lora: { rank: 4, targets: [q_proj, up_proj] } }
task: { name: addition }
algorithm: { name: grpo }
");
        assert_eq!(validate(&dense), vec![]);
        let attn = raw("
model: { name: tiny-qwen3-moe, lora: { rank: 4, targets: [q_proj, o_proj] }, moe_impl: grouped }
task: { name: addition }
algorithm: { name: grpo }
train: { precision: bf16, recompute: true }
");
        assert_eq!(validate(&attn), vec![]);
    }

    #[test]
    fn server_engine_is_checked_and_excludes_in_process_knobs() {
        let ok = raw("
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: grpo }
rollout: { engine: { server: { url: 'http://127.0.0.1:8000', model: m, reload: sglang, weights_dir: /tmp/w } } }
");
        assert_eq!(validate(&ok), vec![]);
        let bad = raw("
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: grpo }
rollout:
  engine:
    precision: bf16
    staleness: 1
    external: x.jsonl
    server: { url: 'https://h:1', model: '', reload: vllm, timeout_s: 0 }
");
        let p = paths(&bad);
        for want in [
            "rollout.engine.server.url",
            "rollout.engine.server.model",
            "rollout.engine.server.timeout_s",
            "rollout.engine.server.weights_dir",
            "rollout.engine.precision",
            "rollout.engine.staleness",
            "rollout.engine.external",
        ] {
            assert!(p.contains(&want.to_string()), "{want} missing from {p:?}");
        }
        let stray = raw("
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: grpo }
rollout: { engine: { server: { url: 'http://h:1', model: m, reload: none, weights_dir: /tmp/w } } }
");
        assert_eq!(paths(&stray), vec!["rollout.engine.server.weights_dir"]);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let c = raw("
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
        let c = raw("
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: dppo, divergence: topk-tv }
");
        assert_eq!(paths(&c), vec!["algorithm.divergence"]);
        let c = raw("
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: dppo, divergence: topk-tv }
rollout: { engine: { topk_logprobs: 8 } }
");
        assert_eq!(paths(&c), Vec::<String>::new());
        // PPO has no groups; router knobs need a MoE model; math needs data.
        let c = raw("
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
        let c = raw("
model: { name: tiny-qwen3 }
task: { name: addition }
algorithm: { name: dcmdp, c: -0.1 }
");
        assert_eq!(paths(&c), vec!["algorithm.c"]);
    }
}
