//! Curves as SVG with plotters: per grid point, the mean over seeds of each seed's trailing-mean
//! curve and a band from the lowest to the highest seed; one figure per metric and per group of
//! the grouping axes. The SVG backend writes text as `<text>` elements with a generic
//! `sans-serif` family, so no font is loaded and the output is deterministic.
use super::{fmt_num, value_text, GridResults, Point, ReportOptions};
use crate::{Error, Result};
use plotters::prelude::*;
use std::collections::BTreeMap;

/// Curves the report draws: `(metric, title, y label)`. Eval accuracy adds every
/// `eval/<task>/avg@k` the runs log.
pub const CURVES: &[(&str, &str, &str)] = &[
    ("critic/score/mean", "Reward", "mean reward"),
    (
        "rollout_corr/abs_prob_diff",
        "Train–inference discrepancy",
        "mean |π_old − μ|",
    ),
    ("dc/lambda", "DCMDP multiplier λ", "λ"),
    ("actor/entropy", "Entropy", "entropy (nats)"),
    ("actor/grad_norm", "Gradient norm", "‖g‖ (before clipping)"),
];

/// One seed-aggregated curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    /// Index into the palette (stable per grid point across figures).
    pub color: usize,
    /// `(step, mean, min, max)` over seeds.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// One figure (one SVG file).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub file: String,
    pub metric: String,
    pub title: String,
    pub y_label: String,
    /// `key=value, …` of the grouping axes, when the curves are split.
    pub group: Option<String>,
    pub curves: Vec<Curve>,
    /// Horizontal reference lines `(label, y)`: the DCMDP tolerances `c`.
    pub hlines: Vec<(String, f64)>,
    /// Trailing-mean window used.
    pub smooth: usize,
}

/// File-name-safe text: lowercase alphanumerics, `.`, `@`, `_` and `-`.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@') {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The trailing-mean window: `opts.smooth`, or about a twentieth of the longest run.
pub fn smooth_window(g: &GridResults, opts: &ReportOptions) -> usize {
    if opts.smooth > 0 {
        return opts.smooth;
    }
    let steps = g
        .points
        .iter()
        .flat_map(|p| &p.runs)
        .map(|r| r.metrics.len())
        .max()
        .unwrap_or(0);
    ((steps as f64 / 20.0).round() as usize).max(1)
}

/// A seed-aggregated curve of `metric` at one point (`None` when no seed logs it).
pub fn curve(p: &Point, metric: &str, window: usize) -> Option<Vec<(f64, f64, f64, f64)>> {
    let mut by_step: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in &p.runs {
        let s = r.series(metric);
        for i in 0..s.len() {
            let lo = (i + 1).saturating_sub(window.max(1));
            let w = &s[lo..=i];
            let m = w.iter().map(|(_, v)| v).sum::<f64>() / w.len() as f64;
            by_step.entry(s[i].0 as i64).or_default().push(m);
        }
    }
    if by_step.is_empty() {
        return None;
    }
    Some(
        by_step
            .into_iter()
            .map(|(step, v)| {
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (step as f64, mean, lo, hi)
            })
            .collect(),
    )
}

/// Groups of points: `(label of the group, indices of its points)`. A point that lacks one of the
/// grouping axes belongs to every group (a reference such as a GRPO case without the sweep axis).
pub fn groups(g: &GridResults, keys: &[String]) -> Vec<(Option<String>, Vec<usize>)> {
    if keys.is_empty() {
        return vec![(None, (0..g.points.len()).collect())];
    }
    let mut combos: Vec<Vec<String>> = Vec::new();
    for p in &g.points {
        let vals: Option<Vec<String>> = keys.iter().map(|k| p.axis(k).map(value_text)).collect();
        if let Some(v) = vals {
            if !combos.contains(&v) {
                combos.push(v);
            }
        }
    }
    if combos.is_empty() {
        return vec![(None, (0..g.points.len()).collect())];
    }
    combos
        .into_iter()
        .map(|combo| {
            let members = g
                .points
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    keys.iter()
                        .zip(&combo)
                        .all(|(k, v)| p.axis(k).is_none_or(|pv| value_text(pv) == *v))
                })
                .map(|(i, _)| i)
                .collect();
            let label = keys
                .iter()
                .zip(&combo)
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            (Some(label), members)
        })
        .collect()
}

/// The default grouping: the axes every grid point has, so that each figure compares the cases
/// at one setting of the sweep; but while that leaves every figure with a single curve (a sweep
/// without cases), the last of those axes moves into the figures instead, so that a one-axis sweep
/// gets one figure comparing its values.
pub fn default_grouping(g: &GridResults) -> Vec<String> {
    let mut keys = g.global_axes();
    while !keys.is_empty() && groups(g, &keys).iter().all(|(_, m)| m.len() <= 1) {
        keys.pop();
    }
    keys
}

/// Every figure of a report, in order: per curve metric, per group.
pub fn figures(g: &GridResults, opts: &ReportOptions) -> Vec<Figure> {
    let names = g.metric_names();
    let mut specs: Vec<(String, String, String, bool)> = Vec::new();
    for (m, title, y) in CURVES {
        if names.contains(*m) {
            specs.push((m.to_string(), title.to_string(), y.to_string(), true));
        }
        if *m == "critic/score/mean" {
            for e in names
                .iter()
                .filter(|n| n.starts_with("eval/") && n.contains("/avg@"))
            {
                specs.push((
                    e.clone(),
                    format!("Eval accuracy {}", &e["eval/".len()..]),
                    "accuracy".into(),
                    false,
                ));
            }
        }
    }
    let keys = opts.group_by.clone().unwrap_or_else(|| default_grouping(g));
    let groups = groups(g, &keys);
    let window = smooth_window(g, opts);
    let mut out = Vec::new();
    for (metric, title, y_label, train) in specs {
        for (group, members) in &groups {
            let w = if train { window } else { 1 };
            let curves: Vec<Curve> = members
                .iter()
                .filter_map(|&i| {
                    Some(Curve {
                        label: g.points[i].label.clone(),
                        color: i,
                        points: curve(&g.points[i], &metric, w)?,
                    })
                })
                .collect();
            if curves.is_empty() {
                continue;
            }
            let mut hlines: Vec<(String, f64)> = Vec::new();
            if metric == "rollout_corr/abs_prob_diff" || metric == "dc/delta_bar" {
                for &i in members {
                    let p = &g.points[i];
                    if p.config_value("algorithm.name").and_then(|v| v.as_str()) != Some("dcmdp") {
                        continue;
                    }
                    if let Some(c) = p.config_value("algorithm.c").and_then(|v| v.as_f64()) {
                        if !hlines.iter().any(|(_, y)| *y == c) {
                            hlines.push((format!("c = {}", fmt_num(c)), c));
                        }
                    }
                }
            }
            let file = match group {
                Some(gl) => format!("{}--{}.svg", slug(&metric), slug(gl)),
                None => format!("{}.svg", slug(&metric)),
            };
            out.push(Figure {
                file,
                metric: metric.clone(),
                title: title.clone(),
                y_label: y_label.clone(),
                group: group.clone(),
                curves,
                hlines,
                smooth: w,
            });
        }
    }
    out
}

/// Tableau 10.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const W: u32 = 760;
const H: u32 = 360;
const LEGEND_W: u32 = 220;

fn plot_err(file: &str, e: impl std::fmt::Display) -> Error {
    Error::Input(format!("plot {file}: {e}"))
}

/// Draw a figure as an SVG document.
pub fn render_svg(f: &Figure) -> Result<String> {
    let mut buf = String::new();
    draw(f, &mut buf).map_err(|e| plot_err(&f.file, e))?;
    Ok(buf)
}

fn draw(f: &Figure, buf: &mut String) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for c in &f.curves {
        for &(x, _, lo, hi) in &c.points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(lo);
            y1 = y1.max(hi);
        }
    }
    for (_, y) in &f.hlines {
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    if y1 <= y0 {
        let pad = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
        y0 -= pad;
        y1 += pad;
    } else {
        let pad = (y1 - y0) * 0.05;
        y0 -= pad;
        y1 += pad;
    }

    let root = SVGBackend::with_string(buf, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(W - LEGEND_W);
    let mut title = f.title.clone();
    if let Some(g) = &f.group {
        title = format!("{title} ({g})");
    }
    let mut chart = ChartBuilder::on(&plot)
        .caption(&title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let fmt_y = |v: &f64| fmt_num(*v);
    let fmt_x = |v: &f64| format!("{}", v.round() as i64);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(&f.y_label)
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .label_style(("sans-serif", 11))
        .axis_desc_style(("sans-serif", 12))
        .max_light_lines(0)
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()?;
    for c in &f.curves {
        let color = PALETTE[c.color % PALETTE.len()];
        if c.points.iter().any(|&(_, _, lo, hi)| hi > lo) {
            let mut band: Vec<(f64, f64)> = c.points.iter().map(|&(x, _, _, hi)| (x, hi)).collect();
            band.extend(c.points.iter().rev().map(|&(x, _, lo, _)| (x, lo)));
            chart.draw_series(std::iter::once(Polygon::new(
                band,
                color.mix(0.15).filled(),
            )))?;
        }
        chart.draw_series(LineSeries::new(
            c.points.iter().map(|&(x, m, _, _)| (x, m)),
            color.stroke_width(2),
        ))?;
        if c.points.len() == 1 {
            let (x, m, _, _) = c.points[0];
            chart.draw_series(std::iter::once(Circle::new((x, m), 3, color.filled())))?;
        }
    }
    for (label, y) in &f.hlines {
        chart.draw_series(DashedLineSeries::new(
            [(x0, *y), (x1, *y)],
            6,
            4,
            BLACK.mix(0.7).stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(
            EmptyElement::at((x0, *y))
                + Text::new(
                    label.clone(),
                    (6, -13),
                    ("sans-serif", 10).into_font().color(&BLACK.mix(0.8)),
                ),
        ))?;
    }

    draw_legend(f, &legend)?;
    root.present()?;
    Ok(())
}

/// The legend on the right, outside the plot: one line per curve, then how curves are made.
fn draw_legend(
    f: &Figure,
    legend: &DrawingArea<SVGBackend, plotters::coord::Shift>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut y = 40i32;
    for c in &f.curves {
        let color = PALETTE[c.color % PALETTE.len()];
        legend.draw(&PathElement::new(
            vec![(8, y), (32, y)],
            color.stroke_width(3),
        ))?;
        legend.draw(&Text::new(
            c.label.clone(),
            (38, y - 6),
            ("sans-serif", 11).into_font(),
        ))?;
        y += 18;
    }
    let note = if f.smooth > 1 {
        format!("mean of seeds (trailing mean of {} steps)", f.smooth)
    } else {
        "mean of seeds".to_string()
    };
    legend.draw(&Text::new(note, (8, y + 6), ("sans-serif", 9).into_font()))?;
    legend.draw(&Text::new(
        "band: min–max over seeds".to_string(),
        (8, y + 20),
        ("sans-serif", 9).into_font(),
    ))?;
    Ok(())
}
