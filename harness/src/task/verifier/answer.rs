//! Answers as structures (a value, an equation, a tuple, an unordered set or list, an interval, a
//! union of intervals, a matrix, a multiple-choice letter, free text) and their equivalence.
//! Expressions compare by value: both sides are evaluated at the same random points (numbers
//! alone: once), so `x+1 ≡ 1+x`, `(x-1)(x+1) ≡ x^2-1` and `1/√2 ≡ √2/2`.
use super::expr::{parse, Expr};
use super::normalize::clean;
use crate::task::Rng;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Value(Expr),
    /// `lhs = rhs` where lhs is not a lone variable.
    Equation(Expr, Expr),
    Tuple(Vec<Answer>),
    /// Order does not matter: `\{1, 2\}`, `1, 2`, `x = 1 \text{ or } x = 2`, `1 \pm \sqrt2`.
    Set(Vec<Answer>),
    Interval {
        lo: Expr,
        hi: Expr,
        lo_closed: bool,
        hi_closed: bool,
    },
    Matrix(Vec<Vec<Answer>>),
    /// `lhs < rhs` (`strict`) or `lhs ≤ rhs`; `>` and `≥` are stored with the sides swapped.
    Relation {
        lhs: Expr,
        rhs: Expr,
        strict: bool,
    },
    Choice(char),
    Text(String),
}

/// Relative tolerance of numeric comparisons of non-integers (values near 0: absolute), tight
/// enough that `3.14159 ≠ π` and loose enough for rounding between equivalent forms.
const TOL: f64 = 1e-8;
/// Random points at which expressions with variables are compared.
const POINTS: usize = 8;

/// Longest answer parsed as mathematics, and the deepest bracket nesting: anything beyond
/// compares as text (model output can be arbitrarily long or deep; grading must stay fast and
/// never overflow the stack).
const MAX_LEN: usize = 2000;
const MAX_DEPTH: usize = 32;

/// Parse a (raw) answer string.
pub fn parse_answer(raw: &str) -> Answer {
    if raw.len() > MAX_LEN {
        return Answer::Text(canonical_text(raw));
    }
    let s = clean(raw);
    if nesting(&s) > MAX_DEPTH {
        return Answer::Text(canonical_text(&s));
    }
    structure(&s)
}

fn nesting(s: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn structure(s: &str) -> Answer {
    let s = s.trim();
    if let Some(c) = choice(s) {
        return Answer::Choice(c);
    }
    if let Some(m) = matrix(s) {
        return m;
    }
    let unions = split_top(s, &["\\cup"]);
    if unions.len() > 1 {
        return Answer::Set(unions.iter().map(|p| structure(p)).collect());
    }
    if let Some(inner) = strip_pair(s, "\\{", "\\}") {
        return Answer::Set(list(inner));
    }
    if let Some(a) = bracketed(s) {
        return a;
    }
    let parts = split_top(
        s,
        &[",", ";", "\\text{ or }", " or ", " and ", "\\text{ and }"],
    );
    if parts.len() > 1 {
        return Answer::Set(parts.iter().map(|p| structure(p)).collect());
    }
    if let Some((a, b)) = s.split_once("\\pm") {
        if !b.contains("\\pm") {
            let plus = structure(&format!("{a}+{b}"));
            let minus = structure(&format!("{a}-{b}"));
            return Answer::Set(vec![plus, minus]);
        }
    }
    if let Some(rest) = strip_membership(s) {
        return structure(rest);
    }
    if let Some(r) = relation(s) {
        return r;
    }
    let sides = split_top(s, &["="]);
    if sides.len() == 2 {
        let (lhs, rhs) = (sides[0].trim(), sides[1].trim());
        if is_lone_variable(lhs) {
            return structure(rhs);
        }
        if let (Some(l), Some(r)) = (parse(lhs), parse(rhs)) {
            return Answer::Equation(l, r);
        }
    }
    match parse(s) {
        Some(e) if !is_word(s) => Answer::Value(e),
        _ => Answer::Text(canonical_text(s)),
    }
}

/// `x > 3`, `3 < x`, `x \le 2` (one relation; chains are left as text).
fn relation(s: &str) -> Option<Answer> {
    const OPS: &[(&str, bool, bool)] = &[
        // (operator, strict, sides swapped)
        ("\\le", false, false),
        ("\\ge", false, true),
        ("<", true, false),
        (">", true, true),
    ];
    let parts = split_top(s, &["\\le", "\\ge", "<", ">"]);
    if parts.len() != 2 {
        return None;
    }
    // parts are slices of `s`: the operator follows the first one
    let op_at = parts[0].as_ptr() as usize - s.as_ptr() as usize + parts[0].len();
    let rest = s.get(op_at..)?;
    let &(op, strict, swapped) = OPS.iter().find(|(op, _, _)| rest.starts_with(op))?;
    let (l, r) = (
        parse(parts[0].trim())?,
        parse(s[op_at + op.len()..].trim())?,
    );
    let (lhs, rhs) = if swapped { (r, l) } else { (l, r) };
    Some(Answer::Relation { lhs, rhs, strict })
}

/// `(B)`, `B`, `\textbf{(B)}` (already unwrapped): a letter A–E on its own.
fn choice(s: &str) -> Option<char> {
    let t = s.trim_start_matches('(').trim_end_matches(')').trim();
    let mut it = t.chars();
    let c = it.next()?;
    (it.next().is_none() && ('A'..='E').contains(&c) && s.len() <= 3).then_some(c)
}

fn matrix(s: &str) -> Option<Answer> {
    for env in ["pmatrix", "bmatrix", "matrix", "vmatrix"] {
        let begin = format!("\\begin{{{env}}}");
        let end = format!("\\end{{{env}}}");
        if let Some(body) = s.strip_prefix(&begin).and_then(|r| r.strip_suffix(&end)) {
            let rows = body
                .split("\\\\")
                .filter(|r| !r.trim().is_empty())
                .map(|r| r.split('&').map(structure).collect())
                .collect();
            return Some(Answer::Matrix(rows));
        }
    }
    None
}

/// `x \in [1, 2]` → `[1, 2]`.
fn strip_membership(s: &str) -> Option<&str> {
    let (lhs, rhs) = s.split_once("\\in")?;
    (is_lone_variable(lhs.trim()) && !rhs.starts_with(|c: char| c.is_ascii_alphabetic()))
        .then_some(rhs.trim())
}

/// `(a, b)` → tuple; `[a, b]`, `[a, b)`, `(a, b]` → interval; `(−∞, 3)` → interval.
fn bracketed(s: &str) -> Option<Answer> {
    let open = s.chars().next()?;
    let close = s.chars().last()?;
    if !matches!(open, '(' | '[') || !matches!(close, ')' | ']') || s.len() < 2 {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    if !balanced(inner) {
        return None;
    }
    let items = split_top(inner, &[","]);
    if items.len() < 2 {
        return None;
    }
    let infinite = inner.contains("\\infty");
    if items.len() == 2 && (open != close_of(close) || infinite || open == '[') {
        let lo = parse(items[0].trim())?;
        let hi = parse(items[1].trim())?;
        return Some(Answer::Interval {
            lo,
            hi,
            lo_closed: open == '[',
            hi_closed: close == ']',
        });
    }
    Some(Answer::Tuple(items.iter().map(|i| structure(i)).collect()))
}

fn close_of(c: char) -> char {
    match c {
        ')' => '(',
        ']' => '[',
        _ => c,
    }
}

fn list(inner: &str) -> Vec<Answer> {
    split_top(inner, &[",", ";"])
        .iter()
        .map(|p| structure(p))
        .collect()
}

fn strip_pair<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let inner = s.strip_prefix(open)?.strip_suffix(close)?;
    balanced(inner).then_some(inner)
}

/// Brackets balance (any of `()[]{}`, each closing the last opened one loosely: intervals
/// like `[1, 2)` count as balanced).
fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// Split on any of `seps` at bracket depth 0 (and outside `\{ \}`).
fn split_top<'a>(s: &'a str, seps: &[&str]) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let mut i = 0;
    let b = s.as_bytes();
    while i < s.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && s.is_char_boundary(i) {
            if let Some(sep) = seps.iter().find(|sep| s[i..].starts_with(*sep)) {
                parts.push(&s[start..i]);
                i += sep.len();
                start = i;
                continue;
            }
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

fn is_lone_variable(s: &str) -> bool {
    let s = s.trim();
    let mut c = s.chars();
    match c.next() {
        Some(first) if first.is_ascii_alphabetic() => {
            let rest = c.as_str();
            rest.is_empty()
                || rest.starts_with('_')
                || rest == "(x)"
                || rest == "(n)"
                || rest == "(t)"
        }
        Some('\\') => s.len() > 1 && s[1..].chars().all(|c| c.is_ascii_alphabetic()) && s != "\\pi",
        _ => false,
    }
}

/// A word (a name, `odd`, `No`), not a product of variables: two or more letters and nothing
/// else (so `xy` reads as a word too; products in answers carry a number or an operator).
fn is_word(s: &str) -> bool {
    s.chars().filter(|c| c.is_alphabetic()).count() >= 2
        && s.chars().all(|c| c.is_alphabetic() || c == ' ' || c == '-')
}

fn canonical_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '{' | '}' | '\\' | '.'))
        .collect::<String>()
        .to_lowercase()
}

/// Whether two answers are the same mathematical object.
pub fn equivalent(a: &Answer, b: &Answer) -> bool {
    use Answer::*;
    match (a, b) {
        (Set(x), y) | (y, Set(x)) if x.len() == 1 && !matches!(y, Set(_)) => equivalent(&x[0], y),
        (Value(x), Value(y)) => same_value(x, y),
        (Equation(l1, r1), Equation(l2, r2)) => {
            let d1 = Expr::Sub(Box::new(l1.clone()), Box::new(r1.clone()));
            let d2 = Expr::Sub(Box::new(l2.clone()), Box::new(r2.clone()));
            let neg = Expr::Neg(Box::new(d2.clone()));
            same_value(&d1, &d2) || same_value(&d1, &neg)
        }
        (Tuple(x), Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equivalent(p, q))
        }
        (Set(x), Set(y)) => same_multiset(x, y),
        (
            Interval {
                lo: l1,
                hi: h1,
                lo_closed: lc1,
                hi_closed: hc1,
            },
            Interval {
                lo: l2,
                hi: h2,
                lo_closed: lc2,
                hi_closed: hc2,
            },
        ) => lc1 == lc2 && hc1 == hc2 && same_value(l1, l2) && same_value(h1, h2),
        // `(a, b)` read as a point vs an open interval
        (
            Tuple(t),
            Interval {
                lo,
                hi,
                lo_closed: false,
                hi_closed: false,
            },
        )
        | (
            Interval {
                lo,
                hi,
                lo_closed: false,
                hi_closed: false,
            },
            Tuple(t),
        ) => {
            t.len() == 2
                && equivalent(&t[0], &Value(lo.clone()))
                && equivalent(&t[1], &Value(hi.clone()))
        }
        (Matrix(x), Matrix(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(r, q)| {
                    r.len() == q.len() && r.iter().zip(q).all(|(p, q)| equivalent(p, q))
                })
        }
        // a column vector written as a tuple
        (Matrix(m), Tuple(t)) | (Tuple(t), Matrix(m)) => {
            m.len() == t.len()
                && m.iter()
                    .zip(t)
                    .all(|(row, x)| row.len() == 1 && equivalent(&row[0], x))
        }
        (
            Relation {
                lhs: l1,
                rhs: r1,
                strict: s1,
            },
            Relation {
                lhs: l2,
                rhs: r2,
                strict: s2,
            },
        ) => s1 == s2 && same_value(l1, l2) && same_value(r1, r2),
        (Choice(x), Choice(y)) => x == y,
        (Choice(c), Text(t)) | (Text(t), Choice(c)) => {
            t.trim_matches(['(', ')']) == c.to_lowercase().to_string()
        }
        (Text(x), Text(y)) => x == y,
        _ => false,
    }
}

/// Elements beyond which sets are matched greedily (backtracking is factorial in the worst case).
const MAX_BACKTRACK: usize = 10;

fn same_multiset(x: &[Answer], y: &[Answer]) -> bool {
    if x.len() != y.len() {
        return false;
    }
    if x.len() > MAX_BACKTRACK {
        let mut used = vec![false; y.len()];
        return x.iter().all(|a| {
            let j = (0..y.len()).find(|&j| !used[j] && equivalent(a, &y[j]));
            j.map(|j| used[j] = true).is_some()
        });
    }
    fn assign(x: &[Answer], y: &[Answer], used: &mut Vec<bool>) -> bool {
        let Some((first, rest)) = x.split_first() else {
            return true;
        };
        for j in 0..y.len() {
            if !used[j] && equivalent(first, &y[j]) {
                used[j] = true;
                if assign(rest, y, used) {
                    return true;
                }
                used[j] = false;
            }
        }
        false
    }
    assign(x, y, &mut vec![false; y.len()])
}

fn close(a: f64, b: f64) -> bool {
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    // Integers exactly (`1234568 ≠ 1234567`), up to where f64 holds them exactly.
    let exact = |x: f64| x.fract() == 0.0 && x.abs() < 9.0e15;
    if exact(a) && exact(b) {
        return a == b;
    }
    (a - b).abs() <= TOL * a.abs().max(b.abs()).max(1.0)
}

/// Equal as functions of their variables: at every one of several random points (where both
/// are defined), or once when there are none.
pub fn same_value(x: &Expr, y: &Expr) -> bool {
    if x == y {
        return true;
    }
    let mut vars = Vec::new();
    x.vars(&mut vars);
    y.vars(&mut vars);
    if vars.is_empty() {
        let (a, b) = (x.eval(&BTreeMap::new()), y.eval(&BTreeMap::new()));
        return !a.is_nan() && !b.is_nan() && close(a, b);
    }
    let mut rng = Rng::new(0x5eed, vars.len() as u64);
    let mut checked = 0;
    for _ in 0..POINTS * 4 {
        let point: BTreeMap<String, f64> = vars
            .iter()
            .map(|v| {
                (
                    v.clone(),
                    0.3 + 2.0 * (rng.below(1 << 30) as f64 / (1u64 << 30) as f64),
                )
            })
            .collect();
        let (a, b) = (x.eval(&point), y.eval(&point));
        match (a.is_finite(), b.is_finite()) {
            (true, true) => {
                if !close(a, b) {
                    return false;
                }
                checked += 1;
                if checked == POINTS {
                    return true;
                }
            }
            (false, false) => {}
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) -> bool {
        equivalent(&parse_answer(a), &parse_answer(b))
    }

    #[test]
    fn pathological_answers_stay_cheap() {
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(parse_answer(&deep), Answer::Text(_)));
        let long = "1+".repeat(3000) + "1";
        assert!(matches!(parse_answer(&long), Answer::Text(_)));
        assert!(!same("\\binom{10}{1000000000000}", "0"));
        let ones = vec!["1"; 40].join(",");
        assert!(!same(&ones, &(ones.clone() + ",1")));
        assert!(!same("\u{130}x < \u{e9}", "x"));
    }

    #[test]
    fn equivalent_forms() {
        let yes = [
            ("x+1", "1+x"),
            ("(x-1)(x+1)", "x^2-1"),
            ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
            ("\\{3, 1, 2\\}", "\\{1,2,3\\}"),
            ("1, 2", "2, 1"),
            ("x = 1 \\text{ or } x = 2", "2, 1"),
            ("1 \\pm \\sqrt{2}", "1+\\sqrt2, 1-\\sqrt2"),
            ("[1, 3)", "[1,3)"),
            (
                "(-\\infty, 0) \\cup (1, \\infty)",
                "(1,\\infty)\\cup(-\\infty,0)",
            ),
            ("(1, 2)", "(1,2)"),
            ("x \\in [0, 1]", "[0,1]"),
            ("y = 2x + 3", "y = 3 + 2x"),
            ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)"),
            ("\\text{(B)}", "B"),
            ("\\text{Evelyn}", "evelyn"),
            ("1{,}000", "1000"),
            ("\u{2212}3", "-3"),
            ("x > 3", "3 < x"),
            ("x \\le 2", "x \\leq 2"),
            ("No", "no"),
            ("1,1,1,1,1,1,1,1,1,1,1,1,2", "2,1,1,1,1,1,1,1,1,1,1,1,1"),
        ];
        for (a, b) in yes {
            assert!(same(a, b), "{a} ≡ {b}");
        }
        let no = [
            ("x-1", "1-x"),
            ("(1, 2)", "(2, 1)"),
            ("[1, 3)", "[1, 3]"),
            ("\\{1, 2\\}", "\\{1, 2, 3\\}"),
            ("0.33", "\\frac13"),
            ("3.14", "\\pi"),
            ("x+1", "y+1"),
            ("(B)", "C"),
            ("\\sqrt{2}", "2"),
            ("x > 3", "x \\ge 3"),
            ("x > 3", "x < 3"),
            ("1234568", "1234567"),
            ("3.14159", "\\pi"),
        ];
        for (a, b) in no {
            assert!(!same(a, b), "{a} ≢ {b}");
        }
    }
}
