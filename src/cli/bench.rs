//! `harness bench-step`: wall time of full GRPO steps on the tiny preset (the work the
//! `benches/compare_grpo_step.sh` comparison runs against PyTorch eager and TRL).
use super::CliResult;
use harness::config::RunConfig;
use std::sync::atomic::AtomicBool;

/// Time full GRPO steps on tiny-qwen3: 8 prompts × 8 samples, ≤ 8 new tokens with the KV cache,
/// π_old recompute, one PPO-clip update with AdamW. Prints JSON (median s/step, peak RSS).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Steps excluded from the median.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Model preset.
    #[arg(long, default_value = "tiny-qwen3")]
    model: String,
}

pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn run(a: Args) -> CliResult {
    tch::set_num_threads(a.threads);
    let yaml = format!(
        "model: {{ name: {} }}\ntask: {{ name: addition, difficulty: 2 }}\n\
         rollout: {{ prompts_per_step: 8, group_size: 8, max_new_tokens: 8 }}\n\
         algorithm: {{ name: grpo }}\ntrain: {{ steps: {} }}\n\
         eval: {{ prompts: 8 }}\ncheckpoint: {{ every: 0 }}\n",
        a.model,
        a.steps + a.warmup
    );
    let cfg: RunConfig = serde_yaml::from_str(&yaml)?;
    let tmp = std::env::temp_dir().join(format!("harness-bench-{}", std::process::id()));
    let mut times = Vec::new();
    let res = harness::train::run_training(&cfg, 0, &tmp, &AtomicBool::new(false), &mut |r| {
        if r.step > a.warmup {
            times.push(r.metrics["timing_s/step"]);
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
    res?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{}",
        serde_json::json!({"impl": "harness", "s_per_step": median, "peak_rss_mib": peak_rss_mib()})
    );
    Ok(())
}
