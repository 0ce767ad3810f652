//! Named model shapes: tiny random-init models for CPU tests and reproductions, and the released
//! Qwen3 shapes for planning (`harness inspect`, `harness plan`).
use super::config::{MoeConfig, Qwen3Config};
use crate::{Error, Result};

pub const PRESETS: &[&str] = &[
    "tiny-qwen3",
    "tiny-qwen3-moe",
    "qwen3-0.6b",
    "qwen3-1.7b",
    "qwen3-8b",
    "qwen3-30b-a3b",
];

/// Vocabulary of the tiny presets; matches `CharTokenizer::default()`.
pub const TINY_VOCAB: usize = 64;

#[allow(clippy::too_many_arguments)]
fn dense(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv: usize,
    head_dim: usize,
    inter: usize,
    tied: bool,
) -> Qwen3Config {
    Qwen3Config {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        head_dim,
        max_position_embeddings: 40960,
        rms_norm_eps: 1e-6,
        rope_theta: 1_000_000.0,
        tie_word_embeddings: tied,
        attention_bias: false,
        bos_token_id: None,
        eos_token_id: vec![],
        moe: None,
    }
}

/// Look up a preset by name.
pub fn preset(name: &str) -> Result<Qwen3Config> {
    let mut cfg = match name {
        // ~0.8 M parameters: the CPU bench and test model.
        "tiny-qwen3" => dense(TINY_VOCAB, 128, 4, 4, 2, 32, 384, true),
        "tiny-qwen3-moe" => {
            let mut c = dense(TINY_VOCAB, 128, 4, 4, 2, 32, 384, false);
            c.moe = Some(MoeConfig {
                num_experts: 8,
                num_experts_per_tok: 2,
                moe_intermediate_size: 96,
                norm_topk_prob: true,
                decoder_sparse_step: 1,
                mlp_only_layers: vec![],
                router_aux_loss_coef: 0.001,
            });
            c
        }
        "qwen3-0.6b" => dense(151936, 1024, 28, 16, 8, 128, 3072, true),
        "qwen3-1.7b" => dense(151936, 2048, 28, 16, 8, 128, 6144, true),
        "qwen3-8b" => dense(151936, 4096, 36, 32, 8, 128, 12288, false),
        "qwen3-30b-a3b" => {
            let mut c = dense(151936, 2048, 48, 32, 4, 128, 6144, false);
            c.moe = Some(MoeConfig {
                num_experts: 128,
                num_experts_per_tok: 8,
                moe_intermediate_size: 768,
                norm_topk_prob: true,
                decoder_sparse_step: 1,
                mlp_only_layers: vec![],
                router_aux_loss_coef: 0.001,
            });
            c
        }
        _ => return Err(Error::UnknownPreset(name.to_string(), PRESETS.join(", "))),
    };
    if name.starts_with("tiny") {
        cfg.max_position_embeddings = 512;
    } else {
        cfg.bos_token_id = Some(151643);
        cfg.eos_token_id = vec![151645];
    }
    cfg.validate()?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_shapes_have_published_sizes() {
        // Published totals: 0.6B (0.44B non-embedding), 1.7B, 8.2B, 30.5B total / 3.3B active.
        let billions = |n: u64| n as f64 / 1e9;
        let (t, _) = preset("qwen3-0.6b").unwrap().param_counts();
        assert!((billions(t) - 0.596).abs() < 0.01, "{t}");
        let (t, _) = preset("qwen3-8b").unwrap().param_counts();
        assert!((billions(t) - 8.19).abs() < 0.05, "{t}");
        let (t, a) = preset("qwen3-30b-a3b").unwrap().param_counts();
        assert!((billions(t) - 30.5).abs() < 0.2, "{t}");
        assert!((billions(a) - 3.3).abs() < 0.15, "{a}");
    }

    #[test]
    fn tiny_is_about_point_eight_million() {
        let (t, _) = preset("tiny-qwen3").unwrap().param_counts();
        assert!((700_000..900_000).contains(&t), "{t}");
    }

    #[test]
    fn unknown_preset_lists_known_ones() {
        let e = preset("qwen9").unwrap_err().to_string();
        assert!(e.contains("tiny-qwen3") && e.contains("qwen3-8b"), "{e}");
    }
}
