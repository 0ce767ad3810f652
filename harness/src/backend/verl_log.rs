//! verl's per-step metrics (its `file` logger, `verl.utils.tracking.FileLogger`: one JSON line
//! `{"step": s, "data": {name: value}}` per `Tracking.log` call) as the harness's run logs.
//!
//! Training metrics keep their names: the harness already logs verl's (`actor/pg_loss`,
//! `critic/score/mean`, `response_length/mean`, `rollout_corr/*`, `timing_s/*`, `perf/*`, and the
//! plugins' `dc/*`, `drpo/*`), so `table`, `report`, claims and `gate` read them unchanged; lines
//! of the same step merge. Validation metrics go to `eval.jsonl`:
//! `val-core/<task>/acc/mean@K` → `eval/<task>/avg@K` (the harness's accuracy name; verl's value,
//! a fraction), any other `val-core|val-aux/<task>/<var>/<stat>` → `eval/<task>/<var>/<stat>`.
use crate::rundir::logs::{convert_run, Row};
use crate::rundir::{EVAL_JSONL, METRICS_JSONL};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// verl's log split into the harness's two logs, each sorted by step.
#[derive(Debug, Default, PartialEq)]
pub struct VerlLog {
    pub metrics: Vec<Row>,
    pub eval: Vec<Row>,
}

/// The harness's name of a verl validation metric (`None`: a training metric).
pub fn eval_name(key: &str) -> Option<String> {
    let rest = key
        .strip_prefix("val-core/")
        .or_else(|| key.strip_prefix("val-aux/"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    if let [task, "acc", stat] = parts[..] {
        if let Some(k) = stat.strip_prefix("mean@") {
            return Some(format!("eval/{task}/avg@{k}"));
        }
    }
    Some(format!("eval/{rest}"))
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        serde_json::Value::Null => Some(f64::NAN),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parse verl's JSON lines. A torn last line (a killed process) is ignored; a bad line elsewhere
/// is an error naming the line.
pub fn parse(text: &str, origin: &Path) -> Result<VerlLog> {
    let mut metrics: BTreeMap<i64, Row> = BTreeMap::new();
    let mut eval: BTreeMap<i64, Row> = BTreeMap::new();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for (i, line) in lines.iter().enumerate() {
        let bad = |why: String| Error::Input(format!("{}:{}: {why}", origin.display(), i + 1));
        let obj: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => return Err(bad(format!("not JSON: {e}"))),
        };
        let step = obj["step"]
            .as_i64()
            .ok_or_else(|| bad("no integer `step`".into()))?;
        let data = obj["data"]
            .as_object()
            .ok_or_else(|| bad("no `data` object".into()))?;
        for (k, v) in data {
            let Some(x) = number(v) else { continue };
            let (log, name) = match eval_name(k) {
                Some(n) => (&mut eval, n),
                None => (&mut metrics, k.clone()),
            };
            let row = log.entry(step).or_default();
            row.insert("step".into(), step as f64);
            row.insert(name, x);
        }
    }
    Ok(VerlLog {
        metrics: metrics.into_values().collect(),
        eval: eval.into_values().collect(),
    })
}

pub fn read(path: &Path) -> Result<VerlLog> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path)
}

fn write_jsonl(path: &Path, rows: &[Row]) -> Result<()> {
    let mut text = String::new();
    for r in rows {
        let obj: serde_json::Map<String, serde_json::Value> = r
            .iter()
            .map(|(k, v)| {
                let v = if k == "step" {
                    serde_json::json!(*v as i64)
                } else {
                    serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into)
                };
                (k.clone(), v)
            })
            .collect();
        text.push_str(&serde_json::Value::Object(obj).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Read `run_dir/verl_metrics.jsonl` into `metrics.jsonl` / `eval.jsonl` (rewritten whole: verl's
/// log is the source) and their Parquet copies.
pub fn ingest(run_dir: &Path) -> Result<VerlLog> {
    let log = read(&run_dir.join(super::verl::VERL_LOG))?;
    write_jsonl(&run_dir.join(METRICS_JSONL), &log.metrics)?;
    if !log.eval.is_empty() {
        write_jsonl(&run_dir.join(EVAL_JSONL), &log.eval)?;
    }
    convert_run(run_dir)?;
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_names() {
        assert_eq!(
            eval_name("val-core/aime24/acc/mean@32").unwrap(),
            "eval/aime24/avg@32"
        );
        assert_eq!(
            eval_name("val-aux/aime24/reward/mean@32").unwrap(),
            "eval/aime24/reward/mean@32"
        );
        assert_eq!(eval_name("actor/pg_loss"), None);
    }

    #[test]
    fn merges_steps_and_rejects_bad_lines() {
        let text = "{\"step\":2,\"data\":{\"a/b\":1.5}}\n{\"step\":1,\"data\":{\"a/b\":0.5,\"s\":\"x\"}}\n\
                    {\"step\":2,\"data\":{\"c\":3,\"val-core/t/acc/mean@4\":0.25}}\n{\"step\":3,";
        let log = parse(text, Path::new("x")).unwrap();
        assert_eq!(log.metrics.len(), 2);
        assert_eq!(log.metrics[0]["step"], 1.0);
        assert!(!log.metrics[0].contains_key("s"));
        assert_eq!(log.metrics[1]["c"], 3.0);
        assert_eq!(log.eval[0]["eval/t/avg@4"], 0.25);
        let err = parse("{\"step\":1}\n{}\n", Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("x:1"), "{err}");
    }
}
