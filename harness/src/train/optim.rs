//! AdamW (decoupled weight decay, fp32 moments), learning-rate schedules, and global-norm gradient
//! clipping that reports the pre-clip norm.
use super::checkpoint::{copy_named, OptimState};
use crate::config::{OptimConfig, Schedule};
use crate::Result;
use std::ffi::c_void;
use std::path::Path;
use tch::{Kind, Tensor};

/// Elements of the flat buffers AdamW updates at once. Its update keeps a few fp32 temporaries of
/// the updated size alive (`grid::plan`'s `ADAMW_TEMPORARIES`); in slices of this size (1 MiB
/// per fp32 buffer) they stay small however large the model (over the whole buffer of a
/// 0.6B-shaped model they once added ≈ 2 GiB to the CPU peak), and a slice's parameters, moments,
/// gradient and scratch stay in a core's L2 cache through the update's dozen passes (on a 2-core
/// Xeon the tiny model's update took 1.35 ms in slices of 2¹⁸, 1.74 ms in one piece). Elementwise
/// arithmetic: slicing changes no bit.
pub const ADAMW_CHUNK: i64 = 1 << 18;

pub struct AdamW {
    params: Vec<Tensor>,
    /// Per-parameter views of the moments (of `flat`'s buffers when there is one).
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    flat: Option<Flat>,
    /// Slice of the flat buffers updated at once ([`ADAMW_CHUNK`]; smaller in tests).
    chunk: i64,
    /// Number of updates taken (for bias correction); part of the checkpoint.
    pub t: i64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
}

/// Parameters, gradients and moments each in one contiguous buffer, every parameter (and its
/// gradient) a view into it: an update is then about 15 tensor ops however many tensors the model
/// has (15 per tensor otherwise, which on the tiny CPU models costs more than the arithmetic). The
/// arithmetic per element is the same, so the result is bit for bit the per-tensor one.
struct Flat {
    p: Tensor,
    m: Tensor,
    v: Tensor,
    /// Adopted after the first backward, once every parameter has a gradient (autograd then
    /// accumulates into the views in place).
    g: Option<Tensor>,
}

/// `flat`'s consecutive slices shaped like `like`.
fn views(flat: &Tensor, like: &[Tensor]) -> Vec<Tensor> {
    let mut at = 0;
    like.iter()
        .map(|t| {
            let n = t.numel() as i64;
            let view = flat.narrow(0, at, n).view(t.size().as_slice());
            at += n;
            view
        })
        .collect()
}

impl Flat {
    /// Move `params` into one buffer (each keeps its identity; its data becomes a view). `None`
    /// when they differ in dtype or device.
    fn new(params: &[Tensor]) -> Option<Flat> {
        let first = params.first()?;
        let same = |t: &Tensor| t.kind() == first.kind() && t.device() == first.device();
        if !params.iter().all(same) {
            return None;
        }
        let p = tch::no_grad(|| {
            let parts: Vec<Tensor> = params.iter().map(|t| t.detach().reshape([-1])).collect();
            Tensor::cat(&parts, 0)
        });
        for (t, view) in params.iter().zip(views(&p, params)) {
            t.shallow_clone().set_data(&view);
        }
        let zeros = || p.zeros_like().to_kind(Kind::Float);
        Some(Flat {
            m: zeros(),
            v: zeros(),
            p,
            g: None,
        })
    }

    /// The gradient buffer, adopting the parameters' gradients into it on first use; `None`
    /// while some parameter has none.
    fn grads(&mut self, params: &[Tensor]) -> Option<&Tensor> {
        if self.g.is_none() {
            let grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
            if grads
                .iter()
                .any(|g| !g.defined() || g.kind() != self.p.kind())
            {
                return None;
            }
            let g = self.p.zeros_like();
            tch::no_grad(|| {
                for (mut old, mut view) in grads.into_iter().zip(views(&g, params)) {
                    view.copy_(&old);
                    old.set_data(&view);
                }
            });
            self.g = Some(g);
        }
        self.g.as_ref()
    }
}

impl AdamW {
    pub fn new(params: Vec<Tensor>, cfg: &OptimConfig) -> Self {
        let flat = Flat::new(&params);
        let (m, v) = match &flat {
            Some(f) => (views(&f.m, &params), views(&f.v, &params)),
            None => {
                let zeros = |p: &Tensor| p.zeros_like().to_kind(Kind::Float);
                (
                    params.iter().map(zeros).collect(),
                    params.iter().map(zeros).collect(),
                )
            }
        };
        AdamW {
            m,
            v,
            params,
            flat,
            chunk: ADAMW_CHUNK,
            t: 0,
            betas: cfg.betas,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        }
    }

    /// The one gradient buffer, once every parameter's gradient lives in it.
    fn flat_grads(&mut self) -> Option<Tensor> {
        let f = self.flat.as_mut()?;
        f.grads(&self.params).map(Tensor::shallow_clone)
    }

    pub fn zero_grad(&mut self) {
        if let Some(mut g) = self.flat_grads() {
            let _ = g.zero_();
            return;
        }
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Scale the gradients to global L2 norm at most `max_norm` (0 = no clipping); the norm
    /// before clipping, as [`clip_grad_norm`] computes it.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let Some(mut g) = self.flat_grads() else {
            return clip_grad_norm(&self.params, max_norm);
        };
        let grads: Vec<Tensor> = self.params.iter().map(Tensor::grad).collect();
        let norm = grad_norm(&grads);
        if let Some(scale) = clip_scale(norm, max_norm) {
            let _ = tch::no_grad(|| g.g_mul_scalar_(scale));
        }
        norm
    }

    /// One update with learning rate `lr` from the gradients currently held by the parameters.
    pub fn step(&mut self, lr: f64) {
        self.t += 1;
        if let Some(g) = self.flat_grads() {
            let f = self.flat.as_ref().unwrap();
            let n = f.p.numel() as i64;
            tch::no_grad(|| {
                for at in (0..n).step_by(self.chunk as usize) {
                    let part = |t: &Tensor| t.narrow(0, at, self.chunk.min(n - at));
                    self.update([part(&f.p), part(&f.m), part(&f.v)], &part(&g), lr);
                }
            });
            return;
        }
        tch::no_grad(|| {
            for (i, p) in self.params.iter().enumerate() {
                let g = p.grad();
                if g.defined() {
                    let state = [p, &self.m[i], &self.v[i]].map(Tensor::shallow_clone);
                    self.update(state, &g, lr);
                }
            }
        });
    }

    /// AdamW on `[param, m, v]` of one tensor, or of a slice of the flat buffers: the same ops
    /// either way. Two scratch tensors carry the intermediate values through in-place ops, which
    /// compute what `(m / bc1) / ((v / bc2).sqrt() + eps) * lr` does, op for op, without a fresh
    /// buffer per op (the tiny model's update, replayed in PyTorch: 2.34 ms with a fresh buffer
    /// per op, 1.74 ms in place, 1.35 ms in place and in slices).
    fn update(&self, [mut p, mut m, mut v]: [Tensor; 3], g: &Tensor, lr: f64) {
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        let decay = if self.weight_decay > 0.0 {
            1.0 - lr * self.weight_decay
        } else {
            1.0
        };
        #[cfg(test)]
        let fuse = !UNFUSED.with(|f| f.get());
        #[cfg(not(test))]
        let fuse = true;
        if fuse && fused_update([&p, &m, &v], g, [b1, b2, decay, bc1, bc2, self.eps, lr]) {
            return;
        }
        let g = g.to_kind(Kind::Float);
        let mut tmp = &g * (1.0 - b1);
        let _ = m.g_mul_scalar_(b1).g_add_(&tmp);
        let _ = g.square_out(&tmp).g_mul_scalar_(1.0 - b2);
        let _ = v.g_mul_scalar_(b2).g_add_(&tmp);
        if self.weight_decay > 0.0 {
            let _ = p.g_mul_scalar_(decay);
        }
        let _ = v.div_scalar_out(&tmp, bc2);
        let _ = tmp.sqrt_().g_add_scalar_(self.eps);
        let mut update = &m / bc1;
        let _ = update.g_div_(&tmp).g_mul_scalar_(lr);
        let _ = p.g_sub_(&update.to_kind(p.kind()));
    }

    /// Checkpoint state, the moments named after `names` (the parameters' names, in order).
    pub fn state(&self, names: &[String]) -> OptimState {
        OptimState {
            exp_avg: named("", names, &self.m),
            exp_avg_sq: named("", names, &self.v),
            t: self.t,
        }
    }

    /// Restore [`AdamW::state`]; `file` (where it came from) is named in errors.
    pub fn load_state(&mut self, names: &[String], s: &OptimState, file: &Path) -> Result<()> {
        for (key, mine, saved) in [
            ("exp_avg/", &self.m, &s.exp_avg),
            ("exp_avg_sq/", &self.v, &s.exp_avg_sq),
        ] {
            let (saved_names, saved): (Vec<String>, Vec<Tensor>) = saved
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .unzip();
            copy_named(
                &named(key, names, mine),
                &named(key, &saved_names, &saved),
                file,
            )?;
        }
        self.t = s.t;
        Ok(())
    }
}

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn harness_adamw_update(
        p: *const c_void,
        m: *const c_void,
        v: *const c_void,
        g: *const c_void,
        scratch: *const c_void,
        b1: f64,
        b2: f64,
        decay: f64,
        bc1: f64,
        bc2: f64,
        eps: f64,
        lr: f64,
    ) -> bool;
}

/// [`AdamW::update`] in two fused passes around ATen's sqrt (`csrc/adamw.cpp`), bit for bit its
/// tensor ops, for fp32 contiguous CPU buffers; false (nothing touched) for anything else.
/// `k`: β₁, β₂, the decay factor `1 − lr·wd`, both bias corrections, eps, lr.
fn fused_update([p, m, v]: [&Tensor; 3], g: &Tensor, k: [f64; 7]) -> bool {
    if g.device() != tch::Device::Cpu || g.kind() != Kind::Float {
        return false;
    }
    let scratch = g.empty_like();
    let [b1, b2, decay, bc1, bc2, eps, lr] = k;
    // SAFETY: every pointer is a live `at::Tensor` borrowed for the call; the C++ side checks
    // dtype, device, layout and sizes before it writes into the data of `p`, `m`, `v` and
    // `scratch` (in place, as the tensor ops would).
    unsafe {
        harness_adamw_update(
            p.as_ptr().cast(),
            m.as_ptr().cast(),
            v.as_ptr().cast(),
            g.as_ptr().cast(),
            scratch.as_ptr().cast(),
            b1,
            b2,
            decay,
            bc1,
            bc2,
            eps,
            lr,
        )
    }
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the tensor-op update, to compare it with the fused one.
    pub(crate) static UNFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `(prefix + name, tensor)` pairs.
fn named(prefix: &str, names: &[String], ts: &[Tensor]) -> Vec<(String, Tensor)> {
    names
        .iter()
        .map(|n| format!("{prefix}{n}"))
        .zip(ts.iter().map(Tensor::shallow_clone))
        .collect()
}

/// Learning rate at update `step` (0-based) of `total`.
pub fn lr_at(cfg: &OptimConfig, step: usize, total: usize) -> f64 {
    let warm = cfg.warmup_steps;
    let warm_factor = if warm > 0 && step < warm {
        (step + 1) as f64 / warm as f64
    } else {
        1.0
    };
    match cfg.schedule {
        Schedule::Constant => cfg.lr,
        Schedule::LinearWarmup => cfg.lr * warm_factor,
        Schedule::Cosine => {
            if warm > 0 && step < warm {
                return cfg.lr * warm_factor;
            }
            let span = total.saturating_sub(warm).max(1) as f64;
            let progress = ((step - warm.min(step)) as f64 / span).min(1.0);
            cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

/// Scale gradients so their global L2 norm is at most `max_norm` (0 = no clipping). Returns the
/// norm before clipping (NaN/∞ if any gradient is).
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    let grads: Vec<Tensor> = params
        .iter()
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .collect();
    let norm = grad_norm(&grads);
    if let Some(scale) = clip_scale(norm, max_norm) {
        tch::no_grad(|| {
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        });
    }
    norm
}

/// Global L2 norm of the defined gradients in `grads` (0 when there is none).
fn grad_norm(grads: &[Tensor]) -> f64 {
    tch::no_grad(|| {
        let sq: Vec<Tensor> = grads
            .iter()
            .filter(|g| g.defined())
            .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
            .collect();
        if sq.is_empty() {
            return 0.0;
        }
        Tensor::stack(&sq, 0)
            .sum(Kind::Float)
            .sqrt()
            .double_value(&[])
    })
}

/// The factor that brings `norm` down to `max_norm`, when clipping applies.
fn clip_scale(norm: f64, max_norm: f64) -> Option<f64> {
    (max_norm > 0.0 && norm.is_finite() && norm > max_norm).then(|| max_norm / (norm + 1e-6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn adamw_matches_hand_computed_first_steps() {
        let cfg = OptimConfig {
            lr: 0.1,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
            ..OptimConfig::default()
        };
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![p.shallow_clone()], &cfg);
        // loss = sum(p²) → grad 2p. First Adam step moves each weight by ≈ lr·sign(g).
        (&p * &p).sum(Kind::Float).backward();
        opt.step(0.1);
        let got = Vec::<f32>::try_from(p.detach()).unwrap();
        let want = [1.0 * (1.0 - 0.001) - 0.1, -2.0 * (1.0 - 0.001) + 0.1];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?}");
        }
        opt.zero_grad();
        assert_eq!(p.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    /// `[shapes]` parameters, the same values for every call with `seed`: from a formula, not
    /// libtorch's global RNG, which tests running alongside seed and draw from.
    fn params(seed: i64) -> Vec<Tensor> {
        [vec![3, 5], vec![7], vec![2, 2, 2]]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = s.iter().product::<i64>();
                let x = Tensor::arange(n, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float);
                ((x * (0.9 + 0.37 * seed as f64) + i as f64).sin() * 2.0)
                    .view(s.as_slice())
                    .set_requires_grad(true)
            })
            .collect()
    }

    /// Run `steps` AdamW steps (with clipping) on `sum(c · p²)` and return the parameters.
    /// The flat path updates its buffers in slices of `chunk` elements (`None`: the per-tensor
    /// path).
    fn train(mut ps: Vec<Tensor>, chunk: Option<i64>, steps: usize) -> Vec<Vec<f32>> {
        let cfg = OptimConfig {
            weight_decay: 0.1,
            ..OptimConfig::default()
        };
        let mut opt = AdamW::new(ps.iter().map(Tensor::shallow_clone).collect(), &cfg);
        match chunk {
            Some(c) => opt.chunk = c,
            None => opt.flat = None, // per tensor (moments are still views: same arithmetic)
        }
        for s in 0..steps {
            opt.zero_grad();
            let loss = ps
                .iter()
                .enumerate()
                .fold(Tensor::from(0f32), |acc, (i, p)| {
                    acc + (p * p * (1.0 + i as f64 + s as f64 * 0.3)).sum(Kind::Float)
                });
            loss.backward();
            opt.clip_grad_norm(2.0);
            opt.step(0.05);
        }
        ps.iter_mut()
            .map(|p| Vec::<f32>::try_from(p.detach().reshape([-1])).unwrap())
            .collect()
    }

    #[test]
    fn flat_buffers_update_bit_for_bit_like_per_tensor_ones() {
        let flat = train(params(3), Some(ADAMW_CHUNK), 6);
        let per_tensor = train(params(3), None, 6);
        assert_eq!(flat, per_tensor);
        assert_ne!(
            flat,
            train(params(3), Some(ADAMW_CHUNK), 0),
            "the parameters moved"
        );
        // Slices that cut across parameters (30 elements in slices of 7, 4 and 1) change no bit.
        for chunk in [7, 4, 1] {
            assert_eq!(
                train(params(3), Some(chunk), 6),
                per_tensor,
                "chunk {chunk}"
            );
        }
    }

    /// AdamW written out of place, one fresh tensor per op: what the committed reports were
    /// trained with before `update` reused its scratch buffers.
    fn reference_step(p: &Tensor, m: &Tensor, v: &Tensor, g: &Tensor, t: i32, lr: f64) -> Tensor {
        let (b1, b2, eps, wd) = (0.9, 0.999, 1e-8, 0.1);
        let m2 = m * b1 + g * (1.0 - b1);
        let v2 = v * b2 + g.square() * (1.0 - b2);
        m.shallow_clone().copy_(&m2);
        v.shallow_clone().copy_(&v2);
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        p * (1.0 - lr * wd) - (&m2 / bc1) / ((&v2 / bc2).sqrt() + eps) * lr
    }

    #[test]
    fn in_place_update_is_bit_for_bit_the_out_of_place_expression() {
        let cfg = OptimConfig {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.1,
            ..OptimConfig::default()
        };
        // Magnitudes over many decades (2^-20 to 2^20) and exact zeros, where a changed rounding
        // would show; no global RNG (tests share it across threads).
        let spread = |seed: i64| {
            let i = Tensor::arange(4096, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float) + seed;
            (&i * 0.618).sin() * ((&i * 0.37).cos() * 20.0).exp2()
        };
        // The fused update (fp32 CPU) and the tensor ops it replaces.
        for (chunk, unfused) in [(ADAMW_CHUNK, false), (1000, false), (1000, true)] {
            UNFUSED.with(|f| f.set(unfused));
            let p = spread(11).set_requires_grad(true);
            let mut p_ref = p.detach().copy();
            let (m_ref, v_ref) = (p_ref.zeros_like(), p_ref.zeros_like());
            let mut opt = AdamW::new(vec![p.shallow_clone()], &cfg);
            opt.chunk = chunk;
            for t in 1..=5 {
                let g = spread(100 + t as i64) * 1e-3;
                let _ = g.narrow(0, 0, 64).zero_();
                opt.zero_grad();
                (&p * &g).sum(Kind::Float).backward(); // the gradient is exactly `g`
                let lr = 0.01 * t as f64;
                opt.step(lr);
                p_ref = reference_step(&p_ref, &m_ref, &v_ref, &g, t, lr);
                assert!(p.detach().equal(&p_ref), "chunk {chunk}, step {t}");
                assert!(opt.m[0].equal(&m_ref), "chunk {chunk}, step {t}");
                assert!(opt.v[0].equal(&v_ref), "chunk {chunk}, step {t}");
            }
        }
        UNFUSED.with(|f| f.set(false));
    }

    #[test]
    fn the_fused_update_takes_fp32_cpu_buffers_only() {
        let k = [0.9, 0.999, 1.0, 0.1, 0.001, 1e-8, 0.01];
        let buf = |kind| Tensor::ones([8], (kind, Device::Cpu));
        let [p, m, v] = [0, 1, 2].map(|_| buf(Kind::Float));
        let g = buf(Kind::Float) * 0.5;
        assert!(fused_update([&p, &m, &v], &g, k));
        assert!(
            m.allclose(&(buf(Kind::Float) * 0.95), 1e-6, 1e-7, false),
            "m moved"
        );
        let [p, m, v] = [0, 1, 2].map(|_| buf(Kind::Double));
        assert!(!fused_update([&p, &m, &v], &g.to_kind(Kind::Double), k));
        assert!(m.equal(&buf(Kind::Double)), "untouched when refused");
        // A size mismatch is refused before anything is written.
        let [p, m, v] = [0, 1, 2].map(|_| buf(Kind::Float));
        assert!(!fused_update([&p, &m, &v.narrow(0, 0, 4)], &g, k));
        assert!(p.equal(&buf(Kind::Float)) && m.equal(&buf(Kind::Float)));
    }

    #[test]
    fn parameters_and_gradients_live_in_the_flat_buffers() {
        let ps = params(1);
        let before: Vec<Vec<f32>> = ps
            .iter()
            .map(|p| Vec::<f32>::try_from(p.detach().reshape([-1])).unwrap())
            .collect();
        let mut opt = AdamW::new(
            ps.iter().map(Tensor::shallow_clone).collect(),
            &OptimConfig::default(),
        );
        let f = opt.flat.as_ref().unwrap();
        assert_eq!(f.p.numel(), 15 + 7 + 8);
        let after: Vec<Vec<f32>> = ps
            .iter()
            .map(|p| Vec::<f32>::try_from(p.detach().reshape([-1])).unwrap())
            .collect();
        assert_eq!(before, after, "moving into the buffer keeps the values");
        ps.iter()
            .map(|p| p.sum(Kind::Float))
            .fold(Tensor::from(0f32), |a, b| a + b)
            .backward();
        let g = opt.flat_grads().unwrap();
        assert_eq!(g.sum(Kind::Float).double_value(&[]), 30.0);
        // A second backward accumulates into the same buffer.
        ps[1].sum(Kind::Float).backward();
        assert_eq!(g.sum(Kind::Float).double_value(&[]), 37.0);
        opt.zero_grad();
        assert_eq!(ps[2].grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn mixed_dtypes_fall_back_to_per_tensor_updates() {
        let a = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::ones([2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![a.shallow_clone(), b.shallow_clone()],
            &OptimConfig::default(),
        );
        assert!(opt.flat.is_none());
        (a.sum(Kind::Float) + b.sum(Kind::Float)).backward();
        opt.step(0.1);
        assert!(a.double_value(&[0]) < 1.0 && b.double_value(&[0]) < 1.0);
    }

    #[test]
    fn clipping_reports_pre_clip_norm() {
        let p = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&p * Tensor::from_slice(&[3.0f32, 4.0]))
            .sum(Kind::Float)
            .backward();
        let n = clip_grad_norm(&[p.shallow_clone()], 1.0);
        assert!((n - 5.0).abs() < 1e-6);
        let g = p.grad().norm().double_value(&[]);
        assert!((g - 1.0).abs() < 1e-5, "{g}");
    }

    #[test]
    fn schedules() {
        let mut cfg = OptimConfig {
            lr: 1.0,
            warmup_steps: 4,
            schedule: Schedule::LinearWarmup,
            ..OptimConfig::default()
        };
        assert_eq!(lr_at(&cfg, 0, 10), 0.25);
        assert_eq!(lr_at(&cfg, 3, 10), 1.0);
        assert_eq!(lr_at(&cfg, 9, 10), 1.0);
        cfg.schedule = Schedule::Cosine;
        assert_eq!(lr_at(&cfg, 4, 10), 1.0);
        assert!(lr_at(&cfg, 7, 10) < 1.0 && lr_at(&cfg, 7, 10) > 0.0);
        assert!(lr_at(&cfg, 10, 10).abs() < 1e-12);
        cfg.schedule = Schedule::Constant;
        assert_eq!(lr_at(&cfg, 0, 10), 1.0);
    }
}
