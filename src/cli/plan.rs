//! `harness plan <grid>`: the runs and what they cost (parameters, memory, FLOPs, tokens), per run
//! and in total, before launching anything. Estimates are documented in `harness::grid::plan`.
use super::validate::{load_grid, SetArgs};
use super::{CliResult, Failure};
use harness::grid::plan::time::Gpu;
use harness::grid::plan::{human_bytes, plan, render, PlanOptions};
use std::path::PathBuf;

/// List a grid's runs (id, label with axis values and seed) with parameter counts, memory by
/// component (weights, gradients + AdamW, the engine's copy, the KV cache of one rollout wave, one
/// micro-batch's activations and logits) and the phase that sets the peak, FLOPs, token counts and
/// an estimated time per step on one GPU (H200 unless --gpu-tflops/--gpu-tbs) at --mfu / --mbu. Works before the weights and data are downloaded: the files runs name are not
/// checked (`validate` does), and a model directory that is not there yet is sized by the preset
/// its name ends with.
#[derive(clap::Args)]
pub struct Args {
    /// Grid file (`experiments/*.yaml`).
    grid: PathBuf,
    #[command(flatten)]
    set: SetArgs,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Prompt length in tokens, ≥ 1 (default: estimated from the task).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    prompt_len: Option<u64>,
    /// GPU memory in GiB, > 0: exit 1 if a run's estimated peak exceeds it.
    #[arg(long, value_parser = positive_gib)]
    gpu_mem: Option<f64>,
    /// Model FLOPs utilisation assumed for prefill and training in the time per step (0 < x ≤ 1).
    #[arg(long, default_value_t = 0.35, value_parser = fraction)]
    mfu: f64,
    /// Fraction of the GPU's memory bandwidth decode reaches (0 < x ≤ 1).
    #[arg(long, default_value_t = 0.5, value_parser = fraction)]
    mbu: f64,
    /// Dense bf16 peak of the GPU, TFLOP/s (default: one H200).
    #[arg(long, default_value_t = 989.0, value_parser = positive_gib)]
    gpu_tflops: f64,
    /// Memory bandwidth of the GPU, TB/s (default: one H200).
    #[arg(long, default_value_t = 4.8, value_parser = positive_gib)]
    gpu_tbs: f64,
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        Ok(_) => Err(format!("`{s}` is not in (0, 1]")),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

fn positive_gib(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("`{s}` is not a positive number")),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

pub fn run(a: Args) -> CliResult {
    let g = load_grid(&a.grid, &a.set, false)?;
    let p = plan(
        &g,
        &PlanOptions {
            prompt_len: a.prompt_len.map(|n| n as usize),
            gpu: Gpu {
                name: if a.gpu_tflops == 989.0 && a.gpu_tbs == 4.8 {
                    "H200".into()
                } else {
                    "GPU".into()
                },
                tflops: a.gpu_tflops,
                tbs: a.gpu_tbs,
                mfu: a.mfu,
                mbu: a.mbu,
            },
        },
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", render(&p));
    }
    if let Some(gib) = a.gpu_mem {
        let limit = (gib * (1u64 << 30) as f64) as u64;
        let over: Vec<String> = p
            .runs
            .iter()
            .filter(|r| r.mem_peak > limit)
            .map(|r| format!("{} ({})", r.label, human_bytes(r.mem_peak)))
            .collect();
        if !over.is_empty() {
            return Err(Failure {
                code: 1,
                err: anyhow::anyhow!(
                    "{} run(s) exceed {gib} GiB: {}",
                    over.len(),
                    over.join(", ")
                ),
            });
        }
        eprintln!("every run fits in {gib} GiB");
    }
    Ok(())
}
