//! `harness bench-step`: wall time of full GRPO steps on the tiny preset (the work the
//! `benches/compare_grpo_step.sh` comparison runs against PyTorch eager and TRL).
use super::{CliResult, Failure};
use anyhow::anyhow;
use harness::config::RunConfig;
use harness::model::{model_config, presets::PRESETS};
use std::sync::atomic::AtomicBool;

/// Time full GRPO steps on tiny-qwen3: 8 prompts × 8 samples, ≤ 8 new tokens with the KV cache,
/// π_old recompute, one PPO-clip update with AdamW. Prints JSON (median s/step, peak RSS).
/// Runs on the CPU: released-size presets are refused (time those with `bench-train` on a GPU),
/// and so is a model directory whose full fine-tuning would not fit in available memory.
#[derive(clap::Args)]
pub struct Args {
    /// Timed steps (at least 1).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// Steps excluded from the median.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Model: a tiny preset (tiny-qwen3, tiny-qwen3-moe) or a model directory that fits in memory.
    #[arg(long, default_value = "tiny-qwen3")]
    model: String,
}

/// Bytes per parameter of a full fine-tuning step on the CPU: fp32 weights, gradients and two
/// AdamW moments (activations and the rollout copy come on top).
const BYTES_PER_PARAM: f64 = 16.0;

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? * 1024.0)
}

/// Refuse models this CPU bench cannot run: released-size presets, and anything whose training
/// state alone exceeds available memory.
fn check_model(model: &str) -> CliResult {
    let cfg = model_config(model)?;
    let (params, _) = cfg.param_counts();
    let need = params as f64 * BYTES_PER_PARAM;
    let gib = |b: f64| b / (1u64 << 30) as f64;
    if PRESETS.contains(&model) && !model.starts_with("tiny") {
        return Err(Failure::bad_input(anyhow!(
            "bench-step times full GRPO steps on the CPU with the tiny presets (tiny-qwen3, \
             tiny-qwen3-moe); `{model}` has {:.2}B parameters (≈ {:.0} GiB of training state): \
             time it with `harness bench-train --preset {model} --device cuda` on a GPU",
            params as f64 / 1e9,
            gib(need)
        )));
    }
    if let Some(avail) = available_memory().filter(|&a| need > a) {
        return Err(Failure::bad_input(anyhow!(
            "`{model}` has {params} parameters: full fine-tuning needs ≈ {:.1} GiB (16 B/param) \
             and {:.1} GiB is available",
            gib(need),
            gib(avail)
        )));
    }
    Ok(())
}

/// User + system CPU seconds of this process so far (from `/proc/self/stat`, 100 Hz ticks): with
/// one thread it measures the work even on a busy machine, where wall time does not.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(f64::NAN)
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
    check_model(&a.model)?;
    let steps = a.steps as usize;
    tch::set_num_threads(a.threads);
    let yaml = format!(
        "model: {{ name: {} }}\ntask: {{ name: addition, difficulty: 2 }}\n\
         rollout: {{ prompts_per_step: 8, group_size: 8, max_new_tokens: 8 }}\n\
         algorithm: {{ name: grpo }}\ntrain: {{ steps: {} }}\n\
         eval: {{ prompts: 8 }}\ncheckpoint: {{ every: 0 }}\n",
        a.model,
        steps + a.warmup
    );
    let cfg: RunConfig = serde_yaml::from_str(&yaml)?;
    let tmp = std::env::temp_dir().join(format!("harness-bench-{}", std::process::id()));
    // Per timed step: total, generation, π_old recompute, update.
    let keys = [
        "timing_s/step",
        "timing_s/gen",
        "timing_s/old_log_prob",
        "timing_s/update_actor",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    let (mut cpu_start, mut cpu_end) = (f64::NAN, f64::NAN);
    let res = harness::train::run_training(&cfg, 0, &tmp, &AtomicBool::new(false), &mut |r| {
        if r.step == a.warmup {
            cpu_start = cpu_seconds();
        }
        if r.step == a.warmup + steps {
            cpu_end = cpu_seconds(); // before the final evaluation and checkpoint
        }
        if r.step > a.warmup {
            for (t, k) in times.iter_mut().zip(keys) {
                t.push(r.metrics[k]);
            }
        }
    });
    let cpu_per_step = (cpu_end - cpu_start) / steps as f64;
    let _ = std::fs::remove_dir_all(&tmp);
    res?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [step, gen, old, update]: [f64; 4] = std::array::from_fn(|i| median(times[i].clone()));
    println!(
        "{}",
        serde_json::json!({
            "impl": "harness", "s_per_step": step, "peak_rss_mib": peak_rss_mib(),
            "gen_s": gen, "old_logprob_s": old, "update_s": update, "cpu_s_per_step": cpu_per_step,
        })
    );
    Ok(())
}
