//! Merging the metrics of a mini-batch's micro-batches into the mini-batch's.
//!
//! With the mini-batch's [`AggTotals`](super::AggTotals) every loss-side metric of a micro-batch
//! is its share of the mini-batch's value: aggregated losses (`actor/pg_loss`, `actor/kl_loss`,
//! `critic/vf_loss`, `drpo/penalty`, `dc/penalty`) because the aggregation is linear, and the
//! means (`actor/pg_clipfrac`, `actor/ppo_kl`, `critic/vf_clipfrac`, `dppo/div_mean`, …) because
//! they are sums over the micro-batch's tokens divided by the mini-batch's token count. So:
//!
//! - keys ending in `_max` merge by max, keys ending in `_min` by min;
//! - settings and state reported alongside (`actor/kl_coef`, `dc/lambda`, `dc/gate`) are the same
//!   in every part and kept as they are;
//! - every other key is summed.
//!
//! The merged metrics equal the unsplit mini-batch's (up to rounding).
use super::Metrics;

/// How one metric merges across micro-batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeRule {
    Sum,
    Max,
    Min,
    /// The same value in every part.
    Same,
}

/// Reported settings and state: equal in every micro-batch of a step.
const SAME: &[&str] = &["actor/kl_coef", "dc/lambda", "dc/gate"];

pub fn merge_rule(key: &str) -> MergeRule {
    if SAME.contains(&key) {
        MergeRule::Same
    } else if key.ends_with("_max") {
        MergeRule::Max
    } else if key.ends_with("_min") {
        MergeRule::Min
    } else {
        MergeRule::Sum
    }
}

/// Fold one micro-batch's metrics into `acc` (start from an empty map).
pub fn merge_micro_metrics(acc: &mut Metrics, part: &Metrics) {
    for (k, &v) in part {
        match acc.get_mut(k) {
            None => {
                acc.insert(k.clone(), v);
            }
            Some(a) => match merge_rule(k) {
                MergeRule::Sum => *a += v,
                MergeRule::Max => *a = a.max(v),
                MergeRule::Min => *a = a.min(v),
                MergeRule::Same => *a = v,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(merge_rule("actor/pg_loss"), MergeRule::Sum);
        assert_eq!(merge_rule("dppo/div_max"), MergeRule::Max);
        assert_eq!(merge_rule("rollout_corr/rollout_is_min"), MergeRule::Min);
        assert_eq!(merge_rule("dc/lambda"), MergeRule::Same);
        let mut acc = Metrics::new();
        for (loss, mx, lam) in [(1.0, 3.0, 0.5), (2.0, 1.0, 0.5)] {
            let part = Metrics::from([
                ("actor/pg_loss".to_string(), loss),
                ("dppo/div_max".to_string(), mx),
                ("dc/lambda".to_string(), lam),
            ]);
            merge_micro_metrics(&mut acc, &part);
        }
        assert_eq!(acc["actor/pg_loss"], 3.0);
        assert_eq!(acc["dppo/div_max"], 3.0);
        assert_eq!(acc["dc/lambda"], 0.5);
    }
}
