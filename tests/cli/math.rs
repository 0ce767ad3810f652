//! The math task from the command line: the paper grids' evaluation protocol as `plan` sizes it,
//! and what a run of a paper grid says when its checkpoint is missing.
use super::{harness, root, text};

#[test]
fn paper_grids_validate_and_plan_the_reported_protocol() {
    for grid in ["paper-qwen3-8b.yaml", "paper-qwen3-30b-a3b.yaml"] {
        let g = root().join("experiments").join(grid);
        // The model and data are not here (`validate` names them: tests/cli/config.rs).
        let out = harness()
            .arg("validate")
            .arg(&g)
            .arg("--no-file-checks")
            .output()
            .unwrap();
        assert!(out.status.success(), "{grid}: {}", text(&out));

        let out = harness()
            .arg("plan")
            .arg(&g)
            .arg("--json")
            .output()
            .unwrap();
        assert!(out.status.success(), "{grid}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let run = &v["runs"][0];
        // Whole sets (published sizes: the files are not here) × per-set k: avg@32 on AIME24,
        // AIME25 and AMC23, avg@4 on MATH500, Minerva and OlympiadBench.
        let sequences = (30 + 30 + 40) * 32 + (500 + 272 + 675) * 4;
        // 300 steps, an evaluation every 20 from step 0: 16.
        let evals = 16.0;
        let len = run["prompt_len"].as_f64().unwrap() + 32768.0;
        let active = run["params_active"].as_f64().unwrap();
        let want = 2.0 * active * evals * sequences as f64 * len;
        let got = run["flops_eval"].as_f64().unwrap();
        assert!((got - want).abs() / want < 1e-9, "{grid}: {got} vs {want}");
    }
}

#[test]
fn a_paper_grid_without_its_checkpoint_names_the_missing_directory() {
    let g = root().join("experiments/paper-qwen3-8b.yaml");
    let plan = harness()
        .arg("plan")
        .arg(&g)
        .arg("--json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    // From an empty folder: `models/Qwen3-8B` (relative in the grid) is not there.
    let d = tempfile::tempdir().unwrap();
    let out = harness()
        .current_dir(d.path())
        .arg("run")
        .arg(&g)
        .args(["--only", &id, "--out", "out", "--device", "cpu"])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("Qwen3-8B") && t.contains("does not exist"),
        "{t}"
    );
    assert!(!t.contains("tokenizer.json` is missing"), "{t}");
}
