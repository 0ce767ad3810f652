//! `harness init --out` into a folder that already holds files, and the loader on a folder that
//! holds two checkpoint layouts (issue #20, item 1).
use super::harness;
use std::path::Path;
use std::process::Output;

fn init(dir: &Path, extra: &[&str]) -> Output {
    harness()
        .args(["init", "tiny-qwen3", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn init_refuses_a_folder_with_files_and_force_replaces_only_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let out = init(&d, &["--max-shard-mib", "1", "--seed", "7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sharded = files(&d);
    assert!(sharded.contains(&"model.safetensors.index.json".to_string()));
    assert!(
        sharded.iter().filter(|f| f.starts_with("model-0")).count() >= 2,
        "{sharded:?}"
    );
    std::fs::write(d.join("NOTES.md"), "mine").unwrap();

    let out = init(&d, &["--seed", "99"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    assert!(
        !d.join("model.safetensors").exists(),
        "nothing written when refused"
    );

    let out = init(&d, &["--seed", "99", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files(&d), ["NOTES.md", "config.json", "model.safetensors"]);
}

#[test]
fn a_folder_holding_both_layouts_is_refused_naming_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert!(init(&a, &["--max-shard-mib", "1", "--seed", "7"])
        .status
        .success());
    assert!(init(&b, &["--seed", "99"]).status.success());
    std::fs::copy(b.join("model.safetensors"), a.join("model.safetensors")).unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"tokens\": [1, 2, 3]}\n").unwrap();
    let out = harness()
        .args(["logprobs", "--model"])
        .arg(&a)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(tmp.path().join("out.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model.safetensors and model.safetensors.index.json"),
        "{err}"
    );
}
