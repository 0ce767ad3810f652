//! No import cycles: reads `harness/src` and fails when top-level modules (`config`, `grid`,
//! `model`, …) or the files inside `model/` import each other in a cycle. Test code (`tests*.rs`,
//! `#[cfg(test)]` items) is left out: tests may reach across layers.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Cycles known to exist and being removed elsewhere: each entry is the set of modules of one
/// cycle, with why it is left. None now (grid ↔ table went with the run-directory module;
/// config ↔ backend when the verl settings mapping that validation runs moved to
/// `config/verl.rs`); the test fails while an entry no longer occurs.
const KNOWN_CYCLES: &[&[&str]] = &[];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The modules a file declares test-only: `#[cfg(test)]` then `mod x;`.
fn test_only_mods(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "#[cfg(test)]" && w[1].starts_with("mod ") && w[1].ends_with(';'))
        .map(|w| w[1]["mod ".len()..w[1].len() - 1].trim().to_string())
        .collect()
}

/// Every `.rs` file under `dir` that is not a test file (named `tests*`, or declared test-only
/// by its parent's `mod.rs`).
pub(crate) fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let test_mods = std::fs::read_to_string(dir.join("mod.rs"))
        .or_else(|_| std::fs::read_to_string(dir.join("lib.rs")))
        .map(|t| test_only_mods(&t))
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if name.ends_with(".rs")
            && !name.starts_with("tests")
            && !test_mods.contains(&name.trim_end_matches(".rs").to_string())
        {
            out.push(p);
        }
    }
    out
}

/// The code without comments and `#[cfg(test)]` items (a `mod x;` line or a braced block).
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default());
    while let Some(line) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut depth = 0i64;
        for item in lines.by_ref() {
            depth += item.matches('{').count() as i64 - item.matches('}').count() as i64;
            let opened = item.contains('{');
            if depth <= 0 && (opened || item.trim_end().ends_with(';')) {
                break;
            }
        }
    }
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first path segment after each `prefix` (`crate::` → `config`, `model`, …), expanding
/// `prefix{a, b::c}` groups.
fn segments_after(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(ident(item.trim()));
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// `pub use m::{A, B}` / `pub use m::A` in a module root: re-exported name → the module `m`.
fn reexports(root: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in root.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((m, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim_end_matches(';').trim_matches(['{', '}']);
        for n in names.split(',') {
            let n = n.split("::").last().unwrap().trim();
            let n = n.rsplit(" as ").next().unwrap().trim();
            out.insert(ident(n), m.to_string());
        }
    }
    out
}

/// Top-level modules and the files inside `model/`, with what each imports.
fn graph() -> Graph {
    let src = src();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let lib_names = reexports(&lib);
    let model_root = std::fs::read_to_string(src.join("model/mod.rs")).unwrap();
    let model_names = reexports(&model_root);
    let mut top: Graph = BTreeMap::new();
    let mut model: Graph = BTreeMap::new();
    for f in rust_files(&src) {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel.iter().next().unwrap().to_string_lossy().to_string();
        if first == "lib.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        let text = without_tests(&std::fs::read_to_string(&f).unwrap());
        let deps = top.entry(module.clone()).or_default();
        for s in segments_after(&text, "crate::") {
            let target = lib_names.get(&s).cloned().unwrap_or(s);
            deps.insert(target);
        }
        let file = rel.file_stem().unwrap().to_string_lossy().to_string();
        if module == "model" && rel.components().count() == 2 && file != "mod" {
            let name = format!("model::{file}");
            let deps = model.entry(name).or_default();
            let mut used = segments_after(&text, "super::");
            used.extend(segments_after(&text, "crate::model::"));
            for s in used {
                let target = model_names.get(&s).cloned().unwrap_or(s);
                deps.insert(format!("model::{target}"));
            }
        }
    }
    let mut g = top;
    g.extend(model);
    let nodes: BTreeSet<String> = g.keys().cloned().collect();
    for (n, deps) in g.iter_mut() {
        deps.retain(|d| d != n && nodes.contains(d));
    }
    g
}

/// Strongly connected components with more than one node (Tarjan).
fn cycles(g: &Graph) -> Vec<BTreeSet<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for w in &self.g[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    scc.insert(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on: BTreeSet::new(),
        out: vec![],
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn the_reader_sees_imports_and_skips_tests() {
    let text = "use crate::{Error, model::lora::X};\nuse super::ops::linear;\n/// [`crate::train`]\nfn f() { crate::config::y(); }\n#[cfg(test)]\nmod tests {\n    use crate::train;\n    fn g() {}\n}\n#[cfg(test)]\nmod more;\nuse crate::grid;\n";
    let t = without_tests(text);
    assert_eq!(
        segments_after(&t, "crate::"),
        vec!["Error", "model", "config", "grid"]
    );
    assert_eq!(segments_after(&t, "super::"), vec!["ops"]);
    let r = reexports("pub use config::{MoeConfig, Qwen3Config};\npub use kv_cache::KvCache;\n");
    assert_eq!(r["Qwen3Config"], "config");
    assert_eq!(r["KvCache"], "kv_cache");
    let g: Graph = [
        ("a", &["b"][..]),
        ("b", &["c"]),
        ("c", &["a"]),
        ("d", &["a"]),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
    .collect();
    let c = cycles(&g);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0], ["a", "b", "c"].map(String::from).into());
}

#[test]
fn no_import_cycles_between_modules() {
    let g = graph();
    assert!(
        g.contains_key("config") && g.contains_key("model::qwen3"),
        "{g:?}"
    );
    let known: Vec<BTreeSet<String>> = KNOWN_CYCLES
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect();
    let found = cycles(&g);
    let new: Vec<&BTreeSet<String>> = found.iter().filter(|c| !known.contains(c)).collect();
    assert!(
        new.is_empty(),
        "import cycles (each set imports itself round): {new:?}\ngraph: {g:#?}"
    );
    let stale: Vec<&BTreeSet<String>> = known.iter().filter(|c| !found.contains(c)).collect();
    assert!(
        stale.is_empty(),
        "KNOWN_CYCLES lists cycles that are gone: remove {stale:?}"
    );
}
