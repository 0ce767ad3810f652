//! The diagnostics probe (`algorithm.diagnostics: true`, DCMDP): what DC-GRPO's feedback loop
//! does, step by step. Off by default; when on it costs one forward with graph and one backward
//! per loss term before the update, and two forwards without graph after the engine's sync. It
//! reads the trainer and the engine, never changes them (no gradient is accumulated, no RNG
//! drawn), so a probed run trains bitwise like an unprobed one.
//!
//! Metrics (`diag/…`):
//! - `grad_norm/<term>`: ‖∇_θ term‖ of each loss term on the whole step's batch, before the
//!   update (`policy`, `penalty`; the penalty's includes λ), and `grad_cos` between the two;
//! - `w_absmax/max`, `w_absmax/mean`: max |w| over each quantised trainer tensor (the engine's
//!   per-tensor scale is this / q_max), the largest and the mean over tensors;
//!   `engine_weight_err`: mean over those tensors of ‖w_engine − w‖ / ‖w‖ after the sync;
//! - on the step's own tokens, `delta_before` (|π_old − μ|), `delta_trained` (|π_new − μ|: what
//!   the update did to the gap it was trained on), `delta_synced` (|π_new − μ_new|, μ_new the
//!   engine after its sync: the gap the next rollout sees on these tokens);
//! - `sign_flip_trained`: share of those tokens where sign(π − μ) changed across the update (the
//!   penalty overshot μ), `sign_flip_synced`: where sign(π_new − μ_new) ≠ sign(π_old − μ) (the
//!   penalty's sign on a token changed between this step and the next).
use super::super::batch::Batch;
use super::super::trainer::Trainer;
use crate::objective::{Metrics, PolicyBatch};
use crate::rollout::discrepancy::is_quantised;
use tch::{Kind, Tensor};

/// Mean of `x` over the mask, f64.
fn mean_over(x: &Tensor, m: &Tensor) -> f64 {
    ((x * m).sum(Kind::Double) / m.sum(Kind::Double).clamp_min(1.0)).double_value(&[])
}

impl Trainer<'_> {
    /// Before the update: the per-term gradient norms (empty unless the algorithm wants the probe).
    pub(super) fn probe_before(&self, batch: &Batch) -> Metrics {
        let mut out = Metrics::new();
        if !self.algo.wants_probe() {
            return out;
        }
        let model = &self.actor.model;
        let params = model.trainable_parameters();
        let cur = batch.rows.score(model, self.cfg.rollout.temperature, None);
        let mut pb = PolicyBatch::new(
            &cur.logp,
            &batch.old_logp,
            &batch.rollout_logp,
            &batch.advantages,
            &batch.rows.mask,
        );
        if let Some(rl) = &batch.ref_logp {
            pb = pb.with_ref(rl);
        }
        let mut flat = Vec::new();
        for (name, term) in self.algo.loss_parts(&pb) {
            if !term.requires_grad() {
                continue;
            }
            let grads = Tensor::run_backward(&[&term], &params, true, false);
            let g = Tensor::cat(
                &grads
                    .iter()
                    .zip(&params)
                    .map(|(g, p)| {
                        if g.defined() {
                            g.to_kind(Kind::Double).flatten(0, -1)
                        } else {
                            p.zeros_like().to_kind(Kind::Double).flatten(0, -1)
                        }
                    })
                    .collect::<Vec<_>>(),
                0,
            );
            out.insert(format!("diag/grad_norm/{name}"), g.norm().double_value(&[]));
            flat.push(g);
        }
        out.entry("diag/grad_norm/penalty".into()).or_insert(0.0);
        if let [a, b] = &flat[..] {
            let den = (a.norm() * b.norm()).double_value(&[]);
            let cos = if den > 0.0 {
                a.dot(b).double_value(&[]) / den
            } else {
                0.0
            };
            out.insert("diag/grad_cos".into(), cos);
        }
        out
    }

    /// After the update and the engine's sync: weights and the gap on the step's own tokens.
    pub(super) fn probe_after(&self, batch: &Batch) -> Metrics {
        let mut out = Metrics::new();
        if !self.algo.wants_probe() {
            return out;
        }
        let temp = self.cfg.rollout.temperature;
        tch::no_grad(|| {
            let trainer: Vec<(String, Tensor)> = self.actor.model.named_parameters();
            let engine: Vec<(String, Tensor)> = self.engine.model().effective_named_parameters();
            let (mut amax, mut errs) = (Vec::new(), Vec::new());
            for ((name, w), (_, we)) in trainer.iter().zip(&engine) {
                if !is_quantised(name) {
                    continue;
                }
                let wf = w.to_kind(Kind::Double);
                amax.push(wf.abs().max().double_value(&[]));
                let num = (we.to_kind(Kind::Double) - &wf).norm().double_value(&[]);
                errs.push(num / wf.norm().double_value(&[]).max(1e-30));
            }
            let n = amax.len().max(1) as f64;
            out.insert(
                "diag/w_absmax/max".into(),
                amax.iter().copied().fold(0.0, f64::max),
            );
            out.insert("diag/w_absmax/mean".into(), amax.iter().sum::<f64>() / n);
            out.insert(
                "diag/engine_weight_err".into(),
                errs.iter().sum::<f64>() / n,
            );
            let m = &batch.rows.mask;
            let new = batch.rows.score(&self.actor.model, temp, None).logp.exp();
            let mu_new = batch.rows.score(self.engine.model(), temp, None).logp.exp();
            let old = batch.old_logp.exp();
            let mu = batch.rollout_logp.exp();
            let before = &old - &mu;
            let trained = &new - &mu;
            let synced = &new - &mu_new;
            out.insert("diag/delta_before".into(), mean_over(&before.abs(), m));
            out.insert("diag/delta_trained".into(), mean_over(&trained.abs(), m));
            out.insert("diag/delta_synced".into(), mean_over(&synced.abs(), m));
            let flip = |a: &Tensor, b: &Tensor| {
                let f = a.sign().ne_tensor(&b.sign()).to_kind(Kind::Double);
                mean_over(&f, m)
            };
            out.insert("diag/sign_flip_trained".into(), flip(&before, &trained));
            out.insert("diag/sign_flip_synced".into(), flip(&before, &synced));
        });
        out
    }
}
