//! `DIR/<grid>/grid.yaml`: the resolved grid (every run's id, label, axis values, seed and full
//! config). Tables and reports read runs from here, not from the grid file, which may have changed.
use super::fsutil::atomic_write;
use super::Grid;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "grid.yaml";

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
    pub runs: Vec<ManifestRun>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRun {
    pub id: String,
    pub point: String,
    pub label: String,
    pub point_label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    pub seed: i64,
    /// Axis key → value for this run, in declaration order.
    #[serde(default)]
    pub axes: serde_yaml::Mapping,
    /// The resolved `RunConfig` (kept as YAML so old grids stay readable as the schema grows).
    pub config: serde_yaml::Value,
}

impl Manifest {
    pub fn from_grid(grid: &Grid) -> Manifest {
        Manifest {
            name: grid.name.clone(),
            description: grid.description.clone(),
            source: grid.file.clone(),
            axes: grid.axis_keys.clone(),
            cases: grid.cases.clone(),
            overrides: grid.overrides.iter().map(|o| o.to_string()).collect(),
            runs: grid
                .runs
                .iter()
                .map(|r| ManifestRun {
                    id: r.id.clone(),
                    point: r.point.clone(),
                    label: r.label.clone(),
                    point_label: r.point_label.clone(),
                    case: r.case.clone(),
                    seed: r.seed,
                    axes: r
                        .axes
                        .iter()
                        .map(|(k, v)| (serde_yaml::Value::String(k.clone()), v.clone()))
                        .collect(),
                    config: serde_yaml::to_value(&r.config).expect("config serialises"),
                })
                .collect(),
        }
    }

    pub fn read(grid_dir: &Path) -> Result<Manifest> {
        let path = grid_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_yaml::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: not a resolved grid: {e}", path.display())))
    }

    pub fn write(&self, grid_dir: &Path) -> Result<()> {
        let text = serde_yaml::to_string(self).expect("manifest serialises");
        atomic_write(&grid_dir.join(MANIFEST_FILE), text.as_bytes())
    }
}
