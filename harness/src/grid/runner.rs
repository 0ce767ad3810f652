//! One run of a grid, in this process; and the preparation of a grid's output directory.
//!
//! [`prepare`] checks `DIR/<grid>` against the grid (a grid file that changed since the directory
//! was started is refused, with the diff, unless it is extended) and writes the manifest, the
//! grid file's text, every run's `config.yaml` and a `pending` status where there is none.
//! [`run_one`] trains one run from its saved config: the entry of the scheduler's children
//! (`harness run DIR/<grid> --only <id>`) and of Slurm array tasks. A run directory is the unit of
//! resume: `status.json` (written atomically) says pending / running / interrupted / done /
//! failed / diverged; done and diverged runs are never recomputed, the others continue from their
//! last checkpoint.
use super::manifest::{extend, manifest, text_diff, GridChange};
use super::Grid;
use crate::config::RunConfig;
use crate::rundir::logs::convert_run;
use crate::rundir::{
    atomic_write, manifest as saved, run_dir, Manifest, PidLock, RunRecord, RunState, RunStatus,
    CONFIG_FILE, LOCK_FILE,
};
use crate::train::{run_training_with_sft_cache, StepReport};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The metric shown as "reward" on progress bars and lines.
pub const REWARD_METRIC: &str = "critic/score/mean";

/// A grid's shared SFT warm-starts (`train::run_training_with_sft_cache`).
pub const SFT_CACHE_DIR: &str = "sft-cache";

/// How long a run waits for another process still holding its directory (a previous scheduler's
/// child finishing its checkpoint after a crash) before giving up.
const RUN_LOCK_WAIT: Duration = Duration::from_secs(60);

/// Number of CPU cores the process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// How [`prepare`] treats results already in `DIR/<grid>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrepareMode {
    /// Results may exist (they are continued, not recomputed).
    pub resume: bool,
    /// A grid file that changed since the directory was started adds its new runs to the saved
    /// grid instead of being refused.
    pub extend: bool,
}

/// Check `DIR/<grid>` against `grid` and write the manifest (the grid's, or the saved one
/// extended), the grid file's text, the runs' configs and `pending` statuses. Returns the grid
/// directory and the manifest written.
pub fn prepare(grid: &Grid, out: &Path, mode: PrepareMode) -> Result<(PathBuf, Manifest)> {
    let gdir = grid.out_dir(out);
    let now = manifest(grid);
    let m = match Manifest::read(&gdir).ok() {
        Some(old) => reconcile(&gdir, &old, now, grid, mode)?,
        None => {
            refuse_results(&gdir, &now, mode)?;
            now
        }
    };
    m.write(&gdir)?;
    if let Ok(text) = std::fs::read_to_string(&grid.file) {
        saved::write_source(&gdir, &text)?;
    }
    for run in &grid.runs {
        let rec = m
            .run(&run.id)
            .expect("every run of the grid is in its manifest");
        write_run_config(&gdir, rec, &run.config)?;
        let dir = run_dir(&gdir, &run.id);
        if RunStatus::read(&dir).is_none() {
            RunStatus::new(rec, run.config.train.steps, RunState::Pending).write(&dir)?;
        }
    }
    Ok((gdir, m))
}

/// Runs of `m` with a status other than `pending`.
fn started(gdir: &Path, m: &Manifest) -> Vec<RunStatus> {
    m.runs
        .iter()
        .filter_map(|r| RunStatus::read(&run_dir(gdir, &r.id)))
        .filter(|s| s.state != RunState::Pending)
        .collect()
}

fn refuse_results(gdir: &Path, m: &Manifest, mode: PrepareMode) -> Result<()> {
    let st = started(gdir, m);
    match st.first() {
        Some(s) if !mode.resume => Err(Error::Input(format!(
            "{} already holds results of this grid ({} run(s), e.g. {} is {}); pass --resume to \
             continue it, or choose another --out",
            gdir.display(),
            st.len(),
            s.label,
            s.effective_state()
        ))),
        _ => Ok(()),
    }
}

/// The manifest to write when `DIR/<grid>` already holds one.
fn reconcile(
    gdir: &Path,
    old: &Manifest,
    now: Manifest,
    grid: &Grid,
    mode: PrepareMode,
) -> Result<Manifest> {
    refuse_results(gdir, &now, mode)?;
    let change = GridChange::between(old, &now);
    if change.is_empty() || started(gdir, old).is_empty() {
        // Same runs, or nothing started yet: the grid file's version replaces the saved one.
        return Ok(now);
    }
    if change.added.is_empty() && change.renamed.is_empty() {
        // The file's runs are a subset of the saved grid (e.g. one extended earlier): the saved
        // runs and their results stay; the caller runs the file's runs.
        return Ok(extend(old, &now));
    }
    let clashes = change.label_clashes(old);
    if mode.extend && clashes.is_empty() && change.renamed.is_empty() {
        return Ok(extend(old, &now));
    }
    let mut msg = format!(
        "the grid file {} no longer matches the grid saved in {} (which holds results):\n{}",
        grid.file.display(),
        gdir.display(),
        change.describe()
    );
    if let (Some(before), Ok(text)) = (
        saved::read_source(gdir),
        std::fs::read_to_string(&grid.file),
    ) {
        let diff = text_diff(
            &before,
            &text,
            "saved grid",
            &grid.file.display().to_string(),
        );
        if !diff.is_empty() {
            msg.push_str(&format!("grid file changes:\n{diff}"));
        }
    }
    if mode.extend {
        msg.push_str(&format!(
            "cannot extend: these runs change a saved run under the same label: {}; choose \
             another --out",
            clashes
                .iter()
                .map(|r| r.label.as_str())
                .chain(change.renamed.iter().map(|(a, _)| a.label.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else {
        msg.push_str(
            "restore the grid file, choose another --out, or pass --extend to add the new runs \
             to the saved grid (saved runs and their results are kept)",
        );
    }
    Err(Error::Input(msg))
}

fn write_run_config(gdir: &Path, rec: &RunRecord, cfg: &RunConfig) -> Result<()> {
    let text = serde_yaml::to_string(cfg).expect("config serialises");
    let header = format!("# run {} — {} (seed {})\n", rec.id, rec.label, rec.seed);
    atomic_write(
        &run_dir(gdir, &rec.id).join(CONFIG_FILE),
        format!("{header}{text}").as_bytes(),
    )
}

/// A run's saved `config.yaml`, through the same checks as a grid's runs.
pub fn load_saved_config(path: &Path) -> Result<RunConfig> {
    crate::config::load_run_config(path)
}

/// Where and how a run's process trains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// `cpu`, `cuda:N` (as recorded); `None` = the process's default device.
    pub device: Option<String>,
    /// Index in the scheduler's device list.
    pub slot: Option<usize>,
    /// libtorch intra-op threads of the process.
    pub threads: usize,
    /// Print a progress line (with ETA) per step on stderr, at most about once a second.
    pub progress_lines: bool,
}

/// Train one run in this process: skips a run that is already done or diverged; otherwise trains
/// (resuming from its checkpoint), keeps `status.json` current, converts its JSONL metrics to
/// Parquet, and returns the final status. A run stopped by `stop` ends `interrupted`.
pub fn run_one(
    gdir: &Path,
    rec: &RunRecord,
    cfg: &RunConfig,
    place: &Placement,
    stop: &AtomicBool,
) -> Result<RunStatus> {
    let dir = run_dir(gdir, &rec.id);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let _lock = PidLock::acquire_waiting(&dir.join(LOCK_FILE), RUN_LOCK_WAIT)?;
    if let Some(st) = RunStatus::read(&dir).filter(RunStatus::is_finished) {
        return Ok(st);
    }
    let mut st = RunStatus::new(rec, cfg.train.steps, RunState::Running);
    st.claim();
    st.device = place.device.clone();
    st.device_slot = place.slot;
    st.threads = Some(place.threads);
    st.write(&dir)?;

    let mut progress = Progress::new(st.clone(), &dir, place.progress_lines);
    let sft_cache = gdir.join(SFT_CACHE_DIR);
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_training_with_sft_cache(cfg, rec.seed, &dir, Some(&sft_cache), stop, &mut |r| {
            progress.on_step(r)
        })
    }));
    let mut last = RunStatus::read(&dir).unwrap_or(st);
    last.pid = None;
    match res {
        Ok(Ok(outcome)) => {
            last.state = match outcome.state {
                RunState::Running => RunState::Interrupted,
                s => s,
            };
            last.step = outcome.step;
            last.reason = outcome.reason;
            last.error = None;
        }
        Ok(Err(e)) => {
            last.state = RunState::Failed;
            last.error = Some(e.to_string());
        }
        Err(panic) => {
            last.state = RunState::Failed;
            last.error = Some(format!("panicked: {}", panic_text(&*panic)));
        }
    }
    if let Err(e) = convert_run(&dir) {
        eprintln!("warning: {}: metrics to parquet: {e}", dir.display());
    }
    last.write(&dir)?;
    Ok(last)
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Per-step progress: `status.json` rewritten at most every 200 ms (the scheduler's bars read
/// it), and optionally a line with the ETA on stderr.
struct Progress<'a> {
    status: RunStatus,
    dir: &'a Path,
    last_write: Instant,
    lines: Option<ProgressLine>,
}

impl<'a> Progress<'a> {
    fn new(status: RunStatus, dir: &'a Path, lines: bool) -> Self {
        Progress {
            status,
            dir,
            last_write: Instant::now(),
            lines: lines.then(ProgressLine::new),
        }
    }

    fn on_step(&mut self, rep: &StepReport) {
        self.status.step = rep.step;
        self.status.total_steps = rep.total_steps;
        if let Some(r) = rep.metrics.get(REWARD_METRIC) {
            self.status.reward = Some(*r);
        }
        let last = rep.step == rep.total_steps;
        if self.last_write.elapsed() >= Duration::from_millis(200) || last {
            // Progress is advisory: a failed write must not stop training.
            let _ = self.status.write(self.dir);
            self.last_write = Instant::now();
        }
        if let Some(l) = &mut self.lines {
            if let Some(text) = l.line(rep.step, rep.total_steps, self.status.reward) {
                eprintln!("{} {text}", self.status.label);
            }
        }
    }
}

/// `[step 12/200] reward 0.412 · 1.30 s/step · eta 4m04s`, at most one a second (and the last).
#[derive(Debug)]
pub struct ProgressLine {
    started: Instant,
    first: Option<usize>,
    printed: Option<Instant>,
}

impl Default for ProgressLine {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressLine {
    pub fn new() -> Self {
        ProgressLine {
            started: Instant::now(),
            first: None,
            printed: None,
        }
    }

    /// The line for a finished step, or `None` when one was printed less than a second ago.
    pub fn line(&mut self, step: usize, total: usize, reward: Option<f64>) -> Option<String> {
        // Steps before the first one seen were done by an earlier process (a resumed run).
        let first = *self.first.get_or_insert(step.saturating_sub(1));
        let due = self
            .printed
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if !due && step < total {
            return None;
        }
        self.printed = Some(Instant::now());
        let done = (step - first).max(1) as f64;
        let per_step = self.started.elapsed().as_secs_f64() / done;
        let eta = per_step * total.saturating_sub(step) as f64;
        let reward = reward
            .map(|r| format!(" reward {r:.3} ·"))
            .unwrap_or_default();
        Some(format!(
            "[step {step}/{total}]{reward} {per_step:.2} s/step · eta {}",
            fmt_duration(eta)
        ))
    }
}

/// `4m04s`, `1h02m`, `12s`.
pub fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
