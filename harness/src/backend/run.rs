//! One `backend: verl` run under the harness's run-directory rules: `status.json` (running →
//! done / failed), the launch written to `launch.sh`, its output in `log.txt`, verl's log read
//! into `metrics.jsonl` / `eval.jsonl` (+ Parquet) at the end (also after a failure, for the
//! steps that ran). verl resumes from its own checkpoints under `checkpoints/`
//! (`trainer.resume_mode=auto`), λ with them (the plugin's `harness_dual_state.json`).
use super::verl::{launch, Launch, RunPlace};
use crate::config::RunConfig;
use crate::rundir::{run_dir, RunRecord, RunState, RunStatus};
use crate::task::math::{load_items, BOXED_INSTRUCTION};
use crate::{Error, Result};
use std::path::Path;

/// The verl launch of a run in `dir` (`None` for a harness run).
fn run_launch(dir: &Path, grid: &str, rec: &RunRecord, cfg: &RunConfig) -> Option<Launch> {
    let place = RunPlace {
        run_dir: dir,
        grid,
        run_id: &rec.id,
        seed: rec.seed,
    };
    launch(cfg, &place)
}

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
    run_launch(&dir, grid, rec, cfg).map(|l| l.command(repo, &dir))
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
    let mut l = run_launch(&dir, grid, rec, cfg)
        .ok_or_else(|| Error::Input(format!("run {} is not a `backend: verl` run", rec.id)))?;
    let instruction = cfg.task.instruction.as_deref().unwrap_or(BOXED_INSTRUCTION);
    normalize_data(&dir, instruction, &mut l.data)?;
    let cmd = l.command(repo, &dir);
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

/// The run's data files read as a harness run reads them (any supported layout: DAPO-Math-17K's
/// chat rows, or a problem/question text with `task.instruction` appended), written to
/// `DIR/verl_data/<name>.source.jsonl` as `{"prompt": [chat], "answer"}` and handed to the
/// launcher's converter in their place: verl sees the prompts and answers a harness run would,
/// whatever the published layout (the converter alone knows only `prompt`/`answer` and verl's own).
/// `instruction`: `task.instruction` or its default.
pub fn normalize_data(dir: &Path, instruction: &str, data: &mut [(String, String)]) -> Result<()> {
    let out = dir.join("verl_data");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    for (name, src) in data.iter_mut() {
        let loaded = load_items(Path::new(src.as_str()), instruction)?;
        let lines: String = loaded
            .items
            .iter()
            .map(|it| {
                serde_json::json!({"prompt": it.messages, "answer": it.answer}).to_string() + "\n"
            })
            .collect();
        let path = out.join(format!("{name}.source.jsonl"));
        std::fs::write(&path, lines).map_err(|e| Error::io(&path, e))?;
        *src = path.display().to_string();
    }
    Ok(())
}
