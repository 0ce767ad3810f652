//! Training loop: rollout with the engine copy → rewards → trainer recompute of π_old → advantages
//! (via the algorithm) → `ppo_epochs` × mini-batches of updates → engine sync → metrics row. Plus
//! AdamW and schedules, checkpoints with exact resume, the divergence guard, SFT warm-start, PPO's
//! value model.
pub mod checkpoint;
pub mod guard;
pub mod optim;
pub mod policy;
mod run;
pub mod sft;
pub mod value;

pub use run::run_training;

use std::collections::BTreeMap;

/// Final state of a run, as recorded in `status.json` (defined with the run directory).
pub use crate::rundir::RunState;

/// What `run_training` reports after each step (for progress bars).
pub struct StepReport<'a> {
    pub step: usize,
    pub total_steps: usize,
    pub metrics: &'a BTreeMap<String, f64>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub state: RunState,
    /// Last completed step.
    pub step: usize,
    /// For `diverged`: why (NaN loss, grad-norm explosion, entropy collapse).
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gpu_path;
