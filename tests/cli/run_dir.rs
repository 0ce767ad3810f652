//! `harness run` and `harness slurm` and the run directory: a changed grid is not resumed
//! silently, Slurm tasks run the saved grid from the right folder, a stopped run is not left
//! `running`, runs are placed on the listed devices, and `--only` takes labels.
use super::{harness, text};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A grid that trains in seconds on a CPU: 2 cases × 2 seeds, `steps` steps.
fn tiny(steps: usize, c: &str) -> String {
    format!(
        "
name: tiny
base:
  model: {{ name: tiny-qwen3 }}
  task: {{ name: addition, difficulty: 1 }}
  algorithm: {{ name: grpo }}
  rollout: {{ prompts_per_step: 2, group_size: 4, max_new_tokens: 3 }}
  optim: {{ lr: 1.0e-3 }}
  train: {{ steps: {steps} }}
  eval: {{ every: 0, prompts: 8 }}
  checkpoint: {{ every: 1 }}
seeds: [0, 1]
cases:
  grpo: {{}}
  dcmdp: {{ set: {{ algorithm: {{ name: dcmdp, c: {c} }} }} }}
"
    )
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Every run's `status.json` under `DIR/<grid>/runs`.
fn statuses(gdir: &Path) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = std::fs::read_dir(gdir.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| json(&e.path().join("status.json")))
        .collect();
    v.sort_by_key(|s| s["label"].as_str().unwrap().to_string());
    v
}

/// `harness slurm <grid> --out out` in `dir` (it prepares `out/tiny` as `run` would).
fn slurm(dir: &Path, grid: &Path, extra: &[&str]) -> std::process::Output {
    harness()
        .arg("slurm")
        .arg(grid)
        .args(["--out", "out", "--gpus-per-run", "0"])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn prepare(dir: &Path, grid: &Path) -> PathBuf {
    let o = slurm(dir, grid, &[]);
    assert!(o.status.success(), "{}", text(&o));
    dir.join("out/tiny")
}

/// Fake finished results in every run of a prepared grid.
fn fake_done(gdir: &Path) {
    for s in statuses(gdir) {
        let rd = gdir.join("runs").join(s["id"].as_str().unwrap());
        std::fs::write(
            rd.join("metrics.jsonl"),
            "{\"step\":1,\"critic/score/mean\":0.5}\n",
        )
        .unwrap();
        let mut s = s.clone();
        s["state"] = "done".into();
        std::fs::write(rd.join("status.json"), s.to_string()).unwrap();
    }
}

#[test]
fn resume_refuses_a_changed_grid_with_a_diff_unless_extended() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("tiny.yaml");
    std::fs::write(&g, tiny(6, "0.004")).unwrap();
    let gdir = prepare(d.path(), &g);
    fake_done(&gdir);
    let saved = std::fs::read_to_string(gdir.join("grid.yaml")).unwrap();

    std::fs::write(&g, tiny(6, "0.008")).unwrap();
    let o = harness()
        .arg("run")
        .arg(&g)
        .args(["--out", "out", "--resume"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    for want in [
        "- dcmdp/seed=0",
        "+ dcmdp/seed=0",
        "-  dcmdp: { set: { algorithm: { name: dcmdp, c: 0.004 } } }",
        "+  dcmdp: { set: { algorithm: { name: dcmdp, c: 0.008 } } }",
        "--extend",
    ] {
        assert!(t.contains(want), "{want}\nnot in\n{t}");
    }
    assert_eq!(
        std::fs::read_to_string(gdir.join("grid.yaml")).unwrap(),
        saved,
        "the saved grid is untouched"
    );

    // The same change with --extend: the new runs join the saved grid, whose results stay.
    // (A dcmdp run at the old c and one at the new c now have the same label: refused.)
    let o = slurm(d.path(), &g, &["--extend"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("cannot extend"), "{}", text(&o));

    // A new seed is a pure extension.
    std::fs::write(
        &g,
        tiny(6, "0.004").replace("seeds: [0, 1]", "seeds: [0, 1, 2]"),
    )
    .unwrap();
    let o = slurm(d.path(), &g, &["--extend"]);
    assert!(o.status.success(), "{}", text(&o));
    let st = statuses(&gdir);
    assert_eq!(st.len(), 6);
    assert_eq!(st.iter().filter(|s| s["state"] == "done").count(), 4);
    let o = harness().arg("table").arg(&gdir).output().unwrap();
    assert!(
        text(&o).contains("6 run(s), 2 grid point(s)"),
        "{}",
        text(&o)
    );
}

/// `harness slurm` from a project folder with a relative model path; the array task runs from
/// `/` (as a cluster job may start) after the grid file was edited: it trains the saved grid.
#[test]
fn slurm_tasks_run_the_saved_grid_from_the_submit_folder() {
    let d = tempfile::tempdir().unwrap();
    let o = harness()
        .args(["init", "tiny-qwen3", "--out", "models/tiny"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let g = d.path().join("tiny.yaml");
    let grid = tiny(2, "0.004").replace("name: tiny-qwen3", "name: models/tiny");
    std::fs::write(&g, &grid).unwrap();
    let gdir = prepare(d.path(), &g);
    let script = std::fs::read_to_string(gdir.join("slurm.sh")).unwrap();
    let here = std::fs::canonicalize(d.path()).unwrap();
    assert!(
        script.contains(&format!("#SBATCH --chdir={}", here.display())),
        "{script}"
    );
    std::fs::write(&g, grid.replace("steps: 2", "steps: 50")).unwrap();

    let o = std::process::Command::new("bash")
        .arg(gdir.join("slurm.sh"))
        .env("SLURM_ARRAY_TASK_ID", "0")
        .env("SLURM_CPUS_PER_TASK", "1")
        .current_dir("/")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let done: Vec<_> = statuses(&gdir)
        .into_iter()
        .filter(|s| s["state"] == "done")
        .collect();
    assert_eq!(done.len(), 1, "{:?}", statuses(&gdir));
    assert_eq!(
        done[0]["total_steps"], 2,
        "the saved grid, not the edited file"
    );
    assert_eq!(done[0]["threads"], 1);
}

/// Wait until some run under `runs_dir` has trained a step (or `child` ended).
pub(super) fn wait_for_step(runs_dir: &Path, child: &mut Child) {
    let t0 = Instant::now();
    loop {
        let progressed = std::fs::read_dir(runs_dir).ok().is_some_and(|rd| {
            rd.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("status.json"))
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                    .is_some_and(|v| v["step"].as_u64().unwrap_or(0) >= 1)
            })
        });
        if progressed || child.try_wait().unwrap().is_some() {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stop a grid by SIGTERM to the scheduler, and by killing the scheduler outright (its child
/// then gets SIGTERM from the kernel): no run stays `running`.
#[test]
fn stopped_runs_are_interrupted_not_running() {
    for (name, sig) in [("sigterm", libc_sigterm()), ("killed parent", 9)] {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join("tiny.yaml");
        std::fs::write(&g, tiny(400, "0.004")).unwrap();
        let mut child = harness()
            .arg("run")
            .arg(&g)
            .args(["--out", "out", "--jobs", "1"])
            .current_dir(d.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gdir = d.path().join("out/tiny");
        wait_for_step(&gdir.join("runs"), &mut child);
        // SAFETY: signalling the child we spawned.
        unsafe { kill(child.id() as i32, sig) };
        child.wait().unwrap();
        // The run's own process checkpoints and writes its status after the scheduler is gone.
        let t0 = Instant::now();
        let id = started_id(&gdir);
        while gdir.join(format!("runs/{id}/.lock")).exists() {
            if t0.elapsed() > Duration::from_secs(120) {
                // What the run's process wrote, to tell a hung run from one that died.
                let log = std::fs::read_to_string(gdir.join(format!("runs/{id}/log.txt")));
                let tail: Vec<String> = log
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(15)
                    .map(String::from)
                    .collect();
                panic!(
                    "{name}: run {id} still busy: {:?}\nlog (last lines first): {tail:#?}",
                    statuses(&gdir)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let st = statuses(&gdir);
        assert!(st.iter().all(|s| s["state"] != "running"), "{name}: {st:?}");
        let stopped: Vec<_> = st.iter().filter(|s| s["state"] == "interrupted").collect();
        assert_eq!(stopped.len(), 1, "{name}: {st:?}");
        assert!(stopped[0].get("pid").is_none(), "{name}: {st:?}");
    }
}

fn started_id(gdir: &Path) -> String {
    statuses(gdir)
        .into_iter()
        .find(|s| s["state"] != "pending")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn libc_sigterm() -> i32 {
    15
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// `--devices` places runs round-robin, one device per job, and every run records its device,
/// slot and thread count; `--only` takes a grid point label (both seeds) or a run label (one run,
/// trained in this process with a progress line).
#[test]
fn devices_are_placed_round_robin_and_only_takes_labels() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("tiny.yaml");
    std::fs::write(&g, tiny(2, "0.004")).unwrap();
    let o = harness()
        .arg("run")
        .arg(&g)
        .args([
            "--out",
            "out",
            "--jobs",
            "2",
            "--devices",
            "cpu,cpu",
            "--threads",
            "1",
        ])
        .args(["--only", "grpo"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let gdir = d.path().join("out/tiny");
    let st = statuses(&gdir);
    let grpo: Vec<_> = st.iter().filter(|s| s["state"] == "done").collect();
    assert_eq!(grpo.len(), 2, "{st:?}");
    let mut slots: Vec<u64> = grpo
        .iter()
        .map(|s| s["device_slot"].as_u64().unwrap())
        .collect();
    slots.sort();
    assert_eq!(slots, [0, 1], "one run on each device: {st:?}");
    for s in &grpo {
        assert!(s["label"].as_str().unwrap().starts_with("grpo/"));
        assert_eq!(
            (s["device"].as_str(), s["threads"].as_u64()),
            (Some("cpu"), Some(1))
        );
    }

    let o = harness()
        .arg("run")
        .arg(&g)
        .args(["--out", "out", "--only", "dcmdp/seed=1", "--threads", "1"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("[step 2/2]"), "{}", text(&o));
    assert!(text(&o).contains("eta"), "{}", text(&o));
    let st = statuses(&gdir);
    let one: Vec<_> = st.iter().filter(|s| s["label"] == "dcmdp/seed=1").collect();
    assert_eq!(one[0]["state"], "done", "{st:?}");
    assert_eq!(st.iter().filter(|s| s["state"] == "pending").count(), 1);

    // A label the grid lacks names it.
    let o = harness()
        .arg("run")
        .arg(&g)
        .args(["--out", "out", "--only", "dcmdp/seed=7"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no run `dcmdp/seed=7`"), "{}", text(&o));
}
