//! An sbatch job-array script for a prepared grid directory: one array task per run, each
//! running `harness run DIR/<grid> --only <run-id>` (the same entry the local scheduler's children
//! use) from the directory `harness slurm` was called in, so a grid that outgrows one machine
//! runs on a cluster's own scheduler. A task trains the saved copy of the grid (`grid.yaml` and the
//! run's `config.yaml`), not the live grid file; relative model and data paths resolve as they
//! did when the script was written. Requeued or repeated tasks resume from their checkpoint;
//! finished runs are skipped.
use crate::rundir::Manifest;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// Absolute path of the prepared grid directory (`DIR/<grid>`).
    pub grid_dir: PathBuf,
    /// Absolute working directory of every task (where relative paths in the grid resolve).
    pub workdir: PathBuf,
    /// Absolute path of the `harness` binary on the cluster.
    pub exe: PathBuf,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// GPUs per run; 0 = CPU runs.
    pub gpus_per_run: usize,
    pub cpus_per_run: usize,
    /// `--mem` (e.g. `64G`).
    pub mem: Option<String>,
    /// `--time` (e.g. `24:00:00`).
    pub time: Option<String>,
    /// At most this many array tasks at once (`--array=…%N`).
    pub max_parallel: Option<usize>,
    /// Extra `#SBATCH` options, verbatim (`--qos=high`).
    pub extra: Vec<String>,
    /// Only these run ids (empty = all).
    pub only: Vec<String>,
}

/// Quote for bash: `'…'` with embedded quotes escaped.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script text.
pub fn script(grid: &Manifest, o: &SlurmOptions) -> String {
    let runs: Vec<_> = grid
        .runs
        .iter()
        .filter(|r| o.only.is_empty() || o.only.contains(&r.id))
        .collect();
    let gdir = &o.grid_dir;
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!(
        "# Grid `{}`: {} run(s), one array task each. Written by `harness slurm`; submit with\n\
         #   sbatch {}\n\
         # and, when the array is done, rebuild the tables with\n\
         #   {} table {}\n",
        grid.name,
        runs.len(),
        sh_quote(&gdir.join("slurm.sh").display().to_string()),
        sh_quote(&o.exe.display().to_string()),
        sh_quote(&gdir.display().to_string()),
    ));
    let mut opt = |k: &str, v: String| s.push_str(&format!("#SBATCH --{k}={v}\n"));
    opt("job-name", format!("harness-{}", grid.name));
    let mut array = format!("0-{}", runs.len().saturating_sub(1));
    if let Some(n) = o.max_parallel {
        array.push_str(&format!("%{n}"));
    }
    opt("array", array);
    opt("ntasks", "1".into());
    opt("chdir", o.workdir.display().to_string());
    opt("cpus-per-task", o.cpus_per_run.max(1).to_string());
    if o.gpus_per_run > 0 {
        opt("gres", format!("gpu:{}", o.gpus_per_run));
    }
    if let Some(p) = &o.partition {
        opt("partition", p.clone());
    }
    if let Some(a) = &o.account {
        opt("account", a.clone());
    }
    if let Some(m) = &o.mem {
        opt("mem", m.clone());
    }
    if let Some(t) = &o.time {
        opt("time", t.clone());
    }
    opt(
        "output",
        gdir.join("slurm").join("%A_%a.out").display().to_string(),
    );
    for e in &o.extra {
        s.push_str(&format!("#SBATCH {}\n", e.trim()));
    }
    s.push_str(&format!(
        "\nset -euo pipefail\ncd {}\n\nRUN_IDS=(\n",
        sh_quote(&o.workdir.display().to_string())
    ));
    for r in &runs {
        s.push_str(&format!("  {}  # {}\n", r.id, r.label.replace('\n', " ")));
    }
    s.push_str(")\nRUN_ID=\"${RUN_IDS[$SLURM_ARRAY_TASK_ID]}\"\n\n");
    let device = if o.gpus_per_run > 0 { "cuda" } else { "cpu" };
    s.push_str(&format!(
        "exec {} run {} --only \"$RUN_ID\" --device {device} \\\n    \
         --threads \"${{SLURM_CPUS_PER_TASK:-1}}\"\n",
        sh_quote(&o.exe.display().to_string()),
        sh_quote(&gdir.display().to_string()),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn one_array_task_per_run() {
        let g = crate::grid::Grid::parse(
            "base: { model: { name: tiny-qwen3 }, task: { name: addition }, algorithm: { name: grpo } }
seeds: [0, 1, 2]
axes: { optim.lr: [1.0e-4, 2.0e-4] }",
            Path::new("/x/my grid.yaml"),
        )
        .unwrap();
        let m = crate::grid::manifest::manifest(&g);
        let o = SlurmOptions {
            grid_dir: "/scratch/out/my grid".into(),
            workdir: "/home/me/project".into(),
            exe: "/opt/harness".into(),
            partition: Some("gpu".into()),
            account: None,
            gpus_per_run: 1,
            cpus_per_run: 8,
            mem: Some("64G".into()),
            time: None,
            max_parallel: Some(4),
            extra: vec!["--qos=high".into()],
            only: vec![],
        };
        let s = script(&m, &o);
        assert!(s.contains("#SBATCH --array=0-5%4\n"), "{s}");
        assert!(s.contains("#SBATCH --gres=gpu:1\n"));
        assert!(s.contains("#SBATCH --partition=gpu\n"));
        assert!(s.contains("#SBATCH --qos=high\n"));
        // The saved grid, from the directory the script was written in.
        assert!(
            s.contains("'/scratch/out/my grid' --only \"$RUN_ID\""),
            "{s}"
        );
        assert!(s.contains("#SBATCH --chdir=/home/me/project\n"), "{s}");
        assert!(s.contains("\ncd /home/me/project\n"), "{s}");
        assert!(!s.contains("my grid.yaml"), "{s}");
        for r in &g.runs {
            assert!(s.contains(&format!("  {}  # {}\n", r.id, r.label)));
        }
        // Every #SBATCH line comes before the first command.
        let first_cmd = s.find("set -euo").unwrap();
        assert!(s.rfind("#SBATCH").unwrap() < first_cmd);
    }
}
