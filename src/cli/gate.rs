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
/// from this run instead (keeping its tolerances): the deliberate way to accept a change; it
/// refuses to drop the rows of baseline points this grid lacks unless `--force`.
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
    /// With --update: also drop the rows of baseline points this grid does not have.
    #[arg(long, requires = "update")]
    force: bool,
    /// Window of new checks written by --update (existing rows keep theirs; default 5).
    #[arg(long, requires = "update", value_parser = clap::value_parser!(u64).range(1..))]
    last_k: Option<u64>,
    /// Also write the Markdown table to this file.
    #[arg(long, conflicts_with = "update")]
    markdown: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult {
    let g = GridResults::load(&a.dir).with_context(|| format!("gate {}", a.dir.display()))?;
    if a.update {
        return update_baseline(&g, &a);
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

fn update_baseline(g: &GridResults, a: &Args) -> CliResult {
    let old = if a.baseline.exists() {
        Some(Baseline::read(&a.baseline)?)
    } else {
        None
    };
    let last_k = a.last_k.unwrap_or(5) as usize;
    let up = update(g, old.as_ref(), &a.baseline, last_k);
    if !up.dropped.is_empty() && !a.force {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "{} has rows for grid point(s) that {} does not have: {}; nothing written (run the \
             grid those rows come from, or pass --force to drop them)",
            a.baseline.display(),
            a.dir.display(),
            up.dropped.join(", ")
        )));
    }
    if let Some(dir) = a.baseline.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))
            .map_err(Failure::bad_input)?;
    }
    let b = up.baseline;
    std::fs::write(&a.baseline, b.to_csv())
        .with_context(|| format!("writing {}", a.baseline.display()))
        .map_err(Failure::bad_input)?;
    if !up.dropped.is_empty() {
        eprintln!("dropped the rows of: {}", up.dropped.join(", "));
    }
    println!(
        "wrote {}: {} check(s) over {} grid point(s)",
        a.baseline.display(),
        b.rows.len(),
        g.points.len()
    );
    Ok(())
}
