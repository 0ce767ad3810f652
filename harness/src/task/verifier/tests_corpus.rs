//! The verifier on a labelled corpus of (reference, response) pairs, beside `math-verify`'s
//! verdicts on the same pairs (`tests/fixtures/math/grading/`: `make_corpus.py` writes the
//! corpus, `make_math_verify.py` the verdicts with math-verify 0.9.0). Every disagreement is
//! printed with what each side extracted and which matches the label.
use super::grade;
use serde::Deserialize;

#[derive(Deserialize)]
struct Pair {
    id: usize,
    category: String,
    reference: String,
    response: String,
    label: bool,
}

#[derive(Deserialize)]
struct MathVerify {
    id: usize,
    verdict: bool,
    extracted: Vec<String>,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/math/grading")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn verifier_is_at_least_as_accurate_as_math_verify_and_agrees_with_it() {
    let pairs: Vec<Pair> = read_jsonl("corpus.jsonl");
    let mv: Vec<MathVerify> = read_jsonl("math_verify.jsonl");
    assert!(pairs.len() >= 400, "corpus has {} pairs", pairs.len());
    assert_eq!(pairs.len(), mv.len(), "regenerate math_verify.jsonl");
    let (mut ours_right, mut mv_right, mut agree) = (0, 0, 0);
    let mut report = Vec::new();
    for (p, m) in pairs.iter().zip(&mv) {
        assert_eq!(p.id, m.id);
        let v = grade(&p.response, &p.reference);
        ours_right += usize::from(v.correct == p.label);
        mv_right += usize::from(m.verdict == p.label);
        if v.correct == m.verdict {
            agree += 1;
            if v.correct != p.label {
                report.push(format!(
                    "  both wrong #{} [{}] ref {:?}: label {}, we extracted {:?}, math-verify {:?}",
                    p.id, p.category, p.reference, p.label, v.extracted, m.extracted
                ));
            }
            continue;
        }
        let who = if v.correct == p.label {
            "we are right"
        } else {
            "math-verify is right"
        };
        report.push(format!(
            "  disagree #{} [{}] {who}: ref {:?}, label {}; we say {} (extracted {:?}), \
             math-verify {} (extracted {:?})",
            p.id, p.category, p.reference, p.label, v.correct, v.extracted, m.verdict, m.extracted
        ));
    }
    let n = pairs.len() as f64;
    let (ours, theirs, agreement) = (ours_right as f64 / n, mv_right as f64 / n, agree as f64 / n);
    println!(
        "grading corpus: {} pairs; verifier right on {:.1}%, math-verify on {:.1}%, \
         agreement {:.1}%\n{}",
        pairs.len(),
        100.0 * ours,
        100.0 * theirs,
        100.0 * agreement,
        report.join("\n")
    );
    assert!(
        ours >= theirs,
        "verifier {ours:.3} < math-verify {theirs:.3}"
    );
    assert!(agreement >= 0.90, "agreement {agreement:.3} < 0.90");
}
