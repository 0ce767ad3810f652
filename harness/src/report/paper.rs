//! Published result tables (`baselines/paper-*.csv`), set beside a run in the report.
//!
//! Columns: `label` (how the row is named), then *match columns* — dotted config keys such as
//! `model.name`, `algorithm.name`, `rollout.engine.weight_quant`: a grid point matches a row when
//! its resolved config has each value (strings compare case-insensitively by their last path
//! component, so `models/Qwen3-8B` matches `qwen3-8b`) — then *metric columns*, any name with a
//! `/`, in percent. A metric column `eval/<task>/avg@K` is compared with the run's
//! `eval/<task>/avg@k` for whatever k it logs (final value, × 100); `eval/avg` with the mean of the
//! run's other matched columns.
use super::csv::Csv;
use super::{value_text, Point, Stat};
use crate::Result;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct PaperTable {
    pub path: PathBuf,
    pub match_keys: Vec<String>,
    pub metrics: Vec<String>,
    pub rows: Vec<PaperRow>,
}

#[derive(Debug, Clone)]
pub struct PaperRow {
    pub label: String,
    pub keys: Vec<String>,
    pub values: Vec<Option<f64>>,
}

/// Strings equal case-insensitively by their last `/` component.
fn same(a: &str, b: &str) -> bool {
    let last = |s: &str| {
        s.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(s)
            .to_lowercase()
    };
    a == b || last(a) == last(b)
}

impl PaperTable {
    pub fn read(path: &Path) -> Result<PaperTable> {
        let csv = Csv::read(path)?;
        let label = csv.column("label")?;
        let mut match_keys = Vec::new();
        let mut metrics = Vec::new();
        for (i, h) in csv.header.iter().enumerate() {
            if i == label {
                continue;
            }
            if h.contains('/') {
                metrics.push(h.clone());
            } else {
                match_keys.push(h.clone());
            }
        }
        let mut rows = Vec::new();
        for (line, cells) in &csv.records {
            let mut values = Vec::new();
            for m in &metrics {
                let c = csv.column(m)?;
                values.push(csv.number(*line, cells, c)?);
            }
            rows.push(PaperRow {
                label: cells[label].clone(),
                keys: match_keys
                    .iter()
                    .map(|k| cells[csv.column(k).unwrap()].clone())
                    .collect(),
                values,
            });
        }
        Ok(PaperTable {
            path: path.to_path_buf(),
            match_keys,
            metrics,
            rows,
        })
    }

    /// The first row whose match columns all agree with the point's config.
    pub fn matching_row(&self, p: &Point) -> Option<&PaperRow> {
        self.rows.iter().find(|r| {
            self.match_keys.iter().zip(&r.keys).all(|(k, want)| {
                want.is_empty()
                    || p.config_value(k)
                        .is_some_and(|v| same(&value_text(v), want))
            })
        })
    }

    /// The run's value for a paper metric column, in percent (final value, mean over seeds).
    pub fn run_value(&self, p: &Point, metric: &str, run_metrics: &[String]) -> Option<f64> {
        if metric == "eval/avg" {
            let vals: Option<Vec<f64>> = self
                .metrics
                .iter()
                .filter(|m| *m != "eval/avg")
                .map(|m| self.run_value(p, m, run_metrics))
                .collect();
            let vals = vals?;
            return (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64);
        }
        let name = match metric.find('@') {
            Some(i) => run_metrics
                .iter()
                .find(|n| n.starts_with(&metric[..=i]))?
                .clone(),
            None => metric.to_string(),
        };
        p.stats(&name, Stat::Final).mean.map(|v| 100.0 * v)
    }
}
