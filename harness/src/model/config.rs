//! `Qwen3Config` from a Hugging Face `config.json` (dense `qwen3` and `qwen3_moe`, both the
//! transformers 4.x and 5.x spellings). Unknown fields are ignored; missing required ones are an error.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// MoE part of the config; absent for dense models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoeConfig {
    pub num_experts: usize,
    pub num_experts_per_tok: usize,
    pub moe_intermediate_size: usize,
    pub norm_topk_prob: bool,
    pub decoder_sparse_step: usize,
    pub mlp_only_layers: Vec<usize>,
    pub router_aux_loss_coef: f64,
}

/// Validated model configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub bos_token_id: Option<i64>,
    pub eos_token_id: Vec<i64>,
    pub moe: Option<MoeConfig>,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(i64),
    Many(Vec<i64>),
}

/// What `config.json` says, as written.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    bos_token_id: Option<i64>,
    eos_token_id: Option<OneOrMany>,
    num_experts: Option<usize>,
    num_local_experts: Option<usize>,
    num_experts_per_tok: Option<usize>,
    moe_intermediate_size: Option<usize>,
    norm_topk_prob: Option<bool>,
    decoder_sparse_step: Option<usize>,
    mlp_only_layers: Option<Vec<usize>>,
    router_aux_loss_coef: Option<f64>,
}

fn required<T>(v: Option<T>, name: &str, missing: &mut Vec<String>) -> Option<T> {
    if v.is_none() {
        missing.push(name.to_string());
    }
    v
}

impl Qwen3Config {
    /// Read and validate `config.json` (the file itself, or a model directory holding it).
    pub fn from_file(path: &Path) -> Result<Self> {
        let path = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_json_str(&text).map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
            e => e,
        })
    }

    pub fn from_json_str(text: &str) -> Result<Self> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json: {e}")))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Self> {
        if let Some(mt) = &raw.model_type {
            if !matches!(mt.as_str(), "qwen3" | "qwen3_moe") {
                return Err(Error::Config(format!(
                    "model_type `{mt}` is not supported (expected qwen3 or qwen3_moe)"
                )));
            }
        }
        let is_moe = raw.model_type.as_deref() == Some("qwen3_moe")
            || raw.num_experts.is_some()
            || raw.num_local_experts.is_some();
        let mut missing = Vec::new();
        let vocab_size = required(raw.vocab_size, "vocab_size", &mut missing);
        let hidden_size = required(raw.hidden_size, "hidden_size", &mut missing);
        let num_hidden_layers = required(raw.num_hidden_layers, "num_hidden_layers", &mut missing);
        let num_attention_heads =
            required(raw.num_attention_heads, "num_attention_heads", &mut missing);
        let intermediate_size = if is_moe {
            raw.intermediate_size
        } else {
            required(raw.intermediate_size, "intermediate_size", &mut missing)
        };
        let moe = if is_moe {
            let num_experts = required(
                raw.num_experts.or(raw.num_local_experts),
                "num_experts (or num_local_experts)",
                &mut missing,
            );
            let top_k = required(raw.num_experts_per_tok, "num_experts_per_tok", &mut missing);
            let width = required(
                raw.moe_intermediate_size,
                "moe_intermediate_size",
                &mut missing,
            );
            match (num_experts, top_k, width) {
                (Some(num_experts), Some(num_experts_per_tok), Some(moe_intermediate_size)) => {
                    Some(MoeConfig {
                        num_experts,
                        num_experts_per_tok,
                        moe_intermediate_size,
                        norm_topk_prob: raw.norm_topk_prob.unwrap_or(false),
                        decoder_sparse_step: raw.decoder_sparse_step.unwrap_or(1),
                        mlp_only_layers: raw.mlp_only_layers.unwrap_or_default(),
                        router_aux_loss_coef: raw.router_aux_loss_coef.unwrap_or(0.001),
                    })
                }
                _ => None,
            }
        } else {
            None
        };
        if !missing.is_empty() {
            return Err(Error::Config(format!(
                "missing required field(s): {}",
                missing.join(", ")
            )));
        }
        let (hidden_size, num_attention_heads) =
            (hidden_size.unwrap(), num_attention_heads.unwrap());
        let rope_theta = raw
            .rope_theta
            .or(raw.rope_parameters.and_then(|r| r.rope_theta))
            .unwrap_or(1_000_000.0);
        let cfg = Qwen3Config {
            vocab_size: vocab_size.unwrap(),
            hidden_size,
            intermediate_size: intermediate_size.unwrap_or(0),
            num_hidden_layers: num_hidden_layers.unwrap(),
            num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(num_attention_heads),
            head_dim: raw
                .head_dim
                .unwrap_or(hidden_size / num_attention_heads.max(1)),
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(32768),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: raw.attention_bias.unwrap_or(false),
            bos_token_id: raw.bos_token_id,
            eos_token_id: match raw.eos_token_id {
                None => vec![],
                Some(OneOrMany::One(x)) => vec![x],
                Some(OneOrMany::Many(v)) => v,
            },
            moe,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Cross-field checks; every constructor goes through this.
    pub fn validate(&self) -> Result<()> {
        let mut errs = Vec::new();
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                errs.push(format!("{name} must be > 0"));
            }
        }
        if self.num_key_value_heads > 0
            && !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            errs.push(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            errs.push(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            ));
        }
        if self.attention_bias {
            errs.push("attention_bias = true is not supported (Qwen3 has none)".into());
        }
        if let Some(m) = &self.moe {
            if m.num_experts_per_tok == 0 || m.num_experts_per_tok > m.num_experts {
                errs.push(format!(
                    "num_experts_per_tok ({}) must be in 1..=num_experts ({})",
                    m.num_experts_per_tok, m.num_experts
                ));
            }
            if m.decoder_sparse_step == 0 {
                errs.push("decoder_sparse_step must be > 0".into());
            }
            let dense_layers_exist = (0..self.num_hidden_layers).any(|l| !self.is_sparse_layer(l));
            if dense_layers_exist && self.intermediate_size == 0 {
                errs.push("intermediate_size is required when some layers are dense".into());
            }
        } else if self.intermediate_size == 0 {
            errs.push("intermediate_size must be > 0".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(errs.join("; ")))
        }
    }

    pub fn is_moe(&self) -> bool {
        self.moe.is_some()
    }

    /// Whether layer `l` uses the sparse MoE block (HF's rule).
    pub fn is_sparse_layer(&self, l: usize) -> bool {
        match &self.moe {
            None => false,
            Some(m) => {
                !m.mlp_only_layers.contains(&l)
                    && m.num_experts > 0
                    && (l + 1).is_multiple_of(m.decoder_sparse_step)
            }
        }
    }

    /// HF `config.json` as transformers 4.x writes it (also read by 5.x).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "architectures": [if self.is_moe() { "Qwen3MoeForCausalLM" } else { "Qwen3ForCausalLM" }],
            "model_type": if self.is_moe() { "qwen3_moe" } else { "qwen3" },
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": null,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": false,
            "attention_dropout": 0.0,
            "hidden_act": "silu",
            "use_cache": true,
            "use_sliding_window": false,
            "torch_dtype": "float32",
        });
        let obj = v.as_object_mut().unwrap();
        if let Some(b) = self.bos_token_id {
            obj.insert("bos_token_id".into(), b.into());
        }
        match self.eos_token_id.as_slice() {
            [] => {}
            [one] => {
                obj.insert("eos_token_id".into(), (*one).into());
            }
            many => {
                obj.insert("eos_token_id".into(), many.to_vec().into());
            }
        }
        if let Some(m) = &self.moe {
            obj.insert("num_experts".into(), m.num_experts.into());
            obj.insert("num_experts_per_tok".into(), m.num_experts_per_tok.into());
            obj.insert(
                "moe_intermediate_size".into(),
                m.moe_intermediate_size.into(),
            );
            obj.insert("norm_topk_prob".into(), m.norm_topk_prob.into());
            obj.insert("decoder_sparse_step".into(), m.decoder_sparse_step.into());
            obj.insert("mlp_only_layers".into(), m.mlp_only_layers.clone().into());
            obj.insert("router_aux_loss_coef".into(), m.router_aux_loss_coef.into());
            obj.insert("output_router_logits".into(), false.into());
        }
        v
    }

    /// Parameter counts: (total, active per token). Equal for dense models.
    pub fn param_counts(&self) -> (u64, u64) {
        let h = self.hidden_size as u64;
        let hd = self.head_dim as u64;
        let attn = h * hd * (self.num_attention_heads as u64) * 2
            + h * hd * (self.num_key_value_heads as u64) * 2
            + 2 * hd;
        let norms = 2 * h;
        let mut total = 0u64;
        let mut active = 0u64;
        for l in 0..self.num_hidden_layers {
            let (mlp_total, mlp_active) = match (&self.moe, self.is_sparse_layer(l)) {
                (Some(m), true) => {
                    let expert = 3 * h * m.moe_intermediate_size as u64;
                    let router = h * m.num_experts as u64;
                    (
                        expert * m.num_experts as u64 + router,
                        expert * m.num_experts_per_tok as u64 + router,
                    )
                }
                _ => {
                    let d = 3 * h * self.intermediate_size as u64;
                    (d, d)
                }
            };
            total += attn + norms + mlp_total;
            active += attn + norms + mlp_active;
        }
        let embed = self.vocab_size as u64 * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        total += embed + head + h;
        active += embed + head + h;
        (total, active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_spellings() {
        let v4 = r#"{"model_type":"qwen3_moe","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
            "num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,"rope_theta":10000.0,
            "num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":6,"norm_topk_prob":true,
            "some_future_field":{"x":1}}"#;
        let v5 = r#"{"model_type":"qwen3_moe","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
            "num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,
            "rope_parameters":{"rope_theta":10000.0,"rope_type":"default"},
            "num_local_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":6,"norm_topk_prob":true}"#;
        let a = Qwen3Config::from_json_str(v4).unwrap();
        let b = Qwen3Config::from_json_str(v5).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 10000.0);
        assert_eq!(a.moe.as_ref().unwrap().num_experts, 4);
    }

    #[test]
    fn missing_required_fields_are_named() {
        let err = Qwen3Config::from_json_str(r#"{"model_type":"qwen3","vocab_size":10}"#)
            .unwrap_err()
            .to_string();
        for f in [
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
        ] {
            assert!(err.contains(f), "{err} should name {f}");
        }
        assert!(!err.contains("vocab_size"));
    }

    #[test]
    fn rejects_bad_gqa() {
        let err = Qwen3Config::from_json_str(
            r#"{"vocab_size":10,"hidden_size":12,"num_hidden_layers":1,"intermediate_size":4,
            "num_attention_heads":3,"num_key_value_heads":2,"head_dim":4}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("multiple of num_key_value_heads"), "{err}");
    }

    #[test]
    fn roundtrips_through_hf_json() {
        let cfg = crate::model::presets::preset("tiny-qwen3-moe").unwrap();
        let back = Qwen3Config::from_json_str(&cfg.to_hf_json().to_string()).unwrap();
        assert_eq!(cfg, back);
    }
}
