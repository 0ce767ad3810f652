//! `harness slurm <grid>`: an sbatch job-array script, one array task per run.
use super::validate::{load, SetArgs};
use super::CliResult;
use anyhow::Context;
use harness::grid::fsutil::atomic_write;
use harness::grid::runner::prepare;
use harness::grid::slurm::{script, SlurmOptions};
use std::path::PathBuf;

/// Prepare `DIR/<grid>` and write `DIR/<grid>/slurm.sh`, a job array whose task i runs
/// `harness run <grid> --only <run i> --resume`. Submit it with `sbatch`; rebuild the tables with
/// `harness table DIR/<grid>` when it is done.
#[derive(clap::Args)]
pub struct Args {
    /// Grid file (`experiments/*.yaml`).
    grid: PathBuf,
    #[command(flatten)]
    set: SetArgs,
    /// Output directory (on storage the cluster's nodes share).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    #[arg(long)]
    partition: Option<String>,
    #[arg(long)]
    account: Option<String>,
    /// GPUs per run (0: CPU runs).
    #[arg(long, default_value_t = 1)]
    gpus_per_run: usize,
    /// CPU cores per run (its libtorch threads).
    #[arg(long, default_value_t = 4)]
    cpus_per_run: usize,
    /// Memory per run, as sbatch takes it (`64G`).
    #[arg(long)]
    mem: Option<String>,
    /// Time limit per run, as sbatch takes it (`24:00:00`).
    #[arg(long)]
    time: Option<String>,
    /// At most this many runs at once.
    #[arg(long)]
    max_parallel: Option<usize>,
    /// Extra sbatch option, verbatim (repeatable): `--sbatch=--qos=high`.
    #[arg(long = "sbatch", allow_hyphen_values = true)]
    extra: Vec<String>,
    /// Only these run ids (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The harness binary as the nodes see it (default: this one).
    #[arg(long)]
    harness: Option<PathBuf>,
    /// Where to write the script (default `DIR/<grid>/slurm.sh`).
    #[arg(long)]
    script: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult {
    let grid = load(&a.grid, &a.set)?;
    for id in &a.only {
        if grid.run(id).is_none() {
            return Err(super::Failure::bad_input(anyhow::anyhow!(
                "grid `{}` has no run `{id}`",
                grid.name
            )));
        }
    }
    let out = std::path::absolute(&a.out).context("output directory")?;
    let grid_file = std::path::absolute(&a.grid).context("grid file")?;
    let exe = match a.harness {
        Some(p) => p,
        None => std::env::current_exe().context("locating the harness binary")?,
    };
    let gdir = prepare(&grid, &out)?;
    std::fs::create_dir_all(gdir.join("slurm")).context("creating the slurm log directory")?;
    let opts = SlurmOptions {
        grid_file,
        out,
        exe,
        partition: a.partition,
        account: a.account,
        gpus_per_run: a.gpus_per_run,
        cpus_per_run: a.cpus_per_run,
        mem: a.mem,
        time: a.time,
        max_parallel: a.max_parallel,
        extra: a.extra,
        only: a.only,
    };
    let n = if opts.only.is_empty() {
        grid.runs.len()
    } else {
        opts.only.len()
    };
    let text = script(&grid, &opts);
    let path = a.script.unwrap_or_else(|| gdir.join("slurm.sh"));
    atomic_write(&path, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    println!("wrote {} ({n} array task(s))", path.display());
    println!("submit with: sbatch {}", path.display());
    Ok(())
}
