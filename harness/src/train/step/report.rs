//! Stage 4, report: the rest of the step's metrics row — rewards, lengths, entropy, gradient norm,
//! learning rate, timings and throughput.
use super::collect::Collected;
use super::update::Update;
use crate::objective::Metrics;
use crate::rollout::FinishReason;
use std::time::Instant;
use tch::Kind;

/// When the step started and how long its stages took (seconds).
pub struct Timings {
    pub start: Instant,
    pub old_log_prob: f64,
}

/// The report's metrics of a step whose update finished.
pub fn row(c: &Collected, entropy: f64, update: &Update, lr: f64, t: &Timings) -> Metrics {
    let ro = &c.rollouts;
    let rewards: Vec<f64> = c.rewards.iter().map(|&x| x as f64).collect();
    let lens: Vec<f64> = ro.lengths.iter().map(|&l| l as f64).collect();
    let prompt_tokens = ro.prompt_mask.sum(Kind::Int64).int64_value(&[]) as f64;
    let tokens = lens.iter().sum::<f64>() + prompt_tokens;
    let nf = rewards.len().max(1) as f64;
    let truncated = ro.finish.iter().filter(|f| **f == FinishReason::Length);
    let total = t.start.elapsed().as_secs_f64();
    [
        ("critic/score/mean", rewards.iter().sum::<f64>() / nf),
        (
            "critic/score/max",
            rewards.iter().fold(f64::MIN, |a, &b| a.max(b)),
        ),
        (
            "critic/score/min",
            rewards.iter().fold(f64::MAX, |a, &b| a.min(b)),
        ),
        ("response_length/mean", lens.iter().sum::<f64>() / nf),
        ("response_length/clip_ratio", truncated.count() as f64 / nf),
        ("actor/entropy", entropy),
        ("actor/grad_norm", update.grad_norm),
        ("actor/lr", lr),
        ("timing_s/gen", c.gen_s),
        ("timing_s/old_log_prob", t.old_log_prob),
        ("timing_s/update_actor", update.seconds),
        ("timing_s/step", total),
        ("perf/total_num_tokens", tokens),
        ("perf/throughput", tokens / total.max(1e-9)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
