//! `harness validate <grid>`: parse, expand and check a grid file, listing every problem at once
//! as `file:line: key.path: message` (exit 2, nothing written). Also the `--set` overrides that
//! `validate`, `plan`, `run` and `slurm` share, and the grid loading they share.
use super::{CliResult, Failure};
use harness::grid::{Grid, LoadOptions, Override};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Check a grid file: its structure, every run's resolved config (ranges, enums, cross-field
/// rules), that no two runs are the same, and that the files runs name exist (model directories
/// with config.json, task data files, an external engine's rollout file, line by line).
#[derive(clap::Args)]
pub struct Args {
    /// Grid file (`experiments/*.yaml`).
    grid: PathBuf,
    #[command(flatten)]
    set: SetArgs,
    /// Check the config only, not that the files it names exist (a grid written before its
    /// weights and data are downloaded).
    #[arg(long)]
    no_file_checks: bool,
}

/// `--set key.path=value`, repeatable: change the grid's `base` for this invocation.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SetArgs {
    /// Override a key of the grid's `base` (repeatable): `--set rollout.group_size=4`,
    /// `--set 'optim.betas=[0.9, 0.99]'`, `--set model.lora=null`. Values are YAML and replace
    /// what is there, as a case's `set` does. Refused for a key an axis or a case's `set` also
    /// sets. Recorded in the saved grid (`grid.yaml`) and each run's config.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE", value_parser = parse_override)]
    pub set: Vec<Override>,
}

fn parse_override(s: &str) -> Result<Override, String> {
    s.parse()
}

pub fn run(a: Args) -> CliResult {
    let g = load_grid(&a.grid, &a.set, !a.no_file_checks)?;
    let points: BTreeSet<&str> = g.runs.iter().map(|r| r.point.as_str()).collect();
    println!(
        "{}: ok: grid `{}`: {} run(s), {} grid point(s)",
        a.grid.display(),
        g.name,
        g.runs.len(),
        points.len()
    );
    for o in &g.overrides {
        println!("  --set {o}");
    }
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

/// Load a grid with its overrides, checking the files its runs name (what `run` and `slurm` do).
pub fn load(path: &Path, set: &SetArgs) -> Result<Grid, Failure> {
    load_grid(path, set, true)
}

/// Load a grid, printing each problem on stderr; any problem is bad input (exit 2).
pub fn load_grid(path: &Path, set: &SetArgs, check_inputs: bool) -> Result<Grid, Failure> {
    let opts = LoadOptions {
        overrides: set.set.clone(),
        check_inputs,
    };
    Grid::load_with(path, &opts).map_err(|errs| {
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
