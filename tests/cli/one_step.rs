//! `benches/gpu/one_step.sh`, the GPU bench of the 1-GPU paper grids, run as `QUICK=1 DEVICE=cpu`:
//! the same pipeline (harness init, plan, run of each grid's grpo runs with LoRA, recompute,
//! micro-batches, waves, the FP8 engine and the MoE's grouped experts, the report) on tiny models,
//! so the script works the first time a GPU runs it.
use super::{root, text};
use std::process::Command;

fn one_step(work: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("bash");
    c.arg("benches/gpu/one_step.sh")
        .current_dir(root())
        .env("HARNESS_BIN", env!("CARGO_BIN_EXE_harness"))
        .env("WORK", work)
        .env_remove("OUT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn has_python() -> bool {
    Command::new("python3")
        .arg("-c")
        .arg("import json, glob, resource")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn quick_cpu_run_times_every_grpo_run_of_both_grids() {
    if !has_python() {
        eprintln!("SKIPPED: benches/gpu/one_step.sh needs python3");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let perf = root().join("reports/perf");
    let listing = || std::fs::read_dir(&perf).unwrap().count();
    let before = listing();
    let o = one_step(work.path(), &[("QUICK", "1"), ("DEVICE", "cpu")]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(listing(), before, "QUICK wrote into reports/perf");
    let file = |ext: &str| {
        std::fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap_or_else(|| panic!("no .{ext} report in WORK"))
    };
    let raw = std::fs::read_to_string(file("jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r["grid"], r["label"]).replace('"', ""))
        .collect();
    for grid in ["paper-qwen3-8b-1gpu", "paper-qwen3-30b-a3b-1gpu"] {
        for quant in ["none", "fp8-e4m3"] {
            let want = format!("{grid}.yaml grpo/weight_quant={quant}/seed=0");
            assert!(
                labels.iter().any(|l| l.ends_with(&want)),
                "{want}: {labels:?}"
            );
        }
    }
    assert_eq!(rows.len(), 4, "grpo runs only: {labels:?}");
    for r in &rows {
        assert_eq!(r["exit"], 0, "{r}");
        for k in ["timing_s/step", "timing_s/gen", "timing_s/update_actor"] {
            assert!(r[k].as_f64().is_some_and(|s| s > 0.0), "{k}: {r}");
        }
        // Peak RSS of a tiny run: the libtorch process, tens to hundreds of MiB.
        let peak = r["peak_mib"].as_u64().unwrap();
        assert!((50..4096).contains(&peak), "{r}");
        assert!(r["plan_s_per_step"].as_f64().unwrap() > 0.0, "{r}");
        let moe = r["grid"].as_str().unwrap().contains("a3b");
        let model = if moe { "tiny-qwen3-moe" } else { "tiny-qwen3" };
        assert!(r["weights"].as_str().unwrap().contains(model), "{r}");
    }
    let md = std::fs::read_to_string(file("md")).unwrap();
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with("| experiments/"))
            .count(),
        4,
        "{md}"
    );
    assert!(
        md.contains("QUICK=1 DEVICE=cpu bash benches/gpu/one_step.sh"),
        "{md}"
    );
}

fn gpu_here() -> bool {
    Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GPU "))
}

/// The GPU branch (nvidia-smi's name and memory sampling, `--device cuda`) with a stand-in
/// `nvidia-smi` on a machine without CUDA: every run fails, and each failure is a row with the
/// harness's error, the sampled memory, and exit 1 for the script.
#[test]
fn a_failed_gpu_run_is_a_row_with_its_error() {
    if !has_python() || gpu_here() {
        eprintln!("SKIPPED: needs python3 and a machine without a GPU");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let smi = bin.join("nvidia-smi");
    std::fs::write(
        &smi,
        "#!/bin/bash\ncase \"$*\" in -L) echo 'GPU 0: Stand-in';; *name*) echo Stand-in;; \
         *memory.used*) echo 1234;; esac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let scratch = work.path().join("work");
    let grids = "experiments/paper-qwen3-8b-1gpu.yaml";
    let o = one_step(
        &scratch,
        &[("QUICK", "1"), ("PATH", &path), ("GRIDS", grids)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report = text(&o);
    assert!(report.contains("Device: Stand-in"), "{report}");
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("| experiments/"))
        .collect();
    assert_eq!(rows.len(), 2, "{report}");
    for r in rows {
        assert!(
            r.contains("no CUDA device is visible") && r.contains("| 1.21 |"),
            "{r}"
        );
    }
}

#[test]
fn full_shape_refuses_the_cpu_and_a_machine_without_gpu() {
    let work = tempfile::tempdir().unwrap();
    let o = one_step(work.path(), &[("DEVICE", "cpu"), ("QUICK", "0")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("DEVICE=cpu needs QUICK=1"),
        "{}",
        text(&o)
    );
    if gpu_here() {
        eprintln!("SKIPPED (a GPU is here): the refusal without one");
        return;
    }
    let o = one_step(work.path(), &[("QUICK", "0")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("QUICK=1 DEVICE=cpu"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}
