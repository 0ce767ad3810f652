//! `harness run <grid>`: run a grid's runs in parallel child processes, with resume; or, with a
//! single `--only <run-id>`, train that one run in this process (what the children and Slurm
//! array tasks do).
use super::validate::{load, SetArgs};
use super::{CliResult, Failure};
use anyhow::anyhow;
use harness::grid::runner::{cores, run_grid, run_one, RunOptions};
use harness::grid::status::state_name;
use harness::grid::Grid;
use harness::runtime::{ensure_device, parse_device};
use harness::train::RunState;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Run a grid: `--jobs` runs at a time, one process each with `cores / jobs` libtorch threads,
/// progress bars, tables at the end. One failing or diverging run never stops the others; Ctrl-C
/// stops cleanly (runs checkpoint; continue with `--resume`). Output: `DIR/<grid>/{grid.yaml,
/// runs/<id>/{config.yaml, status.json, metrics.*, eval.*, checkpoints/}, tables/}`.
#[derive(clap::Args)]
pub struct Args {
    /// Grid file (`experiments/*.yaml`).
    grid: PathBuf,
    #[command(flatten)]
    set: SetArgs,
    /// Output directory; the grid goes to `DIR/<grid name>`.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Runs at a time.
    #[arg(long, short = 'j', default_value_t = 1)]
    jobs: usize,
    /// Device of every run: cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Continue a grid in DIR: skip finished runs, continue interrupted ones from their last
    /// checkpoint.
    #[arg(long)]
    resume: bool,
    /// Only these run ids (comma-separated or repeated). A single id trains that run in this
    /// process (resuming from its checkpoint), as a Slurm array task does.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// libtorch intra-op threads per run (default: cores / jobs).
    #[arg(long)]
    threads: Option<usize>,
    /// Window of the summary table's smoothed last-k statistics.
    #[arg(long, default_value_t = 5)]
    last_k: usize,
}

pub fn run(a: Args) -> CliResult {
    let grid = load(&a.grid, &a.set)?;
    if let Some(d) = &a.device {
        ensure_device(parse_device(d)?)?;
    }
    if a.jobs == 0 {
        return Err(Failure::bad_input(anyhow!("--jobs must be at least 1")));
    }
    if a.only.len() == 1 {
        return run_single(&grid, &a);
    }

    let signals = Arc::new(AtomicUsize::new(0));
    let s = signals.clone();
    ctrlc::set_handler(move || {
        s.fetch_add(1, Ordering::SeqCst);
    })?;
    let opts = RunOptions {
        grid_file: a.grid.clone(),
        out: a.out.clone(),
        jobs: a.jobs,
        threads: a.threads,
        device: a.device.clone(),
        resume: a.resume,
        only: a.only.clone(),
        exe: std::env::current_exe()?,
        last_k: a.last_k,
    };
    let r = run_grid(&grid, &opts, &signals)?;
    let gdir = grid.out_dir(&a.out);
    eprintln!(
        "grid `{}`: {} done, {} diverged, {} failed, {} interrupted, {} already finished",
        grid.name, r.done, r.diverged, r.failed, r.interrupted, r.skipped
    );
    if r.interrupted > 0 {
        return Err(Failure {
            code: 130,
            err: anyhow!(
                "interrupted: continue with `harness run {} --out {} --resume`",
                a.grid.display(),
                a.out.display()
            ),
        });
    }
    match &r.tables_error {
        Some(e) => eprintln!("warning: tables: {e}"),
        None => eprintln!("tables: {}", gdir.join("tables").display()),
    }
    if r.failed > 0 {
        return Err(Failure {
            code: 1,
            err: anyhow!(
                "{} run(s) failed (see runs/<id>/status.json and log.txt under {})",
                r.failed,
                gdir.display()
            ),
        });
    }
    Ok(())
}

fn run_single(grid: &Grid, a: &Args) -> CliResult {
    let id = &a.only[0];
    let run = grid
        .run(id)
        .ok_or_else(|| Failure::bad_input(anyhow!("grid `{}` has no run `{id}`", grid.name)))?;
    let threads = a.threads.unwrap_or_else(cores).max(1);
    tch::set_num_threads(threads as i32);
    if let Some(d) = &a.device {
        // The training loop places the run on the process's default device.
        harness::runtime::set_default_device(parse_device(d)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || {
        // First signal: checkpoint and stop after this step. Second: now.
        if s.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })?;
    let st = run_one(grid, run, &a.out, &stop)?;
    println!(
        "{} {} ({}) step {}/{}",
        state_name(st.state),
        st.label,
        st.id,
        st.step,
        st.total_steps
    );
    match st.state {
        RunState::Done => Ok(()),
        RunState::Diverged => {
            eprintln!("diverged: {}", st.reason.unwrap_or_default());
            Ok(())
        }
        RunState::Failed => Err(Failure {
            code: 1,
            err: anyhow!(st.error.unwrap_or_else(|| "failed".into())),
        }),
        RunState::Pending | RunState::Running => Err(Failure {
            code: 130,
            err: anyhow!("stopped at step {}: resumable", st.step),
        }),
    }
}
