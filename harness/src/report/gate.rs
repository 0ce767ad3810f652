//! The stability gate: a grid's smoothed final metrics against a baseline CSV.
//!
//! Baseline file (`baselines/<name>.csv`, written by `harness gate --update`, tolerances hand-edited):
//! ```text
//! point,metric,last_k,value,abs_tol,rel_tol,direction
//! grpo,critic/score/mean,5,0.41,0.15,,higher
//! grpo,divergences,,0,,,
//! ```
//! - `point`: the grid point's label (`case/key=value/…`, as in the report's table).
//! - `metric`: a logged metric, or `divergences` (diverged seeds of the point).
//! - `value`: per seed, the mean of its last `last_k` logged values; then the mean over the seeds
//!   that finished (done or diverged).
//! - A check fails when the change exceeds `max(abs_tol, rel_tol·|value|)` (either may be empty;
//!   both empty: no change allowed) in the bad direction: `higher` (higher is better: only a drop
//!   fails), `lower` (only a rise fails), `both` (the default).
//! - `divergences`: any divergence at a point whose baseline had none fails, whatever the tolerance.
//! - `learns` (a learning check, not a comparison): per seed the gain of the metric (mean of its
//!   last `last_k` values minus the mean of its first `last_k`); fails unless the mean gain over
//!   the run's seeds is above 0 at 99 % (one-sided t bound, n − 1 df). A run that does not learn
//!   fails it however close its level stays to the baseline's; `value`/`sigma` record the
//!   baseline's gain. Opt-in: add the row by hand (`--update` keeps it), where training reliably
//!   moves the metric — a learning check on a grid that learns only on some seed sets fails
//!   unchanged reruns.
//! - `--update` writes new rows with [`default_checks`]; discrepancy metrics (`rollout_corr/*`)
//!   and the gradient norm default to `lower`, rewards and accuracies to `higher`. It refuses to
//!   drop the rows of baseline points the grid lacks unless forced.
//! - `--update --from-seeds K` ([`from_seeds`]) derives every tolerance from the run's seed noise
//!   instead: with σ the sample standard deviation over seeds of the per-seed value (each point
//!   needs ≥ [`MIN_SEEDS`] finished seeds), `abs_tol = K·σ` and `rel_tol` = a floor (default
//!   [`DEFAULT_FLOOR`] of the value), so that σ = 0 cannot make a check impossible. The optional
//!   columns `sigma` and `seeds` record where a tolerance came from. Two means over n seeds each
//!   differ by σ·√(2/n) in standard deviation, so K = 3 over 4 seeds allows 4.2 of those.
//! - A baseline point whose runs did not all finish, or that is missing, or a metric the run no
//!   longer logs, fails.
use super::csv::{field, Csv};
use super::{fmt_num, fmt_signed, GridResults, Point, Stat};
use crate::rundir::RunState;
use crate::{Error, Result};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The pseudo-metric counting diverged seeds.
pub const DIVERGENCES: &str = "divergences";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Higher is better: only a drop beyond the tolerance fails.
    Higher,
    /// Lower is better: only a rise fails.
    Lower,
    /// Any change beyond the tolerance fails.
    Both,
    /// A learning check, not a comparison: per seed the gain ([`Stat::Gain`]: mean of the last
    /// `last_k` values minus the mean of the first `last_k`); it fails unless the mean gain over
    /// the run's seeds is above zero at [`LEARNS_CONFIDENCE`] (one-sided t bound, n − 1 df). The
    /// row's value and sigma record the baseline's gain (for reading, not for the verdict).
    Learns,
}

/// Confidence of the one-sided lower bound a `learns` check needs above zero.
pub const LEARNS_CONFIDENCE: f64 = 0.99;

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Higher => "higher",
            Direction::Lower => "lower",
            Direction::Both => "both",
            Direction::Learns => "learns",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BaselineRow {
    pub point: String,
    pub metric: String,
    pub last_k: Option<usize>,
    pub value: f64,
    pub abs_tol: Option<f64>,
    pub rel_tol: Option<f64>,
    pub direction: Direction,
    /// The seed spread (sample standard deviation over seeds) the tolerance was derived from.
    pub sigma: Option<f64>,
    /// How many seeds `sigma` is over.
    pub seeds: Option<usize>,
}

impl BaselineRow {
    /// The largest change allowed.
    pub fn allowed(&self) -> f64 {
        self.abs_tol
            .unwrap_or(0.0)
            .max(self.rel_tol.unwrap_or(0.0) * self.value.abs())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub path: PathBuf,
    pub rows: Vec<BaselineRow>,
}

const COLUMNS: [&str; 7] = [
    "point",
    "metric",
    "last_k",
    "value",
    "abs_tol",
    "rel_tol",
    "direction",
];

impl Baseline {
    /// Read and check a baseline file; every problem names the file, line and column.
    pub fn read(path: &Path) -> Result<Baseline> {
        let csv = Csv::read(path)?;
        Self::from_csv(&csv)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Baseline> {
        Self::from_csv(&Csv::parse(text, path)?)
    }

    fn from_csv(csv: &Csv) -> Result<Baseline> {
        let idx: Vec<usize> = COLUMNS
            .iter()
            .map(|c| csv.column(c))
            .collect::<Result<_>>()?;
        let [point, metric, last_k, value, abs_tol, rel_tol, direction] = idx[..] else {
            unreachable!()
        };
        // Optional columns (noise-derived baselines).
        let sigma = csv.header.iter().position(|h| h == "sigma");
        let seeds = csv.header.iter().position(|h| h == "seeds");
        let mut rows = Vec::new();
        for (line, cells) in &csv.records {
            let line = *line;
            let nonneg = |col: usize| -> Result<Option<f64>> {
                match csv.number(line, cells, col)? {
                    Some(x) if !(x >= 0.0 && x.is_finite()) => Err(csv.cell_error(
                        line,
                        col,
                        format!("must be a finite number ≥ 0, not `{}`", cells[col]),
                    )),
                    x => Ok(x),
                }
            };
            if cells[point].is_empty() {
                return Err(csv.cell_error(line, point, "empty"));
            }
            if cells[metric].is_empty() {
                return Err(csv.cell_error(line, metric, "empty"));
            }
            let k = match cells[last_k].as_str() {
                "" => None,
                s => Some(s.parse::<usize>().ok().filter(|k| *k > 0).ok_or_else(|| {
                    csv.cell_error(line, last_k, format!("not a positive integer: `{s}`"))
                })?),
            };
            let v = csv
                .number(line, cells, value)?
                .filter(|x| x.is_finite())
                .ok_or_else(|| csv.cell_error(line, value, "needs a finite number"))?;
            let dir = match cells[direction].as_str() {
                "" | "both" => Direction::Both,
                "higher" => Direction::Higher,
                "lower" => Direction::Lower,
                "learns" => Direction::Learns,
                s => {
                    return Err(csv.cell_error(
                        line,
                        direction,
                        format!("`{s}`: expected higher, lower, both or learns"),
                    ))
                }
            };
            if cells[metric] != DIVERGENCES && k.is_none() {
                return Err(csv.cell_error(line, last_k, "needed for a metric"));
            }
            let n_seeds = match seeds.map(|c| (c, cells[c].as_str())) {
                None | Some((_, "")) => None,
                Some((c, s)) => Some(
                    s.parse::<usize>()
                        .map_err(|_| csv.cell_error(line, c, format!("not a seed count: `{s}`")))?,
                ),
            };
            rows.push(BaselineRow {
                point: cells[point].clone(),
                metric: cells[metric].clone(),
                last_k: k,
                value: v,
                abs_tol: nonneg(abs_tol)?,
                rel_tol: nonneg(rel_tol)?,
                direction: dir,
                sigma: sigma.map(nonneg).transpose()?.flatten(),
                seeds: n_seeds,
            });
        }
        if rows.is_empty() {
            return Err(Error::Input(format!(
                "{}: no baseline rows (write one with `harness gate DIR --baseline {} --update`)",
                csv.path.display(),
                csv.path.display()
            )));
        }
        Ok(Baseline {
            path: csv.path.clone(),
            rows,
        })
    }

    /// The CSV text (a comment header, then one row per check).
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "# Stability baseline: `harness gate DIR/<grid> --baseline <this file>`; rewrite the values\n\
             # with `--update` (tolerances and directions are kept). value: per seed the mean of the\n\
             # last `last_k` logged values, then the mean over seeds. A check fails when the change\n\
             # exceeds max(abs_tol, rel_tol*|value|) in the bad direction (higher: higher is better;\n\
             # lower; both). `divergences`: any divergence where the baseline had none fails.\n\
             # learns: per seed, mean of the last `last_k` values minus the first `last_k`; fails\n\
             # unless its mean over seeds is > 0 at 99% (one-sided t bound); value: the baseline's.\n",
        );
        let noise = self.rows.iter().any(|r| r.sigma.is_some());
        if noise {
            s.push_str(
                "# From seed noise (`--update --from-seeds K`): abs_tol = K*sigma, sigma the standard\n\
                 # deviation over `seeds` seeds of the per-seed value; rel_tol is a floor.\n",
            );
        }
        s.push_str(&COLUMNS.join(","));
        s.push_str(if noise { ",sigma,seeds\n" } else { "\n" });
        let opt = |x: Option<f64>| x.map(|v| format!("{v}")).unwrap_or_default();
        for r in &self.rows {
            let _ = write!(
                s,
                "{},{},{},{},{},{},{}",
                field(&r.point),
                field(&r.metric),
                r.last_k.map(|k| k.to_string()).unwrap_or_default(),
                r.value,
                opt(r.abs_tol),
                opt(r.rel_tol),
                r.direction.as_str()
            );
            if noise {
                let n = r.seeds.map(|n| n.to_string()).unwrap_or_default();
                let _ = write!(s, ",{},{n}", opt(r.sigma));
            }
            s.push('\n');
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Beyond the tolerance in the good direction (passes).
    Improved,
    Regression,
}

/// One line of the gate's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub point: String,
    pub metric: String,
    pub baseline: String,
    pub now: String,
    pub delta: String,
    pub tolerance: String,
    pub verdict: Verdict,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    pub grid: String,
    pub baseline: PathBuf,
    pub checks: Vec<Check>,
    /// Grid points the baseline does not cover (not checked).
    pub unchecked: Vec<String>,
}

impl GateReport {
    pub fn regressions(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.verdict == Verdict::Regression)
            .count()
    }
    pub fn passed(&self) -> bool {
        self.regressions() == 0
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "## Gate: `{}` vs `{}`\n\n| point | metric | baseline | now | delta | tolerance | verdict |\n\
             |---|---|---:|---:|---:|---:|---|\n",
            self.grid,
            self.baseline.display()
        );
        for c in &self.checks {
            let verdict = match c.verdict {
                Verdict::Ok => "ok".to_string(),
                Verdict::Improved => "improved".to_string(),
                Verdict::Regression => "**REGRESSION**".to_string(),
            };
            let verdict = match &c.note {
                Some(n) => format!("{verdict} ({n})"),
                None => verdict,
            };
            let _ = writeln!(
                s,
                "| `{}` | `{}` | {} | {} | {} | {} | {} |",
                c.point.replace('|', "\\|"),
                c.metric,
                c.baseline,
                c.now,
                c.delta,
                c.tolerance,
                verdict
            );
        }
        if !self.unchecked.is_empty() {
            let _ = writeln!(
                s,
                "\nNot in the baseline (not checked): {}.",
                self.unchecked
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let n = self.checks.len();
        let r = self.regressions();
        if r == 0 {
            let _ = writeln!(s, "\n**PASS**: {n} check(s), no regression.");
        } else {
            let _ = writeln!(s, "\n**FAIL**: {r} regression(s) in {n} check(s).");
        }
        s
    }
}

/// Compare a grid's results with a baseline.
pub fn evaluate(g: &GridResults, b: &Baseline) -> GateReport {
    let mut checks = Vec::new();
    let mut seen_points: Vec<&str> = Vec::new();
    for row in &b.rows {
        let p = g.points.iter().find(|p| p.label == row.point);
        let first_of_point = !seen_points.contains(&row.point.as_str());
        if first_of_point {
            seen_points.push(&row.point);
        }
        let tol_sign = match row.direction {
            Direction::Higher => "-",
            Direction::Lower => "+",
            Direction::Both => "±",
            Direction::Learns => "",
        };
        let mut check = Check {
            point: row.point.clone(),
            metric: row.metric.clone(),
            baseline: fmt_num(row.value),
            now: "–".into(),
            delta: "–".into(),
            tolerance: format!("{tol_sign}{}", fmt_num(row.allowed())),
            verdict: Verdict::Regression,
            note: None,
        };
        let Some(p) = p else {
            check.note = Some("grid point missing".into());
            checks.push(check);
            continue;
        };
        if first_of_point {
            let unfinished = p.count(RunState::Failed) + p.unfinished();
            if unfinished > 0 {
                checks.push(Check {
                    point: row.point.clone(),
                    metric: "runs finished".into(),
                    baseline: p.runs.len().to_string(),
                    now: p.n_finished().to_string(),
                    delta: format!("-{unfinished}"),
                    tolerance: "0".into(),
                    verdict: Verdict::Regression,
                    note: Some("failed or unfinished runs".into()),
                });
            }
        }
        if row.direction == Direction::Learns {
            checks.push(learns_check(p, row, check));
            continue;
        }
        let now = if row.metric == DIVERGENCES {
            Some(p.divergences() as f64)
        } else {
            p.stats(&row.metric, Stat::LastK(row.last_k.unwrap_or(1)))
                .mean
        };
        let Some(now) = now else {
            check.note = Some("metric not logged".into());
            checks.push(check);
            continue;
        };
        let d = now - row.value;
        check.now = fmt_num(now);
        check.delta = fmt_signed(d);
        let slack = row.allowed() + 1e-12 * row.value.abs().max(1.0);
        let (bad, good) = match row.direction {
            Direction::Higher => (-d, d),
            Direction::Lower => (d, -d),
            Direction::Both | Direction::Learns => (d.abs(), 0.0),
        };
        check.verdict = if row.metric == DIVERGENCES && row.value == 0.0 && now > 0.0 {
            check.note = Some("diverged where the baseline did not".into());
            Verdict::Regression
        } else if bad > slack {
            Verdict::Regression
        } else if good > slack {
            Verdict::Improved
        } else {
            Verdict::Ok
        };
        checks.push(check);
    }
    let unchecked = g
        .points
        .iter()
        .filter(|p| !b.rows.iter().any(|r| r.point == p.label))
        .map(|p| p.label.clone())
        .collect();
    GateReport {
        grid: g.manifest.name.clone(),
        baseline: b.path.clone(),
        checks,
        unchecked,
    }
}

/// A `learns` row checked on point `p`: the mean over its seeds of the gain, and the verdict of
/// its one-sided lower bound ([`LEARNS_CONFIDENCE`]).
fn learns_check(p: &Point, row: &BaselineRow, mut check: Check) -> Check {
    let gains: Vec<f64> = p
        .per_seed(&row.metric, Stat::Gain(row.last_k.unwrap_or(1)))
        .into_iter()
        .map(|(_, g)| g)
        .collect();
    check.metric = format!("{} (gain)", row.metric);
    check.tolerance = format!("{:.0}% bound > 0", 100.0 * LEARNS_CONFIDENCE);
    let Some((mean, bound)) = learning_bound(&gains) else {
        check.note = Some(format!("needs ≥ 2 seeds with a gain, has {}", gains.len()));
        return check;
    };
    check.now = fmt_num(mean);
    check.delta = format!("bound {}", fmt_signed(bound));
    if bound > 0.0 {
        check.verdict = Verdict::Ok;
    } else {
        check.note = Some("no learning: the gain's lower bound is not above 0".into());
    }
    check
}

/// The mean of per-seed gains and its one-sided lower bound at [`LEARNS_CONFIDENCE`] (Student t,
/// n − 1 df); `None` with fewer than 2 gains.
pub fn learning_bound(gains: &[f64]) -> Option<(f64, f64)> {
    let s = crate::table::seed_stats(gains);
    let (mean, sd) = (s.mean?, s.std?);
    let n = gains.len() as f64;
    let t = crate::table::stats::t_quantile(LEARNS_CONFIDENCE, n - 1.0);
    Some((mean, mean - t * sd / n.sqrt()))
}

/// The direction a new check of `metric` gets: train–inference discrepancy metrics
/// (`rollout_corr/*`) and gradient norms are better low (a smaller discrepancy must never fail),
/// rewards and accuracies high, anything else either way.
pub fn default_direction(metric: &str) -> Direction {
    if metric.starts_with("rollout_corr/") || metric == "actor/grad_norm" || metric == DIVERGENCES {
        Direction::Lower
    } else if metric.starts_with("critic/score/") || metric.starts_with("eval/") {
        Direction::Higher
    } else {
        Direction::Both
    }
}

/// Default checks for a point a baseline does not cover yet: `(metric, abs_tol, rel_tol,
/// direction)`, for the metrics the point logs.
pub fn default_checks(p: &Point) -> Vec<(String, Option<f64>, Option<f64>, Direction)> {
    let logged = |m: &str| p.runs.iter().any(|r| !r.series(m).is_empty());
    let mut evals: Vec<String> = p
        .runs
        .iter()
        .flat_map(|r| r.eval.iter().flat_map(|row| row.keys()))
        .filter(|k| k.starts_with("eval/") && k.contains("/avg@"))
        .cloned()
        .collect();
    evals.sort();
    evals.dedup();
    let mut checks = vec![("critic/score/mean".to_string(), Some(0.15), None)];
    checks.extend(evals.into_iter().map(|e| (e, Some(0.2), None)));
    checks.extend([
        ("actor/entropy".to_string(), None, Some(0.25)),
        (
            "rollout_corr/abs_prob_diff".to_string(),
            Some(1e-4),
            Some(0.5),
        ),
        ("actor/grad_norm".to_string(), Some(0.1), Some(1.0)),
    ]);
    let mut out: Vec<_> = checks
        .into_iter()
        .filter(|(m, _, _)| logged(m))
        .map(|(m, abs, rel)| {
            let dir = default_direction(&m);
            (m, abs, rel, dir)
        })
        .collect();
    out.push((DIVERGENCES.to_string(), None, None, Direction::Lower));
    out
}

/// The checks of one point: the old baseline's rows for it (values to be replaced), else
/// [`default_checks`] with window `last_k` (for the metrics the point logs).
fn point_checks(p: &Point, old: Option<&Baseline>, last_k: usize) -> Vec<BaselineRow> {
    let kept: Vec<BaselineRow> = old
        .map(|b| {
            b.rows
                .iter()
                .filter(|r| r.point == p.label)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if !kept.is_empty() {
        return kept;
    }
    default_checks(p)
        .into_iter()
        .map(|(metric, abs_tol, rel_tol, direction)| BaselineRow {
            point: p.label.clone(),
            last_k: (metric != DIVERGENCES).then_some(last_k),
            metric,
            value: f64::NAN,
            abs_tol,
            rel_tol,
            direction,
            sigma: None,
            seeds: None,
        })
        .collect()
}

/// Per-seed values of a check at a point (`divergences`: 1 per diverged seed, 0 per other
/// finished seed).
fn per_seed(p: &Point, r: &BaselineRow) -> Vec<f64> {
    if r.metric == DIVERGENCES {
        return p
            .runs
            .iter()
            .filter(|x| x.finished())
            .map(|x| f64::from(u8::from(x.state() == Some(RunState::Diverged))))
            .collect();
    }
    p.per_seed(&r.metric, row_stat(r, 1))
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// The per-seed statistic a row's value is the mean of (`default_k` when it names no window).
fn row_stat(r: &BaselineRow, default_k: usize) -> Stat {
    let k = r.last_k.unwrap_or(default_k);
    match r.direction {
        Direction::Learns => Stat::Gain(k),
        _ => Stat::LastK(k),
    }
}

/// Points of the old baseline that the grid does not have.
fn dropped_points(g: &GridResults, old: Option<&Baseline>) -> Vec<String> {
    let mut dropped: Vec<String> = Vec::new();
    for r in old.map(|b| b.rows.as_slice()).unwrap_or_default() {
        if g.point(&r.point).is_none() && !dropped.contains(&r.point) {
            dropped.push(r.point.clone());
        }
    }
    dropped
}

/// A baseline from a run: the existing rows' checks (tolerances, directions, windows) with new
/// values; points the old baseline does not cover get [`default_checks`] with `last_k`. Rows of
/// points the grid does not have are left out and named in [`Updated::dropped`]: the caller
/// refuses to write such an update unless asked to (`gate --update --force`).
pub fn update(g: &GridResults, old: Option<&Baseline>, path: &Path, last_k: usize) -> Updated {
    let mut rows = Vec::new();
    for p in &g.points {
        for r in point_checks(p, old, last_k) {
            let value = if r.metric == DIVERGENCES {
                Some(p.divergences() as f64)
            } else {
                p.stats(&r.metric, row_stat(&r, last_k)).mean
            };
            if let Some(value) = value {
                rows.push(BaselineRow { value, ..r });
            }
        }
    }
    Updated {
        baseline: Baseline {
            path: path.to_path_buf(),
            rows,
        },
        dropped: dropped_points(g, old),
        not_learning: Vec::new(),
    }
}

/// Fewest finished seeds per grid point that [`from_seeds`] accepts.
pub const MIN_SEEDS: usize = 4;
/// The default multiple of the seed standard deviation a noise-derived tolerance allows.
pub const DEFAULT_K: f64 = 3.0;
/// The default floor of a noise-derived tolerance, relative to the value.
pub const DEFAULT_FLOOR: f64 = 0.02;

/// A baseline whose tolerances come from the run's seed noise: the checks of [`update`] (the old
/// baseline's metrics, windows and directions, or [`default_checks`]), each with `value` the mean
/// over seeds, `sigma` their sample standard deviation, `abs_tol = k·sigma` and `rel_tol = floor`
/// (the tolerance is the larger of the two). `divergences` rows keep no tolerance; `learns` rows
/// none either, and are left out (listed in [`Updated::not_learning`]) where the run itself
/// fails them. Every point needs at least [`MIN_SEEDS`] finished seeds with a value: otherwise
/// bad input, naming them.
pub fn from_seeds(
    g: &GridResults,
    old: Option<&Baseline>,
    path: &Path,
    last_k: usize,
    k: f64,
    floor: f64,
) -> Result<Updated> {
    let mut rows = Vec::new();
    let mut short = Vec::new();
    let mut not_learning = Vec::new();
    for p in &g.points {
        for r in point_checks(p, old, last_k) {
            let xs = per_seed(p, &r);
            if r.metric == DIVERGENCES {
                let value = xs.iter().sum();
                rows.push(BaselineRow { value, ..r });
                continue;
            }
            if xs.is_empty() {
                continue; // a metric this point does not log
            }
            if xs.len() < MIN_SEEDS {
                short.push(format!("`{}` {} ({} seeds)", p.label, r.metric, xs.len()));
                continue;
            }
            let learns = r.direction == Direction::Learns;
            let failing = learning_bound(&xs).filter(|(_, b)| *b <= 0.0);
            if let Some((m, b)) = failing.filter(|_| learns) {
                not_learning.push(format!(
                    "`{}` {} (gain {}, {:.0}% bound {})",
                    p.label,
                    r.metric,
                    fmt_num(m),
                    100.0 * LEARNS_CONFIDENCE,
                    fmt_signed(b)
                ));
                continue;
            }
            let s = crate::table::seed_stats(&xs);
            let sigma = s.std.expect("n ≥ 2");
            // A learning check's verdict does not use tolerances.
            rows.push(BaselineRow {
                value: s.mean.expect("n ≥ 1"),
                abs_tol: (!learns).then_some(k * sigma),
                rel_tol: (!learns).then_some(floor),
                sigma: Some(sigma),
                seeds: Some(xs.len()),
                ..r
            });
        }
    }
    if !short.is_empty() {
        return Err(Error::Input(format!(
            "--from-seeds needs at least {MIN_SEEDS} finished seeds per check, and {} {} fewer: \
             {} (run the grid with more seeds)",
            short.len(),
            if short.len() == 1 { "has" } else { "have" },
            short.join(", ")
        )));
    }
    Ok(Updated {
        baseline: Baseline {
            path: path.to_path_buf(),
            rows,
        },
        dropped: dropped_points(g, old),
        not_learning,
    })
}

/// What [`update`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated {
    pub baseline: Baseline,
    /// Points of the old baseline that the grid does not have (their rows are not in `baseline`).
    pub dropped: Vec<String>,
    /// `learns` checks left out by [`from_seeds`] because the run itself shows no learning at
    /// [`LEARNS_CONFIDENCE`] (a check its own baseline fails could never pass).
    pub not_learning: Vec<String>,
}
