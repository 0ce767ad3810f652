//! `backend:` — which trainer runs a run: the harness itself (default) or verl (Ray, FSDP,
//! vLLM/SGLang) through the launch that `crate::backend::verl` generates.
use serde::{Deserialize, Serialize};

/// `backend: { name: harness }` (default, not serialised: run ids of existing grids stay) or
/// `backend: { name: verl, … }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum BackendConfig {
    #[default]
    Harness,
    Verl(VerlBackend),
}

impl BackendConfig {
    pub fn is_harness(&self) -> bool {
        matches!(self, BackendConfig::Harness)
    }

    pub fn verl(&self) -> Option<&VerlBackend> {
        match self {
            BackendConfig::Verl(v) => Some(v),
            BackendConfig::Harness => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutEngine {
    #[default]
    Vllm,
    Sglang,
}

impl RolloutEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutEngine::Vllm => "vllm",
            RolloutEngine::Sglang => "sglang",
        }
    }
}

/// The cluster-side settings of a verl launch (the rest comes from the run's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerlBackend {
    /// Nodes of the Ray cluster (`trainer.nnodes`).
    pub nnodes: usize,
    /// GPUs per node (`trainer.n_gpus_per_node`).
    pub gpus_per_node: usize,
    /// `actor_rollout_ref.rollout.name`.
    pub engine: RolloutEngine,
    /// Tensor parallelism of the inference engine.
    pub rollout_tp: usize,
    /// Share of GPU memory the inference engine may take.
    pub gpu_memory_utilization: f64,
    /// Longest prompt in tokens (`data.max_prompt_length`).
    pub max_prompt_length: usize,
    /// Token budget per GPU of one forward/backward pass when `train.micro_batch_tokens` is unset
    /// (`ppo_max_token_len_per_gpu`, with dynamic batch sizes).
    pub max_token_len_per_gpu: usize,
    /// FSDP parameter and optimizer offload to CPU.
    pub offload: bool,
    /// verl's data source tag of the math data (selects verl's answer checker).
    pub data_source: String,
    /// Extra Hydra overrides, appended verbatim after the generated ones.
    pub overrides: Vec<String>,
    /// Python interpreter of the verl environment on the cluster.
    pub python: String,
}

impl Default for VerlBackend {
    fn default() -> Self {
        VerlBackend {
            nnodes: 1,
            gpus_per_node: 8,
            engine: RolloutEngine::Vllm,
            rollout_tp: 1,
            gpu_memory_utilization: 0.6,
            max_prompt_length: 1024,
            max_token_len_per_gpu: 24576,
            offload: false,
            data_source: "math_dapo".into(),
            overrides: Vec::new(),
            python: "python3".into(),
        }
    }
}
