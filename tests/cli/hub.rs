//! Models named by Hugging Face Hub id, resolved through a fake local cache (issue #17).
use super::harness;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// `harness` with the Hub environment of this test only (offline).
fn hub_harness(env: &[(&str, &Path)]) -> Command {
    let mut c = harness();
    for k in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "HF_HUB_OFFLINE",
        "HARNESS_HUB_DOWNLOAD",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A cache at `cache` holding `Org/Tiny` (tiny-qwen3, seed 5) at `COMMIT` via `refs/main`.
fn fake_cache(cache: &Path) -> PathBuf {
    let repo = cache.join("models--Org--Tiny");
    let snap = repo.join("snapshots").join(COMMIT);
    let out = harness()
        .args(["init", "tiny-qwen3", "--seed", "5", "--out"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    snap
}

fn logprobs(cmd: &mut Command, model: &str, dir: &Path) -> (Output, String) {
    let input = dir.join("in.jsonl");
    let out = dir.join(format!("{}.jsonl", model.replace('/', "_")));
    std::fs::write(&input, "{\"tokens\": [1, 2, 3, 4]}\n").unwrap();
    let o = cmd
        .args(["logprobs", "--model", model, "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    (o, text)
}

/// `harness inspect <spec>` under `env`, which must succeed; its stdout.
fn inspect_ok(env: &[(&str, &Path)], spec: &str) -> String {
    let out = hub_harness(env).args(["inspect", spec]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_hub_id_in_the_cache_loads_like_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snap = fake_cache(&cache);
    let text = inspect_ok(&[("HF_HUB_CACHE", &cache)], "Org/Tiny");
    assert!(text.contains("hidden 128"), "{text}");

    let (o, by_id) = logprobs(
        &mut hub_harness(&[("HF_HUB_CACHE", &cache)]),
        "Org/Tiny",
        tmp.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, by_dir) = logprobs(&mut harness(), snap.to_str().unwrap(), tmp.path());
    assert!(!by_id.is_empty());
    assert_eq!(by_id, by_dir);

    // HF_HOME/hub is the cache when HF_HUB_CACHE is unset.
    inspect_ok(&[("HF_HOME", tmp.path())], "Org/Tiny@main");
}

#[test]
fn a_hub_id_not_in_the_cache_names_the_id_and_the_path_searched() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    std::fs::create_dir_all(&cache).unwrap();
    let out = hub_harness(&[("HF_HUB_CACHE", &cache)])
        .args(["inspect", "Qwen/Qwen3-8B"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`Qwen/Qwen3-8B`"), "{err}");
    let searched = cache.join("models--Qwen--Qwen3-8B");
    assert!(err.contains(&searched.display().to_string()), "{err}");
    assert!(err.contains("--hub-download"), "{err}");
    // Offline stays offline even when downloads are allowed.
    let out = hub_harness(&[("HF_HUB_CACHE", &cache)])
        .env("HF_HUB_OFFLINE", "1")
        .args(["--hub-download", "inspect", "Qwen/Qwen3-8B"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!searched.exists(), "nothing was downloaded");
}
