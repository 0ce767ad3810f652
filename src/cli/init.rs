//! `harness init`: write a random-init model of a preset as a Hugging Face directory.
use super::{check_output_dir, CliResult};
use anyhow::Context;
use harness::model::{load_model, save_hf_dir};
use harness::runtime::parse_dtype;
use std::path::PathBuf;
use tch::Device;

/// Write a preset with random weights (HF init, seeded) as a Hugging Face model directory
/// (config.json + safetensors) that `transformers` and `harness` load. The output folder must be
/// new or empty unless --force.
#[derive(clap::Args)]
pub struct Args {
    /// Preset name (tiny-qwen3, tiny-qwen3-moe, qwen3-0.6b, …).
    preset: String,
    /// Output directory (new or empty, unless --force).
    #[arg(long)]
    out: PathBuf,
    /// Stored dtype: fp32, bf16 or fp16.
    #[arg(long, default_value = "fp32")]
    dtype: String,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// Maximum shard size in MiB (larger models are written as shards with an index).
    #[arg(long, default_value_t = 5000)]
    max_shard_mib: u64,
    /// Write into a folder that already holds files: its config.json and weight files
    /// (model.safetensors, model-*-of-*.safetensors, the index) are replaced, other files kept.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> CliResult {
    let kind = parse_dtype(&a.dtype)?;
    check_output_dir(&a.out, a.force, "--out")?;
    let model = load_model(&a.preset, kind, Device::Cpu, a.seed)?;
    save_hf_dir(
        &model.cfg,
        model.named_parameters(),
        &a.out,
        kind,
        a.max_shard_mib << 20,
    )
    .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {} ({}) to {}", a.preset, a.dtype, a.out.display());
    Ok(())
}
