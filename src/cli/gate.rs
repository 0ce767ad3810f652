//! `harness gate DIR/<grid> --baseline FILE`: the stability regression gate.
use super::{CliResult, Failure};
use anyhow::Context;
use harness::report::gate::{evaluate, from_seeds, update, Baseline, DEFAULT_FLOOR};
use harness::report::GridResults;
use std::path::PathBuf;

/// Compare each grid point's smoothed final metrics (per seed the mean of its last k logged
/// values, then the mean over seeds) with a baseline CSV within its tolerances; fail on any
/// divergence where the baseline had none. Prints a Markdown table (metric / baseline / now /
/// delta / verdict). Exit 0: pass, 1: regression, 2: bad input. `--update` rewrites the baseline
/// from this run instead (keeping its tolerances): the deliberate way to accept a change; it
/// refuses to drop the rows of baseline points this grid lacks unless `--force`.
/// `--update --from-seeds K` also derives every tolerance from this run's seed noise: K times the
/// standard deviation over seeds (≥ 4 finished seeds per point), at least `--floor` of the value.
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
    /// With --update: derive each tolerance from this run's seed noise, K·σ (σ: the standard
    /// deviation over seeds of the per-seed value; every point needs ≥ 4 finished seeds).
    #[arg(long, value_name = "K", requires = "update", value_parser = positive)]
    from_seeds: Option<f64>,
    /// With --from-seeds: the smallest tolerance, as a fraction of the value (so that σ = 0
    /// cannot make a check impossible).
    #[arg(long, value_name = "FRACTION", requires = "from_seeds", value_parser = non_negative)]
    floor: Option<f64>,
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
    let up = match a.from_seeds {
        Some(k) => from_seeds(
            g,
            old.as_ref(),
            &a.baseline,
            last_k,
            k,
            a.floor.unwrap_or(DEFAULT_FLOOR),
        )?,
        None => update(g, old.as_ref(), &a.baseline, last_k),
    };
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
    if !up.not_learning.is_empty() {
        eprintln!(
            "no learning check for: {} — the run itself shows no learning at that confidence \
             (train longer or with more seeds to gate on it)",
            up.not_learning.join(", ")
        );
    }
    let how = match a.from_seeds {
        Some(k) => format!(
            ", tolerances {k}·σ over seeds (at least {} of the value)",
            a.floor.unwrap_or(DEFAULT_FLOOR)
        ),
        None => String::new(),
    };
    println!(
        "wrote {}: {} check(s) over {} grid point(s){how}",
        a.baseline.display(),
        b.rows.len(),
        g.points.len()
    );
    Ok(())
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("`{s}` is not a number ≥ 0")),
    }
}
