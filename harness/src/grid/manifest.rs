//! A grid as the run directory stores it: [`Grid`] → [`Manifest`], [`Run`] → [`RunRecord`]; and
//! what changed between a saved grid and the grid file now (for `run --resume`).
use super::{Grid, Run};
use crate::rundir::{Manifest, RunRecord};
use std::fmt::Write;

/// The stored record of a run.
pub fn record(run: &Run) -> RunRecord {
    RunRecord {
        id: run.id.clone(),
        point: run.point.clone(),
        label: run.label.clone(),
        point_label: run.point_label.clone(),
        case: run.case.clone(),
        seed: run.seed,
        axes: run.axes.clone(),
        config: serde_yaml::to_value(&run.config).expect("config serialises"),
    }
}

/// The manifest of a grid.
pub fn manifest(grid: &Grid) -> Manifest {
    Manifest {
        name: grid.name.clone(),
        description: grid.description.clone(),
        source: grid.file.clone(),
        axes: grid.axis_keys.clone(),
        cases: grid.cases.clone(),
        overrides: grid.overrides.iter().map(|o| o.to_string()).collect(),
        runs: grid.runs.iter().map(record).collect(),
    }
}

/// How the grid file's runs differ from a saved grid's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GridChange {
    /// Runs of the grid file that the saved grid lacks.
    pub added: Vec<RunRecord>,
    /// Saved runs that the grid file no longer has.
    pub removed: Vec<RunRecord>,
    /// Runs with the same id whose label changed: `(saved, now)`.
    pub renamed: Vec<(RunRecord, RunRecord)>,
}

impl GridChange {
    pub fn between(saved: &Manifest, now: &Manifest) -> GridChange {
        let mut c = GridChange::default();
        for r in &now.runs {
            match saved.run(&r.id) {
                None => c.added.push(r.clone()),
                Some(s) if s.label != r.label || s.point_label != r.point_label => {
                    c.renamed.push((s.clone(), r.clone()))
                }
                Some(_) => {}
            }
        }
        c.removed = saved
            .runs
            .iter()
            .filter(|s| now.run(&s.id).is_none())
            .cloned()
            .collect();
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.renamed.is_empty()
    }

    /// Added runs that reuse a saved run's label (a changed config under the same name): an
    /// extended grid cannot hold both.
    pub fn label_clashes(&self, saved: &Manifest) -> Vec<&RunRecord> {
        self.added
            .iter()
            .filter(|a| saved.runs.iter().any(|s| s.label == a.label))
            .collect()
    }

    /// One line per changed run: `+ label (id)`, `- label (id)`, `~ old → new (id)`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for r in &self.removed {
            let _ = writeln!(s, "  - {} ({}): only in the saved grid", r.label, r.id);
        }
        for r in &self.added {
            let _ = writeln!(s, "  + {} ({}): new in the grid file", r.label, r.id);
        }
        for (a, b) in &self.renamed {
            let _ = writeln!(s, "  ~ {} → {} ({}): renamed", a.label, b.label, a.id);
        }
        s
    }
}

/// The saved grid extended with the grid file's new runs: saved runs keep their records (their
/// results stay in the tables), new ones are appended; axes and cases are the union; name,
/// description and source are the file's.
pub fn extend(saved: &Manifest, now: &Manifest) -> Manifest {
    let mut m = now.clone();
    m.runs = saved.runs.clone();
    m.runs.extend(
        now.runs
            .iter()
            .filter(|r| saved.run(&r.id).is_none())
            .cloned(),
    );
    let union = |a: &[String], b: &[String]| {
        let mut v = a.to_vec();
        v.extend(b.iter().filter(|x| !a.contains(x)).cloned());
        v
    };
    m.axes = union(&saved.axes, &now.axes);
    m.cases = union(&saved.cases, &now.cases);
    m
}

/// A unified diff of two texts (the saved grid file and the grid file now).
pub fn text_diff(saved: &str, now: &str, saved_name: &str, now_name: &str) -> String {
    similar::TextDiff::from_lines(saved, now)
        .unified_diff()
        .context_radius(2)
        .header(saved_name, now_name)
        .to_string()
}
