//! Where a model spec points: a local Hugging Face directory, a preset, or a Hugging Face Hub id
//! (`Qwen/Qwen3-8B`, optionally `Qwen/Qwen3-8B@<branch or commit>`) resolved through the local
//! Hugging Face cache.
//!
//! The cache has the layout `huggingface_hub` writes (and `huggingface-cli download` fills):
//! `<cache>/models--Qwen--Qwen3-8B/refs/main` holds a commit hash and
//! `<cache>/models--Qwen--Qwen3-8B/snapshots/<commit>/` the files. The `hf-hub` crate reads it and
//! downloads into it. The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`, as in `huggingface_hub`.
//!
//! Offline by default: nothing is downloaded unless `HARNESS_HUB_DOWNLOAD=1` (what
//! `harness --hub-download` sets) and `HF_HUB_OFFLINE` is not set; `HF_ENDPOINT` and `HF_TOKEN`
//! are honoured when downloading. Downloading needs the `hub-download` cargo feature (an HTTP
//! and TLS stack); without it a missing model's error says how to fetch it instead.
use super::{presets, Qwen3Config};
use crate::{Error, Result};
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// Set to `1` to let [`resolve`] download a Hub model that is not in the cache.
pub const DOWNLOAD_ENV: &str = "HARNESS_HUB_DOWNLOAD";

/// What a model spec (`model.name`, `--model`) names.
pub enum ModelSource {
    /// A local Hugging Face model directory (given as a path, or a Hub id's cached snapshot).
    Dir(PathBuf),
    /// A preset shape (random init).
    Preset(Qwen3Config),
}

/// Resolve a model spec: an existing directory first, then a preset name, then a Hub id or a
/// path (see [`resolve`]). Errors say which of these the spec looked like and what is missing.
pub fn locate(spec: &str) -> Result<ModelSource> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(ModelSource::Dir(path.to_path_buf()));
    }
    if presets::PRESETS.contains(&spec) || !looks_like_path(spec) {
        return presets::preset(spec).map(ModelSource::Preset);
    }
    resolve(spec).map(ModelSource::Dir)
}

/// The local directory of a model named by path or Hub id: the directory itself when it exists,
/// else the Hub id's snapshot in the local cache (downloaded first when downloads are allowed).
/// The error names the spec, the directory looked for and, for a Hub id, the cache path searched.
///
/// This is what model loading uses; `validate` can call it to check `model.name` up front.
pub fn resolve(name: &str) -> Result<PathBuf> {
    let download = downloads_allowed().then(endpoint);
    resolve_in(name, &cache_dir(), download.as_deref())
}

/// [`resolve`] with the cache and download endpoint (`None`: offline) given explicitly.
pub fn resolve_in(name: &str, cache: &Path, download: Option<&str>) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let Some(id) = HubId::parse(name) else {
        return Err(not_found(name, format!("no directory {}", shown(path))));
    };
    match (id.cached(cache), download) {
        (Ok(dir), _) => Ok(dir),
        (Err(_), Some(endpoint)) => id.download(cache, endpoint),
        (Err(why), None) => Err(not_found(
            name,
            format!(
                "no directory {} and not in the Hugging Face cache ({why}); download it with \
                 `huggingface-cli download {}` (or run harness with --hub-download, or \
                 {DOWNLOAD_ENV}=1), or set HF_HUB_CACHE / HF_HOME to the cache that has it",
                shown(path),
                id.repo
            ),
        )),
    }
}

/// Whether a spec reads as a path or Hub id rather than a preset name.
pub fn looks_like_path(spec: &str) -> bool {
    spec.contains('/') || spec.contains('\\') || spec.starts_with('.') || spec.starts_with('~')
}

/// The Hugging Face hub cache directory this process uses (see the module docs).
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return p;
    }
    if let Some(home) = var("HF_HOME") {
        return home.join("hub");
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

/// Downloads are opt-in (`HARNESS_HUB_DOWNLOAD=1`); `HF_HUB_OFFLINE=1` forbids them.
pub fn downloads_allowed() -> bool {
    let on = |k: &str| {
        std::env::var(k).is_ok_and(|v| matches!(v.to_lowercase().as_str(), "1" | "true" | "yes"))
    };
    on(DOWNLOAD_ENV) && !on("HF_HUB_OFFLINE")
}

fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".into())
}

fn not_found(spec: &str, msg: String) -> Error {
    Error::ModelNotFound {
        spec: spec.to_string(),
        msg,
    }
}

/// A path as the user gave it, with the folder a relative path was taken from.
fn shown(path: &Path) -> String {
    match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => {
            format!("{} (relative to {})", path.display(), cwd.display())
        }
        _ => path.display().to_string(),
    }
}

/// `owner/name` with an optional `@revision` (branch, tag or commit; default `main`).
#[derive(Debug, PartialEq)]
struct HubId {
    repo: String,
    revision: String,
}

impl HubId {
    /// Hub repository names: `[A-Za-z0-9._-]`, not starting or ending in `.` or `-`, no `--`
    /// or `..`, at most 96 characters each side; revisions `[A-Za-z0-9._/-]` without `..`.
    fn parse(s: &str) -> Option<HubId> {
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev))
                if !rev.is_empty()
                    && !rev.contains("..")
                    && rev
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"._-/".contains(&c)) =>
            {
                (r, rev)
            }
            Some(_) => return None,
            None => (s, "main"),
        };
        let (owner, name) = repo.split_once('/')?;
        let part_ok = |p: &str| {
            (1..=96).contains(&p.len())
                && p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
                && !p.starts_with(['.', '-'])
                && !p.ends_with(['.', '-'])
                && !p.contains("--")
                && !p.contains("..")
        };
        (part_ok(owner) && part_ok(name)).then(|| HubId {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }

    /// The cached snapshot directory (with its `config.json`), or why there is none.
    fn cached(&self, cache: &Path) -> std::result::Result<PathBuf, String> {
        let folder = cache.join(self.hf_repo().folder_name());
        let cached = Cache::new(cache.to_path_buf()).repo(self.hf_repo());
        if let Some(cfg) = cached.get("config.json") {
            return Ok(cfg.parent().unwrap_or(&folder).to_path_buf());
        }
        // A ref file with a trailing newline (hand-made caches), or a commit hash given as the
        // revision (it names its snapshot directly, with no refs/ entry).
        let refs = folder.join("refs").join(&self.revision);
        let commit = std::fs::read_to_string(&refs)
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| self.revision.clone());
        let snapshot = folder.join("snapshots").join(&commit);
        if snapshot.join("config.json").is_file() {
            return Ok(snapshot);
        }
        Err(if !folder.is_dir() {
            format!("searched {}", folder.display())
        } else if !refs.is_file() && !snapshot.is_dir() {
            format!(
                "searched {}: no refs/{} and no snapshot of that name",
                folder.display(),
                self.revision
            )
        } else {
            format!(
                "searched {}: its snapshot {commit} has no config.json (incomplete download?)",
                folder.display()
            )
        })
    }

    /// Without the `hub-download` feature there is no HTTP client: say how to get the model.
    #[cfg(not(feature = "hub-download"))]
    fn download(&self, cache: &Path, _endpoint: &str) -> Result<PathBuf> {
        Err(not_found(
            &self.repo,
            format!(
                "not in the Hugging Face cache ({}), and this harness was built without download \
                 support: run `huggingface-cli download {}` (with HF_HUB_CACHE={}), or rebuild \
                 with `cargo build --release --features hub-download`",
                self.cached(cache).err().unwrap_or_default(),
                self.repo,
                cache.display()
            ),
        ))
    }

    /// Download the files a model needs (config, safetensors weights, tokenizer) into `cache`
    /// from `endpoint`, then return the snapshot.
    #[cfg(feature = "hub-download")]
    fn download(&self, cache: &Path, endpoint: &str) -> Result<PathBuf> {
        use hf_hub::api::sync::ApiBuilder;
        let fail = |msg: String| not_found(&self.repo, format!("download from {endpoint}: {msg}"));
        let mut builder = ApiBuilder::from_cache(Cache::new(cache.to_path_buf()))
            .with_endpoint(endpoint.to_string())
            .with_retries(3)
            .with_progress(true);
        if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
            builder = builder.with_token(Some(token));
        }
        let api = builder.build().map_err(|e| fail(e.to_string()))?;
        let repo = api.repo(self.hf_repo());
        let info = repo.info().map_err(|e| fail(e.to_string()))?;
        let files: Vec<String> = info
            .siblings
            .into_iter()
            .map(|s| s.rfilename)
            .filter(|f| wanted(f))
            .collect();
        if !files.iter().any(|f| f == "config.json") {
            return Err(fail("the repository has no config.json".into()));
        }
        if !files.iter().any(|f| f.ends_with(".safetensors")) {
            return Err(fail("the repository has no safetensors weights".into()));
        }
        for f in &files {
            eprintln!("downloading {}/{f} into {}", self.repo, cache.display());
            repo.get(f).map_err(|e| fail(format!("{f}: {e}")))?;
        }
        self.cached(cache).map_err(fail)
    }
}

/// The files of a Hub model repository that loading needs: config, safetensors weights (single or
/// sharded with the index), generation config and tokenizer files; top-level only.
#[cfg_attr(not(feature = "hub-download"), allow(dead_code))]
fn wanted(file: &str) -> bool {
    use super::weights::{is_weight_file, TOKENIZER_FILES};
    !file.contains('/')
        && (file == "config.json" || TOKENIZER_FILES.contains(&file) || is_weight_file(file))
}

#[cfg(test)]
mod tests;
