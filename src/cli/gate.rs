//! `harness gate DIR/<grid> --baseline FILE`: the stability regression gate.
use super::{CliResult, Failure};
use anyhow::Context;
use harness::report::gate::{evaluate, update, Baseline};
use harness::report::GridResults;
use std::path::PathBuf;

/// Compare each grid point's smoothed final metrics (per seed the mean of its last k logged
/// values, then the mean over seeds) with a baseline CSV within its tolerances; fail on any
/// divergence where the baseline had none. Prints a Markdown table (metric / baseline / now /
/// delta / verdict). Exit 0: pass, 1: regression, 2: bad input. `--update` rewrites the baseline
/// from this run instead (keeping its tolerances): the deliberate way to accept a change.
#[derive(clap::Args)]
pub struct Args {
    /// A grid's output directory (`DIR/<grid>`, holding `grid.yaml` and `runs/`).
    dir: PathBuf,
    /// Baseline CSV (`baselines/<name>.csv`).
    #[arg(long)]
    baseline: PathBuf,
    /// Rewrite the baseline's values from this run (new grid points get default checks).
    #[arg(long)]
    update: bool,
    /// Window of new checks written by `--update` (existing rows keep theirs).
    #[arg(long, default_value_t = 5)]
    last_k: usize,
    /// Also write the Markdown table to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult {
    let g = GridResults::load(&a.dir).with_context(|| format!("gate {}", a.dir.display()))?;
    if a.update {
        let old = if a.baseline.exists() {
            Some(Baseline::read(&a.baseline)?)
        } else {
            None
        };
        let b = update(&g, old.as_ref(), &a.baseline, a.last_k);
        if let Some(dir) = a.baseline.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {}", dir.display()))
                .map_err(Failure::bad_input)?;
        }
        std::fs::write(&a.baseline, b.to_csv())
            .with_context(|| format!("writing {}", a.baseline.display()))
            .map_err(Failure::bad_input)?;
        println!(
            "wrote {}: {} check(s) over {} grid point(s)",
            a.baseline.display(),
            b.rows.len(),
            g.points.len()
        );
        return Ok(());
    }
    let b = Baseline::read(&a.baseline)?;
    let r = evaluate(&g, &b);
    let md = r.markdown();
    print!("{md}");
    if let Some(p) = &a.markdown {
        std::fs::write(p, &md)
            .with_context(|| format!("writing {}", p.display()))
            .map_err(Failure::bad_input)?;
    }
    if r.passed() {
        Ok(())
    } else {
        Err(Failure {
            code: 1,
            err: anyhow::anyhow!(
                "{} regression(s) against {}",
                r.regressions(),
                a.baseline.display()
            ),
        })
    }
}
