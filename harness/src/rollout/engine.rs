//! The inference engine: its own copy of the weights (in its own precision, optionally fake-quantised,
//! optionally with router perturbation), synced from the trainer after each update or with a lag.
use super::discrepancy::{fake_quant, is_quantised, precision_kind};
use super::sampler::{generate, Rollouts, SamplingParams};
use crate::config::EngineConfig;
use crate::model::{Qwen3, RandomInit};
use crate::Result;
use std::collections::VecDeque;
use tch::{Device, Tensor};

pub struct Engine {
    model: Qwen3,
    cfg: EngineConfig,
    /// Trainer snapshots not yet visible to the engine (staleness).
    pending: VecDeque<Vec<Tensor>>,
}

impl Engine {
    /// An inference copy of `trainer` on `device`, applying every knob in `cfg`.
    pub fn new(trainer: &Qwen3, cfg: &EngineConfig, device: Device) -> Result<Self> {
        let kind = precision_kind(cfg.precision);
        // Shapes come from the config; weights are overwritten right away.
        let mut model = Qwen3::from_source(&trainer.cfg, &mut RandomInit::zeros(kind, device))?;
        model.router_noise_std = cfg.router.noise_std;
        model.router_kind = cfg.router.precision.map(precision_kind);
        let mut engine = Engine {
            model,
            cfg: cfg.clone(),
            pending: VecDeque::new(),
        };
        engine.load(&snapshot(trainer));
        Ok(engine)
    }

    pub fn model(&self) -> &Qwen3 {
        &self.model
    }

    /// Called after every optimizer step: the engine sees the trainer's weights `staleness`
    /// updates later.
    pub fn sync(&mut self, trainer: &Qwen3) {
        self.pending.push_back(snapshot(trainer));
        while self.pending.len() > self.cfg.staleness {
            let w = self.pending.pop_front().unwrap();
            self.load(&w);
        }
    }

    /// Snapshots waiting because of staleness (checkpointed so resume is exact).
    pub fn pending(&self) -> &VecDeque<Vec<Tensor>> {
        &self.pending
    }

    pub fn set_pending(&mut self, pending: VecDeque<Vec<Tensor>>) {
        self.pending = pending;
    }

    /// The engine's current weights (what it samples with), for checkpoints.
    pub fn weights(&self) -> Vec<Tensor> {
        snapshot(&self.model)
    }

    /// Overwrite the engine's weights directly (already quantised), e.g. on resume.
    pub fn set_weights(&mut self, w: &[Tensor]) {
        tch::no_grad(|| {
            for ((_, mut dst), src) in self.model.named_parameters().into_iter().zip(w) {
                dst.copy_(src);
            }
        });
    }

    fn load(&mut self, weights: &[Tensor]) {
        let (q, s) = (self.cfg.weight_quant, self.cfg.quant_scale);
        tch::no_grad(|| {
            for ((name, mut dst), src) in self.model.named_parameters().into_iter().zip(weights) {
                if is_quantised(&name) {
                    dst.copy_(&fake_quant(src, q, s));
                } else {
                    dst.copy_(src);
                }
            }
        });
    }

    /// Sample responses. `params` says what to sample; the engine's own knobs — the logit noise
    /// and the top-K log-probs it reports (`rollout.engine.logit_noise`, `.topk_logprobs`) — are
    /// decided here, from its config, and replace whatever `params` holds for them.
    pub fn generate(&self, prompts: &[Vec<i64>], params: &SamplingParams) -> Rollouts {
        let p = SamplingParams {
            logit_noise: self.cfg.logit_noise,
            topk_logprobs: self.cfg.topk_logprobs,
            ..params.clone()
        };
        generate(&self.model, prompts, &p)
    }
}

/// A detached copy of the trainer's effective weights (LoRA adapters merged in; fp32 stays fp32,
/// cast happens on load).
fn snapshot(model: &Qwen3) -> Vec<Tensor> {
    tch::no_grad(|| {
        model
            .merged_named_parameters()
            .into_iter()
            .map(|(_, t)| t.detach().copy())
            .collect()
    })
}
