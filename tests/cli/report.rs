//! `harness report` and `harness gate` on synthetic run directories.
use super::{harness, text};
use std::path::{Path, PathBuf};
use std::process::Output;

const GRID: &str = "
name: gated
description: GRPO vs DC-GRPO, synthetic metrics
base:
  model: { name: tiny-qwen3 }
  task: { name: addition, difficulty: 1 }
  algorithm: { name: grpo }
  rollout: { prompts_per_step: 2, group_size: 4, max_new_tokens: 3 }
  train: { steps: 10 }
  eval: { every: 5, prompts: 8 }
seeds: [0, 1, 2]
cases:
  grpo: {}
  dcmdp: { set: { algorithm: { name: dcmdp, c: 0.002 } } }
";

/// Run ids and labels from `harness plan --json`.
pub(super) fn runs(grid: &Path) -> Vec<(String, String)> {
    let out = harness()
        .arg("plan")
        .arg(grid)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["label"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The `gated` grid (GRPO vs DC-GRPO × 3 seeds) with faked outputs (see [`fake_outputs`]).
fn fake_grid(dir: &Path, scale: f64, diverge: Option<usize>) -> PathBuf {
    fake_outputs(dir, "gated", GRID, scale, diverge)
}

/// Write grid `name` (`yaml`) into `dir`, prepare its output (via `harness slurm`) and fake what
/// training writes: reward `scale · (0.3 + 0.05·step)` (+ a little per seed), a discrepancy,
/// entropy and λ for DCMDP; run number `diverge` diverged. Returns `dir/out/<name>`.
pub(super) fn fake_outputs(
    dir: &Path,
    name: &str,
    yaml: &str,
    scale: f64,
    diverge: Option<usize>,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let g = dir.join(format!("{name}.yaml"));
    std::fs::write(&g, yaml).unwrap();
    let out_dir = dir.join("out");
    let out = harness()
        .arg("slurm")
        .arg(&g)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let gdir = out_dir.join(name);
    for (i, (id, label)) in runs(&g).iter().enumerate() {
        let rd = gdir.join("runs").join(id);
        let seed = (i % 3) as f64;
        let dc = label.starts_with("dcmdp") || yaml.contains("name: dcmdp");
        let m: String = (1..=10)
            .map(|s| {
                let mut l = format!(
                    "{{\"step\":{s},\"critic/score/mean\":{},\"actor/entropy\":{},\
                     \"actor/grad_norm\":{},\"rollout_corr/abs_prob_diff\":{}",
                    scale * (0.3 + 0.05 * s as f64) + 0.01 * seed,
                    2.0 - 0.05 * s as f64,
                    0.4 + 0.01 * seed,
                    0.003 + 0.0001 * s as f64
                );
                if dc {
                    l.push_str(&format!(",\"dc/lambda\":{}", 0.1 + 0.01 * s as f64));
                }
                l + "}\n"
            })
            .collect();
        std::fs::write(rd.join("metrics.jsonl"), m).unwrap();
        std::fs::write(
            rd.join("eval.jsonl"),
            format!(
                "{{\"step\":5,\"eval/addition/avg@1\":{}}}\n{{\"step\":10,\"eval/addition/avg@1\":{}}}\n",
                scale * 0.4,
                scale * 0.6
            ),
        )
        .unwrap();
        let (state, reason) = if diverge == Some(i) {
            (
                "diverged",
                ",\"reason\":\"entropy 0.01 < min_entropy 0.05\"",
            )
        } else {
            ("done", "")
        };
        std::fs::write(
            rd.join("status.json"),
            format!(
                "{{\"id\":\"{id}\",\"label\":\"{label}\",\"state\":\"{state}\",\"step\":10,\
                 \"total_steps\":10{reason}}}"
            ),
        )
        .unwrap();
    }
    gdir
}

fn gate(gdir: &Path, baseline: &Path, update: bool) -> Output {
    let mut c = harness();
    c.arg("gate").arg(gdir).arg("--baseline").arg(baseline);
    if update {
        c.arg("--update");
    }
    c.output().unwrap()
}

#[test]
fn gate_exit_codes_on_passing_and_regressing_runs() {
    let d = tempfile::tempdir().unwrap();
    let good = fake_grid(&d.path().join("good"), 1.0, None);
    let baseline = d.path().join("baselines/gated.csv");

    // No baseline yet: bad input.
    let out = gate(&good, &baseline, false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("gated.csv"), "{}", text(&out));

    // --update writes it; the same run then passes.
    let out = gate(&good, &baseline, true);
    assert!(out.status.success(), "{}", text(&out));
    let csv = std::fs::read_to_string(&baseline).unwrap();
    assert!(csv.contains("grpo,critic/score/mean,5,"), "{csv}");
    assert!(csv.contains("dcmdp,divergences,,0,,,lower"), "{csv}");
    let out = gate(&good, &baseline, false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("| point | metric | baseline | now | delta | tolerance | verdict |"));
    assert!(t.contains("**PASS**"), "{t}");

    // Collapsed reward and accuracy: exit 1, the regressions named.
    let bad = fake_grid(&d.path().join("bad"), 0.3, None);
    let out = gate(&bad, &baseline, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("| `grpo` | `critic/score/mean` |") && t.contains("**REGRESSION**"),
        "{t}"
    );
    assert!(t.contains("**FAIL**"), "{t}");

    // A divergence where the baseline had none: exit 1, even with identical metrics.
    let div = fake_grid(&d.path().join("div"), 1.0, Some(4));
    let out = gate(&div, &baseline, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("diverged where the baseline did not"),
        "{}",
        text(&out)
    );

    // A malformed baseline: exit 2, naming file, line and column.
    std::fs::write(
        &baseline,
        csv.replacen("grpo,critic/score/mean,5,", "grpo,critic/score/mean,5,x", 1),
    )
    .unwrap();
    let out = gate(&good, &baseline, false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let line = csv
        .lines()
        .position(|l| l.starts_with("grpo,critic/score/mean,"))
        .unwrap()
        + 1;
    let want = format!("gated.csv:{line}: column `value`: not a number");
    assert!(text(&out).contains(&want), "{want}\n{}", text(&out));

    // Not a grid directory: exit 2.
    let out = gate(d.path(), &baseline, false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no grid.yaml"), "{}", text(&out));
}

#[test]
fn report_writes_markdown_and_svgs() {
    let d = tempfile::tempdir().unwrap();
    let gdir = fake_grid(d.path(), 1.0, Some(5));
    let out = harness().arg("report").arg(&gdir).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::read_to_string(gdir.join("report/report.md")).unwrap();
    assert!(md.starts_with("# Report: `gated`"), "{md}");
    assert!(md.contains("GRPO vs DC-GRPO, synthetic metrics"), "{md}");
    assert!(md.contains("| `grpo` | 3/3 | 0 |"), "{md}");
    assert!(md.contains("| `dcmdp` | 3/3 | 1 |"), "{md}");
    assert!(md.contains("entropy 0.01 < min_entropy 0.05"), "{md}");
    for svg in [
        "critic-score-mean.svg",
        "eval-addition-avg@1.svg",
        "rollout_corr-abs_prob_diff.svg",
        "dc-lambda.svg",
        "actor-entropy.svg",
        "actor-grad_norm.svg",
    ] {
        let p = gdir.join("report").join(svg);
        assert!(md.contains(&format!("]({svg})")), "{svg} not linked");
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("<svg"), "{svg}");
    }
    // The tolerance line of the dcmdp case.
    let apd = std::fs::read_to_string(gdir.join("report/rollout_corr-abs_prob_diff.svg")).unwrap();
    assert!(apd.contains("c = 0.002"), "{apd}");

    // A bad claims file is bad input.
    let claims = d.path().join("c.yaml");
    std::fs::write(&claims, "metric: x\nclaims:\n  - claim: a\n").unwrap();
    let out = harness()
        .arg("report")
        .arg(&gdir)
        .arg("--claims")
        .arg(&claims)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("claims[0]: give exactly one of"),
        "{}",
        text(&out)
    );
}

/// Every shipped claims file (`experiments/claims/<grid>.yaml`) names grid points that its grid
/// really has, so a renamed case or axis value cannot silently turn a verdict into an error.
#[test]
fn shipped_claims_name_real_grid_points() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut n = 0;
    for e in std::fs::read_dir(root.join("claims")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue; // the README
        }
        let grid = root.join(p.file_name().unwrap());
        assert!(
            grid.exists(),
            "{} has no grid {}",
            p.display(),
            grid.display()
        );
        let points: Vec<String> = runs(&grid)
            .into_iter()
            .map(|(_, l)| l.rsplit_once("/seed=").unwrap().0.to_string())
            .collect();
        let v: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        for c in v["claims"].as_sequence().unwrap() {
            for key in ["less", "greater", "interior_max"] {
                // A number (a one-sample claim) names no point.
                for label in c[key].as_sequence().into_iter().flatten() {
                    let Some(label) = label.as_str() else {
                        assert!(label.is_number(), "{}: {label:?}", p.display());
                        continue;
                    };
                    assert!(
                        points.iter().any(|x| x == label),
                        "{}: `{label}`",
                        p.display()
                    );
                    n += 1;
                }
            }
        }
    }
    assert!(n >= 10, "{n}");
}
