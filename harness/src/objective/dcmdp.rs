//! `dcmdp` (DC-GRPO): GRPO under a constraint on the train–inference discrepancy, by Lagrangian
//! relaxation (Liu et al., arXiv 2606.08779, *as reported*).
//!
//! - Discrepancy `δ_t = |π(o_t) − μ(o_t)|`; the step's `δ̄` is its mean over response tokens, with
//!   π = π_old (known before any update), computed by the loop as [`StepStats`].
//! - Constraint `δ̄ ≤ c`. Projected dual update once per step, after the step's updates:
//!   `λ ← clip(λ + η_λ·(δ̄ − c), 0, λ_max)`; λ is checkpointed ([`Algorithm::state`]).
//! - Gating (default on): inside the tolerance region (`δ̄ ≤ c`) no penalty at all.
//! - `form: loss` (default) adds `λ · agg(|π_θ(o_t) − μ(o_t)|)`, aggregated like the policy loss over
//!   the response mask, with gradient through π_θ: the trainer moves towards the engine's behaviour.
//!   `form: advantage` shapes `Â_t ← Â_t − λ·|π_old(o_t) − μ(o_t)|` before the GRPO loss.
//!
//! Defaults: `c` 0.0037 and `λ_0` 0.1 (Qwen3-8B; 0.0050 / 0.05 for Qwen3-30B-A3B), `η_λ` 1.0,
//! `λ_max` 10 (a safety bound, not from the paper), the GRPO keys with GRPO's defaults (the
//! paper's ε 0.24 is `clip_ratio_high: 0.24`). No public code exists: everything here follows
//! secondary summaries of the paper (see `docs/algorithms.md`).
use super::agg::AggTotals;
pub use super::dc_shapes::{penalty, AntiWindup, DualRule, PenaltyShape};
use super::grpo::{policy_loss, policy_loss_parts, PolicyLossConfig};
use super::{
    mean_abs_prob_diff, scalar, sum_over, valid, zero_pad, AdvantageInput, Advantages, Algorithm,
    ConfigProblem, Metrics, PolicyBatch, StepStats,
};
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DcForm {
    /// `+ λ·agg(|π_θ − μ|)` in the loss.
    #[default]
    Loss,
    /// `Â ← Â − λ·|π_old − μ|`.
    Advantage,
}

/// The keys [`DcmdpConfig`] leaves out of its serialised form at their defaults.
pub const KEYS_OMITTED_AT_DEFAULT: &[&str] = &[
    "penalty",
    "penalty_width",
    "anti_windup",
    "lambda_rate",
    "diagnostics",
];

/// `algorithm: { name: dcmdp, … }` (alias `dc-grpo`): the `grpo` keys plus the constraint's.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct DcmdpConfig {
    /// Divide by the group's std (GRPO's default).
    pub norm_adv_by_std: bool,
    #[serde(flatten)]
    pub policy: PolicyLossConfig,
    /// Tolerance `c` on δ̄.
    pub c: f64,
    /// Initial multiplier λ_0.
    pub lambda_0: f64,
    /// Dual step size η_λ.
    pub eta_lambda: f64,
    /// Upper end of λ's projection.
    pub lambda_max: f64,
    /// Apply the penalty only while δ̄ > c.
    pub gating: bool,
    pub form: DcForm,
    /// Shape of the per-token penalty (`absolute` as reported; `squared`, `smooth` = Huber).
    /// The new keys are not serialised at their defaults, so existing run ids stay.
    #[serde(skip_serializing_if = "PenaltyShape::is_default")]
    pub penalty: PenaltyShape,
    /// Width `w` of `squared` / `smooth` (default: `c`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_width: Option<f64>,
    /// Anti-windup of the dual update (`none` as reported, `conditional`).
    #[serde(skip_serializing_if = "AntiWindup::is_default")]
    pub anti_windup: AntiWindup,
    /// Rate limit: the largest |Δλ| per step (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda_rate: Option<f64>,
    /// Log the `diag/*` probe each step (a second forward and two extra backwards).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub diagnostics: bool,
}

impl Default for DcmdpConfig {
    fn default() -> Self {
        DcmdpConfig {
            norm_adv_by_std: true,
            policy: PolicyLossConfig::default(),
            c: 0.0037,
            lambda_0: 0.1,
            eta_lambda: 1.0,
            lambda_max: 10.0,
            gating: true,
            form: DcForm::Loss,
            penalty: PenaltyShape::Absolute,
            penalty_width: None,
            anti_windup: AntiWindup::None,
            lambda_rate: None,
            diagnostics: false,
        }
    }
}

impl DcmdpConfig {
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut out = self.policy.check();
        for (key, v) in [
            ("c", self.c),
            ("eta_lambda", self.eta_lambda),
            ("lambda_max", self.lambda_max),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                out.push(ConfigProblem::new(key, format!("must be >= 0, got {v}")));
            }
        }
        for (key, v) in [
            ("penalty_width", self.penalty_width),
            ("lambda_rate", self.lambda_rate),
        ] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                out.push(ConfigProblem::new(key, format!("must be > 0, got {v}")));
            }
        }
        if self.penalty != PenaltyShape::Absolute && self.penalty_width.is_none() && self.c <= 0.0 {
            out.push(ConfigProblem::new(
                "penalty_width",
                "needed by a squared/smooth penalty when c = 0".to_string(),
            ));
        }
        if !(self.lambda_0.is_finite() && (0.0..=self.lambda_max).contains(&self.lambda_0)) {
            out.push(ConfigProblem::new(
                "lambda_0",
                format!(
                    "must be in [0, lambda_max = {}], got {}",
                    self.lambda_max, self.lambda_0
                ),
            ));
        }
        out
    }

    /// The penalty's width: `penalty_width`, else `c`.
    pub fn width(&self) -> f64 {
        self.penalty_width.unwrap_or(self.c)
    }

    pub fn dual_rule(&self) -> DualRule {
        DualRule {
            c: self.c,
            eta: self.eta_lambda,
            lambda_max: self.lambda_max,
            rate: self.lambda_rate,
            anti_windup: self.anti_windup,
        }
    }
}

/// `clip(λ + η·(δ̄ − c), 0, λ_max)`.
pub fn dual_update(lambda: f64, delta_bar: f64, c: f64, eta: f64, lambda_max: f64) -> f64 {
    (lambda + eta * (delta_bar - c)).clamp(0.0, lambda_max)
}

/// One step's DC-GRPO loss settings: the policy loss, the form, the multiplier and the gate.
#[derive(Clone, Copy, Debug)]
pub struct DcmdpStep<'a> {
    pub policy: &'a PolicyLossConfig,
    pub form: DcForm,
    pub lambda: f64,
    /// The gate is open (δ̄ > c, or gating off).
    pub active: bool,
    /// The penalty's shape and width (`form: loss`).
    pub shape: PenaltyShape,
    pub width: f64,
}

/// DC-GRPO's loss. With the gate closed or λ = 0 it is GRPO's loss, bitwise. The penalty covers
/// the policy loss's tokens (the corrections' mask). Metrics: GRPO's plus `dc/penalty` (the added
/// term, or the mean advantage shift in `advantage` form) and `dc/gate`.
pub fn dcmdp_loss(batch: &PolicyBatch, step: &DcmdpStep) -> (Tensor, Metrics) {
    let (pg, pen, m) = dcmdp_loss_parts(batch, step);
    match pen {
        Some(p) => (pg + p, m),
        None => (pg, m),
    }
}

/// [`dcmdp_loss`] as its two terms: the policy term and (`form: loss` with the gate open and
/// λ ≠ 0) the penalty term `λ·agg(ρ(π_θ − μ))`, for the probe that measures their gradients
/// separately.
pub fn dcmdp_loss_parts(
    batch: &PolicyBatch,
    step: &DcmdpStep,
) -> (Tensor, Option<Tensor>, Metrics) {
    let on = step.active && step.lambda != 0.0;
    let (loss, pen, mut m) = match (on, step.form) {
        (false, _) => {
            let (l, mut m) = policy_loss(batch, step.policy);
            m.insert("dc/penalty".into(), 0.0);
            (l, None, m)
        }
        (true, DcForm::Loss) => {
            let (l, mut m, corrected) = policy_loss_parts(batch, step.policy);
            let kept = &corrected.kept;
            let v = valid(kept);
            let pi = zero_pad(batch.logp, &v).exp();
            let mu = zero_pad(&batch.rollout_logp.detach(), &v).exp();
            let agg = step.policy.agg();
            let rho = penalty(&(pi - mu), step.shape, step.width);
            let pen = agg.apply(&rho, kept, &batch.totals(kept)) * step.lambda;
            m.insert("dc/penalty".into(), scalar(&pen));
            (l, Some(pen), m)
        }
        (true, DcForm::Advantage) => {
            let v = valid(batch.mask);
            let old = zero_pad(&batch.old_logp.detach(), &v).exp();
            let mu = zero_pad(&batch.rollout_logp.detach(), &v).exp();
            let shift = (old - mu).abs() * step.lambda;
            let adv = zero_pad(&batch.advantages.detach(), &v) - &shift;
            let shifted = PolicyBatch {
                advantages: &adv,
                ..*batch
            };
            let (l, mut m, corrected) = policy_loss_parts(&shifted, step.policy);
            let kept = &corrected.kept;
            let mean_shift = batch.totals(kept).per_token(sum_over(&shift, kept));
            m.insert("dc/penalty".into(), mean_shift);
            (l, None, m)
        }
    };
    m.insert("dc/gate".into(), if step.active { 1.0 } else { 0.0 });
    (loss, pen, m)
}

/// DC-GRPO with its multiplier.
pub struct Dcmdp {
    cfg: DcmdpConfig,
    lambda: f64,
    /// This step's δ̄ from [`Algorithm::begin_step`]; without it the gate uses the mini-batch's.
    step_delta_bar: Option<f64>,
    /// The previous step's δ̄ (conditional anti-windup), checkpointed.
    prev_delta_bar: Option<f64>,
}

impl Dcmdp {
    pub fn new(cfg: DcmdpConfig) -> Self {
        let lambda = cfg.lambda_0;
        Dcmdp {
            cfg,
            lambda,
            step_delta_bar: None,
            prev_delta_bar: None,
        }
    }

    pub fn config(&self) -> &DcmdpConfig {
        &self.cfg
    }

    /// The loss settings of a mini-batch (the step's δ̄ from `begin_step`, else the batch's own).
    fn step_for(&self, batch: &PolicyBatch) -> DcmdpStep<'_> {
        let delta_bar = self
            .step_delta_bar
            .unwrap_or_else(|| mean_abs_prob_diff(batch.old_logp, batch.rollout_logp, batch.mask));
        DcmdpStep {
            policy: &self.cfg.policy,
            form: self.cfg.form,
            lambda: self.lambda,
            active: self.gate_open(delta_bar),
            shape: self.cfg.penalty,
            width: self.cfg.width(),
        }
    }

    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    fn gate_open(&self, delta_bar: f64) -> bool {
        !self.cfg.gating || delta_bar > self.cfg.c
    }
}

impl Algorithm for Dcmdp {
    fn name(&self) -> &'static str {
        "dcmdp"
    }

    fn advantages(&mut self, input: &AdvantageInput) -> Advantages {
        Advantages::grouped(input, self.cfg.norm_adv_by_std)
    }

    fn agg_totals(&self, old_logp: &Tensor, rollout_logp: &Tensor, mask: &Tensor) -> AggTotals {
        self.cfg.policy.totals(old_logp, rollout_logp, mask)
    }

    fn begin_step(&mut self, step: &StepStats) {
        self.step_delta_bar = Some(step.delta_bar);
    }

    fn loss(&self, batch: &PolicyBatch) -> (Tensor, Metrics) {
        let (loss, mut m) = dcmdp_loss(batch, &self.step_for(batch));
        m.insert("dc/lambda".into(), self.lambda);
        (loss, m)
    }

    fn wants_probe(&self) -> bool {
        self.cfg.diagnostics
    }

    fn loss_parts(&self, batch: &PolicyBatch) -> Vec<(&'static str, Tensor)> {
        let (pg, pen, _) = dcmdp_loss_parts(batch, &self.step_for(batch));
        let mut out = vec![("policy", pg)];
        out.extend(pen.map(|p| ("penalty", p)));
        out
    }

    /// Metrics: `dc/lambda` (the λ this step used), `dc/lambda_next`, `dc/delta_bar`,
    /// `dc/violation` (δ̄ − c), `dc/gate`.
    fn end_step(&mut self, step: &StepStats) -> Metrics {
        let used = self.lambda;
        self.lambda = self
            .cfg
            .dual_rule()
            .next(used, step.delta_bar, self.prev_delta_bar);
        self.step_delta_bar = None;
        self.prev_delta_bar = Some(step.delta_bar);
        let mut m = Metrics::new();
        m.insert("dc/lambda".into(), used);
        m.insert("dc/lambda_next".into(), self.lambda);
        m.insert("dc/delta_bar".into(), step.delta_bar);
        m.insert("dc/violation".into(), step.delta_bar - self.cfg.c);
        let gate = self.gate_open(step.delta_bar);
        m.insert("dc/gate".into(), if gate { 1.0 } else { 0.0 });
        m
    }

    fn needs_ref_policy(&self) -> bool {
        self.cfg.policy.kl.is_some()
    }

    /// `lambda_bits` carries λ exactly (serde_json's float parsing may round the last bit, which
    /// would break bitwise resume); `lambda` is there for people reading the checkpoint.
    /// `prev_delta_bar_bits` (conditional anti-windup only) likewise.
    fn state(&self) -> serde_json::Value {
        let mut s =
            serde_json::json!({ "lambda": self.lambda, "lambda_bits": self.lambda.to_bits() });
        if let (AntiWindup::Conditional, Some(p)) = (self.cfg.anti_windup, self.prev_delta_bar) {
            s["prev_delta_bar_bits"] = p.to_bits().into();
        }
        s
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), String> {
        let lambda = match state.get("lambda_bits").and_then(serde_json::Value::as_u64) {
            Some(bits) => f64::from_bits(bits),
            None => state
                .get("lambda")
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| format!("dcmdp state needs a numeric `lambda`, got {state}"))?,
        };
        if !(lambda.is_finite() && (0.0..=self.cfg.lambda_max).contains(&lambda)) {
            return Err(format!(
                "dcmdp state: lambda {lambda} outside [0, lambda_max = {}]",
                self.cfg.lambda_max
            ));
        }
        self.lambda = lambda;
        self.prev_delta_bar = state
            .get("prev_delta_bar_bits")
            .and_then(serde_json::Value::as_u64)
            .map(f64::from_bits);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::agg::{agg_loss, LossAggMode};
    use crate::objective::grpo::GrpoConfig;
    use crate::objective::testutil::*;
    use proptest::prelude::*;

    fn pg(mode: usize) -> PolicyLossConfig {
        PolicyLossConfig {
            clip_ratio_high: 0.28,
            loss_agg_mode: LossAggMode::ALL[mode],
            ..PolicyLossConfig::default()
        }
    }

    fn step(policy: &PolicyLossConfig, form: DcForm, lambda: f64, active: bool) -> DcmdpStep<'_> {
        DcmdpStep {
            policy,
            form,
            lambda,
            active,
            shape: PenaltyShape::Absolute,
            width: 1e-3,
        }
    }

    const FORMS: [DcForm; 2] = [DcForm::Loss, DcForm::Advantage];

    #[test]
    fn state_round_trip_and_validation() {
        let mut a = Dcmdp::new(DcmdpConfig {
            lambda_max: 1.0,
            ..DcmdpConfig::default()
        });
        assert_eq!(
            a.state(),
            serde_json::json!({"lambda": 0.1, "lambda_bits": 0.1f64.to_bits()})
        );
        a.load_state(&serde_json::json!({"lambda": 0.7})).unwrap();
        assert_eq!(a.lambda(), 0.7);
        let mut b = Dcmdp::new(DcmdpConfig::default());
        b.load_state(&a.state()).unwrap();
        assert_eq!(b.lambda(), 0.7);
        assert!(a.load_state(&serde_json::json!({"lambda": 2.0})).is_err());
        assert!(a.load_state(&serde_json::json!({"lambda": -0.1})).is_err());
        assert!(a.load_state(&serde_json::json!({"lam": 0.1})).is_err());
        assert!(a.load_state(&serde_json::Value::Null).is_err());
        // Every bit survives a trip through the checkpoint's JSON text.
        let odd = 0.09700005011600778f64;
        a.load_state(&serde_json::json!({"lambda": odd})).unwrap();
        let text = serde_json::to_string(&a.state()).unwrap();
        b.load_state(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(b.lambda().to_bits(), odd.to_bits());
    }

    #[test]
    fn end_step_metrics() {
        let mut a = Dcmdp::new(DcmdpConfig::default());
        let m = a.end_step(&StepStats::new(0.01));
        assert_eq!(m["dc/lambda"], 0.1);
        assert_close(m["dc/lambda_next"], 0.1 + 0.01 - 0.0037, 1e-15);
        assert_close(m["dc/violation"], 0.01 - 0.0037, 1e-15);
        assert_eq!(m["dc/delta_bar"], 0.01);
        assert_eq!(m["dc/gate"], 1.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// λ = 0 (or a closed gate) is GRPO, bitwise: loss and gradient, both forms.
        #[test]
        fn zero_lambda_is_grpo_bitwise(case in policy_case(4, 6, 0.8), mode in 0usize..4, f in 0usize..2,
                                       lambda in 0.0f64..5.0) {
            let x = case.tensors();
            let cfg = pg(mode);
            let run = |lambda: f64, active: bool| value_and_grad(&x.logp, |lp| {
                dcmdp_loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask), &step(&cfg, FORMS[f], lambda, active)).0
            });
            let (l0, g0) = value_and_grad(&x.logp, |lp| {
                policy_loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask), &cfg).0
            });
            for (l, g) in [run(0.0, true), run(lambda, false)] {
                prop_assert_eq!(l.to_bits(), l0.to_bits());
                prop_assert!(g.equal(&g0));
            }
        }

        /// The same through the trait: `dcmdp` with λ_0 = 0 and `grpo` agree bitwise.
        #[test]
        fn zero_lambda_algorithm_is_grpo(case in policy_case(4, 6, 0.8), f in 0usize..2, gating: bool) {
            let x = case.tensors();
            let dc = Dcmdp::new(DcmdpConfig { lambda_0: 0.0, form: FORMS[f], gating, c: 0.0, ..DcmdpConfig::default() });
            let grpo = super::super::Grpo::new(GrpoConfig::default());
            let (l1, g1) = value_and_grad(&x.logp, |lp| dc.loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask)).0);
            let (l0, g0) = value_and_grad(&x.logp, |lp| grpo.loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask)).0);
            prop_assert_eq!(l1.to_bits(), l0.to_bits());
            prop_assert!(g1.equal(&g0));
        }

        /// λ stays in [0, λ_max]; it rises while δ̄ > c and falls while δ̄ < c (strictly, unless
        /// it sits at the bound it moves towards).
        #[test]
        fn dual_update_is_projected_and_monotone(
            deltas in proptest::collection::vec(0.0f64..0.05, 1..40),
            c in 0.0f64..0.02, eta in 0.01f64..20.0, lambda_max in 0.01f64..5.0, l0 in 0.0f64..1.0,
        ) {
            let cfg = DcmdpConfig { c, eta_lambda: eta, lambda_max, lambda_0: l0 * lambda_max, ..DcmdpConfig::default() };
            let mut a = Dcmdp::new(cfg);
            for d in deltas {
                let before = a.lambda();
                let stats = StepStats::new(d);
                a.begin_step(&stats);
                a.end_step(&stats);
                let after = a.lambda();
                prop_assert!((0.0..=lambda_max).contains(&after));
                if d > c {
                    prop_assert!(after > before || after == lambda_max, "{before} -> {after}");
                } else if d < c {
                    prop_assert!(after < before || after == 0.0, "{before} -> {after}");
                } else {
                    prop_assert_eq!(after, before);
                }
            }
        }

        /// π_θ = π_old = μ: no discrepancy, so the loss is −agg(Â) whatever λ, both forms.
        #[test]
        fn on_policy(case in policy_case(4, 6, 0.5), mode in 0usize..4, f in 0usize..2, lambda in 0.0f64..5.0) {
            let x = case.on_policy().tensors();
            let cfg = pg(mode);
            let (l, _) = dcmdp_loss(&PolicyBatch::new(&x.logp, &x.old, &x.mu, &x.adv, &x.mask), &step(&cfg, FORMS[f], lambda, true));
            let want = -agg_loss(&x.adv, &x.mask, LossAggMode::ALL[mode], None).double_value(&[]);
            prop_assert!((l.double_value(&[]) - want).abs() < 1e-12);
        }

        /// Gating: with the gate on, the step's δ̄ decides; without `begin_step` the mini-batch's.
        #[test]
        fn gate_follows_delta_bar(case in policy_case(3, 5, 0.8), d in 0.0f64..0.02) {
            let x = case.tensors();
            let c = 0.01;
            let mut a = Dcmdp::new(DcmdpConfig { c, lambda_0: 1.0, ..DcmdpConfig::default() });
            let batch = PolicyBatch::new(&x.logp, &x.old, &x.mu, &x.adv, &x.mask);
            let own = mean_abs_prob_diff(&x.old, &x.mu, &x.mask);
            prop_assert_eq!(a.loss(&batch).1["dc/gate"], if own > c { 1.0 } else { 0.0 });
            a.begin_step(&StepStats::new(d));
            let (_, m) = a.loss(&batch);
            prop_assert_eq!(m["dc/gate"], if d > c { 1.0 } else { 0.0 });
            if d <= c {
                prop_assert_eq!(m["dc/penalty"], 0.0);
            }
        }

        #[test]
        fn grad_check(case in policy_case(3, 5, 0.8), mode in 0usize..4, f in 0usize..2, lambda in 0.1f64..3.0) {
            let x = case.tensors();
            let cfg = pg(mode);
            check_grad(&x.logp, |lp| {
                dcmdp_loss(&PolicyBatch::new(lp, &x.old, &x.mu, &x.adv, &x.mask), &step(&cfg, FORMS[f], lambda, true)).0
            });
        }
    }
}
