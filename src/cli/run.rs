//! `harness run <grid>`: run a grid's runs in parallel child processes, with resume; or, when
//! `--only` names a single run, train that one run in this process (what the children and Slurm
//! array tasks do, from the saved grid directory).
use super::validate::{load_grid, SetArgs};
use super::{CliResult, Failure};
use anyhow::anyhow;
use harness::config::RunConfig;
use harness::grid::manifest::manifest;
use harness::grid::runner::{
    cores, fmt_duration, load_saved_config, prepare, run_one, Placement, PrepareMode,
};
use harness::grid::schedule::{run_grid, select, RunOptions};
use harness::rundir::{
    is_grid_dir, Manifest, PidLock, RunRecord, RunState, CONFIG_FILE, LOCK_FILE, TABLES_DIR,
};
use harness::runtime::{default_device, ensure_device, parse_device};
use harness::table::{build_tables, TableOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Run a grid: `--jobs` runs at a time, one process each with `cores / jobs` libtorch threads and
/// one device of `--devices`, progress bars, tables at the end. One failing or diverging run never
/// stops the others; Ctrl-C or SIGTERM stops cleanly (runs checkpoint and are marked
/// `interrupted`; continue with `--resume`). Output: `DIR/<grid>/{grid.yaml, grid.source.yaml,
/// runs/<id>/{config.yaml, status.json, log.txt, metrics.*, eval.*, checkpoints/}, tables/}`.
#[derive(clap::Args)]
pub struct Args {
    /// Grid file (`experiments/*.yaml`), or a grid's output directory (`DIR/<grid>`) to run its
    /// saved copy.
    grid: PathBuf,
    #[command(flatten)]
    set: SetArgs,
    /// Output directory; the grid goes to `DIR/<grid name>`.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Runs at a time.
    #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: u64,
    /// Device of every run: cpu, cuda (every visible GPU, one per job) or cuda:N.
    #[arg(long, conflicts_with = "devices")]
    device: Option<String>,
    /// Devices to place runs on, round-robin, one per job (`cuda:0,cuda:1`).
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// Continue a grid in DIR: skip finished runs, continue interrupted ones from their last
    /// checkpoint.
    #[arg(long)]
    resume: bool,
    /// When the grid file changed since DIR was started: add its new runs to the saved grid
    /// (saved runs and results are kept) instead of refusing. Implies --resume.
    #[arg(long)]
    extend: bool,
    /// Only these runs: run ids, run labels (`case/key=value/seed=S`) or grid point labels
    /// (comma-separated or repeated). A single run trains in this process (resuming from its
    /// checkpoint), as a Slurm array task does.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// libtorch intra-op threads per run (default: cores / jobs). CPU results are bitwise
    /// reproducible for a fixed thread count on the same kind of CPU (MKL and ATen pick AVX2 or
    /// AVX-512 kernels by CPU, which changes float rounding).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Window of the summary table's smoothed last-k statistics.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    last_k: u64,
    /// Index of `--device` in the scheduler's device list (set by the scheduler, recorded).
    #[arg(long, hide = true)]
    device_slot: Option<usize>,
    /// Print each selected run's launch command (for `backend: verl` runs: the verl launch with
    /// its Hydra overrides, run from the repository root) and exit without running anything.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(a: Args) -> CliResult {
    let devices = device_list(&a)?;
    if is_grid_dir(&a.grid) {
        if !a.set.set.is_empty() {
            return Err(Failure::bad_input(anyhow!(
                "--set changes a grid file's base; {} is a saved grid (its runs' configs are fixed)",
                a.grid.display()
            )));
        }
        return run_saved(&a, &devices);
    }
    // A dry run prints launches for the machine that will run them: its model and data files
    // need not be here.
    let grid = load_grid(&a.grid, &a.set, !a.dry_run)?;
    let now = manifest(&grid);
    if a.dry_run {
        return dry_run(&grid, &now, &a);
    }
    if !a.extend {
        select(&now, &a.only)?;
    }
    if let Some(rec) = single(&now, &a)? {
        let mode = PrepareMode {
            resume: true,
            extend: a.extend,
        };
        let (gdir, _) = prepare(&grid, &a.out, mode)?;
        let cfg = &grid.run(&rec.id).expect("selected from the grid").config;
        return train_here(&gdir, &rec, cfg, &a);
    }
    let gdir = grid.out_dir(&a.out);
    std::fs::create_dir_all(&gdir)
        .map_err(|e| Failure::bad_input(anyhow!("{}: {e}", gdir.display())))?;
    let _lock = PidLock::acquire(&gdir.join(LOCK_FILE))?;
    let mode = PrepareMode {
        resume: a.resume || a.extend,
        extend: a.extend,
    };
    let (gdir, m) = prepare(&grid, &a.out, mode)?;
    let selected = if a.only.is_empty() {
        // The grid file's runs (the saved grid may hold more: they are kept, not run).
        let n = m.runs.iter().filter(|r| grid.run(&r.id).is_none()).count();
        if n > 0 {
            eprintln!(
                "note: {n} run(s) of the saved grid are not in {}: kept, not run (`harness run {}` \
                 runs the whole saved grid)",
                a.grid.display(),
                gdir.display()
            );
        }
        (0..m.runs.len())
            .filter(|&i| grid.run(&m.runs[i].id).is_some())
            .collect()
    } else {
        select(&m, &a.only)?
    };
    schedule(&gdir, &m, &selected, &a, devices)
}

/// `harness run DIR/<grid>`: the saved grid, without the grid file.
fn run_saved(a: &Args, devices: &[String]) -> CliResult {
    let gdir = &a.grid;
    let m = Manifest::read(gdir)?;
    if let Some(rec) = single(&m, a)? {
        let cfg = load_saved_config(&harness::rundir::run_dir(gdir, &rec.id).join(CONFIG_FILE))?;
        return train_here(gdir, &rec, &cfg, a);
    }
    let _lock = PidLock::acquire(&gdir.join(LOCK_FILE))?;
    let selected = select(&m, &a.only)?;
    schedule(gdir, &m, &selected, a, devices.to_vec())
}

/// The run to train in this process: `--only` with one selector that names exactly one run (a
/// point label with several seeds schedules them).
fn single(m: &Manifest, a: &Args) -> Result<Option<RunRecord>, Failure> {
    if a.only.len() != 1 {
        return Ok(None);
    }
    Ok(match select(m, &a.only)?.as_slice() {
        [i] => Some(m.runs[*i].clone()),
        _ => None,
    })
}

/// The device list: `--devices`, or every visible GPU for `--device cuda`, or `--device D`.
fn device_list(a: &Args) -> Result<Vec<String>, Failure> {
    let list: Vec<String> = if !a.devices.is_empty() {
        a.devices.iter().map(|d| d.trim().to_string()).collect()
    } else {
        match a.device.as_deref() {
            None => Vec::new(),
            Some("cuda") => {
                let n = harness::runtime::cuda_device_count();
                if n == 0 {
                    return Err(Failure::bad_input(anyhow!(
                        "--device cuda: no CUDA device is visible"
                    )));
                }
                (0..n).map(|i| format!("cuda:{i}")).collect()
            }
            Some(d) => vec![d.to_string()],
        }
    };
    for d in &list {
        ensure_device(parse_device(d)?)?;
    }
    Ok(list)
}

fn schedule(
    gdir: &Path,
    m: &Manifest,
    selected: &[usize],
    a: &Args,
    devices: Vec<String>,
) -> CliResult {
    let signals = Arc::new(AtomicUsize::new(0));
    let s = signals.clone();
    ctrlc::set_handler(move || {
        s.fetch_add(1, Ordering::SeqCst);
    })?;
    let jobs = a.jobs as usize;
    let opts = RunOptions {
        jobs,
        threads: a
            .threads
            .map(|t| t as usize)
            .unwrap_or((cores() / jobs).max(1)),
        devices,
        exe: std::env::current_exe()?,
    };
    let r = run_grid(gdir, m, selected, &opts, &signals)?;
    eprintln!(
        "grid `{}`: {} done, {} diverged, {} failed, {} interrupted, {} already finished",
        m.name, r.done, r.diverged, r.failed, r.interrupted, r.skipped
    );
    if r.interrupted > 0 {
        return Err(Failure {
            code: 130,
            err: anyhow!(
                "interrupted: continue with `harness run {} --resume`",
                gdir.display()
            ),
        });
    }
    let tables = build_tables(
        gdir,
        &TableOptions {
            last_k: a.last_k as usize,
        },
    );
    match tables {
        Err(e) => eprintln!("warning: tables: {e}"),
        Ok(_) => eprintln!("tables: {}", gdir.join(TABLES_DIR).display()),
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

/// `--dry-run`: every selected run's label, id and launch command.
fn dry_run(grid: &harness::grid::Grid, m: &Manifest, a: &Args) -> CliResult {
    let gdir = grid.out_dir(&a.out);
    for i in select(m, &a.only)? {
        let rec = &m.runs[i];
        let cfg = &grid.run(&rec.id).expect("from the grid").config;
        let cmd = harness::backend::run::command(&gdir, &grid.name, rec, cfg, Path::new("."))
            .unwrap_or_else(|| format!("harness run {} --only {}", a.grid.display(), rec.id));
        println!("# {} ({})\n{cmd}", rec.label, rec.id);
    }
    Ok(())
}

/// Train one run in this process, with a progress line per step on stderr.
fn train_here(gdir: &Path, rec: &RunRecord, cfg: &RunConfig, a: &Args) -> CliResult {
    if cfg.backend.verl().is_some() {
        let name = gdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let st = harness::backend::run::run_verl(gdir, &name, rec, cfg, Path::new("."))?;
        println!(
            "{} {} ({}) step {}/{}",
            st.state, st.label, st.id, st.step, st.total_steps
        );
        return match st.state {
            RunState::Done => Ok(()),
            _ => Err(Failure {
                code: 1,
                err: anyhow!("{}", st.error.unwrap_or_default()),
            }),
        };
    }
    let threads = a.threads.map(|t| t as usize).unwrap_or_else(cores);
    tch::set_num_threads(threads as i32);
    let device = match &a.device {
        Some(d) => {
            let dev = parse_device(d)?;
            ensure_device(dev)?;
            // The training loop places the run on the process's default device.
            harness::runtime::set_default_device(dev);
            d.clone()
        }
        None => device_name(default_device()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let parent = std::os::unix::process::parent_id();
    ctrlc::set_handler(move || {
        // First signal (Ctrl-C, SIGTERM, the scheduler's death): checkpoint and stop after this
        // step. Second: now — unless our parent is gone: Linux sends the parent-death SIGTERM
        // when the spawning thread exits and again when the whole scheduler does (we are then
        // re-parented), so one death can arrive as two signals.
        let again = s.swap(true, Ordering::SeqCst);
        if again && std::os::unix::process::parent_id() == parent {
            std::process::exit(130);
        }
    })?;
    let place = Placement {
        device: Some(device),
        slot: a.device_slot,
        threads: tch::get_num_threads().max(1) as usize,
        progress_lines: true,
    };
    let t0 = Instant::now();
    let st = run_one(gdir, rec, cfg, &place, &stop)?;
    println!(
        "{} {} ({}) step {}/{} in {}",
        st.state,
        st.label,
        st.id,
        st.step,
        st.total_steps,
        fmt_duration(t0.elapsed().as_secs_f64())
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
        RunState::Pending | RunState::Running | RunState::Interrupted => Err(Failure {
            code: 130,
            err: anyhow!("stopped at step {}: resumable", st.step),
        }),
    }
}

fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".into(),
    }
}
