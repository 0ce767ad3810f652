//! The reference policy π_ref, built when the algorithm asks for one (a KL penalty in the loss or
//! the reward): a frozen copy of the policy as RL starts (after any SFT warm-start), in the
//! trainer's precision, and its part of the checkpoint.
use super::batch::Rows;
use super::checkpoint::{copy_named, NamedTensors, REFERENCE_FILE};
use crate::model::{Qwen3, RandomInit};
use crate::Result;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub struct Reference {
    model: Qwen3,
}

impl Reference {
    /// A copy of `policy`'s effective weights stored as `kind`.
    pub fn new(policy: &Qwen3, kind: Kind, device: Device) -> Result<Self> {
        let mut model = Qwen3::from_source(&policy.cfg, &mut RandomInit::zeros(kind, device))?;
        model.copy_weights_from(policy);
        Ok(Reference { model })
    }

    /// log π_ref of the response tokens `[N, R]` (no graph).
    pub fn logp(&self, rows: &Rows, temperature: f64) -> Tensor {
        tch::no_grad(|| rows.score(&self.model, temperature, None).logp)
    }

    pub fn state(&self) -> NamedTensors {
        self.model.named_parameters()
    }

    /// Restore [`Reference::state`] read from checkpoint `dir`.
    pub fn load_state(&self, s: &NamedTensors, dir: &Path) -> Result<()> {
        copy_named(&self.model.named_parameters(), s, &dir.join(REFERENCE_FILE))
    }
}
