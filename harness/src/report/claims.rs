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
//! **inconclusive** when the sign is right but within that seed noise, **does not hold** otherwise.
use super::{fmt_num, GridResults, Stat};
use crate::{Error, Result};
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

    /// Check every claim on a grid's results. Unknown point labels are bad input.
    pub fn check(&self, g: &GridResults, last_k: usize) -> Result<Vec<Checked>> {
        let stat = match self.stat {
            ClaimStat::Lastk => Stat::LastK(last_k),
            ClaimStat::Final => Stat::Final,
        };
        let mut out = Vec::new();
        for (i, c) in self.claims.iter().enumerate() {
            let metric = c.metric.clone().unwrap_or_else(|| self.metric.clone());
            let value = |label: &str| -> Result<(Option<f64>, f64)> {
                let p = g.points.iter().find(|p| p.label == label).ok_or_else(|| {
                    Error::Input(format!(
                        "{}: claims[{i}]: no grid point `{label}` (points: {})",
                        self.path.display(),
                        g.points
                            .iter()
                            .map(|p| p.label.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                let s = p.stats(&metric, stat);
                Ok((s.mean, s.ci95.unwrap_or(0.0)))
            };
            let show = |l: &str, v: (Option<f64>, f64)| match v.0 {
                Some(m) => format!("{l}: {} ± {}", fmt_num(m), fmt_num(v.1)),
                None => format!("{l}: –"),
            };
            let pairwise = |a: &str, b: &str, sign: f64| -> Result<(Verdict, String)> {
                let (va, vb) = (value(a)?, value(b)?);
                let ev = format!("{}; {}", show(a, va), show(b, vb));
                let (Some(ma), Some(mb)) = (va.0, vb.0) else {
                    return Ok((Verdict::NoData, ev));
                };
                let d = sign * (mb - ma);
                let noise = (va.1.powi(2) + vb.1.powi(2)).sqrt();
                let v = if d > noise {
                    Verdict::Holds
                } else if d > 0.0 {
                    Verdict::Inconclusive
                } else {
                    Verdict::DoesNotHold
                };
                Ok((v, ev))
            };
            let (verdict, evidence) = if let Some([a, b]) = &c.less {
                pairwise(a, b, 1.0)?
            } else if let Some([a, b]) = &c.greater {
                pairwise(a, b, -1.0)?
            } else {
                let pts = c.interior_max.as_ref().expect("checked on read");
                let vals: Vec<(Option<f64>, f64)> =
                    pts.iter().map(|l| value(l)).collect::<Result<_>>()?;
                let ev = pts
                    .iter()
                    .zip(&vals)
                    .map(|(l, v)| show(l, *v))
                    .collect::<Vec<_>>()
                    .join("; ");
                if vals.iter().any(|v| v.0.is_none()) {
                    (Verdict::NoData, ev)
                } else {
                    let means: Vec<f64> = vals.iter().map(|v| v.0.unwrap()).collect();
                    let best = (0..means.len())
                        .max_by(|&a, &b| means[a].total_cmp(&means[b]))
                        .unwrap();
                    let last = means.len() - 1;
                    let v = if best == 0 || best == last {
                        Verdict::DoesNotHold
                    } else {
                        let beats = |j: usize| {
                            means[best] - means[j]
                                > (vals[best].1.powi(2) + vals[j].1.powi(2)).sqrt()
                        };
                        if beats(0) && beats(last) {
                            Verdict::Holds
                        } else {
                            Verdict::Inconclusive
                        }
                    };
                    (v, format!("best: {}; {ev}", pts[best]))
                }
            };
            out.push(Checked {
                claim: c.claim.clone(),
                metric,
                verdict,
                evidence,
            });
        }
        Ok(out)
    }
}
