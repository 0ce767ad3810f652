//! `runs/<id>/status.json`: a run's state, rewritten atomically while it trains (the grid runner
//! reads its progress from there) and when it ends.
use super::fsutil::{hostname, pid_alive};
use super::{atomic_write, RunRecord, RunState, STATUS_FILE};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    /// The process working on it (while `running`) and its host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The device the run trains on (`cpu`, `cuda:1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Which entry of the scheduler's device list the run was placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_slot: Option<usize>,
    /// libtorch intra-op threads of the run's process (CPU results depend on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Seconds since the Unix epoch of this write.
    #[serde(default)]
    pub updated: f64,
}

impl RunStatus {
    pub fn new(run: &RunRecord, total_steps: usize, state: RunState) -> Self {
        RunStatus {
            id: run.id.clone(),
            label: run.label.clone(),
            state,
            step: 0,
            total_steps,
            reward: None,
            error: None,
            reason: None,
            pid: None,
            host: None,
            device: None,
            device_slot: None,
            threads: None,
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
        self.state.is_finished()
    }

    /// The state, with a `running` whose process is known to be gone (same host, pid dead) read
    /// as `interrupted`: a process killed outright cannot write its own status.
    pub fn effective_state(&self) -> RunState {
        if self.state == RunState::Running && self.process_gone() {
            RunState::Interrupted
        } else {
            self.state
        }
    }

    fn process_gone(&self) -> bool {
        match (self.pid, &self.host) {
            (Some(pid), Some(h)) if *h == hostname() => !pid_alive(pid),
            (Some(pid), None) => !pid_alive(pid),
            _ => false,
        }
    }

    /// Mark as started by this process.
    pub fn claim(&mut self) {
        self.pid = Some(std::process::id());
        self.host = Some(hostname());
    }
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
