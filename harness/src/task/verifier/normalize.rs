//! String clean-up of an extracted answer before parsing: Unicode symbols to LaTeX/ASCII, math
//! delimiters and spacing commands removed, `\text{…}` unwrapped, units, degrees, percent and
//! dollar signs dropped, thousands separators (`1,000`, `1{,}000`, `1\,000`) joined.

/// Unicode characters models emit, as the ASCII / LaTeX the parser reads.
const UNICODE: &[(char, &str)] = &[
    ('\u{2212}', "-"), // minus sign
    ('\u{2013}', "-"), // en dash
    ('\u{2014}', "-"), // em dash
    ('\u{00d7}', "\\times "),
    ('\u{22c5}', "\\cdot "),
    ('\u{00b7}', "\\cdot "),
    ('\u{00f7}', "\\div "),
    ('\u{221a}', "\\sqrt"),
    ('\u{03c0}', "\\pi "),
    ('\u{221e}', "\\infty "),
    ('\u{2264}', "\\le "),
    ('\u{2265}', "\\ge "),
    ('\u{2260}', "\\ne "),
    ('\u{00b1}', "\\pm "),
    ('\u{222a}', "\\cup "),
    ('\u{2208}', "\\in "),
    ('\u{00b0}', ""), // degree sign
    ('\u{00a0}', " "),
    ('\u{2009}', " "),
    ('\u{202f}', " "),
    ('\u{00bd}', "(1/2)"),
    ('\u{00bc}', "(1/4)"),
    ('\u{00be}', "(3/4)"),
    ('\u{00b2}', "^2"),
    ('\u{00b3}', "^3"),
];

/// Units that may follow a number (inside `\text{}` or after a space).
const UNITS: &[&str] = &[
    "cm",
    "mm",
    "km",
    "m",
    "meters",
    "meter",
    "metres",
    "metre",
    "centimeters",
    "centimeter",
    "kilometers",
    "inches",
    "inch",
    "in",
    "feet",
    "foot",
    "ft",
    "yards",
    "yard",
    "yd",
    "miles",
    "mile",
    "mi",
    "units",
    "unit",
    "square units",
    "sq units",
    "cubic units",
    "degrees",
    "degree",
    "deg",
    "radians",
    "rad",
    "dollars",
    "dollar",
    "cents",
    "cent",
    "hours",
    "hour",
    "hrs",
    "hr",
    "minutes",
    "minute",
    "min",
    "mins",
    "seconds",
    "second",
    "sec",
    "s",
    "days",
    "day",
    "weeks",
    "week",
    "years",
    "year",
    "kg",
    "g",
    "grams",
    "gram",
    "pounds",
    "lb",
    "lbs",
    "mph",
    "km/h",
    "m/s",
    "liters",
    "liter",
    "litres",
    "l",
    "ml",
    "people",
    "students",
    "ways",
    "points",
    "sq ft",
    "square feet",
    "square meters",
    "square inches",
    "square centimeters",
    "cm^2",
    "m^2",
    "cm^3",
    "m^3",
    "in^2",
    "ft^2",
    "units^2",
];

/// Clean an answer string for parsing (see the module doc).
pub fn clean(ans: &str) -> String {
    let mut s = String::with_capacity(ans.len());
    for ch in ans.chars() {
        match UNICODE.iter().find(|(u, _)| *u == ch) {
            Some((_, to)) => s.push_str(to),
            None => s.push(ch),
        }
    }
    // `\\` (a matrix row break) must survive the removal of `\ ` below
    let s = s.replace("\\\\", "\u{1}");
    let s = degrees_in_trig(&s);
    let s = repeating_decimals(&s);
    let mut s = unwrap_text(&s);
    for (from, to) in [
        ("\\displaystyle", ""),
        ("\\left", ""),
        ("\\right", ""),
        ("\\bigl", ""),
        ("\\bigr", ""),
        ("\\Bigl", ""),
        ("\\Bigr", ""),
        ("\\big", ""),
        ("\\Big", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\dbinom", "\\binom"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("\\degree", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\(", ""),
        ("\\)", ""),
        ("\\[", ""),
        ("\\]", ""),
        ("{,}", ","),
        ("\\!", ""),
        ("\\;", " "),
        ("\\:", " "),
        ("\\quad", " "),
        ("\\qquad", " "),
        ("~", " "),
        ("\\leq", "\\le"),
        ("\\geq", "\\ge"),
        ("\\neq", "\\ne"),
        ("\\lt", "<"),
        ("\\gt", ">"),
    ] {
        s = s.replace(from, to);
    }
    let s = join_thin_space_groups(&s);
    let s = s.replace("\\,", " ").replace("\\ ", " ");
    let s = strip_units(s.trim());
    let s = join_thousands(&s);
    let s = s.trim().trim_end_matches('.').trim();
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('\u{1}', "\\\\")
}

/// `\sin 30^\circ` → `\sin (30\pi/180)`: degrees inside a trigonometric function are
/// converted to radians (elsewhere `^\circ` is dropped: `90^\circ` is the answer 90).
fn degrees_in_trig(s: &str) -> String {
    const TRIG: &[&str] = &["\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc"];
    if !TRIG.iter().any(|t| s.contains(t)) {
        return s.to_string();
    }
    let mut out = s.to_string();
    for mark in ["^{\\circ}", "^\\circ", "\u{00b0}"] {
        while let Some(i) = out.find(mark) {
            let start = number_start(&out, i);
            if start == i {
                break;
            }
            let number = out[start..i].to_string();
            out.replace_range(start..i + mark.len(), &format!("({number}\\pi/180)"));
        }
    }
    out
}

/// Where the run of digits and `.` that ends at byte `end` starts.
fn number_start(s: &str, end: usize) -> usize {
    s[..end]
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(0, |(j, c)| j + c.len_utf8())
}

/// `0.\overline{6}` → `\frac{6}{9}`; `1.2\overline{3}` → `\frac{111}{90}` (= 37/30).
fn repeating_decimals(s: &str) -> String {
    let mut out = s.to_string();
    while let Some(i) = out.find("\\overline{") {
        let body_start = i + "\\overline{".len();
        let Some(close) = matching_brace(&out, body_start) else {
            break;
        };
        let rep = &out[body_start..close];
        let head_start = number_start(&out, i);
        let head = &out[head_start..i];
        let Some((int, frac)) = head.split_once('.') else {
            break;
        };
        let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
        if rep.is_empty()
            || !digits(rep)
            || !digits(int)
            || !digits(frac)
            || rep.len() + frac.len() > 18
        {
            break;
        }
        // x = int.frac(rep)…  →  (int frac rep − int frac) / (10^|frac| · (10^|rep| − 1))
        let all: u128 = format!("{int}{frac}{rep}").parse().unwrap_or(0);
        let lead: u128 = format!("{int}{frac}").parse().unwrap_or(0);
        let den = 10u128.pow(frac.len() as u32) * (10u128.pow(rep.len() as u32) - 1);
        let frac_text = format!("\\frac{{{}}}{{{den}}}", all - lead);
        out.replace_range(head_start..close + 1, &frac_text);
    }
    out
}

/// `\text{…}`-like wrappers → their content, or nothing when the content is a unit.
fn unwrap_text(s: &str) -> String {
    const WRAPPERS: &[&str] = &[
        "\\text",
        "\\textbf",
        "\\textit",
        "\\textrm",
        "\\textnormal",
        "\\mathrm",
        "\\mathbf",
        "\\mathit",
        "\\mbox",
        "\\operatorname",
        "\\boldsymbol",
        "\\mathsf",
    ];
    let mut s = s.to_string();
    loop {
        let found = WRAPPERS
            .iter()
            .filter_map(|w| {
                let i = s.find(&format!("{w}{{"))?;
                Some((i, w.len()))
            })
            .min();
        let Some((i, len)) = found else {
            return s;
        };
        let body_start = i + len + 1;
        let Some(close) = matching_brace(&s, body_start) else {
            return s;
        };
        let body = s[body_start..close].to_string();
        let mut end = close + 1;
        let replacement = if is_unit(body.trim()) && !s[..i].trim().is_empty() {
            // and its power: `\text{cm}^2`
            for pow in ["^{2}", "^{3}", "^2", "^3"] {
                if s[end..].starts_with(pow) {
                    end += pow.len();
                    break;
                }
            }
            String::new()
        } else {
            body
        };
        s.replace_range(i..end, &replacement);
    }
}

/// Index of the `}` closing a group whose content starts at `start`.
pub fn matching_brace(s: &str, start: usize) -> Option<usize> {
    let mut depth = 1;
    for (i, c) in s[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(start + i);
                }
            }
            _ => {}
        }
    }
    None
}

fn is_unit(word: &str) -> bool {
    let w = word.to_lowercase();
    let w = w.trim_end_matches('.');
    UNITS.contains(&w) || UNITS.iter().any(|u| w == format!("{u}^{{2}}"))
}

/// Drop a unit after a number: `5 cm`, `12 square units`, `30 degrees`. Single-letter units
/// are only dropped when glued to a number with a space (`5 m`), never inside an expression.
fn strip_units(s: &str) -> String {
    // ASCII lowercase keeps byte offsets, so `end` below indexes `s` too.
    let lower = s.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    for u in UNITS {
        if let Some(prefix) = lower.strip_suffix(u) {
            let trimmed = prefix.trim_end();
            let spaced = trimmed.len() < prefix.len();
            let after_number = trimmed
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_digit() || c == '}' || c == ')');
            if after_number && (spaced || u.len() > 1) {
                best = Some(best.map_or(trimmed.len(), |b: usize| b.min(trimmed.len())));
            }
        }
    }
    match best {
        Some(end) => s[..end].to_string(),
        None => s.to_string(),
    }
}

/// `1\,000` → `1000` (a thin space between digit groups).
fn join_thin_space_groups(s: &str) -> String {
    let mut out = s.to_string();
    while let Some(i) = find_group_sep(&out, "\\,") {
        out.replace_range(i..i + 2, "");
    }
    out
}

fn find_group_sep(s: &str, sep: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(off) = s[from..].find(sep) {
        let i = from + off;
        let before = i > 0 && b[i - 1].is_ascii_digit();
        let after = &b[i + sep.len()..];
        let three = after.len() >= 3
            && after[..3].iter().all(u8::is_ascii_digit)
            && after.get(3).is_none_or(|c| !c.is_ascii_digit());
        if before && three {
            return Some(i);
        }
        from = i + sep.len();
    }
    None
}

/// `12,345,678` → `12345678` when every group after a comma has exactly three digits and the
/// first group one to three (so `1,2` and `(1, 23)` stay lists).
fn join_thousands(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        let starts_number = c[i].is_ascii_digit()
            && (i == 0 || !(c[i - 1].is_ascii_digit() || c[i - 1] == '.' || c[i - 1] == ','));
        if starts_number {
            let mut j = i;
            while j < c.len() && c[j].is_ascii_digit() {
                j += 1;
            }
            let lead = j - i;
            let mut groups = 0;
            let mut k = j;
            while k + 4 <= c.len()
                && c[k] == ','
                && c[k + 1..k + 4].iter().all(char::is_ascii_digit)
                && c.get(k + 4).is_none_or(|x| !x.is_ascii_digit())
            {
                groups += 1;
                k += 4;
            }
            if lead <= 3 && groups > 0 {
                out.extend(c[i..k].iter().filter(|&&x| x != ','));
                i = k;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn cleans_common_wrappers() {
        let cases = [
            ("5 \\text{ cm}", "5"),
            ("5\\text{cm}^2", "5"),
            ("12 square units", "12"),
            ("\\text{(B)}", "(B)"),
            ("1{,}000", "1000"),
            ("1\\,000\\,000", "1000000"),
            ("10,000", "10000"),
            ("1,2", "1,2"),
            ("(1, 234)", "(1, 234)"),
            ("\u{2212}3", "-3"),
            ("90^\\circ", "90"),
            ("50\\%", "50"),
            ("\\$1.50", "1.50"),
            ("$\\dfrac{3}{4}$.", "\\frac{3}{4}"),
            ("\\left( 1, 2 \\right)", "( 1, 2 )"),
            ("\\text{Evelyn}", "Evelyn"),
            ("x \\in [1, 2]", "x \\in [1, 2]"),
            ("2m", "2m"),
            ("5 m", "5"),
            ("\u{130}5 m", "\u{130}5"),
            ("\u{e9}30^\\circ \\sin", "\u{e9}(30\\pi/180) \\sin"),
            ("\\sin 60^\\circ", "\\sin (60\\pi/180)"),
            ("0.\\overline{6}", "\\frac{6}{9}"),
            ("1.2\\overline{3}", "\\frac{111}{90}"),
            (
                "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
                "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(clean(raw), want, "{raw}");
        }
    }
}
