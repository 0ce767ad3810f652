//! Where model tensors come from (a memory-mapped HF safetensors checkpoint, or random init) and how
//! they are written back as a HF directory that `transformers` loads.
use super::config::Qwen3Config;
use crate::{Error, Result};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, TensorInfo, View};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// A provider of named tensors for model construction.
pub trait WeightSource {
    /// The tensor `name` with exactly `shape`, in the source's compute dtype and device.
    /// `is_norm` tells a random initialiser to use ones (RMSNorm weights).
    fn take(&mut self, name: &str, shape: &[i64], is_norm: bool) -> Result<Tensor>;
    /// A tensor the model tolerates but does not need (e.g. `lm_head.weight` with tied embeddings).
    fn skip(&mut self, _name: &str) {}
    /// Called once all tensors were taken: reports anything the checkpoint had that was not used.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Random init as in HF (`normal(0, 0.02)`, norms ones), seeded through libtorch's global RNG.
pub struct RandomInit {
    kind: Kind,
    device: Device,
    std: f64,
}

impl RandomInit {
    pub fn new(seed: i64, kind: Kind, device: Device) -> Self {
        tch::manual_seed(seed);
        RandomInit {
            kind,
            device,
            std: 0.02,
        }
    }

    /// Zero weights (norms ones) for buffers that are overwritten right away; draws nothing from
    /// the global RNG.
    pub fn zeros(kind: Kind, device: Device) -> Self {
        RandomInit {
            kind,
            device,
            std: 0.0,
        }
    }
}

impl WeightSource for RandomInit {
    fn take(&mut self, _name: &str, shape: &[i64], is_norm: bool) -> Result<Tensor> {
        let t = if is_norm {
            Tensor::ones(shape, (Kind::Float, self.device))
        } else if self.std == 0.0 {
            Tensor::zeros(shape, (Kind::Float, self.device))
        } else {
            Tensor::randn(shape, (Kind::Float, self.device)) * self.std
        };
        Ok(t.to_kind(self.kind))
    }
}

/// The single-file checkpoint name and the shard index name of a HF model directory.
pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Files of a HF model directory that describe its tokenizer, chat template and generation
/// defaults: what travels with the weights (exports, downloads).
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "generation_config.json",
];

/// Whether `name` is a weight file that [`save_hf_dir`] writes: the single file, the index, or a
/// shard `model-NNNNN-of-NNNNN.safetensors`.
pub fn is_weight_file(name: &str) -> bool {
    let shard = name
        .strip_prefix("model-")
        .and_then(|r| r.strip_suffix(".safetensors"))
        .and_then(|r| r.split_once("-of-"))
        .is_some_and(|(a, b)| {
            [a, b]
                .iter()
                .all(|p| p.len() == 5 && p.bytes().all(|c| c.is_ascii_digit()))
        });
    shard || name == SINGLE_FILE || name == INDEX_FILE
}

/// Remove the weight files [`save_hf_dir`] writes (see [`is_weight_file`]) from `dir`, leaving
/// everything else; returns the names removed, sorted.
pub fn remove_weight_files(dir: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_weight_file(&name) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

struct MappedFile {
    path: PathBuf,
    map: Mmap,
    data_start: usize,
}

/// A local HF checkpoint: `model.safetensors`, or shards listed in `model.safetensors.index.json`.
/// Files are memory-mapped; each tensor is copied once, straight into its compute dtype and device.
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<MappedFile>,
    tensors: HashMap<String, (usize, TensorInfo)>,
    used: HashSet<String>,
    kind: Kind,
    device: Device,
}

pub(crate) fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::I8 => Kind::Int8,
        Dtype::F8_E4M3 => Kind::Float8e4m3fn,
        _ => return None,
    })
}

pub(crate) fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Int8 => Dtype::I8,
        Kind::Float8e4m3fn => Dtype::F8_E4M3,
        k => return Err(Error::Input(format!("cannot save tensors of kind {k:?}"))),
    })
}

impl Checkpoint {
    /// Open the checkpoint in `dir`; tensors will be produced as `kind` on `device`.
    pub fn open(dir: &Path, kind: Kind, device: Device) -> Result<Self> {
        let ck_err = |msg: String| Error::Checkpoint {
            path: dir.to_path_buf(),
            msg,
        };
        let index_path = dir.join(INDEX_FILE);
        if index_path.exists() && dir.join(SINGLE_FILE).exists() {
            // Two checkpoints in one folder (e.g. a re-init that left old shards): loading either
            // would silently disagree with tools that pick the other.
            return Err(ck_err(format!(
                "holds both {SINGLE_FILE} and {INDEX_FILE} (with its shards): two checkpoints in \
                 one folder; remove the stale one"
            )));
        }
        let (file_names, weight_map): (Vec<String>, Option<BTreeMap<String, String>>) =
            if index_path.exists() {
                #[derive(serde::Deserialize)]
                struct Index {
                    weight_map: BTreeMap<String, String>,
                }
                let text =
                    std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
                let index: Index =
                    serde_json::from_str(&text).map_err(|e| Error::json(&index_path, e))?;
                let mut names: Vec<String> = index.weight_map.values().cloned().collect();
                names.sort();
                names.dedup();
                (names, Some(index.weight_map))
            } else if dir.join(SINGLE_FILE).exists() {
                (vec![SINGLE_FILE.into()], None)
            } else {
                return Err(ck_err(
                    "no model.safetensors or model.safetensors.index.json".into(),
                ));
            };
        let mut files = Vec::new();
        let mut tensors = HashMap::new();
        for (i, name) in file_names.iter().enumerate() {
            let path = dir.join(name);
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: the checkpoint is treated as read-only for the lifetime of the map.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            let (header_len, meta) = SafeTensors::read_metadata(&map)
                .map_err(|e| ck_err(format!("{name}: bad safetensors header: {e:?}")))?;
            for (tname, info) in meta.tensors() {
                if let Some((prev, _)) = tensors.insert(tname.clone(), (i, info.clone())) {
                    return Err(ck_err(format!(
                        "tensor `{tname}` appears in both {} and {name}",
                        file_names[prev]
                    )));
                }
            }
            files.push(MappedFile {
                path,
                map,
                data_start: 8 + header_len,
            });
        }
        if let Some(wm) = weight_map {
            for (tname, fname) in &wm {
                match tensors.get(tname) {
                    Some((i, _)) if &file_names[*i] == fname => {}
                    _ => {
                        return Err(ck_err(format!(
                            "index lists `{tname}` in {fname}, which does not hold it"
                        )))
                    }
                }
            }
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            files,
            tensors,
            used: HashSet::new(),
            kind,
            device,
        })
    }

    pub fn tensor_names(&self) -> Vec<String> {
        let mut v: Vec<_> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }

    /// The stored dtype of the first floating tensor (what `torch_dtype` would say).
    pub fn stored_kind(&self) -> Option<Kind> {
        self.tensors
            .values()
            .find_map(|(_, info)| kind_of(info.dtype))
    }
}

impl WeightSource for Checkpoint {
    fn take(&mut self, name: &str, shape: &[i64], _is_norm: bool) -> Result<Tensor> {
        let (fi, info) = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let found: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        if found != shape {
            return Err(Error::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found,
            });
        }
        let file = &self.files[*fi];
        let stored = kind_of(info.dtype).ok_or_else(|| Error::Checkpoint {
            path: file.path.clone(),
            msg: format!("tensor `{name}` has unsupported dtype {:?}", info.dtype),
        })?;
        let (a, b) = info.data_offsets;
        let bytes = file
            .map
            .get(file.data_start + a..file.data_start + b)
            .ok_or_else(|| Error::Checkpoint {
                path: file.path.clone(),
                msg: format!("tensor `{name}` lies outside the file (truncated?)"),
            })?;
        let t = Tensor::f_from_data_size(bytes, shape, stored)?;
        // Move first (GPU casts are faster), then cast.
        let t = t.to_device(self.device).to_kind(self.kind);
        self.used.insert(name.to_string());
        Ok(t)
    }

    fn skip(&mut self, name: &str) {
        if self.tensors.contains_key(name) {
            self.used.insert(name.to_string());
        }
    }

    fn finish(&mut self) -> Result<()> {
        let mut extra: Vec<&String> = self
            .tensors
            .keys()
            .filter(|n| !self.used.contains(*n))
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        extra.sort();
        let shown: Vec<String> = extra.iter().take(10).map(|s| format!("`{s}`")).collect();
        let more = extra.len().saturating_sub(10);
        Err(Error::UnexpectedTensors(format!(
            "{}{} in {}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            self.dir.display()
        )))
    }
}

struct OwnedView {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &OwnedView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_view(t: &Tensor, kind: Kind) -> Result<OwnedView> {
    let t = t.detach().to_device(Device::Cpu).to_kind(kind).contiguous();
    let numel = t.numel();
    let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(OwnedView {
        dtype: dtype_of(kind)?,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        data,
    })
}

/// Write `named` as one safetensors file with tensors stored as `kind`.
pub fn save_safetensors(path: &Path, named: Vec<(String, Tensor)>, kind: Kind) -> Result<()> {
    let views = named
        .iter()
        .map(|(name, t)| Ok((name.clone(), to_view(t, kind)?)))
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize_to_file(
        views.iter().map(|(n, v)| (n.as_str(), v)),
        &Some(meta),
        path,
    )
    .map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("write failed: {e:?}"),
    })
}

/// Expand stacked expert tensors (`…experts.gate_proj` `[E, I, H]`) into HF's per-expert names.
pub fn hf_named_tensors(named: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let mut out = Vec::with_capacity(named.len());
    for (name, t) in named {
        match name.rsplit_once(".experts.") {
            Some((prefix, proj)) if !proj.contains('.') => {
                for e in 0..t.size()[0] {
                    out.push((format!("{prefix}.experts.{e}.{proj}.weight"), t.get(e)));
                }
            }
            _ => out.push((name, t)),
        }
    }
    out
}

/// Write `config.json` and the tensors as a HF directory, sharded when the total exceeds
/// `max_shard_bytes` (then with `model.safetensors.index.json`). Tensors are stored as `kind`.
/// Weight files already in `dir` (either layout) are removed first, so no stale shard or single
/// file is left beside the new checkpoint; other files are kept.
pub fn save_hf_dir(
    cfg: &Qwen3Config,
    named: Vec<(String, Tensor)>,
    dir: &Path,
    kind: Kind,
    max_shard_bytes: u64,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    remove_weight_files(dir)?;
    let mut config = cfg.to_hf_json();
    config["torch_dtype"] = crate::runtime::dtype_name(kind)
        .replace("fp32", "float32")
        .replace("bf16", "bfloat16")
        .replace("fp16", "float16")
        .into();
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&config).unwrap())
        .map_err(|e| Error::io(&cfg_path, e))?;
    let named = hf_named_tensors(named);
    // Plan shards by size, keeping order.
    let mut shards: Vec<Vec<(String, Tensor)>> = vec![vec![]];
    let mut size = 0u64;
    let mut total = 0u64;
    for (name, t) in named {
        let bytes = (t.numel() * kind.elt_size_in_bytes()) as u64;
        if size > 0 && size + bytes > max_shard_bytes {
            shards.push(vec![]);
            size = 0;
        }
        size += bytes;
        total += bytes;
        shards.last_mut().unwrap().push((name, t));
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let fname = if n == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
        };
        let views = shard
            .iter()
            .map(|(name, t)| Ok((name.clone(), to_view(t, kind)?)))
            .collect::<Result<Vec<_>>>()?;
        for (name, _) in &views {
            weight_map.insert(name.clone(), fname.clone());
        }
        let path = dir.join(&fname);
        let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        safetensors::serialize_to_file(
            views.iter().map(|(n, v)| (n.as_str(), v)),
            &Some(meta),
            &path,
        )
        .map_err(|e| Error::Checkpoint {
            path: path.clone(),
            msg: format!("write failed: {e:?}"),
        })?;
    }
    if n > 1 {
        let index =
            serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let p = dir.join(INDEX_FILE);
        std::fs::write(&p, serde_json::to_string_pretty(&index).unwrap())
            .map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn weight_file_names() {
        for yes in [SINGLE_FILE, INDEX_FILE, "model-00001-of-00003.safetensors"] {
            assert!(is_weight_file(yes), "{yes}");
        }
        for no in [
            "config.json",
            "tokenizer.json",
            "adapter_model.safetensors",
            "model-1-of-3.safetensors",
            "model-00001-of-00003.bin",
            "my-model.safetensors",
        ] {
            assert!(!is_weight_file(no), "{no}");
        }
    }

    #[test]
    fn rewriting_a_directory_leaves_one_layout_and_the_users_files() {
        let cfg = crate::model::presets::preset("tiny-qwen3").unwrap();
        let m = crate::model::load_model("tiny-qwen3", Kind::Float, Device::Cpu, 7).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("NOTES.md"), "mine").unwrap();
        save_hf_dir(&cfg, m.named_parameters(), d, Kind::Float, 1 << 20).unwrap();
        assert!(d.join(INDEX_FILE).exists());
        save_hf_dir(&cfg, m.named_parameters(), d, Kind::Float, 5 << 30).unwrap();
        assert_eq!(files(d), ["NOTES.md", "config.json", SINGLE_FILE]);
    }

    #[test]
    fn a_folder_with_both_layouts_is_refused_naming_the_files() {
        let cfg = crate::model::presets::preset("tiny-qwen3").unwrap();
        let m = crate::model::load_model("tiny-qwen3", Kind::Float, Device::Cpu, 7).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        save_hf_dir(&cfg, m.named_parameters(), &a, Kind::Float, 1 << 20).unwrap();
        save_hf_dir(&cfg, m.named_parameters(), &b, Kind::Float, 5 << 30).unwrap();
        std::fs::copy(b.join(SINGLE_FILE), a.join(SINGLE_FILE)).unwrap();
        let e = Checkpoint::open(&a, Kind::Float, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(SINGLE_FILE) && e.contains(INDEX_FILE), "{e}");
    }
}
