use super::logs::{convert_run, read_jsonl, read_log, Log};
use super::*;
use serde_yaml::Value;

fn record(id: &str, seed: i64) -> RunRecord {
    RunRecord {
        id: id.into(),
        point: "p".into(),
        label: format!("dcmdp/c=0.01/lr=0.1/seed={seed}"),
        point_label: "dcmdp/c=0.01/lr=0.1".into(),
        case: Some("dcmdp".into()),
        seed,
        axes: vec![
            ("optim.lr".into(), Value::from(0.1)),
            ("algorithm.c".into(), Value::from(0.01)),
        ],
        config: serde_yaml::from_str("train: { steps: 7 }\nalgorithm: { name: dcmdp, c: 0.01 }")
            .unwrap(),
    }
}

#[test]
fn manifest_round_trips_keeping_axis_order() {
    let d = tempfile::tempdir().unwrap();
    let m = Manifest {
        name: "g".into(),
        description: None,
        source: "g.yaml".into(),
        axes: vec!["optim.lr".into(), "algorithm.c".into()],
        cases: vec!["dcmdp".into()],
        overrides: vec![],
        runs: vec![record("a", 0), record("b", 1)],
    };
    m.write(d.path()).unwrap();
    let text = std::fs::read_to_string(d.path().join(MANIFEST_FILE)).unwrap();
    // Axes are stored as a mapping, in declaration order (not sorted).
    let lr = text.find("optim.lr: 0.1").unwrap();
    assert!(lr < text.find("algorithm.c: 0.01").unwrap(), "{text}");
    assert_eq!(Manifest::read(d.path()).unwrap(), m);
    let r = &m.runs[1];
    assert_eq!(r.total_steps(), 7);
    assert_eq!(r.config_value("algorithm.c"), Some(&Value::from(0.01)));
    assert!(r.is_named("b") && r.is_named(&r.label) && r.is_named(&r.point_label));
    assert_eq!(m.select("dcmdp/c=0.01/lr=0.1").len(), 2);
    assert!(is_grid_dir(d.path()));
    let e = Manifest::read(&d.path().join("x")).unwrap_err().to_string();
    assert!(e.contains("not a grid output directory"), "{e}");
}

#[test]
fn a_running_status_whose_process_is_gone_reads_as_interrupted() {
    let d = tempfile::tempdir().unwrap();
    let mut st = RunStatus::new(&record("a", 0), 7, RunState::Running);
    st.claim();
    assert_eq!(
        st.effective_state(),
        RunState::Running,
        "this process lives"
    );
    st.pid = Some(i32::MAX as u32 - 7);
    assert_eq!(st.effective_state(), RunState::Interrupted);
    st.host = Some("another-host".into());
    assert_eq!(
        st.effective_state(),
        RunState::Running,
        "a pid on another host cannot be checked"
    );
    st.write(d.path()).unwrap();
    assert_eq!(
        RunStatus::read(d.path()).unwrap().host.as_deref(),
        Some("another-host")
    );
    assert_eq!(
        serde_json::to_string(&RunState::Interrupted).unwrap(),
        "\"interrupted\""
    );
}

#[test]
fn grid_loads_runs_with_status_and_logs() {
    let d = tempfile::tempdir().unwrap();
    let m = Manifest {
        name: "g".into(),
        description: None,
        source: "g.yaml".into(),
        axes: vec![],
        cases: vec![],
        overrides: vec![],
        runs: (0..8).map(|i| record(&format!("r{i}"), i)).collect(),
    };
    m.write(d.path()).unwrap();
    for (i, r) in m.runs.iter().enumerate() {
        let dir = run_dir(d.path(), &r.id);
        let lines: String = (1..=3)
            .map(|s| format!("{{\"step\": {s}, \"x\": {}}}\n", i * 10 + s))
            .collect();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(METRICS_JSONL), lines).unwrap();
        if i != 3 {
            RunStatus::new(r, 3, RunState::Done).write(&dir).unwrap();
        }
    }
    let (back, runs) = load_grid(d.path()).unwrap();
    assert_eq!(back, m);
    // Manifest order, whatever order the parallel reads finish in.
    let ids: Vec<&str> = runs.iter().map(|r| r.record.id.as_str()).collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
    assert_eq!(runs[5].final_value("x"), Some(53.0));
    assert_eq!(runs[5].last_k("x", 2), Some(52.5));
    assert!(runs[5].finished());
    assert_eq!(runs[3].state(), None);
    assert!(!runs[3].finished());
}

#[test]
fn jsonl_tolerates_a_torn_tail_and_odd_values() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.jsonl");
    std::fs::write(
        &p,
        "{\"step\": 2, \"a\": 1.5, \"b\": null, \"c\": \"NaN\", \"d\": true, \"e\": \"x\"}\n\
         {\"step\": 1, \"a\": 0.5}\n{\"step\": 3, \"a\"",
    )
    .unwrap();
    let rows = read_jsonl(&p).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["step"], 1.0);
    assert!(rows[1]["b"].is_nan() && rows[1]["c"].is_nan());
    assert_eq!(rows[1]["d"], 1.0);
    assert!(!rows[1].contains_key("e"));
    // A bad line that is not the last is an error.
    std::fs::write(&p, "{\"step\": 1}\nnope\n{\"step\": 2}\n").unwrap();
    assert!(read_jsonl(&p).unwrap_err().to_string().contains(":2:"));
}

#[test]
fn parquet_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = (1..=4)
        .map(|s| {
            let mut r = Row::new();
            r.insert("step".into(), s as f64);
            r.insert("critic/score/mean".into(), 0.1 * s as f64);
            if s % 2 == 0 {
                r.insert("dc/lambda".into(), 1.0 / s as f64);
            }
            r
        })
        .collect();
    std::fs::write(
        d.path().join(METRICS_JSONL),
        rows.iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    convert_run(d.path()).unwrap();
    std::fs::remove_file(d.path().join(METRICS_JSONL)).unwrap();
    let back = read_log(d.path(), Log::Metrics).unwrap();
    assert_eq!(back, rows);
}

#[test]
fn parquet_copies_are_rewritten_only_when_the_log_changed() {
    let d = tempfile::tempdir().unwrap();
    let (src, copy) = (d.path().join(METRICS_JSONL), d.path().join(METRICS_PARQUET));
    std::fs::write(&src, "{\"step\": 1, \"a\": 1.0}\n").unwrap();
    convert_run(d.path()).unwrap();
    let first = std::fs::metadata(&copy).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    convert_run(d.path()).unwrap();
    assert_eq!(std::fs::metadata(&copy).unwrap().modified().unwrap(), first);
    // The training loop appends a step: the copy follows.
    std::fs::write(
        &src,
        "{\"step\": 1, \"a\": 1.0}\n{\"step\": 2, \"a\": 3.0}\n",
    )
    .unwrap();
    convert_run(d.path()).unwrap();
    std::fs::remove_file(&src).unwrap();
    assert_eq!(read_log(d.path(), Log::Metrics).unwrap().len(), 2);
}
