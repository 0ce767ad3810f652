//! Run configuration: what one training run is, as declared in YAML (`base` of a grid, with axis
//! values applied). Every struct denies unknown fields and documents its defaults; `validate.rs`
//! checks ranges and cross-field rules once, after which the config is trusted.
use serde::{Deserialize, Serialize};

pub mod validate;

/// One run's full configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub task: TaskConfig,
    #[serde(default)]
    pub rollout: RolloutConfig,
    pub algorithm: crate::objective::AlgorithmConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

/// Which model: a preset (random init) or a local HF directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Preset name (`tiny-qwen3`, …) or a path to a local HF model directory.
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
    pub moe_impl: crate::model::MoeImpl,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: i64,
    #[serde(default = "default_lora_alpha")]
    pub alpha: f64,
    /// Projection names (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`).
    #[serde(default = "default_lora_targets")]
    pub targets: Vec<String>,
}

fn default_lora_alpha() -> f64 {
    16.0
}
fn default_lora_targets() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(String::from)
        .to_vec()
}

/// The task: synthetic (CPU-learnable) or a math dataset for real models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// `addition`, `reversal`, `sorting`, `counting`, or `math`.
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

fn default_difficulty() -> usize {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftConfig {
    pub steps: usize,
    #[serde(default = "default_sft_lr")]
    pub lr: f64,
    #[serde(default = "default_sft_batch")]
    pub batch_size: usize,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WeightQuant {
    #[default]
    None,
    Fp8E4m3,
    Int8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum QuantScale {
    #[default]
    PerTensor,
    PerChannel,
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
    /// Read rollouts from a real engine's JSONL instead of sampling.
    pub external: Option<String>,
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Checkpoint every N steps (and at the end); 0 = only at the end.
    pub every: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every: 10 }
    }
}
