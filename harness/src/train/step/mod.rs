//! One RL step, as four stages with typed hand-offs:
//!
//! 1. **collect** ([`Trainer::collect`] → [`Collected`]): the engine's rollouts and their rewards;
//! 2. **score** ([`Trainer::score`] → [`Scores`]): π_old, π_ref, V_old; then `rollout_corr/*`, the
//!    algorithm's advantages, and the update's [`Batch`](super::batch::Batch);
//! 3. **update** ([`Trainer::update`] → [`Updated`]): epochs × mini-batches, each one
//!    [`Trainer::forward_backward`] and one AdamW step;
//! 4. **report** ([`report::row`]): the rest of the metrics row.
//!
//! Then the engine syncs (or lags). The loop knows the algorithm only through
//! [`Algorithm`](crate::objective::Algorithm) and the components it asked for.
mod collect;
mod probe;
mod report;
mod score;
mod update;

pub use collect::{repeat_prompts, rewards};
pub use update::Updated;
#[cfg(test)]
pub use {
    collect::Collected,
    report::{row, Timings},
    score::Scores,
    update::Update,
};

use super::optim::lr_at;
use super::trainer::{step_seed, Trainer};
use crate::objective::{masked_mean, Metrics};
use crate::Result;
use std::time::Instant;

impl Trainer<'_> {
    /// Step `step` (1-based): its metrics row, and the divergence guard's reason if it stopped
    /// the run (the row then has the failing mini-batch's loss and gradient norm).
    pub fn step(&mut self, step: usize) -> Result<(Metrics, Option<String>)> {
        let start = Instant::now();
        tch::manual_seed(step_seed(self.seed, step, 1));
        let collected = self.collect(step)?;
        let scores = self.score(&collected);
        let mut metrics = scores.discrepancy(&collected);
        let stats = scores.stats(&collected);
        let group = self.cfg.rollout.group_size;
        let adv = self
            .algo
            .advantages(&scores.advantage_input(&collected, group));
        metrics.extend(adv.metrics.clone());
        self.algo.begin_step(&stats);
        let entropy = masked_mean(&scores.old.entropy, &collected.rollouts.response_mask);
        let old_log_prob = scores.seconds;
        let (batch, fused) = scores.into_batch(&collected, adv);
        let lr = lr_at(&self.cfg.optim, step - 1, self.cfg.train.steps);
        metrics.extend(self.probe_before(&batch));
        let update = match self.update(step, &batch, fused, entropy, lr) {
            Updated::Done(u) => u,
            Updated::Diverged {
                reason,
                grad_norm,
                loss,
            } => {
                metrics.insert("actor/grad_norm".into(), grad_norm);
                metrics.insert("actor/loss".into(), loss);
                return Ok((metrics, Some(reason)));
            }
        };
        metrics.extend(update.means.clone());
        metrics.extend(self.algo.end_step(&stats));
        self.engine.sync(&self.actor.model);
        metrics.extend(self.probe_after(&batch));
        let timings = report::Timings {
            start,
            old_log_prob,
        };
        metrics.extend(report::row(&collected, entropy, &update, lr, &timings));
        Ok((metrics, None))
    }
}
