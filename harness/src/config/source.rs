//! Where each key of a YAML text sits: source paths → 1-based line numbers, so errors found after
//! merging (unknown field, out of range) can point at the line that set the value; and key paths
//! (`rollout.engine.precision`, `algorithm.corrections[0].cap`) as errors name them.
use std::collections::HashMap;
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a source path: a mapping key as written (dotted keys stay one segment) or a
/// sequence index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    Key(String),
    Idx(usize),
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Seg::Key(k) => f.write_str(k),
            Seg::Idx(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path into a YAML document, shown as `a.b[2].c`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// `a.b.c` → keys `a`, `b`, `c` (a dotted key of a grid file stays one segment: use `Seg`s).
    pub fn dotted(s: &str) -> KeyPath {
        KeyPath(
            s.split('.')
                .filter(|k| !k.is_empty())
                .map(|k| Seg::Key(k.to_string()))
                .collect(),
        )
    }
    pub fn child(&self, s: Seg) -> KeyPath {
        let mut p = self.0.clone();
        p.push(s);
        KeyPath(p)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Whether `self` is `other` or lies under it.
    pub fn starts_with(&self, other: &KeyPath) -> bool {
        self.0.starts_with(&other.0)
    }
    /// The leading mapping keys (up to the first sequence index).
    pub fn keys(&self) -> Vec<String> {
        self.0
            .iter()
            .map_while(|s| match s {
                Seg::Key(k) => Some(k.clone()),
                Seg::Idx(_) => None,
            })
            .collect()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 && matches!(s, Seg::Key(_)) {
                f.write_str(".")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_string())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Idx(i)
    }
}

/// Lines of every mapping key and sequence item of one YAML document.
#[derive(Debug, Default)]
pub struct SourceMap {
    lines: HashMap<Vec<Seg>, usize>,
}

impl SourceMap {
    /// Index `text`; a text the scanner rejects yields an empty map (serde reports that error).
    pub fn new(text: &str) -> Self {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut b, false).is_err() {
            return SourceMap::default();
        }
        SourceMap { lines: b.lines }
    }

    /// The line of exactly this path.
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        self.lines.get(path).copied()
    }

    /// The line of the longest prefix of `path` that exists.
    pub fn nearest(&self, path: &[Seg]) -> Option<usize> {
        (1..=path.len()).rev().find_map(|n| self.line(&path[..n]))
    }
}

enum Frame {
    Map {
        key: Option<String>,
        expecting_key: bool,
        /// Depth of a complex (non-scalar) key being skipped.
        complex_key: bool,
    },
    Seq {
        idx: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<Vec<Seg>, usize>,
}

impl Builder {
    fn path(&self) -> Vec<Seg> {
        let mut p = Vec::new();
        for f in &self.stack {
            match f {
                Frame::Map { key: Some(k), .. } => p.push(Seg::Key(k.clone())),
                Frame::Map { key: None, .. } => p.push(Seg::Key(String::new())),
                Frame::Seq { idx } => p.push(Seg::Idx(*idx)),
            }
        }
        p
    }

    /// A node (scalar or collection start) begins at `line`. Returns whether it is a map key.
    fn node_start(&mut self, line: usize, scalar: Option<&str>) -> bool {
        match self.stack.last_mut() {
            Some(Frame::Map {
                key,
                expecting_key,
                complex_key,
            }) if *expecting_key => {
                *expecting_key = false;
                match scalar {
                    Some(s) => {
                        *key = Some(s.to_string());
                        let p = self.path();
                        self.lines.entry(p).or_insert(line);
                    }
                    None => {
                        *key = Some("?".to_string());
                        *complex_key = true;
                    }
                }
                true
            }
            Some(Frame::Seq { .. }) => {
                let p = self.path();
                self.lines.entry(p).or_insert(line);
                false
            }
            _ => false,
        }
    }

    /// A value node (scalar, alias or collection) ended: advance the parent.
    fn node_end(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map {
                expecting_key,
                complex_key,
                ..
            }) => {
                if *complex_key {
                    *complex_key = false;
                } else {
                    *expecting_key = true;
                }
            }
            Some(Frame::Seq { idx }) => *idx += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(s, ..) => {
                let is_key = self.node_start(line, Some(&s));
                if !is_key {
                    self.node_end();
                }
            }
            Event::Alias(_) => {
                let is_key = self.node_start(line, Some("*"));
                if !is_key {
                    self.node_end();
                }
            }
            Event::MappingStart(..) => {
                self.node_start(line, None);
                self.stack.push(Frame::Map {
                    key: None,
                    expecting_key: true,
                    complex_key: false,
                });
            }
            Event::SequenceStart(..) => {
                self.node_start(line, None);
                self.stack.push(Frame::Seq { idx: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.node_end();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn finds_keys_and_items() {
        let text = "\
name: x
base:
  model:
    name: tiny-qwen3
  rollout.engine.precision: bf16
axes:
  algorithm.dc.tolerance: [0.001, 0.0037]
paired:
  - optim.lr:
      - 1.0e-4
      - 2.0e-4
    train.steps: [1, 2]
cases:
  a: {set: {x: 1}}
";
        let m = SourceMap::new(text);
        assert_eq!(m.line(&[k("name")]), Some(1));
        assert_eq!(m.line(&[k("base"), k("model"), k("name")]), Some(4));
        assert_eq!(m.line(&[k("base"), k("rollout.engine.precision")]), Some(5));
        assert_eq!(
            m.line(&[k("axes"), k("algorithm.dc.tolerance"), Seg::Idx(1)]),
            Some(7)
        );
        assert_eq!(
            m.line(&[k("paired"), Seg::Idx(0), k("optim.lr"), Seg::Idx(1)]),
            Some(11)
        );
        assert_eq!(
            m.line(&[k("paired"), Seg::Idx(0), k("train.steps")]),
            Some(12)
        );
        assert_eq!(m.line(&[k("cases"), k("a"), k("set"), k("x")]), Some(14));
        assert_eq!(
            m.nearest(&[k("base"), k("model"), k("lora"), k("rank")]),
            Some(3)
        );
    }
}
