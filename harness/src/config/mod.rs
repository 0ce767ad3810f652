//! Run configuration: what one training run is, as declared in YAML (`base` of a grid, with a
//! case's `set` and axis values applied).
//!
//! Two layers, in the style of linfa's `ParamGuard`:
//! - [`RawRunConfig`]: the YAML as written (serde, unknown keys rejected, every field defaulted so
//!   that a document with problems still deserialises around them, see `structure.rs`);
//! - [`RunConfig`]: a checked config. The only ways to get one are [`RawRunConfig::check`],
//!   [`check_document`], [`load_run_config`] and deserialising one (which checks); it is read
//!   through `Deref` and cannot be changed in place, so code downstream trusts it and never
//!   re-validates. [`RunConfig::edit`] changes a copy and checks it again.
//!
//! Checks that depend on the machine (model directories, data files, an external engine's file)
//! are separate ([`inputs`]): `validate` and `run` do them, `plan` does not (a grid can be planned
//! before its weights are downloaded).
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Deref;
use std::path::Path;

pub mod backend;
pub mod external;
pub mod inputs;
pub mod server;
pub mod source;
pub mod structure;
pub mod task_checks;
pub mod validate;
pub mod verl;

pub use crate::model::lora::LoraConfig;
pub use crate::model::quant::{QuantScale, WeightQuant};
pub use crate::model::MoeImpl;
pub use backend::{BackendConfig, RolloutEngine, VerlBackend};
pub use source::{KeyPath, Seg};

/// One problem of a config: where (key path) and what.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigError {
    pub path: KeyPath,
    pub msg: String,
}

impl ConfigError {
    pub fn new(path: KeyPath, msg: impl Into<String>) -> Self {
        ConfigError {
            path,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}: {}", self.path, self.msg)
        }
    }
}

/// Every problem found in one config, one per line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write_lines(f, &self.0)
    }
}

/// Items one per line (no trailing newline): how lists of errors are shown.
pub fn write_lines<T: fmt::Display>(f: &mut fmt::Formatter, items: &[T]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            writeln!(f)?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

impl std::error::Error for ConfigErrors {}

/// A run config as written: every section defaulted, required values checked by
/// [`check`](RawRunConfig::check) (an empty `model.name` or a missing `algorithm` is reported there,
/// with the other problems, instead of stopping deserialisation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunConfig {
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub task: TaskConfig,
    #[serde(default)]
    pub rollout: RolloutConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<crate::objective::AlgorithmConfig>,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Where the run's metrics go besides its JSONL files. Not serialised at its default, so run
    /// ids of existing grids stay.
    #[serde(default, skip_serializing_if = "LogConfig::is_default")]
    pub log: LogConfig,
    /// Which trainer runs it (`harness` by default; `verl`: see [`verl`] and `crate::backend::verl`).
    #[serde(default, skip_serializing_if = "BackendConfig::is_harness")]
    pub backend: BackendConfig,
}

impl RawRunConfig {
    /// Check every value and cross-field rule; every problem at once.
    pub fn check(self) -> Result<RunConfig, ConfigErrors> {
        let errors = validate::validate(&self);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(RunConfig::from_checked(self))
    }
}

/// The sections of a checked [`RunConfig`] (read through it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSettings {
    pub model: ModelConfig,
    pub task: TaskConfig,
    pub rollout: RolloutConfig,
    pub algorithm: crate::objective::AlgorithmConfig,
    pub optim: OptimConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    pub checkpoint: CheckpointConfig,
    #[serde(skip_serializing_if = "LogConfig::is_default")]
    pub log: LogConfig,
    #[serde(skip_serializing_if = "BackendConfig::is_harness")]
    pub backend: BackendConfig,
}

/// One run's full, checked configuration. Serialises as the YAML it was read from (with defaults
/// filled in); deserialising one runs every check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunConfig {
    #[serde(deserialize_with = "deserialize_checked")]
    settings: RunSettings,
}

fn deserialize_checked<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RunSettings, D::Error> {
    let raw = RawRunConfig::deserialize(d)?;
    raw.check()
        .map(|c| c.settings)
        .map_err(serde::de::Error::custom)
}

impl Deref for RunConfig {
    type Target = RunSettings;
    fn deref(&self) -> &RunSettings {
        &self.settings
    }
}

impl RunConfig {
    /// Only after [`validate::validate`] found nothing.
    fn from_checked(raw: RawRunConfig) -> RunConfig {
        RunConfig {
            settings: RunSettings {
                model: raw.model,
                task: raw.task,
                rollout: raw.rollout,
                algorithm: raw.algorithm.expect("checked: algorithm is set"),
                optim: raw.optim,
                train: raw.train,
                eval: raw.eval,
                checkpoint: raw.checkpoint,
                log: raw.log,
                backend: raw.backend,
            },
        }
    }

    /// Back to the unchecked form (to change it and check it again).
    pub fn into_raw(self) -> RawRunConfig {
        let s = self.settings;
        RawRunConfig {
            model: s.model,
            task: s.task,
            rollout: s.rollout,
            algorithm: Some(s.algorithm),
            optim: s.optim,
            train: s.train,
            eval: s.eval,
            checkpoint: s.checkpoint,
            log: s.log,
            backend: s.backend,
        }
    }

    /// A changed copy, checked again.
    pub fn edit(self, f: impl FnOnce(&mut RawRunConfig)) -> Result<RunConfig, ConfigErrors> {
        let mut raw = self.into_raw();
        f(&mut raw);
        raw.check()
    }
}

/// A run config document (a YAML value): every structural problem (unknown key, wrong type,
/// unknown variant, each at its own key path) and every value problem, or the checked config.
/// Value checks still run on the parts that deserialised, so a wrong type does not hide a range
/// error elsewhere.
pub fn check_document(doc: &serde_yaml::Value) -> Result<RunConfig, Vec<ConfigError>> {
    let parsed = structure::parse::<RawRunConfig>(doc);
    let mut errors: Vec<ConfigError> = parsed
        .errors
        .into_iter()
        .map(|(path, msg)| ConfigError { path, msg })
        .collect();
    if let Some(raw) = parsed.value {
        for e in validate::validate(&raw) {
            // A removed (broken) value was replaced by its default: no second error about it.
            if !parsed.removed.iter().any(|r| e.path.starts_with(r)) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            return Ok(RunConfig::from_checked(raw));
        }
    }
    Err(errors)
}

/// Load a run's saved `config.yaml` (or any run config file) through the same checks a grid's runs
/// pass; errors are `file:line: key.path: message`, all at once. Files the config names are not
/// checked (see [`inputs`]).
pub fn load_run_config(path: &Path) -> crate::Result<RunConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
    let doc = parse_yaml(&text).map_err(|(line, msg)| {
        let at = line.map(|l| format!(":{l}")).unwrap_or_default();
        crate::Error::Input(format!("{}{at}: {msg}", path.display()))
    })?;
    check_document(&doc).map_err(|errors| {
        let map = source::SourceMap::new(&text);
        let lines: Vec<String> = errors
            .iter()
            .map(|e| {
                let at = map
                    .nearest(&e.path.0)
                    .map(|l| format!(":{l}"))
                    .unwrap_or_default();
                format!("{}{at}: {e}", path.display())
            })
            .collect();
        crate::Error::Input(format!("invalid run config:\n{}", lines.join("\n")))
    })
}

/// Parse YAML text into a value; a syntax error comes back as (line, message).
pub fn parse_yaml(text: &str) -> Result<serde_yaml::Value, (Option<usize>, String)> {
    serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        let msg = e.to_string();
        let msg = match msg.find(" at line ") {
            Some(i) if line.is_some() => {
                // `… at line 3 column 1, while parsing …`: keep the context, drop the position we
                // print in front.
                let rest = &msg[i + " at line ".len()..];
                let tail = rest.split_once(", ").map(|(_, t)| t).unwrap_or("");
                if tail.is_empty() {
                    msg[..i].to_string()
                } else {
                    format!("{} ({tail})", &msg[..i])
                }
            }
            _ => msg,
        };
        (line, format!("YAML syntax error: {msg}"))
    })
}

/// Which model: a preset (random init) or a local HF directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Preset name (`tiny-qwen3`, …) or a path to a local HF model directory. Required.
    #[serde(default)]
    pub name: String,
    /// Seed of the random init for presets (separate from the run seed so all seeds of a grid
    /// point can share one initial model if wanted); `None` = use the run seed.
    #[serde(default)]
    pub init_seed: Option<i64>,
    /// Optional LoRA adapters on a frozen base (see `model::lora`).
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// How MoE experts run: `auto` (grouped GEMM on CUDA, per-expert loop on CPU), `grouped`,
    /// or `loop`.
    #[serde(default)]
    pub moe_impl: MoeImpl,
}

/// The task: synthetic (CPU-learnable) or a math dataset for real models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// `addition`, `reversal`, `sorting`, `counting`, or `math`. Required.
    #[serde(default)]
    pub name: String,
    /// Difficulty of synthetic tasks (digits / list length).
    #[serde(default = "default_difficulty")]
    pub difficulty: usize,
    /// Math task: training data (JSONL or Parquet with `prompt`/`answer`).
    #[serde(default)]
    pub train_file: Option<String>,
    /// Math task: held-out evaluation files, by name (`aime24: path`).
    #[serde(default)]
    pub eval_files: std::collections::BTreeMap<String, String>,
    /// Supervised warm-start before RL.
    #[serde(default)]
    pub sft: Option<SftConfig>,
    /// Math task: Qwen3 thinking mode (the chat template's `enable_thinking`); off renders an
    /// empty `<think></think>` block after the generation prompt.
    #[serde(default)]
    pub enable_thinking: bool,
    /// Math task: instruction appended to problem texts that carry none (default: reason step
    /// by step, final answer in `\boxed{}`; `""`: nothing). Chat-message prompts (DAPO-Math-17K)
    /// keep their own.
    #[serde(default)]
    pub instruction: Option<String>,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            name: String::new(),
            difficulty: default_difficulty(),
            train_file: None,
            eval_files: Default::default(),
            sft: None,
            enable_thinking: false,
            instruction: None,
        }
    }
}

fn default_difficulty() -> usize {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftConfig {
    /// Required (≥ 1).
    #[serde(default)]
    pub steps: usize,
    #[serde(default = "default_sft_lr")]
    pub lr: f64,
    #[serde(default = "default_sft_batch")]
    pub batch_size: usize,
    /// The seed of the warm-start's batches (default: the run's seed). Fixed, every seed of a grid
    /// starts RL from the same policy, so their spread is RL's alone (the CI gate's grid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
}

fn default_sft_lr() -> f64 {
    3e-3
}
fn default_sft_batch() -> usize {
    32
}

/// Sampling and the inference engine's discrepancy knobs (all off by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    pub prompts_per_step: usize,
    pub group_size: usize,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub top_p: f64,
    /// 0 = off.
    pub top_k: usize,
    /// Most sequences the engine decodes at once: the step's rows are generated in waves of at
    /// most this many, and the KV cache is sized for one wave. Unset: every row at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_num_seqs: Option<usize>,
    pub engine: EngineConfig,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            prompts_per_step: 8,
            group_size: 8,
            max_new_tokens: 8,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_num_seqs: None,
            engine: EngineConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
    Fp16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RouterKnob {
    /// Std of Gaussian noise on the inference router's logits.
    pub noise_std: f64,
    /// Precision of the inference router's matmul (`None` = the engine's precision).
    pub precision: Option<Precision>,
}

/// `rollout.engine.*`: how the inference copy differs from the trainer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub precision: Precision,
    pub weight_quant: WeightQuant,
    pub quant_scale: QuantScale,
    pub router: RouterKnob,
    /// Inference weights lag this many updates behind the trainer.
    pub staleness: usize,
    /// Std of additive Gaussian noise on the engine's logits.
    pub logit_noise: f64,
    /// Top-K log-probs the engine reports per position (needed by DPPO top-K); 0 = none.
    pub topk_logprobs: usize,
    /// Read rollouts from a real engine's JSONL instead of sampling (format: [`external`]).
    pub external: Option<String>,
    /// Sample from an OpenAI-compatible completions server that gets the trainer's weights
    /// before every step ([`server`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<server::ServerConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    #[default]
    Constant,
    LinearWarmup,
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub warmup_steps: usize,
    /// Max global grad norm; 0 = no clipping.
    pub grad_clip: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-4,
            betas: (0.9, 0.95),
            eps: 1e-8,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            grad_clip: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: usize,
    pub ppo_epochs: usize,
    pub mini_batches: usize,
    /// Trainer compute precision. `bf16`/`fp16`: activations in that dtype, fp32 master weights
    /// and AdamW moments (full fine-tuning) or a base stored in that dtype with fp32 adapters
    /// (LoRA); log-probs and losses in fp32.
    pub precision: Precision,
    /// Per-layer activation recompute (gradient checkpointing) in the policy's update passes.
    pub recompute: bool,
    /// Divergence guard: stop when the pre-clip grad norm exceeds this.
    pub max_grad_norm: f64,
    /// Divergence guard: stop when mean entropy falls below this.
    pub min_entropy: f64,
    /// Fault injection for testing the divergence guard: make the loss NaN at this step.
    pub fault_nan_at_step: Option<usize>,
    /// Token budget of one forward/backward pass: a mini-batch runs as micro-batches (runs of
    /// consecutive rows) of at most this many tokens, counted as rows × the micro-batch's padded
    /// length (its longest prompt plus its longest response); their gradients accumulate before
    /// the mini-batch's one clip and AdamW step, and the loss is the unsplit mini-batch's. A
    /// single row longer than the budget is a micro-batch of its own. Unset: one pass per
    /// mini-batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub micro_batch_tokens: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 20,
            ppo_epochs: 1,
            mini_batches: 1,
            precision: Precision::Fp32,
            recompute: false,
            max_grad_norm: 1e4,
            min_entropy: 0.0,
            fault_nan_at_step: None,
            micro_batch_tokens: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every N steps (and at the end); 0 = only at the end.
    pub every: usize,
    /// At most this many problems of each eval set (its first ones); unset = every problem of
    /// a file-based set, 64 generated problems for a synthetic task.
    pub prompts: Option<usize>,
    /// Samples per prompt for avg@k / pass@k, for sets without their own `k_per_set`.
    pub k: usize,
    /// Samples per prompt by eval set name (`{aime24: 32}`), overriding `k`.
    pub k_per_set: std::collections::BTreeMap<String, usize>,
    pub temperature: f64,
    pub top_p: f64,
    /// 0 = off.
    pub top_k: usize,
    /// Longest evaluation response; unset = `rollout.max_new_tokens`.
    pub max_new_tokens: Option<usize>,
    /// Sequences generated at once; unset = `rollout.prompts_per_step × rollout.group_size`.
    pub batch_size: Option<usize>,
    /// Which copy of the policy samples the evaluation: `inference` (the engine, with its
    /// precision, quantisation and logit noise: the policy as deployed; the default, and the
    /// behaviour before the key existed) or `trainer` (the trainer's own weights, as trained).
    /// Not serialised at its default, so run ids of existing grids stay.
    #[serde(skip_serializing_if = "EvalEngine::is_default")]
    pub engine: EvalEngine,
}

/// `eval.engine`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalEngine {
    #[default]
    Inference,
    Trainer,
}

impl EvalEngine {
    pub fn is_default(&self) -> bool {
        *self == EvalEngine::default()
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            every: 0,
            prompts: None,
            k: 1,
            k_per_set: Default::default(),
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: None,
            batch_size: None,
            engine: EvalEngine::Inference,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Checkpoint every N steps (and at the end); 0 = only at the end.
    pub every: usize,
    /// Keep the newest N checkpoints (≥ 1); resume falls back to an older one when the newest
    /// fails its checks. Not serialised at its default, so run ids of existing grids stay.
    #[serde(skip_serializing_if = "is_default_keep")]
    pub keep: usize,
}

/// `log:` — trackers written next to `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Write TensorBoard event files to `runs/<id>/tb/` (default true).
    pub tensorboard: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { tensorboard: true }
    }
}

impl LogConfig {
    fn is_default(&self) -> bool {
        *self == LogConfig::default()
    }
}

const DEFAULT_KEEP: usize = 2;

fn is_default_keep(keep: &usize) -> bool {
    *keep == DEFAULT_KEEP
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            every: 10,
            keep: DEFAULT_KEEP,
        }
    }
}
