//! LoRA on a frozen base: `y = x Wᵀ + (α/r)·(x Aᵀ) Bᵀ` on the dense projections named by HF module
//! (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`). `A` `[r, in]` is
//! kaiming-uniform (bound `1/√in`, PEFT's default) drawn on the CPU from a dedicated seed, `B`
//! `[out, r]` is zero, so a fresh adapter leaves the model unchanged. Adapters are stored in fp32
//! (master weights; cast to the compute dtype on use); the base keeps its dtype and stops requiring
//! gradients.
//!
//! The inference engine at the base's precision without quantisation shares the frozen base
//! (`Qwen3::share_base`) and keeps its own adapters; otherwise it syncs the merged weights
//! `W + (α/r)·B A` (`merged_named_parameters`), so every engine knob (precision, quantisation,
//! staleness) applies to the effective weights.
//!
//! MoE: on sparse layers `gate_proj`/`up_proj`/`down_proj` put one adapter on each expert of the
//! stacked projection, stored stacked: `model.layers.N.mlp.experts.gate_proj.lora_A.weight`
//! `[E, r, in]` and `….lora_B.weight` `[E, out, r]` (names as the stacked base
//! `…mlp.experts.gate_proj` plus PEFT's suffixes). Each expert's `A` is drawn as a dense `A` is,
//! expert after expert, after the layer's attention adapters; dense projections draw what they drew
//! before expert adapters existed. Both expert paths (loop and grouped GEMM) apply them, and merging
//! gives `Wₑ + (α/r)·Bₑ Aₑ` per expert. A PEFT export unstacks them into PEFT's per-expert module
//! names (`…mlp.experts.{e}.gate_proj.lora_A.weight` `[r, in]`, the layout of Hub Qwen3-MoE
//! checkpoints); `load_lora` reads either layout.
use super::ops::{LoraAdapter, Proj};
use super::qwen3::{Mlp, Qwen3};
use super::qwen3_moe::EXPERT_PROJS;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Prefix PEFT puts before the model's own parameter names.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// Projections LoRA can adapt (Hugging Face module names).
pub const LORA_TARGETS: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// `model.lora` in a run config: adapters of rank `rank` and scale `alpha / rank` on `targets`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Required, ≥ 1 (defaulted to 0 only so config checks can report it with other problems).
    #[serde(default)]
    pub rank: i64,
    #[serde(default = "default_lora_alpha")]
    pub alpha: f64,
    /// Projection names (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`).
    #[serde(default = "default_lora_targets")]
    pub targets: Vec<String>,
}

pub fn default_lora_alpha() -> f64 {
    16.0
}

/// The attention projections (PEFT's usual choice for Qwen-style models).
pub fn default_lora_targets() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(String::from)
        .to_vec()
}

impl Qwen3 {
    /// Add fresh adapters (B = 0) to every projection named in `cfg.targets` (on MoE layers, to
    /// every expert of the stacked MLP projections) and freeze the base. `seed` drives `A`'s init
    /// (through libtorch's global RNG, on the CPU so that CPU and CUDA runs start from the same
    /// adapters).
    pub fn attach_lora(&mut self, cfg: &LoraConfig, seed: i64) -> Result<()> {
        if self.has_lora() {
            return Err(Error::Input("LoRA adapters are already attached".into()));
        }
        self.set_requires_grad(false);
        let device = self.device();
        tch::manual_seed(seed);
        let target = |module: &str| cfg.targets.iter().position(|t| t == module);
        let mut matched = vec![0usize; cfg.targets.len()];
        for layer in &mut self.layers {
            for (path, proj) in layer.projections_mut() {
                let Some(ti) = target(path.rsplit('.').next().unwrap()) else {
                    continue;
                };
                matched[ti] += 1;
                let (out_f, in_f) = proj.w.size2().expect("projection weight is 2-D");
                proj.lora = Some(fresh_adapter(cfg, &[], out_f, in_f, device));
            }
            if let Mlp::Sparse(m) = &mut layer.mlp {
                for (module, w, lora) in m.experts_mut() {
                    let Some(ti) = target(module) else { continue };
                    matched[ti] += 1;
                    let (e, out_f, in_f) = w.size3().expect("stacked experts are 3-D");
                    *lora = Some(fresh_adapter(cfg, &[e], out_f, in_f, device));
                }
            }
        }
        if let Some(i) = matched.iter().position(|&n| n == 0) {
            return Err(Error::Input(format!(
                "LoRA target `{}` matches no projection of this model",
                cfg.targets[i]
            )));
        }
        Ok(())
    }

    pub fn has_lora(&self) -> bool {
        self.layers.iter().any(|l| {
            l.projections().iter().any(|(_, p)| p.lora.is_some())
                || matches!(&l.mlp, Mlp::Sparse(m) if !m.adapters().is_empty())
        })
    }

    /// Adapter tensors, named as the model's own parameters are
    /// (`model.layers.0.self_attn.q_proj.lora_A.weight`; stacked experts'
    /// `model.layers.0.mlp.experts.gate_proj.lora_A.weight` `[E, r, in]`); they share storage with
    /// the model.
    pub fn lora_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![];
        let mut push = |p: String, a: &LoraAdapter| {
            out.push((format!("{p}.lora_A.weight"), a.a.shallow_clone()));
            out.push((format!("{p}.lora_B.weight"), a.b.shallow_clone()));
        };
        for (l, layer) in self.layers.iter().enumerate() {
            for (path, proj) in layer.projections() {
                if let Some(a) = &proj.lora {
                    push(format!("model.layers.{l}.{path}"), a);
                }
            }
            if let Mlp::Sparse(m) = &layer.mlp {
                for (module, a) in m.adapters() {
                    push(format!("model.layers.{l}.mlp.experts.{module}"), a);
                }
            }
        }
        out
    }

    /// What the optimizer updates: the adapters with LoRA, else every parameter.
    pub fn trainable_parameters(&self) -> Vec<Tensor> {
        if self.has_lora() {
            self.lora_parameters().into_iter().map(|(_, t)| t).collect()
        } else {
            self.parameters()
        }
    }

    /// What a checkpoint must hold to restore the trainable state: the adapters with LoRA, else
    /// the base parameters.
    pub fn trainable_named_parameters(&self) -> Vec<(String, Tensor)> {
        if self.has_lora() {
            self.lora_parameters()
        } else {
            self.named_parameters()
        }
    }

    /// `named_parameters` with adapters merged into their projections (fresh tensors there, shared
    /// storage elsewhere). Without LoRA this is `named_parameters`. Holds every merged projection
    /// at once: a sync streams them instead ([`Qwen3::for_each_merged`]).
    pub fn merged_named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut all = Vec::new();
        self.for_each_merged(|name, t| all.push((name.to_string(), t.shallow_clone())));
        all
    }

    /// `f` on each of [`Qwen3::merged_named_parameters`] in order, a merged tensor made just
    /// before its call and dropped after it: no more than one dense projection, or one MoE layer's
    /// stacked experts, is alive at a time.
    pub fn for_each_merged(&self, mut f: impl FnMut(&str, &Tensor)) {
        if !self.has_lora() {
            return self.named_parameters().iter().for_each(|(n, t)| f(n, t));
        }
        let mut adapted: HashMap<String, &Proj> = HashMap::new();
        let mut sparse: HashMap<String, usize> = HashMap::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for (path, proj) in layer.projections() {
                if proj.lora.is_some() {
                    adapted.insert(format!("model.layers.{l}.{path}.weight"), proj);
                }
            }
            if let Mlp::Sparse(_) = &layer.mlp {
                for n in EXPERT_PROJS {
                    sparse.insert(format!("model.layers.{l}.mlp.experts.{n}"), l);
                }
            }
        }
        // The MoE layer whose merged experts are held, and those experts.
        let mut experts: (Option<usize>, HashMap<String, Tensor>) = (None, HashMap::new());
        for (name, t) in self.named_parameters() {
            if let Some(&l) = sparse.get(&name) {
                if experts.0 != Some(l) {
                    let Mlp::Sparse(m) = &self.layers[l].mlp else {
                        unreachable!()
                    };
                    let merged = m.effective_experts().into_iter();
                    let merged = merged.map(|(n, t)| (format!("model.layers.{l}.mlp.{n}"), t));
                    experts = (Some(l), merged.collect());
                }
            }
            match (adapted.get(&name), experts.1.remove(&name)) {
                (Some(proj), _) => f(&name, &proj.effective()),
                (None, Some(merged)) => f(&name, &merged),
                (None, None) => f(&name, &t),
            }
        }
    }

    /// Copy adapter values from `named` (names as in `lora_parameters`, optionally with the PEFT
    /// prefix; stacked expert adapters also as PEFT's per-expert tensors); every adapter must be
    /// present with its shape.
    pub fn load_lora(&self, named: &HashMap<String, Tensor>) -> Result<()> {
        for (n, mut dst) in self.lora_parameters() {
            let src = lookup(named, &n)
                .or_else(|| stacked_from_experts(named, &n, dst.size()[0]))
                .ok_or_else(|| Error::Input(format!("adapter tensor `{n}` missing")))?;
            if src.size() != dst.size() {
                return Err(Error::Input(format!(
                    "adapter tensor `{n}`: shape {:?}, expected {:?}",
                    src.size(),
                    dst.size()
                )));
            }
            tch::no_grad(|| dst.copy_(&src));
        }
        Ok(())
    }

    /// Write a PEFT adapter directory: `adapter_model.safetensors` (fp32, names
    /// `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`; expert adapters unstacked
    /// to `….mlp.experts.{e}.gate_proj.lora_A.weight` `[r, in]`) and `adapter_config.json`.
    pub fn save_peft_adapter(&self, cfg: &LoraConfig, base_model: &str, dir: &Path) -> Result<()> {
        if !self.has_lora() {
            return Err(Error::Input(
                "the model has no LoRA adapters to export".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let named: Vec<(String, Tensor)> = unstack_experts(self.lora_parameters())
            .into_iter()
            .map(|(n, t)| (format!("{PEFT_PREFIX}{n}"), t))
            .collect();
        super::weights::save_safetensors(
            &dir.join("adapter_model.safetensors"),
            named,
            Kind::Float,
        )?;
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": cfg.rank,
            "lora_alpha": cfg.alpha,
            "lora_dropout": 0.0,
            "target_modules": cfg.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": false,
            "use_dora": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "modules_to_save": null,
        });
        let p = dir.join("adapter_config.json");
        std::fs::write(&p, serde_json::to_string_pretty(&config).unwrap())
            .map_err(|e| Error::io(&p, e))
    }
}

/// A fresh adapter (fp32, trainable) for a weight `[out, in]`, or one per expert with `stack` `[E]`:
/// `A` `[.., r, in]` kaiming-uniform drawn on the CPU, `B` `[.., out, r]` zero.
fn fresh_adapter(
    cfg: &LoraConfig,
    stack: &[i64],
    out_f: i64,
    in_f: i64,
    device: Device,
) -> LoraAdapter {
    let r = cfg.rank;
    let shape = |d0: i64, d1: i64| [stack, &[d0, d1]].concat();
    let bound = 1.0 / (in_f as f64).sqrt();
    let a = ((Tensor::rand(shape(r, in_f), (Kind::Float, Device::Cpu)) * 2.0 - 1.0) * bound)
        .to_device(device)
        .set_requires_grad(true);
    let b = Tensor::zeros(shape(out_f, r), (Kind::Float, device)).set_requires_grad(true);
    LoraAdapter {
        a,
        b,
        scale: cfg.alpha / r as f64,
    }
}

/// `named[n]`, or `named[PEFT_PREFIX + n]`.
fn lookup(named: &HashMap<String, Tensor>, n: &str) -> Option<Tensor> {
    named
        .get(n)
        .or_else(|| named.get(&format!("{PEFT_PREFIX}{n}")))
        .map(Tensor::shallow_clone)
}

/// Splits a stacked expert adapter's name (`….experts.gate_proj.lora_A.weight`) into the part
/// before the expert index and the part after it.
fn expert_name_parts(n: &str) -> Option<(&str, &str)> {
    let (prefix, rest) = n.rsplit_once(".experts.")?;
    (rest.split('.').count() == 3).then_some((prefix, rest))
}

/// A stacked expert adapter `n` assembled from PEFT's per-expert tensors, if all `e` are there.
fn stacked_from_experts(named: &HashMap<String, Tensor>, n: &str, e: i64) -> Option<Tensor> {
    let (prefix, rest) = expert_name_parts(n)?;
    let parts = (0..e)
        .map(|x| lookup(named, &format!("{prefix}.experts.{x}.{rest}")))
        .collect::<Option<Vec<_>>>()?;
    Some(Tensor::stack(&parts, 0))
}

/// Stacked expert adapters split into PEFT's per-expert names; other tensors unchanged.
fn unstack_experts(named: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let mut out = Vec::with_capacity(named.len());
    for (n, t) in named {
        match expert_name_parts(&n) {
            Some((prefix, rest)) => {
                for x in 0..t.size()[0] {
                    out.push((format!("{prefix}.experts.{x}.{rest}"), t.get(x)));
                }
            }
            None => out.push((n, t)),
        }
    }
    out
}
