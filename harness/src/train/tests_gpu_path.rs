//! Training with LoRA (adapters move, the base does not; checkpoints hold adapters only; exact
//! resume; export), with activation recompute, and with bf16 compute.
use super::policy::{build_policy, export_run, load_run_policy};
use super::tests::{crash_after_step, tiny_config};
use super::*;
use crate::model::{load_model, Qwen3};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use tch::{Device, Kind, Tensor};

fn lora_config(steps: usize) -> crate::config::RunConfig {
    // GRPO: DCMDP's λ round-trips through JSON in checkpoints, which serde_json (without
    // `float_roundtrip`) may parse 1 ulp off.
    tiny_config("{ name: grpo }", steps)
        .edit(|cfg| {
            cfg.task.sft.as_mut().unwrap().lr = 1e-2;
            cfg.model.lora = Some(crate::config::LoraConfig {
                rank: 4,
                alpha: 8.0,
                targets: ["q_proj", "v_proj", "up_proj"].map(String::from).to_vec(),
            });
            cfg.train.recompute = true;
            cfg.optim.lr = 3e-3;
        })
        .unwrap()
}

fn train_in(cfg: &crate::config::RunConfig, seed: i64, dir: &Path) -> RunOutcome {
    tch::set_num_threads(1);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.yaml"), serde_yaml::to_string(cfg).unwrap()).unwrap();
    run_training(cfg, seed, dir, &AtomicBool::new(false), &mut |_| {}).unwrap()
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.retain(|k, _| !k.starts_with("timing_s/") && !k.starts_with("perf/"));
            v
        })
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn lora_run_trains_adapters_keeps_the_base_and_exports() {
    let _rng = crate::rng_lock();
    let cfg = lora_config(3);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    assert_eq!(train_in(&cfg, 2, &run).state, RunState::Done);

    // The checkpoint holds adapters, not the base or the engine copy.
    let (_, ck) = checkpoint::latest(&run).unwrap();
    let (tensors, _) = checkpoint::load(&ck).unwrap();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.iter().all(|n| !n.starts_with("engine/")), "{names:?}");
    assert!(names.contains(&"policy/model.layers.0.self_attn.q_proj.lora_B.weight"));
    assert!(!names.contains(&"policy/model.layers.0.self_attn.q_proj.weight"));

    let (_, trained) = load_run_policy(&run).unwrap();
    let fresh = build_policy(&cfg, 2, Device::Cpu).unwrap();
    for ((n, a), (_, b)) in trained
        .named_parameters()
        .iter()
        .zip(fresh.named_parameters())
    {
        assert_eq!(max_diff(a, &b), 0.0, "base tensor {n} changed");
    }
    let moved = trained
        .lora_parameters()
        .iter()
        .zip(fresh.lora_parameters())
        .filter(|((_, a), (_, b))| max_diff(a, b) > 0.0)
        .count();
    assert_eq!(
        moved,
        trained.lora_parameters().len(),
        "every adapter trains"
    );

    // Export: PEFT adapter + merged HF dir that loads and gives the adapter forward's logits.
    let (ad, merged) = (tmp.path().join("adapter"), tmp.path().join("merged"));
    export_run(&run, Some(&ad), Some(&merged), Kind::Float).unwrap();
    assert!(
        ad.join("adapter_model.safetensors").exists() && ad.join("adapter_config.json").exists()
    );
    let m: Qwen3 = load_model(merged.to_str().unwrap(), Kind::Float, Device::Cpu, 0).unwrap();
    let ids = Tensor::from_slice(&[3i64, 5, 7, 9, 11, 2]).view([1, 6]);
    let want = tch::no_grad(|| trained.forward(&ids, None, None).logits);
    let got = tch::no_grad(|| m.forward(&ids, None, None).logits);
    assert!(max_diff(&want, &got) < 1e-5, "{}", max_diff(&want, &got));
}

#[test]
fn lora_recompute_kill_and_resume_is_exact() {
    let _rng = crate::rng_lock();
    let cfg = lora_config(4);
    let full = tempfile::tempdir().unwrap();
    train_in(&cfg, 3, full.path());
    let cut = tempfile::tempdir().unwrap();
    crash_after_step(&cfg, 3, cut.path(), 3);
    assert_eq!(train_in(&cfg, 3, cut.path()).state, RunState::Done);
    let (a, b) = (metrics(full.path()), metrics(cut.path()));
    assert_eq!(a.len(), 4);
    // The adapters do get updates after the checkpoint.
    assert!(
        a[2..]
            .iter()
            .any(|r| r["actor/grad_norm"].as_f64().unwrap() > 0.0),
        "{a:?}"
    );
    assert_eq!(a, b);
}

#[test]
fn recompute_and_bf16_runs_track_the_plain_fp32_run() {
    let _rng = crate::rng_lock();
    // SFT warm-start so that step 1 has non-zero advantages (hence gradients).
    let cfg = tiny_config("{ name: grpo }", 1);
    let run = |c: &crate::config::RunConfig| {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(train_in(c, 1, tmp.path()).state, RunState::Done);
        metrics(tmp.path())
    };
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let plain = run(&cfg);
    let rec = run(&cfg.clone().edit(|c| c.train.recompute = true).unwrap());
    // Same samples, same loss and gradient up to summation order.
    let (ga, gb) = (
        f(&plain[0], "actor/grad_norm"),
        f(&rec[0], "actor/grad_norm"),
    );
    assert!(ga > 0.0);
    assert!((ga - gb).abs() < 1e-5 * ga, "grad norm {ga} vs {gb}");
    assert!((f(&plain[0], "actor/loss") - f(&rec[0], "actor/loss")).abs() < 1e-6);
    let bf = run(&cfg
        .edit(|c| c.train.precision = crate::config::Precision::Bf16)
        .unwrap());
    let g = f(&bf[0], "actor/grad_norm");
    assert!(g.is_finite() && g > 0.0, "bf16 grad norm {g}");
}
