//! Where each key of a YAML text sits: source paths → 1-based line numbers, so errors found after
//! merging (unknown field, out of range) can point at the line that set the value.
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a source path: a mapping key as written (dotted keys stay one segment) or a
/// sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Idx(usize),
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
