//! Grading math answers: extract the final answer from a response ([`extract`]), clean it
//! ([`normalize`]), read it as a structure of expressions ([`answer`], [`expr`]) and compare it
//! with the reference by value. Expressions with variables are compared by evaluating both at
//! the same random points (a numeric test of symbolic equivalence: `x+1 ≡ 1+x`,
//! `(x-1)(x+1) ≡ x^2-1`); what does not parse is compared as normalised text.
//!
//! Accuracy is measured against `math-verify` on the labelled corpus in
//! `tests/fixtures/math/grading/` (see `tests_corpus.rs`).
pub mod answer;
pub mod expr;
pub mod extract;
pub mod normalize;
#[cfg(test)]
mod tests_corpus;

pub use extract::{extract_answer, last_boxed};

/// A grading decision and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub correct: bool,
    /// The answer extracted from the response (`None`: none found).
    pub extracted: Option<String>,
}

/// Grade a full model response against a reference answer.
pub fn grade(response: &str, reference: &str) -> Verdict {
    let extracted = extract_answer(response);
    let correct = extracted
        .as_deref()
        .is_some_and(|got| same_answer(got, reference));
    Verdict { correct, extracted }
}

/// Whether `response` (a full model output) answers `reference` correctly.
pub fn is_correct(response: &str, reference: &str) -> bool {
    grade(response, reference).correct
}

/// Whether two answer strings denote the same answer.
pub fn same_answer(a: &str, b: &str) -> bool {
    let (x, y) = (answer::parse_answer(a), answer::parse_answer(b));
    answer::equivalent(&x, &y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_the_reported_misses() {
        let yes = [
            (
                "Final Answer: The final answer is $42$. I hope it is correct.",
                "42",
            ),
            ("Answer: $\\frac{3}{4}$", "\\frac{3}{4}"),
            ("\\boxed{5 \\text{ cm}}", "5"),
            ("\\boxed{x+1}", "1+x"),
            ("\\boxed{(x-1)(x+1)}", "x^2-1"),
            ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{\\sqrt{2}}{2}"),
            ("\\boxed{\u{2212}3}", "-3"),
            ("\\boxed{\\{3, 1, 2\\}}", "\\{1, 2, 3\\}"),
            ("\\boxed{1{,}000}", "1000"),
            ("The answer is \\boxed{\\dfrac{1}{2}}.", "1/2"),
            ("\\boxed{0.5}", "\\frac{1}{2}"),
            ("\\boxed{10.0}", "10"),
            ("\\boxed{x = 3}", "3"),
            ("\\boxed{90^\\circ}", "90"),
            ("\\boxed{\\text{(B)}}", "(B)"),
        ];
        for (resp, reference) in yes {
            assert!(is_correct(resp, reference), "{resp} vs {reference}");
        }
        let no = [
            ("\\boxed{1/3}", "0.33"),
            ("\\boxed{12}", "21"),
            ("\\boxed{1,2}", "12"),
            ("no answer here", "5"),
            ("\\boxed{2} and later \\boxed{3}", "2"),
            ("\\boxed{x-1}", "1-x"),
            ("Answer: $\\frac{4}{3}$", "\\frac{3}{4}"),
        ];
        for (resp, reference) in no {
            assert!(
                !is_correct(resp, reference),
                "{resp} should not match {reference}"
            );
        }
    }
}
