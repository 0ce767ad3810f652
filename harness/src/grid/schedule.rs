//! Running a grid's runs as child processes: one OS process per run (libtorch's RNG and thread
//! pool are process-global, and an abort kills its process), `jobs` at a time, each with
//! `threads` intra-op threads and one device of the device list.
//!
//! The scheduler ([`run_grid`]) works from the saved grid (`DIR/<grid>/grid.yaml`, written by
//! [`prepare`](super::runner::prepare)) and spawns `harness run DIR/<grid> --only <id> --threads T
//! [--device D --device-slot S]` per run — the same entry a Slurm array task uses. Children report
//! progress by rewriting their `status.json`; their output goes to `runs/<id>/log.txt`. Devices are
//! placed round-robin: each new run takes the device with the fewest active runs (the lowest slot
//! on a tie), so `jobs = devices` puts one run on each.
use crate::rundir::{run_dir, Manifest, RunState, RunStatus, LOG_FILE};
use crate::{Error, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the scheduler is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub jobs: usize,
    /// Intra-op threads per run.
    pub threads: usize,
    /// Devices to place runs on, round-robin (empty: the children's default device, CPU).
    pub devices: Vec<String>,
    /// The `harness` binary to spawn.
    pub exe: PathBuf,
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
}

/// Indices of the runs `selectors` name (run ids, run labels or grid point labels); all runs
/// when there are none. An unknown selector is an error.
pub fn select(m: &Manifest, selectors: &[String]) -> Result<Vec<usize>> {
    if selectors.is_empty() {
        return Ok((0..m.runs.len()).collect());
    }
    let mut out = Vec::new();
    for sel in selectors {
        let hits: Vec<usize> = (0..m.runs.len())
            .filter(|&i| m.runs[i].is_named(sel))
            .collect();
        if hits.is_empty() {
            return Err(Error::Input(format!(
                "grid `{}` has no run `{sel}` (a run id, run label or grid point label; see \
                 `harness plan`)",
                m.name
            )));
        }
        out.extend(
            hits.into_iter()
                .filter(|i| !out.contains(i))
                .collect::<Vec<_>>(),
        );
    }
    Ok(out)
}

/// The first seed of every grid point first: an early look at the whole grid.
fn seed_major(m: &Manifest, mut todo: Vec<usize>) -> VecDeque<usize> {
    let mut seeds: Vec<i64> = Vec::new();
    for r in &m.runs {
        if !seeds.contains(&r.seed) {
            seeds.push(r.seed);
        }
    }
    let rank: HashMap<i64, usize> = seeds.into_iter().enumerate().map(|(i, s)| (s, i)).collect();
    todo.sort_by_key(|&i| (rank[&m.runs[i].seed], i));
    todo.into()
}

/// Schedule the selected runs of a prepared grid directory as child processes. `signals` counts
/// SIGINT/SIGTERM received: the first stops launching and forwards SIGINT to the children (which
/// checkpoint and exit as `interrupted`), the second kills them.
pub fn run_grid(
    gdir: &Path,
    m: &Manifest,
    selected: &[usize],
    opts: &RunOptions,
    signals: &AtomicUsize,
) -> Result<GridReport> {
    let mut s = Scheduler::new(gdir, m, opts);
    s.report.selected = selected.len();
    let mut todo = Vec::new();
    for &i in selected {
        match RunStatus::read(&run_dir(gdir, &m.runs[i].id)) {
            Some(st) if st.is_finished() => s.report.skipped += 1,
            _ => todo.push(i),
        }
    }
    s.queue = seed_major(m, todo);
    s.start_bars();
    loop {
        s.handle_signals(signals.load(Ordering::SeqCst));
        s.launch();
        s.poll();
        if s.active.is_empty() && (s.queue.is_empty() || s.stopping) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if s.stopping {
        s.report.interrupted += s.queue.len();
    }
    s.grid_bar.finish();
    Ok(s.report)
}

struct Active {
    run: usize,
    slot: Option<usize>,
    child: Child,
    bar: ProgressBar,
    started: Instant,
    first_step: Option<usize>,
}

struct Scheduler<'a> {
    gdir: &'a Path,
    m: &'a Manifest,
    opts: &'a RunOptions,
    queue: VecDeque<usize>,
    active: Vec<Active>,
    report: GridReport,
    stopping: bool,
    killed: bool,
    mp: MultiProgress,
    grid_bar: ProgressBar,
    run_style: ProgressStyle,
}

impl<'a> Scheduler<'a> {
    fn new(gdir: &'a Path, m: &'a Manifest, opts: &'a RunOptions) -> Self {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let grid_bar = mp.add(ProgressBar::new(0));
        grid_bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {pos}/{len} runs {msg} ({elapsed})",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        grid_bar.set_prefix(m.name.clone());
        let run_style = ProgressStyle::with_template(
            "  {prefix:40!} [{bar:20}] {pos:>5}/{len:5} {msg} eta {eta}",
        )
        .expect("template")
        .progress_chars("=> ");
        Scheduler {
            gdir,
            m,
            opts,
            queue: VecDeque::new(),
            active: Vec::new(),
            report: GridReport::default(),
            stopping: false,
            killed: false,
            mp,
            grid_bar,
            run_style,
        }
    }

    fn say(&self, s: String) {
        self.mp.suspend(|| eprintln!("{s}"));
    }

    fn start_bars(&self) {
        self.grid_bar.set_length(self.report.selected as u64);
        self.grid_bar.set_position(self.report.skipped as u64);
        let devices = match self.opts.devices.as_slice() {
            [] => String::new(),
            d => format!(" on {}", d.join(", ")),
        };
        self.say(format!(
            "grid `{}`: {} run(s) to do, {} already finished; {} job(s) × {} thread(s){devices} → {}",
            self.m.name,
            self.queue.len(),
            self.report.skipped,
            self.opts.jobs,
            self.opts.threads,
            self.gdir.display()
        ));
    }

    fn handle_signals(&mut self, sig: usize) {
        if sig >= 1 && !self.stopping {
            self.stopping = true;
            self.say(format!(
                "stopping: {} active run(s) checkpoint and exit (again to kill)",
                self.active.len()
            ));
            for a in &self.active {
                send_signal(&a.child, libc::SIGINT);
            }
        }
        if sig >= 2 && !self.killed {
            self.killed = true;
            for a in &mut self.active {
                let _ = a.child.kill();
            }
        }
    }

    /// The device slot with the fewest active runs (lowest index on a tie).
    fn free_slot(&self) -> Option<usize> {
        (0..self.opts.devices.len())
            .min_by_key(|&d| self.active.iter().filter(|a| a.slot == Some(d)).count())
    }

    fn launch(&mut self) {
        while !self.stopping && self.active.len() < self.opts.jobs.max(1) {
            let Some(i) = self.queue.pop_front() else {
                break;
            };
            let rec = &self.m.runs[i];
            let slot = self.free_slot();
            match spawn_child(self.gdir, &rec.id, slot, self.opts) {
                Ok(child) => {
                    let bar = self.mp.add(ProgressBar::new(rec.total_steps() as u64));
                    bar.set_style(self.run_style.clone());
                    bar.set_prefix(rec.label.clone());
                    let on = slot
                        .map(|d| format!(" on {}", self.opts.devices[d]))
                        .unwrap_or_default();
                    self.say(format!("[start] {} ({}){on}", rec.label, rec.id));
                    self.active.push(Active {
                        run: i,
                        slot,
                        child,
                        bar,
                        started: Instant::now(),
                        first_step: None,
                    });
                }
                Err(e) => self.fail_to_start(i, e),
            }
        }
    }

    fn fail_to_start(&mut self, i: usize, e: Error) {
        let rec = &self.m.runs[i];
        let dir = run_dir(self.gdir, &rec.id);
        let mut st = RunStatus::read(&dir)
            .unwrap_or_else(|| RunStatus::new(rec, rec.total_steps(), RunState::Failed));
        st.state = RunState::Failed;
        st.error = Some(format!("could not start: {e}"));
        let _ = st.write(&dir);
        self.report.failed += 1;
        self.grid_bar.inc(1);
        self.say(format!("[failed] {} ({}): {e}", rec.label, rec.id));
    }

    fn poll(&mut self) {
        let mut k = 0;
        while k < self.active.len() {
            match self.active[k].child.try_wait() {
                Ok(None) => {
                    self.show_progress(k);
                    k += 1;
                }
                Ok(Some(exit)) => {
                    let a = self.active.swap_remove(k);
                    self.finish(a, Some(exit));
                }
                Err(_) => {
                    let a = self.active.swap_remove(k);
                    self.finish(a, None);
                }
            }
        }
        self.grid_bar.set_message(format!(
            "· {} done · {} diverged · {} failed",
            self.report.done + self.report.skipped,
            self.report.diverged,
            self.report.failed
        ));
    }

    fn show_progress(&mut self, k: usize) {
        let a = &mut self.active[k];
        let dir = run_dir(self.gdir, &self.m.runs[a.run].id);
        let Some(st) = RunStatus::read(&dir).filter(|s| s.state == RunState::Running) else {
            return;
        };
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

    /// A child exited: settle its status (a child that left no result is `interrupted` when
    /// stopped by a signal, else `failed`) and count it.
    fn finish(&mut self, a: Active, exit: Option<ExitStatus>) {
        a.bar.finish_and_clear();
        self.mp.remove(&a.bar);
        let rec = &self.m.runs[a.run];
        let dir = run_dir(self.gdir, &rec.id);
        let mut st = RunStatus::read(&dir)
            .unwrap_or_else(|| RunStatus::new(rec, rec.total_steps(), RunState::Running));
        if !st.state.is_over() && st.state != RunState::Interrupted {
            let signalled = self.stopping || exit.is_some_and(|e| e.code() == Some(130));
            st.pid = None;
            if signalled {
                st.state = RunState::Interrupted;
            } else {
                st.state = RunState::Failed;
                st.error = Some(format!(
                    "the run's process ended ({}) without a result; see {}",
                    exit.map(|e| e.to_string())
                        .unwrap_or_else(|| "unknown exit".into()),
                    dir.join(LOG_FILE).display()
                ));
            }
            let _ = st.write(&dir);
        }
        let (word, detail) = match st.state {
            RunState::Done => (&mut self.report.done, String::new()),
            RunState::Diverged => (
                &mut self.report.diverged,
                format!(": {}", st.reason.clone().unwrap_or_default()),
            ),
            RunState::Failed => (
                &mut self.report.failed,
                format!(": {}", st.error.clone().unwrap_or_default()),
            ),
            _ => (&mut self.report.interrupted, String::new()),
        };
        *word += 1;
        if st.state.is_over() {
            self.grid_bar.inc(1);
        }
        self.say(format!(
            "[{}] {} ({}) step {}/{} in {:.1}s{detail}",
            st.state,
            rec.label,
            rec.id,
            st.step,
            st.total_steps,
            a.started.elapsed().as_secs_f64()
        ));
    }
}

fn send_signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signalling our own child by pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

fn spawn_child(gdir: &Path, id: &str, slot: Option<usize>, opts: &RunOptions) -> Result<Child> {
    let dir = run_dir(gdir, id);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let log_path = dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let log2 = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("run")
        .arg(gdir)
        .arg("--only")
        .arg(id)
        .arg("--threads")
        .arg(opts.threads.to_string())
        .env("OMP_NUM_THREADS", opts.threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    if let Some(s) = slot {
        cmd.arg("--device")
            .arg(&opts.devices[s])
            .arg("--device-slot")
            .arg(s.to_string());
    }
    own_group_and_parent_death(&mut cmd);
    cmd.spawn().map_err(|e| Error::io(&opts.exe, e))
}

/// Own process group: a terminal's Ctrl-C reaches only the scheduler, which forwards it once. On
/// Linux the child also gets SIGTERM (checkpoint and exit) if the scheduler dies.
fn own_group_and_parent_death(cmd: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
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
}
