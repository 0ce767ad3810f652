//! Stage 3, update: `ppo_epochs` passes over the batch in `mini_batches` shuffled mini-batches.
//! Per mini-batch: zero the gradients, [`Trainer::forward_backward`] on its rows, clip, the
//! divergence guard, one AdamW step for the policy (and the critic).
use super::super::batch::Batch;
use super::super::trainer::{step_stream, Trainer};
use crate::objective::{Metrics, PolicyBatch};
use crate::rollout::Scored;
use crate::task::Rng;
use std::time::Instant;
use tch::Tensor;

/// One mini-batch's loss value and the loss's metrics.
pub struct MiniBatchOut {
    pub loss: f64,
    pub metrics: Metrics,
}

/// A finished update: per-mini-batch metrics averaged over the step's mini-batches.
pub struct Update {
    /// The loss's metrics and `actor/loss`, each the mean over mini-batches.
    pub means: Metrics,
    /// Mean pre-clip gradient norm of the policy.
    pub grad_norm: f64,
    pub seconds: f64,
}

pub enum Updated {
    Done(Update),
    /// The divergence guard stopped the run at a mini-batch with this loss and gradient norm.
    Diverged {
        reason: String,
        grad_norm: f64,
        loss: f64,
    },
}

/// Sums of per-mini-batch values.
#[derive(Default)]
struct Sums {
    metrics: Metrics,
    count: f64,
    grad_norms: Vec<f64>,
}

impl Sums {
    fn add(&mut self, out: MiniBatchOut, grad_norm: f64) {
        self.grad_norms.push(grad_norm);
        for (k, v) in out.metrics {
            *self.metrics.entry(k).or_default() += v;
        }
        *self.metrics.entry("actor/loss".into()).or_default() += out.loss;
        self.count += 1.0;
    }

    fn mean(self, seconds: f64) -> Update {
        let n = self.grad_norms.len().max(1) as f64;
        Update {
            means: self
                .metrics
                .into_iter()
                .map(|(k, v)| (k, v / self.count))
                .collect(),
            grad_norm: self.grad_norms.iter().sum::<f64>() / n,
            seconds,
        }
    }
}

/// `0..n` shuffled (Fisher–Yates) with `rng`, so resume replays the same order.
fn shuffled(n: i64, rng: &mut Rng) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

impl Trainer<'_> {
    /// Stage 3 of step `step` at learning rate `lr`. `fused` is the scoring's forward of the
    /// whole batch with its graph (one epoch of one mini-batch); `entropy` the batch's mean
    /// π_old entropy (for the guard).
    pub fn update(
        &mut self,
        step: usize,
        batch: &Batch,
        mut fused: Option<Scored>,
        entropy: f64,
        lr: f64,
    ) -> Updated {
        let t = Instant::now();
        let cfg = self.cfg;
        let train = &cfg.train;
        let n = batch.rows.len();
        let mb = train.mini_batches as i64;
        let mb_size = ((n + mb - 1) / mb) as usize;
        let nan = train.fault_nan_at_step == Some(step);
        let mut rng = Rng::new(self.seed, step_stream(step, 3));
        let mut sums = Sums::default();
        for _epoch in 0..train.ppo_epochs {
            for chunk in shuffled(n, &mut rng).chunks(mb_size) {
                // The fused single mini-batch keeps the rows in order (the loss is a mean).
                let idx = fused
                    .is_none()
                    .then(|| Tensor::from_slice(chunk).to_device(self.device));
                let rows = batch.select(idx.as_ref());
                self.actor.zero_grad();
                if let Some(c) = &mut self.critic {
                    c.zero_grad();
                }
                let out = self.forward_backward(&rows, fused.take(), nan);
                let grad_norm = self.actor.clip_grad_norm(cfg.optim.grad_clip);
                if let Some(reason) = self.guard.check(out.loss, grad_norm, entropy) {
                    let loss = out.loss;
                    return Updated::Diverged {
                        reason,
                        grad_norm,
                        loss,
                    };
                }
                self.actor.step(lr);
                if let Some(c) = &mut self.critic {
                    c.step(lr, cfg.optim.grad_clip);
                }
                sums.add(out, grad_norm);
            }
        }
        Updated::Done(sums.mean(t.elapsed().as_secs_f64()))
    }

    /// Forward and backward of one mini-batch's `rows`: the algorithm's loss (plus MoE's router
    /// loss) backpropagated into the policy's and the critic's gradients, which accumulate — no
    /// zeroing, no optimizer step, so a mini-batch may be fed in parts. The policy's log-probs
    /// come from `fused` when given (the whole batch's forward, with its graph), else from a
    /// forward over `rows`. `nan` injects a NaN loss (testing the guard).
    pub fn forward_backward(&self, rows: &Batch, fused: Option<Scored>, nan: bool) -> MiniBatchOut {
        let temp = self.cfg.rollout.temperature;
        let model = &self.actor.model;
        let gather = rows.rollout_topk.as_ref().map(|(_, ids)| ids);
        let (cur, recompute) = match fused {
            Some(cur) => (cur, None),
            None if self.cfg.train.recompute => {
                let (s, rc) = rows.rows.score_recompute(model, temp, gather);
                (s, Some(rc))
            }
            None => (rows.rows.score(model, temp, gather), None),
        };
        let values = self.critic.as_ref().map(|c| c.values(&rows.rows));
        let mut batch = PolicyBatch::new(
            &cur.logp,
            &rows.old_logp,
            &rows.rollout_logp,
            &rows.advantages,
            &rows.rows.mask,
        );
        if let Some(rl) = &rows.ref_logp {
            batch = batch.with_ref(rl);
        }
        if let (Some((tl, _)), Some(g)) = (&rows.rollout_topk, &cur.gathered) {
            batch = batch.with_topk(tl, g);
        }
        if let (Some(v), Some(o), Some(r)) = (&values, &rows.old_values, &rows.returns) {
            batch = batch.with_values(v, o, r);
        }
        let (loss, mut metrics) = self.algo.loss(&batch);
        let moe_coef = model.cfg.moe.as_ref().map(|m| m.router_aux_loss_coef);
        let loss = match (moe_coef, &cur.aux_loss) {
            (Some(c), Some(aux)) => {
                metrics.insert("actor/aux_loss".into(), aux.double_value(&[]));
                loss + aux * c
            }
            _ => loss,
        };
        let loss = if nan { loss * f64::NAN } else { loss };
        loss.backward();
        if let Some(rc) = recompute {
            rc.backward();
        }
        MiniBatchOut {
            loss: loss.double_value(&[]),
            metrics,
        }
    }
}
