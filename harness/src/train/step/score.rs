//! Stage 2, score: the trainer's view of the collected rows — π_old (the trainer recomputing what
//! the engine sampled), π_ref and the critic's values when the algorithm has them — then the
//! discrepancy diagnostics and the algorithm's advantages, handed to the update as a [`Batch`].
use super::super::batch::{stack_parts, Batch, Rows};
use super::super::trainer::Trainer;
use super::collect::Collected;
use crate::diagnostics::rollout_corr;
use crate::objective::{AdvantageInput, Advantages, Metrics, StepStats};
use crate::rollout::Scored;
use std::time::Instant;
use tch::Tensor;

/// The trainer-side scores of a step's rows.
pub struct Scores {
    /// π_old: log-probs, entropy and (MoE) selected experts, without a graph.
    pub old: Scored,
    /// With one epoch of one mini-batch (and no recompute) the update's forward runs on the very
    /// weights that define π_old: that forward, with its graph, for the update to reuse.
    pub fused: Option<Scored>,
    pub ref_logp: Option<Tensor>,
    pub old_values: Option<Tensor>,
    /// Seconds spent scoring.
    pub seconds: f64,
}

impl Scores {
    /// `rollout_corr/*`: how far the engine's μ is from π_old (and, MoE, its routing).
    pub fn discrepancy(&self, c: &Collected) -> Metrics {
        let ro = &c.rollouts;
        let experts = (!ro.engine_experts.is_empty())
            .then_some((ro.engine_experts.as_slice(), self.old.experts.as_slice()));
        rollout_corr(&self.old.logp, &ro.rollout_logp, &ro.response_mask, experts)
    }

    /// The step's summary the algorithm sees in `begin_step`/`end_step` (δ̄).
    pub fn stats(&self, c: &Collected) -> StepStats {
        let ro = &c.rollouts;
        StepStats::from_logps(&self.old.logp, &ro.rollout_logp, &ro.response_mask)
    }

    /// What advantage estimation reads.
    pub fn advantage_input<'s>(&'s self, c: &'s Collected, group: usize) -> AdvantageInput<'s> {
        let mask = &c.rollouts.response_mask;
        let mut ain = AdvantageInput::new(&c.rewards_t, mask, group as i64);
        if let Some(v) = &self.old_values {
            ain = ain.with_values(v);
        }
        if let Some(rl) = &self.ref_logp {
            ain = ain.with_logps(&self.old.logp, rl);
        }
        ain
    }

    /// The update's input (and the fused forward, if any).
    pub fn into_batch(self, c: &Collected, adv: Advantages) -> (Batch, Option<Scored>) {
        let ro = &c.rollouts;
        let batch = Batch {
            rows: Rows::of(ro),
            rollout_logp: ro.rollout_logp.shallow_clone(),
            rollout_topk: ro
                .topk
                .as_ref()
                .map(|(lp, ids)| (lp.shallow_clone(), ids.shallow_clone())),
            old_logp: self.old.logp,
            advantages: adv.advantages,
            returns: adv.returns,
            ref_logp: self.ref_logp,
            old_values: self.old_values,
        };
        (batch, self.fused)
    }
}

impl Trainer<'_> {
    /// Whether π_old comes from the update's own forward (see [`Scores::fused`]). Not with
    /// micro-batches: the whole batch's graph is what they avoid holding.
    pub fn fused_old_logp(&self) -> bool {
        let t = &self.cfg.train;
        t.ppo_epochs == 1 && t.mini_batches == 1 && !t.recompute && t.micro_batch_tokens.is_none()
    }

    /// Stage 2: π_old, π_ref and V_old of the collected rows. With `train.micro_batch_tokens` the
    /// forwards without a graph run in parts of that many tokens too, so scoring stays within the
    /// update's memory (the parts' results are reassembled; equal to one pass within fp32 noise).
    pub fn score(&self, c: &Collected) -> Scores {
        let t = Instant::now();
        let rows = Rows::of(&c.rollouts);
        let temp = self.cfg.rollout.temperature;
        let budget = self.cfg.train.micro_batch_tokens;
        let model = &self.actor.model;
        let (old, fused) = if self.fused_old_logp() {
            let gather = c.rollouts.topk.as_ref().map(|(_, ids)| ids);
            let cur = rows.score(model, temp, gather);
            (cur.detached(), Some(cur))
        } else {
            let parts = in_parts(&rows, budget, |r| {
                let s = tch::no_grad(|| r.score(model, temp, None));
                let mut v = vec![s.logp, s.entropy];
                v.extend(s.experts);
                v
            });
            (scored_from(parts), None)
        };
        let ref_logp = self.reference.as_ref().map(|r| {
            let mut v = in_parts(&rows, budget, |part| vec![r.logp(part, temp)]);
            v.remove(0)
        });
        let old_values = self.critic.as_ref().map(|v| {
            let mut out = in_parts(&rows, budget, |part| vec![tch::no_grad(|| v.values(part))]);
            out.remove(0)
        });
        Scores {
            old,
            fused,
            ref_logp,
            old_values,
            seconds: t.elapsed().as_secs_f64(),
        }
    }
}

/// `f`'s per-row tensors `[N, R, ...]` of `rows`: one call, or with a token `budget` one call per
/// part ([`Rows::parts`]) and the parts' results stacked back to the full width.
fn in_parts(rows: &Rows, budget: Option<usize>, f: impl Fn(&Rows) -> Vec<Tensor>) -> Vec<Tensor> {
    let Some(budget) = budget else {
        return f(rows);
    };
    let cols = rows.mask.size()[1];
    let parts: Vec<Vec<Tensor>> = rows.parts(budget).iter().map(f).collect();
    (0..parts[0].len())
        .map(|i| {
            let column: Vec<Tensor> = parts.iter().map(|p| p[i].shallow_clone()).collect();
            stack_parts(&column, cols)
        })
        .collect()
}

/// A graph-free [`Scored`] from `[logp, entropy, experts...]`.
fn scored_from(mut parts: Vec<Tensor>) -> Scored {
    let experts = parts.split_off(2);
    let entropy = parts.pop().unwrap();
    let logp = parts.pop().unwrap();
    Scored {
        logp,
        entropy,
        experts,
        aux_loss: None,
        gathered: None,
    }
}
