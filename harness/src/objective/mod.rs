//! RL objectives behind one trait. The training loop drives an [`Algorithm`] and knows nothing
//! algorithm-specific: how advantages are computed, the per-token policy loss, state that lives
//! across steps (DCMDP's λ) and the metrics each logs all sit behind it.
//!
//! Every objective is also a pure function of tensors with one signature,
//! `fn(&PolicyBatch, &Config) -> (loss, metrics)`: [`grpo::policy_loss`], [`ppo::ppo_loss`],
//! [`dppo::dppo_loss`], [`drpo::drpo_loss`], [`dcmdp::dcmdp_loss`]. No model, no I/O, so each is
//! tested on hand-made tensors (golden values in `tests/golden/`, verl's own functions in
//! `tests/fixtures/verl/`, property tests, f64 gradient checks). Shapes: token tensors are `[B, T]`
//! (B sequences, T response positions) with a float mask (1 on response tokens, 0 on padding);
//! they work in whatever float kind they are given. Entries outside the mask may hold anything
//! finite or not: the objectives zero them first.
//!
//! Every definition (metric, correction, aggregation, default) computes what verl 0.9.1 computes
//! under the same name; DPPO and DRPO follow their authors' code. Formulas, defaults and sources:
//! `docs/algorithms.md`.
//!
//! Micro-batches: give every micro-batch of a mini-batch the mini-batch's [`AggTotals`]
//! ([`Algorithm::agg_totals`], [`PolicyBatch::with_agg_totals`]); the micro-batch losses (and
//! gradients) then add up to the mini-batch's, and [`metrics::merge_micro_metrics`] merges their
//! metrics into the mini-batch's.
//!
//! Config (`algorithm:` in a run's YAML) picks an algorithm by `name`:
//! ```yaml
//! algorithm: { name: grpo, clip_ratio_high: 0.28, loss_agg_mode: token-mean,
//!              corrections: [ { type: tis, c: 2.0 } ] }
//! algorithm: { name: dcmdp, c: 0.0037, lambda_0: 0.1, eta_lambda: 1.0, form: loss }
//! ```
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use tch::{Kind, Tensor};

pub mod advantage;
pub mod agg;
pub mod batch_io;
pub mod correction;
pub mod dc_shapes;
pub mod dcmdp;
pub mod dppo;
pub mod drpo;
pub mod gae;
pub mod grpo;
pub mod kl;
pub mod metrics;
pub mod ppo;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod microbatch_tests;
#[cfg(test)]
mod testutil;
#[cfg(test)]
mod verl_fixtures;

pub use agg::{AggTotals, LossAgg, LossAggMode};
pub use correction::Correction;
pub use dcmdp::{DcForm, Dcmdp, DcmdpConfig};
pub use dppo::{Dppo, DppoConfig, DppoDivergence};
pub use drpo::{Drpo, DrpoConfig};
pub use grpo::{ClipParams, Grpo, GrpoConfig, PolicyLossConfig};
pub use kl::{KlEstimator, KlInReward, KlPenalty};
pub use ppo::{Ppo, PpoConfig};

/// A step's or mini-batch's metrics: verl-style names (`actor/…`, `critic/…`, `dc/…`, `dppo/…`).
pub type Metrics = BTreeMap<String, f64>;

/// Log-ratios are clamped to ±20 before `exp` (as verl does) so f32 never overflows.
pub(crate) const LOG_RATIO_CLAMP: f64 = 20.0;

/// One mini-batch (or one micro-batch of it) as the loss sees it. All token tensors are `[B, T]`;
/// only `logp` (and `values`) carry gradient, the rest are treated as constants.
#[derive(Clone, Copy)]
pub struct PolicyBatch<'a> {
    /// log π_θ of the sampled tokens (requires grad).
    pub logp: &'a Tensor,
    /// log π_old: the trainer's recomputation with the weights that generated the batch.
    pub old_logp: &'a Tensor,
    /// log μ: what the rollout engine reported.
    pub rollout_logp: &'a Tensor,
    /// Â per token.
    pub advantages: &'a Tensor,
    /// 1 on response tokens, 0 on padding.
    pub mask: &'a Tensor,
    /// log π_ref, needed when a KL penalty is configured ([`Algorithm::needs_ref_policy`]).
    pub ref_logp: Option<&'a Tensor>,
    /// The rollout's top-K log-probs `[B, T, K]` (DPPO top-K, [`Algorithm::needs_rollout_topk`]).
    pub rollout_topk_logp: Option<&'a Tensor>,
    /// log π_θ at the same top-K token ids `[B, T, K]`.
    pub topk_logp: Option<&'a Tensor>,
    /// PPO: current value predictions (requires grad), the rollout-time values and the returns.
    pub values: Option<&'a Tensor>,
    pub old_values: Option<&'a Tensor>,
    pub returns: Option<&'a Tensor>,
    /// The mini-batch's denominators when this batch is one of its micro-batches (unset: this
    /// batch's own).
    pub agg_totals: Option<AggTotals>,
}

impl<'a> PolicyBatch<'a> {
    pub fn new(
        logp: &'a Tensor,
        old_logp: &'a Tensor,
        rollout_logp: &'a Tensor,
        advantages: &'a Tensor,
        mask: &'a Tensor,
    ) -> Self {
        PolicyBatch {
            logp,
            old_logp,
            rollout_logp,
            advantages,
            mask,
            ref_logp: None,
            rollout_topk_logp: None,
            topk_logp: None,
            values: None,
            old_values: None,
            returns: None,
            agg_totals: None,
        }
    }

    pub fn with_ref(mut self, ref_logp: &'a Tensor) -> Self {
        self.ref_logp = Some(ref_logp);
        self
    }

    pub fn with_topk(mut self, rollout_topk_logp: &'a Tensor, topk_logp: &'a Tensor) -> Self {
        self.rollout_topk_logp = Some(rollout_topk_logp);
        self.topk_logp = Some(topk_logp);
        self
    }

    pub fn with_values(
        mut self,
        values: &'a Tensor,
        old_values: &'a Tensor,
        returns: &'a Tensor,
    ) -> Self {
        self.values = Some(values);
        self.old_values = Some(old_values);
        self.returns = Some(returns);
        self
    }

    /// Use a mini-batch's totals: this batch is one of its micro-batches.
    pub fn with_agg_totals(mut self, totals: AggTotals) -> Self {
        self.agg_totals = Some(totals);
        self
    }

    /// The denominators for a loss over `kept` (this batch's loss mask).
    pub fn totals(&self, kept: &Tensor) -> AggTotals {
        self.agg_totals
            .unwrap_or_else(|| AggTotals::of(self.mask, kept))
    }
}

/// What advantage estimation gets: sequence rewards `[B]`, grouped by `group_size` consecutive
/// rows (the responses to one prompt) or by explicit group ids, and for PPO the rollout-time
/// values `[B, T]` (plus π_old and π_ref when the KL penalty is folded into the reward).
pub struct AdvantageInput<'a> {
    pub rewards: &'a Tensor,
    pub mask: &'a Tensor,
    pub group_size: i64,
    /// Group id per row `[B]` (int); overrides `group_size` (groups may then be of any size).
    pub group_ids: Option<&'a Tensor>,
    pub values: Option<&'a Tensor>,
    pub old_logp: Option<&'a Tensor>,
    pub ref_logp: Option<&'a Tensor>,
}

impl<'a> AdvantageInput<'a> {
    pub fn new(rewards: &'a Tensor, mask: &'a Tensor, group_size: i64) -> Self {
        AdvantageInput {
            rewards,
            mask,
            group_size,
            group_ids: None,
            values: None,
            old_logp: None,
            ref_logp: None,
        }
    }

    pub fn with_group_ids(mut self, ids: &'a Tensor) -> Self {
        self.group_ids = Some(ids);
        self
    }

    pub fn with_values(mut self, values: &'a Tensor) -> Self {
        self.values = Some(values);
        self
    }

    pub fn with_logps(mut self, old_logp: &'a Tensor, ref_logp: &'a Tensor) -> Self {
        self.old_logp = Some(old_logp);
        self.ref_logp = Some(ref_logp);
        self
    }
}

/// Per-token advantages `[B, T]` (zero on padding) and, for PPO, the value targets.
pub struct Advantages {
    pub advantages: Tensor,
    pub returns: Option<Tensor>,
    pub metrics: Metrics,
}

impl Advantages {
    /// Group-normalised (GRPO) or, without the std division, Dr.GRPO advantages; no value targets.
    pub fn grouped(input: &AdvantageInput, norm_by_std: bool) -> Self {
        let advantages = match input.group_ids {
            Some(ids) => {
                advantage::group_advantages_by_id(input.rewards, ids, input.mask, norm_by_std)
            }
            None => advantage::group_advantages(
                input.rewards,
                input.mask,
                input.group_size,
                norm_by_std,
            ),
        };
        Advantages {
            advantages,
            returns: None,
            metrics: Metrics::new(),
        }
    }
}

/// Summary of a whole training step's batch, computed once by the loop after π_old is recomputed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// δ̄ = mean over response tokens of |π_old(o_t) − μ(o_t)| (probabilities).
    pub delta_bar: f64,
}

impl StepStats {
    pub fn new(delta_bar: f64) -> Self {
        StepStats { delta_bar }
    }

    /// δ̄ of a batch from log-probs `[B, T]` and its mask.
    pub fn from_logps(old_logp: &Tensor, rollout_logp: &Tensor, mask: &Tensor) -> Self {
        StepStats {
            delta_bar: mean_abs_prob_diff(old_logp, rollout_logp, mask),
        }
    }
}

/// The trainer-side part of an RL algorithm. The loop calls, per step: [`advantages`] once for the
/// step's batch, [`begin_step`] once, then per mini-batch [`agg_totals`] once and [`loss`] per
/// micro-batch (gradients accumulate, then one optimiser step), [`end_step`] once.
///
/// [`advantages`]: Algorithm::advantages
/// [`begin_step`]: Algorithm::begin_step
/// [`agg_totals`]: Algorithm::agg_totals
/// [`loss`]: Algorithm::loss
/// [`end_step`]: Algorithm::end_step
pub trait Algorithm: Send {
    /// The config name (`grpo`, `ppo`, `dppo`, `drpo`, `dcmdp`).
    fn name(&self) -> &'static str;

    /// Per-token advantages `[B, T]` for the step's batch.
    fn advantages(&mut self, input: &AdvantageInput) -> Advantages;

    /// Called once per step before any mini-batch loss, with the whole step's [`StepStats`]
    /// (DCMDP gates its penalty on this step's δ̄). Default: nothing.
    fn begin_step(&mut self, _step: &StepStats) {}

    /// A mini-batch's [`AggTotals`] (after this algorithm's rejections), to hand to each of its
    /// micro-batches with [`PolicyBatch::with_agg_totals`]. Default: no rejection.
    fn agg_totals(&self, _old_logp: &Tensor, _rollout_logp: &Tensor, mask: &Tensor) -> AggTotals {
        AggTotals::from_mask(mask)
    }

    /// Loss of one mini-batch or micro-batch (a scalar with gradient through `batch.logp`, and
    /// `batch.values` for PPO) and its metrics.
    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics);

    /// Called once per step after the optimiser updates, with the same [`StepStats`]; DCMDP's
    /// projected dual update happens here. Returns per-step metrics.
    fn end_step(&mut self, _step: &StepStats) -> Metrics {
        Metrics::new()
    }

    /// PPO needs a value model: the loop builds it (same trunk shape + scalar head) and fills
    /// [`AdvantageInput::values`] and [`PolicyBatch::with_values`].
    fn needs_value_model(&self) -> bool {
        false
    }

    /// DPPO top-K needs the rollout's top-K log-probs and π_θ at those ids.
    fn needs_rollout_topk(&self) -> bool {
        false
    }

    /// A KL penalty (loss or reward) needs π_ref's log-probs.
    fn needs_ref_policy(&self) -> bool {
        false
    }

    /// The diagnostics probe ([`loss_parts`](Algorithm::loss_parts)) is on. Default: off.
    fn wants_probe(&self) -> bool {
        false
    }

    /// The loss as named terms whose sum is [`loss`](Algorithm::loss)'s value, for the probe's
    /// per-term gradient norms (DCMDP: `policy` and, while the penalty is on, `penalty`).
    /// Default: the whole loss as `policy`.
    fn loss_parts(&self, batch: &PolicyBatch) -> Vec<(&'static str, Tensor)> {
        vec![("policy", self.loss(batch).0)]
    }

    /// State to save in checkpoints, as JSON (`{"lambda": …}` for DCMDP, `null` otherwise).
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restore [`state`](Algorithm::state).
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// One segment of a config key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySeg {
    Key(String),
    Index(usize),
}

/// One invalid value in `algorithm:`, with its key path relative to `algorithm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: Vec<KeySeg>,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(key: &str, message: String) -> Self {
        ConfigProblem {
            path: vec![KeySeg::Key(key.into())],
            message,
        }
    }

    /// The same problem inside `key` (e.g. `coef` → `kl.coef`).
    pub fn under(mut self, key: &str) -> Self {
        self.path.insert(0, KeySeg::Key(key.into()));
        self
    }

    /// The same problem inside item `i` of the list `key` (e.g. `c` → `corrections[1].c`).
    pub fn under_item(mut self, key: &str, i: usize) -> Self {
        self.path.insert(0, KeySeg::Index(i));
        self.path.insert(0, KeySeg::Key(key.into()));
        self
    }

    /// The path as text: keys joined by `.`, list indices as `[i]`.
    pub fn key(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                KeySeg::Key(k) if out.is_empty() => out.push_str(k),
                KeySeg::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                KeySeg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key(), self.message)
    }
}

/// `algorithm:` in a run config, selected by `name`. Unknown keys are rejected when it is read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum AlgorithmConfig {
    Grpo(GrpoConfig),
    Ppo(PpoConfig),
    Dppo(DppoConfig),
    Drpo(DrpoConfig),
    Dcmdp(DcmdpConfig),
}

const ALGORITHM_NAMES: &[&str] = &["grpo", "ppo", "dppo", "drpo", "dcmdp", "dc-grpo"];

impl<'de> Deserialize<'de> for AlgorithmConfig {
    /// By `name` (`dc-grpo` is `dcmdp`); the rest of the map must hold only the named
    /// algorithm's keys (the flattened policy-loss keys make serde's own check unusable).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = serde_yaml::Mapping::deserialize(d)?;
        let name = map
            .remove("name")
            .ok_or_else(|| D::Error::missing_field("name"))?;
        let name = name
            .as_str()
            .ok_or_else(|| D::Error::custom("`name` must be a string"))?;
        match name {
            "grpo" => strict(map).map(AlgorithmConfig::Grpo),
            "ppo" => strict(map).map(AlgorithmConfig::Ppo),
            "dppo" => strict(map).map(AlgorithmConfig::Dppo),
            "drpo" => strict(map).map(AlgorithmConfig::Drpo),
            "dcmdp" | "dc-grpo" => {
                strict_with(map, dcmdp::KEYS_OMITTED_AT_DEFAULT).map(AlgorithmConfig::Dcmdp)
            }
            other => Err(D::Error::unknown_variant(other, ALGORITHM_NAMES)),
        }
    }
}

/// Read `T` from `map`, rejecting any key its serialised default does not have.
fn strict<T, E>(map: serde_yaml::Mapping) -> Result<T, E>
where
    T: DeserializeOwned + Serialize + Default,
    E: serde::de::Error,
{
    strict_with(map, &[])
}

/// [`strict`], also accepting `omitted`: keys that `T` leaves out when serialising its defaults
/// (so that adding them did not change existing run ids).
fn strict_with<T, E>(map: serde_yaml::Mapping, omitted: &[&str]) -> Result<T, E>
where
    T: DeserializeOwned + Serialize + Default,
    E: serde::de::Error,
{
    let mut known = match serde_yaml::to_value(T::default()) {
        Ok(serde_yaml::Value::Mapping(m)) => m,
        _ => unreachable!("algorithm configs serialise to maps"),
    };
    for k in omitted {
        known.insert((*k).into(), serde_yaml::Value::Null);
    }
    for key in map.keys() {
        if !known.contains_key(key) {
            let names: Vec<String> = known
                .keys()
                .filter_map(|k| k.as_str().map(|k| format!("`{k}`")))
                .collect();
            let key = key
                .as_str()
                .map_or_else(|| format!("{key:?}"), str::to_string);
            return Err(E::custom(format!(
                "unknown field `{key}`, expected one of {}",
                names.join(", ")
            )));
        }
    }
    let read = |m: serde_yaml::Mapping| {
        serde_path_to_error::deserialize::<_, T>(serde_yaml::Value::Mapping(m))
    };
    read(map.clone()).map_err(|e| {
        // Flattened keys lose serde's path: find the key whose value alone fails.
        let path = e.path().to_string();
        let key = (path == ".").then(|| {
            map.iter().find_map(|(k, v)| {
                let one = serde_yaml::Mapping::from_iter([(k.clone(), v.clone())]);
                read(one).err().and_then(|_| k.as_str().map(str::to_string))
            })
        });
        let path = key.flatten().unwrap_or(path);
        let inner = e.into_inner();
        if path == "." {
            E::custom(inner)
        } else {
            E::custom(format!("{path}: {inner}"))
        }
    })
}

impl Default for AlgorithmConfig {
    fn default() -> Self {
        AlgorithmConfig::Grpo(GrpoConfig::default())
    }
}

impl AlgorithmConfig {
    pub fn name(&self) -> &'static str {
        match self {
            AlgorithmConfig::Grpo(_) => "grpo",
            AlgorithmConfig::Ppo(_) => "ppo",
            AlgorithmConfig::Dppo(_) => "dppo",
            AlgorithmConfig::Drpo(_) => "drpo",
            AlgorithmConfig::Dcmdp(_) => "dcmdp",
        }
    }

    /// Every invalid value, each with its key path relative to `algorithm`. Empty: the config is
    /// valid and [`build_algorithm`] builds it.
    pub fn check(&self) -> Vec<ConfigProblem> {
        match self {
            AlgorithmConfig::Grpo(c) => c.policy.check(),
            AlgorithmConfig::Ppo(c) => c.check(),
            AlgorithmConfig::Dppo(c) => c.check(),
            AlgorithmConfig::Drpo(c) => c.check(),
            AlgorithmConfig::Dcmdp(c) => c.check(),
        }
    }

    /// The mismatch corrections the policy loss applies (none for `dppo` and `drpo`).
    pub fn corrections(&self) -> &[Correction] {
        match self {
            AlgorithmConfig::Grpo(c) => &c.policy.corrections,
            AlgorithmConfig::Ppo(c) => &c.policy.corrections,
            AlgorithmConfig::Dcmdp(c) => &c.policy.corrections,
            AlgorithmConfig::Dppo(_) | AlgorithmConfig::Drpo(_) => &[],
        }
    }
}

/// Build the algorithm a config names. The config must be checked ([`AlgorithmConfig::check`]
/// empty): an invalid one builds, but its losses may be NaN or panic.
pub fn build_algorithm(cfg: &AlgorithmConfig) -> Box<dyn Algorithm> {
    match cfg {
        AlgorithmConfig::Grpo(c) => Box::new(Grpo::new(c.clone())),
        AlgorithmConfig::Ppo(c) => Box::new(Ppo::new(c.clone())),
        AlgorithmConfig::Dppo(c) => Box::new(Dppo::new(c.clone())),
        AlgorithmConfig::Drpo(c) => Box::new(Drpo::new(c.clone())),
        AlgorithmConfig::Dcmdp(c) => Box::new(Dcmdp::new(c.clone())),
    }
}

// ---- small tensor helpers shared by the objectives ----

/// Bool `[B, T]`: true on response tokens.
pub(crate) fn valid(mask: &Tensor) -> Tensor {
    mask.gt(0.0)
}

/// `x` with every entry outside `valid` set to 0, so garbage (even NaN) in padding never reaches
/// a loss or a gradient.
pub(crate) fn zero_pad(x: &Tensor, valid: &Tensor) -> Tensor {
    x.masked_fill(&valid.logical_not(), 0.0)
}

pub(crate) fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// Σ of `x` (any kind, bool included) over the mask, in f64, no gradient; garbage outside the
/// mask is ignored.
pub(crate) fn sum_over(x: &Tensor, mask: &Tensor) -> f64 {
    let m = mask.detach().to_kind(Kind::Double);
    let x = zero_pad(&x.detach().to_kind(Kind::Double), &valid(&m));
    scalar(&(x * &m).sum(Kind::Double))
}

/// Mean of `x` over the mask (0 when the mask is empty), in f64 and without gradient; entries
/// outside the mask may hold anything (even NaN). The one masked mean of the crate.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> f64 {
    let n = scalar(&mask.detach().to_kind(Kind::Double).sum(Kind::Double));
    if n > 0.0 {
        sum_over(x, mask) / n
    } else {
        0.0
    }
}

/// Max of `x` over the mask (0 when the mask is empty); for metrics.
pub(crate) fn masked_max(x: &Tensor, mask: &Tensor) -> f64 {
    let sel = x.detach().to_kind(Kind::Double).masked_select(&valid(mask));
    if sel.numel() == 0 {
        0.0
    } else {
        scalar(&sel.max())
    }
}

/// Mean over response tokens of |exp(a) − exp(b)|: DCMDP's discrepancy δ̄.
pub(crate) fn mean_abs_prob_diff(logp_a: &Tensor, logp_b: &Tensor, mask: &Tensor) -> f64 {
    let v = valid(mask);
    let a = zero_pad(&logp_a.detach(), &v).exp();
    let b = zero_pad(&logp_b.detach(), &v).exp();
    masked_mean(&(a - b).abs(), mask)
}

pub(crate) fn bool_to(t: &Tensor, like: &Tensor) -> Tensor {
    t.to_kind(like.kind())
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn configs_parse_by_name_with_defaults() {
        let c: AlgorithmConfig = serde_json::from_value(json!({"name": "grpo"})).unwrap();
        assert_eq!(c, AlgorithmConfig::Grpo(GrpoConfig::default()));
        let c: AlgorithmConfig = serde_json::from_value(json!({"name": "dc-grpo"})).unwrap();
        assert_eq!(c.name(), "dcmdp");
        for name in ["grpo", "ppo", "dppo", "drpo", "dcmdp"] {
            let c: AlgorithmConfig = serde_json::from_value(json!({ "name": name })).unwrap();
            assert_eq!(c.name(), name);
            assert!(c.check().is_empty());
            assert_eq!(build_algorithm(&c).name(), name);
            // Round trip through serde (JSON and YAML) keeps every value.
            let back: AlgorithmConfig =
                serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
            assert_eq!(back, c);
            let yaml = serde_yaml::to_string(&c).unwrap();
            assert_eq!(serde_yaml::from_str::<AlgorithmConfig>(&yaml).unwrap(), c);
        }
        // The shared policy-loss keys reach every algorithm that has them.
        let text =
            "{name: ppo, clip_ratio_high: 0.28, loss_agg_mode: seq-mean-token-sum, lam: 0.9}";
        let AlgorithmConfig::Ppo(p) = serde_yaml::from_str(text).unwrap() else {
            panic!()
        };
        assert_eq!(p.policy.clip_ratio_high, 0.28);
        assert_eq!(p.policy.loss_agg_mode, LossAggMode::SeqMeanTokenSum);
        assert_eq!(p.lam, 0.9);
    }

    #[test]
    fn verl_defaults() {
        let AlgorithmConfig::Ppo(p) = serde_json::from_value(json!({"name": "ppo"})).unwrap()
        else {
            panic!()
        };
        assert_eq!((p.gamma, p.lam), (1.0, 1.0));
        let AlgorithmConfig::Ppo(p) =
            serde_json::from_value(json!({"name": "ppo", "kl_in_reward": {}})).unwrap()
        else {
            panic!()
        };
        assert_eq!(p.kl_in_reward.unwrap().estimator, KlEstimator::K1);
        let d = DppoConfig::default();
        assert!(!d.norm_adv_by_std);
        assert_eq!(d.loss_agg_mode, LossAggMode::SeqMeanTokenSumNorm);
        let r = DrpoConfig::default();
        assert_eq!((r.delta, r.norm_adv_by_std), (12.5, false));
    }

    #[test]
    fn unknown_fields_and_names_are_rejected() {
        for (bad, key) in [
            (json!({"name": "grpo", "clip_ratio": 0.2}), "clip_ratio"),
            (json!({"name": "dcmdp", "lambda": 0.1}), "lambda"),
            (json!({"name": "ppo", "gae_lambda": 0.9}), "gae_lambda"),
            (json!({"name": "dppo", "divergence": "tv"}), "tv"),
            (json!({"name": "drpo", "delta_tv": 0.1}), "delta_tv"),
            (
                json!({"name": "grpo", "corrections": [{"type": "tis", "C": 2.0}]}),
                "C",
            ),
            (
                json!({"name": "grpo", "corrections": [{"type": "gspo"}]}),
                "gspo",
            ),
            (
                json!({"name": "grpo", "kl": {"coef": 0.1, "beta": 1}}),
                "beta",
            ),
            (json!({"name": "reinforce"}), "reinforce"),
            (json!({"clip_ratio_low": 0.1}), "name"),
        ] {
            let e = serde_json::from_value::<AlgorithmConfig>(bad.clone())
                .expect_err(&bad.to_string())
                .to_string();
            assert!(e.contains(&format!("`{key}`")), "{bad}: {e}");
        }
        let e = serde_yaml::from_str::<AlgorithmConfig>("{name: grpo, clip_ratio_c: abc}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("clip_ratio_c"), "{e}");
    }

    #[test]
    fn check_lists_every_problem_with_its_key() {
        for (bad, keys) in [
            (
                json!({"name": "grpo", "clip_ratio_low": 1.5, "clip_ratio_c": 0.5}),
                vec!["clip_ratio_low", "clip_ratio_c"],
            ),
            (
                json!({"name": "grpo", "loss_agg_norm": 0.0}),
                vec!["loss_agg_norm"],
            ),
            (
                json!({"name": "ppo", "lam": 1.5, "cliprange_value": -1.0}),
                vec!["lam", "cliprange_value"],
            ),
            (
                json!({"name": "ppo", "kl_in_reward": {"coef": -1}}),
                vec!["kl_in_reward.coef"],
            ),
            (
                json!({"name": "dppo", "delta": -0.1, "is_cap": 0.0}),
                vec!["delta", "is_cap"],
            ),
            (
                json!({"name": "dppo", "delta_high": 0.0}),
                vec!["delta_high"],
            ),
            (json!({"name": "drpo", "delta": 0.0}), vec!["delta"]),
            (
                json!({"name": "dcmdp", "lambda_0": 2.0, "lambda_max": 1.0}),
                vec!["lambda_0"],
            ),
            (
                json!({"name": "dcmdp", "c": -0.1, "eta_lambda": -1.0}),
                vec!["c", "eta_lambda"],
            ),
            (
                json!({"name": "grpo", "corrections": [{"type": "tis"}, {"type": "icepop", "low": 5.0, "high": 0.5}]}),
                vec!["corrections[1].low"],
            ),
            (
                json!({"name": "dcmdp", "kl": {"coef": -1.0, "estimator": "k3"}}),
                vec!["kl.coef"],
            ),
        ] {
            let c: AlgorithmConfig = serde_json::from_value(bad.clone()).unwrap();
            let got: Vec<String> = c.check().iter().map(ConfigProblem::key).collect();
            assert_eq!(got, keys, "{bad}");
        }
        let p = ConfigProblem::new("c", "must be positive".into()).under_item("corrections", 2);
        assert_eq!(
            p.path,
            [
                KeySeg::Key("corrections".into()),
                KeySeg::Index(2),
                KeySeg::Key("c".into())
            ]
        );
        assert_eq!(p.to_string(), "corrections[2].c: must be positive");
    }

    #[test]
    fn needs_flags() {
        let build = |v: serde_json::Value| {
            build_algorithm(&serde_json::from_value::<AlgorithmConfig>(v).unwrap())
        };
        assert!(build(json!({"name": "ppo"})).needs_value_model());
        assert!(!build(json!({"name": "grpo"})).needs_value_model());
        assert!(build(json!({"name": "dppo", "divergence": "topk-kl"})).needs_rollout_topk());
        assert!(!build(json!({"name": "dppo"})).needs_rollout_topk());
        assert!(build(json!({"name": "grpo", "kl": {"coef": 0.1}})).needs_ref_policy());
        assert!(build(json!({"name": "ppo", "kl_in_reward": {"coef": 0.1}})).needs_ref_policy());
        assert!(!build(json!({"name": "dcmdp"})).needs_ref_policy());
    }

    /// Every algorithm's full inputs for one case (top-K and values derived from it).
    pub(super) struct Full {
        pub(super) logp: Tensor,
        pub(super) old: Tensor,
        pub(super) mu: Tensor,
        pub(super) ref_: Tensor,
        pub(super) adv: Tensor,
        pub(super) mask: Tensor,
        pub(super) mu_topk: Tensor,
        pub(super) pi_topk: Tensor,
        pub(super) values: Tensor,
        pub(super) old_values: Tensor,
        pub(super) returns: Tensor,
    }

    impl Full {
        pub(super) fn new(x: &PolicyTensors) -> Full {
            let topk = |lp: &Tensor| {
                Tensor::stack(
                    &[
                        lp.shallow_clone(),
                        lp + 0.3f64.ln(),
                        lp + 0.1f64.ln() + 0.05,
                    ],
                    -1,
                )
            };
            Full {
                logp: x.logp.copy(),
                old: x.old.copy(),
                mu: x.mu.copy(),
                ref_: x.ref_.copy(),
                adv: x.adv.copy(),
                mask: x.mask.copy(),
                mu_topk: topk(&x.mu),
                pi_topk: topk(&x.logp),
                values: &x.adv * 0.5 + 0.1,
                old_values: &x.adv * 0.2,
                returns: &x.adv * 0.7 - 0.2,
            }
        }

        pub(super) fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> Full {
            Full {
                logp: f(&self.logp),
                old: f(&self.old),
                mu: f(&self.mu),
                ref_: f(&self.ref_),
                adv: f(&self.adv),
                mask: f(&self.mask),
                mu_topk: f(&self.mu_topk),
                pi_topk: f(&self.pi_topk),
                values: f(&self.values),
                old_values: f(&self.old_values),
                returns: f(&self.returns),
            }
        }

        /// `pad_t` extra positions and `pad_rows` extra sequences full of `garbage`.
        fn padded(&self, pad_t: i64, pad_rows: i64, garbage: f64) -> Full {
            let grow = |x: &Tensor| {
                let mut size = x.size();
                size[1] = pad_t;
                let x = Tensor::cat(
                    &[
                        x.shallow_clone(),
                        x.new_full(&size, garbage, (x.kind(), x.device())),
                    ],
                    1,
                );
                let mut size = x.size();
                size[0] = pad_rows;
                Tensor::cat(
                    &[
                        x.shallow_clone(),
                        x.new_full(&size, garbage, (x.kind(), x.device())),
                    ],
                    0,
                )
            };
            let mut p = self.map(grow);
            p.mask = pad(&self.mask, &self.mask, pad_t, pad_rows, 0.0).1;
            p
        }

        /// Loss, gradient w.r.t. log π_θ and (PPO) w.r.t. the values.
        pub(super) fn run(&self, algo: &dyn Algorithm) -> (Tensor, Tensor, Option<Tensor>) {
            let logp = self.logp.detach().copy().set_requires_grad(true);
            let values = self.values.detach().copy().set_requires_grad(true);
            let batch = PolicyBatch::new(&logp, &self.old, &self.mu, &self.adv, &self.mask)
                .with_ref(&self.ref_)
                .with_topk(&self.mu_topk, &self.pi_topk)
                .with_values(&values, &self.old_values, &self.returns);
            let (loss, _) = algo.loss(&batch);
            loss.backward();
            let gv = algo.needs_value_model().then(|| values.grad());
            (loss.detach(), logp.grad(), gv)
        }
    }

    pub(super) fn every_algorithm() -> Vec<Box<dyn Algorithm>> {
        [
            json!({"name": "grpo", "kl": {"coef": 0.2}, "loss_agg_mode": "seq-mean-token-mean",
                   "corrections": [{"type": "tis"}, {"type": "icepop", "low": 0.8, "high": 1.3}]}),
            json!({"name": "grpo", "loss_agg_mode": "seq-mean-token-sum-norm", "loss_agg_norm": 8.0,
                   "corrections": [{"type": "seq-mis", "c": 1.5}, {"type": "geo-rs", "lower": 0.9, "upper": 1.1}]}),
            json!({"name": "grpo", "kl": {"coef": 0.1, "estimator": "k2"}, "loss_agg_mode": "seq-mean-token-sum",
                   "corrections": [{"type": "mis", "c": 1.5}, {"type": "seq-tis"}]}),
            json!({"name": "ppo", "loss_agg_mode": "seq-mean-token-sum", "vf_coef": 0.5}),
            json!({"name": "ppo", "loss_agg_mode": "token-mean", "kl": {"coef": 0.05},
                   "corrections": [{"type": "mis", "c": 1.5}]}),
            json!({"name": "dppo", "loss_agg_norm": 8.0}),
            json!({"name": "dppo", "divergence": "binary-kl", "loss_agg_mode": "token-mean"}),
            json!({"name": "dppo", "divergence": "topk-tv", "loss_agg_norm": 8.0}),
            json!({"name": "dppo", "divergence": "topk-kl", "delta": 0.02, "loss_agg_norm": 8.0}),
            json!({"name": "drpo", "loss_agg_norm": 8.0}),
            json!({"name": "drpo", "delta": 0.1, "mu_weighted": false, "loss_agg_mode": "seq-mean-token-mean"}),
            json!({"name": "dcmdp", "lambda_0": 0.5, "c": 0.0}),
            json!({"name": "dcmdp", "lambda_0": 0.5, "gating": false, "form": "advantage",
                   "loss_agg_mode": "seq-mean-token-mean", "corrections": [{"type": "geo-rs", "upper": 1.5}]}),
            json!({"name": "dcmdp", "lambda_0": 0.5, "c": 0.0, "loss_agg_mode": "seq-mean-token-sum-norm",
                   "loss_agg_norm": 6.0, "corrections": [{"type": "mis", "c": 1.5}]}),
        ]
        .into_iter()
        .map(|v| build_algorithm(&serde_json::from_value(v).unwrap()))
        .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Extra padded positions and sequences holding NaN or any garbage change no loss and no
        /// gradient on real tokens, and get exactly zero gradient themselves.
        #[test]
        fn every_algorithm_ignores_padding(case in policy_case(3, 5, 0.6), pad_t in 1i64..3, pad_rows in 0i64..2,
                                           garbage in prop_oneof![Just(f64::NAN), -40.0f64..40.0]) {
            let full = Full::new(&case.tensors());
            let padded = full.padded(pad_t, pad_rows, garbage);
            let pad_mask = padded.mask.eq(0.0);
            for algo in every_algorithm() {
                let (l, g, gv) = full.run(algo.as_ref());
                let (lp, gp, gvp) = padded.run(algo.as_ref());
                let (l, lp) = (l.double_value(&[]), lp.double_value(&[]));
                prop_assert!((l - lp).abs() <= 1e-12 * (1.0 + l.abs()), "{}: {l} vs {lp}", algo.name());
                let inner = |t: &Tensor| t.narrow(0, 0, case.b).narrow(1, 0, case.t);
                prop_assert!(max_abs_diff(&inner(&gp), &g) <= 1e-12, "{}", algo.name());
                prop_assert!(to_vec(&gp.masked_select(&pad_mask)).iter().all(|x| *x == 0.0));
                if let (Some(gv), Some(gvp)) = (gv, gvp) {
                    prop_assert!(max_abs_diff(&inner(&gvp), &gv) <= 1e-12);
                    prop_assert!(to_vec(&gvp.masked_select(&pad_mask)).iter().all(|x| *x == 0.0));
                }
            }
        }

        /// f32 inputs give f32 losses and gradients that agree with f64 (and CUDA with the CPU,
        /// when a GPU is present).
        #[test]
        fn every_algorithm_keeps_the_float_kind(case in policy_case(3, 5, 0.6)) {
            let full = Full::new(&case.tensors());
            let single = full.map(|t| t.to_kind(Kind::Float));
            let cuda = (crate::runtime::cuda_device_count() > 0).then(|| full.map(|t| t.to_device(tch::Device::Cuda(0))));
            for algo in every_algorithm() {
                let (l, g, _) = full.run(algo.as_ref());
                let (ls, gs, _) = single.run(algo.as_ref());
                prop_assert_eq!(ls.kind(), Kind::Float);
                prop_assert_eq!(gs.kind(), Kind::Float);
                let l = l.double_value(&[]);
                prop_assert!((ls.double_value(&[]) - l).abs() <= 1e-4 * (1.0 + l.abs()), "{}", algo.name());
                prop_assert!(max_abs_diff(&gs, &g) <= 1e-4 * (1.0 + g.abs().max().double_value(&[])));
                if let Some(c) = &cuda {
                    let (lc, gc, _) = c.run(algo.as_ref());
                    prop_assert!((lc.double_value(&[]) - l).abs() <= 1e-9 * (1.0 + l.abs()));
                    prop_assert!(max_abs_diff(&gc.to_device(tch::Device::Cpu), &g) <= 1e-9);
                }
            }
        }
    }

    #[test]
    fn step_stats_delta_bar() {
        let old = Tensor::from_slice(&[0.5f64.ln(), 0.2f64.ln(), 0.0]).view([1, 3]);
        let mu = Tensor::from_slice(&[0.4f64.ln(), 0.25f64.ln(), f64::NAN]).view([1, 3]);
        let mask = Tensor::from_slice(&[1.0f64, 1.0, 0.0]).view([1, 3]);
        let s = StepStats::from_logps(&old, &mu, &mask);
        assert!((s.delta_bar - 0.075).abs() < 1e-12);
    }
}
