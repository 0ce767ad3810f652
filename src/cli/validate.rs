//! `harness validate <grid>`: parse, expand and check a grid file, listing every problem at once
//! as `file:line: key.path: message` (exit 2, nothing written).
use super::{CliResult, Failure};
use harness::grid::Grid;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Check a grid file: its structure, every run's resolved config (ranges, enums, cross-field
/// rules), and that no two runs are the same.
#[derive(clap::Args)]
pub struct Args {
    /// Grid file (`experiments/*.yaml`).
    grid: PathBuf,
}

pub fn run(a: Args) -> CliResult {
    let g = load(&a.grid)?;
    let points: BTreeSet<&str> = g.runs.iter().map(|r| r.point.as_str()).collect();
    println!(
        "{}: ok: grid `{}`: {} run(s), {} grid point(s)",
        a.grid.display(),
        g.name,
        g.runs.len(),
        points.len()
    );
    for c in &g.cases {
        let n = g
            .runs
            .iter()
            .filter(|r| r.case.as_deref() == Some(c.as_str()))
            .count();
        println!("  case {c}: {n} run(s)");
    }
    Ok(())
}

/// Load a grid, printing each problem on stderr; any problem is bad input (exit 2).
pub fn load(path: &Path) -> Result<Grid, Failure> {
    Grid::load(path).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("{e}");
        }
        Failure::bad_input(anyhow::anyhow!(
            "{} problem(s) in {}",
            errs.0.len(),
            path.display()
        ))
    })
}
