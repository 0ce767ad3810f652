//! The trainer's policy as a run declares it (weights, precision, LoRA, MoE path), and exporting a
//! run's trained policy: a PEFT adapter directory and/or a merged Hugging Face directory.
use super::checkpoint;
use crate::config::RunConfig;
use crate::model::{load_model, save_hf_dir, Qwen3};
use crate::rollout::discrepancy::precision_kind;
use crate::task::Rng;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Stream of the LoRA `A` init (disjoint from the step streams).
const LORA_STREAM: u64 = 0x4c6f_5241;

/// Build the policy for `cfg` and run `seed`. Deterministic, so a resumed run and `export` rebuild
/// the same base (and fresh adapters) before loading a checkpoint into it.
///
/// Precision: full fine-tuning keeps fp32 master weights (AdamW's moments are fp32 too) and computes
/// in `train.precision`, each weight cast on use; with LoRA the frozen base is stored in
/// `train.precision` and the adapters in fp32. Log-probs and losses are fp32 either way.
pub fn build_policy(cfg: &RunConfig, seed: i64, device: Device) -> Result<Qwen3> {
    let compute = precision_kind(cfg.train.precision);
    let lora = cfg.model.lora.as_ref();
    let storage = if lora.is_some() { compute } else { Kind::Float };
    let mut policy = load_model(
        &cfg.model.name,
        storage,
        device,
        cfg.model.init_seed.unwrap_or(seed),
    )?;
    policy.set_compute_kind(compute);
    policy.moe_impl = cfg.model.moe_impl;
    match lora {
        Some(l) => {
            let s = (Rng::new(seed, LORA_STREAM).next_u64() >> 1) as i64;
            policy.attach_lora(l, s)?;
        }
        None => policy.set_requires_grad(true),
    }
    Ok(policy)
}

/// Rebuild the policy of the run in `run_dir` (its `config.yaml` and newest checkpoint that passes
/// its checks) on the CPU.
pub fn load_run_policy(run_dir: &Path) -> Result<(RunConfig, Qwen3)> {
    let cfg = crate::config::load_run_config(&run_dir.join("config.yaml"))?;
    let (ck, state, rejected) = checkpoint::load_latest(run_dir)?.ok_or_else(|| {
        Error::Input(format!(
            "no checkpoint under {}",
            run_dir.join("checkpoints").display()
        ))
    })?;
    for r in rejected {
        eprintln!("warning: skipped {}: {}", r.dir.display(), r.error);
    }
    let policy = build_policy(&cfg, state.seed, Device::Cpu)?;
    if policy.has_lora() {
        let saved: HashMap<String, Tensor> = state.policy.into_iter().collect();
        policy.load_lora(&saved)?;
    } else {
        let file = ck.join(checkpoint::POLICY_FILE);
        checkpoint::copy_named(&policy.named_parameters(), &state.policy, &file)?;
    }
    Ok((cfg, policy))
}

/// Export the run in `run_dir`: `adapter` gets a PEFT adapter directory (LoRA runs only), `merged`
/// a Hugging Face model directory with the adapters merged in, stored as `kind`.
pub fn export_run(
    run_dir: &Path,
    adapter: Option<&Path>,
    merged: Option<&Path>,
    kind: Kind,
) -> Result<()> {
    let (cfg, policy) = load_run_policy(run_dir)?;
    if let Some(dir) = adapter {
        let l = cfg.model.lora.as_ref().ok_or_else(|| {
            Error::Input("this run has no `model.lora`: export it with --merged".into())
        })?;
        policy.save_peft_adapter(l, &cfg.model.name, dir)?;
    }
    if let Some(dir) = merged {
        save_hf_dir(
            &policy.cfg,
            policy.merged_named_parameters(),
            dir,
            kind,
            5 << 30,
        )?;
    }
    Ok(())
}
