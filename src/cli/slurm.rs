//! `harness slurm <grid>`: an sbatch job-array script, one array task per run.
use super::validate::{load, SetArgs};
use super::CliResult;
use anyhow::Context;
use harness::grid::runner::{prepare, PrepareMode};
use harness::grid::schedule::select;
use harness::grid::slurm::{script, SlurmOptions};
use harness::rundir::atomic_write;
use std::path::PathBuf;

/// Prepare `DIR/<grid>` (the saved copy of the grid, as `harness run` does) and write
/// `DIR/<grid>/slurm.sh`, a job array whose task i runs `harness run DIR/<grid> --only <run i>`
/// from the current directory (`#SBATCH --chdir`), so relative model and data paths resolve as
/// here and later edits of the grid file do not reach queued tasks. Submit it with `sbatch`;
/// rebuild the tables with `harness table DIR/<grid>` when it is done.
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
    /// Only these runs: run ids, run labels or grid point labels (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// When the grid file changed since DIR/<grid> was started: add its new runs to the saved
    /// grid instead of refusing.
    #[arg(long)]
    extend: bool,
    /// The harness binary as the nodes see it (default: this one).
    #[arg(long)]
    harness: Option<PathBuf>,
    /// Where to write the script (default `DIR/<grid>/slurm.sh`).
    #[arg(long)]
    script: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult {
    let grid = load(&a.grid, &a.set)?;
    if !a.extend {
        select(&harness::grid::manifest::manifest(&grid), &a.only)?;
    }
    let out = std::path::absolute(&a.out).context("output directory")?;
    let workdir = std::env::current_dir().context("the current directory")?;
    let exe = match a.harness {
        Some(p) => p,
        None => std::env::current_exe().context("locating the harness binary")?,
    };
    let mode = PrepareMode {
        resume: true,
        extend: a.extend,
    };
    let (gdir, m) = prepare(&grid, &out, mode)?;
    let only: Vec<String> = if a.only.is_empty() {
        Vec::new()
    } else {
        select(&m, &a.only)?
            .into_iter()
            .map(|i| m.runs[i].id.clone())
            .collect()
    };
    std::fs::create_dir_all(gdir.join("slurm")).context("creating the slurm log directory")?;
    let opts = SlurmOptions {
        grid_dir: gdir.clone(),
        workdir,
        exe,
        partition: a.partition,
        account: a.account,
        gpus_per_run: a.gpus_per_run,
        cpus_per_run: a.cpus_per_run,
        mem: a.mem,
        time: a.time,
        max_parallel: a.max_parallel,
        extra: a.extra,
        only,
    };
    let n = if opts.only.is_empty() {
        m.runs.len()
    } else {
        opts.only.len()
    };
    let text = script(&m, &opts);
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
