//! Grid file → runs: cartesian axes, paired axes, cases × seeds; merged YAML → typed, validated
//! [`RunConfig`]s; stable run ids. Every error is located at the line that set the offending value.
use super::locate::{Seg, SourceMap};
use super::spec::{CaseSpec, GridSpec, OrderedMap};
use super::{Grid, GridError, GridErrors, Run};
use crate::config::{validate::validate, RunConfig};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// A grid larger than this is almost surely a mistake in the file.
const MAX_RUNS: usize = 100_000;

/// One key taking one value, and where in the file that value is written.
#[derive(Debug, Clone)]
struct Choice {
    key: String,
    value: Value,
    src: Vec<Seg>,
}

/// An axis (or a paired group): its options, each setting one or more keys.
type Dim = Vec<Vec<Choice>>;

struct Cx<'a> {
    file: &'a Path,
    map: SourceMap,
    errors: Vec<GridError>,
}

impl Cx<'_> {
    fn err(&mut self, src: &[Seg], path: impl Into<String>, msg: impl Into<String>) {
        let line = self.map.nearest(src);
        self.errors.push(GridError {
            file: self.file.to_path_buf(),
            line,
            path: path.into(),
            msg: msg.into(),
        });
    }
}

fn key(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

fn with(prefix: &[Seg], more: impl IntoIterator<Item = Seg>) -> Vec<Seg> {
    prefix.iter().cloned().chain(more).collect()
}

fn split(k: &str) -> Vec<&str> {
    k.split('.').collect()
}

/// Parse, expand and validate grid text.
pub fn expand(text: &str, file: &Path) -> Result<Grid, GridErrors> {
    let spec = parse_spec(text, file)?;
    let mut cx = Cx {
        file,
        map: SourceMap::new(text),
        errors: Vec::new(),
    };

    // A name taken from the file stem is made usable as a directory name; a declared one must be.
    let name = spec.name.clone().unwrap_or_else(|| {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let clean: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let clean = clean.trim_start_matches('.').to_string();
        if clean.is_empty() {
            "grid".into()
        } else {
            clean
        }
    });
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.starts_with('.')
    {
        cx.err(
            &[key("name")],
            "name",
            format!("`{name}` is not usable as a directory name (letters, digits, `-`, `_`, `.`)"),
        );
    }

    if spec.seeds.is_empty() {
        cx.err(&[key("seeds")], "seeds", "needs at least one seed");
    }
    for (i, s) in spec.seeds.iter().enumerate() {
        if spec.seeds[..i].contains(s) {
            cx.err(
                &[key("seeds"), Seg::Idx(i)],
                "seeds",
                format!("seed {s} is listed twice"),
            );
        }
    }

    let mut global_keys = Vec::new();
    let global = dims(&mut cx, &spec.axes, &spec.paired, &[], &mut global_keys);

    let default_case = CaseSpec::default();
    let cases: Vec<(Option<&str>, &CaseSpec)> = if spec.cases.is_empty() {
        vec![(None, &default_case)]
    } else {
        spec.cases
            .iter()
            .map(|(n, c)| (Some(n.as_str()), c))
            .collect()
    };

    let mut axis_keys = global_keys.clone();
    let mut case_dims = Vec::new();
    for (name, case) in &cases {
        let prefix: Vec<Seg> = match name {
            Some(n) => vec![key("cases"), key(n)],
            None => vec![],
        };
        if let Some(n) = name {
            if n.is_empty() || n.contains(['/', '=']) || n.trim() != *n {
                cx.err(
                    &prefix,
                    format!("cases.{n}"),
                    "case names must be non-empty without `/`, `=` or surrounding spaces",
                );
            }
        }
        let mut keys = global_keys.clone();
        let d = dims(&mut cx, &case.axes, &case.paired, &prefix, &mut keys);
        for k in keys {
            if !axis_keys.contains(&k) {
                axis_keys.push(k);
            }
        }
        case_dims.push(d);
    }

    let total: usize = case_dims
        .iter()
        .map(|d| {
            global
                .iter()
                .chain(d)
                .fold(spec.seeds.len(), |n, dim| n.saturating_mul(dim.len()))
        })
        .fold(0usize, |a, b| a.saturating_add(b));
    if total > MAX_RUNS {
        cx.err(
            &[],
            "",
            format!("the grid expands to {total} runs (more than {MAX_RUNS})"),
        );
        return Err(finish(cx.errors));
    }
    // Shape errors above are reported with whatever the expansion finds; runs they duplicate
    // (a seed or axis value listed twice) are not reported again.
    let shape_errors = !cx.errors.is_empty();
    let mut seeds: Vec<i64> = Vec::new();
    for s in &spec.seeds {
        if !seeds.contains(s) {
            seeds.push(*s);
        }
    }

    let short = short_keys(&axis_keys);
    let mut base = Mapping::new();
    apply_all(&mut base, &spec.base);

    // Errors found per grid point: identical ones (from `base`) are reported once.
    // (error, grid points it occurs in, whether it is a semantic check of a typed config)
    let mut found: Vec<(GridError, Vec<String>, bool)> = Vec::new();
    let mut points = 0usize;
    let mut typed_points = 0usize;
    let mut runs = Vec::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    for ((case, cspec), cdims) in cases.iter().zip(&case_dims) {
        let all: Vec<&Dim> = global.iter().chain(cdims).collect();
        for combo in Odometer::new(all.iter().map(|d| d.len()).collect()) {
            points += 1;
            let choices: Vec<&Choice> = combo
                .iter()
                .zip(&all)
                .flat_map(|(&i, d)| d[i].iter())
                .collect();
            let mut parts: Vec<String> = case.iter().map(|c| c.to_string()).collect();
            for c in &choices {
                parts.push(format!("{}={}", short[&c.key], fmt_value(&c.value)));
            }
            let point_label = parts.join("/");

            let mut merged = base.clone();
            apply_all(&mut merged, &cspec.set);
            for c in &choices {
                set_path(&mut merged, &split(&c.key), &c.value);
            }
            let loc = Locator {
                map: &cx.map,
                base: &spec.base,
                case: case.map(|c| (c, &cspec.set)),
                choices: &choices,
            };
            let mut point_errors: Vec<(Vec<String>, String, bool)> = Vec::new();
            let cfg: Option<RunConfig> =
                match serde_path_to_error::deserialize(Value::Mapping(merged)) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        let mut path: Vec<String> = e.path().iter().filter_map(seg_str).collect();
                        let msg = clean_msg(&e.into_inner().to_string());
                        for prefix in ["unknown field `", "missing field `"] {
                            if let Some(rest) = msg.strip_prefix(prefix) {
                                let field = rest.split('`').next().unwrap_or_default();
                                if path.last().map(String::as_str) != Some(field) {
                                    path.push(field.to_string());
                                }
                            }
                        }
                        point_errors.push((path, msg, false));
                        None
                    }
                };
            if let Some(cfg) = &cfg {
                typed_points += 1;
                for v in validate(cfg) {
                    let path = v.path.split('.').map(String::from).collect();
                    point_errors.push((path, v.msg, true));
                }
            }
            for (path, msg, semantic) in point_errors {
                let e = GridError {
                    file: file.to_path_buf(),
                    line: loc.line(&path),
                    path: path.join("."),
                    msg,
                };
                match found.iter_mut().find(|(f, _, _)| *f == e) {
                    Some((_, labels, _)) => labels.push(point_label.clone()),
                    None => found.push((e, vec![point_label.clone()], semantic)),
                }
            }
            let Some(cfg) = cfg else { continue };

            let canon = canonical_json(&serde_json::to_value(&cfg).expect("config serialises"));
            let point = short_hash(&canon);
            for &seed in &seeds {
                let id = short_hash(&format!("{canon}\nseed={seed}"));
                let label = if point_label.is_empty() {
                    format!("seed={seed}")
                } else {
                    format!("{point_label}/seed={seed}")
                };
                if let Some(other) = ids.get(&id) {
                    if shape_errors {
                        continue;
                    }
                    let src = choices.last().map(|c| c.src.clone()).unwrap_or_else(|| {
                        case.map(|c| vec![key("cases"), key(c)])
                            .unwrap_or_else(|| vec![key("seeds")])
                    });
                    cx.err(
                        &src,
                        "",
                        format!(
                            "runs `{other}` and `{label}` resolve to the same config and seed \
                             (id {id}): remove one of them"
                        ),
                    );
                    continue;
                }
                ids.insert(id.clone(), label.clone());
                runs.push(Run {
                    id,
                    point: point.clone(),
                    label,
                    point_label: point_label.clone(),
                    case: case.map(String::from),
                    seed,
                    axes: choices
                        .iter()
                        .map(|c| (c.key.clone(), c.value.clone()))
                        .collect(),
                    config: cfg.clone(),
                });
            }
        }
    }
    for (mut e, labels, semantic) in found {
        // Name the grid points only when the error is not in every point it could be found in.
        let of = if semantic { typed_points } else { points };
        if labels.len() < of {
            let more = if labels.len() > 1 {
                format!(" and {} more", labels.len() - 1)
            } else {
                String::new()
            };
            e.msg = format!("{} (in `{}`{more})", e.msg, labels[0]);
        }
        cx.errors.push(e);
    }
    if !cx.errors.is_empty() {
        return Err(finish(cx.errors));
    }
    Ok(Grid {
        name,
        description: spec.description.clone(),
        file: file.to_path_buf(),
        axis_keys,
        cases: spec.cases.iter().map(|(n, _)| n.clone()).collect(),
        runs,
    })
}

fn finish(mut errors: Vec<GridError>) -> GridErrors {
    errors.sort_by(|a, b| (a.line, &a.path).cmp(&(b.line, &b.path)));
    errors.dedup();
    GridErrors(errors)
}

fn seg_str(s: &serde_path_to_error::Segment) -> Option<String> {
    use serde_path_to_error::Segment;
    match s {
        Segment::Seq { index } => Some(index.to_string()),
        Segment::Map { key } => Some(key.clone()),
        Segment::Enum { variant } => Some(variant.clone()),
        Segment::Unknown => None,
    }
}

/// serde_yaml's message without its own path prefix and `at line … column …` suffix.
fn clean_msg(s: &str) -> String {
    let s = match s.find(" at line ") {
        Some(i) => &s[..i],
        None => s,
    };
    s.to_string()
}

/// Parse the file's structure (a single serde error, with its line and key path).
fn parse_spec(text: &str, file: &Path) -> Result<GridSpec, GridErrors> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        let mut msg = clean_msg(&inner.to_string());
        // serde_yaml prefixes the message with its own idea of the path.
        if let Some((p, rest)) = msg.split_once(": ") {
            if !p.contains(' ') && !p.is_empty() {
                msg = rest.to_string();
            }
        }
        GridErrors(vec![GridError {
            file: file.to_path_buf(),
            line,
            path: if path == "." { String::new() } else { path },
            msg,
        }])
    })
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.split('.').all(|s| !s.is_empty() && s.trim() == s)
}

/// Axes and paired groups of one level → dimensions; checks their shape.
fn dims(
    cx: &mut Cx,
    axes: &OrderedMap<Vec<Value>>,
    paired: &[OrderedMap<Vec<Value>>],
    prefix: &[Seg],
    seen: &mut Vec<String>,
) -> Vec<Dim> {
    let mut out = Vec::new();
    let mut check_key = |cx: &mut Cx, k: &str, src: &[Seg], vals: &[Value]| {
        if !valid_key(k) {
            cx.err(src, k, "not a dotted key path (like `algorithm.c`)");
        }
        if vals.is_empty() {
            cx.err(src, k, "needs at least one value");
        }
        for (i, v) in vals.iter().enumerate() {
            if vals[..i].contains(v) {
                cx.err(
                    &with(src, [Seg::Idx(i)]),
                    k,
                    format!("value {} is listed twice", fmt_value(v)),
                );
            }
        }
        let ks = split(k);
        if let Some(o) = seen.iter().find(|o| {
            let os = split(o);
            os.starts_with(&ks) || ks.starts_with(&os)
        }) {
            let what = if o == k { "twice" } else { "overlapping" };
            cx.err(
                src,
                k,
                format!("axis key declared {what} (`{o}`): each key may vary along one axis"),
            );
        }
        seen.push(k.to_string());
    };
    for (k, vals) in axes.iter() {
        let src = with(prefix, [key("axes"), key(k)]);
        check_key(cx, k, &src, vals);
        out.push(
            vals.iter()
                .enumerate()
                .map(|(i, v)| {
                    vec![Choice {
                        key: k.clone(),
                        value: v.clone(),
                        src: with(&src, [Seg::Idx(i)]),
                    }]
                })
                .collect(),
        );
    }
    for (j, group) in paired.iter().enumerate() {
        let gsrc = with(prefix, [key("paired"), Seg::Idx(j)]);
        if group.is_empty() {
            cx.err(&gsrc, "paired", "a paired group needs at least one key");
            continue;
        }
        let lens: Vec<usize> = group.iter().map(|(_, v)| v.len()).collect();
        if lens.iter().any(|&l| l != lens[0]) {
            let desc: Vec<String> = group
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.len()))
                .collect();
            cx.err(
                &gsrc,
                "paired",
                format!("paired lists must have equal lengths ({})", desc.join(", ")),
            );
            continue;
        }
        for (k, vals) in group.iter() {
            check_key(cx, k, &with(&gsrc, [key(k)]), vals);
        }
        out.push(
            (0..lens[0])
                .map(|i| {
                    group
                        .iter()
                        .map(|(k, vals)| Choice {
                            key: k.clone(),
                            value: vals[i].clone(),
                            src: with(&gsrc, [key(k), Seg::Idx(i)]),
                        })
                        .collect()
                })
                .collect(),
        );
    }
    out
}

/// Label names: the last segment of each key, or the full key where two keys share it.
fn short_keys(keys: &[String]) -> HashMap<String, String> {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    keys.iter()
        .map(|k| {
            let l = last(k);
            let clash = keys.iter().any(|o| o != k && last(o) == l);
            (k.clone(), if clash { k.clone() } else { l })
        })
        .collect()
}

/// A YAML value as it appears in labels and table cells.
pub fn fmt_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_else(|_| "?".into()),
    }
}

/// Set `segs` in `target` to `v` (replacing the whole sub-tree there; `null` removes it). Dotted
/// keys inside a mapping value are expanded.
fn set_path(target: &mut Mapping, segs: &[&str], v: &Value) {
    let k = Value::String(segs[0].to_string());
    if segs.len() == 1 {
        match v {
            Value::Null => {
                target.shift_remove(&k);
            }
            Value::Mapping(m) => {
                let mut fresh = Mapping::new();
                apply_all(&mut fresh, m);
                target.insert(k, Value::Mapping(fresh));
            }
            other => {
                target.insert(k, other.clone());
            }
        }
        return;
    }
    if !target.get(&k).is_some_and(Value::is_mapping) {
        target.insert(k.clone(), Value::Mapping(Mapping::new()));
    }
    if let Some(Value::Mapping(m)) = target.get_mut(&k) {
        set_path(m, &segs[1..], v);
    }
}

/// Apply every entry of `src` (keys may be dotted) onto `target`, in order.
fn apply_all(target: &mut Mapping, src: &Mapping) {
    for (k, v) in src {
        match k.as_str() {
            Some(ks) => set_path(target, &split(ks), v),
            None => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Finds the line that set a config key path for one grid point: the last axis value covering it,
/// else the case's `set`, else `base`, else the nearest set ancestor.
struct Locator<'a> {
    map: &'a SourceMap,
    base: &'a Mapping,
    case: Option<(&'a str, &'a Mapping)>,
    choices: &'a [&'a Choice],
}

impl Locator<'_> {
    fn line(&self, path: &[String]) -> Option<usize> {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        for n in (1..=path.len()).rev() {
            let p = &path[..n];
            for c in self.choices.iter().rev() {
                let ks = split(&c.key);
                if p.starts_with(&ks) {
                    return self
                        .in_value(&c.src, &c.value, &p[ks.len()..])
                        .or_else(|| self.map.nearest(&c.src));
                }
            }
            if let Some((name, set)) = self.case {
                let prefix = [key("cases"), key(name), key("set")];
                if let Some(l) = self.in_mapping(&prefix, set, p) {
                    return Some(l);
                }
            }
            if let Some(l) = self.in_mapping(&[key("base")], self.base, p) {
                return Some(l);
            }
        }
        self.map.line(&[key("base")])
    }

    fn in_value(&self, src: &[Seg], v: &Value, rest: &[&str]) -> Option<usize> {
        match v {
            Value::Mapping(m) if !rest.is_empty() => {
                self.in_mapping(src, m, rest).or_else(|| self.map.line(src))
            }
            _ => self.map.line(src),
        }
    }

    fn in_mapping(&self, prefix: &[Seg], m: &Mapping, p: &[&str]) -> Option<usize> {
        let entries: Vec<(&Value, &Value)> = m.iter().collect();
        for (k, v) in entries.into_iter().rev() {
            let Some(k) = k.as_str() else { continue };
            let ks = split(k);
            if p.starts_with(&ks) {
                let src = with(prefix, [key(k)]);
                return self.in_value(&src, v, &p[ks.len()..]);
            }
        }
        None
    }
}

/// Iterates over every index combination of dimensions with the given sizes (first slowest).
struct Odometer {
    sizes: Vec<usize>,
    next: Option<Vec<usize>>,
}

impl Odometer {
    fn new(sizes: Vec<usize>) -> Self {
        let next = if sizes.contains(&0) {
            None
        } else {
            Some(vec![0; sizes.len()])
        };
        Odometer { sizes, next }
    }
}

impl Iterator for Odometer {
    type Item = Vec<usize>;
    fn next(&mut self) -> Option<Vec<usize>> {
        let cur = self.next.take()?;
        let mut n = cur.clone();
        let mut i = n.len();
        loop {
            if i == 0 {
                break;
            }
            i -= 1;
            n[i] += 1;
            if n[i] < self.sizes[i] {
                self.next = Some(n);
                break;
            }
            n[i] = 0;
        }
        Some(cur)
    }
}

/// JSON with object keys sorted at every level, no whitespace: the input of run ids.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn go(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).expect("string"));
                    out.push(':');
                    go(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    go(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    go(v, &mut s);
    s
}

/// First 10 hex digits of SHA-256.
pub fn short_hash(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(5).map(|b| format!("{b:02x}")).collect()
}
