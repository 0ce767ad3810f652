//! `harness run` writes TensorBoard event files to `runs/<id>/tb/` with the metric names of
//! `metrics.jsonl` / `eval.jsonl`; a resumed run adds a file that starts a new session; and
//! `log.tensorboard: false` turns them off.
use super::{harness, root, run_resume, text};
use harness::rundir::tensorboard::{read_dir_events, read_events, Event};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The tiny grid of the TensorBoard fixture: 4 steps, eval and checkpoints every 2.
fn grid_text() -> String {
    std::fs::read_to_string(root().join("tests/fixtures/tensorboard/grid.yaml")).unwrap()
}

/// The one run directory of grid `name` under `out`.
fn run_dir(out: &Path, name: &str) -> PathBuf {
    let runs: Vec<_> = std::fs::read_dir(out.join(name).join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    runs.into_iter().next().unwrap()
}

/// (step → metric names) of a JSONL log.
fn jsonl_names(path: &Path) -> BTreeMap<i64, BTreeSet<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object().unwrap();
            let names = o.keys().filter(|k| *k != "step").cloned().collect();
            (o["step"].as_i64().unwrap(), names)
        })
        .collect()
}

/// (step → tags) of events, the union of every event at a step.
fn event_names(events: &[Event]) -> BTreeMap<i64, BTreeSet<String>> {
    let mut m: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for e in events.iter().filter(|e| !e.scalars.is_empty()) {
        m.entry(e.step)
            .or_default()
            .extend(e.scalars.iter().map(|(t, _)| t.clone()));
    }
    m
}

fn tb_files(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir.join("tb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

#[test]
fn run_writes_tensorboard_events_with_the_jsonl_metric_names_and_resume_adds_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("tb.yaml");
    std::fs::write(&grid, grid_text()).unwrap();
    let out = tmp.path().join("out");
    run_resume(&grid, &out);
    let dir = run_dir(&out, "tbfix");

    let files = tb_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let events = read_events(&files[0]).unwrap();
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    let mut want = jsonl_names(&dir.join("metrics.jsonl"));
    for (step, names) in jsonl_names(&dir.join("eval.jsonl")) {
        want.entry(step).or_default().extend(names);
    }
    assert_eq!(
        want.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert!(
        want[&2].contains("critic/score/mean") && want[&2].iter().any(|n| n.starts_with("eval/"))
    );
    assert_eq!(event_names(&events), want);
    // The values are the JSONL's (as f32).
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let ev4 = events
        .iter()
        .find(|e| e.step == 4 && !e.scalars.is_empty())
        .unwrap();
    let reward = ev4
        .scalars
        .iter()
        .find(|(t, _)| t == "actor/entropy")
        .unwrap()
        .1;
    assert_eq!(reward, last["actor/entropy"].as_f64().unwrap() as f32);

    // Resume from step 2 (as after a kill between the two checkpoints): a second file, starting
    // a session at step 3, then steps 3 and 4 again; the first file is left as it was.
    let first = std::fs::read(&files[0]).unwrap();
    std::fs::remove_dir_all(dir.join("checkpoints/step-000004")).unwrap();
    let status = dir.join("status.json");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap();
    st["state"] = "running".into();
    std::fs::write(&status, st.to_string()).unwrap();
    run_resume(&grid, &out);
    let files = tb_files(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), first);
    let resumed = read_events(&files[1]).unwrap();
    assert!(
        resumed[1].session_start && resumed[1].step == 3,
        "{:?}",
        resumed[1]
    );
    let names = event_names(&resumed);
    assert_eq!(names.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(names[&4], want[&4]);
    assert_eq!(
        read_dir_events(&dir.join("tb")).unwrap().len(),
        events.len() + resumed.len()
    );
}

#[test]
fn log_tensorboard_false_writes_no_event_files_and_a_bad_value_names_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("tb.yaml");
    let off = grid_text().replace("name: tbfix", "name: tboff").replace(
        "train: { steps: 4 }",
        "train: { steps: 1 }\n  log: { tensorboard: false }",
    );
    std::fs::write(&grid, &off).unwrap();
    let out = tmp.path().join("out");
    run_resume(&grid, &out);
    let dir = run_dir(&out, "tboff");
    assert!(dir.join("metrics.jsonl").is_file());
    assert!(!dir.join("tb").exists());

    std::fs::write(
        &grid,
        off.replace("tensorboard: false", "tensorboard: maybe"),
    )
    .unwrap();
    let o = harness()
        .args(["validate", grid.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("log.tensorboard"), "{}", text(&o));
}
