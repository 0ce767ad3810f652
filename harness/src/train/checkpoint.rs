//! Checkpoints: everything a run needs to continue bitwise identically (on CPU), as one typed
//! [`TrainerState`], written as a directory `checkpoints/step-NNNNNN/` of safetensors files that
//! Python reads (`safetensors.torch.load_file`):
//!
//! | file                   | tensors                                                             |
//! |------------------------|---------------------------------------------------------------------|
//! | `policy.safetensors`   | the trainable policy by parameter name (the adapters only with LoRA) |
//! | `optimizer.safetensors`| AdamW's `exp_avg/<name>` and `exp_avg_sq/<name>` for those          |
//! | `engine.safetensors`   | the engine's `weights/<name>` (unless rebuildable) and pending stale snapshots `pending/<j>/<name>` |
//! | `critic.safetensors`   | the value model's `params/<name>` and its AdamW moments (PPO)       |
//! | `reference.safetensors`| the reference policy (KL penalties)                                 |
//! | `trainer_state.json`   | step, seed, AdamW step counts, the algorithm's state (DCMDP's λ, bit-exact), file sizes |
//! | `SHA256SUMS`           | a SHA-256 per file (`sha256sum -c SHA256SUMS` checks it)             |
//!
//! Files are only present when the run has that part. Randomness needs no saving: each step
//! reseeds from `(seed, step)`. A checkpoint is written to a temp directory and renamed, so a crash
//! never leaves a half-written one; then all but the newest `checkpoint.keep` are removed. Loading
//! checks every file against its checksum before parsing it, so a truncated or corrupted file is
//! reported by name and check ([`load`]); [`load_latest`] falls back to the newest checkpoint that
//! passes.
use crate::model::weights::{dtype_of, kind_of};
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Tensors by name, in the order their owner lists them.
pub type NamedTensors = Vec<(String, Tensor)>;

pub const POLICY_FILE: &str = "policy.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const ENGINE_FILE: &str = "engine.safetensors";
pub const CRITIC_FILE: &str = "critic.safetensors";
pub const REFERENCE_FILE: &str = "reference.safetensors";
/// The JSON part of a checkpoint.
pub const STATE_FILE: &str = "trainer_state.json";
/// One `<sha256>  <file>` line per file, as `sha256sum` writes them.
pub const SUMS_FILE: &str = "SHA256SUMS";
/// Layout version in `trainer_state.json`.
const FORMAT: u32 = 2;

/// AdamW's state for one model: the moments by parameter name, and the update count `t`.
pub struct OptimState {
    pub exp_avg: NamedTensors,
    pub exp_avg_sq: NamedTensors,
    pub t: i64,
}

/// The inference engine: its current weights (`None` when the loop can rebuild them from the
/// policy: LoRA without staleness) and the trainer snapshots it has not seen yet (staleness).
pub struct EngineState {
    pub weights: Option<NamedTensors>,
    pub pending: Vec<NamedTensors>,
}

/// PPO's critic: the value model and its AdamW.
pub struct CriticState {
    pub params: NamedTensors,
    pub optim: OptimState,
}

/// Everything a checkpoint holds.
pub struct TrainerState {
    /// Last completed step.
    pub step: usize,
    pub seed: i64,
    /// The trainable policy parameters (LoRA: the adapters; the base is rebuilt from the config).
    pub policy: NamedTensors,
    pub optim: OptimState,
    pub engine: EngineState,
    pub critic: Option<CriticState>,
    pub reference: Option<NamedTensors>,
    /// [`crate::objective::Algorithm::state`].
    pub algorithm: serde_json::Value,
}

/// `trainer_state.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StateFile {
    format: u32,
    step: usize,
    seed: i64,
    optim_t: i64,
    critic_optim_t: Option<i64>,
    algorithm: serde_json::Value,
    /// Byte size of each tensor file (to say "truncated" when a checksum fails).
    files: BTreeMap<String, u64>,
}

pub fn dir_for(root: &Path, step: usize) -> PathBuf {
    root.join("checkpoints").join(format!("step-{step:06}"))
}

/// The checkpoint directories under `root/checkpoints`, oldest first.
pub fn list(root: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root.join("checkpoints")) else {
        return vec![];
    };
    let mut out: Vec<(usize, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let step = name.to_str()?.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The newest checkpoint directory (checked only when loaded).
pub fn latest(root: &Path) -> Option<(usize, PathBuf)> {
    list(root).pop()
}

// ---- writing ----

/// A tensor as safetensors writes it (copied to host bytes when written).
struct HostView {
    tensor: Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl HostView {
    fn new(t: &Tensor) -> Result<Self> {
        let tensor = t.detach().to_device(Device::Cpu).contiguous();
        let dtype = dtype_of(tensor.kind())?;
        let shape = tensor.size().iter().map(|&d| d as usize).collect();
        Ok(HostView {
            tensor,
            dtype,
            shape,
        })
    }
}

impl View for &HostView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let mut data = vec![0u8; self.data_len()];
        self.tensor
            .f_copy_data_u8(&mut data, self.tensor.numel())
            .expect("a contiguous host tensor copies out");
        data.into()
    }
    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }
}

pub(super) fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(n, t)| Ok((n.as_str(), HostView::new(t)?)))
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize_to_file(views.iter().map(|(n, v)| (*n, v)), &Some(meta), path).map_err(
        |e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: format!("write failed: {e:?}"),
        },
    )
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn prefixed(prefix: &str, tensors: &[(String, Tensor)]) -> NamedTensors {
    tensors
        .iter()
        .map(|(n, t)| (format!("{prefix}{n}"), t.shallow_clone()))
        .collect()
}

fn optim_tensors(o: &OptimState) -> NamedTensors {
    let mut t = prefixed("exp_avg/", &o.exp_avg);
    t.extend(prefixed("exp_avg_sq/", &o.exp_avg_sq));
    t
}

impl TrainerState {
    /// The tensor files of this state, by file name (parts the run does not have are absent).
    fn files(&self) -> Vec<(&'static str, NamedTensors)> {
        let mut files = vec![
            (POLICY_FILE, prefixed("", &self.policy)),
            (OPTIMIZER_FILE, optim_tensors(&self.optim)),
        ];
        let mut engine = self
            .engine
            .weights
            .as_ref()
            .map(|w| prefixed("weights/", w))
            .unwrap_or_default();
        for (j, snap) in self.engine.pending.iter().enumerate() {
            engine.extend(prefixed(&format!("pending/{j}/"), snap));
        }
        if !engine.is_empty() {
            files.push((ENGINE_FILE, engine));
        }
        if let Some(c) = &self.critic {
            let mut t = prefixed("params/", &c.params);
            t.extend(optim_tensors(&c.optim));
            files.push((CRITIC_FILE, t));
        }
        if let Some(r) = &self.reference {
            files.push((REFERENCE_FILE, prefixed("", r)));
        }
        files
    }
}

/// Write `state` as checkpoint `state.step` under `root`, atomically; then keep only the newest
/// `keep` checkpoints (at least this one).
pub fn save(root: &Path, state: &TrainerState, keep: usize) -> Result<PathBuf> {
    let ckdir = root.join("checkpoints");
    let final_dir = dir_for(root, state.step);
    let tmp = ckdir.join(format!(".tmp-step-{:06}", state.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut sizes = BTreeMap::new();
    let mut names = vec![];
    for (name, tensors) in state.files() {
        let p = tmp.join(name);
        write_tensors(&p, &tensors)?;
        let len = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
        sizes.insert(name.to_string(), len);
        names.push(name);
    }
    let json = StateFile {
        format: FORMAT,
        step: state.step,
        seed: state.seed,
        optim_t: state.optim.t,
        critic_optim_t: state.critic.as_ref().map(|c| c.optim.t),
        algorithm: state.algorithm.clone(),
        files: sizes,
    };
    let sp = tmp.join(STATE_FILE);
    std::fs::write(
        &sp,
        serde_json::to_string_pretty(&json).expect("state serialises"),
    )
    .map_err(|e| Error::io(&sp, e))?;
    names.push(STATE_FILE);
    let mut sums = String::new();
    for name in names {
        sums += &format!("{}  {name}\n", sha256_file(&tmp.join(name))?);
    }
    let sums_path = tmp.join(SUMS_FILE);
    std::fs::write(&sums_path, sums).map_err(|e| Error::io(&sums_path, e))?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    let all = list(root);
    for (_, old) in &all[..all.len().saturating_sub(keep.max(1))] {
        if *old != final_dir {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    // Leftovers of saves that a crash interrupted.
    for e in std::fs::read_dir(&ckdir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-step-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(final_dir)
}

// ---- reading ----

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// `SHA256SUMS` as (file, hex digest) pairs.
fn read_sums(dir: &Path) -> Result<Vec<(String, String)>> {
    let p = dir.join(SUMS_FILE);
    if !p.exists() && dir.join("tensors.ot").exists() {
        return Err(bad(
            dir,
            "an older checkpoint format (tensors.ot) that this version does not read: \
             delete the run's checkpoints/ to start it again",
        ));
    }
    let text = std::fs::read_to_string(&p).map_err(|e| bad(&p, format!("unreadable: {e}")))?;
    text.lines()
        .map(|l| match l.split_once("  ") {
            Some((sum, file)) if sum.len() == 64 && !file.contains('/') => {
                Ok((file.to_string(), sum.to_string()))
            }
            _ => Err(bad(&p, format!("malformed line `{l}`"))),
        })
        .collect()
}

/// Check `file` against its recorded SHA-256 (and size, when known).
fn verify(path: &Path, want: &str, size: Option<u64>) -> Result<()> {
    let len = std::fs::metadata(path)
        .map_err(|e| bad(path, format!("missing: {e}")))?
        .len();
    let got = sha256_file(path)?;
    if got == want {
        return Ok(());
    }
    let detail = match size {
        Some(s) if len < s => format!(" (truncated: {len} of {s} bytes)"),
        Some(s) if len != s => format!(" ({len} bytes, {s} written)"),
        _ => String::new(),
    };
    Err(bad(
        path,
        format!("SHA-256 mismatch{detail}: expected {want}, found {got}"),
    ))
}

/// The tensors of one checked safetensors file, by name (on the CPU).
pub(super) fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(path, format!("not a valid safetensors file: {e:?}")))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let kind = kind_of(view.dtype()).ok_or_else(|| {
                bad(
                    path,
                    format!("`{name}`: unsupported dtype {:?}", view.dtype()),
                )
            })?;
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
            Ok((name, t))
        })
        .collect()
}

/// The tensors of a checkpoint file, taken out by name.
struct TensorFile {
    tensors: HashMap<String, Tensor>,
}

impl TensorFile {
    fn open(dir: &Path, name: &str, listed: &[String]) -> Result<Option<Self>> {
        if !listed.iter().any(|f| f == name) {
            return Ok(None);
        }
        let tensors = read_tensors(&dir.join(name))?;
        Ok(Some(TensorFile { tensors }))
    }

    /// Every tensor `prefix<name>`, in name order.
    fn take_prefix(&mut self, prefix: &str) -> NamedTensors {
        let mut names: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|k| {
                let t = self.tensors.remove(&k).unwrap();
                (k[prefix.len()..].to_string(), t)
            })
            .collect()
    }

    fn optim(&mut self, t: i64) -> OptimState {
        OptimState {
            exp_avg: self.take_prefix("exp_avg/"),
            exp_avg_sq: self.take_prefix("exp_avg_sq/"),
            t,
        }
    }
}

/// Read and check the checkpoint in `dir`: every file against `SHA256SUMS`, then parsed. Errors
/// name the file and the failed check. Tensors are on the CPU, sorted by name (restore them by
/// name: [`copy_named`]).
pub fn load(dir: &Path) -> Result<TrainerState> {
    let sums = read_sums(dir)?;
    let listed: Vec<String> = sums.iter().map(|(f, _)| f.clone()).collect();
    let sum_of = |f: &str| sums.iter().find(|(n, _)| n == f).map(|(_, s)| s.as_str());
    let sp = dir.join(STATE_FILE);
    verify(
        &sp,
        sum_of(STATE_FILE).ok_or_else(|| bad(dir, format!("{SUMS_FILE} lists no {STATE_FILE}")))?,
        None,
    )?;
    let text = std::fs::read_to_string(&sp).map_err(|e| Error::io(&sp, e))?;
    let meta: StateFile =
        serde_json::from_str(&text).map_err(|e| bad(&sp, format!("invalid: {e}")))?;
    if meta.format != FORMAT {
        return Err(bad(
            &sp,
            format!("format {} (expected {FORMAT})", meta.format),
        ));
    }
    for (file, sum) in &sums {
        verify(&dir.join(file), sum, meta.files.get(file).copied())?;
    }
    let open = |name| TensorFile::open(dir, name, &listed);
    let mut policy = open(POLICY_FILE)?.ok_or_else(|| bad(dir, "no policy.safetensors listed"))?;
    let mut optim =
        open(OPTIMIZER_FILE)?.ok_or_else(|| bad(dir, "no optimizer.safetensors listed"))?;
    let engine = match open(ENGINE_FILE)? {
        None => EngineState {
            weights: None,
            pending: vec![],
        },
        Some(mut f) => engine_state(&mut f),
    };
    let critic = match (open(CRITIC_FILE)?, meta.critic_optim_t) {
        (Some(mut f), Some(t)) => Some(CriticState {
            params: f.take_prefix("params/"),
            optim: f.optim(t),
        }),
        (None, None) => None,
        _ => return Err(bad(&sp, "critic file and critic_optim_t disagree")),
    };
    Ok(TrainerState {
        step: meta.step,
        seed: meta.seed,
        policy: policy.take_prefix(""),
        optim: optim.optim(meta.optim_t),
        engine,
        critic,
        reference: open(REFERENCE_FILE)?.map(|mut f| f.take_prefix("")),
        algorithm: meta.algorithm,
    })
}

fn engine_state(f: &mut TensorFile) -> EngineState {
    let weights = f.take_prefix("weights/");
    let mut pending = vec![];
    loop {
        let snap = f.take_prefix(&format!("pending/{}/", pending.len()));
        if snap.is_empty() {
            break;
        }
        pending.push(snap);
    }
    EngineState {
        weights: (!weights.is_empty()).then_some(weights),
        pending,
    }
}

/// The tensor `name` of `src` (a checkpoint's tensors, read from `file`), which must have
/// `like`'s shape.
pub fn find<'t>(
    src: &'t [(String, Tensor)],
    name: &str,
    like: &Tensor,
    file: &Path,
) -> Result<&'t Tensor> {
    let t = src
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| bad(file, format!("missing tensor `{name}`")))?;
    if t.size() != like.size() {
        return Err(bad(
            file,
            format!(
                "tensor `{name}` has shape {:?}, the run expects {:?}",
                t.size(),
                like.size()
            ),
        ));
    }
    Ok(t)
}

/// Copy `src` (a checkpoint's tensors, read from `file`) into `dst` (a model's or optimizer's),
/// by name, checking that each is there with its shape.
pub fn copy_named(dst: &[(String, Tensor)], src: &[(String, Tensor)], file: &Path) -> Result<()> {
    for (name, d) in dst {
        let s = find(src, name, d, file)?;
        let mut d = d.shallow_clone();
        tch::no_grad(|| d.f_copy_(s))?;
    }
    Ok(())
}

/// A checkpoint that failed its checks, and why.
pub struct Rejected {
    pub dir: PathBuf,
    pub error: Error,
}

/// The newest checkpoint under `root` that passes [`load`], and the newer ones that did not.
/// `Ok(None)` when there is none at all; an error when there are some but none passes.
pub fn load_latest(root: &Path) -> Result<Option<(PathBuf, TrainerState, Vec<Rejected>)>> {
    let all = list(root);
    if all.is_empty() {
        return Ok(None);
    }
    let mut rejected = vec![];
    for (_, dir) in all.into_iter().rev() {
        match load(&dir) {
            Ok(state) => return Ok(Some((dir, state, rejected))),
            Err(error) => rejected.push(Rejected { dir, error }),
        }
    }
    let why: Vec<String> = rejected.iter().map(|r| r.error.to_string()).collect();
    Err(bad(
        &root.join("checkpoints"),
        format!(
            "no checkpoint passes its checks ({}); delete the checkpoints to start the run again",
            why.join("; ")
        ),
    ))
}

/// Move a rejected checkpoint aside (`corrupt-step-NNNNNN`), out of resume's and `keep`'s way,
/// kept for inspection.
pub fn set_aside(dir: &Path) -> Result<PathBuf> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let to = dir.with_file_name(format!("corrupt-{name}"));
    let _ = std::fs::remove_dir_all(&to);
    std::fs::rename(dir, &to).map_err(|e| Error::io(dir, e))?;
    Ok(to)
}
