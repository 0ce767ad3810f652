//! Checkpoints: everything a run needs to continue bitwise identically (on CPU): trainer weights,
//! AdamW moments, the engine's weights and pending (stale) snapshots, the value model and reference
//! policy when present, the algorithm's state (DCMDP's λ) and the step. Randomness needs no saving:
//! each step reseeds from `(seed, step)`. Written to a temp dir and renamed, so a crash never leaves
//! a half-written checkpoint; older ones are removed after the new one lands.
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckpointMeta {
    pub step: usize,
    pub seed: i64,
    pub adam_t: i64,
    pub value_adam_t: i64,
    pub algorithm_state: serde_json::Value,
    pub pending: usize,
}

pub fn dir_for(root: &Path, step: usize) -> PathBuf {
    root.join("checkpoints").join(format!("step-{step:06}"))
}

/// Latest complete checkpoint under `root/checkpoints`.
pub fn latest(root: &Path) -> Option<(usize, PathBuf)> {
    let dir = root.join("checkpoints");
    let mut best: Option<(usize, PathBuf)> = None;
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        let step = p
            .file_name()?
            .to_str()?
            .strip_prefix("step-")
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(step) = step {
            if p.join("meta.json").exists() && best.as_ref().is_none_or(|(s, _)| step > *s) {
                best = Some((step, p));
            }
        }
    }
    best
}

/// Write `tensors` and `meta` as checkpoint `meta.step`, atomically; keep only this one.
pub fn save(root: &Path, tensors: &[(String, Tensor)], meta: &CheckpointMeta) -> Result<PathBuf> {
    let final_dir = dir_for(root, meta.step);
    let tmp = root
        .join("checkpoints")
        .join(format!(".tmp-step-{:06}", meta.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    Tensor::save_multi(tensors, tmp.join("tensors.ot"))?;
    let mp = tmp.join("meta.json");
    std::fs::write(&mp, serde_json::to_string_pretty(meta).unwrap())
        .map_err(|e| Error::io(&mp, e))?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    if let Ok(entries) = std::fs::read_dir(root.join("checkpoints")) {
        for e in entries.flatten() {
            let p = e.path();
            if p != final_dir
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
            {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
    Ok(final_dir)
}

pub fn load(dir: &Path) -> Result<(Vec<(String, Tensor)>, CheckpointMeta)> {
    let mp = dir.join("meta.json");
    let text = std::fs::read_to_string(&mp).map_err(|e| Error::io(&mp, e))?;
    let meta = serde_json::from_str(&text).map_err(|e| Error::json(mp, e))?;
    let tensors = Tensor::load_multi(dir.join("tensors.ot"))?;
    Ok((tensors, meta))
}
