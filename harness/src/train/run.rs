//! One run: SFT warm-start (optional), then `train.steps` RL steps with evaluation, checkpoints
//! (resuming from the newest one that passes its checks), the divergence guard and exact resume.
use super::checkpoint;
use super::trainer::Trainer;
use super::{RunOutcome, RunState, StepReport};
use crate::config::RunConfig;
use crate::objective::Metrics;
use crate::rundir::{tensorboard::EventWriter, TENSORBOARD_DIR};
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

fn append_jsonl(path: &Path, row: &Metrics, step: usize) -> Result<()> {
    let mut obj = serde_json::Map::new();
    obj.insert("step".into(), step.into());
    for (k, v) in row {
        // JSON has no NaN/∞: write them as null.
        obj.insert(
            k.clone(),
            serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into),
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{}", serde_json::Value::Object(obj)).map_err(|e| Error::io(path, e))?;
    f.flush().map_err(|e| Error::io(path, e))
}

/// Where a run's rows go: `metrics.jsonl` / `eval.jsonl`, and the same rows to the run's
/// TensorBoard event file unless `log.tensorboard: false`.
struct Logs<'a> {
    dir: &'a Path,
    tb: Option<EventWriter>,
}

impl<'a> Logs<'a> {
    /// A fresh start (`resume_step` None) clears `tb/`; a resume opens a new file in it.
    fn open(cfg: &RunConfig, dir: &'a Path, resume_step: Option<usize>) -> Result<Logs<'a>> {
        let tb_dir = dir.join(TENSORBOARD_DIR);
        if resume_step.is_none() && tb_dir.exists() {
            std::fs::remove_dir_all(&tb_dir).map_err(|e| Error::io(&tb_dir, e))?;
        }
        let tb = cfg
            .log
            .tensorboard
            .then(|| EventWriter::create(&tb_dir, resume_step.map(|s| s as u64)));
        Ok(Logs {
            dir,
            tb: tb.transpose()?,
        })
    }

    fn append(&mut self, file: &str, row: &Metrics, step: usize) -> Result<()> {
        append_jsonl(&self.dir.join(file), row, step)?;
        match &mut self.tb {
            Some(tb) => tb.write_scalars(step as u64, row),
            None => Ok(()),
        }
    }
}

/// Keep only complete lines whose step is ≤ `step` (after resuming from that checkpoint).
fn truncate_jsonl(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .collect();
    let tmp = path.with_extension("jsonl.tmp");
    let body = if kept.is_empty() {
        String::new()
    } else {
        kept.join("\n") + "\n"
    };
    std::fs::write(&tmp, body).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Train one run in `dir` (created if needed): writes `metrics.jsonl` (one JSON object per step,
/// `{"step": n, "<metric>": value, …}`), `eval.jsonl` (one object per evaluation; step 0 is the
/// model before RL, after SFT), the same rows to `tb/` (TensorBoard, unless `log.tensorboard:
/// false`) and `checkpoints/`. With an existing checkpoint in `dir`, resumes from it (truncating
/// the JSONL files to the checkpoint step, a new TensorBoard file) and continues bitwise
/// identically on CPU. `stop` is polled between steps; when set, the run checkpoints and returns `Running`.
pub fn run_training(
    cfg: &RunConfig,
    seed: i64,
    dir: &Path,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&StepReport),
) -> Result<RunOutcome> {
    run_training_with_sft_cache(cfg, seed, dir, None, stop, on_step)
}

/// [`run_training`] with a directory of shared SFT warm-starts (a grid's `sft-cache/`): a fresh
/// run whose warm-start is there loads it instead of repeating SFT, else stores its own there.
pub fn run_training_with_sft_cache(
    cfg: &RunConfig,
    seed: i64,
    dir: &Path,
    sft_cache: Option<&Path>,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&StepReport),
) -> Result<RunOutcome> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (mut t, mut step, note, mut logs) = start(cfg, seed, dir, sft_cache)?;
    let end = |state, step, reason: Option<String>| {
        let reason = match (reason, &note) {
            (Some(r), Some(n)) => Some(format!("{r}; {n}")),
            (r, n) => r.or(n.clone()),
        };
        Ok(RunOutcome {
            state,
            step,
            reason,
        })
    };
    let total = cfg.train.steps;
    let every = |n: usize, s: usize| n > 0 && s.is_multiple_of(n);
    while step < total {
        if stop.load(Ordering::SeqCst) {
            save(&t, dir, step)?;
            return end(RunState::Running, step, None);
        }
        let s = step + 1;
        let (metrics, diverged) = t.step(s)?;
        logs.append(METRICS, &metrics, s)?;
        on_step(&StepReport {
            step: s,
            total_steps: total,
            metrics: &metrics,
        });
        if let Some(reason) = diverged {
            return end(RunState::Diverged, s, Some(reason));
        }
        step = s;
        if every(cfg.eval.every, s) || s == total {
            logs.append(EVAL, &t.evaluate(s), s)?;
        }
        if every(cfg.checkpoint.every, s) || s == total {
            save(&t, dir, s)?;
        }
    }
    end(RunState::Done, step, None)
}

const METRICS: &str = "metrics.jsonl";
const EVAL: &str = "eval.jsonl";

fn save(t: &Trainer, dir: &Path, step: usize) -> Result<()> {
    checkpoint::save(dir, &t.state(step), t.cfg.checkpoint.keep).map(|_| ())
}

/// The trainer and the step to continue from: the newest checkpoint that passes its checks (the
/// JSONL files cut back to it, a new TensorBoard file from the next step; newer ones that fail
/// are set aside, and the note says so), or a fresh start (step 0 evaluated and checkpointed).
fn start<'a, 'd>(
    cfg: &'a RunConfig,
    seed: i64,
    dir: &'d Path,
    sft_cache: Option<&Path>,
) -> Result<(Trainer<'a>, usize, Option<String>, Logs<'d>)> {
    let Some((ck, state, rejected)) = checkpoint::load_latest(dir)? else {
        let t = Trainer::with_sft_cache(cfg, seed, false, sft_cache)?;
        let _ = std::fs::remove_file(dir.join(METRICS));
        let _ = std::fs::remove_file(dir.join(EVAL));
        let mut logs = Logs::open(cfg, dir, None)?;
        logs.append(EVAL, &t.evaluate(0), 0)?;
        save(&t, dir, 0)?;
        return Ok((t, 0, None, logs));
    };
    let mut t = Trainer::new(cfg, seed, true)?;
    t.load_state(&state, &ck)?;
    truncate_jsonl(&dir.join(METRICS), state.step)?;
    truncate_jsonl(&dir.join(EVAL), state.step)?;
    let logs = Logs::open(cfg, dir, Some(state.step + 1))?;
    let mut notes = vec![];
    for r in rejected {
        let aside = checkpoint::set_aside(&r.dir)?;
        notes.push(format!(
            "{} failed its checks ({}) and was moved to {}",
            r.dir.display(),
            r.error,
            aside.display()
        ));
    }
    let note = (!notes.is_empty()).then(|| {
        format!(
            "resumed from {} (step {}): {}",
            ck.display(),
            state.step,
            notes.join("; ")
        )
    });
    if let Some(n) = &note {
        eprintln!("warning: {n}");
    }
    Ok((t, state.step, note, logs))
}
