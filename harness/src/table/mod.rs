//! Tables of a grid's results, with Polars. Derived data: rebuilt from the run directories at any
//! time (`harness table DIR/<grid>`), and at the end of `harness run`.
//!
//! - `runs/<id>/metrics.parquet`, `eval.parquet`: the run's `metrics.jsonl` / `eval.jsonl` (one row
//!   per line: `step` then one `Float64` column per metric name).
//! - `tables/steps.parquet`: every step of every run, training and eval metrics joined on `step`,
//!   with `run_id`, `label`, `case`, `seed` and one column per axis key.
//! - `tables/summary.parquet` + `summary.csv`: one row per grid point (runs that differ only by
//!   seed), in grid order, with the axis values, run counts (`n_runs`, `n_done`, `divergences`,
//!   `n_failed`, `n_unfinished`) and, per metric `m` (sorted by name), statistics over seeds of
//!   the runs that finished (done or diverged): `m:final_*` (last logged value), `m:lastk_*` (mean of
//!   the last k values, training metrics) and `m:best_*` (maximum, eval metrics), each as
//!   `_mean`, `_std`, `_ci95` (half-width, Student t with n − 1 dof) and `_n` (seeds with a finite
//!   value). `std` and `ci95` are empty for n < 2.
//!
//! No metric set is assumed: a new metric is a new column.
use crate::grid::expand::fmt_value;
use crate::grid::fsutil::atomic_write_with;
use crate::grid::manifest::Manifest;
use crate::grid::status::RunStatus;
use crate::train::RunState;
use crate::{Error, Result};
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub mod stats;

pub use stats::{seed_stats, SeedStats};

/// One JSONL line: `step` and metric name → value.
pub type Row = BTreeMap<String, f64>;

pub const METRICS_JSONL: &str = "metrics.jsonl";
pub const EVAL_JSONL: &str = "eval.jsonl";
pub const METRICS_PARQUET: &str = "metrics.parquet";
pub const EVAL_PARQUET: &str = "eval.parquet";

#[derive(Debug, Clone)]
pub struct TableOptions {
    /// Window of the smoothed `lastk` statistics.
    pub last_k: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions { last_k: 5 }
    }
}

/// What [`build_tables`] wrote.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub dir: PathBuf,
    pub runs: usize,
    pub points: usize,
    pub step_rows: usize,
    pub metrics: usize,
}

fn polars_err(path: &Path, e: PolarsError) -> Error {
    Error::Input(format!("{}: {e}", path.display()))
}

/// Read a metrics JSONL file. Non-numeric values: `null` → NaN, numeric strings (`"NaN"`,
/// `"inf"`) parsed, booleans → 0/1, anything else skipped. A torn last line (a process killed
/// mid-write) is ignored; a bad line elsewhere is an error.
pub fn read_jsonl(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut rows = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(line) {
            Ok(o) => o,
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(Error::Input(format!(
                    "{}:{}: not a JSON object: {e}",
                    path.display(),
                    i + 1
                )))
            }
        };
        let mut row = Row::new();
        for (k, v) in obj {
            let x = match v {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::Null => Some(f64::NAN),
                serde_json::Value::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
                serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            if let Some(x) = x {
                row.insert(k, x);
            }
        }
        if !row.contains_key("step") {
            row.insert("step".into(), rows.len() as f64);
        }
        rows.push(row);
    }
    rows.sort_by(|a, b| a["step"].total_cmp(&b["step"]));
    Ok(rows)
}

/// Rows → a frame: `step` (Int64) then each metric (Float64, null where a row lacks it), sorted.
pub fn rows_frame(rows: &[Row]) -> Result<DataFrame> {
    let names: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.keys().map(String::as_str))
        .filter(|k| *k != "step")
        .collect();
    let mut cols = vec![Column::new(
        "step".into(),
        rows.iter().map(|r| r["step"] as i64).collect::<Vec<i64>>(),
    )];
    for n in names {
        cols.push(Column::new(
            n.into(),
            rows.iter()
                .map(|r| r.get(n).copied())
                .collect::<Vec<Option<f64>>>(),
        ));
    }
    DataFrame::new(rows.len(), cols).map_err(|e| Error::Input(e.to_string()))
}

/// A frame with a `step` column and numeric metric columns → rows.
pub fn frame_rows(df: &DataFrame) -> Result<Vec<Row>> {
    let mut rows = vec![Row::new(); df.height()];
    for c in df.columns() {
        let f = c
            .cast(&DataType::Float64)
            .map_err(|e| Error::Input(e.to_string()))?;
        let ca = f.f64().map_err(|e| Error::Input(e.to_string()))?;
        for (i, row) in rows.iter_mut().enumerate() {
            if let Some(v) = ca.get(i) {
                row.insert(c.name().to_string(), v);
            }
        }
    }
    Ok(rows)
}

/// Write a frame as Parquet, atomically.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    atomic_write_with(path, |f| {
        ParquetWriter::new(f)
            .finish(df)
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}

/// Read a Parquet file.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(f)
        .finish()
        .map_err(|e| polars_err(path, e))
}

/// Write a frame as CSV (header, `.` decimals, empty cells for nulls), atomically.
pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    atomic_write_with(path, |f| {
        CsvWriter::new(f)
            .include_header(true)
            .finish(df)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}

/// The rows of a run's `metrics` or `eval` log: from the JSONL the training loop writes, else
/// from the Parquet copy, else none.
pub fn run_rows(run_dir: &Path, jsonl: &str, parquet: &str) -> Result<Vec<Row>> {
    let j = run_dir.join(jsonl);
    if j.exists() {
        return read_jsonl(&j);
    }
    let p = run_dir.join(parquet);
    if p.exists() {
        return frame_rows(&read_parquet(&p)?);
    }
    Ok(Vec::new())
}

/// `metrics.jsonl` → `metrics.parquet` and `eval.jsonl` → `eval.parquet` in one run directory.
pub fn convert_run(run_dir: &Path) -> Result<()> {
    for (j, p) in [(METRICS_JSONL, METRICS_PARQUET), (EVAL_JSONL, EVAL_PARQUET)] {
        let src = run_dir.join(j);
        if src.exists() {
            let mut df = rows_frame(&read_jsonl(&src)?)?;
            write_parquet(&mut df, &run_dir.join(p))?;
        }
    }
    Ok(())
}

/// One run as the tables see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunData {
    pub id: String,
    pub label: String,
    pub point: String,
    pub point_label: String,
    pub case: Option<String>,
    pub seed: i64,
    pub axes: Vec<(String, serde_yaml::Value)>,
    /// `None`: no status file.
    pub state: Option<RunState>,
    pub metrics: Vec<Row>,
    pub eval: Vec<Row>,
}

/// Load every run of a grid directory (manifest, statuses, metrics).
pub fn load_runs(grid_dir: &Path) -> Result<(Manifest, Vec<RunData>)> {
    let m = Manifest::read(grid_dir)?;
    let mut out = Vec::with_capacity(m.runs.len());
    for r in &m.runs {
        let dir = grid_dir.join("runs").join(&r.id);
        out.push(RunData {
            id: r.id.clone(),
            label: r.label.clone(),
            point: r.point.clone(),
            point_label: r.point_label.clone(),
            case: r.case.clone(),
            seed: r.seed,
            axes: r
                .axes
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                .collect(),
            state: RunStatus::read(&dir).map(|s| s.state),
            metrics: run_rows(&dir, METRICS_JSONL, METRICS_PARQUET)?,
            eval: run_rows(&dir, EVAL_JSONL, EVAL_PARQUET)?,
        });
    }
    Ok((m, out))
}

/// Rebuild `runs/*/{metrics,eval}.parquet` and `tables/*` of a grid directory.
pub fn build_tables(grid_dir: &Path, opts: &TableOptions) -> Result<TableReport> {
    let (m, runs) = load_runs(grid_dir)?;
    for r in &m.runs {
        convert_run(&grid_dir.join("runs").join(&r.id))?;
    }
    let has_cases = !m.cases.is_empty();
    let tdir = grid_dir.join("tables");
    let mut steps = steps_frame(&runs, &m.axes, has_cases)?;
    write_parquet(&mut steps, &tdir.join("steps.parquet"))?;
    let mut summary = summary_frame(&runs, &m.axes, has_cases, opts.last_k)?;
    write_parquet(&mut summary, &tdir.join("summary.parquet"))?;
    write_csv(&mut summary, &tdir.join("summary.csv"))?;
    let metrics: BTreeSet<&String> = runs
        .iter()
        .flat_map(|r| r.metrics.iter().chain(&r.eval).flat_map(|row| row.keys()))
        .collect();
    Ok(TableReport {
        dir: tdir,
        runs: runs.len(),
        points: summary.height(),
        step_rows: steps.height(),
        metrics: metrics.len().saturating_sub(1),
    })
}

/// Typed columns of axis values (`null` where a run's case lacks the axis): Int64 when every value
/// is an integer, Float64 when numeric, Boolean, else String.
fn axis_columns<'a>(
    keys: &[String],
    rows: impl Iterator<Item = &'a [(String, serde_yaml::Value)]> + Clone,
) -> Vec<Column> {
    use serde_yaml::Value as V;
    keys.iter()
        .map(|k| {
            let vals: Vec<Option<&V>> = rows
                .clone()
                .map(|a| a.iter().find(|(ak, _)| ak == k).map(|(_, v)| v))
                .collect();
            let present = || vals.iter().flatten();
            let name: PlSmallStr = k.as_str().into();
            if present().all(|v| v.as_i64().is_some()) {
                Column::new(
                    name,
                    vals.iter()
                        .map(|v| v.and_then(V::as_i64))
                        .collect::<Vec<_>>(),
                )
            } else if present().all(|v| v.as_f64().is_some()) {
                Column::new(
                    name,
                    vals.iter()
                        .map(|v| v.and_then(V::as_f64))
                        .collect::<Vec<_>>(),
                )
            } else if present().all(|v| v.as_bool().is_some()) {
                Column::new(
                    name,
                    vals.iter()
                        .map(|v| v.and_then(V::as_bool))
                        .collect::<Vec<_>>(),
                )
            } else {
                Column::new(
                    name,
                    vals.iter().map(|v| v.map(fmt_value)).collect::<Vec<_>>(),
                )
            }
        })
        .collect()
}

fn metric_names<'a>(rows: impl Iterator<Item = &'a Row>) -> Vec<String> {
    let s: BTreeSet<&String> = rows.flat_map(|r| r.keys()).collect();
    s.into_iter().filter(|k| *k != "step").cloned().collect()
}

/// Every step of every run: training and eval rows joined on `step`.
pub fn steps_frame(runs: &[RunData], axis_keys: &[String], has_cases: bool) -> Result<DataFrame> {
    let names = metric_names(runs.iter().flat_map(|r| r.metrics.iter().chain(&r.eval)));
    let mut owner: Vec<usize> = Vec::new();
    let mut merged: Vec<Row> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let mut by_step: BTreeMap<i64, Row> = BTreeMap::new();
        for row in r.metrics.iter().chain(&r.eval) {
            by_step
                .entry(row["step"] as i64)
                .or_default()
                .extend(row.iter().map(|(k, v)| (k.clone(), *v)));
        }
        for (_, row) in by_step {
            owner.push(i);
            merged.push(row);
        }
    }
    let mut cols = vec![
        Column::new(
            "run_id".into(),
            owner
                .iter()
                .map(|&i| runs[i].id.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "label".into(),
            owner
                .iter()
                .map(|&i| runs[i].label.as_str())
                .collect::<Vec<_>>(),
        ),
    ];
    if has_cases {
        cols.push(Column::new(
            "case".into(),
            owner
                .iter()
                .map(|&i| runs[i].case.as_deref())
                .collect::<Vec<_>>(),
        ));
    }
    cols.push(Column::new(
        "seed".into(),
        owner.iter().map(|&i| runs[i].seed).collect::<Vec<_>>(),
    ));
    cols.extend(axis_columns(
        axis_keys,
        owner.iter().map(|&i| runs[i].axes.as_slice()),
    ));
    cols.push(Column::new(
        "step".into(),
        merged.iter().map(|r| r["step"] as i64).collect::<Vec<_>>(),
    ));
    for n in &names {
        cols.push(Column::new(
            n.as_str().into(),
            merged.iter().map(|r| r.get(n).copied()).collect::<Vec<_>>(),
        ));
    }
    DataFrame::new(merged.len(), cols).map_err(|e| Error::Input(e.to_string()))
}

/// Values of `name` over a run's rows, in step order, finite only.
fn series(rows: &[Row], name: &str) -> Vec<f64> {
    rows.iter()
        .filter_map(|r| r.get(name).copied())
        .filter(|x| x.is_finite())
        .collect()
}

fn push_stats(cols: &mut Vec<(String, StatCol)>, name: String, per_point: Vec<SeedStats>) {
    cols.push((
        format!("{name}_mean"),
        StatCol::F(per_point.iter().map(|s| s.mean).collect()),
    ));
    cols.push((
        format!("{name}_std"),
        StatCol::F(per_point.iter().map(|s| s.std).collect()),
    ));
    cols.push((
        format!("{name}_ci95"),
        StatCol::F(per_point.iter().map(|s| s.ci95).collect()),
    ));
    cols.push((
        format!("{name}_n"),
        StatCol::N(per_point.iter().map(|s| s.n).collect()),
    ));
}

enum StatCol {
    F(Vec<Option<f64>>),
    N(Vec<u32>),
}

/// One row per grid point: axis values, run counts, and seed statistics of every metric.
pub fn summary_frame(
    runs: &[RunData],
    axis_keys: &[String],
    has_cases: bool,
    last_k: usize,
) -> Result<DataFrame> {
    let last_k = last_k.max(1);
    // Grid points in first-appearance (grid) order.
    let mut points: Vec<Vec<&RunData>> = Vec::new();
    for r in runs {
        match points.iter_mut().find(|p| p[0].point == r.point) {
            Some(p) => p.push(r),
            None => points.push(vec![r]),
        }
    }
    let finished = |r: &RunData| matches!(r.state, Some(RunState::Done | RunState::Diverged));
    let count = |f: &dyn Fn(&RunData) -> bool| -> Vec<u32> {
        points
            .iter()
            .map(|p| p.iter().filter(|r| f(r)).count() as u32)
            .collect()
    };

    let mut cols = vec![
        Column::new(
            "point".into(),
            points
                .iter()
                .map(|p| p[0].point.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "label".into(),
            points
                .iter()
                .map(|p| p[0].point_label.as_str())
                .collect::<Vec<_>>(),
        ),
    ];
    if has_cases {
        cols.push(Column::new(
            "case".into(),
            points
                .iter()
                .map(|p| p[0].case.as_deref())
                .collect::<Vec<_>>(),
        ));
    }
    cols.extend(axis_columns(
        axis_keys,
        points.iter().map(|p| p[0].axes.as_slice()),
    ));
    cols.push(Column::new("n_runs".into(), count(&|_| true)));
    cols.push(Column::new(
        "n_done".into(),
        count(&|r| r.state == Some(RunState::Done)),
    ));
    cols.push(Column::new(
        "divergences".into(),
        count(&|r| r.state == Some(RunState::Diverged)),
    ));
    cols.push(Column::new(
        "n_failed".into(),
        count(&|r| r.state == Some(RunState::Failed)),
    ));
    cols.push(Column::new(
        "n_unfinished".into(),
        count(&|r| {
            !matches!(
                r.state,
                Some(RunState::Done | RunState::Diverged | RunState::Failed)
            )
        }),
    ));

    let train = metric_names(runs.iter().flat_map(|r| &r.metrics));
    let eval = metric_names(runs.iter().flat_map(|r| &r.eval));
    let mut stat_cols: Vec<(String, StatCol)> = Vec::new();
    let per_point = |f: &dyn Fn(&RunData) -> Option<f64>| -> Vec<SeedStats> {
        points
            .iter()
            .map(|p| {
                let xs: Vec<f64> = p
                    .iter()
                    .filter(|r| finished(r))
                    .filter_map(|r| f(r))
                    .collect();
                seed_stats(&xs)
            })
            .collect()
    };
    for m in &train {
        let fin = per_point(&|r| series(&r.metrics, m).last().copied());
        push_stats(&mut stat_cols, format!("{m}:final"), fin);
        let lastk = per_point(&|r| {
            let s = series(&r.metrics, m);
            let tail = &s[s.len().saturating_sub(last_k)..];
            (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64)
        });
        push_stats(&mut stat_cols, format!("{m}:lastk"), lastk);
    }
    for m in &eval {
        if train.contains(m) {
            continue;
        }
        let fin = per_point(&|r| series(&r.eval, m).last().copied());
        push_stats(&mut stat_cols, format!("{m}:final"), fin);
        let best = per_point(&|r| series(&r.eval, m).into_iter().reduce(f64::max));
        push_stats(&mut stat_cols, format!("{m}:best"), best);
    }
    for (name, c) in stat_cols {
        cols.push(match c {
            StatCol::F(v) => Column::new(name.into(), v),
            StatCol::N(v) => Column::new(name.into(), v),
        });
    }
    DataFrame::new(points.len(), cols).map_err(|e| Error::Input(e.to_string()))
}

#[cfg(test)]
mod tests;
