//! `runs/<id>/status.json`: a run's state, rewritten atomically while it trains (the grid runner
//! reads its progress from there) and when it ends.
use super::fsutil::atomic_write;
use super::Run;
use crate::train::RunState;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const STATUS_FILE: &str = "status.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub id: String,
    pub label: String,
    pub state: RunState,
    /// Last completed step.
    pub step: usize,
    pub total_steps: usize,
    /// `critic/score/mean` of the last step, when the run logs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    /// For `failed`: the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `diverged`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The process working on it (while `running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Seconds since the Unix epoch of this write.
    #[serde(default)]
    pub updated: f64,
}

impl RunStatus {
    pub fn new(run: &Run, state: RunState) -> Self {
        RunStatus {
            id: run.id.clone(),
            label: run.label.clone(),
            state,
            step: 0,
            total_steps: run.config.train.steps,
            reward: None,
            error: None,
            reason: None,
            pid: None,
            updated: now(),
        }
    }

    /// The status in a run directory, if there is a readable one.
    pub fn read(run_dir: &Path) -> Option<RunStatus> {
        let text = std::fs::read_to_string(run_dir.join(STATUS_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Write atomically (stamping `updated`).
    pub fn write(&mut self, run_dir: &Path) -> Result<()> {
        self.updated = now();
        let text = serde_json::to_string_pretty(self).expect("status serialises");
        atomic_write(&run_dir.join(STATUS_FILE), text.as_bytes())
    }

    /// Done or diverged: a result that is never recomputed.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, RunState::Done | RunState::Diverged)
    }
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn state_name(s: RunState) -> &'static str {
    match s {
        RunState::Pending => "pending",
        RunState::Running => "running",
        RunState::Done => "done",
        RunState::Failed => "failed",
        RunState::Diverged => "diverged",
    }
}
