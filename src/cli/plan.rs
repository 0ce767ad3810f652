//! `harness plan <grid>`: the runs and what they cost (parameters, memory, FLOPs, tokens), per run
//! and in total, before launching anything. Estimates are documented in `harness::grid::plan`.
use super::validate::{load_grid, SetArgs};
use super::{CliResult, Failure};
use harness::grid::plan::{human_bytes, plan, render, PlanOptions};
use std::path::PathBuf;

/// List a grid's runs (id, label with axis values and seed) with parameter counts, memory
/// (weights, optimizer, activations at the configured batch and length, rollout KV cache), FLOPs
/// and token counts. Works before the weights and data are downloaded: the files runs name are not
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
}

fn positive_gib(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("`{s}` is not a positive number of GiB")),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

pub fn run(a: Args) -> CliResult {
    let g = load_grid(&a.grid, &a.set, false)?;
    let p = plan(
        &g,
        &PlanOptions {
            prompt_len: a.prompt_len.map(|n| n as usize),
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
