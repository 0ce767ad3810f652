//! Seed aggregation: mean, sample std, 95 % confidence half-width (Student t, n − 1 dof).

/// Statistics of one metric over seeds. `std` and `ci95` need n ≥ 2, `mean` n ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedStats {
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub ci95: Option<f64>,
    pub n: u32,
}

/// Aggregate the finite values of `xs` (non-finite ones are left out of `n`).
pub fn seed_stats(xs: &[f64]) -> SeedStats {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return SeedStats {
            mean: None,
            std: None,
            ci95: None,
            n: 0,
        };
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return SeedStats {
            mean: Some(mean),
            std: None,
            ci95: None,
            n: 1,
        };
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let std = var.sqrt();
    SeedStats {
        mean: Some(mean),
        std: Some(std),
        ci95: Some(t975(n - 1) * std / (n as f64).sqrt()),
        n: n as u32,
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (exact table to 30, then the
/// Cornish–Fisher expansion, error < 1e-6).
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706204736,
        4.302652730,
        3.182446305,
        2.776445105,
        2.570581836,
        2.446911851,
        2.364624252,
        2.306004135,
        2.262157163,
        2.228138852,
        2.200985160,
        2.178812830,
        2.160368656,
        2.144786688,
        2.131449546,
        2.119905299,
        2.109815578,
        2.100922040,
        2.093024054,
        2.085963447,
        2.079613845,
        2.073873068,
        2.068657610,
        2.063898562,
        2.059538553,
        2.055529439,
        2.051830516,
        2.048407142,
        2.045229642,
        2.042272456,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        _ => {
            let z = 1.959963984540054_f64;
            let n = df as f64;
            z + (z.powi(3) + z) / (4.0 * n)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
                + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z)
                    / (384.0 * n.powi(3))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let s = seed_stats(&[1.0, 2.0, 3.0]);
        assert_eq!(s.n, 3);
        assert_eq!(s.mean, Some(2.0));
        assert!((s.std.unwrap() - 1.0).abs() < 1e-12);
        assert!((s.ci95.unwrap() - 4.302652730 / 3f64.sqrt()).abs() < 1e-9);
        let one = seed_stats(&[5.0, f64::NAN]);
        assert_eq!(
            (one.mean, one.std, one.ci95, one.n),
            (Some(5.0), None, None, 1)
        );
        assert_eq!(seed_stats(&[]).mean, None);
    }

    #[test]
    fn t_quantiles_join_smoothly() {
        // Published: t(40) = 2.021075, t(60) = 2.000298, t(120) = 1.979930.
        assert!((t975(40) - 2.021075).abs() < 1e-5);
        assert!((t975(60) - 2.000298).abs() < 1e-5);
        assert!((t975(120) - 1.979930).abs() < 1e-5);
        assert!(t975(31) < t975(30));
    }
}
