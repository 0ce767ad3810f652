//! Qwen3 dense and Qwen3-MoE on LibTorch: config, weights in/out, KV cache, presets, tokenizers.
pub mod config;
pub mod kv_cache;
pub mod lora;
pub mod ops;
pub mod presets;
pub mod qwen3;
pub mod qwen3_moe;
pub mod recompute;
pub mod tokenizer;
pub mod weights;

pub use config::{MoeConfig, Qwen3Config};
pub use kv_cache::KvCache;
pub use qwen3::{next_token_logprobs, HiddenOutput, LayerCtx, ModelOutput, Qwen3};
pub use qwen3_moe::MoeImpl;
pub use weights::{save_hf_dir, save_safetensors, Checkpoint, RandomInit, WeightSource};

use crate::Result;
use std::path::Path;
use tch::{Device, Kind};

/// A model named on the command line or in config: a local HF directory, or a preset name
/// (random init from `seed`).
pub fn load_model(spec: &str, kind: Kind, device: Device, seed: i64) -> Result<Qwen3> {
    let path = Path::new(spec);
    if path.is_dir() {
        let cfg = Qwen3Config::from_file(path)?;
        let mut ck = Checkpoint::open(path, kind, device)?;
        Qwen3::from_source(&cfg, &mut ck)
    } else {
        let cfg = presets::preset(spec)?;
        Qwen3::from_source(&cfg, &mut RandomInit::new(seed, kind, device))
    }
}

/// The config of a model spec without loading weights.
pub fn model_config(spec: &str) -> Result<Qwen3Config> {
    let path = Path::new(spec);
    if path.is_dir() || path.extension().is_some_and(|e| e == "json") {
        Qwen3Config::from_file(path)
    } else {
        presets::preset(spec)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gpu_path;
