//! Running a grid: one OS process per run (libtorch's RNG and thread pool are process-global, and
//! an abort kills its process), `jobs` at a time, each with `threads` intra-op threads.
//!
//! The scheduler ([`run_grid`]) holds `DIR/<grid>/.lock`, writes the resolved grid, and spawns
//! `harness run <grid> --only <id> --resume --out DIR --threads T` per run — the same entry a
//! Slurm array task uses ([`run_one`]). A run directory is the unit of resume: `status.json`
//! (written atomically) says pending / running / done / failed / diverged; done and diverged runs
//! are never recomputed, the others continue from their last checkpoint. Children report progress
//! by rewriting their `status.json`; their output goes to `runs/<id>/log.txt`.
use super::fsutil::{atomic_write, PidLock};
use super::manifest::{Manifest, MANIFEST_FILE};
use super::status::{state_name, RunStatus};
use super::{Grid, Run};
use crate::train::{run_training, RunState, StepReport};
use crate::{Error, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The metric shown as "reward" on progress bars.
pub const REWARD_METRIC: &str = "critic/score/mean";

/// How long a run waits for another process still holding its directory (a previous scheduler's
/// child finishing its checkpoint after a crash) before giving up.
const RUN_LOCK_WAIT: Duration = Duration::from_secs(60);

pub fn run_dir(grid_dir: &Path, id: &str) -> PathBuf {
    grid_dir.join("runs").join(id)
}

/// Create `DIR/<grid>/` with the resolved `grid.yaml`, and for every run `runs/<id>/config.yaml`
/// and a `pending` status where there is none yet. Returns the grid directory.
pub fn prepare(grid: &Grid, out: &Path) -> Result<PathBuf> {
    let gdir = grid.out_dir(out);
    Manifest::from_grid(grid).write(&gdir)?;
    for run in &grid.runs {
        write_run_config(&gdir, run)?;
        let dir = run_dir(&gdir, &run.id);
        if RunStatus::read(&dir).is_none() {
            RunStatus::new(run, RunState::Pending).write(&dir)?;
        }
    }
    std::fs::create_dir_all(gdir.join("tables")).map_err(|e| Error::io(&gdir, e))?;
    Ok(gdir)
}

fn write_run_config(gdir: &Path, run: &Run) -> Result<()> {
    let text = serde_yaml::to_string(&run.config).expect("config serialises");
    let header = format!("# run {} — {} (seed {})\n", run.id, run.label, run.seed);
    atomic_write(
        &run_dir(gdir, &run.id).join("config.yaml"),
        format!("{header}{text}").as_bytes(),
    )
}

/// Train one run in this process (the child side, and a Slurm array task). Skips a run that is
/// already done or diverged; otherwise trains (resuming from its checkpoint), keeps `status.json`
/// current, converts its JSONL metrics to Parquet, and returns the final status.
pub fn run_one(grid: &Grid, run: &Run, out: &Path, stop: &AtomicBool) -> Result<RunStatus> {
    let gdir = grid.out_dir(out);
    if !gdir.join(MANIFEST_FILE).exists() {
        Manifest::from_grid(grid).write(&gdir)?;
    }
    write_run_config(&gdir, run)?;
    let dir = run_dir(&gdir, &run.id);
    let _lock = PidLock::acquire_waiting(&dir.join(".lock"), RUN_LOCK_WAIT)?;
    if let Some(st) = RunStatus::read(&dir) {
        if st.is_finished() {
            return Ok(st);
        }
    }
    let mut st = RunStatus::new(run, RunState::Running);
    st.pid = Some(std::process::id());
    st.write(&dir)?;

    let mut progress = st.clone();
    let mut last_write = Instant::now();
    let mut on_step = |rep: &StepReport| {
        progress.step = rep.step;
        progress.total_steps = rep.total_steps;
        if let Some(r) = rep.metrics.get(REWARD_METRIC) {
            progress.reward = Some(*r);
        }
        if last_write.elapsed() >= Duration::from_millis(200) || rep.step == rep.total_steps {
            // Progress is advisory: a failed write must not stop training.
            let _ = progress.write(&dir);
            last_write = Instant::now();
        }
    };
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_training(&run.config, run.seed, &dir, stop, &mut on_step)
    }));
    let mut last = RunStatus::read(&dir).unwrap_or(st);
    last.pid = None;
    match res {
        Ok(Ok(outcome)) => {
            last.state = outcome.state;
            last.step = outcome.step;
            last.reason = outcome.reason;
            last.error = None;
        }
        Ok(Err(e)) => {
            last.state = RunState::Failed;
            last.error = Some(e.to_string());
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            last.state = RunState::Failed;
            last.error = Some(format!("panicked: {msg}"));
        }
    }
    if let Err(e) = crate::table::convert_run(&dir) {
        eprintln!("warning: {}: metrics to parquet: {e}", dir.display());
    }
    last.write(&dir)?;
    Ok(last)
}

/// What the scheduler is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The grid file (passed on to children).
    pub grid_file: PathBuf,
    pub out: PathBuf,
    pub jobs: usize,
    /// Intra-op threads per run; `None` = max(1, cores / jobs).
    pub threads: Option<usize>,
    pub device: Option<String>,
    pub resume: bool,
    /// Restrict to these run ids (empty = all).
    pub only: Vec<String>,
    /// The `harness` binary to spawn.
    pub exe: PathBuf,
    /// `last-k` of the summary table.
    pub last_k: usize,
}

/// How a grid invocation ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GridReport {
    pub selected: usize,
    /// Already finished before this invocation.
    pub skipped: usize,
    pub done: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Stopped by a signal: resumable.
    pub interrupted: usize,
    pub tables_error: Option<String>,
}

struct Active {
    run: usize,
    child: Child,
    bar: ProgressBar,
    started: Instant,
    first_step: Option<usize>,
}

/// Number of CPU cores the process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Schedule the grid's runs as child processes. `signals` counts SIGINT/SIGTERM received: the
/// first stops launching and forwards SIGINT to the children (which checkpoint and exit), the
/// second kills them.
pub fn run_grid(grid: &Grid, opts: &RunOptions, signals: &AtomicUsize) -> Result<GridReport> {
    let jobs = opts.jobs.max(1);
    let threads = opts.threads.unwrap_or_else(|| (cores() / jobs).max(1));
    let selected: Vec<usize> = if opts.only.is_empty() {
        (0..grid.runs.len()).collect()
    } else {
        let mut v = Vec::new();
        for id in &opts.only {
            match grid.runs.iter().position(|r| r.id == *id) {
                Some(i) => v.push(i),
                None => {
                    return Err(Error::Input(format!(
                        "grid `{}` has no run `{id}` (see `harness plan`)",
                        grid.name
                    )))
                }
            }
        }
        v
    };

    let gdir = grid.out_dir(&opts.out);
    std::fs::create_dir_all(&gdir).map_err(|e| Error::io(&gdir, e))?;
    let _lock = PidLock::acquire(&gdir.join(".lock"))?;

    let statuses: Vec<Option<RunStatus>> = selected
        .iter()
        .map(|&i| RunStatus::read(&run_dir(&gdir, &grid.runs[i].id)))
        .collect();
    if !opts.resume {
        let started: Vec<&RunStatus> = statuses
            .iter()
            .flatten()
            .filter(|s| s.state != RunState::Pending)
            .collect();
        if let Some(s) = started.first() {
            return Err(Error::Input(format!(
                "{} already holds results of this grid ({} run(s), e.g. {} is {}); pass --resume to \
                 continue it, or choose another --out",
                gdir.display(),
                started.len(),
                s.label,
                state_name(s.state)
            )));
        }
    }
    prepare(grid, &opts.out)?;

    let mut report = GridReport {
        selected: selected.len(),
        ..Default::default()
    };
    let mut todo: Vec<usize> = Vec::new();
    for (&i, st) in selected.iter().zip(&statuses) {
        if st.as_ref().is_some_and(RunStatus::is_finished) {
            report.skipped += 1;
        } else {
            todo.push(i);
        }
    }
    // The first seed of every grid point first: an early look at the whole grid.
    let seed_rank: HashMap<i64, usize> = {
        let mut seeds: Vec<i64> = Vec::new();
        for r in &grid.runs {
            if !seeds.contains(&r.seed) {
                seeds.push(r.seed);
            }
        }
        seeds.into_iter().enumerate().map(|(i, s)| (s, i)).collect()
    };
    todo.sort_by_key(|&i| (seed_rank[&grid.runs[i].seed], i));
    let mut queue: VecDeque<usize> = todo.into();

    let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    let grid_bar = mp.add(ProgressBar::new(report.selected as u64));
    grid_bar.set_style(
        ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {pos}/{len} runs {msg} ({elapsed})",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    grid_bar.set_prefix(grid.name.clone());
    grid_bar.set_position(report.skipped as u64);
    let run_style =
        ProgressStyle::with_template("  {prefix:40!} [{bar:20}] {pos:>5}/{len:5} {msg} eta {eta}")
            .expect("template")
            .progress_chars("=> ");
    let say = |mp: &MultiProgress, s: String| mp.suspend(|| eprintln!("{s}"));
    say(
        &mp,
        format!(
            "grid `{}`: {} run(s) to do, {} already finished; {} job(s) × {} thread(s) → {}",
            grid.name,
            queue.len(),
            report.skipped,
            jobs,
            threads,
            gdir.display()
        ),
    );

    let mut active: Vec<Active> = Vec::new();
    let mut stopping = false;
    let mut killed = false;
    loop {
        let sig = signals.load(Ordering::SeqCst);
        if sig >= 1 && !stopping {
            stopping = true;
            say(
                &mp,
                format!(
                    "stopping: {} active run(s) checkpoint and exit (again to kill)",
                    active.len()
                ),
            );
            for a in &active {
                send_signal(&a.child, libc::SIGINT);
            }
        }
        if sig >= 2 && !killed {
            killed = true;
            for a in &mut active {
                let _ = a.child.kill();
            }
        }
        while !stopping && active.len() < jobs {
            let Some(i) = queue.pop_front() else { break };
            let run = &grid.runs[i];
            match spawn_child(run, &grid.overrides, opts, threads, &gdir) {
                Ok(child) => {
                    let bar = mp.add(ProgressBar::new(run.config.train.steps as u64));
                    bar.set_style(run_style.clone());
                    bar.set_prefix(run.label.clone());
                    say(&mp, format!("[start] {} ({})", run.label, run.id));
                    active.push(Active {
                        run: i,
                        child,
                        bar,
                        started: Instant::now(),
                        first_step: None,
                    });
                }
                Err(e) => {
                    let dir = run_dir(&gdir, &run.id);
                    let mut st = RunStatus::read(&dir)
                        .unwrap_or_else(|| RunStatus::new(run, RunState::Failed));
                    st.state = RunState::Failed;
                    st.error = Some(format!("could not start: {e}"));
                    let _ = st.write(&dir);
                    report.failed += 1;
                    grid_bar.inc(1);
                    say(&mp, format!("[failed] {} ({}): {e}", run.label, run.id));
                }
            }
        }

        let mut k = 0;
        while k < active.len() {
            let a = &mut active[k];
            let run = &grid.runs[a.run];
            let dir = run_dir(&gdir, &run.id);
            let exited = match a.child.try_wait() {
                Ok(None) => None,
                Ok(Some(e)) => Some(Some(e)),
                Err(_) => Some(None),
            };
            match exited {
                None => {
                    if let Some(st) = RunStatus::read(&dir) {
                        if st.state == RunState::Running {
                            if a.first_step.is_none() {
                                a.first_step = Some(st.step);
                                a.bar.set_length(st.total_steps as u64);
                                a.bar.set_position(st.step as u64);
                                a.bar.reset_eta();
                            }
                            a.bar.set_position(st.step as u64);
                            if let Some(r) = st.reward {
                                a.bar.set_message(format!("reward {r:.3}"));
                            }
                        }
                    }
                    k += 1;
                }
                Some(exit) => {
                    let a = active.swap_remove(k);
                    a.bar.finish_and_clear();
                    mp.remove(&a.bar);
                    let st = RunStatus::read(&dir);
                    let mut st = st.unwrap_or_else(|| RunStatus::new(run, RunState::Running));
                    let how = match exit {
                        Some(e) => e.to_string(),
                        None => "unknown exit".into(),
                    };
                    let state = match st.state {
                        RunState::Done | RunState::Diverged | RunState::Failed => st.state,
                        _ if stopping => RunState::Running,
                        _ if exit.is_some_and(|e| e.code() == Some(130)) => RunState::Running,
                        _ => {
                            st.state = RunState::Failed;
                            st.pid = None;
                            st.error = Some(format!(
                                "the run's process ended ({how}) without a result; see {}",
                                dir.join("log.txt").display()
                            ));
                            let _ = st.write(&dir);
                            RunState::Failed
                        }
                    };
                    let secs = a.started.elapsed().as_secs_f64();
                    let detail = match state {
                        RunState::Failed => format!(": {}", st.error.clone().unwrap_or_default()),
                        RunState::Diverged => {
                            format!(": {}", st.reason.clone().unwrap_or_default())
                        }
                        _ => String::new(),
                    };
                    let word = match state {
                        RunState::Done => {
                            report.done += 1;
                            "done"
                        }
                        RunState::Diverged => {
                            report.diverged += 1;
                            "diverged"
                        }
                        RunState::Failed => {
                            report.failed += 1;
                            "failed"
                        }
                        _ => {
                            report.interrupted += 1;
                            "interrupted"
                        }
                    };
                    if state != RunState::Running {
                        grid_bar.inc(1);
                    }
                    say(
                        &mp,
                        format!(
                            "[{word}] {} ({}) step {}/{} in {secs:.1}s{detail}",
                            run.label, run.id, st.step, st.total_steps
                        ),
                    );
                }
            }
        }
        grid_bar.set_message(format!(
            "· {} done · {} diverged · {} failed",
            report.done + report.skipped,
            report.diverged,
            report.failed
        ));
        if active.is_empty() && (queue.is_empty() || stopping) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    report.interrupted += if stopping { queue.len() } else { 0 };
    grid_bar.finish();

    if !stopping {
        if let Err(e) = crate::table::build_tables(
            &gdir,
            &crate::table::TableOptions {
                last_k: opts.last_k,
            },
        ) {
            report.tables_error = Some(e.to_string());
        }
    }
    Ok(report)
}

fn send_signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signalling our own child by pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

fn spawn_child(
    run: &Run,
    overrides: &[super::Override],
    opts: &RunOptions,
    threads: usize,
    gdir: &Path,
) -> Result<Child> {
    let dir = run_dir(gdir, &run.id);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let log_path = dir.join("log.txt");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let log2 = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("run")
        .arg(&opts.grid_file)
        .arg("--only")
        .arg(&run.id)
        .arg("--out")
        .arg(&opts.out)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--resume")
        .env("OMP_NUM_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    if let Some(d) = &opts.device {
        cmd.arg("--device").arg(d);
    }
    for o in overrides {
        cmd.arg("--set").arg(o.to_string());
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Own process group: a terminal's Ctrl-C reaches only the scheduler, which forwards it
        // once. On Linux the child also gets SIGTERM (checkpoint and exit) if the scheduler dies.
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let parent = std::process::id();
            // SAFETY: only async-signal-safe libc calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    if libc::getppid() as u32 != parent {
                        libc::_exit(130);
                    }
                    Ok(())
                });
            }
        }
    }
    cmd.spawn().map_err(|e| Error::io(&opts.exe, e))
}
