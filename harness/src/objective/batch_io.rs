//! The dumped-batch format: one training batch as a safetensors file, read by
//! `harness objective` (which evaluates an algorithm on it) and written by
//! [`DumpedBatch::save`] (for the trainer to dump any step's batch).
//!
//! Tensors, by name (`B` sequences, `T` response positions, `K` top-K entries); float tensors all
//! in one float kind (the evaluation runs in it), the mask in any numeric kind:
//!
//! | name | shape | required | meaning |
//! |---|---|---|---|
//! | `logp` | `[B, T]` | yes | log π_θ of the sampled tokens: the policy the loss is evaluated at |
//! | `old_logp` | `[B, T]` | yes | log π_old, the trainer's recomputation with the rollout's weights |
//! | `rollout_logp` | `[B, T]` | yes | log μ, what the inference engine reported |
//! | `mask` | `[B, T]` | yes | 1 on response tokens, 0 on padding |
//! | `advantages` | `[B, T]` | or `rewards` | Â per token (used as given) |
//! | `rewards` | `[B]` | or `advantages` | sequence rewards; the algorithm computes the advantages |
//! | `group_ids` | `[B]` int | with `rewards` (not PPO) | rows with equal ids answer one prompt |
//! | `ref_logp` | `[B, T]` | with a KL penalty | log π_ref |
//! | `values` | `[B, T]` | PPO | current value predictions (the loss's gradient is taken there) |
//! | `old_values` | `[B, T]` | PPO | the values at rollout time (GAE's baseline, the value clip's centre) |
//! | `returns` | `[B, T]` | PPO with `advantages` | value targets (with `rewards`: from GAE) |
//! | `rollout_topk_logp` | `[B, T, K]` | DPPO top-K | μ's top-K log-probs |
//! | `topk_logp` | `[B, T, K]` | DPPO top-K | log π_θ at the same token ids |
//!
//! Padding positions may hold anything (even NaN): every objective zeroes them first.
use crate::{Error, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// Every tensor name of the format.
pub const FIELDS: [&str; 13] = [
    "logp",
    "old_logp",
    "rollout_logp",
    "mask",
    "advantages",
    "rewards",
    "group_ids",
    "ref_logp",
    "values",
    "old_values",
    "returns",
    "rollout_topk_logp",
    "topk_logp",
];

/// One dumped batch (see the module docs for each field).
#[derive(Debug)]
pub struct DumpedBatch {
    pub logp: Tensor,
    pub old_logp: Tensor,
    pub rollout_logp: Tensor,
    pub mask: Tensor,
    pub advantages: Option<Tensor>,
    pub rewards: Option<Tensor>,
    pub group_ids: Option<Tensor>,
    pub ref_logp: Option<Tensor>,
    pub values: Option<Tensor>,
    pub old_values: Option<Tensor>,
    pub returns: Option<Tensor>,
    pub rollout_topk_logp: Option<Tensor>,
    pub topk_logp: Option<Tensor>,
}

impl DumpedBatch {
    /// A batch with the four required tensors.
    pub fn new(logp: &Tensor, old_logp: &Tensor, rollout_logp: &Tensor, mask: &Tensor) -> Self {
        DumpedBatch {
            logp: logp.detach().shallow_clone(),
            old_logp: old_logp.detach().shallow_clone(),
            rollout_logp: rollout_logp.detach().shallow_clone(),
            mask: mask.detach().shallow_clone(),
            advantages: None,
            rewards: None,
            group_ids: None,
            ref_logp: None,
            values: None,
            old_values: None,
            returns: None,
            rollout_topk_logp: None,
            topk_logp: None,
        }
    }

    fn named(&self) -> Vec<(&'static str, &Tensor)> {
        let optional = [
            ("advantages", &self.advantages),
            ("rewards", &self.rewards),
            ("group_ids", &self.group_ids),
            ("ref_logp", &self.ref_logp),
            ("values", &self.values),
            ("old_values", &self.old_values),
            ("returns", &self.returns),
            ("rollout_topk_logp", &self.rollout_topk_logp),
            ("topk_logp", &self.topk_logp),
        ];
        let mut out = vec![
            ("logp", &self.logp),
            ("old_logp", &self.old_logp),
            ("rollout_logp", &self.rollout_logp),
            ("mask", &self.mask),
        ];
        out.extend(
            optional
                .into_iter()
                .filter_map(|(n, t)| t.as_ref().map(|t| (n, t))),
        );
        out
    }

    /// Write the batch (on the CPU, contiguous) to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.check()?;
        save_tensors(path, &self.named())
    }

    /// Read and check a batch: unknown names, missing required tensors and shapes that do not
    /// fit are errors that name the tensor.
    pub fn load(path: &Path) -> Result<Self> {
        let mut found = load_tensors(path)?;
        if let Some((name, _)) = found.iter().find(|(n, _)| !FIELDS.contains(&n.as_str())) {
            return Err(Error::Input(format!(
                "{}: unknown tensor `{name}` (known: {})",
                path.display(),
                FIELDS.join(", ")
            )));
        }
        let mut take = |name: &str| {
            found
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| found.swap_remove(i).1)
        };
        let need = |t: Option<Tensor>, name: &str| {
            t.ok_or_else(|| {
                Error::Input(format!(
                    "{}: the batch has no `{name}` tensor",
                    path.display()
                ))
            })
        };
        let logp = need(take("logp"), "logp")?;
        let kind = logp.kind();
        let float = |t: Option<Tensor>| t.map(|t| t.to_kind(kind));
        let batch = DumpedBatch {
            old_logp: need(float(take("old_logp")), "old_logp")?,
            rollout_logp: need(float(take("rollout_logp")), "rollout_logp")?,
            mask: need(float(take("mask")), "mask")?,
            advantages: float(take("advantages")),
            rewards: float(take("rewards")),
            group_ids: take("group_ids").map(|t| t.to_kind(Kind::Int64)),
            ref_logp: float(take("ref_logp")),
            values: float(take("values")),
            old_values: float(take("old_values")),
            returns: float(take("returns")),
            rollout_topk_logp: float(take("rollout_topk_logp")),
            topk_logp: float(take("topk_logp")),
            logp,
        };
        batch
            .check()
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        Ok(batch)
    }

    /// Shapes agree, the float tensors share one float kind.
    pub fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Input(msg));
        if !matches!(
            self.logp.kind(),
            Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half
        ) {
            return bad(format!(
                "`logp` must be a float tensor, got {:?}",
                self.logp.kind()
            ));
        }
        let bt = self.logp.size();
        if bt.len() != 2 {
            return bad(format!("`logp` must be [B, T], got {bt:?}"));
        }
        let b = bt[0];
        for (name, t) in self.named() {
            let want: Vec<i64> = match name {
                "rewards" | "group_ids" => vec![b],
                "rollout_topk_logp" | "topk_logp" => {
                    let k = *t.size().last().unwrap_or(&0);
                    vec![bt[0], bt[1], k]
                }
                _ => bt.clone(),
            };
            if t.size() != want {
                return bad(format!(
                    "`{name}` must have shape {want:?}, got {:?}",
                    t.size()
                ));
            }
            let is_float = matches!(
                t.kind(),
                Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half
            );
            if name != "mask" && name != "group_ids" && (!is_float || t.kind() != self.logp.kind())
            {
                return bad(format!(
                    "`{name}` must be {:?} like `logp`, got {:?}",
                    self.logp.kind(),
                    t.kind()
                ));
            }
        }
        if let (Some(a), Some(b)) = (&self.rollout_topk_logp, &self.topk_logp) {
            if a.size() != b.size() {
                return bad("`rollout_topk_logp` and `topk_logp` differ in shape".into());
            }
        }
        Ok(())
    }
}

/// Write named tensors as safetensors (CPU, contiguous), atomically (a temporary file renamed).
pub fn save_tensors(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let host: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (*n, t.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    let tmp = path.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&host, &tmp)
        .map_err(|e| Error::Input(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Read every tensor of a safetensors file.
pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        return Err(Error::Input(format!("{}: no such file", path.display())));
    }
    Tensor::read_safetensors(path).map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.safetensors");
        let x = Tensor::from_slice(&[-0.5f32, -1.0, -0.2, -0.3]).view([2, 2]);
        let mut b = DumpedBatch::new(&x, &(&x - 0.1), &(&x + 0.1), &x.ones_like());
        b.rewards = Some(Tensor::from_slice(&[1.0f32, 0.0]));
        b.group_ids = Some(Tensor::from_slice(&[3i64, 3]));
        b.save(&path).unwrap();
        let back = DumpedBatch::load(&path).unwrap();
        assert!(back.logp.equal(&b.logp));
        assert!(back.rewards.unwrap().equal(b.rewards.as_ref().unwrap()));
        assert!(back.advantages.is_none());

        let bad = dir.path().join("bad.safetensors");
        let load_err = |tensors: &[(&str, &Tensor)]| {
            save_tensors(&bad, tensors).unwrap();
            DumpedBatch::load(&bad).unwrap_err().to_string()
        };
        let base = [
            ("logp", &x),
            ("old_logp", &x),
            ("rollout_logp", &x),
            ("mask", &x),
        ];
        let e = load_err(&[base[0], base[1], base[3]]);
        assert!(e.contains("`rollout_logp`"), "{e}");
        let e = load_err(&[&base[..], &[("vals", &x)]].concat());
        assert!(e.contains("unknown tensor `vals`"), "{e}");
        let short = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let e = load_err(&[&base[..], &[("rewards", &short)]].concat());
        assert!(e.contains("`rewards` must have shape [2]"), "{e}");
    }
}
