//! Functions short enough to read at once: fails naming `file:line: fn name (N lines)` for any
//! function in `train/`, `grid/`, `config/` or `rollout/` longer than [`MAX_LINES`] (from its `fn`
//! line to its closing brace). Test code (`tests*.rs`, `#[cfg(test)] mod … { }`) is left out.
use std::path::Path;

const MAX_LINES: usize = 120;
const DIRS: &[&str] = &["train", "grid", "config", "rollout"];

/// The text with string/char literals and comments blanked to spaces (newlines kept, so byte
/// offsets and line numbers still match the file).
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = c.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for ch in &mut out[from..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let ident = |i: usize| i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
            blank(&mut out, i, end);
            i = end;
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            let mut j = i;
            while j < c.len() {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if (c[i] == 'r' || (c[i] == 'b' && next == Some('r'))) && !ident(i) {
            // Raw string: r"…", r#"…"#, br"…".
            let mut j = i + if c[i] == 'b' { 2 } else { 1 };
            let hashes = (j..c.len()).take_while(|&k| c[k] == '#').count();
            j += hashes;
            if c.get(j) != Some(&'"') {
                i += 1;
                continue;
            }
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let mut k = j + 1;
            while k < c.len() && c[k..].iter().take(close.len()).ne(close.iter()) {
                k += 1;
            }
            let end = (k + close.len()).min(c.len());
            blank(&mut out, i, end);
            i = end;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), not a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..c.len()).find(|&j| c[j] == '\'').map(|j| j + 1)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// The index of the brace that closes the one at `open`.
fn closing(code: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0i64;
    for (j, &b) in code.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// Byte ranges of `#[cfg(test)] mod name { … }` blocks.
fn test_mods(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (i, _) in code.match_indices("#[cfg(test)]") {
        let rest = code[i + "#[cfg(test)]".len()..].trim_start();
        let start = code.len() - rest.len();
        if !rest.starts_with("mod ") {
            continue;
        }
        let open = rest.find(['{', ';']).map(|k| start + k);
        if let Some(open) = open.filter(|&o| b[o] == b'{') {
            out.push((i, closing(b, open).unwrap_or(code.len())));
        }
    }
    out
}

/// Every function with a body: (line of `fn`, name, lines from `fn` to its closing brace).
fn functions(text: &str) -> Vec<(usize, String, usize)> {
    let code = code_only(text);
    let b = code.as_bytes();
    let skip = test_mods(&code);
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut out = Vec::new();
    for (i, _) in code.match_indices("fn") {
        let before_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let after = &code[i + 2..];
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .collect();
        let spaced = after.starts_with(char::is_whitespace);
        if !before_ok || !spaced || name.is_empty() || skip.iter().any(|&(s, e)| s <= i && i <= e) {
            continue;
        }
        let Some(k) = after.find(['{', ';']) else {
            continue;
        };
        let open = i + 2 + k;
        if b[open] == b';' {
            continue; // a declaration without a body
        }
        if let Some(close) = closing(b, open) {
            out.push((line_of(i), name, line_of(close) - line_of(i) + 1));
        }
    }
    out
}

#[test]
fn the_reader_measures_functions() {
    let text = r##"fn short() -> &'static str {
    let s = "}}} // {";
    let r = r#"{"#;
    let c = ('{', '\'', '}');
    // }
    /* { */
    "x"
}
trait T { fn decl(&self); }
fn g<'a>(x: &'a str) -> impl Fn() + 'a {
    move || {
        let _ = x;
    }
}
#[cfg(test)]
mod tests {
    fn hidden() {}
}
"##;
    let f = functions(text);
    let got: Vec<(usize, &str, usize)> = f.iter().map(|(l, n, k)| (*l, n.as_str(), *k)).collect();
    assert_eq!(got, vec![(1, "short", 8), (10, "g", 5)]);
}

#[test]
fn no_long_functions_in_core_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<_> = DIRS
        .iter()
        .flat_map(|d| super::tests_imports::rust_files(&src.join(d)))
        .collect();
    assert!(files.len() > 20, "{files:?}");
    let mut long = Vec::new();
    let mut seen = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (line, name, n) in functions(&text) {
            seen += 1;
            if n > MAX_LINES {
                let rel = f.strip_prefix(&src).unwrap().display();
                long.push(format!("harness/src/{rel}:{line}: fn {name} ({n} lines)"));
            }
        }
    }
    assert!(seen > 100, "only {seen} functions found");
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines (split them into named steps):\n{}",
        long.join("\n")
    );
}
