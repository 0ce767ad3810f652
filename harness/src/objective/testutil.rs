//! Test helpers: small tensors, proptest strategies for ragged batches, f64 finite differences.
use proptest::prelude::*;
use tch::{Kind, Tensor};

pub fn t2(data: &[f64], b: i64, t: i64) -> Tensor {
    Tensor::from_slice(data).view([b, t])
}

pub fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

#[track_caller]
pub fn assert_close(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "got {got}, want {want} (diff {:e}, tol {tol:e})",
        (got - want).abs()
    );
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// `f(x)` and its gradient w.r.t. `x` (a fresh leaf copy of `x`).
pub fn value_and_grad(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> (f64, Tensor) {
    let x = x.detach().copy().set_requires_grad(true);
    let l = f(&x);
    l.backward();
    (l.double_value(&[]), x.grad().detach().copy())
}

/// Central differences of the scalar `f` at `x` (f64), one coordinate at a time.
pub fn fd_grad(x: &Tensor, f: impl Fn(&Tensor) -> Tensor, h: f64) -> Tensor {
    let shape = x.size();
    let base = to_vec(x);
    let eval = |d: &[f64]| {
        tch::no_grad(|| f(&Tensor::from_slice(d).view(shape.as_slice())).double_value(&[]))
    };
    let mut g = vec![0.0; base.len()];
    let mut d = base.clone();
    for i in 0..base.len() {
        d[i] = base[i] + h;
        let up = eval(&d);
        d[i] = base[i] - h;
        let down = eval(&d);
        d[i] = base[i];
        g[i] = (up - down) / (2.0 * h);
    }
    Tensor::from_slice(&g).view(shape.as_slice())
}

/// Autograd gradient of `f` at `x` (f64) against central differences. An entry whose two
/// difference quotients (steps 1e-6 and 2e-7) disagree sits within a step of a kink (a clip
/// boundary), where the derivative is one-sided: it is skipped rather than failing at random.
#[track_caller]
pub fn check_grad(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) {
    let x = x.to_kind(Kind::Double);
    let (_, auto) = value_and_grad(&x, &f);
    let coarse = to_vec(&fd_grad(&x, &f, 1e-6));
    let fine = to_vec(&fd_grad(&x, &f, 2e-7));
    let tol = |n: f64| 1e-6 * (1.0 + n.abs());
    let mut checked = 0;
    for (i, ((a, n), n2)) in to_vec(&auto).iter().zip(&coarse).zip(&fine).enumerate() {
        if (n - n2).abs() > tol(*n) {
            continue;
        }
        checked += 1;
        assert!(
            (a - n).abs() <= tol(*n),
            "gradient entry {i}: autograd {a}, finite differences {n}"
        );
    }
    assert!(
        checked * 2 >= coarse.len(),
        "too few smooth entries to check"
    );
}

/// Values `x [B, T]` in (−3, 3) with a right-padded mask (some rows may be empty).
pub struct Ragged {
    pub x: Tensor,
    pub mask: Tensor,
}

impl std::fmt::Debug for Ragged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "x={:?} mask={:?}", to_vec(&self.x), to_vec(&self.mask))
    }
}

pub fn ragged_batch(max_b: usize, max_t: usize) -> impl Strategy<Value = Ragged> {
    (1..=max_b, 1..=max_t).prop_flat_map(|(b, t)| {
        (
            proptest::collection::vec(-3.0f64..3.0, b * t),
            proptest::collection::vec(0..=t, b),
        )
            .prop_map(move |(x, lens)| Ragged {
                x: t2(&x, b as i64, t as i64),
                mask: right_padded(&lens, t),
            })
    })
}

pub fn right_padded(lens: &[usize], t: usize) -> Tensor {
    let m: Vec<f64> = lens
        .iter()
        .flat_map(|&n| (0..t).map(move |j| if j < n { 1.0 } else { 0.0 }))
        .collect();
    t2(&m, lens.len() as i64, t as i64)
}

/// Append `pad_t` columns and `pad_rows` rows of `garbage` (mask 0) to `x`.
pub fn pad(x: &Tensor, mask: &Tensor, pad_t: i64, pad_rows: i64, garbage: f64) -> (Tensor, Tensor) {
    let (b, t) = x.size2().unwrap();
    let opts = (x.kind(), x.device());
    let x = Tensor::cat(&[x.detach(), Tensor::full([b, pad_t], garbage, opts)], 1);
    let m = Tensor::cat(&[mask.shallow_clone(), Tensor::zeros([b, pad_t], opts)], 1);
    let x = Tensor::cat(&[x, Tensor::full([pad_rows, t + pad_t], garbage, opts)], 0);
    let m = Tensor::cat(&[m, Tensor::zeros([pad_rows, t + pad_t], opts)], 0);
    (x, m)
}

/// One policy mini-batch as probabilities: π_old, μ (a perturbation of π_old), π_θ, π_ref, Â.
#[derive(Clone, Debug)]
pub struct PolicyCase {
    pub b: i64,
    pub t: i64,
    pub lens: Vec<usize>,
    pub old_p: Vec<f64>,
    pub mu_p: Vec<f64>,
    pub theta_p: Vec<f64>,
    pub ref_p: Vec<f64>,
    pub adv: Vec<f64>,
}

/// Tensors of a [`PolicyCase`] (f64, `[B, T]`).
pub struct PolicyTensors {
    pub logp: Tensor,
    pub old: Tensor,
    pub mu: Tensor,
    pub ref_: Tensor,
    pub adv: Tensor,
    pub mask: Tensor,
}

impl PolicyCase {
    pub fn tensors(&self) -> PolicyTensors {
        let ln = |v: &[f64]| {
            t2(
                &v.iter().map(|p| p.ln()).collect::<Vec<_>>(),
                self.b,
                self.t,
            )
        };
        PolicyTensors {
            logp: ln(&self.theta_p),
            old: ln(&self.old_p),
            mu: ln(&self.mu_p),
            ref_: ln(&self.ref_p),
            adv: t2(&self.adv, self.b, self.t),
            mask: right_padded(&self.lens, self.t as usize),
        }
    }

    /// The same case with π_θ = π_old = μ.
    pub fn on_policy(&self) -> PolicyCase {
        PolicyCase {
            mu_p: self.old_p.clone(),
            theta_p: self.old_p.clone(),
            ..self.clone()
        }
    }

    pub fn tokens(&self) -> usize {
        self.lens.iter().sum()
    }
}

/// `max_drift` bounds the logit shift of π_θ and μ from π_old (so |log π − log π_old| too).
pub fn policy_case(
    max_b: usize,
    max_t: usize,
    max_drift: f64,
) -> impl Strategy<Value = PolicyCase> {
    (1..=max_b, 1..=max_t).prop_flat_map(move |(b, t)| {
        let n = b * t;
        (
            proptest::collection::vec(0.02f64..0.95, n),
            proptest::collection::vec(-max_drift..max_drift, n),
            proptest::collection::vec(-max_drift..max_drift, n),
            proptest::collection::vec(-0.5f64..0.5, n),
            proptest::collection::vec(-2.0f64..2.0, n),
            proptest::collection::vec(0..=t, b),
        )
            .prop_map(move |(old_p, dm, dt, dr, adv, lens)| {
                // Drift in logit space keeps probabilities in (0, 1) without clamping, which would
                // make π_θ and μ exactly equal (a kink of |π_θ − μ|) far more often than chance.
                let shift = |d: &[f64]| -> Vec<f64> {
                    old_p
                        .iter()
                        .zip(d)
                        .map(|(p, e)| p * e.exp() / (1.0 - p + p * e.exp()))
                        .collect()
                };
                PolicyCase {
                    b: b as i64,
                    t: t as i64,
                    mu_p: shift(&dm),
                    theta_p: shift(&dt),
                    ref_p: shift(&dr),
                    old_p: old_p.clone(),
                    adv,
                    lens,
                }
            })
    })
}
