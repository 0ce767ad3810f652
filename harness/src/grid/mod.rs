//! Declared ablation grids (`experiments/*.yaml`): parse → expand into runs → validate every run
//! once; plan their cost; run them (one OS process per run) with resume; write Slurm job arrays.
//!
//! A grid file:
//! ```yaml
//! name: tolerance-sweep            # optional, defaults to the file stem
//! description: DC-GRPO tolerance sweep vs GRPO
//! base:                             # a RunConfig; dotted keys allowed
//!   model: { name: tiny-qwen3 }
//!   task: { name: addition }
//!   algorithm: { name: grpo }
//!   rollout.engine.precision: bf16
//! seeds: [0, 1, 2]
//! axes:                             # cartesian product, applied to every case
//!   optim.lr: [1.0e-4, 3.0e-4]
//! paired:                           # keys of one group move together
//!   - { rollout.group_size: [4, 8], rollout.prompts_per_step: [16, 8] }
//! cases:                            # named variants with their own axes
//!   grpo: {}
//!   dcmdp:
//!     set: { algorithm: { name: dcmdp, lambda_0: 0.1 } }
//!     axes: { algorithm.c: [0.001, 0.0037, 0.01] }
//! ```
//! Resolution of one run: `base` ← `--set` overrides ← the case's `set` ← its axis values. Each
//! entry (dotted key or not) replaces the whole sub-tree it names; `null` removes it (falling back
//! to the default). A mapping that would drop keys set before it (`set: { model: { name: x } }`
//! when `base` set `model.lora`) is refused, naming them: restate them, set them to `null`, or set
//! single keys (`model.name: x`). The result is checked into a [`RunConfig`] by
//! [`config::check_document`](crate::config::check_document), every problem at once. Runs per
//! case = Π (global axis lengths) × Π (case axis lengths) × seeds.
use crate::config::RunConfig;
use std::fmt;
use std::path::{Path, PathBuf};

pub mod expand;
pub mod manifest;
pub mod plan;
pub mod runner;
pub mod schedule;
pub mod slurm;
pub mod spec;

pub use expand::{canonical_json, short_hash};
pub use spec::{GridSpec, Override};

/// One problem in a grid file: the file, the line that set the value (when known) or the `--set`
/// override that did, the full key path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GridError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// The `--set key=value` the value came from.
    pub set: Option<String>,
    pub path: String,
    pub msg: String,
}

impl fmt::Display for GridError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(s) = &self.set {
            write!(f, ": --set {s}")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.msg)
        } else {
            write!(f, ": {}: {}", self.path, self.msg)
        }
    }
}

/// All problems found in a grid file, sorted by line.
#[derive(Debug, Clone, PartialEq)]
pub struct GridErrors(pub Vec<GridError>);

impl fmt::Display for GridErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        crate::config::write_lines(f, &self.0)
    }
}

impl std::error::Error for GridErrors {}

impl From<GridErrors> for crate::Error {
    fn from(e: GridErrors) -> Self {
        crate::Error::Input(format!("invalid grid:\n{e}"))
    }
}

/// One run of a grid: a resolved, validated config and a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Short stable hash of the resolved config and the seed (10 hex digits).
    pub id: String,
    /// Hash of the resolved config alone: runs that differ only by seed share it.
    pub point: String,
    /// Readable: `case/key=value/…/seed=S`.
    pub label: String,
    /// The label without the seed (names the grid point).
    pub point_label: String,
    pub case: Option<String>,
    pub seed: i64,
    /// The axis values this run takes, as `(dotted key, value)` in declaration order.
    pub axes: Vec<(String, serde_yaml::Value)>,
    pub config: RunConfig,
}

/// A parsed, expanded and validated grid.
#[derive(Debug, Clone)]
pub struct Grid {
    pub name: String,
    pub description: Option<String>,
    /// The grid file it came from.
    pub file: PathBuf,
    /// Every axis key of every case, in declaration order (table columns).
    pub axis_keys: Vec<String>,
    /// Case names in declaration order (empty when the file declares none).
    pub cases: Vec<String>,
    /// The `--set` overrides applied to `base` (part of every run's config; children and saved
    /// grids carry them).
    pub overrides: Vec<Override>,
    pub runs: Vec<Run>,
}

/// How a grid file is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--set` overrides of `base`.
    pub overrides: Vec<Override>,
    /// Check the files runs name (model directories, data files, an external engine's rollouts;
    /// see [`config::inputs`](crate::config::inputs)). Off for planning before a download.
    pub check_inputs: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            overrides: vec![],
            check_inputs: true,
        }
    }
}

impl Grid {
    /// Read, expand and validate a grid file (inputs checked, no overrides). Every problem is
    /// returned at once.
    pub fn load(path: &Path) -> Result<Grid, GridErrors> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// [`load`](Grid::load) with overrides and options.
    pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Grid, GridErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            GridErrors(vec![GridError {
                file: path.to_path_buf(),
                line: None,
                set: None,
                path: String::new(),
                msg: format!("cannot read: {e}"),
            }])
        })?;
        Self::parse_with(&text, path, opts)
    }

    /// Expand and validate grid text; `file` names it in errors and gives the default name.
    pub fn parse(text: &str, file: &Path) -> Result<Grid, GridErrors> {
        Self::parse_with(text, file, &LoadOptions::default())
    }

    /// [`parse`](Grid::parse) with overrides and options.
    pub fn parse_with(text: &str, file: &Path, opts: &LoadOptions) -> Result<Grid, GridErrors> {
        expand::expand(text, file, opts)
    }

    /// The run with this id.
    pub fn run(&self, id: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// `DIR/<grid name>`.
    pub fn out_dir(&self, out: &Path) -> PathBuf {
        out.join(&self.name)
    }
}

#[cfg(test)]
mod tests;
