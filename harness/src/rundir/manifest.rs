//! `DIR/<grid>/grid.yaml`: the resolved grid (every run's record and full config). Tables,
//! reports and the runs' own processes read runs from here, not from the grid file, which may
//! have changed since.
use super::{atomic_write, RunRecord, MANIFEST_FILE, SOURCE_FILE};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The grid file it was resolved from.
    pub source: PathBuf,
    /// Axis keys in declaration order (the tables' axis columns).
    #[serde(default)]
    pub axes: Vec<String>,
    #[serde(default)]
    pub cases: Vec<String>,
    /// `--set key=value` overrides of the grid file's `base` (already in each run's config).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    pub runs: Vec<RunRecord>,
}

impl Manifest {
    pub fn read(grid_dir: &Path) -> Result<Manifest> {
        let path = grid_dir.join(MANIFEST_FILE);
        if !path.is_file() {
            return Err(Error::Input(format!(
                "{}: not a grid output directory (no {MANIFEST_FILE}; expected DIR/<grid> \
                 written by `harness run`)",
                grid_dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_yaml::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: not a resolved grid: {e}", path.display())))
    }

    pub fn write(&self, grid_dir: &Path) -> Result<()> {
        let text = serde_yaml::to_string(self).expect("manifest serialises");
        atomic_write(&grid_dir.join(MANIFEST_FILE), text.as_bytes())
    }

    /// The run with this id.
    pub fn run(&self, id: &str) -> Option<&RunRecord> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// Runs named by `sel` (a run id, a run label or a grid point label; see
    /// [`RunRecord::is_named`]).
    pub fn select(&self, sel: &str) -> Vec<&RunRecord> {
        self.runs.iter().filter(|r| r.is_named(sel)).collect()
    }
}

/// The grid file's text as saved beside the manifest, if any.
pub fn read_source(grid_dir: &Path) -> Option<String> {
    std::fs::read_to_string(grid_dir.join(SOURCE_FILE)).ok()
}

/// Save the grid file's text beside the manifest.
pub fn write_source(grid_dir: &Path, text: &str) -> Result<()> {
    atomic_write(&grid_dir.join(SOURCE_FILE), text.as_bytes())
}
