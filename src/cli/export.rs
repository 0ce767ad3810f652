//! `harness export RUN_DIR`: write a run's trained policy (latest checkpoint) as a PEFT adapter
//! directory (LoRA runs) and/or a merged Hugging Face model directory.
use super::{CliResult, Failure};
use anyhow::anyhow;
use harness::runtime::parse_dtype;
use std::path::PathBuf;

/// Export a run's policy from its latest checkpoint. `--adapter DIR`: PEFT adapter
/// (`adapter_model.safetensors` + `adapter_config.json`; LoRA runs only). `--merged DIR`: HF model
/// directory (`config.json` + safetensors) with LoRA adapters merged into the base weights.
#[derive(clap::Args)]
pub struct Args {
    /// A run directory (`runs/<grid>/runs/<id>`, with `config.yaml` and `checkpoints/`).
    run_dir: PathBuf,
    /// Write the PEFT adapter directory here.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Write the merged HF model directory here.
    #[arg(long)]
    merged: Option<PathBuf>,
    /// Dtype of the merged weights: fp32, bf16 or fp16 (adapters are always fp32).
    #[arg(long, default_value = "bf16")]
    dtype: String,
}

pub fn run(a: Args) -> CliResult {
    if a.adapter.is_none() && a.merged.is_none() {
        return Err(Failure::bad_input(anyhow!(
            "nothing to export: give --adapter DIR and/or --merged DIR"
        )));
    }
    let kind = parse_dtype(&a.dtype)?;
    harness::train::policy::export_run(
        &a.run_dir,
        a.adapter.as_deref(),
        a.merged.as_deref(),
        kind,
    )?;
    if let Some(d) = &a.adapter {
        println!("adapter: {}", d.display());
    }
    if let Some(d) = &a.merged {
        println!("merged: {}", d.display());
    }
    Ok(())
}
