//! `report.md`: GitHub-flavoured Markdown.
use super::claims::{Claims, Verdict};
use super::paper::PaperTable;
use super::plots::Figure;
use super::{fmt_stats, GridResults, ReportOptions, Stat};
use crate::train::RunState;
use std::fmt::Write;

/// Table columns: `(metric, heading, statistic)`; a column is shown when some run logs its metric.
fn columns(g: &GridResults, k: usize) -> Vec<(String, String, Stat)> {
    let names = g.metric_names();
    let mut cols = Vec::new();
    let mut push = |m: &str, head: String, s: Stat| {
        if names.contains(m) {
            cols.push((m.to_string(), head, s));
        }
    };
    push(
        "critic/score/mean",
        format!("reward (last {k})"),
        Stat::LastK(k),
    );
    for e in names
        .iter()
        .filter(|n| n.starts_with("eval/") && n.contains("/avg@"))
    {
        push(e, format!("{} (final)", &e["eval/".len()..]), Stat::Final);
    }
    for (m, h) in [
        ("rollout_corr/abs_prob_diff", "abs_prob_diff"),
        ("dc/lambda", "dc/lambda"),
        ("actor/entropy", "entropy"),
        ("actor/grad_norm", "grad_norm"),
    ] {
        push(m, format!("{h} (last {k})"), Stat::LastK(k));
    }
    cols
}

/// A table cell: `|` would break the row.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

pub fn render(
    g: &GridResults,
    opts: &ReportOptions,
    papers: &[PaperTable],
    claims: Option<&Claims>,
    figures: &[Figure],
) -> String {
    let m = &g.manifest;
    let k = opts.last_k.max(1);
    let mut s = String::new();
    let _ = writeln!(s, "# Report: `{}`\n", m.name);
    if let Some(d) = &m.description {
        let _ = writeln!(s, "{}\n", d.trim());
    }
    let runs: Vec<_> = g.points.iter().flat_map(|p| &p.runs).collect();
    let count = |st: RunState| runs.iter().filter(|r| r.state() == Some(st)).count();
    let unfinished: usize = g.points.iter().map(|p| p.unfinished()).sum();
    let seeds = g.seeds();
    let _ = writeln!(
        s,
        "Grid file `{}`: {} run(s) in {} grid point(s), seeds {}; {} done, {} diverged, {} failed, \
         {} unfinished.\n",
        m.source.display(),
        runs.len(),
        g.points.len(),
        seeds
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        count(RunState::Done),
        count(RunState::Diverged),
        count(RunState::Failed),
        unfinished
    );
    let _ = writeln!(
        s,
        "Cells are mean ± 95 % confidence half-width (Student t) over the seeds that finished \
         (done or diverged); \"last {k}\" is the mean of a run's last {k} logged values, \"final\" \
         its last value. `seeds` counts finished / total runs of the point.\n"
    );

    // Results.
    let cols = columns(g, k);
    let _ = writeln!(s, "## Results\n");
    let mut head = "| point | seeds | diverged |".to_string();
    let mut rule = "|---|---:|---:|".to_string();
    for (_, h, _) in &cols {
        let _ = write!(head, " {} |", cell(h));
        rule.push_str("---:|");
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for p in &g.points {
        let _ = write!(
            s,
            "| `{}` | {}/{} | {} |",
            cell(&p.label),
            p.n_finished(),
            p.runs.len(),
            p.divergences()
        );
        for (metric, _, stat) in &cols {
            let _ = write!(s, " {} |", fmt_stats(&p.stats(metric, *stat)));
        }
        s.push('\n');
    }
    s.push('\n');

    // Claims.
    if let Some(c) = claims {
        let _ = writeln!(s, "## Claims\n");
        match c.check(g, k) {
            Ok(checked) => {
                let _ = writeln!(
                    s,
                    "Checked by `harness report` from `{}` on the table's statistics: a claim \
                     **holds** when the difference has the claimed sign and exceeds the combined \
                     95 % half-widths, is inconclusive when only the sign is right.\n",
                    c.path.display()
                );
                let _ = writeln!(
                    s,
                    "| claim | metric | verdict | evidence |\n|---|---|---|---|"
                );
                for ch in &checked {
                    let _ = writeln!(
                        s,
                        "| {} | `{}` | {} | {} |",
                        cell(&ch.claim),
                        cell(&ch.metric),
                        ch.verdict.text(),
                        cell(&ch.evidence)
                    );
                }
                // The plain-words summary the table adds up to.
                let count = |v: Verdict| checked.iter().filter(|c| c.verdict == v).count();
                let _ = write!(
                    s,
                    "\n**In sum, at this scale: {} of {} claim(s) hold, {} inconclusive, {} do not hold",
                    count(Verdict::Holds),
                    checked.len(),
                    count(Verdict::Inconclusive),
                    count(Verdict::DoesNotHold),
                );
                let missing = count(Verdict::NoData);
                if missing > 0 {
                    let _ = write!(s, ", {missing} without data");
                }
                let _ = writeln!(s, ".**");
                s.push('\n');
            }
            Err(e) => {
                let _ = writeln!(s, "Claims could not be checked: {}\n", cell(&e.to_string()));
            }
        }
    }

    // Paper vs this run.
    let run_metrics: Vec<String> = g.metric_names().into_iter().collect();
    for t in papers {
        let matched: Vec<_> = g
            .points
            .iter()
            .filter_map(|p| Some((p, t.matching_row(p)?)))
            .collect();
        if matched.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "## Paper vs this run (`{}`)\n\nPaper values as published (percent); this run: final \
             value × 100, mean over seeds. Matched on {}.\n",
            t.path.display(),
            t.match_keys
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut head = "| point | source |".to_string();
        let mut rule = "|---|---|".to_string();
        for mt in &t.metrics {
            let _ = write!(head, " {} |", cell(mt));
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for (p, row) in matched {
            let _ = write!(s, "| `{}` | paper: {} |", cell(&p.label), cell(&row.label));
            for v in &row.values {
                let _ = write!(
                    s,
                    " {} |",
                    v.map(|x| format!("{x:.1}")).unwrap_or("–".into())
                );
            }
            let _ = write!(s, "\n| | this run |");
            for mt in &t.metrics {
                let v = t.run_value(p, mt, &run_metrics);
                let _ = write!(
                    s,
                    " {} |",
                    v.map(|x| format!("{x:.1}")).unwrap_or("–".into())
                );
            }
            s.push('\n');
        }
        s.push('\n');
    }

    // Divergences and failures.
    let bad: Vec<_> = g
        .points
        .iter()
        .flat_map(|p| &p.runs)
        .filter(|r| matches!(r.state(), Some(RunState::Diverged | RunState::Failed)))
        .collect();
    if !bad.is_empty() {
        let _ = writeln!(s, "## Divergences and failures\n");
        for r in bad {
            let st = r.status.as_ref();
            let why = st
                .and_then(|s| s.reason.clone().or(s.error.clone()))
                .unwrap_or_else(|| "no reason recorded".into());
            let _ = writeln!(
                s,
                "- `{}` ({}): {} at step {}: {}",
                r.data.label,
                r.data.id,
                if r.state() == Some(RunState::Diverged) {
                    "diverged"
                } else {
                    "failed"
                },
                st.map(|s| s.step).unwrap_or(0),
                why.lines().next().unwrap_or("")
            );
        }
        s.push('\n');
    }

    // Curves.
    if !figures.is_empty() {
        let _ = writeln!(
            s,
            "## Curves\n\nPer grid point: the mean over seeds of each seed's curve (training \
             metrics smoothed by a trailing mean), with a band from the lowest to the highest \
             seed. Dashed lines on the discrepancy plot: the DCMDP tolerances `c`.\n"
        );
        let mut group: Option<&Option<String>> = None;
        let multi = figures.iter().any(|f| f.group.is_some());
        let mut sorted: Vec<&Figure> = figures.iter().collect();
        // Group-major order: every figure of a group together.
        let order: Vec<Option<String>> = {
            let mut o: Vec<Option<String>> = Vec::new();
            for f in figures {
                if !o.contains(&f.group) {
                    o.push(f.group.clone());
                }
            }
            o
        };
        sorted.sort_by_key(|f| order.iter().position(|x| *x == f.group));
        for f in sorted {
            if multi && group != Some(&f.group) {
                let _ = writeln!(s, "### {}\n", f.group.as_deref().unwrap_or("all points"));
                group = Some(&f.group);
            }
            let _ = writeln!(s, "![{}]({})\n", f.title, f.file);
        }
    }
    let _ = writeln!(
        s,
        "---\nGenerated by `harness report` (last k = {k}; smoothing {}).",
        figures
            .iter()
            .map(|f| f.smooth)
            .max()
            .filter(|w| *w > 1)
            .map(|w| format!("trailing mean of {w} steps"))
            .unwrap_or_else(|| "none".into())
    );
    s
}
