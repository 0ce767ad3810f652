//! A small CSV reader for hand-edited baseline files: a header line, `#` comment lines and blank
//! lines skipped, fields optionally double-quoted (`""` escapes a quote). Every cell keeps its
//! line and column so that errors can name them.
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A parsed CSV file.
#[derive(Debug, Clone)]
pub struct Csv {
    pub path: PathBuf,
    pub header: Vec<String>,
    /// `(line number, cells)`; every record has as many cells as the header.
    pub records: Vec<(usize, Vec<String>)>,
}

impl Csv {
    pub fn read(path: &Path) -> Result<Csv> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Csv> {
        let mut header: Option<Vec<String>> = None;
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let cells = split_line(line)
                .map_err(|msg| Error::Input(format!("{}:{n}: {msg}", path.display())))?;
            match &header {
                None => header = Some(cells.into_iter().map(|c| c.trim().to_string()).collect()),
                Some(h) => {
                    if cells.len() != h.len() {
                        return Err(Error::Input(format!(
                            "{}:{n}: {} field(s), the header has {}",
                            path.display(),
                            cells.len(),
                            h.len()
                        )));
                    }
                    records.push((n, cells.into_iter().map(|c| c.trim().to_string()).collect()));
                }
            }
        }
        let header = header
            .ok_or_else(|| Error::Input(format!("{}: empty (no header line)", path.display())))?;
        Ok(Csv {
            path: path.to_path_buf(),
            header,
            records,
        })
    }

    /// Index of a column, or an error naming the file and the missing column.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            Error::Input(format!(
                "{}: no column `{name}` (header: {})",
                self.path.display(),
                self.header.join(",")
            ))
        })
    }

    /// An error about one cell: `file:line: column `name`: msg`.
    pub fn cell_error(&self, line: usize, col: usize, msg: impl std::fmt::Display) -> Error {
        Error::Input(format!(
            "{}:{line}: column `{}`: {msg}",
            self.path.display(),
            self.header.get(col).map(String::as_str).unwrap_or("?")
        ))
    }

    /// A cell as an optional number (empty → `None`).
    pub fn number(&self, line: usize, cells: &[String], col: usize) -> Result<Option<f64>> {
        let c = cells[col].as_str();
        if c.is_empty() {
            return Ok(None);
        }
        c.parse::<f64>()
            .map(Some)
            .map_err(|_| self.cell_error(line, col, format!("not a number: `{c}`")))
    }
}

/// One CSV line → fields.
fn split_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    out.push(cur);
    Ok(out)
}

/// A field for writing: quoted when it holds a comma, a quote or surrounding spaces.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) || s.trim() != s {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_comments_and_errors() {
        let p = Path::new("b.csv");
        let c = Csv::parse(
            "# a comment\npoint,metric,value\n\"a,b\",\"x \"\"y\"\"\",1.5\n\nc,d,\n",
            p,
        )
        .unwrap();
        assert_eq!(c.header, ["point", "metric", "value"]);
        assert_eq!(
            c.records[0],
            (3, vec!["a,b".into(), "x \"y\"".into(), "1.5".into()])
        );
        assert_eq!(c.records[1].0, 5);
        assert_eq!(c.number(5, &c.records[1].1, 2).unwrap(), None);
        let e = c.number(3, &c.records[0].1, 1).unwrap_err().to_string();
        assert!(e.contains("b.csv:3: column `metric`: not a number"), "{e}");
        let e = Csv::parse("a,b\n1\n", p).unwrap_err().to_string();
        assert!(e.contains("b.csv:2: 1 field(s), the header has 2"), "{e}");
        let e = Csv::parse("a,b\n\"1,2\n", p).unwrap_err().to_string();
        assert!(e.contains("b.csv:2: unterminated"), "{e}");
        assert!(c
            .column("tol")
            .unwrap_err()
            .to_string()
            .contains("no column `tol`"));
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("ab"), "ab");
    }
}
