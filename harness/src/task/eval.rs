//! avg@k and pass@k over a held-out set.

/// `correct[i][j]`: whether sample `j` of problem `i` was right. Returns (avg@k, pass@k) with
/// k = samples per problem: the mean accuracy over all samples, and the share of problems with at
/// least one correct sample.
pub fn avg_and_pass_at_k(correct: &[Vec<bool>]) -> (f64, f64) {
    if correct.is_empty() {
        return (0.0, 0.0);
    }
    let n = correct.len() as f64;
    let avg = correct
        .iter()
        .map(|s| s.iter().filter(|&&c| c).count() as f64 / s.len().max(1) as f64)
        .sum::<f64>()
        / n;
    let pass = correct.iter().filter(|s| s.iter().any(|&c| c)).count() as f64 / n;
    (avg, pass)
}

#[cfg(test)]
mod tests {
    #[test]
    fn avg_and_pass() {
        let c = vec![vec![true, false], vec![false, false], vec![true, true]];
        let (avg, pass) = super::avg_and_pass_at_k(&c);
        assert!((avg - 0.5).abs() < 1e-12);
        assert!((pass - 2.0 / 3.0).abs() < 1e-12);
    }
}
