//! Tables of a grid's results, with Polars. Derived data: rebuilt from the run directories
//! ([`crate::rundir`]) at any time (`harness table DIR/<grid>`), and at the end of `harness run`.
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
use crate::rundir::logs::write_parquet;
use crate::rundir::{atomic_write_with, load_grid, LoadedRun, Row, RunState, TABLES_DIR};
use crate::{Error, Result};
use polars::prelude::*;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod stats;

pub use stats::{seed_stats, SeedStats};

#[derive(Debug, Clone)]
pub struct TableOptions {
    /// Window of the smoothed `lastk` statistics (≥ 1).
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

/// Write a frame as CSV (header, `.` decimals, empty cells for nulls), atomically.
pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    atomic_write_with(path, |f| {
        let mut w = std::io::BufWriter::new(f);
        CsvWriter::new(&mut w)
            .include_header(true)
            .finish(df)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::io::Write::flush(&mut w)
    })
}

/// Rebuild `runs/*/{metrics,eval}.parquet` and `tables/*` of a grid directory. Runs are read and
/// converted in parallel; the two tables are built in parallel.
pub fn build_tables(grid_dir: &Path, opts: &TableOptions) -> Result<TableReport> {
    if opts.last_k == 0 {
        return Err(Error::Input("last-k must be at least 1".into()));
    }
    let (m, runs) = load_grid(grid_dir)?;
    runs.par_iter()
        .try_for_each(|r| r.write_parquet(grid_dir))?;
    let has_cases = !m.cases.is_empty();
    let tdir = grid_dir.join(TABLES_DIR);
    let (steps, summary) = rayon::join(
        || steps_frame(&runs, &m.axes, has_cases),
        || summary_frame(&runs, &m.axes, has_cases, opts.last_k),
    );
    let (mut steps, mut summary) = (steps?, summary?);
    write_parquet(&mut steps, &tdir.join("steps.parquet"))?;
    write_parquet(&mut summary, &tdir.join("summary.parquet"))?;
    write_csv(&mut summary, &tdir.join("summary.csv"))?;
    let metrics = metric_names(runs.iter().flat_map(|r| r.metrics.iter().chain(&r.eval)));
    Ok(TableReport {
        dir: tdir,
        runs: runs.len(),
        points: summary.height(),
        step_rows: steps.height(),
        metrics: metrics.len(),
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
    crate::rundir::logs::metric_names(rows)
        .into_iter()
        .collect()
}

/// A run's training and eval rows joined on `step`.
fn merged_rows(r: &LoadedRun) -> Vec<Row> {
    let mut by_step: BTreeMap<i64, Row> = BTreeMap::new();
    for row in r.metrics.iter().chain(&r.eval) {
        by_step
            .entry(row["step"] as i64)
            .or_default()
            .extend(row.iter().map(|(k, v)| (k.clone(), *v)));
    }
    by_step.into_values().collect()
}

/// A string column with one value per row, taken from the row's run.
fn run_column<'a, T>(
    name: &str,
    owner: &[usize],
    runs: &'a [LoadedRun],
    f: impl Fn(&'a LoadedRun) -> T,
) -> Column
where
    Series: NamedFrom<Vec<T>, [T]>,
{
    Column::new(
        name.into(),
        owner.iter().map(|&i| f(&runs[i])).collect::<Vec<T>>(),
    )
}

/// Every step of every run: training and eval rows joined on `step` (runs merged in parallel).
pub fn steps_frame(runs: &[LoadedRun], axis_keys: &[String], has_cases: bool) -> Result<DataFrame> {
    let names = metric_names(runs.iter().flat_map(|r| r.metrics.iter().chain(&r.eval)));
    let per_run: Vec<Vec<Row>> = runs.par_iter().map(merged_rows).collect();
    let owner: Vec<usize> = per_run
        .iter()
        .enumerate()
        .flat_map(|(i, rows)| std::iter::repeat_n(i, rows.len()))
        .collect();
    let merged: Vec<Row> = per_run.into_iter().flatten().collect();
    let mut cols = vec![
        run_column("run_id", &owner, runs, |r| r.record.id.as_str()),
        run_column("label", &owner, runs, |r| r.record.label.as_str()),
    ];
    if has_cases {
        cols.push(run_column("case", &owner, runs, |r| {
            r.record.case.as_deref()
        }));
    }
    cols.push(run_column("seed", &owner, runs, |r| r.record.seed));
    cols.extend(axis_columns(
        axis_keys,
        owner.iter().map(|&i| runs[i].record.axes.as_slice()),
    ));
    cols.push(Column::new(
        "step".into(),
        merged.iter().map(|r| r["step"] as i64).collect::<Vec<_>>(),
    ));
    let metric_cols: Vec<Column> = names
        .par_iter()
        .map(|n| {
            Column::new(
                n.as_str().into(),
                merged.iter().map(|r| r.get(n).copied()).collect::<Vec<_>>(),
            )
        })
        .collect();
    cols.extend(metric_cols);
    DataFrame::new(merged.len(), cols).map_err(|e| Error::Input(e.to_string()))
}

/// Values of `name` over a run's rows, in step order, finite only.
fn series(rows: &[Row], name: &str) -> Vec<f64> {
    rows.iter()
        .filter_map(|r| r.get(name).copied())
        .filter(|x| x.is_finite())
        .collect()
}

/// The four columns `<name>_mean`, `_std`, `_ci95`, `_n` of one statistic over the points.
fn stat_columns(name: &str, per_point: &[SeedStats]) -> [Column; 4] {
    let f = |suffix: &str, g: fn(&SeedStats) -> Option<f64>| {
        Column::new(
            format!("{name}_{suffix}").into(),
            per_point.iter().map(g).collect::<Vec<_>>(),
        )
    };
    [
        f("mean", |s| s.mean),
        f("std", |s| s.std),
        f("ci95", |s| s.ci95),
        Column::new(
            format!("{name}_n").into(),
            per_point.iter().map(|s| s.n).collect::<Vec<u32>>(),
        ),
    ]
}

/// Runs grouped by grid point, in first-appearance (grid) order.
fn group_points(runs: &[LoadedRun]) -> Vec<Vec<&LoadedRun>> {
    let mut points: Vec<Vec<&LoadedRun>> = Vec::new();
    for r in runs {
        match points
            .iter_mut()
            .find(|p| p[0].record.point == r.record.point)
        {
            Some(p) => p.push(r),
            None => points.push(vec![r]),
        }
    }
    points
}

/// The identity and run-count columns of the summary.
fn point_columns(points: &[Vec<&LoadedRun>], axis_keys: &[String], has_cases: bool) -> Vec<Column> {
    let first = |f: &dyn Fn(&LoadedRun) -> &str| -> Vec<String> {
        points.iter().map(|p| f(p[0]).to_string()).collect()
    };
    let count = |f: &dyn Fn(Option<RunState>) -> bool| -> Vec<u32> {
        points
            .iter()
            .map(|p| p.iter().filter(|r| f(r.state())).count() as u32)
            .collect()
    };
    let mut cols = vec![
        Column::new("point".into(), first(&|r| &r.record.point)),
        Column::new("label".into(), first(&|r| &r.record.point_label)),
    ];
    if has_cases {
        cols.push(Column::new(
            "case".into(),
            points
                .iter()
                .map(|p| p[0].record.case.as_deref())
                .collect::<Vec<_>>(),
        ));
    }
    cols.extend(axis_columns(
        axis_keys,
        points.iter().map(|p| p[0].record.axes.as_slice()),
    ));
    cols.push(Column::new("n_runs".into(), count(&|_| true)));
    cols.push(Column::new(
        "n_done".into(),
        count(&|s| s == Some(RunState::Done)),
    ));
    cols.push(Column::new(
        "divergences".into(),
        count(&|s| s == Some(RunState::Diverged)),
    ));
    cols.push(Column::new(
        "n_failed".into(),
        count(&|s| s == Some(RunState::Failed)),
    ));
    cols.push(Column::new(
        "n_unfinished".into(),
        count(&|s| !s.is_some_and(RunState::is_over)),
    ));
    cols
}

/// One row per grid point: axis values, run counts, and seed statistics of every metric
/// (metrics computed in parallel).
pub fn summary_frame(
    runs: &[LoadedRun],
    axis_keys: &[String],
    has_cases: bool,
    last_k: usize,
) -> Result<DataFrame> {
    let last_k = last_k.max(1);
    let points = group_points(runs);
    let mut cols = point_columns(&points, axis_keys, has_cases);
    let per_point = |f: &(dyn Fn(&LoadedRun) -> Option<f64> + Sync)| -> Vec<SeedStats> {
        points
            .iter()
            .map(|p| {
                let xs: Vec<f64> = p
                    .iter()
                    .filter(|r| r.finished())
                    .filter_map(|r| f(r))
                    .collect();
                seed_stats(&xs)
            })
            .collect()
    };
    let train = metric_names(runs.iter().flat_map(|r| &r.metrics));
    let eval: Vec<String> = metric_names(runs.iter().flat_map(|r| &r.eval))
        .into_iter()
        .filter(|m| !train.contains(m))
        .collect();
    let train_cols: Vec<[Column; 4]> = train
        .par_iter()
        .flat_map_iter(|m| {
            let fin = per_point(&|r| series(&r.metrics, m).last().copied());
            let lastk = per_point(&|r| {
                let s = series(&r.metrics, m);
                let tail = &s[s.len().saturating_sub(last_k)..];
                (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64)
            });
            [
                stat_columns(&format!("{m}:final"), &fin),
                stat_columns(&format!("{m}:lastk"), &lastk),
            ]
        })
        .collect();
    let eval_cols: Vec<[Column; 4]> = eval
        .par_iter()
        .flat_map_iter(|m| {
            let fin = per_point(&|r| series(&r.eval, m).last().copied());
            let best = per_point(&|r| series(&r.eval, m).into_iter().reduce(f64::max));
            [
                stat_columns(&format!("{m}:final"), &fin),
                stat_columns(&format!("{m}:best"), &best),
            ]
        })
        .collect();
    cols.extend(train_cols.into_iter().chain(eval_cols).flatten());
    DataFrame::new(points.len(), cols).map_err(|e| Error::Input(e.to_string()))
}

#[cfg(test)]
mod tests;
