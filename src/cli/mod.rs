//! Command-line interface. Exit codes: 0 ok, 1 a check failed, 2 bad input.
use anyhow::anyhow;
use clap::{Parser, Subcommand};
use std::path::Path;
use std::process::ExitCode;

mod bench;
mod bench_gpu;
mod export;
mod gate;
mod init;
mod inspect;
mod logprobs;
mod objective;
mod plan;
mod report;
mod run;
mod slurm;
mod table;
mod validate;

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Reproducibility and ablation harness for LLM RL under train-inference discrepancy"
)]
struct Cli {
    /// Let models named by Hugging Face Hub id (`Qwen/Qwen3-8B`) that are not in the local cache
    /// be downloaded into it (HF_ENDPOINT and HF_TOKEN are honoured). Without it the harness is
    /// offline. Same as HARNESS_HUB_DOWNLOAD=1, which grid jobs inherit.
    #[arg(long, global = true)]
    hub_download: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Inspect(inspect::Args),
    Init(init::Args),
    Logprobs(logprobs::Args),
    Objective(objective::Args),
    Validate(validate::Args),
    Plan(plan::Args),
    Run(run::Args),
    Table(table::Args),
    Report(report::Args),
    Gate(gate::Args),
    Slurm(slurm::Args),
    Export(export::Args),
    /// Time full GRPO steps on a tiny preset (see benches/compare_grpo_step.sh).
    BenchStep(bench::Args),
    /// GPU bench: forward+backward+AdamW tokens/s of a preset (see benches/gpu/compare.sh).
    BenchTrain(bench_gpu::TrainArgs),
    /// GPU bench: batched greedy decode tokens/s with the KV cache (see benches/gpu/compare.sh).
    BenchDecode(bench_gpu::DecodeArgs),
    /// GPU bench: one MoE layer forward+backward, grouped GEMM vs per-expert loop.
    BenchMoe(bench_gpu::MoeArgs),
}

/// A CLI failure with its exit code.
pub struct Failure {
    pub code: u8,
    pub err: anyhow::Error,
}

impl Failure {
    pub fn bad_input(err: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 2,
            err: err.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let err: anyhow::Error = e.into();
        // Library input/config errors are the user's to fix: exit 2.
        let code = match err.downcast_ref::<harness::Error>() {
            Some(harness::Error::Torch(_)) | None => 1,
            Some(_) => 2,
        };
        Failure { code, err }
    }
}

pub type CliResult = Result<(), Failure>;

/// Refuse to write into `dir` when it already holds anything, unless `force` (then the writer
/// replaces only the files it writes). `flag` names the option that gave `dir`.
pub fn check_output_dir(dir: &Path, force: bool, flag: &str) -> CliResult {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Failure::bad_input(anyhow!("{flag} {}: {e}", dir.display()))),
        Ok(entries) => entries,
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() || force {
        return Ok(());
    }
    names.sort();
    let more = names.len().saturating_sub(5);
    names.truncate(5);
    Err(Failure::bad_input(anyhow!(
        "{flag} {}: the folder is not empty ({}{}); choose an empty or new folder, or pass \
         --force to write into it (only the files this command writes are replaced)",
        dir.display(),
        names.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.hub_download {
        // Set before any thread starts; grid jobs (child processes) inherit it.
        std::env::set_var(harness::model::hub::DOWNLOAD_ENV, "1");
    }
    let res = match cli.cmd {
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::BenchStep(a) => bench::run(a),
        Cmd::BenchTrain(a) => bench_gpu::train(a),
        Cmd::BenchDecode(a) => bench_gpu::decode(a),
        Cmd::BenchMoe(a) => bench_gpu::moe(a),
        Cmd::Export(a) => export::run(a),
        Cmd::Init(a) => init::run(a),
        Cmd::Logprobs(a) => logprobs::run(a),
        Cmd::Objective(a) => objective::run(a),
        Cmd::Validate(a) => validate::run(a),
        Cmd::Plan(a) => plan::run(a),
        Cmd::Run(a) => run::run(a),
        Cmd::Table(a) => table::run(a),
        Cmd::Report(a) => report::run(a),
        Cmd::Gate(a) => gate::run(a),
        Cmd::Slurm(a) => slurm::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.err);
            ExitCode::from(f.code)
        }
    }
}
