//! `harness report DIR/<grid>`: `report/report.md` and SVG curves from a grid's run directories.
use super::CliResult;
use anyhow::Context;
use harness::report::{write_report, ReportOptions};
use std::path::PathBuf;

/// Write `DIR/<grid>/report/report.md` (or `--out DIR`) (the grid's description; per grid point mean ± 95 % CI over
/// seeds, seed count and divergences of reward, eval accuracy, discrepancy, λ, entropy and grad
/// norm; checked claims; a "paper vs this run" table where a published table matches) and one SVG
/// per curve (mean line and min–max seed band per grid point, split by the grouping axes).
#[derive(clap::Args)]
pub struct Args {
    /// A grid's output directory (`DIR/<grid>`, holding `grid.yaml` and `runs/`).
    dir: PathBuf,
    /// Window of the smoothed "last k" statistics.
    #[arg(long, default_value_t = 5)]
    last_k: usize,
    /// Trailing-mean window of the training curves in steps (0: about a twentieth of the run).
    #[arg(long, default_value_t = 0)]
    smooth: usize,
    /// Axes whose values split the curves into separate figures (default: the axes every grid
    /// point has); points without such an axis appear in every figure.
    #[arg(long, value_delimiter = ',')]
    group_by: Option<Vec<String>>,
    /// A published table (`baselines/paper-*.csv`) to set beside this run (repeatable; default:
    /// every `baselines/paper-*.csv` next to the grid file with a row matching a grid point).
    #[arg(long)]
    paper: Vec<PathBuf>,
    /// Claims to check (default: `claims/<grid file stem>.yaml` beside the grid file, if any).
    #[arg(long)]
    claims: Option<PathBuf>,
    /// Write here instead of `DIR/<grid>/report` (e.g. `reports/<grid>` to commit it); older
    /// `.md` and `.svg` files there are replaced.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult {
    let r = write_report(
        &a.dir,
        &ReportOptions {
            last_k: a.last_k,
            smooth: a.smooth,
            group_by: a.group_by,
            papers: a.paper,
            claims: a.claims,
            out: a.out,
        },
    )
    .with_context(|| format!("report of {}", a.dir.display()))?;
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
