//! `harness inspect --lora-rank R [--lora-targets …]` counts what a run trains (issue #20).
use super::harness;

fn inspect_json(args: &[&str]) -> serde_json::Value {
    let out = harness()
        .arg("inspect")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn lora_counts_use_the_run_default_targets() {
    // tiny-qwen3, r = 64 on q/k/v/o: 4 layers × 64 × (256 + 192 + 192 + 256).
    let v = inspect_json(&["tiny-qwen3", "--lora-rank", "64"]);
    assert_eq!(v["lora_params"], 229_376);
    assert_eq!(
        v["lora_targets"],
        serde_json::json!(["q_proj", "k_proj", "v_proj", "o_proj"])
    );
    // qwen3-8b: 36 layers × 64 × (2 × (4096 + 4096) + 2 × (4096 + 1024)).
    let v = inspect_json(&["qwen3-8b", "--lora-rank", "64"]);
    assert_eq!(v["lora_params"], 61_341_696);
}

#[test]
fn lora_targets_can_be_chosen_and_are_printed() {
    // q (128 + 128) and gate (128 + 384) on 4 layers at r = 64.
    let v = inspect_json(&["tiny-qwen3", "--lora-targets", "q_proj,gate_proj"]);
    assert_eq!(v["lora_params"], 196_608);
    let out = harness().args(["inspect", "tiny-qwen3"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LoRA r=64 on q_proj,k_proj,v_proj,o_proj"),
        "{text}"
    );

    let out = harness()
        .args(["inspect", "tiny-qwen3", "--lora-targets", "q_proj,qkv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown projection `qkv`"));
    // On MoE layers an MLP target adapts every expert: up (128 + 96) × 8 experts × 4 layers.
    let v = inspect_json(&["tiny-qwen3-moe", "--lora-targets", "up_proj"]);
    assert_eq!(v["lora_params"], 458_752);
}
