//! DC-GRPO's alternatives a reader of the paper would try: the penalty's shape and the dual
//! update's anti-windup. Pure functions of tensors / numbers; the as-reported forms (`absolute`,
//! plain projected ascent) are the defaults.
//!
//! Penalty `ρ(x)`, `x = π_θ(o_t) − μ(o_t)`, width `w` (`penalty_width`, default `c`):
//! - `absolute` (as reported): `|x|`; gradient `sign(x)`, full strength however small `|x|` is.
//! - `squared`: `x² / (2w)`; gradient `x / w` (equal to `absolute`'s at `|x| = w`).
//! - `smooth` (Huber): `x² / (2w)` for `|x| ≤ w`, `|x| − w/2` beyond; gradient `clip(x / w, −1, 1)`.
//!
//! Dual update `λ ← clip(λ + Δ, 0, λ_max)`, `Δ = η_λ·(δ̄ − c)`, then optionally
//! - `lambda_rate: r`: `Δ` clipped to `[−r, r]` (a rate limit);
//! - `anti_windup: conditional`: no growth (`Δ > 0` → 0) on a step whose δ̄ rose above the
//!   previous step's — the constraint is not responding to the push, so pushing harder only
//!   winds λ up (conditional integration).
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PenaltyShape {
    /// `|x|` (as reported).
    #[default]
    Absolute,
    /// `x² / (2w)`.
    Squared,
    /// Huber with width `w`.
    Smooth,
}

impl PenaltyShape {
    pub fn is_default(&self) -> bool {
        *self == PenaltyShape::default()
    }
}

/// `ρ(x)` elementwise for `x = π − μ` (any shape), with width `w > 0` (unused by `absolute`).
pub fn penalty(x: &Tensor, shape: PenaltyShape, w: f64) -> Tensor {
    match shape {
        PenaltyShape::Absolute => x.abs(),
        PenaltyShape::Squared => x.square() / (2.0 * w),
        PenaltyShape::Smooth => {
            let a = x.abs();
            let quad = x.square() / (2.0 * w);
            let lin = &a - w / 2.0;
            quad.where_self(&a.le(w), &lin)
        }
    }
}

/// `dρ/dx` at `x` (the reference for the tests; autograd computes the real one).
pub fn penalty_grad(x: f64, shape: PenaltyShape, w: f64) -> f64 {
    match shape {
        PenaltyShape::Absolute => {
            if x == 0.0 {
                0.0
            } else {
                x.signum()
            }
        }
        PenaltyShape::Squared => x / w,
        PenaltyShape::Smooth => (x / w).clamp(-1.0, 1.0),
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AntiWindup {
    /// Plain projected ascent (as reported).
    #[default]
    None,
    /// No λ growth on a step whose δ̄ rose above the previous step's.
    Conditional,
}

impl AntiWindup {
    pub fn is_default(&self) -> bool {
        *self == AntiWindup::default()
    }
}

/// The dual update's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DualRule {
    pub c: f64,
    pub eta: f64,
    pub lambda_max: f64,
    /// Largest |Δλ| per step.
    pub rate: Option<f64>,
    pub anti_windup: AntiWindup,
}

impl DualRule {
    /// λ after a step with discrepancy `delta_bar`; `prev` is the previous step's δ̄ (none on the
    /// first step).
    pub fn next(&self, lambda: f64, delta_bar: f64, prev: Option<f64>) -> f64 {
        let mut d = self.eta * (delta_bar - self.c);
        if let Some(r) = self.rate {
            d = d.clamp(-r, r);
        }
        if self.anti_windup == AntiWindup::Conditional
            && d > 0.0
            && prev.is_some_and(|p| delta_bar > p)
        {
            d = 0.0;
        }
        (lambda + d).clamp(0.0, self.lambda_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tch::{Device, Kind};

    const SHAPES: [PenaltyShape; 3] = [
        PenaltyShape::Absolute,
        PenaltyShape::Squared,
        PenaltyShape::Smooth,
    ];

    fn grad_of(xs: &[f64], shape: PenaltyShape, w: f64) -> Vec<f64> {
        let x = Tensor::from_slice(xs)
            .to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .set_requires_grad(true);
        penalty(&x, shape, w).sum(Kind::Double).backward();
        Vec::<f64>::try_from(x.grad()).unwrap()
    }

    #[test]
    fn values_at_known_points() {
        let x = Tensor::from_slice(&[-0.004f64, -0.001, 0.0, 0.0005, 0.003]);
        let v = |s| Vec::<f64>::try_from(penalty(&x, s, 0.002)).unwrap();
        assert_eq!(
            v(PenaltyShape::Absolute),
            vec![0.004, 0.001, 0.0, 0.0005, 0.003]
        );
        let sq = v(PenaltyShape::Squared);
        let want = [4e-3f64, 1e-3, 0.0, 5e-4, 3e-3].map(|a| a * a / 4e-3);
        for (a, b) in sq.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{a} {b}");
        }
        let hu = v(PenaltyShape::Smooth);
        let want = [
            0.004 - 0.001,
            1e-6 / 4e-3,
            0.0,
            2.5e-7 / 4e-3,
            0.003 - 0.001,
        ];
        for (a, b) in hu.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{a} {b}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Autograd's gradient of each shape is the documented one; `absolute` keeps full
        /// strength near 0, the others vanish linearly there.
        #[test]
        fn gradient_of_each_shape(xs in proptest::collection::vec(-0.02f64..0.02, 1..16), w in 1e-4f64..1e-2) {
            for s in SHAPES {
                let g = grad_of(&xs, s, w);
                for (x, g) in xs.iter().zip(g) {
                    prop_assert!((g - penalty_grad(*x, s, w)).abs() < 1e-9, "{s:?} x={x} g={g}");
                    prop_assert!(g.abs() <= 1.0 + 1e-12 || s == PenaltyShape::Squared);
                }
            }
        }

        /// Huber: continuous at |x| = w, below `absolute`, and within w/2 of it.
        #[test]
        fn smooth_brackets_absolute(x in -0.05f64..0.05, w in 1e-4f64..1e-2) {
            let t = Tensor::from_slice(&[x, w, -w]);
            let h = Vec::<f64>::try_from(penalty(&t, PenaltyShape::Smooth, w)).unwrap();
            prop_assert!(h[0] <= x.abs() + 1e-15 && h[0] >= x.abs() - w / 2.0 - 1e-15);
            prop_assert!((h[1] - w / 2.0).abs() < 1e-15 && (h[2] - w / 2.0).abs() < 1e-15);
        }

        /// The plain rule is `clip(λ + η(δ̄ − c), 0, λ_max)`; the rate limit bounds every move;
        /// conditional anti-windup never raises λ on a step whose δ̄ rose, and otherwise moves
        /// like the plain rule.
        #[test]
        fn dual_rules(deltas in proptest::collection::vec(0.0f64..0.02, 2..40), c in 0.0f64..0.01,
                      eta in 0.1f64..200.0, rate in 1e-3f64..1.0, l0 in 0.0f64..1.0) {
            let plain = DualRule { c, eta, lambda_max: 10.0, rate: None, anti_windup: AntiWindup::None };
            let limited = DualRule { rate: Some(rate), ..plain };
            let cond = DualRule { anti_windup: AntiWindup::Conditional, ..plain };
            let (mut a, mut b, mut k) = (l0, l0, l0);
            let mut prev = None;
            for &d in &deltas {
                let a1 = plain.next(a, d, prev);
                prop_assert_eq!(a1, (a + eta * (d - c)).clamp(0.0, 10.0));
                let b1 = limited.next(b, d, prev);
                prop_assert!((b1 - b).abs() <= rate + 1e-12);
                let k1 = cond.next(k, d, prev);
                if prev.is_some_and(|p| d > p) {
                    prop_assert!(k1 <= k);
                } else {
                    prop_assert_eq!(k1, plain.next(k, d, prev));
                }
                (a, b, k, prev) = (a1, b1, k1, Some(d));
                prop_assert!((0.0..=10.0).contains(&b) && (0.0..=10.0).contains(&k));
            }
        }
    }

    /// Windup: δ̄ stuck above c and creeping up (a floor the policy cannot remove). The plain
    /// rule runs λ to its cap within a few steps; a rate limit and conditional integration
    /// keep it low.
    #[test]
    fn anti_windup_on_a_stuck_constraint() {
        let plain = DualRule {
            c: 1e-3,
            eta: 100.0,
            lambda_max: 10.0,
            rate: None,
            anti_windup: AntiWindup::None,
        };
        let run = |r: DualRule| {
            let (mut l, mut prev) = (0.1, None);
            for s in 0..40 {
                let d = 4e-3 + 1e-5 * s as f64;
                l = r.next(l, d, prev);
                prev = Some(d);
            }
            l
        };
        assert_eq!(run(plain), 10.0);
        assert!(
            (run(DualRule {
                rate: Some(0.01),
                ..plain
            }) - 0.5)
                .abs()
                < 1e-9
        );
        let cond = run(DualRule {
            anti_windup: AntiWindup::Conditional,
            ..plain
        });
        assert!((cond - (0.1 + 0.3)).abs() < 1e-9, "{cond}");
    }
}
