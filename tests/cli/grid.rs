//! `harness validate`, `plan`, `run`, `table`, `slurm` on declared grids.
use super::{harness, root, text};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A grid that trains in seconds on a CPU: 2 cases × 2 seeds.
const TINY: &str = "
name: tiny
base:
  model: { name: tiny-qwen3 }
  task: { name: addition, difficulty: 1 }
  algorithm: { name: grpo }
  rollout: { prompts_per_step: 2, group_size: 4, max_new_tokens: 3 }
  optim: { lr: 1.0e-3 }
  train: { steps: 6 }
  eval: { every: 3, prompts: 8 }
  checkpoint: { every: 2 }
seeds: [0, 1]
cases:
  grpo: {}
  dcmdp: { set: { algorithm: { name: dcmdp, c: 0.0037 } } }
";

fn write_grid(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("grid.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Run ids of a grid, from `harness plan --json`.
fn run_ids(grid: &Path) -> Vec<String> {
    let out = harness()
        .arg("plan")
        .arg(grid)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn shipped_experiments_validate() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("experiments")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            // The paper grids name weights and data that are not in the repository.
            let out = harness()
                .arg("validate")
                .arg(&p)
                .arg("--no-file-checks")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {}", p.display(), text(&out));
            assert!(text(&out).contains(": ok: grid"), "{}", text(&out));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn invalid_grid_lists_every_error_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let g = write_grid(
        d.path(),
        "base:
  model: { name: tiny-qwen3 }
  task: { name: addition }
  algorithm: { name: grpo }
  optim: { lr: -1.0 }
axes:
  rollout.group_size: [1, 4]
  train.mini_batches: [3]
",
    );
    let out = harness().arg("validate").arg(&g).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let f = g.display().to_string();
    for want in [
        format!("{f}:5: optim.lr: must be a positive number"),
        format!("{f}:7: rollout.group_size: must be ≥ 2"),
        format!("{f}:8: train.mini_batches: must divide"),
    ] {
        assert!(err.contains(&want), "{want}\nnot in\n{err}");
    }

    let out_dir = d.path().join("out");
    let out = harness()
        .arg("run")
        .arg(&g)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!out_dir.exists(), "nothing is written for an invalid grid");
}

#[test]
fn plan_sizes_a_paper_grid() {
    let g = root().join("experiments/paper-qwen3-8b.yaml");
    let out = harness()
        .arg("plan")
        .arg(&g)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let p = runs[0]["params_total"].as_u64().unwrap();
    assert!((8_100_000_000..8_300_000_000).contains(&p), "{p}");
    assert!(v["total_flops"].as_f64().unwrap() > 1e18);

    // Full fine-tuning of 8B in bf16 does not fit an 80 GiB GPU: a failed check (exit 1).
    let out = harness()
        .arg("plan")
        .arg(&g)
        .args(["--gpu-mem", "80"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("total: 4 runs"), "{t}");
    assert!(t.contains("exceed 80 GiB"), "{t}");

    // The MoE paper grid plans without its checkpoint too (preset shape), 30.5B parameters.
    let out = harness()
        .arg("plan")
        .arg(root().join("experiments/paper-qwen3-30b-a3b.yaml"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let p = runs[0]["params_total"].as_u64().unwrap();
    assert!((30_000_000_000..31_000_000_000).contains(&p), "{p}");
}

#[test]
fn a_second_run_on_the_same_output_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let g = write_grid(d.path(), TINY);
    let out_dir = d.path().join("out");
    std::fs::create_dir_all(out_dir.join("tiny")).unwrap();
    // A live process (this test) holds the lock.
    std::fs::write(
        out_dir.join("tiny/.lock"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let out = harness()
        .arg("run")
        .arg(&g)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("locked"), "{}", text(&out));
    assert!(!out_dir.join("tiny/grid.yaml").exists());
}

/// `harness slurm` prepares the output and writes a job array; `harness table` then builds
/// tables from whatever the runs wrote; `harness run` without --resume refuses existing results.
#[test]
fn slurm_script_and_tables_from_run_directories() {
    let d = tempfile::tempdir().unwrap();
    let g = write_grid(d.path(), TINY);
    let out_dir = d.path().join("out");
    let out = harness()
        .arg("slurm")
        .arg(&g)
        .arg("--out")
        .arg(&out_dir)
        .args([
            "--partition",
            "gpu",
            "--gpus-per-run",
            "1",
            "--max-parallel",
            "2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ids = run_ids(&g);
    assert_eq!(ids.len(), 4);
    let gdir = out_dir.join("tiny");
    let script = std::fs::read_to_string(gdir.join("slurm.sh")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2"), "{script}");
    assert!(script.contains("--only \"$RUN_ID\""), "{script}");
    for id in &ids {
        assert!(script.contains(id.as_str()), "{id}");
        assert!(gdir.join("runs").join(id).join("config.yaml").exists());
    }
    assert!(gdir.join("grid.yaml").exists());

    // Fake what the training loop writes.
    for (i, id) in ids.iter().enumerate() {
        let dir = gdir.join("runs").join(id);
        let m: String = (1..=6)
            .map(|s| {
                format!(
                    "{{\"step\":{s},\"critic/score/mean\":{},\"actor/pg_loss\":{}}}\n",
                    0.1 * s as f64 + i as f64,
                    1.0 / s as f64
                )
            })
            .collect();
        std::fs::write(dir.join("metrics.jsonl"), m).unwrap();
        std::fs::write(
            dir.join("eval.jsonl"),
            "{\"step\":3,\"eval/addition/avg@1\":0.25}\n{\"step\":6,\"eval/addition/avg@1\":0.5}\n",
        )
        .unwrap();
        let state = if i == 3 { "diverged" } else { "done" };
        std::fs::write(
            dir.join("status.json"),
            format!(
                "{{\"id\":\"{id}\",\"label\":\"x\",\"state\":\"{state}\",\"step\":6,\"total_steps\":6}}"
            ),
        )
        .unwrap();
    }
    let out = harness().arg("table").arg(&gdir).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("4 run(s), 2 grid point(s), 24 step row(s), 3 metric(s)"),
        "{}",
        text(&out)
    );
    let csv = std::fs::read_to_string(gdir.join("tables/summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[0].starts_with("point,label,case,n_runs,n_done,divergences,n_failed,n_unfinished,"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("eval/addition/avg@1:best_mean"));
    assert!(lines[2].contains(",dcmdp,2,1,1,0,0,"), "{}", lines[2]);
    for f in ["steps.parquet", "summary.parquet"] {
        assert!(gdir.join("tables").join(f).exists());
    }
    assert!(gdir
        .join("runs")
        .join(&ids[0])
        .join("metrics.parquet")
        .exists());

    // Results exist: a fresh run must be asked to resume.
    let out = harness()
        .arg("run")
        .arg(&g)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--resume"), "{}", text(&out));
    // With --resume every run is finished: nothing to do, tables rebuilt.
    let out = harness()
        .arg("run")
        .arg(&g)
        .arg("--out")
        .arg(&out_dir)
        .arg("--resume")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("4 already finished"), "{}", text(&out));
}

/// summary.csv as rows of column → cell, leaving out wall-clock columns.
fn summary_cells(path: &Path) -> Vec<BTreeMap<String, String>> {
    let csv = std::fs::read_to_string(path).unwrap();
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(|s| s.trim_matches('"').to_string())
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .filter(|(h, _)| !h.starts_with("timing_s/") && !h.starts_with("perf/"))
                .map(|(h, c)| (h.clone(), c.to_string()))
                .collect()
        })
        .collect()
}

/// A run's metrics without wall-clock ones.
fn metrics_rows(path: &Path) -> Vec<BTreeMap<String, serde_json::Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let m: BTreeMap<String, serde_json::Value> = serde_json::from_str(l).unwrap();
            m.into_iter()
                .filter(|(k, _)| !k.starts_with("timing_s/") && !k.starts_with("perf/"))
                .collect()
        })
        .collect()
}

/// Kill a grid mid-way with SIGKILL, resume it, and get the same tables as an uninterrupted run.
/// Needs the training loop.
#[test]
fn resume_after_sigkill_matches_an_uninterrupted_run() {
    let d = tempfile::tempdir().unwrap();
    let g = write_grid(d.path(), TINY);
    let run = |out: &Path, resume: bool| {
        let mut c = harness();
        c.arg("run")
            .arg(&g)
            .arg("--out")
            .arg(out)
            .args(["--jobs", "2"]);
        if resume {
            c.arg("--resume");
        }
        c
    };

    let a = d.path().join("a");
    let out = run(&a, false).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let b = d.path().join("b");
    let mut child = run(&b, false)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some run has trained a step, then kill the scheduler outright.
    super::run_dir::wait_for_step(&b.join("tiny/runs"), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();

    let out = run(&b, true).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    assert_eq!(
        summary_cells(&a.join("tiny/tables/summary.csv")),
        summary_cells(&b.join("tiny/tables/summary.csv"))
    );
    for id in run_ids(&g) {
        let p = |x: &Path| x.join("tiny/runs").join(&id).join("metrics.jsonl");
        assert_eq!(metrics_rows(&p(&a)), metrics_rows(&p(&b)), "run {id}");
        for x in [&a, &b] {
            let st: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(x.join("tiny/runs").join(&id).join("status.json"))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(st["state"], "done", "{st}");
        }
    }
    assert!(b.join("tiny/tables/steps.parquet").exists());
    assert!(!b.join("tiny/.lock").exists());
}

/// `harness validate grid.yaml | head -1`: the reader leaves before the output is written; the
/// harness ends quietly (SIGPIPE, as other Unix tools do), not with a panic on stdout.
#[test]
fn a_closed_stdout_ends_validate_quietly() {
    use std::process::Stdio;
    let mut child = harness()
        .arg("validate")
        .arg(root().join("experiments/mini-repro.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the harness has started writing
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.status.success() || err.is_empty(), "{err}");
}
