//! `harness plan` on the 1-GPU paper grids: both fit one 141 GiB GPU, and the time per step is
//! printed and consistent with the JSON.
use super::{harness, text};
use std::path::PathBuf;

fn grid(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("experiments")
        .join(name)
}

const GIB: f64 = (1u64 << 30) as f64;

#[test]
fn one_gpu_paper_grids_fit_141_gib_and_print_time_per_step() {
    for name in ["paper-qwen3-8b-1gpu.yaml", "paper-qwen3-30b-a3b-1gpu.yaml"] {
        let out = harness()
            .arg("plan")
            .arg(grid(name))
            .args(["--gpu-mem", "141"])
            .output()
            .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{name}: {t}");
        assert!(t.contains("every run fits in 141 GiB"), "{t}");
        assert!(t.contains("time/step on one H200"), "{t}");
        assert!(t.contains("MFU 0.35"), "{t}");

        let out = harness()
            .arg("plan")
            .arg(grid(name))
            .arg("--json")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for r in v["runs"].as_array().unwrap() {
            let peak = r["mem_peak"].as_f64().unwrap();
            assert!(peak <= 141.0 * GIB, "{name}: {}", peak / GIB);
            // LoRA on a bf16 base: the bf16 engine shares it, the FP8 one keeps a 1-byte copy.
            let quant = r["axes"]["rollout.engine.weight_quant"].as_str().unwrap();
            let engine = r["mem"]["engine"].as_u64().unwrap();
            let total = r["params_total"].as_u64().unwrap();
            match quant {
                "none" => assert_eq!(engine, 0, "{name}"),
                _ => assert_eq!(engine, total, "{name}"),
            }
            // Waves and micro-batches are what the grid declares.
            assert!(r["rollout_wave"].as_u64().unwrap() < 512);
            assert!(r["micro_batch"].as_u64().unwrap() < r["mini_batch"].as_u64().unwrap());
            let time = &r["time"];
            let total_s = time["total"].as_f64().unwrap();
            let parts = ["prefill", "decode", "train"].map(|k| time[k].as_f64().unwrap());
            assert!(parts.iter().all(|&p| p > 0.0), "{time}");
            assert!((parts.iter().sum::<f64>() - total_s).abs() < 1e-6 * total_s);
        }
    }
}

#[test]
fn the_paper_grids_without_the_1gpu_changes_do_not_fit() {
    // The same model and batch with full fine-tuning, no recompute and every row at once.
    let out = harness()
        .arg("plan")
        .arg(grid("paper-qwen3-8b-1gpu.yaml"))
        .args(["--set", "model.lora=null", "--set", "train.recompute=false"])
        .args([
            "--set",
            "train.micro_batch_tokens=null",
            "--set",
            "rollout.max_num_seqs=null",
        ])
        .args(["--gpu-mem", "141"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("exceed 141 GiB"), "{t}");
}

#[test]
fn a_higher_mfu_gives_a_shorter_step() {
    let secs = |mfu: &str| -> f64 {
        let out = harness()
            .arg("plan")
            .arg(grid("paper-qwen3-8b-1gpu.yaml"))
            .args(["--json", "--mfu", mfu])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["runs"][0]["time"]["train"].as_f64().unwrap()
    };
    let (a, b) = (secs("0.35"), secs("0.7"));
    assert!((a / b - 2.0).abs() < 1e-9, "{a} {b}");
    let out = harness()
        .arg("plan")
        .arg(grid("paper-qwen3-8b-1gpu.yaml"))
        .args(["--mfu", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
