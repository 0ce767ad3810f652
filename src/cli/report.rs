//! `harness report DIR/<grid>`: `report/report.md` and SVG curves from a grid's run directories.
use super::CliResult;
use anyhow::Context;
use harness::report::{write_report, ReportOptions};
use std::path::PathBuf;

/// Write `DIR/<grid>/report/report.md` (or into `--out DIR`): the grid's description; per grid
/// point mean ± 95 % CI over seeds, seed count and divergences of reward, eval accuracy,
/// discrepancy, λ, entropy and grad norm; checked claims; a "paper vs this run" table per
/// published table; and one SVG per curve (mean line and min–max seed band per grid point, one
/// figure per value of the grouping axes). A claim naming a grid point or metric the grid lacks,
/// or an unknown --group-by axis, is bad input (exit 2).
#[derive(clap::Args)]
pub struct Args {
    /// A grid's output directory (`DIR/<grid>`, holding `grid.yaml` and `runs/`).
    dir: PathBuf,
    /// Window of the smoothed "last k" statistics.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    last_k: u64,
    /// Trailing-mean window of the training curves in steps (0: about a twentieth of the run).
    #[arg(long, default_value_t = 0)]
    smooth: usize,
    /// Axes whose values split the curves into separate figures; points without such an axis
    /// appear in every figure; `--group-by ''` puts every point in one figure per metric.
    /// Default: the axes every grid point has, so that each figure compares the cases at one
    /// setting; a sweep without cases gets one figure comparing its last axis's values.
    #[arg(long, value_delimiter = ',')]
    group_by: Option<Vec<String>>,
    /// A published table (`baselines/paper-*.csv`) to set beside this run (repeatable; default:
    /// every `baselines/paper-*.csv` next to the grid file with a row matching a grid point).
    #[arg(long)]
    paper: Vec<PathBuf>,
    /// Claims to check (default: `claims/<grid file stem>.yaml` beside the grid file, if any).
    #[arg(long)]
    claims: Option<PathBuf>,
    /// Write here instead of `DIR/<grid>/report` (e.g. `reports/<grid>` to commit it). Files an
    /// earlier report wrote there (listed in its `.report-files`) are replaced; nothing else in
    /// the folder is touched.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult {
    let r = write_report(
        &a.dir,
        &ReportOptions {
            last_k: a.last_k as usize,
            smooth: a.smooth,
            group_by: a
                .group_by
                .map(|v| v.into_iter().filter(|k| !k.trim().is_empty()).collect()),
            papers: a.paper,
            claims: a.claims,
            out: a.out,
        },
    )
    .with_context(|| format!("report of {}", a.dir.display()))?;
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    if !r.removed.is_empty() {
        eprintln!(
            "removed {} file(s) of the previous report that this one no longer has",
            r.removed.len()
        );
    }
    println!(
        "wrote {} and {} SVG(s){}{}",
        r.markdown.display(),
        r.svgs.len(),
        if r.papers.is_empty() {
            String::new()
        } else {
            format!(
                "; paper table(s): {}",
                r.papers
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        r.claims
            .map(|c| format!("; claims: {}", c.display()))
            .unwrap_or_default()
    );
    Ok(())
}
