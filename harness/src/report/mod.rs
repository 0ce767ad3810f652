//! Reports and the stability gate, from a grid's run directories (`DIR/<grid>`).
//!
//! - [`write_report`]: `report/report.md` (GitHub Markdown: the grid's description, a table per
//!   grid point with mean ± 95 % CI over seeds, divergences, optional claims and "paper vs this
//!   run" tables) and one SVG per curve (plotters, no system fonts: text is left to the viewer).
//! - [`gate`]: compare smoothed final metrics with a baseline CSV within declared tolerances.
//!
//! Like the tables, everything here is derived data: it reads `grid.yaml`, `runs/*/status.json`
//! and the metric logs, and knows nothing about tensors.
use crate::grid::expand::fmt_value;
use crate::grid::manifest::Manifest;
use crate::grid::status::RunStatus;
use crate::table::{load_runs, seed_stats, Row, RunData, SeedStats};
use crate::train::RunState;
use crate::{Error, Result};
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
    pub runs: Vec<PointRun>,
}

/// One seed of a grid point.
#[derive(Debug, Clone)]
pub struct PointRun {
    pub data: RunData,
    /// For diverged / failed runs: the step and why.
    pub status: Option<RunStatus>,
}

impl PointRun {
    pub fn finished(&self) -> bool {
        matches!(self.data.state, Some(RunState::Done | RunState::Diverged))
    }
    pub fn state(&self) -> Option<RunState> {
        self.data.state
    }
    /// The run's rows that log `metric` (training rows, else eval rows).
    pub fn rows(&self, metric: &str) -> &[Row] {
        if self.data.metrics.iter().any(|r| r.contains_key(metric)) {
            &self.data.metrics
        } else {
            &self.data.eval
        }
    }
    /// `(step, value)` of `metric`, finite values only, in step order.
    pub fn series(&self, metric: &str) -> Vec<(f64, f64)> {
        self.rows(metric)
            .iter()
            .filter_map(|r| Some((r["step"], *r.get(metric)?)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    }
    /// Mean of the last `k` logged finite values of `metric`.
    pub fn last_k(&self, metric: &str, k: usize) -> Option<f64> {
        let s = self.series(metric);
        let tail = &s[s.len().saturating_sub(k.max(1))..];
        (!tail.is_empty()).then(|| tail.iter().map(|(_, v)| v).sum::<f64>() / tail.len() as f64)
    }
}

/// Which per-seed value a statistic is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Mean of the last k logged values.
    LastK(usize),
    /// The last logged value.
    Final,
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
            .filter(|r| {
                !matches!(
                    r.state(),
                    Some(RunState::Done | RunState::Diverged | RunState::Failed)
                )
            })
            .count()
    }
    /// Statistics over the finished seeds of one per-seed value of `metric`.
    pub fn stats(&self, metric: &str, stat: Stat) -> SeedStats {
        let xs: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| r.finished())
            .filter_map(|r| match stat {
                Stat::LastK(k) => r.last_k(metric, k),
                Stat::Final => r.series(metric).last().map(|(_, v)| *v),
            })
            .collect();
        seed_stats(&xs)
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
        if !grid_dir.join(crate::grid::manifest::MANIFEST_FILE).exists() {
            return Err(Error::Input(format!(
                "{}: not a grid output directory (no grid.yaml; expected DIR/<grid> written by \
                 `harness run`)",
                grid_dir.display()
            )));
        }
        let (m, runs) = load_runs(grid_dir)?;
        let statuses = runs
            .iter()
            .map(|r| RunStatus::read(&grid_dir.join("runs").join(&r.id)))
            .collect();
        Ok(Self::from_parts(grid_dir, m, runs, statuses))
    }

    /// Group runs (with their statuses, in the same order) into grid points.
    pub fn from_parts(
        dir: &Path,
        manifest: Manifest,
        runs: Vec<RunData>,
        statuses: Vec<Option<RunStatus>>,
    ) -> GridResults {
        let mut points: Vec<Point> = Vec::new();
        for (data, status) in runs.into_iter().zip(statuses) {
            let run = PointRun { data, status };
            if let Some(p) = points
                .iter_mut()
                .find(|p| p.runs[0].data.point == run.data.point)
            {
                p.runs.push(run);
                continue;
            }
            let config = manifest
                .runs
                .iter()
                .find(|r| r.id == run.data.id)
                .map(|r| r.config.clone())
                .unwrap_or(Value::Null);
            let label = if run.data.point_label.is_empty() {
                manifest.name.clone()
            } else {
                run.data.point_label.clone()
            };
            points.push(Point {
                label,
                case: run.data.case.clone(),
                axes: run.data.axes.clone(),
                config,
                runs: vec![run],
            });
        }
        GridResults {
            dir: dir.to_path_buf(),
            manifest,
            points,
        }
    }

    /// Every metric any run logs (training and eval), sorted.
    pub fn metric_names(&self) -> BTreeSet<String> {
        self.points
            .iter()
            .flat_map(|p| &p.runs)
            .flat_map(|r| r.data.metrics.iter().chain(&r.data.eval))
            .flat_map(|row| row.keys().cloned())
            .filter(|k| k != "step")
            .collect()
    }

    /// Distinct seeds, sorted.
    pub fn seeds(&self) -> Vec<i64> {
        let s: BTreeSet<i64> = self
            .points
            .iter()
            .flat_map(|p| &p.runs)
            .map(|r| r.data.seed)
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
    /// Window of the smoothed "last k" statistics.
    pub last_k: usize,
    /// Trailing-mean window of the curves, per seed (0: about a twentieth of the steps).
    pub smooth: usize,
    /// Axes whose values split the curves into separate figures (default: the axes every grid
    /// point has). Points without such an axis appear in every figure.
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
}

/// The rendered report: Markdown and `(file name, SVG)` pairs.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub markdown: String,
    pub svgs: Vec<(String, String)>,
}

/// Render a report from loaded results, published tables and claims (pure: no I/O).
pub fn render(
    g: &GridResults,
    opts: &ReportOptions,
    papers: &[paper::PaperTable],
    claims: Option<&claims::Claims>,
) -> Result<Rendered> {
    let figures = plots::figures(g, opts);
    let mut svgs = Vec::new();
    for f in &figures {
        svgs.push((f.file.clone(), plots::render_svg(f)?));
    }
    let markdown = markdown::render(g, opts, papers, claims, &figures);
    Ok(Rendered { markdown, svgs })
}

/// Write `report.md` and its SVGs into `opts.out` or `DIR/<grid>/report` (replacing older ones).
pub fn write_report(grid_dir: &Path, opts: &ReportOptions) -> Result<ReportSummary> {
    let g = GridResults::load(grid_dir)?;
    let source_dir = g
        .manifest
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // Published tables: the ones asked for, else those beside the grid that match a point.
    let mut papers = Vec::new();
    let mut paper_paths = Vec::new();
    if opts.papers.is_empty() {
        let dir = source_dir.join("../baselines");
        if let Ok(rd) = std::fs::read_dir(&dir) {
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
            for p in found {
                let t = paper::PaperTable::read(&p)?;
                if g.points.iter().any(|pt| t.matching_row(pt).is_some()) {
                    papers.push(t);
                    paper_paths.push(p);
                }
            }
        }
    } else {
        for p in &opts.papers {
            papers.push(paper::PaperTable::read(p)?);
            paper_paths.push(p.clone());
        }
    }
    let claims_path = opts.claims.clone().or_else(|| {
        let stem = g.manifest.source.file_stem()?.to_str()?.to_string();
        let p = source_dir.join("claims").join(format!("{stem}.yaml"));
        p.exists().then_some(p)
    });
    let claims = claims_path
        .as_deref()
        .map(claims::Claims::read)
        .transpose()?;
    let r = render(&g, opts, &papers, claims.as_ref())?;

    let out = opts.out.clone().unwrap_or_else(|| grid_dir.join("report"));
    if out.exists() {
        // Old SVGs of curves that are gone would linger.
        for e in std::fs::read_dir(&out)
            .map_err(|e| Error::io(&out, e))?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "svg" || x == "md") {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
    }
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let md = out.join("report.md");
    crate::grid::fsutil::atomic_write(&md, r.markdown.as_bytes())?;
    let mut svgs = Vec::new();
    for (name, svg) in &r.svgs {
        let p = out.join(name);
        crate::grid::fsutil::atomic_write(&p, svg.as_bytes())?;
        svgs.push(p);
    }
    Ok(ReportSummary {
        markdown: md,
        svgs,
        papers: paper_paths,
        claims: claims_path,
    })
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
