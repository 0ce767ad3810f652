//! `harness plan <grid>`: the runs and what they cost (parameters, memory, FLOPs, tokens), per run
//! and in total, before launching anything. Estimates are documented in `harness::grid::plan`.
use super::validate::load;
use super::{CliResult, Failure};
use harness::grid::plan::{human_bytes, plan, render, PlanOptions};
use std::path::PathBuf;

/// List a grid's runs (id, label with axis values and seed) with parameter counts, memory
/// (weights, optimizer, activations at the configured batch and length, rollout KV cache), FLOPs
/// and token counts.
#[derive(clap::Args)]
pub struct Args {
    /// Grid file (`experiments/*.yaml`).
    grid: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Prompt length in tokens (default: estimated from the task).
    #[arg(long)]
    prompt_len: Option<usize>,
    /// GPU memory in GiB: exit 1 if a run's estimated peak exceeds it.
    #[arg(long)]
    gpu_mem: Option<f64>,
}

pub fn run(a: Args) -> CliResult {
    let g = load(&a.grid)?;
    let p = plan(
        &g,
        &PlanOptions {
            prompt_len: a.prompt_len,
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
