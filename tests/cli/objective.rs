//! `harness objective` against verl 0.9.1's own functions and the DPPO / DRPO authors' code
//! (`tests/fixtures/verl/make_fixtures.py`): every case's config and dumped batch through the CLI,
//! every number within 1e-5 (relative above 1).
use super::harness;
use harness::objective::batch_io::load_tensors;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verl")
}

fn host(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-5 * want.abs().max(1.0)
}

/// Run one case through the CLI; the mismatches it finds.
fn run_case(case: &Value, dir: &Path, i: usize) -> Vec<String> {
    let item = case["item"].as_str().unwrap();
    let cfg_path = dir.join(format!("case{i}.yaml"));
    let out_path = dir.join(format!("case{i}.safetensors"));
    let yaml = serde_yaml::to_string(&serde_json::json!({ "algorithm": case["config"] })).unwrap();
    std::fs::write(&cfg_path, yaml).unwrap();
    let batch = fixtures().join(case["batch"].as_str().unwrap());
    let out = harness()
        .arg("objective")
        .arg("--config")
        .arg(&cfg_path)
        .arg("--batch")
        .arg(&batch)
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{item}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<String, Tensor> = load_tensors(&out_path).unwrap().into_iter().collect();
    let mask = host(
        &load_tensors(&batch)
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == "mask")
            .unwrap()
            .1,
    );
    let mut bad = vec![];
    let mut check = |key: &str, want: f64, got: f64| {
        if !close(got, want) {
            bad.push(format!("{item}: {key}: reference {want}, harness {got}"));
        }
    };
    let want = &case["expect"];
    for (key, masked) in [
        ("advantages", true),
        ("returns", true),
        ("grad_logp", false),
        ("grad_values", false),
    ] {
        let Some(w) = want.get(key) else { continue };
        let g = host(
            got.get(key)
                .unwrap_or_else(|| panic!("{item}: no `{key}` in the output")),
        );
        for (j, (w, g)) in floats(w).iter().zip(&g).enumerate() {
            if !masked || mask[j] > 0.0 {
                check(&format!("{key}[{j}]"), *w, *g);
            }
        }
    }
    if let Some(l) = want.get("loss") {
        check("loss", l.as_f64().unwrap(), got["loss"].double_value(&[]));
    }
    for (k, w) in want
        .get("metrics")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let g = got
            .get(&format!("metrics/{k}"))
            .map_or(f64::NAN, |t| t.double_value(&[]));
        check(k, w.as_f64().unwrap(), g);
    }
    bad
}

/// Every case of a fixture file, a few CLI processes at a time.
pub(super) fn check_file(name: &str) {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let bad: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut bad = vec![];
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(case) = cases.get(i) else { break bad };
                        bad.extend(run_case(case, dir.path(), i));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn objective_matches_verl() {
    check_file("verl.json");
}

#[test]
fn objective_matches_the_authors_code() {
    check_file("authors.json");
}

#[test]
fn objective_rejects_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = |cfg: &str, batch: &Path| {
        let path = dir.path().join("alg.yaml");
        std::fs::write(&path, cfg).unwrap();
        harness()
            .args(["objective", "--config"])
            .arg(&path)
            .arg("--batch")
            .arg(batch)
            .arg("--out")
            .arg(dir.path().join("out.safetensors"))
            .output()
            .unwrap()
    };
    let batch = fixtures().join("batch.safetensors");
    for (cfg, want) in [
        (
            "name: grpo\nclip_ratio_low: 1.5\n",
            "algorithm.clip_ratio_low",
        ),
        (
            "algorithm: {name: grpo, clip_ratio: 0.2}\n",
            "unknown field `clip_ratio`",
        ),
        ("name: dppo\ndivergence: topk-kl\n", "rollout_topk_logp"),
    ] {
        let out = run(cfg, &batch);
        assert_eq!(out.status.code(), Some(2), "{cfg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{cfg}: {err}");
    }
    let out = run("name: grpo\n", &dir.path().join("missing.safetensors"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
}
