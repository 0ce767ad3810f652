//! A grid's shared SFT warm-starts. Every run of a grid point with a fixed `task.sft.seed` and
//! `model.init_seed` starts RL from the same warm-started policy, so the grid runner keeps it in
//! `<grid>/sft-cache/<key>.safetensors` and the other runs load it instead of repeating SFT
//! (1000 SFT steps cost minutes on a CPU). Loading restores the trained tensors bit for bit, so a
//! cached start equals a computed one. The key hashes everything the warm-start depends on; only
//! presets on synthetic tasks are cached (a model directory or a data file could change under an
//! unchanged path).
use super::checkpoint::{copy_named, read_tensors, write_tensors};
use super::sft;
use crate::config::validate::is_preset;
use crate::config::RunConfig;
use crate::model::Qwen3;
use crate::rundir::PidLock;
use crate::task::Task;
use crate::Result;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a run waits for another's warm-start of the same key.
const LOCK_WAIT: Duration = Duration::from_secs(3600);

/// The cache file of this run's warm-start under `dir`, or `None` when it is not cacheable.
pub fn entry(dir: &Path, cfg: &RunConfig, seed: i64, device: tch::Device) -> Option<PathBuf> {
    let sft = cfg.task.sft.as_ref()?;
    let synthetic = cfg.task.train_file.is_none() && cfg.task.eval_files.is_empty();
    if !is_preset(&cfg.model.name) || !synthetic {
        return None;
    }
    // LoRA adapters start from the run seed's draw; full fine-tuning does not use it.
    let lora_seed = cfg.model.lora.as_ref().map(|_| seed);
    let inputs = serde_json::json!({
        "model": cfg.model,
        "task": cfg.task,
        "init_seed": cfg.model.init_seed.unwrap_or(seed),
        "sft_seed": sft.seed.unwrap_or(seed),
        "lora_seed": lora_seed,
        "precision": cfg.train.precision,
        "device": format!("{device:?}"),
        // Intra-op threads can change a reduction's order on the CPU.
        "threads": tch::get_num_threads(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let digest = Sha256::digest(inputs.to_string().as_bytes());
    let key: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Some(dir.join(format!("{key}.safetensors")))
}

/// Warm-start `policy` from `file` when it holds this key's tensors, else by SFT (then stores
/// them there: written to a temporary name and renamed, so a concurrent reader never sees half a
/// file). A cache file that cannot be read is recomputed and replaced, with a warning.
pub fn warm_start(
    policy: &Qwen3,
    task: &dyn Task,
    cfg: &RunConfig,
    seed: i64,
    file: &Path,
) -> Result<()> {
    let sft = cfg
        .task
        .sft
        .as_ref()
        .expect("cache entries exist only with SFT");
    let named = policy.trainable_named_parameters();
    let dir = file.parent().expect("a cache file has a directory");
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    // Runs started together wait for the first one's warm-start instead of repeating it; without
    // the lock (held too long, or unwritable) a run computes its own, which is equally correct.
    let _lock = PidLock::acquire_waiting(&file.with_extension("lock"), LOCK_WAIT).ok();
    if file.exists() {
        let stored = read_tensors(file).map(|t| t.into_iter().collect::<Vec<_>>());
        match stored.and_then(|t| copy_named(&named, &t, file)) {
            Ok(()) => return Ok(()),
            Err(e) => eprintln!(
                "warning: SFT cache {} unusable ({e}); recomputing",
                file.display()
            ),
        }
    }
    sft::warm_start(policy, task, sft, seed)?;
    let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
    write_tensors(&tmp, &named)?;
    std::fs::rename(&tmp, file).map_err(|e| crate::Error::io(file, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::run_training_with_sft_cache;
    use crate::train::tests::{fast_config, metrics_of, read_jsonl, without_timing};
    use std::sync::atomic::AtomicBool;

    fn train(cfg: &RunConfig, seed: i64, dir: &Path, cache: Option<&Path>) {
        tch::set_num_threads(1);
        let stop = AtomicBool::new(false);
        run_training_with_sft_cache(cfg, seed, dir, cache, &stop, &mut |_| {}).unwrap();
    }

    #[test]
    fn a_cached_warm_start_trains_exactly_like_a_computed_one() {
        // The runs draw from libtorch's global generator: no other test may seed it meanwhile.
        let _rng = crate::rng_lock();
        let mut cfg = fast_config("{ name: grpo }", 2);
        cfg = cfg
            .edit(|c| c.task.sft.as_mut().unwrap().seed = Some(3))
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let (stored, loaded, plain) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        train(&cfg, 1, &stored, Some(&cache));
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(
            files.len(),
            1,
            "one warm-start stored, no lock or temp file left"
        );
        // The second run loads the stored file (it is not rewritten).
        let file = files[0].path();
        let before = std::fs::metadata(&file).unwrap().modified().unwrap();
        train(&cfg, 1, &loaded, Some(&cache));
        assert_eq!(
            std::fs::metadata(&file).unwrap().modified().unwrap(),
            before
        );
        train(&cfg, 1, &plain, None);
        assert_eq!(metrics_of(&stored), metrics_of(&plain));
        assert_eq!(metrics_of(&loaded), metrics_of(&plain));
        let evals = |d: &Path| without_timing(read_jsonl(&d.join("eval.jsonl")));
        assert_eq!(evals(&loaded), evals(&plain));
    }

    #[test]
    fn the_key_follows_what_the_warm_start_depends_on() {
        let cfg = fast_config("{ name: grpo }", 2);
        let dir = Path::new("/c");
        let key = |c: &RunConfig, seed| entry(dir, c, seed, tch::Device::Cpu).unwrap();
        // Without `sft.seed` / `init_seed` the run seed is both.
        let no_init = cfg.clone().edit(|c| c.model.init_seed = None).unwrap();
        assert_ne!(key(&no_init, 1), key(&no_init, 2));
        let fixed = cfg
            .clone()
            .edit(|c| c.task.sft.as_mut().unwrap().seed = Some(0))
            .unwrap();
        assert_eq!(
            key(&fixed, 1),
            key(&fixed, 2),
            "RL seeds share one warm-start"
        );
        let lr = fixed
            .clone()
            .edit(|c| c.task.sft.as_mut().unwrap().lr = 1e-3)
            .unwrap();
        assert_ne!(key(&fixed, 1), key(&lr, 1));
        let rl_only = fixed.clone().edit(|c| c.optim.lr = 1.0).unwrap();
        assert_eq!(
            key(&fixed, 1),
            key(&rl_only, 1),
            "RL settings are not in the key"
        );
        let lora = fixed
            .clone()
            .edit(|c| c.model.lora = Some(serde_yaml::from_str("{ rank: 4 }").unwrap()))
            .unwrap();
        assert_ne!(
            key(&lora, 1),
            key(&lora, 2),
            "adapters start from the run seed"
        );
        let no_sft = fixed.clone().edit(|c| c.task.sft = None).unwrap();
        assert!(entry(dir, &no_sft, 1, tch::Device::Cpu).is_none());
        let local = fixed
            .clone()
            .edit(|c| c.model.name = "/models/x".into())
            .unwrap();
        assert!(entry(dir, &local, 1, tch::Device::Cpu).is_none());
    }
}
