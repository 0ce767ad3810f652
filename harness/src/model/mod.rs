//! Qwen3 dense and Qwen3-MoE on LibTorch: config, weights in/out, KV cache, presets, Hub ids,
//! tokenizers.
pub mod config;
pub mod hub;
pub mod kv_cache;
pub mod lora;
pub mod ops;
pub mod presets;
pub mod quant;
pub mod qwen3;
pub mod qwen3_moe;
pub mod recompute;
mod rope;
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

/// A model named on the command line or in config: a local HF directory, a Hugging Face Hub id in
/// the local cache, or a preset name (random init from `seed`). See [`hub::locate`].
pub fn load_model(spec: &str, kind: Kind, device: Device, seed: i64) -> Result<Qwen3> {
    match hub::locate(spec)? {
        hub::ModelSource::Dir(path) => {
            let cfg = Qwen3Config::from_file(&path)?;
            let mut ck = Checkpoint::open(&path, kind, device)?;
            Qwen3::from_source(&cfg, &mut ck)
        }
        hub::ModelSource::Preset(cfg) => {
            Qwen3::from_source(&cfg, &mut RandomInit::new(seed, kind, device))
        }
    }
}

/// The config of a model spec (or of a `config.json` file) without loading weights.
pub fn model_config(spec: &str) -> Result<Qwen3Config> {
    let path = Path::new(spec);
    if path.extension().is_some_and(|e| e == "json") {
        return Qwen3Config::from_file(path);
    }
    match hub::locate(spec)? {
        hub::ModelSource::Dir(path) => Qwen3Config::from_file(&path),
        hub::ModelSource::Preset(cfg) => Ok(cfg),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gpu_path;
#[cfg(test)]
mod tests_moe_lora;
