//! Paired claims on hand-made per-seed values with known answers.
use super::*;
use crate::rundir::{LoadedRun, Manifest, Row, RunRecord, RunState, RunStatus};

/// A grid whose points log one metric `m` once (step 1) per listed `(seed, value)`; a NaN value
/// marks a failed seed (not finished).
fn grid(points: &[(&str, &[(i64, f64)])]) -> GridResults {
    let rows: Vec<(&str, SeedRows)> = points
        .iter()
        .map(|(l, v)| (*l, v.iter().map(|&(s, x)| (s, vec![x])).collect()))
        .collect();
    grid_rows(&rows)
}

/// [`grid`] with several logged values per run (steps 1, 2, …).
/// Per seed, the values a run logs at steps 1, 2, ….
type SeedRows = Vec<(i64, Vec<f64>)>;

fn grid_rows(points: &[(&str, SeedRows)]) -> GridResults {
    let mut runs = Vec::new();
    let mut records = Vec::new();
    for (pi, (label, values)) in points.iter().enumerate() {
        for (seed, vs) in values.iter() {
            let (seed, v) = (*seed, vs[0]);
            let record = RunRecord {
                id: format!("r{pi}s{seed}"),
                point: format!("p{pi}"),
                label: format!("{label}/seed={seed}"),
                point_label: label.to_string(),
                case: Some(label.to_string()),
                seed,
                axes: vec![],
                config: serde_yaml::Value::Null,
            };
            let state = if v.is_nan() {
                RunState::Failed
            } else {
                RunState::Done
            };
            let metrics = vs
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let mut row = Row::new();
                    row.insert("step".into(), (i + 1) as f64);
                    row.insert("m".into(), x);
                    row
                })
                .collect();
            records.push(record.clone());
            runs.push(LoadedRun {
                status: Some(RunStatus::new(&record, vs.len(), state)),
                record,
                metrics,
                eval: vec![],
            });
        }
    }
    let manifest = Manifest {
        name: "g".into(),
        description: None,
        source: "experiments/g.yaml".into(),
        axes: vec![],
        cases: points.iter().map(|(l, _)| l.to_string()).collect(),
        runs: records,
        overrides: vec![],
    };
    GridResults::from_parts(Path::new("out/g"), manifest, runs)
}

fn claims(body: &str) -> Claims {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("g.yaml");
    std::fs::write(&p, format!("metric: m\nstat: final\n{body}")).unwrap();
    Claims::read(&p).unwrap()
}

fn check(g: &GridResults, body: &str) -> Vec<Checked> {
    claims(body).check(g, 5).unwrap()
}

const A: [(i64, f64); 4] = [(0, 0.30), (1, 0.35), (2, 0.28), (3, 0.40)];

/// `b` = `a` + (0.05, 0.02, 0.04, 0.03) per seed.
fn b() -> Vec<(i64, f64)> {
    let up = [0.05, 0.02, 0.04, 0.03];
    A.iter().zip(up).map(|(&(s, v), u)| (s, v + u)).collect()
}

#[test]
fn paired_difference_known_answer() {
    let b = b();
    let g = grid(&[("a", &A), ("b", &b)]);
    let ch = check(&g, "claims:\n  - claim: b beats a\n    greater: [b, a]\n");
    let c = &ch[0].comparisons[0];
    assert_eq!(c.text(), "`b` − `a`");
    assert_eq!(c.pairs.len(), 4);
    assert_eq!(c.pairs[1], (1, 0.35, 0.35 + 0.02));
    // Differences 0.05, 0.02, 0.04, 0.03: mean 0.035, sd √(0.0005/3), t(0.975, 3) = 3.182446305.
    let t = &c.test;
    let se = (0.0005f64 / 3.0).sqrt() / 2.0;
    assert_eq!((t.n, t.df()), (4, 3));
    assert!((t.mean.unwrap() - 0.035).abs() < 1e-12);
    let (lo, hi) = t.interval().unwrap();
    assert!((lo - (0.035 - 3.182446305 * se)).abs() < 1e-9, "{lo}");
    assert!((hi - (0.035 + 3.182446305 * se)).abs() < 1e-9, "{hi}");
    // (t(0.975, 3) + t(0.8, 3)) · se.
    let want = (3.182446305 + 0.978472312) * se;
    assert!((t.detectable.unwrap() - want).abs() < 1e-9);
    assert_eq!(ch[0].verdict, Verdict::Holds);
    // Unpaired, the seed spread of each point (sd ≈ 0.05) would swamp the 0.035 difference: the
    // combined 95 % half-widths are about 0.11.
    let sa = g.point("a").unwrap().stats("m", Stat::Final);
    let sb = g.point("b").unwrap().stats("m", Stat::Final);
    let unpaired = (sa.ci95.unwrap().powi(2) + sb.ci95.unwrap().powi(2)).sqrt();
    assert!(unpaired > 0.035, "{unpaired}");
}

#[test]
fn less_is_the_mirror_of_greater_and_the_level_is_the_files() {
    let b = b();
    let g = grid(&[("a", &A), ("b", &b)]);
    let ch = check(&g, "claims:\n  - claim: a below b\n    less: [a, b]\n");
    assert_eq!(ch[0].comparisons[0].text(), "`b` − `a`");
    assert_eq!(ch[0].verdict, Verdict::Holds);
    // The same data at α = 0.001 (99.9 %): t(0.9995, 3) = 12.92 makes the interval include 0.
    let ch = check(
        &g,
        "alpha: 0.001\npower: 0.9\nclaims:\n  - claim: a below b\n    less: [a, b]\n",
    );
    assert_eq!(ch[0].verdict, Verdict::Inconclusive);
    let t = ch[0].comparisons[0].test;
    assert_eq!((t.alpha, t.power), (0.001, 0.9));
    // Claimed the wrong way round: the mean difference is negative.
    let ch = check(&g, "claims:\n  - claim: a above b\n    greater: [a, b]\n");
    assert_eq!(ch[0].verdict, Verdict::DoesNotHold);
    assert!(ch[0].comparisons[0].test.mean.unwrap() < 0.0);
}

#[test]
fn fewer_than_two_pairs_is_not_available() {
    // One seed each: a mean difference but no interval, never "holds".
    let g = grid(&[("a", &[(0, 0.1)]), ("b", &[(0, 0.9)])]);
    let ch = check(&g, "claims:\n  - claim: b beats a\n    greater: [b, a]\n");
    assert_eq!(ch[0].verdict, Verdict::NotAvailable);
    assert_eq!(ch[0].comparisons[0].test.mean, Some(0.8));
    assert_eq!(ch[0].comparisons[0].test.detectable, None);
    // Two seeds each, but different ones: no pairs at all.
    let g = grid(&[("a", &[(0, 0.1), (1, 0.2)]), ("b", &[(2, 0.9), (3, 0.8)])]);
    let ch = check(&g, "claims:\n  - claim: b beats a\n    greater: [b, a]\n");
    assert_eq!(ch[0].verdict, Verdict::NotAvailable);
    assert_eq!(ch[0].comparisons[0].unpaired, [0, 1, 2, 3]);
    // A failed seed is left out of the pairs: 2 of 3 remain.
    let g = grid(&[
        ("a", &[(0, 0.1), (1, 0.2), (2, 0.3)]),
        ("b", &[(0, 0.5), (1, f64::NAN), (2, 0.6)]),
    ]);
    let ch = check(&g, "claims:\n  - claim: b beats a\n    greater: [b, a]\n");
    let c = &ch[0].comparisons[0];
    assert_eq!((c.test.n, c.unpaired.clone()), (2, vec![1]));
    // A point without any finished seed.
    let g = grid(&[("a", &[(0, 0.1), (1, 0.2)]), ("b", &[(0, f64::NAN)])]);
    let ch = check(&g, "claims:\n  - claim: b beats a\n    greater: [b, a]\n");
    assert_eq!(ch[0].verdict, Verdict::NotAvailable);
}

#[test]
fn against_a_number_is_a_one_sample_test() {
    let g = grid(&[("a", &A)]);
    let ch = check(&g, "claims:\n  - claim: a learns\n    greater: [a, 0.2]\n");
    let c = &ch[0].comparisons[0];
    assert_eq!(c.text(), "`a` − 0.2");
    // Values 0.30, 0.35, 0.28, 0.40 minus 0.2: mean 0.1325, sd of the values; the 95 % interval's
    // lower end (0.1325 − 3.182 · 0.0538 / 2 ≈ 0.047) is above 0.
    let xs = [0.30, 0.35, 0.28, 0.40];
    let m = xs.iter().sum::<f64>() / 4.0;
    let sd = (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 3.0).sqrt();
    assert!((c.test.mean.unwrap() - (m - 0.2)).abs() < 1e-12);
    assert!((c.test.sd.unwrap() - sd).abs() < 1e-12);
    let lo = m - 0.2 - 3.182446305 * sd / 2.0;
    assert!(lo > 0.0);
    assert!((c.test.interval().unwrap().0 - lo).abs() < 1e-9);
    assert_eq!(ch[0].verdict, Verdict::Holds);
    let ch = check(&g, "claims:\n  - claim: a stays low\n    less: [a, 0.36]\n");
    assert_eq!(ch[0].comparisons[0].text(), "0.36 − `a`");
    assert_eq!(ch[0].verdict, Verdict::Inconclusive);
}

#[test]
fn interior_max_pairs_the_best_interior_point_with_both_ends() {
    let lo: Vec<(i64, f64)> = A.iter().map(|&(s, v)| (s, v - 0.1)).collect();
    let mid = b();
    let g = grid(&[("c1", &lo), ("c2", &mid), ("c3", &A)]);
    let ch = check(
        &g,
        "claims:\n  - claim: interior\n    interior_max: [c1, c2, c3]\n",
    );
    let texts: Vec<String> = ch[0].comparisons.iter().map(|c| c.text()).collect();
    assert_eq!(texts, ["`c2` − `c1`", "`c2` − `c3`"]);
    assert_eq!(ch[0].verdict, Verdict::Holds);
    assert!(ch[0].note.as_deref().unwrap().contains("`c2`"));
    // An end is better: the weaker comparison decides.
    let g = grid(&[("c1", &lo), ("c2", &A), ("c3", &mid)]);
    let ch = check(
        &g,
        "claims:\n  - claim: interior\n    interior_max: [c1, c2, c3]\n",
    );
    assert_eq!(ch[0].verdict, Verdict::DoesNotHold);
}

#[test]
fn claim_files_are_checked_on_read() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.yaml");
    for (body, want) in [
        ("alpha: 1.5\nclaims: []\n", "alpha: 1.5 is not in (0, 1)"),
        ("power: 0\nclaims: []\n", "power: 0 is not in (0, 1)"),
        (
            "claims:\n  - claim: x\n    less: [0.1, 0.2]\n",
            "claims[0]: compares two numbers",
        ),
        (
            "claims:\n  - claim: x\n    interior_max: [a, b]\n",
            "claims[0].interior_max: needs at least 3 points",
        ),
        (
            "claims:\n  - claim: x\n    less: [a, b]\n    greater: [a, b]\n",
            "claims[0]: give exactly one of",
        ),
    ] {
        std::fs::write(&p, format!("metric: m\n{body}")).unwrap();
        let e = Claims::read(&p).unwrap_err().to_string();
        assert!(e.contains(want), "{want}\nnot in\n{e}");
    }
    // The older format (no alpha/power, labels only) still reads, at the 95 % / 80 % defaults.
    std::fs::write(&p, "metric: m\nclaims:\n  - claim: x\n    less: [a, b]\n").unwrap();
    let c = Claims::read(&p).unwrap();
    assert_eq!((c.alpha, c.power, c.stat), (0.05, 0.8, ClaimStat::Lastk));
    assert_eq!(c.claims[0].labels(), ["a", "b"]);
    // A quoted number is a label; a bare one is a number.
    std::fs::write(
        &p,
        "metric: m\nclaims:\n  - claim: x\n    less: [\"1\", 2]\n",
    )
    .unwrap();
    let c = Claims::read(&p).unwrap();
    assert_eq!(
        c.claims[0].less,
        Some([Operand::Point("1".into()), Operand::Value(2.0)])
    );
}

/// A claim's own `stat` overrides the file's: the same comparison on the final value holds and on
/// the mean of the last 2 does not, and the metric column says which statistic it used.
#[test]
fn a_claim_may_override_the_statistic() {
    // Final values: a beats b by 1 on every seed; the last-2 means tie.
    let g = grid_rows(&[
        (
            "a",
            vec![
                (0, vec![0.0, 2.0]),
                (1, vec![1.0, 3.0]),
                (2, vec![2.0, 4.0]),
            ],
        ),
        (
            "b",
            vec![
                (0, vec![1.0, 1.0]),
                (1, vec![2.0, 2.0]),
                (2, vec![3.0, 3.0]),
            ],
        ),
    ]);
    let body = "claims:\n  - claim: final\n    greater: [a, b]\n  \
                - claim: mean\n    stat: lastk\n    greater: [a, b]\n";
    let c = claims(body).check(&g, 2).unwrap();
    assert_eq!(c[0].verdict, Verdict::Holds);
    assert_eq!(c[0].metric, "m");
    assert_eq!(c[1].verdict, Verdict::DoesNotHold);
    assert_eq!(c[1].metric, "m (last 2)");
}
