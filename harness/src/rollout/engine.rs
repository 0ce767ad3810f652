//! The inference engine: its own copy of the weights (in its own precision, optionally fake-quantised,
//! optionally with router perturbation), synced from the trainer after each update or with a lag.
//!
//! With LoRA, an engine at the trainer's base precision and no weight quantisation shares the
//! trainer's frozen base tensors (no second copy) and holds only its own adapters: syncs, staleness
//! snapshots and its checkpointed weights are the adapters. It then runs the trainer's forward
//! (base matmul plus adapter delta) instead of merged weights.
use super::discrepancy::{is_quantised, precision_kind};
use super::sampler::{generate, Rollouts, SamplingParams};
use crate::config::EngineConfig;
use crate::model::quant::quantise;
use crate::model::{Qwen3, RandomInit};
use crate::Result;
use std::collections::HashMap;
use std::collections::VecDeque;
use tch::{Device, Tensor};

pub struct Engine {
    model: Qwen3,
    cfg: EngineConfig,
    /// Trainer snapshots not yet visible to the engine (staleness).
    pending: VecDeque<Vec<Tensor>>,
    /// Whether `model` shares the trainer's base and its weights are the adapters.
    shared_base: bool,
}

impl Engine {
    /// An inference copy of `trainer` on `device`, applying every knob in `cfg`.
    pub fn new(trainer: &Qwen3, cfg: &EngineConfig, device: Device) -> Result<Self> {
        let kind = precision_kind(cfg.precision);
        let shared_base = Self::can_share_base(trainer, cfg, device);
        let mut model = if shared_base {
            let mut m = trainer.share_base();
            m.set_compute_kind(kind);
            m
        } else {
            // Shapes come from the config; weights are overwritten right away.
            let mut m = Qwen3::from_source(&trainer.cfg, &mut RandomInit::zeros(kind, device))?;
            m.store_quantised(cfg.weight_quant, cfg.quant_scale);
            m
        };
        model.router_noise_std = cfg.router.noise_std;
        model.router_kind = cfg.router.precision.map(precision_kind);
        let mut engine = Engine {
            model,
            cfg: cfg.clone(),
            pending: VecDeque::new(),
            shared_base,
        };
        if !shared_base {
            engine.load_from(trainer);
        }
        Ok(engine)
    }

    /// LoRA, the base stored (and computed) in the engine's precision, no quantisation, same device.
    pub fn can_share_base(trainer: &Qwen3, cfg: &EngineConfig, device: Device) -> bool {
        let kind = precision_kind(cfg.precision);
        trainer.has_lora()
            && trainer.kind() == kind
            && trainer.compute_kind() == kind
            && cfg.weight_quant == crate::config::WeightQuant::None
            && trainer.device() == device
    }

    /// Whether the engine shares the trainer's frozen base (its weights are then the adapters).
    pub fn shares_base(&self) -> bool {
        self.shared_base
    }

    /// The tensors `weights` and `set_weights` hold, with their names: the adapters when the base
    /// is shared, else every base parameter (quantised ones in 1-byte storage) and the
    /// quantisation scales (`<weight>_scale`).
    pub fn named_weights(&self) -> Vec<(String, Tensor)> {
        if self.shared_base {
            self.model.lora_parameters()
        } else {
            let mut named = self.model.named_parameters();
            named.extend(self.model.quant_scales());
            named
        }
    }

    /// Names and shapes of what a staleness snapshot (`pending`) holds: the adapters when the
    /// base is shared, else the trainer's effective weights (before quantisation).
    pub fn named_pending_like(&self) -> Vec<(String, Tensor)> {
        if self.shared_base {
            self.model.lora_parameters()
        } else {
            self.model.named_parameters()
        }
    }

    /// Bytes of the weights the engine holds itself (what it shares with the trainer excluded).
    pub fn own_weight_bytes(&self) -> usize {
        let named = self.named_weights();
        named
            .iter()
            .map(|(_, t)| t.numel() * t.kind().elt_size_in_bytes())
            .sum()
    }

    pub fn model(&self) -> &Qwen3 {
        &self.model
    }

    /// Called after every optimizer step: the engine sees the trainer's weights `staleness`
    /// updates later.
    pub fn sync(&mut self, trainer: &Qwen3) {
        if self.cfg.staleness == 0 {
            return self.load_from(trainer);
        }
        // Held back: a copy, since the trainer updates its tensors in place.
        self.pending.push_back(detached(self.handed_over(trainer)));
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
        detached(self.named_weights().into_iter().map(|(_, t)| t).collect())
    }

    /// Overwrite the engine's weights directly (already quantised), e.g. on resume.
    pub fn set_weights(&mut self, w: &[Tensor]) {
        tch::no_grad(|| {
            for ((_, mut dst), src) in self.named_weights().into_iter().zip(w) {
                dst.copy_(src);
            }
        });
    }

    /// What a sync hands over, not copied: the adapters when the base is shared, else the
    /// trainer's weights with LoRA merged in (new tensors only for the adapted ones; fp32 stays
    /// fp32, the cast happens on load).
    fn handed_over(&self, model: &Qwen3) -> Vec<Tensor> {
        let named = if self.shared_base {
            model.lora_parameters()
        } else {
            model.merged_named_parameters()
        };
        named.into_iter().map(|(_, t)| t).collect()
    }

    fn load(&mut self, weights: &[Tensor]) {
        if self.shared_base {
            return self.set_weights(weights);
        }
        let scales: HashMap<String, Tensor> = self.model.quant_scales().into_iter().collect();
        tch::no_grad(|| {
            for ((name, dst), src) in self.model.named_parameters().into_iter().zip(weights) {
                self.load_one(&name, dst, src, &scales);
            }
        });
    }

    /// [`Engine::load`] straight from the trainer: its adapters when the base is shared, else its
    /// merged weights as [`Qwen3::for_each_merged`] makes them (one merged projection alive at a
    /// time, not all of them).
    fn load_from(&mut self, trainer: &Qwen3) {
        if self.shared_base {
            return self.load(&self.handed_over(trainer));
        }
        let scales: HashMap<String, Tensor> = self.model.quant_scales().into_iter().collect();
        let mut dst = self.model.named_parameters().into_iter();
        tch::no_grad(|| {
            trainer.for_each_merged(|_, src| {
                let (name, d) = dst
                    .next()
                    .expect("engine and trainer have the same parameters");
                self.load_one(&name, d, src, &scales);
            })
        });
    }

    /// Copy `src` into the engine's parameter `name` (`dst`), quantised if the engine quantises it.
    fn load_one(
        &self,
        name: &str,
        mut dst: Tensor,
        src: &Tensor,
        scales: &HashMap<String, Tensor>,
    ) {
        let (q, s) = (self.cfg.weight_quant, self.cfg.quant_scale);
        match is_quantised(name).then(|| quantise(src, q, s)).flatten() {
            Some((values, scale)) => {
                dst.copy_(&values);
                scales[&format!("{name}_scale")]
                    .shallow_clone()
                    .copy_(&scale);
            }
            None => {
                dst.copy_(src);
            }
        }
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

fn detached(ts: Vec<Tensor>) -> Vec<Tensor> {
    tch::no_grad(|| ts.into_iter().map(|t| t.detach().copy()).collect())
}
