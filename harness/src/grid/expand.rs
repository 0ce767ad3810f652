//! Grid file → runs: cartesian axes, paired axes, cases × seeds; merged YAML → checked
//! [`RunConfig`]s; stable run ids. Every error is located at the line that set the offending value
//! (or the `--set` override that did), and every error is reported at once.
use super::spec::{CaseSpec, GridSpec, OrderedMap, Override};
use super::{Grid, GridError, GridErrors, LoadOptions, Run};
use crate::config::inputs::InputChecker;
use crate::config::source::{Seg, SourceMap};
use crate::config::{check_document, parse_yaml, structure, RunConfig};
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
            set: None,
            path: path.into(),
            msg: msg.into(),
        });
    }

    fn err_set(&mut self, o: &Override, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(GridError {
            file: self.file.to_path_buf(),
            line: None,
            set: Some(o.to_string()),
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
pub fn expand(text: &str, file: &Path, opts: &LoadOptions) -> Result<Grid, GridErrors> {
    let mut cx = Cx {
        file,
        map: SourceMap::new(text),
        errors: Vec::new(),
    };
    let Some(spec) = parse_spec(&mut cx, text) else {
        return Err(finish(cx.errors));
    };
    let name = grid_name(&mut cx, &spec, file);
    check_seeds(&mut cx, &spec.seeds);

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
        case_dims.push(case_dimensions(
            &mut cx,
            *name,
            case,
            &global_keys,
            &mut axis_keys,
        ));
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
    let overrides = check_overrides(&mut cx, &opts.overrides, &cases, &axis_keys);

    let mut base = Mapping::new();
    for (k, dropped) in apply_all(&mut base, &spec.base) {
        cx.err(&[key("base"), key(&k)], &k, drop_msg(&k, &dropped));
    }
    for o in overrides {
        let dropped = set_path(&mut base, &split(&o.key), &o.value);
        if !dropped.is_empty() {
            cx.err_set(o, &o.key, drop_msg(&o.key, &dropped));
        }
    }
    let mut points = Points {
        file,
        spec: &spec,
        overrides: &opts.overrides,
        short: short_keys(&axis_keys),
        // Shape errors above are reported with whatever the expansion finds; runs they duplicate
        // (a seed or axis value listed twice) are not reported again.
        shape_errors: !cx.errors.is_empty(),
        seeds: unique(&spec.seeds),
        inputs: opts.check_inputs.then(InputChecker::new),
        found: Vec::new(),
        points: 0,
        runs: Vec::new(),
        ids: HashMap::new(),
    };
    for ((case, cspec), cdims) in cases.iter().zip(&case_dims) {
        let all: Vec<&Dim> = global.iter().chain(cdims).collect();
        for combo in Odometer::new(all.iter().map(|d| d.len()).collect()) {
            let choices: Vec<&Choice> = combo
                .iter()
                .zip(&all)
                .flat_map(|(&i, d)| d[i].iter())
                .collect();
            points.point(&mut cx, &base, *case, cspec, &choices);
        }
    }
    points.report(&mut cx);
    if !cx.errors.is_empty() {
        return Err(finish(cx.errors));
    }
    Ok(Grid {
        name,
        description: spec.description.clone(),
        file: file.to_path_buf(),
        axis_keys,
        cases: spec.cases.iter().map(|(n, _)| n.clone()).collect(),
        overrides: opts.overrides.clone(),
        runs: points.runs,
    })
}

fn unique(seeds: &[i64]) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    for s in seeds {
        if !out.contains(s) {
            out.push(*s);
        }
    }
    out
}

/// The grid file's structure: a YAML syntax error alone (nothing else can be read), else every
/// structural problem (unknown key, wrong type), each at its line. The spec without its broken
/// parts is returned for the rest of the checks.
fn parse_spec(cx: &mut Cx, text: &str) -> Option<GridSpec> {
    let doc = match parse_yaml(text) {
        Ok(d) => d,
        Err((line, msg)) => {
            cx.errors.push(GridError {
                file: cx.file.to_path_buf(),
                line,
                set: None,
                path: String::new(),
                msg,
            });
            return None;
        }
    };
    let parsed = structure::parse::<GridSpec>(&doc);
    for (path, msg) in &parsed.errors {
        cx.err(&path.0, path.to_string(), msg.clone());
    }
    if doc.get("base").is_none() {
        // Nothing to expand: every run would be missing everything.
        cx.err(
            &[],
            "base",
            "required: the run config every case starts from (model, task, algorithm, …)",
        );
        return None;
    }
    parsed.value
}

/// A name taken from the file stem is made usable as a directory name; a declared one must be.
fn grid_name(cx: &mut Cx, spec: &GridSpec, file: &Path) -> String {
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
    name
}

fn check_seeds(cx: &mut Cx, seeds: &[i64]) {
    if seeds.is_empty() {
        cx.err(&[key("seeds")], "seeds", "needs at least one seed");
    }
    for (i, s) in seeds.iter().enumerate() {
        if seeds[..i].contains(s) {
            cx.err(
                &[key("seeds"), Seg::Idx(i)],
                "seeds",
                format!("seed {s} is listed twice"),
            );
        }
    }
}

/// A case's own dimensions (its name checked); its axis keys join `axis_keys`.
fn case_dimensions(
    cx: &mut Cx,
    name: Option<&str>,
    case: &CaseSpec,
    global_keys: &[String],
    axis_keys: &mut Vec<String>,
) -> Vec<Dim> {
    let prefix: Vec<Seg> = match name {
        Some(n) => vec![key("cases"), key(n)],
        None => vec![],
    };
    if let Some(n) = name {
        if n.is_empty() || n.contains(['/', '=']) || n.trim() != n {
            cx.err(
                &prefix,
                format!("cases.{n}"),
                "case names must be non-empty without `/`, `=` or surrounding spaces",
            );
        }
    }
    let mut keys = global_keys.to_vec();
    let d = dims(cx, &case.axes, &case.paired, &prefix, &mut keys);
    for k in keys {
        if !axis_keys.contains(&k) {
            axis_keys.push(k);
        }
    }
    d
}

/// Do two dotted keys name the same value, or one a part of the other?
fn overlap(a: &str, b: &str) -> bool {
    let (a, b) = (split(a), split(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// An override of `base` that an axis or a case's `set` would replace in turn would be silently
/// lost: refuse it. Returns the overrides that stand.
fn check_overrides<'o>(
    cx: &mut Cx,
    overrides: &'o [Override],
    cases: &[(Option<&str>, &CaseSpec)],
    axis_keys: &[String],
) -> Vec<&'o Override> {
    let mut ok = Vec::new();
    for o in overrides {
        if let Some(a) = axis_keys.iter().find(|a| overlap(&o.key, a)) {
            cx.err_set(
                o,
                &o.key,
                format!(
                    "the grid varies `{a}` along an axis, which would replace this value: change \
                     the axis in the grid file instead"
                ),
            );
            continue;
        }
        let by_case = cases.iter().find_map(|(name, case)| {
            let k = case
                .set
                .keys()
                .filter_map(Value::as_str)
                .find(|k| overlap(&o.key, k))?;
            Some((name.unwrap_or_default(), k))
        });
        if let Some((name, k)) = by_case {
            cx.err_set(
                o,
                &o.key,
                format!(
                    "case `{name}` sets `{k}`, which would replace this value: change the case \
                     in the grid file instead"
                ),
            );
            continue;
        }
        ok.push(o);
    }
    ok
}

/// The grid points as they are resolved: runs, and errors found per point (identical ones, from
/// `base`, reported once).
struct Points<'a> {
    file: &'a Path,
    spec: &'a GridSpec,
    overrides: &'a [Override],
    short: HashMap<String, String>,
    shape_errors: bool,
    seeds: Vec<i64>,
    inputs: Option<InputChecker>,
    /// (error, labels of the grid points it occurs in)
    found: Vec<(GridError, Vec<String>)>,
    points: usize,
    runs: Vec<Run>,
    ids: HashMap<String, String>,
}

impl Points<'_> {
    /// Resolve one grid point: its config (every problem recorded), then its runs, one per seed.
    fn point(
        &mut self,
        cx: &mut Cx,
        base: &Mapping,
        case: Option<&str>,
        cspec: &CaseSpec,
        choices: &[&Choice],
    ) {
        self.points += 1;
        let mut parts: Vec<String> = case.iter().map(|c| c.to_string()).collect();
        for c in choices {
            parts.push(format!("{}={}", self.short[&c.key], fmt_value(&c.value)));
        }
        let point_label = parts.join("/");

        let mut merged = base.clone();
        for (k, dropped) in apply_all(&mut merged, &cspec.set) {
            let src = [
                key("cases"),
                key(case.unwrap_or_default()),
                key("set"),
                key(&k),
            ];
            cx.err(&src, &k, drop_msg(&k, &dropped));
        }
        for c in choices {
            let dropped = set_path(&mut merged, &split(&c.key), &c.value);
            if !dropped.is_empty() {
                cx.err(&c.src, &c.key, drop_msg(&c.key, &dropped));
            }
        }
        let (cfg, errors) = match check_document(&Value::Mapping(merged)) {
            Ok(cfg) => {
                let errors = match &mut self.inputs {
                    Some(i) => i.check(&cfg),
                    None => vec![],
                };
                (Some(cfg), errors)
            }
            Err(errors) => (None, errors),
        };
        let loc = Locator {
            map: &cx.map,
            base: &self.spec.base,
            overrides: self.overrides,
            case: case.map(|c| (c, &cspec.set)),
            choices,
        };
        for e in &errors {
            let (line, set) = loc.locate(&e.path.keys());
            let e = GridError {
                file: self.file.to_path_buf(),
                line,
                set,
                path: e.path.to_string(),
                msg: e.msg.clone(),
            };
            match self.found.iter_mut().find(|(f, _)| *f == e) {
                Some((_, labels)) => labels.push(point_label.clone()),
                None => self.found.push((e, vec![point_label.clone()])),
            }
        }
        if let (Some(cfg), true) = (cfg, errors.is_empty()) {
            self.add_runs(cx, cfg, case, &point_label, choices);
        }
    }

    fn add_runs(
        &mut self,
        cx: &mut Cx,
        cfg: RunConfig,
        case: Option<&str>,
        point_label: &str,
        choices: &[&Choice],
    ) {
        let canon = canonical_json(&serde_json::to_value(&cfg).expect("config serialises"));
        let point = short_hash(&canon);
        for &seed in &self.seeds {
            let id = short_hash(&format!("{canon}\nseed={seed}"));
            let label = if point_label.is_empty() {
                format!("seed={seed}")
            } else {
                format!("{point_label}/seed={seed}")
            };
            if let Some(other) = self.ids.get(&id) {
                if self.shape_errors {
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
            self.ids.insert(id.clone(), label.clone());
            self.runs.push(Run {
                id,
                point: point.clone(),
                label,
                point_label: point_label.to_string(),
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

    /// The errors found, each naming the grid points it occurs in when not in all of them.
    fn report(&mut self, cx: &mut Cx) {
        for (mut e, labels) in std::mem::take(&mut self.found) {
            if labels.len() < self.points {
                let more = if labels.len() > 1 {
                    format!(" and {} more", labels.len() - 1)
                } else {
                    String::new()
                };
                e.msg = format!("{} (in `{}`{more})", e.msg, labels[0]);
            }
            cx.errors.push(e);
        }
    }
}

fn finish(mut errors: Vec<GridError>) -> GridErrors {
    errors.sort_by(|a, b| (a.line, &a.set, &a.path).cmp(&(b.line, &b.set, &b.path)));
    errors.dedup();
    GridErrors(errors)
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

/// Set `segs` in `target` to `v`. The value replaces the whole sub-tree there (a mapping's dotted
/// keys expanded inside it); `null` removes the key, so the default applies. Returns the key paths
/// (relative to `target`) that were set below and that `v` does not restate: replacing would drop
/// them, which the callers refuse.
fn set_path(target: &mut Mapping, segs: &[&str], v: &Value) -> Vec<String> {
    let k = Value::String(segs[0].to_string());
    if segs.len() > 1 {
        if !target.get(&k).is_some_and(Value::is_mapping) {
            target.insert(k.clone(), Value::Mapping(Mapping::new()));
        }
        let Some(Value::Mapping(m)) = target.get_mut(&k) else {
            return vec![];
        };
        let dropped = set_path(m, &segs[1..], v);
        return dropped
            .into_iter()
            .map(|d| format!("{}.{d}", segs[0]))
            .collect();
    }
    match v {
        Value::Null => {
            target.shift_remove(&k);
            vec![]
        }
        Value::Mapping(m) => {
            let dropped = match target.get(&k) {
                Some(Value::Mapping(old)) => dropped_keys(old, &written(m), segs[0]),
                _ => vec![],
            };
            let mut fresh = Mapping::new();
            apply_all(&mut fresh, m);
            target.insert(k, Value::Mapping(fresh));
            dropped
        }
        other => {
            target.insert(k, other.clone());
            vec![]
        }
    }
}

/// Apply every entry of `src` (keys may be dotted) onto `target`, in order. Returns, per entry
/// that would drop keys, the entry's key and the dropped key paths.
fn apply_all(target: &mut Mapping, src: &Mapping) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (k, v) in src {
        match k.as_str() {
            Some(ks) => {
                let dropped = set_path(target, &split(ks), v);
                if !dropped.is_empty() {
                    out.push((ks.to_string(), dropped));
                }
            }
            None => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// A mapping as written, dotted keys nested, `null`s kept (they restate a key on purpose).
fn written(m: &Mapping) -> Mapping {
    let mut out = Mapping::new();
    for (k, v) in m {
        let Some(ks) = k.as_str() else { continue };
        let segs = split(ks);
        let mut here = &mut out;
        for s in &segs[..segs.len() - 1] {
            let key = Value::String(s.to_string());
            if !here.get(&key).is_some_and(Value::is_mapping) {
                here.insert(key.clone(), Value::Mapping(Mapping::new()));
            }
            here = match here.get_mut(&key) {
                Some(Value::Mapping(m)) => m,
                _ => unreachable!("just inserted a mapping"),
            };
        }
        let last = Value::String(segs[segs.len() - 1].to_string());
        let value = match v {
            Value::Mapping(inner) => Value::Mapping(written(inner)),
            other => other.clone(),
        };
        here.insert(last, value);
    }
    out
}

/// Keys of `old` (at `at`) that `new` does not mention, looking inside mappings both hold.
fn dropped_keys(old: &Mapping, new: &Mapping, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (k, ov) in old {
        let Some(ks) = k.as_str() else { continue };
        match (ov, new.get(k)) {
            (_, None) => out.push(format!("{at}.{ks}")),
            (Value::Mapping(o), Some(Value::Mapping(n))) => {
                out.extend(dropped_keys(o, n, &format!("{at}.{ks}")))
            }
            _ => {}
        }
    }
    out
}

/// What to say about a value that would replace `key` and drop `dropped`.
fn drop_msg(key: &str, dropped: &[String]) -> String {
    let list: Vec<String> = dropped.iter().map(|d| format!("`{d}`")).collect();
    format!(
        "replaces all of `{key}`, dropping {} set before it: restate {}, set {} to null to use \
         the default, or set single keys (`{key}.<key>: …`)",
        list.join(", "),
        if dropped.len() == 1 { "it" } else { "them" },
        if dropped.len() == 1 { "it" } else { "them" },
    )
}

/// Finds what set a config key path for one grid point: the last axis value covering it, else the
/// case's `set`, else a `--set` override, else `base`, else the nearest set ancestor. Returns the
/// line, or the override.
struct Locator<'a> {
    map: &'a SourceMap,
    base: &'a Mapping,
    overrides: &'a [Override],
    case: Option<(&'a str, &'a Mapping)>,
    choices: &'a [&'a Choice],
}

impl Locator<'_> {
    fn locate(&self, path: &[String]) -> (Option<usize>, Option<String>) {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        for n in (1..=path.len()).rev() {
            let p = &path[..n];
            for c in self.choices.iter().rev() {
                let ks = split(&c.key);
                if p.starts_with(&ks) {
                    let line = self
                        .in_value(&c.src, &c.value, &p[ks.len()..])
                        .or_else(|| self.map.nearest(&c.src));
                    return (line, None);
                }
            }
            if let Some((name, set)) = self.case {
                let prefix = [key("cases"), key(name), key("set")];
                if let Some(l) = self.in_mapping(&prefix, set, p) {
                    return (Some(l), None);
                }
            }
            let by_override = self
                .overrides
                .iter()
                .rev()
                .find(|o| p.starts_with(&split(&o.key)));
            if let Some(o) = by_override {
                return (None, Some(o.to_string()));
            }
            if let Some(l) = self.in_mapping(&[key("base")], self.base, p) {
                return (Some(l), None);
            }
        }
        (self.map.line(&[key("base")]), None)
    }

    /// The line inside `v` (written at `src`) that sets `rest`, else the line of `v` (a value
    /// replaces everything below it).
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
