//! `rollout.engine.server`: sample from an OpenAI-compatible completions server (vLLM, SGLang, or
//! the test stand-in `tests/fixtures/server/serve.py`) instead of the in-process engine, and hand it
//! the trainer's weights before every step. The client is [`crate::rollout::server`].
use serde::{Deserialize, Serialize};

/// How the server is told to load the weights the trainer wrote to `weights_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reload {
    /// Never: the server keeps the weights it started with (evaluation of a fixed policy only;
    /// training against it is increasingly off-policy).
    None,
    /// vLLM: `POST /collective_rpc {"method": "reload_weights"}` (needs `VLLM_SERVER_DEV_MODE=1`);
    /// vLLM re-reads the directory it serves, so it must be started with `--model <weights_dir>`.
    Vllm,
    /// SGLang: `POST /update_weights_from_disk {"model_path": <weights_dir>}`.
    Sglang,
}

/// `rollout.engine.server: { url, model, reload, weights_dir, timeout_s }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Base URL, `http://host:port` (plain HTTP; `/v1/completions` is appended).
    pub url: String,
    /// The request's `model` field: the name the server serves the model under.
    pub model: String,
    /// How weights go back to the server after each update.
    pub reload: Reload,
    /// Hugging Face directory the trainer writes its weights to (fp32 safetensors) before each
    /// step; the server must be able to read it. Required unless `reload: none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_dir: Option<String>,
    /// Seconds one HTTP call (a step's completions, a reload) may take.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
}

fn default_timeout() -> f64 {
    600.0
}
