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
        if r.step == a.warmup + a.steps {
            cpu_end = cpu_seconds(); // before the final evaluation and checkpoint
        }
        if r.step > a.warmup {
            for (t, k) in times.iter_mut().zip(keys) {
                t.push(r.metrics[k]);
            }
        }
    });
    let cpu_per_step = (cpu_end - cpu_start) / a.steps as f64;
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
