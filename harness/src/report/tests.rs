use super::claims::{Claims, Verdict as ClaimVerdict};
use super::gate::{evaluate, from_seeds, update, Baseline, Direction, Verdict};
use super::paper::PaperTable;
use super::*;
use crate::rundir::{LoadedRun, Manifest, Row, RunRecord, RunStatus};
use std::path::Path;

fn row(step: i64, kv: &[(&str, f64)]) -> Row {
    let mut r: Row = kv.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    r.insert("step".into(), step as f64);
    r
}

fn config(alg: &str, c: Option<f64>) -> Value {
    let mut s = format!(
        "model: {{ name: tiny-qwen3 }}\nrollout: {{ engine: {{ weight_quant: fp8-e4m3 }} }}\nalgorithm: {{ name: {alg}"
    );
    if let Some(c) = c {
        s.push_str(&format!(", c: {c}"));
    }
    s.push_str(" }\n");
    serde_yaml::from_str(&s).unwrap()
}

/// Three grid points (GRPO; DC-GRPO at c = 0.001 and 0.01) × 3 seeds, 8 steps, eval at 4 and 8;
/// one seed of c = 0.01 diverges at step 6. `scale` multiplies the rewards (a regressed run).
fn synthetic(scale: f64) -> GridResults {
    synthetic_seeds(scale, 3)
}

/// [`synthetic`] with `n` seeds (seed 2 of c = 0.01 still diverges).
fn synthetic_seeds(scale: f64, n: i64) -> GridResults {
    let points: [(&str, &str, Option<f64>); 3] = [
        ("grpo", "grpo", None),
        ("dcmdp/c=0.001", "dcmdp", Some(0.001)),
        ("dcmdp/c=0.01", "dcmdp", Some(0.01)),
    ];
    let mut runs = Vec::new();
    let mut mruns = Vec::new();
    for (pi, (label, alg, c)) in points.iter().enumerate() {
        for seed in 0..n {
            let diverged = pi == 2 && seed == 2;
            let last = if diverged { 6 } else { 8 };
            let base = 0.1 * pi as f64 + 0.02 * seed as f64;
            let metrics: Vec<Row> = (1..=last)
                .map(|s| {
                    let s_f = s as f64;
                    let mut kv = vec![
                        ("critic/score/mean", scale * (base + 0.05 * s_f)),
                        ("actor/entropy", 2.0 - 0.1 * s_f - 0.05 * seed as f64),
                        ("actor/grad_norm", 0.5 + 0.01 * s_f * (seed as f64 + 1.0)),
                        (
                            "rollout_corr/abs_prob_diff",
                            0.004 + 0.0005 * s_f - 0.001 * pi as f64,
                        ),
                    ];
                    if *alg == "dcmdp" {
                        kv.push(("dc/lambda", 0.1 + 0.02 * s_f * (pi as f64)));
                    }
                    row(s, &kv)
                })
                .collect();
            let eval = [4i64, 8]
                .iter()
                .filter(|&&s| s <= last)
                .map(|&s| {
                    row(
                        s,
                        &[("eval/addition/avg@4", scale * (base + 0.04 * s as f64))],
                    )
                })
                .collect();
            let id = format!("r{pi}{seed}");
            let axes = match c {
                Some(c) => vec![("algorithm.c".to_string(), Value::from(*c))],
                None => vec![],
            };
            let state = if diverged {
                RunState::Diverged
            } else {
                RunState::Done
            };
            let record = RunRecord {
                id,
                point: format!("p{pi}"),
                label: format!("{label}/seed={seed}"),
                point_label: label.to_string(),
                case: Some(alg.to_string()),
                seed,
                axes,
                config: config(alg, *c),
            };
            let mut status = RunStatus::new(&record, 8, state);
            status.step = last as usize;
            status.reason = diverged.then(|| "gradient norm 1.2e3 > max_grad_norm 100".to_string());
            status.updated = 0.0;
            mruns.push(record.clone());
            runs.push(LoadedRun {
                record,
                status: Some(status),
                metrics,
                eval,
            });
        }
    }
    let manifest = Manifest {
        name: "synthetic".into(),
        description: Some("GRPO vs DC-GRPO, synthetic numbers".into()),
        source: "experiments/synthetic.yaml".into(),
        axes: vec!["algorithm.c".into()],
        cases: vec!["grpo".into(), "dcmdp".into()],
        overrides: vec![],
        runs: mruns,
    };
    GridResults::from_parts(Path::new("out/synthetic"), manifest, runs)
}

/// `(point, metric)` of a gate report's regressions.
fn failed_checks(r: &gate::GateReport) -> Vec<(&str, &str)> {
    r.checks
        .iter()
        .filter(|c| c.verdict == Verdict::Regression)
        .map(|c| (c.point.as_str(), c.metric.as_str()))
        .collect()
}

fn set_state(r: &mut LoadedRun, s: RunState) {
    r.status.as_mut().unwrap().state = s;
}

const CLAIMS: &str = "
metric: eval/addition/avg@4
stat: final
claims:
  - claim: DC-GRPO beats GRPO
    greater: [dcmdp/c=0.001, grpo]
  - claim: GRPO beats DC-GRPO (false on purpose)
    greater: [grpo, dcmdp/c=0.01]
  - claim: interior optimum over c
    interior_max: [grpo, dcmdp/c=0.01, dcmdp/c=0.001]
  - claim: reward is lower for grpo
    metric: critic/score/mean
    less: [grpo, dcmdp/c=0.001]
";

fn claims() -> Claims {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("synthetic.yaml");
    std::fs::write(&p, CLAIMS).unwrap();
    let mut c = Claims::read(&p).unwrap();
    c.path = "experiments/claims/synthetic.yaml".into();
    c
}

fn paper() -> PaperTable {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("paper-x.csv");
    std::fs::write(
        &p,
        "label,model.name,algorithm.name,rollout.engine.weight_quant,eval/addition/avg@32,eval/avg\n\
         GRPO (paper),TINY-QWEN3,grpo,fp8-e4m3,40.0,40.0\n\
         DC-GRPO (paper),tiny-qwen3,dcmdp,fp8-e4m3,55.5,55.5\n\
         other model,qwen3-8b,grpo,,1,1\n",
    )
    .unwrap();
    let mut t = PaperTable::read(&p).unwrap();
    t.path = "baselines/paper-x.csv".into();
    t
}

#[test]
fn points_and_statistics() {
    let g = synthetic(1.0);
    assert_eq!(g.points.len(), 3);
    assert_eq!(g.points[2].divergences(), 1);
    assert_eq!(g.points[2].n_finished(), 3);
    assert_eq!(g.global_axes(), Vec::<String>::new());
    // last-2 reward of seed s at point 0: 0.02·s + 0.05·7.5.
    let s = g.points[0].stats("critic/score/mean", Stat::LastK(2));
    assert!((s.mean.unwrap() - (0.02 + 0.375)).abs() < 1e-12);
    assert_eq!(s.n, 3);
    // The diverged seed's final eval is its step-4 value.
    let f = g.points[2].stats("eval/addition/avg@4", Stat::Final);
    let want = ((0.2 + 0.32) + (0.22 + 0.32) + (0.24 + 0.16)) / 3.0;
    assert!((f.mean.unwrap() - want).abs() < 1e-12);
    assert_eq!(
        g.points[1]
            .config_value("algorithm.c")
            .and_then(|v| v.as_f64()),
        Some(0.001)
    );
}

#[test]
fn number_formatting() {
    assert_eq!(fmt_num(0.0), "0");
    assert_eq!(fmt_num(0.41234), "0.412");
    assert_eq!(fmt_num(12.0), "12");
    assert_eq!(fmt_num(123.456), "123");
    assert_eq!(fmt_num(-0.5), "-0.5");
    assert_eq!(fmt_num(0.00071), "7.10e-4");
    assert_eq!(fmt_num(2.5e6), "2.50e6");
}

#[test]
fn report_markdown_snapshot() {
    let g = synthetic(1.0);
    let r = render(&g, &ReportOptions::default(), &[paper()], Some(&claims())).unwrap();
    insta::assert_snapshot!("report_md", r.markdown);
}

#[test]
fn report_svg_snapshots() {
    let g = synthetic(1.0);
    let r = render(&g, &ReportOptions::default(), &[], None).unwrap();
    let names: Vec<&str> = r.svgs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "critic-score-mean.svg",
            "eval-addition-avg@4.svg",
            "rollout_corr-abs_prob_diff.svg",
            "dc-lambda.svg",
            "actor-entropy.svg",
            "actor-grad_norm.svg"
        ]
    );
    // Deterministic: a second rendering is byte-identical.
    let again = render(&g, &ReportOptions::default(), &[], None).unwrap();
    assert_eq!(r.svgs, again.svgs);
    for (name, svg) in &r.svgs {
        assert!(svg.starts_with("<svg"), "{name}");
        assert!(
            !svg.contains("font-face") && !svg.contains("url("),
            "{name}"
        );
        insta::assert_snapshot!(format!("svg_{}", name.trim_end_matches(".svg")), svg);
    }
    // The discrepancy plot carries the two tolerance lines.
    let apd = &r.svgs[2].1;
    assert!(
        apd.contains("c = 0.001") && apd.contains("c = 0.01"),
        "{apd}"
    );
}

#[test]
fn figures_are_grouped_by_axes() {
    let g = synthetic(1.0);
    let opts = ReportOptions {
        group_by: Some(vec!["algorithm.c".into()]),
        ..Default::default()
    };
    let figs = plots::figures(&g, &opts);
    let reward: Vec<_> = figs
        .iter()
        .filter(|f| f.metric == "critic/score/mean")
        .collect();
    assert_eq!(reward.len(), 2);
    assert_eq!(reward[0].file, "critic-score-mean--algorithm.c-0.001.svg");
    // GRPO has no `algorithm.c`: it is the reference in both groups.
    let labels: Vec<&str> = reward[1].curves.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["grpo", "dcmdp/c=0.01"]);
    // Band: min and max over seeds, mean in between; the diverged seed ends at step 6.
    let c = &reward[1].curves[1];
    assert_eq!(c.points.len(), 8);
    let (_, m, lo, hi) = c.points[7];
    assert!(lo < m && m < hi);
    let w = plots::smooth_window(&g, &opts);
    assert_eq!(w, 1, "8 steps: no smoothing by default");
}

#[test]
fn claims_verdicts() {
    let g = synthetic(1.0);
    let checked = claims().check(&g, 5).unwrap();
    let v: Vec<ClaimVerdict> = checked.iter().map(|c| c.verdict).collect();
    assert_eq!(
        v,
        [
            ClaimVerdict::Holds,
            ClaimVerdict::DoesNotHold,
            ClaimVerdict::Inconclusive,
            ClaimVerdict::Holds
        ]
    );
    assert_eq!(checked[3].metric, "critic/score/mean");
    // An unknown point is bad input, naming the file and the claim.
    let mut bad = claims();
    bad.claims[0].greater = Some(["nope".into(), "grpo".into()]);
    let e = bad.check(&g, 5).unwrap_err().to_string();
    assert!(e.contains("claims[0]: no grid point `nope`"), "{e}");
}

#[test]
fn paper_rows_match_by_config() {
    let g = synthetic(1.0);
    let t = paper();
    assert_eq!(
        t.match_keys,
        [
            "model.name",
            "algorithm.name",
            "rollout.engine.weight_quant"
        ]
    );
    assert_eq!(t.matching_row(&g.points[0]).unwrap().label, "GRPO (paper)");
    assert_eq!(
        t.matching_row(&g.points[1]).unwrap().label,
        "DC-GRPO (paper)"
    );
    let names: Vec<String> = g.metric_names().into_iter().collect();
    let v = t
        .run_value(&g.points[0], "eval/addition/avg@32", &names)
        .unwrap();
    assert!((v - 100.0 * (0.02 + 0.32)).abs() < 1e-9);
    assert_eq!(t.run_value(&g.points[0], "eval/avg", &names), Some(v));
}

fn baseline_text() -> &'static str {
    "# hand-written
point,metric,last_k,value,abs_tol,rel_tol,direction
grpo,critic/score/mean,3,0.37,0.05,,higher
grpo,divergences,,0,,,
dcmdp/c=0.01,critic/score/mean,3,0.5,0.05,,higher
dcmdp/c=0.01,actor/entropy,3,1.4,,0.25,both
dcmdp/c=0.01,divergences,,1,,,
"
}

#[test]
fn gate_passes_and_snapshot() {
    let g = synthetic(1.0);
    let b = Baseline::parse(baseline_text(), Path::new("baselines/synthetic.csv")).unwrap();
    let r = evaluate(&g, &b);
    assert!(r.passed(), "{}", r.markdown());
    assert_eq!(r.checks.len(), 5);
    assert_eq!(r.unchecked, ["dcmdp/c=0.001"]);
    insta::assert_snapshot!("gate_pass_md", r.markdown());
}

#[test]
fn gate_flags_a_collapsed_reward_and_a_new_divergence() {
    // Rewards at 40 %: a collapse.
    let g = synthetic(0.4);
    let b = Baseline::parse(baseline_text(), Path::new("baselines/synthetic.csv")).unwrap();
    let r = evaluate(&g, &b);
    assert_eq!(r.regressions(), 2, "{}", r.markdown());
    insta::assert_snapshot!("gate_fail_md", r.markdown());

    // A divergence where the baseline had none fails whatever the tolerance.
    let mut g = synthetic(1.0);
    set_state(&mut g.points[0].runs[1], RunState::Diverged);
    let text = baseline_text().replace("grpo,divergences,,0,,,", "grpo,divergences,,0,5,,both");
    let b = Baseline::parse(&text, Path::new("b.csv")).unwrap();
    let r = evaluate(&g, &b);
    let bad = failed_checks(&r);
    assert_eq!(bad, [("grpo", "divergences")]);

    // A failed seed and a missing point fail too.
    let mut g = synthetic(1.0);
    set_state(&mut g.points[0].runs[0], RunState::Failed);
    let text = format!("{}gone,critic/score/mean,3,0.1,0.5,,\n", baseline_text());
    let r = evaluate(&g, &Baseline::parse(&text, Path::new("b.csv")).unwrap());
    let bad = failed_checks(&r);
    assert_eq!(
        bad,
        [("grpo", "runs finished"), ("gone", "critic/score/mean")]
    );

    // Direction: a rise of a higher-is-better metric passes as `improved`.
    let g = synthetic(2.0);
    let b = Baseline::parse(baseline_text(), Path::new("b.csv")).unwrap();
    let r = evaluate(&g, &b);
    assert!(r.passed(), "{}", r.markdown());
    assert_eq!(r.checks[0].verdict, Verdict::Improved);
}

#[test]
fn malformed_baselines_name_file_line_and_column() {
    let p = Path::new("baselines/x.csv");
    let head = "point,metric,last_k,value,abs_tol,rel_tol,direction\n";
    for (body, want) in [
        (
            "a,m,3,abc,,,\n",
            "baselines/x.csv:2: column `value`: not a number: `abc`",
        ),
        (
            "a,m,3,1,-1,,\n",
            "baselines/x.csv:2: column `abs_tol`: must be a finite number ≥ 0",
        ),
        (
            "a,m,3,1,,,up\n",
            "baselines/x.csv:2: column `direction`: `up`: expected higher",
        ),
        (
            "a,m,,1,,,\n",
            "baselines/x.csv:2: column `last_k`: needed for a metric",
        ),
        (
            "a,m,0,1,,,\n",
            "baselines/x.csv:2: column `last_k`: not a positive integer",
        ),
        ("a,m,3\n", "baselines/x.csv:2: 3 field(s), the header has 7"),
        ("", "baselines/x.csv: no baseline rows"),
    ] {
        let e = Baseline::parse(&format!("{head}{body}"), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{want}\nnot in\n{e}");
    }
    let e = Baseline::parse("point,metric,value\n", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("baselines/x.csv: no column `last_k`"), "{e}");
}

#[test]
fn update_keeps_tolerances_and_round_trips() {
    let g = synthetic(1.0);
    let old = Baseline::parse(baseline_text(), Path::new("b.csv")).unwrap();
    let up = update(&g, Some(&old), Path::new("b.csv"), 5);
    assert!(up.dropped.is_empty());
    let new = up.baseline;
    // Old rows keep their window and tolerances with fresh values; the uncovered point gets the
    // default checks with k = 5.
    let grpo = &new.rows[0];
    assert_eq!(
        (grpo.last_k, grpo.abs_tol, grpo.direction),
        (Some(3), Some(0.05), Direction::Higher)
    );
    let want = g.points[0]
        .stats("critic/score/mean", Stat::LastK(3))
        .mean
        .unwrap();
    assert_eq!(grpo.value, want);
    let c001: Vec<&str> = new
        .rows
        .iter()
        .filter(|r| r.point == "dcmdp/c=0.001")
        .map(|r| r.metric.as_str())
        .collect();
    assert_eq!(
        c001,
        [
            "critic/score/mean",
            "eval/addition/avg@4",
            "actor/entropy",
            "rollout_corr/abs_prob_diff",
            "actor/grad_norm",
            "divergences"
        ]
    );
    let back = Baseline::parse(&new.to_csv(), Path::new("b.csv")).unwrap();
    assert_eq!(back, new);
    // A run gated against its own update passes.
    assert!(evaluate(&g, &new).passed());
    let fresh = update(&g, None, Path::new("b.csv"), 5).baseline;
    assert!(evaluate(&g, &fresh).passed());
    assert!(!evaluate(&synthetic(0.3), &fresh).passed());
}

#[test]
fn tolerances_from_seed_noise() {
    // Three seeds are too few.
    let e = from_seeds(&synthetic(1.0), None, Path::new("b.csv"), 3, 3.0, 0.02)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 4 finished seeds"), "{e}");
    assert!(e.contains("`grpo` critic/score/mean (3 seeds)"), "{e}");

    let g = synthetic_seeds(1.0, 5);
    let b = from_seeds(&g, None, Path::new("b.csv"), 3, 3.0, 0.02)
        .unwrap()
        .baseline;
    let row = |point: &str, metric: &str| {
        b.rows
            .iter()
            .find(|r| r.point == point && r.metric == metric)
            .unwrap()
            .clone()
    };
    // GRPO's last-3 reward of seed s: 0.02·s + 0.35; sd over s = 0..4 is 0.02·√2.5.
    let r = row("grpo", "critic/score/mean");
    let sigma = 0.02 * 2.5f64.sqrt();
    assert!((r.value - (0.04 + 0.35)).abs() < 1e-12);
    assert!((r.sigma.unwrap() - sigma).abs() < 1e-12);
    assert!((r.abs_tol.unwrap() - 3.0 * sigma).abs() < 1e-12);
    assert_eq!(
        (r.rel_tol, r.seeds, r.last_k),
        (Some(0.02), Some(5), Some(3))
    );
    assert_eq!(r.direction, Direction::Higher);
    // The discrepancy does not vary with the seed: σ = 0, and the floor keeps a tolerance.
    let d = row("grpo", "rollout_corr/abs_prob_diff");
    assert_eq!(d.sigma, Some(0.0));
    assert!((d.allowed() - 0.02 * d.value).abs() < 1e-15 && d.allowed() > 0.0);
    // One diverged seed of five at c = 0.01.
    assert_eq!(row("dcmdp/c=0.01", "divergences").value, 1.0);

    // The file keeps where each tolerance came from, and reads back.
    let text = b.to_csv();
    assert!(text.contains("direction,sigma,seeds\n"), "{text}");
    assert_eq!(Baseline::parse(&text, Path::new("b.csv")).unwrap(), b);

    // The run itself passes; rewards at 70 % (a drop of 0.117 = 3.7 σ) fail.
    assert!(evaluate(&g, &b).passed());
    let r = evaluate(&synthetic_seeds(0.7, 5), &b);
    let failed = failed_checks(&r);
    assert!(
        failed.contains(&("grpo", "critic/score/mean")),
        "{failed:?}"
    );

    // An existing baseline's checks (metric, window, direction) are kept; only the values and
    // tolerances are new.
    let old = Baseline::parse(baseline_text(), Path::new("b.csv")).unwrap();
    let up = from_seeds(&g, Some(&old), Path::new("b.csv"), 5, 2.0, 0.0).unwrap();
    let grpo: Vec<_> = up
        .baseline
        .rows
        .iter()
        .filter(|r| r.point == "grpo")
        .collect();
    assert_eq!(grpo.len(), 2);
    assert_eq!((grpo[0].last_k, grpo[0].rel_tol), (Some(3), Some(0.0)));
    assert!((grpo[0].abs_tol.unwrap() - 2.0 * sigma).abs() < 1e-12);
}

/// [`synthetic_seeds`] whose rewards rise by `per_step` a step from a level chosen so that every
/// seed's last-3 mean is about the same as in the learning grid, plus seed-dependent wiggles.
fn with_reward_slope(n: i64, per_step: f64) -> GridResults {
    let mut g = synthetic_seeds(1.0, n);
    for p in &mut g.points {
        for r in &mut p.runs {
            let end = r.last_k("critic/score/mean", 3).unwrap();
            let last = r.metrics.last().unwrap()["step"];
            let seed = r.record.seed as f64;
            for row in &mut r.metrics {
                let s = row["step"];
                // Even seeds gain a little more than odd ones: the gains have a spread.
                let sign = if seed % 2.0 == 0.0 { 1.0 } else { -1.0 };
                let wiggle = 0.01 * (((s + seed) % 3.0) - 1.0) + 0.03 * sign * s / last;
                let v = end - per_step * (last - 1.0 - s) + wiggle;
                row.insert("critic/score/mean".into(), v);
            }
        }
    }
    g
}

/// `b` plus a hand-added `learns` row on the reward (window 3) for each of its points.
fn with_learns(b: &Baseline) -> Baseline {
    let mut out = b.clone();
    let mut points: Vec<String> = b.rows.iter().map(|r| r.point.clone()).collect();
    points.dedup();
    for point in points {
        out.rows.push(gate::BaselineRow {
            point,
            metric: "critic/score/mean".into(),
            last_k: Some(3),
            value: 0.0,
            abs_tol: None,
            rel_tol: None,
            direction: Direction::Learns,
            sigma: None,
            seeds: None,
        });
    }
    out
}

#[test]
fn learning_check_fails_a_run_that_does_not_learn() {
    // Rewards rise 0.05 a step: each seed's last-3 minus first-3 mean is 5 × 0.05.
    let g = synthetic_seeds(1.0, 5);
    let fresh = from_seeds(&g, None, Path::new("b.csv"), 3, 3.0, 0.02)
        .unwrap()
        .baseline;
    // Opt-in: a new baseline has none.
    assert!(fresh.rows.iter().all(|r| r.direction != Direction::Learns));
    let old = with_learns(&fresh);
    let b = from_seeds(&g, Some(&old), Path::new("b.csv"), 3, 3.0, 0.02)
        .unwrap()
        .baseline;
    let learns = |point: &str| {
        b.rows
            .iter()
            .find(|r| r.point == point && r.direction == Direction::Learns)
            .unwrap()
    };
    let l = learns("grpo");
    assert_eq!(l.metric, "critic/score/mean");
    assert!((l.value - 0.25).abs() < 1e-12, "{}", l.value);
    assert_eq!((l.abs_tol, l.rel_tol, l.seeds), (None, None, Some(5)));
    // Diverged seeds stop at step 6: a gain over 6 values still exists.
    assert!(learns("dcmdp/c=0.01").value > 0.0);
    let text = b.to_csv();
    assert!(text.contains(",learns,"), "{text}");
    assert_eq!(Baseline::parse(&text, Path::new("b.csv")).unwrap(), b);
    assert!(evaluate(&g, &b).passed());

    // Flat rewards ending at the baseline's level (the level checks pass): the learning check
    // fails at every point, and only it.
    let flat = evaluate(&with_reward_slope(5, 0.0), &b);
    let failed = failed_checks(&flat);
    assert_eq!(
        failed,
        [
            ("grpo", "critic/score/mean (gain)"),
            ("dcmdp/c=0.001", "critic/score/mean (gain)"),
            ("dcmdp/c=0.01", "critic/score/mean (gain)")
        ]
    );
    // A slow but steady rise passes: the bound is above 0 when the gain is several of its
    // standard errors, whatever its size.
    assert!(evaluate(&with_reward_slope(5, 0.01), &b).passed());
    // Two seeds: the bound needs t(0.99, 1 df) = 31.8 standard errors; one seed has no bound.
    let two = evaluate(&with_reward_slope(2, 0.01), &b);
    assert!(!two.passed());
    let one = evaluate(&with_reward_slope(1, 0.05), &b);
    let c = one
        .checks
        .iter()
        .find(|c| c.metric.ends_with("(gain)"))
        .unwrap();
    assert_eq!(c.verdict, Verdict::Regression);
    assert!(
        c.note.as_deref().unwrap().contains("needs ≥ 2 seeds"),
        "{c:?}"
    );

    // Rebuilt from a run that does not learn, a baseline drops its learning checks (they could
    // never pass) and says which.
    let up = from_seeds(
        &with_reward_slope(5, 0.0),
        Some(&old),
        Path::new("b.csv"),
        3,
        3.0,
        0.02,
    )
    .unwrap();
    assert!(up
        .baseline
        .rows
        .iter()
        .all(|r| r.direction != Direction::Learns));
    assert_eq!(up.not_learning.len(), 3, "{:?}", up.not_learning);
    assert!(
        up.not_learning[0].starts_with("`grpo` critic/score/mean (gain "),
        "{:?}",
        up.not_learning
    );
    assert!(up
        .baseline
        .rows
        .iter()
        .any(|r| r.metric == "critic/score/mean"));

    // A bad direction names the new choice.
    let bad = "point,metric,last_k,value,abs_tol,rel_tol,direction\ngrpo,m,3,0.1,,,learn\n";
    let e = Baseline::parse(bad, Path::new("b.csv"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected higher, lower, both or learns"), "{e}");
}
