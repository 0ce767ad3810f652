//! Divergence guard: a run stops as `diverged` (with the step and reason) on a non-finite loss,
//! a gradient-norm explosion, or entropy collapse, instead of crashing or training on garbage.

pub struct Guard {
    pub max_grad_norm: f64,
    pub min_entropy: f64,
}

impl Guard {
    /// `None` if healthy, else the reason.
    pub fn check(&self, loss: f64, grad_norm: f64, entropy: f64) -> Option<String> {
        if !loss.is_finite() {
            return Some(format!("non-finite loss ({loss})"));
        }
        if !grad_norm.is_finite() || grad_norm > self.max_grad_norm {
            return Some(format!(
                "gradient norm {grad_norm:.3e} exceeds {:.3e}",
                self.max_grad_norm
            ));
        }
        if entropy < self.min_entropy {
            return Some(format!(
                "entropy collapsed to {entropy:.3e} (< {:.3e})",
                self.min_entropy
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons() {
        let g = super::Guard {
            max_grad_norm: 10.0,
            min_entropy: 0.01,
        };
        assert!(g.check(1.0, 1.0, 1.0).is_none());
        assert!(g.check(f64::NAN, 1.0, 1.0).unwrap().contains("non-finite"));
        assert!(g.check(1.0, 11.0, 1.0).unwrap().contains("gradient norm"));
        assert!(g.check(1.0, f64::INFINITY, 1.0).is_some());
        assert!(g.check(1.0, 1.0, 0.001).unwrap().contains("entropy"));
    }
}
