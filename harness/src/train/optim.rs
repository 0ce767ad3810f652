//! AdamW (decoupled weight decay, fp32 moments), learning-rate schedules, and global-norm gradient
//! clipping that reports the pre-clip norm.
use super::checkpoint::{copy_named, OptimState};
use crate::config::{OptimConfig, Schedule};
use crate::Result;
use std::path::Path;
use tch::{Kind, Tensor};

pub struct AdamW {
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Number of updates taken (for bias correction); part of the checkpoint.
    pub t: i64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    pub fn new(params: Vec<Tensor>, cfg: &OptimConfig) -> Self {
        let zeros = |p: &Tensor| p.zeros_like().to_kind(Kind::Float);
        AdamW {
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            params,
            t: 0,
            betas: cfg.betas,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update with learning rate `lr` from the gradients currently held by the parameters.
    pub fn step(&mut self, lr: f64) {
        self.t += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                if self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let update = (&*m / bc1) / ((&*v / bc2).sqrt() + self.eps) * lr;
                let _ = p.g_sub_(&update.to_kind(p.kind()));
            }
        });
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
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params
            .iter()
            .map(|p| p.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let sq: Vec<Tensor> = grads
            .iter()
            .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
            .collect();
        let norm = Tensor::stack(&sq, 0)
            .sum(Kind::Float)
            .sqrt()
            .double_value(&[]);
        if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        }
        norm
    })
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
