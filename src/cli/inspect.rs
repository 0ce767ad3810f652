//! `harness inspect`: config summary, parameter counts and memory estimates.
use super::{CliResult, Failure};
use anyhow::anyhow;
use harness::config::LoraConfig;
use harness::grid::plan::lora_params;
use harness::model::lora::LORA_TARGETS;
use harness::model::model_config;

/// Show a model's config, parameter count (total / active for MoE) and memory estimates.
#[derive(clap::Args)]
pub struct Args {
    /// A local Hugging Face model directory, a Hugging Face Hub id in the local cache
    /// (Qwen/Qwen3-8B), or a preset (tiny-qwen3, tiny-qwen3-moe, qwen3-0.6b, qwen3-1.7b, qwen3-8b,
    /// qwen3-30b-a3b).
    model: String,
    /// LoRA rank used for the LoRA memory estimate.
    #[arg(long, default_value_t = 64)]
    lora_rank: u64,
    /// Projections that get LoRA adapters, comma-separated (default: a run's default,
    /// q_proj,k_proj,v_proj,o_proj; also gate_proj, up_proj, down_proj).
    #[arg(long, value_delimiter = ',')]
    lora_targets: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn gib(bytes: f64) -> String {
    let g = bytes / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
    }
}

/// The LoRA targets a run uses when `model.lora.targets` is not given.
fn default_targets() -> Vec<String> {
    // Parsed, not copied, so it cannot drift from the run config's default.
    serde_yaml::from_str::<LoraConfig>("rank: 1")
        .map(|l| l.targets)
        .unwrap_or_default()
}

pub fn run(a: Args) -> CliResult {
    let targets = if a.lora_targets.is_empty() {
        default_targets()
    } else {
        a.lora_targets.clone()
    };
    if let Some(bad) = targets.iter().find(|t| !LORA_TARGETS.contains(&t.as_str())) {
        return Err(Failure::bad_input(anyhow!(
            "--lora-targets: unknown projection `{bad}` (one of {})",
            LORA_TARGETS.join(", ")
        )));
    }
    let cfg = model_config(&a.model)?;
    let (total, active) = cfg.param_counts();
    let lora = lora_params(&cfg, a.lora_rank, &targets);
    // bf16 weights; full fine-tuning: bf16 weights + fp32 master + two fp32 moments + bf16 grads.
    let weights_bf16 = total as f64 * 2.0;
    let weights_fp32 = total as f64 * 4.0;
    let full_ft = total as f64 * 16.0;
    let lora_mem = weights_bf16 + lora as f64 * 16.0;
    if a.json {
        let v = serde_json::json!({
            "model": a.model,
            "config": cfg,
            "params_total": total,
            "params_active": active,
            "memory_bytes": {
                "weights_bf16": weights_bf16, "weights_fp32": weights_fp32,
                "full_finetune_adamw": full_ft, "lora": lora_mem,
            },
            "lora_rank": a.lora_rank, "lora_targets": targets, "lora_params": lora,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return Ok(());
    }
    let kind = if cfg.is_moe() {
        "Qwen3-MoE"
    } else {
        "Qwen3 dense"
    };
    println!("model        {} ({kind})", a.model);
    println!(
        "shape        hidden {} · layers {} · heads {}/{} (q/kv) · head_dim {} · vocab {}",
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
        cfg.vocab_size
    );
    match &cfg.moe {
        Some(m) => println!(
            "mlp          MoE: {} experts, top-{}, expert width {}{}",
            m.num_experts,
            m.num_experts_per_tok,
            m.moe_intermediate_size,
            if m.norm_topk_prob {
                ", renormalised"
            } else {
                ""
            }
        ),
        None => println!(
            "mlp          SwiGLU, intermediate {}",
            cfg.intermediate_size
        ),
    }
    println!(
        "embeddings   {}; rope_theta {}; rms_norm_eps {}",
        if cfg.tie_word_embeddings {
            "tied"
        } else {
            "untied"
        },
        cfg.rope_theta,
        cfg.rms_norm_eps
    );
    if cfg.is_moe() {
        println!("parameters   {total} total, {active} active per token");
    } else {
        println!("parameters   {total}");
    }
    println!(
        "memory       weights bf16 {} · fp32 {}",
        gib(weights_bf16),
        gib(weights_fp32)
    );
    println!(
        "             full fine-tuning (AdamW, bf16 + fp32 master/moments, 16 B/param) {}",
        gib(full_ft)
    );
    println!(
        "             LoRA r={} on {} ({lora} trainable params) on a frozen bf16 base {}",
        a.lora_rank,
        targets.join(","),
        gib(lora_mem)
    );
    println!("             (activations not included: see `harness plan`)");
    Ok(())
}
