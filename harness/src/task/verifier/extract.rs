//! The final answer in a model's response. After a `</think>` block only the text after it
//! counts (unless it holds no answer). Anchored answers win, the one that appears last first:
//! `\boxed{…}` / `\fbox{…}`, `The final answer is $…$` (Minerva's format), an `Answer: …` line
//! (DAPO-Math's format). Then a weaker `the answer is …`, then the last `$…$` / `\(…\)` /
//! `\[…\]` span or the last number, whichever ends later.
use super::normalize::matching_brace;

/// The final answer text (still raw LaTeX), if the response has one.
pub fn extract_answer(response: &str) -> Option<String> {
    if let Some(i) = response.rfind("</think>") {
        if let Some(a) = from_text(&response[i + "</think>".len()..]) {
            return Some(a);
        }
    }
    from_text(response)
}

fn from_text(text: &str) -> Option<String> {
    let mut anchored: Vec<(usize, String)> = Vec::new();
    if let Some(b) = last_boxed_at(text) {
        anchored.push(b);
    }
    if let Some((pos, tail)) = last_phrase(text, "final answer is") {
        anchored.push((pos, answer_after(tail)));
    }
    if let Some(a) = answer_line(text) {
        anchored.push(a);
    }
    anchored.sort_by_key(|(pos, _)| std::cmp::Reverse(*pos));
    if let Some((_, a)) = anchored.into_iter().find(|(_, a)| plausible(a)) {
        return Some(a);
    }
    if let Some((_, tail)) = last_phrase(text, "answer is") {
        let a = answer_after(tail);
        if plausible(&a) {
            return Some(a);
        }
    }
    let span = last_math_span(text);
    let number = last_number(text);
    match (span, number) {
        (Some((s_end, s)), Some((n_end, n))) => Some(if n_end > s_end { n } else { s }),
        (Some((_, s)), None) => Some(s),
        (None, Some((_, n))) => Some(n),
        (None, None) => None,
    }
}

/// An answer, not prose: non-empty, and at most a few plain words outside LaTeX commands.
fn plausible(a: &str) -> bool {
    let a = a.trim();
    if a.is_empty() || a.len() > 300 {
        return false;
    }
    let words = a
        .split(|c: char| !c.is_alphabetic() && c != '\\')
        .filter(|w| w.len() >= 3 && !w.starts_with('\\'))
        .count();
    words <= 4
}

/// The content of the last `\boxed{…}` / `\fbox{…}` (nested braces kept), or `\boxed 5`.
pub fn last_boxed(text: &str) -> Option<String> {
    last_boxed_at(text).map(|(_, s)| s)
}

fn last_boxed_at(text: &str) -> Option<(usize, String)> {
    let (start, len) = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|i| (i, m.len())))
        .max()?;
    let rest = &text[start + len..];
    let trimmed = rest.trim_start();
    let offset = start + len + (rest.len() - trimmed.len());
    if trimmed.starts_with('{') {
        let close = matching_brace(text, offset + 1)?;
        Some((start, text[offset + 1..close].to_string()))
    } else {
        let word = trimmed
            .split(|c: char| c.is_whitespace() || c == '$')
            .find(|s| !s.is_empty())?;
        Some((start, word.to_string()))
    }
}

/// Byte position of the last case-insensitive `phrase`, and the text after it.
fn last_phrase<'a>(text: &'a str, phrase: &str) -> Option<(usize, &'a str)> {
    let lower = text.to_ascii_lowercase();
    let i = lower.rfind(phrase)?;
    Some((i, &text[i + phrase.len()..]))
}

/// The last `Answer:` (also `**Answer:**`, `Final Answer:`) with text after it on its line.
fn answer_line(text: &str) -> Option<(usize, String)> {
    let lower = text.to_ascii_lowercase();
    let mut search = lower.len();
    while let Some(i) = lower[..search].rfind("answer") {
        let after = text[i + "answer".len()..].trim_start_matches(['*', ' ']);
        if let Some(rest) = after.strip_prefix(':').or_else(|| after.strip_prefix('：')) {
            let rest = rest.trim_start_matches(['*', ' ']);
            let line = rest.lines().next().unwrap_or("").trim();
            if !line.is_empty() {
                return Some((i, answer_after(line)));
            }
        }
        search = i;
    }
    None
}

/// The answer at the start of `tail`: a `$…$` / `\(…\)` / `\[…\]` span or a box if it starts
/// with one, else the text up to the end of its sentence.
fn answer_after(tail: &str) -> String {
    let t = tail
        .trim_start()
        .trim_start_matches([':', '*'])
        .trim_start();
    for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(body) = t.strip_prefix(open) {
            // the first closing delimiter not escaped (`$\$12.50$`)
            let end = body
                .match_indices(close)
                .map(|(i, _)| i)
                .find(|&i| close != "$" || i == 0 || body.as_bytes()[i - 1] != b'\\');
            if let Some(end) = end {
                return body[..end].trim().to_string();
            }
        }
    }
    if t.starts_with("\\boxed") || t.starts_with("\\fbox") {
        if let Some(b) = last_boxed(t) {
            return b;
        }
    }
    let mut end = t.find('\n').unwrap_or(t.len());
    for stop in [". ", ".\n", "I hope"] {
        if let Some(i) = t[..end].find(stop) {
            end = i;
        }
    }
    t[..end]
        .trim()
        .trim_end_matches('.')
        .trim_matches('*')
        .trim()
        .to_string()
}

/// The last math span (`$…$`, `$$…$$`, `\(…\)`, `\[…\]`): its end position and content.
fn last_math_span(text: &str) -> Option<(usize, String)> {
    let mut best: Option<(usize, String)> = None;
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(end) = text.rfind(close) {
            if let Some(start) = text[..end].rfind(open) {
                let body = text[start + open.len()..end].trim().to_string();
                if best.as_ref().is_none_or(|(e, _)| end > *e) {
                    best = Some((end, body));
                }
            }
        }
    }
    // `$` spans: pair them up from the start so `$a$ and $b$` gives `b`
    let dollars: Vec<usize> = text
        .match_indices('$')
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || text.as_bytes()[i - 1] != b'\\')
        .collect();
    let mut k = 0;
    let mut last = None;
    while k + 1 < dollars.len() {
        let (a, b) = (dollars[k], dollars[k + 1]);
        if b == a + 1 {
            // `$$`: find the closing `$$`
            if let Some(c) = dollars[k + 2..].windows(2).position(|w| w[1] == w[0] + 1) {
                let c = k + 2 + c;
                last = Some((dollars[c], text[b + 1..dollars[c]].trim().to_string()));
                k = c + 2;
                continue;
            }
            break;
        }
        last = Some((b, text[a + 1..b].trim().to_string()));
        k += 2;
    }
    if let Some((end, body)) = last {
        if best.as_ref().is_none_or(|(e, _)| end > *e) {
            best = Some((end, body));
        }
    }
    best.filter(|(_, b)| !b.is_empty())
}

/// The last number (`-12`, `3.5`, `1,000`, `3/4`): its end position and text.
fn last_number(text: &str) -> Option<(usize, String)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut k = chars.len();
    while k > 0 {
        if chars[k - 1].1.is_ascii_digit() {
            let end = k;
            let mut start = k;
            while start > 0 && {
                let c = chars[start - 1].1;
                c.is_ascii_digit() || matches!(c, '.' | ',' | '/')
            } {
                start -= 1;
            }
            if start > 0 && matches!(chars[start - 1].1, '-' | '\u{2212}') {
                start -= 1;
            }
            let from = chars[start].0;
            let to = chars.get(end).map_or(text.len(), |c| c.0);
            let s = text[from..to].trim_start_matches(['.', ',', '/']);
            return Some((to, s.to_string()));
        }
        k -= 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_answer_in_common_formats() {
        let cases = [
            ("so \\boxed{1} or \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
            ("\\boxed 7 done", "7"),
            ("\\fbox{x^{2}}", "x^{2}"),
            (
                "Final Answer: The final answer is $42$. I hope it is correct.",
                "42",
            ),
            ("The final answer is 3.5. I hope it is correct.", "3.5"),
            ("Some work.\n\nAnswer: $\\frac{3}{4}$", "\\frac{3}{4}"),
            ("**Answer:** 12", "12"),
            ("Answer: 7\n", "7"),
            ("We find \\boxed{3}.\nAnswer: 5", "5"),
            ("Answer: 5. Then we check: \\boxed{5}", "5"),
            ("so the answer is 42.", "42"),
            ("we get 3, then 17", "17"),
            ("thus $x = \\frac{1}{2}$.", "x = \\frac{1}{2}"),
            (
                "<think>maybe \\boxed{2}</think>\n\nThe answer is \\boxed{3}.",
                "3",
            ),
            ("<think>it is 4</think> so", "4"),
            (
                "\\boxed{2}. Let me double check: the answer is indeed right.",
                "2",
            ),
            ("$$x = 5$$", "x = 5"),
            (
                "The final answer is $\\$12.50$. I hope it is correct.",
                "\\$12.50",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(extract_answer(text).as_deref(), Some(want), "{text}");
        }
        assert_eq!(extract_answer("no answer here"), None);
        assert_eq!(last_boxed("\\boxed{unclosed"), None);
    }
}
