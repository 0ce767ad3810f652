//! A run's metric logs: `metrics.jsonl` / `eval.jsonl` as the training loop writes them (one JSON
//! object per line: `step` and metric name → value), and their Parquet copies (`step` then one
//! `Float64` column per metric name).
use super::{atomic_write_with, EVAL_JSONL, EVAL_PARQUET, METRICS_JSONL, METRICS_PARQUET};
use crate::{Error, Result};
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

/// One log line: `step` and metric name → value.
pub type Row = BTreeMap<String, f64>;

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

/// Every metric name in `rows` (without `step`), sorted. Consecutive rows of a log usually
/// carry the same keys: a row whose keys equal the previous row's is not searched again.
pub fn metric_names<'a>(rows: impl Iterator<Item = &'a Row>) -> BTreeSet<String> {
    let mut names: BTreeSet<&'a str> = BTreeSet::new();
    let mut prev: Option<&Row> = None;
    for r in rows {
        let same = prev.is_some_and(|p| p.len() == r.len() && p.keys().eq(r.keys()));
        if !same {
            names.extend(r.keys().map(String::as_str));
        }
        prev = Some(r);
    }
    names.remove("step");
    names.into_iter().map(str::to_string).collect()
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

/// Write a frame as Parquet, atomically. Buffered: the writer issues many small writes (about a
/// million syscalls for a 200-run grid's tables without the buffer).
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    atomic_write_with(path, |f| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        ParquetWriter::new(&mut w)
            .finish(df)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        w.flush()
    })
}

/// Read a Parquet file.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(f)
        .finish()
        .map_err(|e| polars_err(path, e))
}

/// Which log of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Metrics,
    Eval,
}

impl Log {
    pub const ALL: [Log; 2] = [Log::Metrics, Log::Eval];

    pub fn jsonl(self) -> &'static str {
        match self {
            Log::Metrics => METRICS_JSONL,
            Log::Eval => EVAL_JSONL,
        }
    }

    pub fn parquet(self) -> &'static str {
        match self {
            Log::Metrics => METRICS_PARQUET,
            Log::Eval => EVAL_PARQUET,
        }
    }
}

/// The rows of a run's log: from the JSONL the training loop writes, else from the Parquet copy,
/// else none.
pub fn read_log(run_dir: &Path, log: Log) -> Result<Vec<Row>> {
    let j = run_dir.join(log.jsonl());
    if j.exists() {
        return read_jsonl(&j);
    }
    let p = run_dir.join(log.parquet());
    if p.exists() {
        return frame_rows(&read_parquet(&p)?);
    }
    Ok(Vec::new())
}

/// Whether `copy` was written after `src` last changed (strictly later: with a coarse clock, equal
/// times count as stale).
fn up_to_date(src: &Path, copy: &Path) -> bool {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((mtime(src), mtime(copy)), (Some(s), Some(c)) if c > s)
}

/// Write the Parquet copy of a run's log from its rows, when the run has the JSONL and the copy
/// is older than it (a run that only has the Parquet copy keeps it).
pub fn write_log_parquet(run_dir: &Path, log: Log, rows: &[Row]) -> Result<()> {
    let (src, copy) = (run_dir.join(log.jsonl()), run_dir.join(log.parquet()));
    if src.exists() && !up_to_date(&src, &copy) {
        write_parquet(&mut rows_frame(rows)?, &copy)?;
    }
    Ok(())
}

/// `metrics.jsonl` → `metrics.parquet` and `eval.jsonl` → `eval.parquet` in one run directory.
pub fn convert_run(run_dir: &Path) -> Result<()> {
    for log in Log::ALL {
        let (src, copy) = (run_dir.join(log.jsonl()), run_dir.join(log.parquet()));
        if src.exists() && !up_to_date(&src, &copy) {
            write_parquet(&mut rows_frame(&read_jsonl(&src)?)?, &copy)?;
        }
    }
    Ok(())
}
