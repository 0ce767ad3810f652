//! Loop paths end to end on CPU: PPO (critic in the loop and in checkpoints), a KL-reference run,
//! resume with a stale engine, several epochs of several mini-batches, and the MoE router's
//! precision knob. Resumes are compared bit for bit with uninterrupted runs.
use super::checkpoint;
use super::tests::{assert_resume_is_exact, fast_config, metrics_of, train};
use super::*;
use crate::config::{Precision, RouterKnob};
use std::path::Path;
use tch::Kind;

fn f(row: &serde_json::Map<String, serde_json::Value>, k: &str) -> f64 {
    row.get(k)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("no `{k}` in {row:?}"))
}

fn newest(dir: &Path) -> checkpoint::TrainerState {
    let (_, ck) = checkpoint::latest(dir).unwrap();
    checkpoint::load(&ck).unwrap()
}

#[test]
fn ppo_trains_its_critic_checkpoints_it_and_resumes_exactly() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: ppo }", 4);
    let (full, _) = assert_resume_is_exact(&cfg, 11, 3);
    let rows = metrics_of(full.path());
    for r in &rows {
        assert!(f(r, "critic/vf_loss").is_finite());
    }
    // The critic learns: its predictions leave the zero-initialised head's 0.
    assert!(
        rows.iter().any(|r| f(r, "critic/vpred_mean") != 0.0),
        "{rows:?}"
    );
    let s = newest(full.path());
    let critic = s.critic.expect("the checkpoint holds the critic");
    assert_eq!(
        critic.optim.t,
        4 * 2,
        "one critic AdamW step per mini-batch"
    );
    let head = &critic
        .params
        .iter()
        .find(|(n, _)| n == "value_head.weight")
        .unwrap()
        .1;
    assert!(head.abs().sum(Kind::Double).double_value(&[]) > 0.0);
    assert!(s.reference.is_none());
}

#[test]
fn kl_reference_run_keeps_its_reference_and_resumes_exactly() {
    let _rng = crate::rng_lock();
    // The reference is the policy after SFT: resume must restore it, not rebuild it from the
    // (un-warm-started) preset.
    let cfg = fast_config("{ name: grpo, kl: { coef: 0.05, estimator: k3 } }", 4);
    let (full, _) = assert_resume_is_exact(&cfg, 12, 3);
    let rows = metrics_of(full.path());
    // π = π_ref only until the first update.
    assert!(
        rows[1..].iter().all(|r| f(r, "actor/kl_loss") > 0.0),
        "{rows:?}"
    );
    let s = newest(full.path());
    assert!(s.reference.is_some() && s.critic.is_none());
}

#[test]
fn stale_engine_resumes_bitwise() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: grpo }", 5)
        .edit(|c| {
            c.rollout.engine.staleness = 2;
        })
        .unwrap();
    let (full, _) = assert_resume_is_exact(&cfg, 13, 3);
    let s = newest(full.path());
    assert_eq!(s.engine.pending.len(), 2, "two snapshots not yet visible");
    assert!(s.engine.weights.is_some());
    // A lagging engine samples from older weights than π_old's.
    let rows = metrics_of(full.path());
    assert!(f(&rows[4], "rollout_corr/abs_prob_diff") > 1e-4, "{rows:?}");
}

#[test]
fn several_epochs_of_several_mini_batches() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: grpo }", 3)
        .edit(|c| {
            c.train.ppo_epochs = 2;
            c.train.mini_batches = 4;
        })
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(train(&cfg, 14, tmp.path()).state, RunState::Done);
    assert_eq!(newest(tmp.path()).optim.t, 3 * 2 * 4);
    let rows = metrics_of(tmp.path());
    // After the first mini-batch the policy has moved away from π_old.
    assert!(rows.iter().any(|r| f(r, "actor/ppo_kl") != 0.0), "{rows:?}");
}

#[test]
fn router_precision_knob_moves_the_moe_engine_off_the_trainer() {
    let _rng = crate::rng_lock();
    let run = |precision: Option<Precision>| {
        let cfg = fast_config("{ name: grpo }", 1)
            .edit(|c| {
                c.model.name = "tiny-qwen3-moe".into();
                c.task.sft = None;
                c.rollout.engine.router = RouterKnob {
                    noise_std: 0.0,
                    precision,
                };
            })
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(train(&cfg, 15, tmp.path()).state, RunState::Done);
        metrics_of(tmp.path()).remove(0)
    };
    let exact = run(None);
    let bf16 = run(Some(Precision::Bf16));
    // An fp32 engine differs from the trainer only by summation order (KV cache vs full
    // forward). A bf16 router rounds the routing weights: on this random-init preset its logits
    // are small, so the rounding moves every MoE layer's mix (≈100× the fp32 noise) and flips
    // the chosen experts of at most a few tokens (0.8 % measured).
    let (a, b) = (
        f(&exact, "rollout_corr/abs_prob_diff"),
        f(&bf16, "rollout_corr/abs_prob_diff"),
    );
    assert!(a < 1e-7, "fp32 router: {exact:?}");
    assert!(b > 20.0 * a && b > 2e-8, "bf16 router {b} vs fp32 {a}");
    assert_eq!(f(&exact, "rollout_corr/router_mismatch"), 0.0, "{exact:?}");
    assert!(f(&bf16, "rollout_corr/router_mismatch") < 0.05, "{bf16:?}");
}

/// A quantised, lagging engine keeps 1-byte weights and their scales in its checkpoint and
/// resumes bit for bit.
#[test]
fn quantised_stale_engine_resumes_bitwise_from_one_byte_weights() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: grpo }", 4)
        .edit(|c| {
            c.rollout.engine.precision = Precision::Bf16;
            c.rollout.engine.weight_quant = crate::config::WeightQuant::Fp8E4m3;
            c.rollout.engine.quant_scale = crate::config::QuantScale::PerChannel;
            c.rollout.engine.staleness = 1;
        })
        .unwrap();
    let (full, _) = assert_resume_is_exact(&cfg, 15, 2);
    let s = newest(full.path());
    let w = s
        .engine
        .weights
        .expect("the engine's weights are checkpointed");
    let kind = |name: &str| w.iter().find(|(n, _)| n == name).unwrap().1.kind();
    assert_eq!(
        kind("model.layers.0.self_attn.q_proj.weight"),
        Kind::Float8e4m3fn
    );
    assert_eq!(
        kind("model.layers.0.self_attn.q_proj.weight_scale"),
        Kind::Float
    );
    assert_eq!(kind("model.embed_tokens.weight"), Kind::BFloat16);
    assert_eq!(s.engine.pending.len(), 1);
}

/// LoRA with an engine sharing the base: staleness snapshots and the engine's checkpointed weights
/// are adapters only, and resume is bit for bit.
#[test]
fn shared_base_lora_engine_keeps_adapter_snapshots_and_resumes_bitwise() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: grpo }", 4)
        .edit(|c| {
            c.model.lora = Some(crate::config::LoraConfig {
                rank: 4,
                alpha: 8.0,
                targets: ["q_proj", "v_proj", "up_proj"].map(String::from).to_vec(),
            });
            c.optim.lr = 3e-3;
            c.rollout.engine.staleness = 2;
        })
        .unwrap();
    let (full, _) = assert_resume_is_exact(&cfg, 16, 2);
    let s = newest(full.path());
    assert_eq!(s.engine.pending.len(), 2);
    let adapters_only =
        |named: &[(String, tch::Tensor)]| named.iter().all(|(n, _)| n.contains(".lora_"));
    assert!(s.engine.pending.iter().all(|p| adapters_only(p)));
    assert!(adapters_only(s.engine.weights.as_ref().unwrap()));
    let rows = metrics_of(full.path());
    assert!(
        f(&rows[3], "rollout_corr/abs_prob_diff") > 0.0,
        "the engine lags: {rows:?}"
    );
}
