//! Claims a report checks against a grid's results (`experiments/claims/<grid>.yaml`), so that the
//! verdicts in a committed report come from the committed grid and code, not from hand edits.
//!
//! ```yaml
//! metric: eval/addition/avg@4      # default metric of every claim
//! stat: lastk                      # lastk (mean of the last k logged values) or final; a claim
//!                                  # may override it (`stat:`), as it may the metric
//! alpha: 0.05                      # the interval's confidence is 1 − α (default 0.05: 95 %)
//! power: 0.8                       # of the detectable difference (default 0.8)
//! claims:
//!   - claim: Mismatch lowers GRPO's accuracy
//!     less: [grpo/weight_quant=fp8-e4m3, grpo/weight_quant=none]   # a < b
//!   - claim: DC-GRPO beats GRPO under the same mismatch
//!     greater: [dcmdp/weight_quant=fp8-e4m3, grpo/weight_quant=fp8-e4m3]
//!   - claim: GRPO learns at all
//!     greater: [grpo/weight_quant=none, 0.25]                         # against a number
//!   - claim: An interior tolerance c is best
//!     interior_max: [dcmdp/c=0.001, dcmdp/c=0.004, dcmdp/c=0.016]    # ordered sweep
//! ```
//! Points are named by their labels (the report's table); one side of `less` / `greater` may be a
//! number instead.
//!
//! **The test.** Each comparison is on per-seed values of the claim's statistic, paired by seed:
//! runs of the same seed share the initial weights, the SFT and training prompts and the sampling
//! seeds of every step, and every run of a grid is evaluated on the same held-out set, so the
//! per-seed difference removes the noise the cases share. For `less: [a, b]` the differences are
//! `b − a` over the seeds both points finished, for `greater: [a, b]` `a − b` (the claim: their
//! mean is positive); against a number, the point's values minus the number (a one-sample test).
//! [`mean_test`] gives the two-sided (1 − α) Student t interval of the mean difference (n − 1
//! degrees of freedom) and the smallest difference the run could detect with the given power.
//!
//! **Verdicts.** *holds*: the whole interval is above 0; *inconclusive*: the mean difference is
//! positive but the interval includes 0; *does not hold*: the mean difference is ≤ 0; *n/a*: fewer
//! than 2 pairs (no interval can be formed). `interior_max` compares the interior point with the
//! best mean with both ends, each paired, and takes the weaker of the two verdicts (so it does not
//! hold when an end is better). A label the grid lacks, or a metric
//! no run logs, is bad input: the report is not written.
use super::{fmt_num, GridResults, Stat};
use crate::table::stats::{mean_test, MeanTest};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimStat {
    Lastk,
    Final,
}

impl ClaimStat {
    pub fn of(self, last_k: usize) -> Stat {
        match self {
            ClaimStat::Lastk => Stat::LastK(last_k),
            ClaimStat::Final => Stat::Final,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    #[serde(skip)]
    pub path: PathBuf,
    pub metric: String,
    #[serde(default = "default_stat")]
    pub stat: ClaimStat,
    /// Two-sided level of every claim's interval (confidence 1 − α).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Power of the detectable difference.
    #[serde(default = "default_power")]
    pub power: f64,
    pub claims: Vec<Claim>,
}

fn default_stat() -> ClaimStat {
    ClaimStat::Lastk
}
fn default_alpha() -> f64 {
    0.05
}
fn default_power() -> f64 {
    0.8
}

/// One side of a comparison: a grid point's label or a fixed number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Operand {
    Value(f64),
    Point(String),
}

impl Operand {
    pub fn text(&self) -> String {
        match self {
            Operand::Value(v) => fmt_num(*v),
            Operand::Point(l) => format!("`{l}`"),
        }
    }
}

impl From<&str> for Operand {
    fn from(s: &str) -> Self {
        Operand::Point(s.to_string())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub claim: String,
    /// Overrides the file's metric.
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub less: Option<[Operand; 2]>,
    #[serde(default)]
    pub greater: Option<[Operand; 2]>,
    #[serde(default)]
    pub interior_max: Option<Vec<String>>,
    /// Overrides the file's statistic.
    #[serde(default)]
    pub stat: Option<ClaimStat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Fewer than 2 seed pairs: no interval (a point not run, or without finished seeds).
    NotAvailable,
    DoesNotHold,
    Inconclusive,
    Holds,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Holds => "**holds**",
            Verdict::Inconclusive => "inconclusive (right direction, interval includes 0)",
            Verdict::DoesNotHold => "**does not hold**",
            Verdict::NotAvailable => "n/a (fewer than 2 seed pairs)",
        }
    }

    fn of(t: &MeanTest) -> Verdict {
        match (t.mean, t.interval()) {
            (_, None) => Verdict::NotAvailable,
            (_, Some((low, _))) if low > 0.0 => Verdict::Holds,
            (Some(m), _) if m > 0.0 => Verdict::Inconclusive,
            _ => Verdict::DoesNotHold,
        }
    }
}

/// One paired (or one-sample) comparison: the claim says `hi − lo` is positive.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub hi: Operand,
    pub lo: Operand,
    /// `(seed, lo value, hi value)` for every seed both sides have (a number side: every seed).
    pub pairs: Vec<(i64, f64, f64)>,
    /// Seeds only one side finished (left out of the test).
    pub unpaired: Vec<i64>,
    /// The t test of `hi − lo` over the pairs.
    pub test: MeanTest,
}

impl Comparison {
    /// `hi − lo` as text.
    pub fn text(&self) -> String {
        format!("{} − {}", self.hi.text(), self.lo.text())
    }
}

/// A checked claim: the verdict and its comparisons.
#[derive(Debug, Clone)]
pub struct Checked {
    pub claim: String,
    pub metric: String,
    pub verdict: Verdict,
    pub comparisons: Vec<Comparison>,
    /// What else decided the verdict (`interior_max`: the best point).
    pub note: Option<String>,
}

impl Claims {
    pub fn read(path: &Path) -> Result<Claims> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut c: Claims = serde_yaml::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        c.path = path.to_path_buf();
        let bad = |msg: String| Err(Error::Input(format!("{}: {msg}", path.display())));
        if !(c.alpha > 0.0 && c.alpha < 1.0) {
            return bad(format!("alpha: {} is not in (0, 1)", c.alpha));
        }
        if !(c.power > 0.0 && c.power < 1.0) {
            return bad(format!("power: {} is not in (0, 1)", c.power));
        }
        for (i, cl) in c.claims.iter().enumerate() {
            let kinds = cl.less.is_some() as u8
                + cl.greater.is_some() as u8
                + cl.interior_max.is_some() as u8;
            if kinds != 1 {
                return bad(format!(
                    "claims[{i}]: give exactly one of `less`, `greater`, `interior_max`"
                ));
            }
            if cl.interior_max.as_ref().is_some_and(|v| v.len() < 3) {
                return bad(format!("claims[{i}].interior_max: needs at least 3 points"));
            }
            let pair = cl.less.as_ref().or(cl.greater.as_ref());
            if let Some([Operand::Value(_), Operand::Value(_)]) = pair {
                return bad(format!(
                    "claims[{i}]: compares two numbers; one side must be a grid point"
                ));
            }
        }
        Ok(c)
    }

    /// Every problem of the claims against a grid: point labels it lacks and metrics no run logs
    /// (skipped while no run has logged anything yet), each named with its claim.
    pub fn problems(&self, g: &GridResults) -> Vec<String> {
        let names = g.metric_names();
        let mut out = Vec::new();
        for (i, c) in self.claims.iter().enumerate() {
            for label in c.labels() {
                if g.point(label).is_none() {
                    out.push(format!("claims[{i}]: no grid point `{label}`"));
                }
            }
            let metric = self.metric_of(c);
            if !names.is_empty() && !names.contains(metric) {
                out.push(format!("claims[{i}]: no run logs the metric `{metric}`"));
            }
        }
        out
    }

    fn metric_of<'a>(&'a self, c: &'a Claim) -> &'a str {
        c.metric.as_deref().unwrap_or(&self.metric)
    }

    /// The per-seed statistic of the claims.
    pub fn stat(&self, last_k: usize) -> Stat {
        self.stat.of(last_k)
    }

    /// Check every claim on a grid's results (claims in parallel). Unknown point labels and
    /// metrics are bad input, all named at once.
    pub fn check(&self, g: &GridResults, last_k: usize) -> Result<Vec<Checked>> {
        let problems = self.problems(g);
        if !problems.is_empty() {
            let points: Vec<&str> = g.points.iter().map(|p| p.label.as_str()).collect();
            let metrics: Vec<String> = g.metric_names().into_iter().collect();
            return Err(Error::Input(format!(
                "{}:\n  {}\ngrid points: {}\nmetrics: {}",
                self.path.display(),
                problems.join("\n  "),
                points.join(", "),
                if metrics.is_empty() {
                    "none logged yet".to_string()
                } else {
                    metrics.join(", ")
                }
            )));
        }
        Ok(self
            .claims
            .par_iter()
            .map(|c| {
                let cx = Context {
                    g,
                    stat: c.stat.unwrap_or(self.stat).of(last_k),
                    alpha: self.alpha,
                    power: self.power,
                };
                let mut checked = c.verdict(&cx, self.metric_of(c));
                if let Some(st) = c.stat {
                    let what = match st {
                        ClaimStat::Lastk => format!("last {last_k}"),
                        ClaimStat::Final => "final".into(),
                    };
                    checked.metric = format!("{} ({what})", checked.metric);
                }
                checked
            })
            .collect())
    }
}

/// What every comparison of a check shares.
struct Context<'a> {
    g: &'a GridResults,
    stat: Stat,
    alpha: f64,
    power: f64,
}

impl Context<'_> {
    /// Per-seed values of a side (`None` for a number).
    fn values(&self, side: &Operand, metric: &str) -> Option<Vec<(i64, f64)>> {
        match side {
            Operand::Value(_) => None,
            Operand::Point(l) => Some(
                self.g
                    .point(l)
                    .expect("labels checked")
                    .per_seed(metric, self.stat),
            ),
        }
    }

    /// Pair `hi` and `lo` by seed and test `hi − lo`.
    fn compare(&self, hi: &Operand, lo: &Operand, metric: &str) -> Comparison {
        let (h, l) = (self.values(hi, metric), self.values(lo, metric));
        let fixed = |side: &Operand| match side {
            Operand::Value(v) => *v,
            Operand::Point(_) => f64::NAN,
        };
        let seeds: Vec<i64> = {
            let mut s: Vec<i64> = h.iter().chain(&l).flatten().map(|(s, _)| *s).collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let at = |side: &Option<Vec<(i64, f64)>>, op: &Operand, seed: i64| match side {
            None => Some(fixed(op)),
            Some(v) => v.iter().find(|(s, _)| *s == seed).map(|(_, x)| *x),
        };
        let mut pairs = Vec::new();
        let mut unpaired = Vec::new();
        for seed in seeds {
            match (at(&l, lo, seed), at(&h, hi, seed)) {
                (Some(a), Some(b)) => pairs.push((seed, a, b)),
                _ => unpaired.push(seed),
            }
        }
        let d: Vec<f64> = pairs.iter().map(|(_, a, b)| b - a).collect();
        Comparison {
            hi: hi.clone(),
            lo: lo.clone(),
            pairs,
            unpaired,
            test: mean_test(&d, self.alpha, self.power),
        }
    }
}

impl Claim {
    /// The point labels the claim compares.
    pub fn labels(&self) -> Vec<&str> {
        let pair = self.less.iter().chain(&self.greater).flatten();
        let points = pair.filter_map(|o| match o {
            Operand::Point(l) => Some(l.as_str()),
            Operand::Value(_) => None,
        });
        points
            .chain(self.interior_max.iter().flatten().map(String::as_str))
            .collect()
    }

    /// The verdict on checked labels.
    fn verdict(&self, cx: &Context, metric: &str) -> Checked {
        let (comparisons, note, verdict) = if let Some([a, b]) = &self.less {
            let c = cx.compare(b, a, metric);
            let v = Verdict::of(&c.test);
            (vec![c], None, v)
        } else if let Some([a, b]) = &self.greater {
            let c = cx.compare(a, b, metric);
            let v = Verdict::of(&c.test);
            (vec![c], None, v)
        } else {
            let pts = self.interior_max.as_ref().expect("checked on read");
            interior(cx, pts, metric)
        };
        Checked {
            claim: self.claim.clone(),
            metric: metric.to_string(),
            verdict,
            comparisons,
            note,
        }
    }
}

/// The maximum of an ordered sweep is interior: the interior point with the best mean beats both
/// ends, each paired by seed; the verdict is the weaker of the two.
fn interior(
    cx: &Context,
    pts: &[String],
    metric: &str,
) -> (Vec<Comparison>, Option<String>, Verdict) {
    let mean = |l: &String| {
        cx.g.point(l)
            .expect("labels checked")
            .stats(metric, cx.stat)
            .mean
    };
    let last = pts.len() - 1;
    let best = (1..last)
        .filter_map(|i| Some((i, mean(&pts[i])?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let Some((best, m)) = best else {
        let note = "no interior point has a finished seed".to_string();
        return (Vec::new(), Some(note), Verdict::NotAvailable);
    };
    let top = Operand::Point(pts[best].clone());
    let comparisons: Vec<Comparison> = [0, last]
        .iter()
        .map(|&j| cx.compare(&top, &Operand::Point(pts[j].clone()), metric))
        .collect();
    let verdict = comparisons
        .iter()
        .map(|c| Verdict::of(&c.test))
        .min()
        .expect("two comparisons");
    let note = format!("best interior point: `{}` (mean {})", pts[best], fmt_num(m));
    (comparisons, Some(note), verdict)
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
