//! `harness table DIR/<grid>`: rebuild a grid's tables (Polars) from its run directories.
use super::CliResult;
use harness::table::{build_tables, TableOptions};
use std::path::PathBuf;

/// Write `tables/steps.parquet` (every step of every run, axis values as columns) and
/// `tables/summary.parquet` + `summary.csv` (per grid point: final / best / last-k metrics with
/// mean, std, 95 % CI and n over seeds, divergence counts); also each run's metrics as Parquet.
#[derive(clap::Args)]
pub struct Args {
    /// A grid's output directory (`DIR/<grid>`, holding `grid.yaml` and `runs/`).
    dir: PathBuf,
    /// Window of the smoothed last-k training statistics.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    last_k: u64,
}

pub fn run(a: Args) -> CliResult {
    let r = build_tables(
        &a.dir,
        &TableOptions {
            last_k: a.last_k as usize,
        },
    )?;
    println!(
        "wrote {}/{{steps.parquet, summary.parquet, summary.csv}}: {} run(s), {} grid point(s), \
         {} step row(s), {} metric(s)",
        r.dir.display(),
        r.runs,
        r.points,
        r.step_rows,
        r.metrics
    );
    Ok(())
}
