//! Statistics over seeds: aggregation (mean, sample std, 95 % confidence half-width), Student's t
//! distribution, and the t test a claim uses ([`mean_test`]: a t interval for the mean of paired
//! per-seed differences, or of one point's values minus a fixed number, with the smallest
//! difference the test could detect).

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
    let (mean, std) = (mean(&v), sample_std(&v));
    SeedStats {
        mean,
        std,
        ci95: std.map(|s| t975(n - 1) * s / (n as f64).sqrt()),
        n: n as u32,
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Sample standard deviation (n − 1 in the denominator); needs n ≥ 2.
pub fn sample_std(v: &[f64]) -> Option<f64> {
    let n = v.len();
    let m = mean(v).filter(|_| n >= 2)?;
    Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt())
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (NaN for df = 0).
pub fn t975(df: usize) -> f64 {
    t_quantile(0.975, df as f64)
}

/// A t test on the mean of `d` — per-seed paired differences (b − a over the seeds both points
/// ran), or one point's per-seed values minus a fixed number — signed so that the claim says
/// the mean is positive.
///
/// - Interval: `mean ± t(1 − α/2, n − 1) · sd / √n`, the two-sided (1 − α) Student t interval.
///   The claim is supported at level α/2 one-sided when the whole interval is above 0.
/// - Detectable difference (Zar, *Biostatistical Analysis*, minimum detectable difference of
///   the paired / one-sample t test): `(t(1 − α/2, n − 1) + t(power, n − 1)) · sd / √n`, the
///   smallest true mean difference the interval would exclude 0 for with probability `power`,
///   at this n and this spread (sd of the differences: pairing removes the between-seed noise
///   the cases share).
///
/// `sd`, the interval and the detectable difference need n ≥ 2; below that a claim is "n/a".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanTest {
    pub n: usize,
    pub mean: Option<f64>,
    pub sd: Option<f64>,
    pub half_width: Option<f64>,
    pub detectable: Option<f64>,
    /// Two-sided: the interval's confidence is 1 − α.
    pub alpha: f64,
    pub power: f64,
}

impl MeanTest {
    /// The interval `(low, high)`, when n ≥ 2.
    pub fn interval(&self) -> Option<(f64, f64)> {
        Some((self.mean? - self.half_width?, self.mean? + self.half_width?))
    }
    pub fn df(&self) -> usize {
        self.n.saturating_sub(1)
    }
}

/// [`MeanTest`] of the finite values of `d` at level `alpha` (0 < α < 1) and `power` (0 < p < 1).
pub fn mean_test(d: &[f64], alpha: f64, power: f64) -> MeanTest {
    let v: Vec<f64> = d.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    let sd = sample_std(&v);
    let se = sd.map(|s| s / (n as f64).sqrt());
    let df = n.saturating_sub(1) as f64;
    let t_alpha = t_quantile(1.0 - alpha / 2.0, df);
    MeanTest {
        n,
        mean: mean(&v),
        sd,
        half_width: se.map(|se| t_alpha * se),
        detectable: se.map(|se| (t_alpha + t_quantile(power, df)) * se),
        alpha,
        power,
    }
}

/// The `p` quantile of Student's t with `df` > 0 degrees of freedom (NaN for df ≤ 0 or p outside
/// (0, 1)): the CDF inverted by bisection, to about 1e-12.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(df > 0.0 && p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let mut hi = 1.0;
    while t_cdf(hi, df) < p {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-13 * hi.max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// CDF of Student's t with `df` > 0 degrees of freedom: `1 − I_x(df/2, 1/2) / 2` for t ≥ 0, with
/// `x = df / (df + t²)` and `I` the regularized incomplete beta function.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * inc_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// Regularized incomplete beta `I_x(a, b)`, by its continued fraction (modified Lentz), using
/// the symmetry `I_x(a, b) = 1 − I_{1−x}(b, a)` where the fraction converges slowly.
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        h *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error about 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut s = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        s += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
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

    /// Published quantiles of Student's t (the 0.975 table), and others computed with mpmath 1.3
    /// (`betainc` inverted by `findroot`, 30 digits).
    #[test]
    fn t_quantiles_match_published_tables() {
        const T975: [f64; 30] = [
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
        for (i, want) in T975.iter().enumerate() {
            let got = t975(i + 1);
            assert!((got - want).abs() < 1e-8, "df {}: {got} vs {want}", i + 1);
        }
        for (p, df, want) in [
            (0.975, 40.0, 2.021075390),
            (0.975, 120.0, 1.979930405),
            (0.8, 1.0, 1.376381920),
            (0.8, 3.0, 0.978472312),
            (0.8, 7.0, 0.896029644),
            (0.95, 5.0, 2.015048373),
            (0.995, 7.0, 3.499483297),
            (0.9, 2.5, 1.730250929),
        ] {
            let got = t_quantile(p, df);
            assert!(
                (got - want).abs() < 1e-8,
                "t({p}, {df}) = {got}, not {want}"
            );
            assert!((t_quantile(1.0 - p, df) + want).abs() < 1e-8);
        }
        assert!((t_quantile(0.5, 4.0)).abs() < 1e-12);
        assert!(t975(0).is_nan() && t_quantile(1.0, 3.0).is_nan());
        // The normal limit.
        assert!((t_quantile(0.975, 1e7) - 1.959963985).abs() < 1e-6);
    }

    #[test]
    fn t_cdf_known_values() {
        // df = 1 is Cauchy: F(t) = 1/2 + atan(t)/π; df = 2: F(t) = 1/2 + t / (2√(2 + t²)).
        for t in [-3.0, -0.5, 0.0, 0.7, 4.0] {
            let cauchy = 0.5 + f64::atan(t) / std::f64::consts::PI;
            assert!((t_cdf(t, 1.0) - cauchy).abs() < 1e-13, "{t}");
            let two = 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
            assert!((t_cdf(t, 2.0) - two).abs() < 1e-13, "{t}");
        }
    }

    /// A worked example: differences 1, 2, 3, 4 (n = 4, mean 2.5, sd √(5/3)).
    #[test]
    fn mean_test_known_answer() {
        let r = mean_test(&[1.0, 2.0, 3.0, 4.0], 0.05, 0.8);
        let se = (5.0f64 / 3.0).sqrt() / 2.0;
        assert_eq!((r.n, r.df(), r.mean), (4, 3, Some(2.5)));
        assert!((r.sd.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // t(0.975, 3) = 3.182446305: interval 2.5 ± 2.0543 = [0.4457, 4.5543].
        let (lo, hi) = r.interval().unwrap();
        assert!((lo - (2.5 - 3.182446305 * se)).abs() < 1e-8, "{lo}");
        assert!((hi - 4.554260257).abs() < 1e-8, "{hi}");
        // Detectable: (t(0.975, 3) + t(0.8, 3)) · se = (3.182446305 + 0.978472312) · 0.6455.
        let want = (3.182446305 + 0.978472312) * se;
        assert!((r.detectable.unwrap() - want).abs() < 1e-8);
        assert!((r.detectable.unwrap() - 2.685861419).abs() < 1e-8);
        // A looser α narrows the interval and the detectable difference.
        let loose = mean_test(&[1.0, 2.0, 3.0, 4.0], 0.2, 0.8);
        assert!(loose.half_width < r.half_width && loose.detectable < r.detectable);
    }

    #[test]
    fn mean_test_needs_two_values() {
        for d in [&[][..], &[0.3][..], &[0.3, f64::NAN][..]] {
            let r = mean_test(d, 0.05, 0.8);
            assert_eq!((r.sd, r.half_width, r.detectable), (None, None, None));
            assert_eq!(r.interval(), None);
        }
        assert_eq!(mean_test(&[0.3], 0.05, 0.8).mean, Some(0.3));
        // Two equal differences: no spread, a zero-width interval.
        let r = mean_test(&[0.2, 0.2], 0.05, 0.8);
        assert_eq!(r.interval(), Some((0.2, 0.2)));
    }
}
