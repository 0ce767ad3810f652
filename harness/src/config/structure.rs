//! YAML value → typed value, with every structural problem at once. serde stops at the first
//! unknown key or wrong type, and inside an internally tagged enum (`algorithm: {name: …}`) it
//! loses the key path. Here, when a document does not deserialise, each key is deserialised alone
//! (in a skeleton of the document where every other key is left out, so takes its default), and a
//! failing key whose value is a mapping or a list is searched the same way. So two unknown keys
//! give two errors, a wrong type is reported at its own key (`algorithm.eta_lambda`, not
//! `algorithm`), and the document without its failing keys still deserialises, for the value
//! checks to run on.
//!
//! The target type must default every field (required values are checked afterwards): the raw
//! run config and the grid spec are built that way. Tag keys of internally tagged enums (`name`,
//! `type`) are kept in every skeleton.
use super::source::{KeyPath, Seg};
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

/// Keys that select an enum variant: kept beside any key tried alone.
const TAGS: &[&str] = &["name", "type"];

/// How many removals are tried before giving up on a document.
const MAX_REPAIRS: usize = 16;

/// A tolerant parse: the problems, and the value without the keys that caused them.
#[derive(Debug)]
pub struct Parsed<T> {
    /// The document without its failing keys (their defaults stand in), when that deserialises.
    pub value: Option<T>,
    /// Each problem: where and what.
    pub errors: Vec<(KeyPath, String)>,
    /// What was removed to get `value`.
    pub removed: Vec<KeyPath>,
}

/// Deserialise `doc` as `T`, finding every structural problem.
pub fn parse<T: DeserializeOwned>(doc: &Value) -> Parsed<T> {
    let mut parsed = parse_raw::<T>(doc);
    for (path, msg) in &mut parsed.errors {
        *msg = without_key_prefix(path, msg);
    }
    parsed
}

/// `msg` without a leading `key: ` that repeats the path's last key (custom deserialisers, such
/// as `algorithm:`'s, name the key themselves).
fn without_key_prefix(path: &KeyPath, msg: &str) -> String {
    match path.0.last() {
        Some(Seg::Key(k)) => msg
            .strip_prefix(&format!("{k}: "))
            .unwrap_or(msg)
            .to_string(),
        _ => msg.to_string(),
    }
}

fn parse_raw<T: DeserializeOwned>(doc: &Value) -> Parsed<T> {
    let first = match de::<T>(doc) {
        Ok(v) => {
            return Parsed {
                value: Some(v),
                errors: vec![],
                removed: vec![],
            }
        }
        Err(e) => e,
    };
    let mut errors = Vec::new();
    explore::<T>(doc, &KeyPath::default(), doc, first, &mut errors);
    let mut removed: Vec<KeyPath> = errors.iter().map(|(p, _)| p.clone()).collect();
    let mut pruned = doc.clone();
    remove_all(&mut pruned, &removed);
    for _ in 0..MAX_REPAIRS {
        match de_at::<T>(&pruned) {
            Ok(v) => {
                return Parsed {
                    value: Some(v),
                    errors,
                    removed,
                }
            }
            Err((p, msg)) => {
                // Removing a variant's tag leaves its mapping without one: remove what fails next.
                let related = |q: &KeyPath| p.starts_with(q) || q.starts_with(&p);
                if !errors.iter().any(|(q, _)| related(q)) {
                    errors.push((p.clone(), msg));
                }
                if p.is_empty() || !remove(&mut pruned, &p.0) {
                    break;
                }
                removed.push(p);
            }
        }
    }
    Parsed {
        value: None,
        errors,
        removed,
    }
}

/// `msg` is why `v`, at `at`, does not deserialise: find the keys (or items) inside it that fail
/// alone and report those, else report `at`.
fn explore<T: DeserializeOwned>(
    doc: &Value,
    at: &KeyPath,
    v: &Value,
    msg: String,
    errors: &mut Vec<(KeyPath, String)>,
) {
    let before = errors.len();
    match v {
        Value::Mapping(m) if !m.is_empty() => explore_mapping::<T>(doc, at, m, errors),
        // Only where a list is expected: an empty one deserialises.
        Value::Sequence(s)
            if !s.is_empty() && trial::<T>(doc, at, Value::Sequence(vec![])).is_ok() =>
        {
            for (i, item) in s.iter().enumerate() {
                let p = at.child(Seg::Idx(i));
                if let Err(e) = trial::<T>(doc, &p, item.clone()) {
                    explore::<T>(doc, &p, item, e, errors);
                }
            }
        }
        _ => {}
    }
    if errors.len() == before {
        errors.push((at.clone(), msg));
    }
}

fn explore_mapping<T: DeserializeOwned>(
    doc: &Value,
    at: &KeyPath,
    m: &Mapping,
    errors: &mut Vec<(KeyPath, String)>,
) {
    let tags: Mapping = m
        .iter()
        .filter(|(k, _)| k.as_str().is_some_and(|k| TAGS.contains(&k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let with_tags = trial::<T>(doc, at, Value::Mapping(tags.clone()));
    if let Err(tag_err) = with_tags {
        // The mapping fails on its tags alone: a wrong tag (an empty mapping fails differently,
        // missing it) or a position that takes no mapping (reported at `at` by the caller).
        let empty = trial::<T>(doc, at, Value::Mapping(Mapping::new()));
        if !tags.is_empty() && empty.err().as_ref() != Some(&tag_err) {
            for k in tags.keys().filter_map(Value::as_str) {
                errors.push((at.child(Seg::Key(k.into())), tag_err.clone()));
            }
        }
        return;
    }
    for (k, v) in m {
        let Some(key) = k.as_str() else {
            errors.push((
                at.clone(),
                format!("keys must be strings, got {}", short(k)),
            ));
            continue;
        };
        if tags.contains_key(k) {
            continue;
        }
        let p = at.child(Seg::Key(key.into()));
        if let Err(e) = trial::<T>(doc, &p, v.clone()) {
            explore::<T>(doc, &p, v, e, errors);
        }
    }
}

/// Deserialise the skeleton of `doc` that holds only `leaf` at `at` (and the tags on the way).
fn trial<T: DeserializeOwned>(doc: &Value, at: &KeyPath, leaf: Value) -> Result<(), String> {
    de::<T>(&skeleton(Some(doc), &at.0, leaf)).map(|_| ())
}

fn skeleton(node: Option<&Value>, path: &[Seg], leaf: Value) -> Value {
    let Some((first, rest)) = path.split_first() else {
        return leaf;
    };
    match first {
        Seg::Key(k) => {
            let mut m = Mapping::new();
            if let Some(Value::Mapping(here)) = node {
                for (tk, tv) in here {
                    if tk.as_str().is_some_and(|t| TAGS.contains(&t)) {
                        m.insert(tk.clone(), tv.clone());
                    }
                }
            }
            let next = node.and_then(|n| n.get(k.as_str()));
            m.insert(Value::String(k.clone()), skeleton(next, rest, leaf));
            Value::Mapping(m)
        }
        Seg::Idx(i) => {
            let next = node.and_then(|n| n.get(*i));
            Value::Sequence(vec![skeleton(next, rest, leaf)])
        }
    }
}

fn de<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_yaml::from_value(v.clone()).map_err(|e| clean(&e.to_string()))
}

/// Deserialise, with the key path of a failure.
fn de_at<T: DeserializeOwned>(v: &Value) -> Result<T, (KeyPath, String)> {
    serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        use serde_path_to_error::Segment;
        let path = e
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(Seg::Idx(*index)),
                Segment::Map { key } => Some(Seg::Key(key.clone())),
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect();
        (KeyPath(path), clean(&e.into_inner().to_string()))
    })
}

/// serde_yaml's message without a position suffix (values have none worth keeping).
fn clean(s: &str) -> String {
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

fn short(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "?".into())
}

/// Remove every path (deepest and last first, so sequence indices stay valid).
fn remove_all(doc: &mut Value, paths: &[KeyPath]) {
    let mut ps: Vec<&KeyPath> = paths.iter().filter(|p| !p.is_empty()).collect();
    ps.sort();
    ps.dedup();
    for p in ps.into_iter().rev() {
        remove(doc, &p.0);
    }
}

/// Remove the node at `path`; whether there was one.
fn remove(node: &mut Value, path: &[Seg]) -> bool {
    match path {
        [] => false,
        [Seg::Key(k)] => node
            .as_mapping_mut()
            .is_some_and(|m| m.shift_remove(k.as_str()).is_some()),
        [Seg::Idx(i)] => match node.as_sequence_mut() {
            Some(s) if *i < s.len() => {
                s.remove(*i);
                true
            }
            _ => false,
        },
        [first, rest @ ..] => {
            let next = match first {
                Seg::Key(k) => node.get_mut(k.as_str()),
                Seg::Idx(i) => node.get_mut(*i),
            };
            next.is_some_and(|n| remove(n, rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        a: f64,
        b: Vec<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(tag = "type", deny_unknown_fields)]
    enum Kind {
        #[serde(rename = "x")]
        X {
            #[serde(default)]
            n: u32,
        },
        #[serde(rename = "y")]
        Y,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Doc {
        inner: Inner,
        count: usize,
        kinds: Vec<Kind>,
        pick: Option<Kind>,
    }

    fn run(yaml: &str) -> (Option<Doc>, Vec<String>) {
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        let p = parse::<Doc>(&v);
        let errs = p
            .errors
            .iter()
            .map(|(p, m)| format!("{p}: {m}").trim_start_matches(": ").to_string())
            .collect();
        (p.value, errs)
    }

    #[test]
    fn a_valid_document_is_one_pass() {
        let (v, e) = run("inner: {a: 1.5}\ncount: 3\nkinds: [{type: x, n: 2}, {type: y}]");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(v.unwrap().count, 3);
    }

    #[test]
    fn every_problem_at_its_own_key_and_the_rest_survives() {
        let (v, e) = run(
            "inner: {a: oops, zz: 1, b: [1, -2]}\ncount: 7\nfoo: 1\nkinds: [{type: x, n: no}, {type: w}]\npick: {type: x, m: 1}",
        );
        let want = [
            "inner.a: invalid type: string \"oops\", expected f64",
            "inner.zz: unknown field `zz`",
            "inner.b[1]: invalid value: integer `-2`, expected u32",
            "foo: unknown field `foo`",
            "kinds[0].n: invalid type: string \"no\", expected u32",
            "kinds[1].type: unknown variant `w`",
            "pick.m: unknown field `m`",
        ];
        assert_eq!(e.len(), want.len(), "{e:#?}");
        for (got, w) in e.iter().zip(want) {
            assert!(got.starts_with(w), "{got} should start with {w}");
        }
        // What did deserialise is kept.
        let v = v.unwrap();
        assert_eq!(v.count, 7);
        assert_eq!(v.inner.b, vec![1]);
        assert_eq!(v.kinds, vec![Kind::X { n: 0 }]);
    }

    #[test]
    fn a_mapping_where_a_scalar_belongs_is_reported_at_its_key() {
        let (_, e) = run("count: {type: x}\ninner: {a: {b: 1}}");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("count: invalid type: map"), "{e:?}");
        assert!(e[1].starts_with("inner.a: invalid type: map"), "{e:?}");
    }

    #[test]
    fn a_root_of_the_wrong_shape_is_one_error() {
        let (v, e) = run("[1, 2]");
        assert!(v.is_none());
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("invalid type: sequence"), "{e:?}");
    }
}
