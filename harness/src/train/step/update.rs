//! Stage 3, update: `ppo_epochs` passes over the batch in `mini_batches` shuffled mini-batches.
//! Per mini-batch: zero the gradients, [`Trainer::forward_backward`] on its rows — or, with
//! `train.micro_batch_tokens`, [`Trainer::forward_backward_micro`]: one pass per micro-batch,
//! gradients accumulating — then clip, the divergence guard, one AdamW step for the policy (and
//! the critic).
use super::super::batch::Batch;
use super::super::trainer::{step_stream, Trainer};
use crate::objective::metrics::merge_micro_metrics;
use crate::objective::{AggTotals, Metrics, PolicyBatch};
use crate::rollout::Scored;
use crate::task::Rng;
use std::time::Instant;
use tch::Tensor;

/// One mini-batch's loss value and the loss's metrics.
pub struct MiniBatchOut {
    pub loss: f64,
    pub metrics: Metrics,
    /// Forward/backward passes it took (micro-batches).
    pub passes: usize,
}

/// What one micro-batch of a mini-batch is given: the mini-batch's aggregation denominators, and
/// its share of the mini-batch's tokens (weighting MoE's router loss, which is a mean over tokens
/// but not additive).
#[derive(Clone, Copy)]
pub struct MicroShare {
    pub totals: AggTotals,
    pub tokens: f64,
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
    passes: usize,
}

impl Sums {
    fn add(&mut self, out: MiniBatchOut, grad_norm: f64) {
        self.grad_norms.push(grad_norm);
        self.passes += out.passes;
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
        let budget = train.micro_batch_tokens;
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
                let out = match (budget, fused.take()) {
                    (Some(tokens), None) => self.forward_backward_micro(&rows, tokens, nan),
                    (_, fused) => self.forward_backward(&rows, fused, nan),
                };
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
        let passes = sums.passes as f64;
        let mut done = sums.mean(t.elapsed().as_secs_f64());
        if budget.is_some() {
            // Only when set: the unset path's metrics row stays as it was.
            done.means.insert("perf/micro_batches".into(), passes);
        }
        Updated::Done(done)
    }

    /// [`Trainer::forward_backward`] of a mini-batch's `rows` in micro-batches of at most
    /// `budget` tokens ([`Batch::micro_batches`]). Each is given the mini-batch's
    /// [`AggTotals`] (after the algorithm's rejections), so the losses and gradients add up to the
    /// unsplit mini-batch's and the merged metrics equal its metrics.
    pub fn forward_backward_micro(&self, rows: &Batch, budget: usize, nan: bool) -> MiniBatchOut {
        let totals = self
            .algo
            .agg_totals(&rows.old_logp, &rows.rollout_logp, &rows.rows.mask);
        let all = rows.rows.real_tokens();
        let mut out = MiniBatchOut {
            loss: 0.0,
            metrics: Metrics::new(),
            passes: 0,
        };
        for part in rows.micro_batches(budget) {
            let tokens = part.rows.real_tokens() / all.max(1.0);
            let share = MicroShare { totals, tokens };
            let o = self.pass(&part, None, Some(share), nan);
            out.loss += o.loss;
            out.passes += 1;
            merge_micro_metrics(&mut out.metrics, &o.metrics);
        }
        out
    }

    /// Forward and backward of one mini-batch's `rows`: the algorithm's loss (plus MoE's router
    /// loss) backpropagated into the policy's and the critic's gradients, which accumulate — no
    /// zeroing, no optimizer step, so a mini-batch may be fed in parts. The policy's log-probs
    /// come from `fused` when given (the whole batch's forward, with its graph), else from a
    /// forward over `rows`. `nan` injects a NaN loss (testing the guard).
    pub fn forward_backward(&self, rows: &Batch, fused: Option<Scored>, nan: bool) -> MiniBatchOut {
        self.pass(rows, fused, None, nan)
    }

    /// One forward/backward; `share` when `rows` is a micro-batch of a larger mini-batch.
    fn pass(
        &self,
        rows: &Batch,
        fused: Option<Scored>,
        share: Option<MicroShare>,
        nan: bool,
    ) -> MiniBatchOut {
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
        if let Some(s) = share {
            batch = batch.with_agg_totals(s.totals);
        }
        let (loss, mut metrics) = self.algo.loss(&batch);
        let moe_coef = model.cfg.moe.as_ref().map(|m| m.router_aux_loss_coef);
        let loss = match (moe_coef, &cur.aux_loss) {
            (Some(c), Some(aux)) => {
                // A micro-batch's router loss weighs by its share of the mini-batch's tokens.
                let aux = match share {
                    Some(s) => aux * s.tokens,
                    None => aux.shallow_clone(),
                };
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
            passes: 1,
        }
    }
}
