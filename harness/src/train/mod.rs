//! Training loop. A run ([`run_training`]) is SFT warm-start (optional), then steps, evaluations
//! and checkpoints. A step (`step/`) is four stages with typed hand-offs: collect (engine rollouts
//! and rewards) → score (π_old, π_ref, values; diagnostics and advantages) → update (epochs ×
//! mini-batches, one forward/backward and AdamW step each) → report (the metrics row); then the
//! engine syncs. The loop drives the [`Algorithm`](crate::objective::Algorithm) trait and builds
//! what it asks for: a [`critic::Critic`] (value model, its AdamW, its checkpoint part) and a
//! [`reference::Reference`] policy. Plus AdamW and schedules, checkpoints ([`checkpoint`]: one
//! typed trainer state as safetensors files with checksums, exact resume, fallback), the
//! divergence guard, SFT warm-start, export.
pub mod actor;
pub mod batch;
pub mod checkpoint;
pub mod critic;
pub mod guard;
pub mod optim;
pub mod policy;
pub mod reference;
mod run;
pub mod sft;
mod sft_cache;
mod step;
mod trainer;

pub use run::{run_training, run_training_with_sft_cache};

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
    /// For `diverged`: why (NaN loss, grad-norm explosion, entropy collapse). Also, in any
    /// state, when resume skipped a checkpoint that failed its checks: which, why, and the one
    /// it resumed from.
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_checkpoint;
#[cfg(test)]
mod tests_dcgrpo;
#[cfg(test)]
mod tests_gpu_path;
#[cfg(test)]
mod tests_micro;
#[cfg(test)]
mod tests_paths;
#[cfg(test)]
mod tests_stages;
