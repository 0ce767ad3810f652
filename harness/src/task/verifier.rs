//! Final-answer extraction and comparison for math: the last `\boxed{…}` (or `\fbox{…}`), else a
//! trailing "answer is …" / last number; normalised so `1/2`, `\frac{1}{2}`, `0.5` and `\dfrac12`
//! compare equal, as do `10`, `10.0`, `10,000`-style integers and `$x = 3$`.

/// The content of the last `\boxed{…}` / `\fbox{…}`, with nested braces.
pub fn last_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|i| (i, m.len())))
        .max()?;
    let rest = &text[start.0 + start.1..];
    let rest = rest.trim_start();
    if let Some(body) = rest.strip_prefix('{') {
        let mut depth = 1;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(body[..i].to_string());
                    }
                }
                _ => {}
            }
        }
        None
    } else {
        // `\boxed 5`
        rest.split(|c: char| c.is_whitespace() || c == '$')
            .find(|s| !s.is_empty())
            .map(str::to_string)
    }
}

/// The model's final answer: last boxed, else text after the last "answer is", else the last number.
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some(b) = last_boxed(text) {
        return Some(b);
    }
    let lower = text.to_lowercase();
    if let Some(i) = lower.rfind("answer is") {
        let tail = text[i + "answer is".len()..].trim();
        let tail = tail.trim_start_matches(':').trim();
        let end = tail.find('\n').unwrap_or(tail.len());
        let ans = tail[..end].trim().trim_end_matches('.').trim();
        if !ans.is_empty() {
            return Some(ans.to_string());
        }
    }
    last_number(text)
}

fn last_number(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut end = chars.len();
    while end > 0 {
        if chars[end - 1].is_ascii_digit() {
            let mut start = end;
            while start > 0
                && (chars[start - 1].is_ascii_digit()
                    || matches!(chars[start - 1], '.' | ',' | '/'))
            {
                start -= 1;
            }
            if start > 0 && chars[start - 1] == '-' {
                start -= 1;
            }
            let s: String = chars[start..end].iter().collect();
            return Some(s.trim_start_matches(['.', ',', '/']).to_string());
        }
        end -= 1;
    }
    None
}

/// Strip LaTeX wrappers and spacing so equivalent forms compare equal as strings.
pub fn normalize(ans: &str) -> String {
    let mut s = ans.trim().to_string();
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\ ", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\%", ""),
        ("%", ""),
        ("$", ""),
        ("\\$", ""),
        ("\\text{ }", ""),
    ] {
        s = s.replace(from, to);
    }
    // \text{...} / \mbox{...} → contents
    for wrapper in ["\\text{", "\\textbf{", "\\mbox{", "\\mathrm{"] {
        while let Some(i) = s.find(wrapper) {
            let body_start = i + wrapper.len();
            let Some(close) = s[body_start..].find('}') else {
                break;
            };
            let body = s[body_start..body_start + close].to_string();
            s.replace_range(i..body_start + close + 1, &body);
        }
    }
    // "x = 3" → "3"
    if let Some((lhs, rhs)) = s.split_once('=') {
        if lhs.trim().len() <= 2 && !rhs.trim().is_empty() {
            s = rhs.to_string();
        }
    }
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let s = s.trim_end_matches('.').to_string();
    // \frac12 → \frac{1}{2}
    let s = if let Some(rest) = s.strip_prefix("\\frac") {
        let c: Vec<char> = rest.chars().collect();
        if c.len() == 2 && c.iter().all(|x| x.is_ascii_digit()) {
            format!("\\frac{{{}}}{{{}}}", c[0], c[1])
        } else {
            s
        }
    } else {
        s
    };
    s
}

/// A number, if the normalised answer is an integer, decimal, `a/b` or `\frac{a}{b}` (optionally
/// negative; thousands separators allowed in integers).
pub fn numeric_value(norm: &str) -> Option<f64> {
    let (neg, body) = match norm.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, norm),
    };
    let v = if let Some(rest) = body.strip_prefix("\\frac{") {
        let (num, rest) = rest.split_once("}{")?;
        let den = rest.strip_suffix('}')?;
        num.parse::<f64>().ok()? / den.parse::<f64>().ok()?
    } else if let Some((a, b)) = body.split_once('/') {
        a.parse::<f64>().ok()? / b.parse::<f64>().ok()?
    } else {
        let plain = if body.contains(',')
            && body
                .split(',')
                .skip(1)
                .all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
        {
            body.replace(',', "")
        } else {
            body.to_string()
        };
        plain.parse::<f64>().ok()?
    };
    v.is_finite().then_some(if neg { -v } else { v })
}

/// Whether `response` (a full model output) answers `reference` correctly.
pub fn is_correct(response: &str, reference: &str) -> bool {
    let Some(got) = extract_answer(response) else {
        return false;
    };
    let (g, r) = (normalize(&got), normalize(reference));
    if g == r {
        return true;
    }
    match (numeric_value(&g), numeric_value(&r)) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_extraction_handles_nesting_and_last() {
        assert_eq!(
            last_boxed("so \\boxed{1} or \\boxed{\\frac{1}{2}}").unwrap(),
            "\\frac{1}{2}"
        );
        assert_eq!(last_boxed("\\boxed 7 done").unwrap(), "7");
        assert_eq!(last_boxed("\\fbox{x^{2}}").unwrap(), "x^{2}");
        assert!(last_boxed("\\boxed{unclosed").is_none());
        assert!(last_boxed("no box").is_none());
    }

    #[test]
    fn tricky_equivalences() {
        let yes = [
            ("The answer is \\boxed{\\dfrac{1}{2}}.", "1/2"),
            ("\\boxed{0.5}", "\\frac{1}{2}"),
            ("\\boxed{\\frac12}", "\\frac{1}{2}"),
            ("\\boxed{10.0}", "10"),
            ("\\boxed{10,000}", "10000"),
            ("\\boxed{x = 3}", "3"),
            ("\\boxed{$-4$}", "-4"),
            ("\\boxed{90^\\circ}", "90"),
            ("\\boxed{\\text{(B)}}", "(B)"),
            ("\\boxed{50\\%}", "50"),
            ("so the answer is 42.", "42"),
            ("we get 3, then 17", "17"),
            ("\\boxed{\\left( 1, 2 \\right)}", "(1,2)"),
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
        ];
        for (resp, reference) in no {
            assert!(
                !is_correct(resp, reference),
                "{resp} should not match {reference}"
            );
        }
    }
}
