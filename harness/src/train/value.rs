//! PPO's value model: a Qwen3 trunk of the policy's shape (initialised from the policy's weights,
//! as verl initialises the critic from the actor) plus a zero-initialised scalar head.
use crate::model::{Qwen3, RandomInit};
use crate::Result;
use tch::{Kind, Tensor};

pub struct ValueModel {
    pub trunk: Qwen3,
    pub head: Tensor,
}

impl ValueModel {
    pub fn from_policy(policy: &Qwen3) -> Result<Self> {
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
        Ok(ValueModel { trunk, head })
    }

    pub fn parameters(&self) -> Vec<Tensor> {
        let mut p = self.trunk.parameters();
        p.push(self.head.shallow_clone());
        p
    }

    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = self.trunk.named_parameters();
        p.push(("value_head.weight".into(), self.head.shallow_clone()));
        p
    }

    /// `V(s_t)` `[N, R]` for the state before each response token (fp32).
    pub fn values(
        &self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        response_ids: &Tensor,
        response_mask: &Tensor,
    ) -> Tensor {
        let p = prompt_ids.size()[1];
        let r = response_ids.size()[1];
        let ids = Tensor::cat(&[prompt_ids, response_ids], 1);
        let mask = Tensor::cat(&[prompt_mask, &response_mask.to_kind(Kind::Int64)], 1);
        let h = self.trunk.forward_hidden(&ids, Some(&mask), None).hidden;
        h.narrow(1, p - 1, r)
            .to_kind(Kind::Float)
            .linear::<&Tensor>(&self.head, None)
            .squeeze_dim(-1)
    }
}
