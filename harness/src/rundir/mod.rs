//! The run directory: what a grid writes to disk and what tables and reports read back. One
//! module owns the layout, the file names, the stored run record, the status file, the metric
//! logs and atomic writes, so that `grid` (which writes), `table` and `report` (which read) share
//! one definition of each and none of them calls into another.
//!
//! ```text
//! DIR/<grid>/
//!   grid.yaml            Manifest: the resolved grid, one RunRecord (with its config) per run
//!   grid.source.yaml     the grid file's text as it was resolved (diffed on --resume)
//!   .lock                the scheduler's pid lock
//!   runs/<id>/
//!     config.yaml        the run's resolved config (what the run's process trains)
//!     status.json        RunStatus: state, progress, device and threads, error or reason
//!     metrics.jsonl      one JSON object per step (written by the training loop)
//!     eval.jsonl         one JSON object per evaluation
//!     metrics.parquet, eval.parquet   the same as Parquet (derived)
//!     log.txt            the run process's output
//!     tb/                TensorBoard event files of metrics and eval (see `tensorboard`)
//!     checkpoints/       written by the training loop
//!   tables/              derived by `harness table`
//!   report/              derived by `harness report`
//! ```
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub mod fsutil;
pub mod load;
pub mod logs;
pub mod manifest;
pub mod status;
pub mod tensorboard;

pub use fsutil::{atomic_write, atomic_write_with, PidLock};
pub use load::{load_grid, LoadedRun};
pub use logs::Row;
pub use manifest::Manifest;
pub use status::RunStatus;

pub const MANIFEST_FILE: &str = "grid.yaml";
pub const SOURCE_FILE: &str = "grid.source.yaml";
pub const LOCK_FILE: &str = ".lock";
pub const RUNS_DIR: &str = "runs";
pub const TABLES_DIR: &str = "tables";
pub const REPORT_DIR: &str = "report";
pub const CONFIG_FILE: &str = "config.yaml";
pub const STATUS_FILE: &str = "status.json";
pub const LOG_FILE: &str = "log.txt";
pub const METRICS_JSONL: &str = "metrics.jsonl";
pub const EVAL_JSONL: &str = "eval.jsonl";
pub const METRICS_PARQUET: &str = "metrics.parquet";
pub const EVAL_PARQUET: &str = "eval.parquet";
pub const TENSORBOARD_DIR: &str = "tb";

/// `DIR/<grid>/runs/<id>`.
pub fn run_dir(grid_dir: &Path, id: &str) -> PathBuf {
    grid_dir.join(RUNS_DIR).join(id)
}

/// Whether `dir` is a grid output directory (holds a manifest).
pub fn is_grid_dir(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file()
}

/// State of a run, as recorded in `status.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Prepared, never started.
    Pending,
    /// A live process is training it.
    Running,
    /// Stopped by a signal (or its process died) before the end: resumable.
    Interrupted,
    Done,
    Failed,
    Diverged,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
            RunState::Done => "done",
            RunState::Failed => "failed",
            RunState::Diverged => "diverged",
        }
    }

    /// Done or diverged: a result that is never recomputed.
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Done | RunState::Diverged)
    }

    /// Done, diverged or failed: the run will not continue by itself.
    pub fn is_over(self) -> bool {
        matches!(self, RunState::Done | RunState::Diverged | RunState::Failed)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run as stored in the manifest: who it is in the grid, and its resolved config. The one
/// record that tables, reports, the gate and the run's own process read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Short stable hash of the resolved config and the seed.
    pub id: String,
    /// Hash of the resolved config alone: runs that differ only by seed share it.
    pub point: String,
    /// `case/key=value/…/seed=S`.
    pub label: String,
    /// The label without the seed (names the grid point).
    pub point_label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    pub seed: i64,
    /// Axis key → value for this run, in declaration order (stored as a YAML mapping).
    #[serde(default, with = "axes_as_mapping")]
    pub axes: Vec<(String, serde_yaml::Value)>,
    /// The resolved run config, kept as YAML so that old grids stay readable as the schema grows.
    pub config: serde_yaml::Value,
}

impl RunRecord {
    /// The value of an axis at this run, if it has that axis.
    pub fn axis(&self, key: &str) -> Option<&serde_yaml::Value> {
        self.axes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A value of the resolved config at a dotted path (`algorithm.c`).
    pub fn config_value(&self, dotted: &str) -> Option<&serde_yaml::Value> {
        dotted
            .split('.')
            .try_fold(&self.config, |v, k| v.as_mapping()?.get(k))
    }

    /// `train.steps` of the config (0 when absent: the config's default applies at run time).
    pub fn total_steps(&self) -> usize {
        self.config_value("train.steps")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as usize
    }

    /// Whether `sel` names this run: its id, its label, or its grid point's label.
    pub fn is_named(&self, sel: &str) -> bool {
        self.id == sel || self.label == sel || self.point_label == sel
    }
}

mod axes_as_mapping {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_yaml::{Mapping, Value};

    pub fn serialize<S: Serializer>(axes: &[(String, Value)], s: S) -> Result<S::Ok, S::Error> {
        let m: Mapping = axes
            .iter()
            .map(|(k, v)| (Value::String(k.clone()), v.clone()))
            .collect();
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Value)>, D::Error> {
        let m = Mapping::deserialize(d)?;
        Ok(m.into_iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
            .collect())
    }
}

#[cfg(test)]
mod tests;
