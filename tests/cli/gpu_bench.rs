//! `harness bench-train|bench-decode|bench-moe` (the Rust side of benches/gpu/compare.sh) on the
//! CPU with tiny shapes, and `harness export`'s argument checks.
use super::harness;

fn json_line(args: &[&str]) -> serde_json::Value {
    let out = harness().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().last().unwrap();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

const QUICK: &[&str] = &[
    "--device",
    "cpu",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--threads",
    "1",
];

#[test]
fn bench_train_reports_throughput_and_flops() {
    for extra in [
        &["--recompute", "--lora-rank", "4"][..],
        &["--head-chunk", "5", "--dtype", "bf16"][..],
    ] {
        let mut args = vec!["bench-train", "--batch", "2", "--seq", "16"];
        args.extend(extra);
        args.extend(QUICK);
        let v = json_line(&args);
        assert_eq!(v["bench"], "train");
        assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
        let loss = v["loss"].as_f64().unwrap();
        // Random tiny model over a 64-token vocabulary: NLL near ln 64.
        assert!((loss - 64f64.ln()).abs() < 0.5, "{v}");
        // 6 · (non-embedding + tied head) params + attention: tiny-qwen3 ≈ 6 · 0.8 M.
        let f = v["flops_per_token"].as_f64().unwrap();
        assert!(f > 6.0 * 7e5 && f < 6.0 * 9e5, "{v}");
    }
}

#[test]
fn bench_decode_generates_every_token() {
    let mut args = vec![
        "bench-decode",
        "--batch",
        "3",
        "--prompt-len",
        "5",
        "--new-tokens",
        "7",
    ];
    args.extend(QUICK);
    let v = json_line(&args);
    assert_eq!(v["bench"], "decode");
    assert_eq!(v["generated"], 21);
    assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_moe_runs_grouped_and_loop() {
    for imp in ["grouped", "loop"] {
        let mut args = vec![
            "bench-moe",
            "--hidden",
            "64",
            "--experts",
            "8",
            "--top-k",
            "2",
            "--inter",
            "32",
            "--tokens",
            "48",
            "--impl",
            imp,
        ];
        args.extend(QUICK);
        let v = json_line(&args);
        assert_eq!(v["impl"], format!("harness-{imp}"));
        assert!(v["s"].as_f64().unwrap() > 0.0);
    }
    let out = harness()
        .args(["bench-moe", "--impl", "magic", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown MoE implementation"));
}

#[test]
fn export_needs_a_target_and_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = harness().arg("export").arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to export"));
    std::fs::write(
        tmp.path().join("config.yaml"),
        "model: { name: tiny-qwen3 }\ntask: { name: addition }\nalgorithm: { name: grpo }\n",
    )
    .unwrap();
    let out = harness()
        .arg("export")
        .arg(tmp.path())
        .args(["--merged", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint"));
}
