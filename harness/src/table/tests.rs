use super::*;
use crate::grid::runner::{prepare, PrepareMode};
use crate::grid::Grid;
use crate::rundir::logs::read_parquet;
use crate::rundir::{RunRecord, RunStatus, METRICS_JSONL, METRICS_PARQUET};
use serde_yaml::Value;

fn row(step: i64, kv: &[(&str, f64)]) -> Row {
    let mut r: Row = kv.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    r.insert("step".into(), step as f64);
    r
}

/// Two grid points (c = 0.001 / 0.01) × three seeds, with a diverged run, a failed run and a
/// metric that only some runs log.
fn synthetic() -> Vec<LoadedRun> {
    let mut runs = Vec::new();
    for (p, c) in [(0usize, 0.001f64), (1, 0.01)] {
        for seed in 0..3i64 {
            let state = match (p, seed) {
                (1, 1) => RunState::Diverged,
                (1, 2) => RunState::Failed,
                _ => RunState::Done,
            };
            let base = 0.1 * (p as f64 + 1.0) + 0.01 * seed as f64;
            let metrics: Vec<Row> = (1..=6)
                .map(|s| {
                    let mut kv = vec![
                        ("critic/score/mean", base + 0.05 * s as f64),
                        ("actor/pg_loss", 1.0 / s as f64 - base),
                    ];
                    if seed == 0 {
                        kv.push(("dc/lambda", 0.1 * s as f64));
                    }
                    if state == RunState::Diverged && s == 6 {
                        kv[1].1 = f64::NAN;
                    }
                    row(s, &kv)
                })
                .collect();
            let eval = vec![
                row(3, &[("eval/addition/avg@1", base + 0.2)]),
                row(6, &[("eval/addition/avg@1", base + 0.1)]),
            ];
            let record = RunRecord {
                id: format!("r{p}{seed}"),
                label: format!("dcmdp/c={c}/seed={seed}"),
                point: format!("p{p}"),
                point_label: format!("dcmdp/c={c}"),
                case: Some("dcmdp".into()),
                seed,
                axes: vec![("algorithm.c".into(), Value::from(c))],
                config: Value::Null,
            };
            runs.push(LoadedRun {
                status: Some(RunStatus::new(&record, 6, state)),
                record,
                metrics,
                eval,
            });
        }
    }
    runs
}

fn csv_of(df: &mut DataFrame) -> String {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.csv");
    write_csv(df, &p).unwrap();
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn summary_csv_snapshot() {
    let runs = synthetic();
    let mut df = summary_frame(&runs, &["algorithm.c".into()], true, 3).unwrap();
    insta::assert_snapshot!("summary_csv", csv_of(&mut df));
}

#[test]
fn summary_statistics() {
    let runs = synthetic();
    let df = summary_frame(&runs, &["algorithm.c".into()], true, 3).unwrap();
    assert_eq!(df.height(), 2);
    let get = |col: &str, i: usize| -> Option<f64> {
        df.column(col)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .get(i)
    };
    // Point 0: three done seeds; final score = 0.1 + 0.01·seed + 0.3.
    assert!((get("critic/score/mean:final_mean", 0).unwrap() - 0.41).abs() < 1e-12);
    assert_eq!(get("critic/score/mean:final_n", 0), Some(3.0));
    let sd = 0.01f64;
    assert!((get("critic/score/mean:final_std", 0).unwrap() - sd).abs() < 1e-12);
    let ci = stats::t975(2) * sd / 3f64.sqrt();
    assert!((get("critic/score/mean:final_ci95", 0).unwrap() - ci).abs() < 1e-12);
    // last-3 mean of 0.05·(4, 5, 6) + base.
    assert!((get("critic/score/mean:lastk_mean", 0).unwrap() - (0.11 + 0.25)).abs() < 1e-12);
    // Point 1: the failed seed is left out, the diverged one counts; its NaN loss does not.
    assert_eq!(get("divergences", 1), Some(1.0));
    assert_eq!(get("n_failed", 1), Some(1.0));
    assert_eq!(get("critic/score/mean:final_n", 1), Some(2.0));
    assert_eq!(get("actor/pg_loss:final_n", 1), Some(2.0));
    // dc/lambda: only seed 0 logs it → n = 1, no std / CI.
    assert_eq!(get("dc/lambda:final_n", 0), Some(1.0));
    assert_eq!(get("dc/lambda:final_std", 0), None);
    // Eval: best is the step-3 value, final the step-6 one.
    assert!((get("eval/addition/avg@1:best_mean", 0).unwrap() - 0.31).abs() < 1e-12);
    assert!((get("eval/addition/avg@1:final_mean", 0).unwrap() - 0.21).abs() < 1e-12);
    assert_eq!(get("algorithm.c", 1), Some(0.01));
}

#[test]
fn steps_join_training_and_eval() {
    let runs = synthetic();
    let df = steps_frame(&runs, &["algorithm.c".into()], true).unwrap();
    assert_eq!(df.height(), 6 * 6);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        &names[..6],
        &["run_id", "label", "case", "seed", "algorithm.c", "step"]
    );
    assert!(names.contains(&"eval/addition/avg@1".to_string()));
    let ev = df.column("eval/addition/avg@1").unwrap().f64().unwrap();
    assert_eq!(ev.null_count(), 6 * 4);
}

#[test]
fn tables_from_run_directories() {
    let g = Grid::parse(
        "
base:
  model: { name: tiny-qwen3 }
  task: { name: addition }
  algorithm: { name: grpo }
seeds: [0, 1]
axes: { optim.lr: [1.0e-4, 2.0e-4] }
",
        std::path::Path::new("t.yaml"),
    )
    .unwrap();
    let d = tempfile::tempdir().unwrap();
    let (gdir, _) = prepare(&g, d.path(), PrepareMode::default()).unwrap();
    for (i, r) in g.runs.iter().enumerate() {
        let dir = gdir.join("runs").join(&r.id);
        let lines: String = (1..=4)
            .map(|s| format!("{{\"step\": {s}, \"critic/score/mean\": {}}}\n", i * 10 + s))
            .collect();
        std::fs::write(dir.join(METRICS_JSONL), lines).unwrap();
        let rec = crate::grid::manifest::record(r);
        let mut st = RunStatus::new(&rec, 4, RunState::Done);
        st.step = 4;
        st.write(&dir).unwrap();
    }
    let rep = build_tables(&gdir, &TableOptions::default()).unwrap();
    assert_eq!(
        (rep.runs, rep.points, rep.step_rows, rep.metrics),
        (4, 2, 16, 1)
    );
    for f in ["steps.parquet", "summary.parquet", "summary.csv"] {
        assert!(gdir.join("tables").join(f).exists(), "{f}");
    }
    assert!(gdir
        .join("runs")
        .join(&g.runs[0].id)
        .join(METRICS_PARQUET)
        .exists());
    let steps = read_parquet(&gdir.join("tables/steps.parquet")).unwrap();
    assert_eq!(steps.height(), 16);
    assert!(steps.column("optim.lr").is_ok());
    let summary = std::fs::read_to_string(gdir.join("tables/summary.csv")).unwrap();
    let header = summary.lines().next().unwrap();
    assert!(
        header.starts_with("point,label,optim.lr,n_runs,n_done,divergences"),
        "{header}"
    );
}

#[test]
fn last_k_zero_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let e = build_tables(d.path(), &TableOptions { last_k: 0 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("last-k must be at least 1"), "{e}");
}
