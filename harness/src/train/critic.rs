//! The critic, built when the algorithm asks for a value model (PPO): a Qwen3 trunk of the
//! policy's shape (initialised from the policy's weights, as verl initialises the critic from the
//! actor) plus a zero-initialised scalar head, its own AdamW, and its part of the checkpoint.
use super::batch::Rows;
use super::checkpoint::{copy_named, CriticState, CRITIC_FILE};
use super::optim::AdamW;
use crate::config::OptimConfig;
use crate::model::{Qwen3, RandomInit};
use crate::Result;
use std::path::Path;
use tch::{Kind, Tensor};

pub struct Critic {
    trunk: Qwen3,
    head: Tensor,
    opt: AdamW,
}

impl Critic {
    pub fn new(policy: &Qwen3, optim: &OptimConfig) -> Result<Self> {
        // fp32 master weights (the policy's may be a frozen bf16 LoRA base), computed in the
        // policy's compute dtype; initialised from the policy's effective (merged) weights.
        let mut trunk = Qwen3::from_source(
            &policy.cfg,
            &mut RandomInit::zeros(Kind::Float, policy.device()),
        )?;
        trunk.copy_weights_from(policy);
        trunk.set_compute_kind(policy.compute_kind());
        trunk.moe_impl = policy.moe_impl;
        trunk.set_requires_grad(true);
        let head = Tensor::zeros(
            [1, policy.cfg.hidden_size as i64],
            (Kind::Float, policy.device()),
        )
        .set_requires_grad(true);
        let mut params = trunk.parameters();
        params.push(head.shallow_clone());
        let opt = AdamW::new(params, optim);
        Ok(Critic { trunk, head, opt })
    }

    #[cfg(test)]
    pub(crate) fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = self.trunk.named_parameters();
        p.push(("value_head.weight".into(), self.head.shallow_clone()));
        p
    }

    /// `V(s_t)` `[N, R]` for the state before each response token (fp32), with the graph.
    pub fn values(&self, rows: &Rows) -> Tensor {
        let p = rows.prompt_ids.size()[1];
        let r = rows.response_ids.size()[1];
        let ids = Tensor::cat(&[&rows.prompt_ids, &rows.response_ids], 1);
        let mask = Tensor::cat(&[&rows.prompt_mask, &rows.mask.to_kind(Kind::Int64)], 1);
        let h = self.trunk.forward_hidden(&ids, Some(&mask), None).hidden;
        h.narrow(1, p - 1, r)
            .to_kind(Kind::Float)
            .linear::<&Tensor>(&self.head, None)
            .squeeze_dim(-1)
    }

    pub fn zero_grad(&mut self) {
        self.opt.zero_grad();
    }

    /// Clip the critic's own gradients to `max_norm` and take its AdamW step.
    pub fn step(&mut self, lr: f64, max_norm: f64) {
        self.opt.clip_grad_norm(max_norm);
        self.opt.step(lr);
    }

    pub fn state(&self) -> CriticState {
        let named = self.named_parameters();
        let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
        CriticState {
            params: named.into_iter().map(|(n, p)| (n, p.detach())).collect(),
            optim: self.opt.state(&names),
        }
    }

    /// Restore [`Critic::state`] read from checkpoint `dir`.
    pub fn load_state(&mut self, s: &CriticState, dir: &Path) -> Result<()> {
        let file = dir.join(CRITIC_FILE);
        let named = self.named_parameters();
        let prefixed = |v: &[(String, Tensor)]| -> Vec<(String, Tensor)> {
            v.iter()
                .map(|(n, t)| (format!("params/{n}"), t.shallow_clone()))
                .collect()
        };
        copy_named(&prefixed(&named), &prefixed(&s.params), &file)?;
        let names: Vec<String> = named.into_iter().map(|(n, _)| n).collect();
        self.opt.load_state(&names, &s.optim, &file)
    }
}
