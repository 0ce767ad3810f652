//! `harness logprobs`: output line k answers input line k; bad options and inputs exit 2
//! (issue #20).
use super::harness;
use std::path::Path;
use std::process::Output;

fn logprobs(input: &Path, out: &Path, extra: &[&str]) -> Output {
    harness()
        .args(["logprobs", "--model", "tiny-qwen3", "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn rows(path: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::from_value(v["logprobs"].clone()).unwrap()
        })
        .collect()
}

#[test]
fn one_token_lines_give_empty_results_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in.jsonl"), tmp.path().join("out.jsonl"));
    // Trailing blank lines are not records.
    std::fs::write(
        &input,
        "{\"tokens\": [1, 2, 3]}\n{\"tokens\": [5]}\n{\"tokens\": [4, 5, 6, 7]}\n\n\n",
    )
    .unwrap();
    let o = logprobs(&input, &out, &["--batch-size", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = rows(&out);
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [2, 0, 3]);
    // The same numbers as scoring line 3 alone.
    std::fs::write(&input, "{\"tokens\": [4, 5, 6, 7]}\n").unwrap();
    assert!(logprobs(&input, &out, &[]).status.success());
    let alone = &rows(&out)[0];
    for (a, b) in got[2].iter().zip(alone) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn a_blank_line_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in.jsonl"), tmp.path().join("out.jsonl"));
    std::fs::write(&input, "{\"tokens\": [1, 2]}\n\n{\"tokens\": [3, 4]}\n").unwrap();
    let o = logprobs(&input, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in.jsonl:2: blank line"), "{err}");
    assert!(!out.exists());
}

#[test]
fn batch_size_zero_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in.jsonl"), tmp.path().join("out.jsonl"));
    std::fs::write(&input, "{\"tokens\": [1, 2]}\n").unwrap();
    let o = logprobs(&input, &out, &["--batch-size", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists());
}

#[test]
fn sequences_past_the_context_are_refused_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in.jsonl"), tmp.path().join("out.jsonl"));
    // tiny-qwen3's max_position_embeddings is 512.
    let long: Vec<i64> = (0..513).map(|i| i % 60).collect();
    std::fs::write(
        &input,
        format!(
            "{{\"tokens\": [1, 2]}}\n{}\n",
            serde_json::json!({ "tokens": long })
        ),
    )
    .unwrap();
    let o = logprobs(&input, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 2 (513 tokens)") && err.contains("512"),
        "{err}"
    );
    assert!(!out.exists());
    let o = logprobs(&input, &out, &["--allow-long"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning"));
    assert_eq!(rows(&out)[1].len(), 512);
}

#[test]
fn an_unwritable_output_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"tokens\": [1, 2]}\n").unwrap();
    let o = logprobs(&input, &tmp.path().join("no/such/dir/out.jsonl"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out"));
    let o = logprobs(&input, tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
}
