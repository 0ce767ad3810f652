//! `harness inspect`, `harness init`, `harness logprobs`.
use super::harness;
use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

#[test]
fn inspect_reports_active_parameters_for_moe() {
    let out = harness()
        .args(["inspect", "qwen3-30b-a3b"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("128 experts, top-8"), "{text}");
    assert!(text.contains("active per token"), "{text}");

    let out = harness()
        .args(["inspect", "qwen3-8b", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = v["params_total"].as_u64().unwrap();
    assert!((8_100_000_000..8_300_000_000).contains(&total), "{total}");
    // 16 bytes/param for full fine-tuning with AdamW.
    assert_eq!(
        v["memory_bytes"]["full_finetune_adamw"].as_f64().unwrap(),
        total as f64 * 16.0
    );
}

#[test]
fn inspect_reads_a_model_directory() {
    let out = harness()
        .arg("inspect")
        .arg(fixtures().join("moe_sharded"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("8 experts, top-2"));
}

#[test]
fn unknown_model_is_bad_input() {
    let out = harness().args(["inspect", "qwen9-1t"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model preset"));
}

#[test]
fn logprobs_match_transformers_reference() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let output = tmp.path().join("out.jsonl");
    for key in ["dense", "moe"] {
        let r = &reference[key];
        // Ragged lengths so the CLI batches with left padding.
        let seqs: Vec<Vec<i64>> = serde_json::from_value(r["ragged"].clone()).unwrap();
        let want: Vec<Vec<f64>> = serde_json::from_value(r["ragged_logprobs"].clone()).unwrap();
        let lines: Vec<String> = seqs
            .iter()
            .map(|s| serde_json::json!({ "tokens": s }).to_string())
            .collect();
        std::fs::write(&input, lines.join("\n")).unwrap();
        let status = harness()
            .args(["logprobs", "--model"])
            .arg(fixtures().join(r["dir"].as_str().unwrap()))
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&output)
            .status()
            .unwrap();
        assert!(status.success());
        let got: Vec<Vec<f64>> = std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["logprobs"].clone())
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len());
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() < 1e-4, "{key}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn logprobs_rejects_out_of_vocab_tokens_and_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let output = tmp.path().join("out.jsonl");
    std::fs::write(&input, "{\"tokens\": [1, 2, 3]}\n{\"tokens\": [1, 999]}\n").unwrap();
    let out = harness()
        .args(["logprobs", "--model", "tiny-qwen3", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&output)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:") && err.contains("999"), "{err}");
    assert!(!output.exists(), "nothing is written on bad input");

    std::fs::write(&input, "{\"toks\": [1, 2]}\n").unwrap();
    let out = harness()
        .args(["logprobs", "--model", "tiny-qwen3", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&output)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn init_writes_a_loadable_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let status = harness()
        .args(["init", "tiny-qwen3-moe", "--dtype", "bf16", "--out"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "qwen3_moe");
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    let out = harness().arg("inspect").arg(&dir).output().unwrap();
    assert!(out.status.success());
}
