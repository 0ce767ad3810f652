//! Claims a report checks against a grid's results (`experiments/claims/<grid>.yaml`), so that the
//! verdicts in a committed report come from the committed grid and code, not from hand edits.
//!
//! ```yaml
//! metric: eval/addition/avg@4      # default metric of every claim
//! stat: lastk                      # lastk (mean of the last k logged values) or final
//! claims:
//!   - claim: Mismatch lowers GRPO's accuracy
//!     less: [grpo/weight_quant=fp8-e4m3, grpo/weight_quant=none]   # mean(a) < mean(b)
//!   - claim: DC-GRPO beats GRPO under the same mismatch
//!     greater: [dcmdp/weight_quant=fp8-e4m3, grpo/weight_quant=fp8-e4m3]
//!   - claim: An interior tolerance c is best
//!     interior_max: [dcmdp/c=0.001, dcmdp/c=0.004, dcmdp/c=0.016]    # ordered sweep
//! ```
//! Points are named by their labels (the report's table). Verdicts: **holds** when the difference
//! has the claimed sign and exceeds the combined 95 % half-widths `√(ci_a² + ci_b²)`,
//! **inconclusive** when the sign is right but within that seed noise, **does not hold** otherwise,
//! **no data** while a point has no finished seed. A label the grid lacks, or a metric no run
//! logs, is bad input: the report is not written.
use super::{fmt_num, GridResults, Stat};
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    #[serde(skip)]
    pub path: PathBuf,
    pub metric: String,
    #[serde(default = "default_stat")]
    pub stat: ClaimStat,
    pub claims: Vec<Claim>,
}

fn default_stat() -> ClaimStat {
    ClaimStat::Lastk
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub claim: String,
    /// Overrides the file's metric.
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub less: Option<[String; 2]>,
    #[serde(default)]
    pub greater: Option<[String; 2]>,
    #[serde(default)]
    pub interior_max: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    Inconclusive,
    DoesNotHold,
    /// A point has no value (not run, or every seed failed).
    NoData,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Holds => "**holds**",
            Verdict::Inconclusive => "inconclusive (right direction, within seed noise)",
            Verdict::DoesNotHold => "**does not hold**",
            Verdict::NoData => "no data",
        }
    }
}

/// A checked claim: the verdict and the evidence as text.
#[derive(Debug, Clone)]
pub struct Checked {
    pub claim: String,
    pub metric: String,
    pub verdict: Verdict,
    pub evidence: String,
}

impl Claims {
    pub fn read(path: &Path) -> Result<Claims> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut c: Claims = serde_yaml::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        c.path = path.to_path_buf();
        for (i, cl) in c.claims.iter().enumerate() {
            let kinds = cl.less.is_some() as u8
                + cl.greater.is_some() as u8
                + cl.interior_max.is_some() as u8;
            if kinds != 1 {
                return Err(Error::Input(format!(
                    "{}: claims[{i}]: give exactly one of `less`, `greater`, `interior_max`",
                    path.display()
                )));
            }
            if cl.interior_max.as_ref().is_some_and(|v| v.len() < 3) {
                return Err(Error::Input(format!(
                    "{}: claims[{i}].interior_max: needs at least 3 points",
                    path.display()
                )));
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
        let stat = match self.stat {
            ClaimStat::Lastk => Stat::LastK(last_k),
            ClaimStat::Final => Stat::Final,
        };
        Ok(self
            .claims
            .par_iter()
            .map(|c| c.verdict(g, self.metric_of(c), stat))
            .collect())
    }
}

/// A point's mean and 95 % half-width (0 when n < 2) of the claim's statistic.
type Value = (Option<f64>, f64);

fn show(label: &str, v: Value) -> String {
    match v.0 {
        Some(m) => format!("{label}: {} ± {}", fmt_num(m), fmt_num(v.1)),
        None => format!("{label}: –"),
    }
}

impl Claim {
    /// The point labels the claim compares.
    pub fn labels(&self) -> Vec<&str> {
        let pair = self.less.iter().chain(&self.greater).flatten();
        pair.chain(self.interior_max.iter().flatten())
            .map(String::as_str)
            .collect()
    }

    /// The verdict on checked labels.
    fn verdict(&self, g: &GridResults, metric: &str, stat: Stat) -> Checked {
        let value = |label: &str| -> Value {
            let s = g.point(label).expect("labels checked").stats(metric, stat);
            (s.mean, s.ci95.unwrap_or(0.0))
        };
        let (verdict, evidence) = if let Some([a, b]) = &self.less {
            pairwise((a, value(a)), (b, value(b)), 1.0)
        } else if let Some([a, b]) = &self.greater {
            pairwise((a, value(a)), (b, value(b)), -1.0)
        } else {
            let pts = self.interior_max.as_ref().expect("checked on read");
            interior(pts, &pts.iter().map(|l| value(l)).collect::<Vec<_>>())
        };
        Checked {
            claim: self.claim.clone(),
            metric: metric.to_string(),
            verdict,
            evidence,
        }
    }
}

/// `mean(a) < mean(b)` (sign 1) or `>` (sign −1), against the combined half-widths.
fn pairwise(a: (&str, Value), b: (&str, Value), sign: f64) -> (Verdict, String) {
    let ev = format!("{}; {}", show(a.0, a.1), show(b.0, b.1));
    let (Some(ma), Some(mb)) = (a.1 .0, b.1 .0) else {
        return (Verdict::NoData, ev);
    };
    let d = sign * (mb - ma);
    let noise = (a.1 .1.powi(2) + b.1 .1.powi(2)).sqrt();
    let v = if d > noise {
        Verdict::Holds
    } else if d > 0.0 {
        Verdict::Inconclusive
    } else {
        Verdict::DoesNotHold
    };
    (v, ev)
}

/// The maximum of an ordered sweep is interior, and beats both ends beyond the seed noise.
fn interior(pts: &[String], vals: &[Value]) -> (Verdict, String) {
    let ev = pts
        .iter()
        .zip(vals)
        .map(|(l, v)| show(l, *v))
        .collect::<Vec<_>>()
        .join("; ");
    let Some(means) = vals.iter().map(|v| v.0).collect::<Option<Vec<f64>>>() else {
        return (Verdict::NoData, ev);
    };
    let best = (0..means.len())
        .max_by(|&a, &b| means[a].total_cmp(&means[b]))
        .expect("at least 3 points");
    let last = means.len() - 1;
    let beats =
        |j: usize| means[best] - means[j] > (vals[best].1.powi(2) + vals[j].1.powi(2)).sqrt();
    let v = if best == 0 || best == last {
        Verdict::DoesNotHold
    } else if beats(0) && beats(last) {
        Verdict::Holds
    } else {
        Verdict::Inconclusive
    };
    (v, format!("best: {}; {ev}", pts[best]))
}
