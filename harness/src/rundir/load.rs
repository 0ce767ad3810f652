//! Reading a grid directory back: the manifest, and per run its status and metric logs (one run
//! per task, in parallel: the runs' files are independent).
use super::logs::{read_log, write_log_parquet, Log, Row};
use super::{run_dir, Manifest, RunRecord, RunState, RunStatus};
use crate::Result;
use rayon::prelude::*;
use std::path::Path;

/// One run as tables and reports see it: its record, status and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedRun {
    pub record: RunRecord,
    /// `None`: no (readable) status file.
    pub status: Option<RunStatus>,
    pub metrics: Vec<Row>,
    pub eval: Vec<Row>,
}

impl LoadedRun {
    /// Read one run's status and logs.
    pub fn load(grid_dir: &Path, record: &RunRecord) -> Result<LoadedRun> {
        let dir = run_dir(grid_dir, &record.id);
        Ok(LoadedRun {
            record: record.clone(),
            status: RunStatus::read(&dir),
            metrics: read_log(&dir, Log::Metrics)?,
            eval: read_log(&dir, Log::Eval)?,
        })
    }

    /// The run's state (a `running` whose process is gone reads as `interrupted`); `None` without
    /// a status file.
    pub fn state(&self) -> Option<RunState> {
        self.status.as_ref().map(RunStatus::effective_state)
    }

    /// Done or diverged.
    pub fn finished(&self) -> bool {
        self.state().is_some_and(RunState::is_finished)
    }

    /// The run's rows that log `metric` (training rows, else eval rows).
    pub fn rows(&self, metric: &str) -> &[Row] {
        if self.metrics.iter().any(|r| r.contains_key(metric)) {
            &self.metrics
        } else {
            &self.eval
        }
    }

    /// `(step, value)` of `metric`, finite values only, in step order.
    pub fn series(&self, metric: &str) -> Vec<(f64, f64)> {
        self.rows(metric)
            .iter()
            .filter_map(|r| Some((r["step"], *r.get(metric)?)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    }

    /// Mean of the last `k` logged finite values of `metric` (k ≥ 1).
    pub fn last_k(&self, metric: &str, k: usize) -> Option<f64> {
        let s = self.series(metric);
        let tail = &s[s.len().saturating_sub(k.max(1))..];
        (!tail.is_empty()).then(|| tail.iter().map(|(_, v)| v).sum::<f64>() / tail.len() as f64)
    }

    /// Mean of the last `k` logged finite values of `metric` minus the mean of its first `k`
    /// (k ≥ 1): how far training moved it. `None` with fewer than `2k` values (the windows would
    /// overlap).
    pub fn gain(&self, metric: &str, k: usize) -> Option<f64> {
        let s = self.series(metric);
        let k = k.max(1);
        let mean = |w: &[(f64, f64)]| w.iter().map(|(_, v)| v).sum::<f64>() / k as f64;
        (s.len() >= 2 * k).then(|| mean(&s[s.len() - k..]) - mean(&s[..k]))
    }

    /// The last logged finite value of `metric`.
    pub fn final_value(&self, metric: &str) -> Option<f64> {
        self.series(metric).last().map(|(_, v)| *v)
    }

    /// Write the Parquet copies of the logs this run has as JSONL.
    pub fn write_parquet(&self, grid_dir: &Path) -> Result<()> {
        let dir = run_dir(grid_dir, &self.record.id);
        write_log_parquet(&dir, Log::Metrics, &self.metrics)?;
        write_log_parquet(&dir, Log::Eval, &self.eval)
    }
}

/// Load every run of a grid directory (manifest order), reading runs in parallel.
pub fn load_grid(grid_dir: &Path) -> Result<(Manifest, Vec<LoadedRun>)> {
    let m = Manifest::read(grid_dir)?;
    let runs = m
        .runs
        .par_iter()
        .map(|r| LoadedRun::load(grid_dir, r))
        .collect::<Result<Vec<_>>>()?;
    Ok((m, runs))
}
