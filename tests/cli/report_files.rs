//! `harness report`, `gate` and `table` must not lose a user's files or accept input they then
//! ignore: what an earlier report wrote is all a report replaces; `gate --update` does not drop
//! rows silently; claims, published tables and grouping axes that match nothing are named.
use super::report::fake_outputs;
use super::{harness, text};
use std::path::Path;

const GATED: &str = "
name: gated
base:
  model: { name: tiny-qwen3 }
  task: { name: addition, difficulty: 1 }
  algorithm: { name: grpo }
  train: { steps: 10 }
seeds: [0, 1, 2]
cases:
  grpo: {}
  dcmdp: { set: { algorithm: { name: dcmdp, c: 0.002 } } }
";

fn report(gdir: &Path, args: &[&str]) -> std::process::Output {
    harness()
        .arg("report")
        .arg(gdir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn report_out_replaces_only_what_a_report_wrote() {
    let d = tempfile::tempdir().unwrap();
    let gdir = fake_outputs(d.path(), "gated", GATED, 1.0, None);
    let out = d.path().join("notes");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("NOTES.md"), "my notes").unwrap();
    std::fs::write(out.join("sketch.svg"), "<svg/>").unwrap();
    let o = report(&gdir, &["--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("NOTES.md")).unwrap(),
        "my notes"
    );
    assert!(out.join("sketch.svg").exists());
    assert!(out.join("report.md").exists() && out.join("critic-score-mean.svg").exists());
    let list = std::fs::read_to_string(out.join(".report-files")).unwrap();
    assert!(list.contains("\nreport.md\n") && list.contains("\ncritic-score-mean.svg\n"));

    // A curve an earlier report drew and this one does not is removed; the user's files stay.
    std::fs::write(out.join("old-curve.svg"), "<svg/>").unwrap();
    std::fs::write(out.join(".report-files"), format!("{list}old-curve.svg\n")).unwrap();
    let o = report(&gdir, &["--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!out.join("old-curve.svg").exists());
    assert!(out.join("NOTES.md").exists() && out.join("sketch.svg").exists());
}

#[test]
fn gate_update_refuses_to_drop_rows_and_defaults_discrepancy_to_lower() {
    let d = tempfile::tempdir().unwrap();
    let gdir = fake_outputs(d.path(), "gated", GATED, 1.0, None);
    let baseline = d.path().join("b.csv");
    let gate = |args: &[&str]| {
        harness()
            .arg("gate")
            .arg(&gdir)
            .arg("--baseline")
            .arg(&baseline)
            .args(args)
            .output()
            .unwrap()
    };
    let o = gate(&["--update"]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(&baseline).unwrap();
    // A smaller discrepancy must never fail the gate.
    let apd: Vec<&str> = csv
        .lines()
        .filter(|l| l.contains(",rollout_corr/abs_prob_diff,"))
        .collect();
    assert_eq!(apd.len(), 2, "{csv}");
    assert!(apd.iter().all(|l| l.ends_with(",lower")), "{csv}");

    // Rows of a point this grid lacks: refused (nothing written) unless --force.
    let extra = "other/c=9,critic/score/mean,5,0.5,0.1,,higher\n";
    std::fs::write(&baseline, format!("{csv}{extra}")).unwrap();
    let o = gate(&["--update"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`other/c=9`") || text(&o).contains("other/c=9"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert!(std::fs::read_to_string(&baseline).unwrap().contains(extra));
    let o = gate(&["--update", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!std::fs::read_to_string(&baseline)
        .unwrap()
        .contains("other/c=9"));
}

#[test]
fn flags_that_would_be_ignored_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let gdir = fake_outputs(d.path(), "gated", GATED, 1.0, None);
    let b = d.path().join("b.csv");
    let cases: [&[&str]; 5] = [
        &["report", "--last-k", "0"],
        &["table", "--last-k", "0"],
        &["gate", "--baseline", "b.csv", "--last-k", "3"],
        &[
            "gate",
            "--baseline",
            "b.csv",
            "--update",
            "--markdown",
            "g.md",
        ],
        &["report", "--group-by", "optim.lr"],
    ];
    for args in cases {
        let o = harness()
            .arg(args[0])
            .arg(&gdir)
            .args(&args[1..])
            .current_dir(d.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    let o = report(&gdir, &["--group-by", "optim.lr"]);
    assert!(text(&o).contains("no axis `optim.lr`"), "{}", text(&o));
    assert!(!b.exists() && !d.path().join("g.md").exists());
}

#[test]
fn claims_with_a_mistyped_label_or_metric_are_named() {
    let d = tempfile::tempdir().unwrap();
    let gdir = fake_outputs(d.path(), "gated", GATED, 1.0, None);
    let claims = d.path().join("claims.yaml");
    let check = |yaml: &str| {
        std::fs::write(&claims, yaml).unwrap();
        report(&gdir, &["--claims", claims.to_str().unwrap()])
    };
    let o = check("metric: critic/score/mean\nclaims:\n  - claim: a\n    greater: [dcmpd, grpo]\n");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("claims[0]: no grid point `dcmpd`"),
        "{}",
        text(&o)
    );
    let o =
        check("metric: eval/addition/avg@8\nclaims:\n  - claim: a\n    greater: [dcmdp, grpo]\n");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no run logs the metric `eval/addition/avg@8`"),
        "{}",
        text(&o)
    );
    let o = check("metric: critic/score/mean\nclaims:\n  - claim: a\n    greater: [dcmdp, grpo]\n");
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(gdir.join("report/report.md")).unwrap();
    assert!(md.contains("## Claims"), "{md}");
}

#[test]
fn a_published_table_without_a_matching_row_is_said() {
    let d = tempfile::tempdir().unwrap();
    let gdir = fake_outputs(d.path(), "gated", GATED, 1.0, None);
    let paper = d.path().join("paper-x.csv");
    std::fs::write(
        &paper,
        "label,model.name,algorithm.name,eval/addition/avg@32\nGRPO,qwen3-8b,grpo,40\n",
    )
    .unwrap();
    let o = report(&gdir, &["--paper", paper.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("no row matches a grid point"),
        "{}",
        text(&o)
    );
    let md = std::fs::read_to_string(gdir.join("report/report.md")).unwrap();
    assert!(
        md.contains("No row of this table matches a grid point"),
        "{md}"
    );
}

#[test]
fn a_one_axis_sweep_gets_one_chart_comparing_its_values() {
    let d = tempfile::tempdir().unwrap();
    let sweep = "
name: sweep
base:
  model: { name: tiny-qwen3 }
  task: { name: addition, difficulty: 1 }
  algorithm: { name: dcmdp }
  train: { steps: 10 }
seeds: [0, 1]
axes: { algorithm.c: [0.001, 0.004, 0.016] }
";
    let gdir = fake_outputs(d.path(), "sweep", sweep, 1.0, None);
    let o = report(&gdir, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let svg = std::fs::read_to_string(gdir.join("report/critic-score-mean.svg")).unwrap();
    for c in ["c=0.001", "c=0.004", "c=0.016"] {
        assert!(svg.contains(c), "{c} not in the chart");
    }
    // Grouping by the axis is still asked for explicitly: one chart per value.
    let o = report(&gdir, &["--group-by", "algorithm.c"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(gdir
        .join("report/critic-score-mean--algorithm.c-0.004.svg")
        .exists());
    assert!(
        !gdir.join("report/critic-score-mean.svg").exists(),
        "the earlier report's chart is replaced"
    );
}
