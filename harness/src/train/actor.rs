//! The policy being trained (the actor): its model, the parameters AdamW updates (the adapters with
//! LoRA, else every weight) and that AdamW.
use super::checkpoint::{copy_named, NamedTensors, OptimState, OPTIMIZER_FILE, POLICY_FILE};
use super::optim::AdamW;
use crate::config::OptimConfig;
use crate::model::Qwen3;
use crate::Result;
use std::path::Path;

pub struct Actor {
    pub model: Qwen3,
    opt: AdamW,
}

impl Actor {
    pub fn new(model: Qwen3, optim: &OptimConfig) -> Self {
        let opt = AdamW::new(model.trainable_parameters(), optim);
        Actor { model, opt }
    }

    pub fn zero_grad(&mut self) {
        self.opt.zero_grad();
    }

    /// Clip the gradients to global norm `max_norm` (0 = off); the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        self.opt.clip_grad_norm(max_norm)
    }

    pub fn step(&mut self, lr: f64) {
        self.opt.step(lr);
    }

    /// AdamW updates taken.
    pub fn updates(&self) -> i64 {
        self.opt.t
    }

    fn names(&self) -> Vec<String> {
        let named = self.model.trainable_named_parameters();
        named.into_iter().map(|(n, _)| n).collect()
    }

    /// Checkpoint state: the trainable parameters and AdamW's.
    pub fn state(&self) -> (NamedTensors, OptimState) {
        let params = self.model.trainable_named_parameters();
        let params = params.into_iter().map(|(n, p)| (n, p.detach())).collect();
        (params, self.opt.state(&self.names()))
    }

    /// Restore [`Actor::state`] read from `dir`.
    pub fn load_state(
        &mut self,
        params: &NamedTensors,
        opt: &OptimState,
        dir: &Path,
    ) -> Result<()> {
        let named = self.model.trainable_named_parameters();
        copy_named(&named, params, &dir.join(POLICY_FILE))?;
        let names = self.names();
        self.opt.load_state(&names, opt, &dir.join(OPTIMIZER_FILE))
    }
}
