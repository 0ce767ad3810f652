//! Reports and the stability gate, from a grid's run directories (`DIR/<grid>`).
//!
//! - [`write_report`]: `report/report.md` (GitHub Markdown: the grid's description, a table per
//!   grid point with mean ± 95 % CI over seeds, divergences, optional claims and "paper vs this
//!   run" tables) and one SVG per curve (plotters, no system fonts: text is left to the viewer).
//! - [`gate`]: compare smoothed final metrics with a baseline CSV within declared tolerances.
//!
//! Like the tables, everything here is derived data: it reads the run directory
//! ([`crate::rundir`]: `grid.yaml`, `runs/*/status.json` and the metric logs), and knows nothing
//! about tensors.
use crate::grid::expand::fmt_value;
use crate::rundir::{atomic_write, load_grid, LoadedRun, Manifest, RunState, REPORT_DIR};
use crate::table::{seed_stats, SeedStats};
use crate::{Error, Result};
use rayon::prelude::*;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub mod claims;
pub mod csv;
pub mod gate;
pub mod markdown;
pub mod paper;
pub mod plots;

/// One grid point: the runs that differ only by seed.
#[derive(Debug, Clone)]
pub struct Point {
    /// `case/key=value/…`, or the grid name when the grid has a single point.
    pub label: String,
    pub case: Option<String>,
    pub axes: Vec<(String, Value)>,
    /// The resolved run config (of the first seed) as YAML.
    pub config: Value,
    pub runs: Vec<LoadedRun>,
}

/// Which per-seed value a statistic is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Mean of the last k logged values.
    LastK(usize),
    /// The last logged value.
    Final,
    /// Learning progress: the mean of the last k logged values minus the mean of the first k
    /// (needs at least 2k values).
    Gain(usize),
}

impl Point {
    pub fn n_finished(&self) -> usize {
        self.runs.iter().filter(|r| r.finished()).count()
    }
    pub fn count(&self, state: RunState) -> usize {
        self.runs
            .iter()
            .filter(|r| r.state() == Some(state))
            .count()
    }
    pub fn divergences(&self) -> usize {
        self.count(RunState::Diverged)
    }
    /// Runs neither done, diverged nor failed.
    pub fn unfinished(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| !r.state().is_some_and(RunState::is_over))
            .count()
    }
    /// Statistics over the finished seeds of one per-seed value of `metric`.
    pub fn stats(&self, metric: &str, stat: Stat) -> SeedStats {
        let xs: Vec<f64> = self
            .per_seed(metric, stat)
            .iter()
            .map(|(_, x)| *x)
            .collect();
        seed_stats(&xs)
    }
    /// `(seed, value)` of one per-seed value of `metric`, for the finished seeds with a finite
    /// value, in run order.
    pub fn per_seed(&self, metric: &str, stat: Stat) -> Vec<(i64, f64)> {
        self.runs
            .iter()
            .filter(|r| r.finished())
            .filter_map(|r| {
                let x = match stat {
                    Stat::LastK(k) => r.last_k(metric, k),
                    Stat::Final => r.final_value(metric),
                    Stat::Gain(k) => r.gain(metric, k),
                }?;
                x.is_finite().then_some((r.record.seed, x))
            })
            .collect()
    }
    /// A value of the resolved config at a dotted path (`algorithm.c`).
    pub fn config_value(&self, dotted: &str) -> Option<&Value> {
        dotted
            .split('.')
            .try_fold(&self.config, |v, k| v.as_mapping()?.get(k))
    }
    /// The value of an axis at this point, if the point has that axis.
    pub fn axis(&self, key: &str) -> Option<&Value> {
        self.axes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// A grid's results, grouped by grid point in grid order.
#[derive(Debug, Clone)]
pub struct GridResults {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub points: Vec<Point>,
}

impl GridResults {
    /// Read `DIR/<grid>`: the manifest, every run's status and metric logs.
    pub fn load(grid_dir: &Path) -> Result<GridResults> {
        let (m, runs) = load_grid(grid_dir)?;
        Ok(Self::from_parts(grid_dir, m, runs))
    }

    /// Group runs into grid points, in grid order.
    pub fn from_parts(dir: &Path, manifest: Manifest, runs: Vec<LoadedRun>) -> GridResults {
        let mut points: Vec<Point> = Vec::new();
        for run in runs {
            if let Some(p) = points
                .iter_mut()
                .find(|p| p.runs[0].record.point == run.record.point)
            {
                p.runs.push(run);
                continue;
            }
            let r = &run.record;
            let label = if r.point_label.is_empty() {
                manifest.name.clone()
            } else {
                r.point_label.clone()
            };
            points.push(Point {
                label,
                case: r.case.clone(),
                axes: r.axes.clone(),
                config: r.config.clone(),
                runs: vec![run],
            });
        }
        GridResults {
            dir: dir.to_path_buf(),
            manifest,
            points,
        }
    }

    /// The point with this label.
    pub fn point(&self, label: &str) -> Option<&Point> {
        self.points.iter().find(|p| p.label == label)
    }

    /// Every metric any run logs (training and eval), sorted.
    pub fn metric_names(&self) -> BTreeSet<String> {
        crate::rundir::logs::metric_names(
            self.points
                .iter()
                .flat_map(|p| &p.runs)
                .flat_map(|r| r.metrics.iter().chain(&r.eval)),
        )
    }

    /// Distinct seeds, sorted.
    pub fn seeds(&self) -> Vec<i64> {
        let s: BTreeSet<i64> = self
            .points
            .iter()
            .flat_map(|p| &p.runs)
            .map(|r| r.record.seed)
            .collect();
        s.into_iter().collect()
    }

    /// Axes present at every point (the grid's global axes), in declaration order.
    pub fn global_axes(&self) -> Vec<String> {
        self.manifest
            .axes
            .iter()
            .filter(|k| self.points.iter().all(|p| p.axis(k).is_some()))
            .cloned()
            .collect()
    }
}

/// Options of [`write_report`].
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Window of the smoothed "last k" statistics (≥ 1).
    pub last_k: usize,
    /// Trailing-mean window of the curves, per seed (0: about a twentieth of the steps).
    pub smooth: usize,
    /// Axes whose values split the curves into separate figures (`Some(empty)`: one figure per
    /// metric with every point; default: see [`plots::default_grouping`]). Points without such an
    /// axis appear in every figure.
    pub group_by: Option<Vec<String>>,
    /// A published table to set beside this run (default: any `baselines/paper-*.csv` next to the
    /// grid's source with a row that matches a grid point).
    pub papers: Vec<PathBuf>,
    /// Claims to check (default: `claims/<grid file stem>.yaml` beside the grid file).
    pub claims: Option<PathBuf>,
    /// Where to write (default: `DIR/<grid>/report`).
    pub out: Option<PathBuf>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            last_k: 5,
            smooth: 0,
            group_by: None,
            papers: Vec::new(),
            claims: None,
            out: None,
        }
    }
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub markdown: PathBuf,
    pub svgs: Vec<PathBuf>,
    pub papers: Vec<PathBuf>,
    pub claims: Option<PathBuf>,
    /// Files of an earlier report in the same folder that this one no longer has (removed).
    pub removed: Vec<PathBuf>,
    /// What the user should know (a published table with no matching row).
    pub notes: Vec<String>,
}

/// The rendered report: Markdown and `(file name, SVG)` pairs.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub markdown: String,
    pub svgs: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// Check options against the results: `last_k ≥ 1` and grouping axes the grid has.
fn check_options(g: &GridResults, opts: &ReportOptions) -> Result<()> {
    if opts.last_k == 0 {
        return Err(Error::Input("--last-k must be at least 1".into()));
    }
    let unknown: Vec<&String> = opts
        .group_by
        .iter()
        .flatten()
        .filter(|k| !g.manifest.axes.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Input(format!(
            "--group-by: grid `{}` has no axis {} (its axes: {})",
            g.manifest.name,
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if g.manifest.axes.is_empty() {
                "none".to_string()
            } else {
                g.manifest.axes.join(", ")
            }
        )));
    }
    Ok(())
}

/// Render a report from loaded results, published tables and claims (pure: no I/O). Bad options,
/// claims that name no grid point or a metric no run logs, are errors. Figures are drawn in
/// parallel.
pub fn render(
    g: &GridResults,
    opts: &ReportOptions,
    papers: &[paper::PaperTable],
    claims: Option<&claims::Claims>,
) -> Result<Rendered> {
    check_options(g, opts)?;
    let checked = claims
        .map(|c| c.check(g, opts.last_k).map(|ch| (c, ch)))
        .transpose()?;
    let figures = plots::figures(g, opts);
    let svgs = figures
        .par_iter()
        .map(|f| Ok((f.file.clone(), plots::render_svg(f)?)))
        .collect::<Result<Vec<_>>>()?;
    let notes = papers
        .iter()
        .filter(|t| !g.points.iter().any(|p| t.matching_row(p).is_some()))
        .map(|t| {
            format!(
                "{}: no row matches a grid point of `{}`",
                t.path.display(),
                g.manifest.name
            )
        })
        .collect();
    let markdown = markdown::render(g, opts, papers, checked.as_ref(), &figures);
    Ok(Rendered {
        markdown,
        svgs,
        notes,
    })
}

/// Published tables: the ones asked for, else the `paper-*.csv` in `../baselines` beside the grid
/// file that match a grid point.
fn find_papers(g: &GridResults, opts: &ReportOptions) -> Result<Vec<paper::PaperTable>> {
    if !opts.papers.is_empty() {
        return opts
            .papers
            .iter()
            .map(|p| paper::PaperTable::read(p))
            .collect();
    }
    let dir = source_dir(g).join("../baselines");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("paper-") && n.ends_with(".csv"))
        })
        .collect();
    found.sort();
    let mut out = Vec::new();
    for p in found {
        let t = paper::PaperTable::read(&p)?;
        if g.points.iter().any(|pt| t.matching_row(pt).is_some()) {
            out.push(t);
        }
    }
    Ok(out)
}

fn source_dir(g: &GridResults) -> PathBuf {
    g.manifest
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Claims: the file asked for, else `claims/<grid file stem>.yaml` beside the grid file.
fn claims_path(g: &GridResults, opts: &ReportOptions) -> Option<PathBuf> {
    opts.claims.clone().or_else(|| {
        let stem = g.manifest.source.file_stem()?.to_str()?.to_string();
        let p = source_dir(g).join("claims").join(format!("{stem}.yaml"));
        p.exists().then_some(p)
    })
}

/// Write `report.md` and its SVGs into `opts.out` or `DIR/<grid>/report`. Files that an earlier
/// report wrote there (listed in its [`files::LIST`]) and this one does not are removed; nothing
/// else in the folder is touched.
pub fn write_report(grid_dir: &Path, opts: &ReportOptions) -> Result<ReportSummary> {
    let g = GridResults::load(grid_dir)?;
    let papers = find_papers(&g, opts)?;
    let claims_path = claims_path(&g, opts);
    let claims = claims_path
        .as_deref()
        .map(claims::Claims::read)
        .transpose()?;
    let r = render(&g, opts, &papers, claims.as_ref())?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| grid_dir.join(REPORT_DIR));
    let mut files = vec![("report.md".to_string(), r.markdown.as_str())];
    files.extend(r.svgs.iter().map(|(n, s)| (n.clone(), s.as_str())));
    let removed = files::replace(&out, &files)?;
    Ok(ReportSummary {
        markdown: out.join("report.md"),
        svgs: r.svgs.iter().map(|(n, _)| out.join(n)).collect(),
        papers: papers.into_iter().map(|t| t.path).collect(),
        claims: claims_path,
        removed,
        notes: r.notes,
    })
}

/// The files a report writes into its folder, listed so that the next report replaces exactly
/// them.
pub mod files {
    use super::*;

    /// The list, one file name per line, in the report's folder.
    pub const LIST: &str = ".report-files";

    /// File names an earlier report listed (bare names only: a list cannot point elsewhere).
    pub fn listed(out: &Path) -> Vec<String> {
        std::fs::read_to_string(out.join(LIST))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter(|l| Path::new(l).file_name() == Some(std::ffi::OsStr::new(l)))
            .map(str::to_string)
            .collect()
    }

    /// Write `files` (name, text) into `out`, remove listed files of the earlier report that are
    /// not among them, and list the new ones. Returns the removed paths.
    pub fn replace(out: &Path, files: &[(String, &str)]) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let mut removed = Vec::new();
        for old in listed(out) {
            let p = out.join(&old);
            if !files.iter().any(|(n, _)| *n == old) && p.is_file() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                removed.push(p);
            }
        }
        for (name, text) in files {
            atomic_write(&out.join(name), text.as_bytes())?;
        }
        let mut list = String::from(
            "# Written by `harness report`: the next report into this folder replaces these files \
             (and removes the ones it no longer has); nothing else here is touched.\n",
        );
        for (name, _) in files {
            list.push_str(name);
            list.push('\n');
        }
        atomic_write(&out.join(LIST), list.as_bytes())?;
        Ok(removed)
    }
}

/// A number for a table cell: 3 significant digits, scientific notation for tiny/huge values.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{x:.2e}");
    }
    let digits = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// [`fmt_num`] with a `+` on positive numbers (differences).
pub fn fmt_signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", fmt_num(x))
    } else {
        fmt_num(x)
    }
}

/// `mean ± ci95` (or the mean alone when n < 2; `–` when there is no value).
pub fn fmt_stats(s: &SeedStats) -> String {
    match (s.mean, s.ci95) {
        // Seeds that agree to rounding error: no spurious `± 2.6e-18`.
        (Some(m), Some(c)) if c <= 1e-9 * m.abs() => format!("{} ± 0", fmt_num(m)),
        (Some(m), Some(c)) => format!("{} ± {}", fmt_num(m), fmt_num(c)),
        (Some(m), None) => fmt_num(m),
        _ => "–".into(),
    }
}

/// A YAML value as text (for labels and matching).
pub fn value_text(v: &Value) -> String {
    fmt_value(v)
}

#[cfg(test)]
mod tests;
