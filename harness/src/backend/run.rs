//! One `backend: verl` run under the harness's run-directory rules: `status.json` (running →
//! done / failed), the launch written to `launch.sh`, its output in `log.txt`, verl's log read
//! into `metrics.jsonl` / `eval.jsonl` (+ Parquet) at the end (also after a failure, for the
//! steps that ran). verl resumes from its own checkpoints under `checkpoints/`
//! (`trainer.resume_mode=auto`), λ with them (the plugin's `harness_dual_state.json`).
use super::verl::{launch, RunPlace};
use crate::config::RunConfig;
use crate::rundir::{run_dir, RunRecord, RunState, RunStatus};
use crate::{Error, Result};
use std::path::Path;

/// The shell command of a run (`None` for a harness run). `repo`: the checkout holding
/// `python/harness_verl` (commands are printed relative to it).
pub fn command(
    gdir: &Path,
    grid: &str,
    rec: &RunRecord,
    cfg: &RunConfig,
    repo: &Path,
) -> Option<String> {
    let dir = run_dir(gdir, &rec.id);
    let place = RunPlace {
        run_dir: &dir,
        grid,
        run_id: &rec.id,
        seed: rec.seed,
    };
    launch(cfg, &place).map(|l| l.command(repo, &dir))
}

/// Run a verl run to its end in a child shell; its final status.
pub fn run_verl(
    gdir: &Path,
    grid: &str,
    rec: &RunRecord,
    cfg: &RunConfig,
    repo: &Path,
) -> Result<RunStatus> {
    let dir = run_dir(gdir, &rec.id);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    if let Some(st) = RunStatus::read(&dir).filter(RunStatus::is_finished) {
        return Ok(st);
    }
    let cmd = command(gdir, grid, rec, cfg, repo)
        .ok_or_else(|| Error::Input(format!("run {} is not a `backend: verl` run", rec.id)))?;
    let script = dir.join("launch.sh");
    std::fs::write(
        &script,
        format!("#!/usr/bin/env bash\nset -euo pipefail\n{cmd}\n"),
    )
    .map_err(|e| Error::io(&script, e))?;
    let mut st = RunStatus::new(rec, cfg.train.steps, RunState::Running);
    st.claim();
    st.write(&dir)?;
    let log = dir.join("log.txt");
    let out = std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?;
    let err = out.try_clone().map_err(|e| Error::io(&log, e))?;
    let status = std::process::Command::new("bash")
        .arg(&script)
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| Error::io(&script, e))?;
    let ingested = super::verl_log::ingest(&dir);
    st.pid = None;
    if let Ok(l) = &ingested {
        st.step = l.metrics.last().map_or(0, |r| r["step"] as usize);
        st.reward = l
            .metrics
            .last()
            .and_then(|r| r.get("critic/score/mean").copied());
    }
    st.state = if status.success() && ingested.is_ok() {
        RunState::Done
    } else {
        RunState::Failed
    };
    if !status.success() {
        st.error = Some(format!("verl exited with {status} (see {})", log.display()));
    } else if let Err(e) = ingested {
        st.error = Some(format!("reading verl's log: {e}"));
    }
    st.write(&dir)?;
    Ok(st)
}
