//! Tests of the `harness` binary.
mod bench_limits;
mod checkpoint;
mod config;
mod error_texts;
mod export_files;
mod gate_mutants;
mod gpu_bench;
mod grid;
mod hub;
mod logprobs_lines;
mod lora_targets;
mod math;
mod model;
mod objective;
mod one_step;
mod output_dirs;
mod plan_1gpu;
mod report;
mod report_files;
mod run_dir;
mod scripts;
mod server_engine;
mod tensorboard;
mod verl_backend;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command's stdout then stderr, for assertion messages.
fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `harness run GRID --jobs 1 --resume --out OUT`, which must succeed.
fn run_resume(grid: &Path, out: &Path) {
    let o = harness()
        .args([
            "run",
            grid.to_str().unwrap(),
            "--jobs",
            "1",
            "--resume",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// The project venv's Python (`$HARNESS_VENV`, else `~/.cache/harness/venv`) when it can import
/// `modules` (comma-separated, as in a Python `import`).
fn venv_python(modules: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("HARNESS_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/harness/venv"))
        })?;
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}
