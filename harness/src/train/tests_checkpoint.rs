//! Checkpoint files: the newest `keep` are kept, a truncated or corrupted file is named with the
//! failed check and resume falls back to the previous checkpoint (finishing as an uninterrupted
//! run does), algorithm state round-trips bit-exactly, and Python reads the tensors.
use super::checkpoint::{self, POLICY_FILE, SUMS_FILE};
use super::tests::{crash_after_step, fast_config, metrics_of, read_jsonl, train};
use super::*;
use std::path::Path;

fn steps_kept(dir: &Path) -> Vec<usize> {
    checkpoint::list(dir).into_iter().map(|(s, _)| s).collect()
}

#[test]
fn keeps_the_newest_n_with_checksums() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: grpo }", 4)
        .edit(|c| {
            c.task.sft = None;
            c.checkpoint.every = 1;
        })
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    train(&cfg, 21, tmp.path());
    assert_eq!(steps_kept(tmp.path()), [3, 4], "default keep = 2");
    let (_, ck) = checkpoint::latest(tmp.path()).unwrap();
    let sums = std::fs::read_to_string(ck.join(SUMS_FILE)).unwrap();
    let files: Vec<&str> = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    assert_eq!(
        files,
        [
            POLICY_FILE,
            "optimizer.safetensors",
            "engine.safetensors",
            "trainer_state.json"
        ]
    );
    let cfg = cfg
        .edit(|c| {
            c.checkpoint.keep = 3;
        })
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    train(&cfg, 21, tmp.path());
    assert_eq!(steps_kept(tmp.path()), [2, 3, 4]);
}

#[test]
fn truncated_newest_checkpoint_falls_back_and_finishes_like_an_uninterrupted_run() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: dcmdp, c: 0.001 }", 5);
    let full = tempfile::tempdir().unwrap();
    train(&cfg, 22, full.path());

    // Killed after step 5's row, before its checkpoint: step-2 and step-4 are on disk.
    let cut = tempfile::tempdir().unwrap();
    crash_after_step(&cfg, 22, cut.path(), 5);
    assert_eq!(steps_kept(cut.path()), [2, 4]);
    let newest = checkpoint::dir_for(cut.path(), 4);
    let policy = newest.join(POLICY_FILE);
    let len = std::fs::metadata(&policy).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&policy)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);

    let err = checkpoint::load(&newest)
        .err()
        .expect("a truncated file fails");
    let msg = err.to_string();
    assert!(msg.contains("step-000004/policy.safetensors"), "{msg}");
    assert!(
        msg.contains("SHA-256 mismatch") && msg.contains("truncated"),
        "{msg}"
    );

    let out = train(&cfg, 22, cut.path());
    assert_eq!(out.state, RunState::Done);
    let why = out.reason.expect("the fallback is reported");
    assert!(
        why.contains("resumed from") && why.contains("step-000002") && why.contains("truncated"),
        "{why}"
    );
    assert!(cut.path().join("checkpoints/corrupt-step-000004").is_dir());
    assert_eq!(metrics_of(full.path()), metrics_of(cut.path()));
    assert_eq!(
        read_jsonl(&full.path().join("eval.jsonl")),
        read_jsonl(&cut.path().join("eval.jsonl"))
    );
}

#[test]
fn a_corrupted_byte_is_named_and_no_good_checkpoint_is_an_error() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: dcmdp, c: 0.001 }", 2)
        .edit(|c| {
            c.task.sft = None;
        })
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    train(&cfg, 23, tmp.path());
    let (_, ck) = checkpoint::latest(tmp.path()).unwrap();

    // λ (algorithm state) round-trips bit-exactly.
    let state = checkpoint::load(&ck).unwrap();
    let bits = state.algorithm["lambda_bits"].as_u64().unwrap();
    let lambda = state.algorithm["lambda"].as_f64().unwrap();
    assert_eq!(f64::from_bits(bits), lambda);

    let file = ck.join("optimizer.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    let msg = checkpoint::load(&ck).err().unwrap().to_string();
    assert!(
        msg.contains("step-000002/optimizer.safetensors") && msg.contains("SHA-256 mismatch"),
        "{msg}"
    );
    assert!(!msg.contains("truncated"), "{msg}");

    // Every checkpoint bad (keep 2: step-0 and step-2): resume refuses, naming them.
    let zero = checkpoint::dir_for(tmp.path(), 0);
    std::fs::remove_file(zero.join("trainer_state.json")).unwrap();
    let err = run_training(&cfg, 23, tmp.path(), &Default::default(), &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no checkpoint passes its checks")
            && err.contains("optimizer.safetensors")
            && err.contains("step-000000/trainer_state.json"),
        "{err}"
    );
    // Nothing was set aside or lost.
    assert_eq!(steps_kept(tmp.path()), [0, 2]);
}

#[test]
fn python_reads_the_checkpoint() {
    let _rng = crate::rng_lock();
    let python = "python3"; // scripts/env.sh puts the project venv's first on PATH
    let probe = std::process::Command::new(python)
        .args(["-c", "import safetensors.torch"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped: `{python}` cannot import safetensors.torch (`. scripts/env.sh` puts the \
             project venv first on PATH; `pip install safetensors` there)"
        );
        return;
    }
    let cfg = fast_config("{ name: ppo }", 1)
        .edit(|c| {
            c.task.sft = None;
        })
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    train(&cfg, 24, tmp.path());
    let (_, ck) = checkpoint::latest(tmp.path()).unwrap();
    let state = checkpoint::load(&ck).unwrap();
    let name = "model.layers.0.self_attn.q_proj.weight";
    let want = &state.policy.iter().find(|(n, _)| n == name).unwrap().1;
    // Python prints every policy tensor's name and shape, and one tensor's first values as bits.
    let script = format!(
        "import json, sys, torch\n\
         from safetensors.torch import load_file\n\
         p = load_file(sys.argv[1] + '/policy.safetensors')\n\
         c = load_file(sys.argv[1] + '/critic.safetensors')\n\
         o = load_file(sys.argv[1] + '/optimizer.safetensors')\n\
         assert 'params/value_head.weight' in c and 'exp_avg/{name}' in o\n\
         t = p['{name}']\n\
         print(json.dumps({{'shapes': {{k: list(v.shape) for k, v in p.items()}},\n\
           'dtype': str(t.dtype), 'bits': t.flatten()[:16].view(torch.int32).tolist()}}))"
    );
    let out = std::process::Command::new(python)
        .args(["-c", &script, ck.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shapes = got["shapes"].as_object().unwrap();
    assert_eq!(shapes.len(), state.policy.len());
    for (n, t) in &state.policy {
        let shape: Vec<i64> = serde_json::from_value(shapes[n].clone()).unwrap();
        assert_eq!(shape, t.size(), "{n}");
    }
    assert_eq!(got["dtype"], "torch.float32");
    let head = Vec::<f32>::try_from(want.flatten(0, -1).narrow(0, 0, 16)).unwrap();
    let bits: Vec<i64> = head.iter().map(|x| x.to_bits() as i32 as i64).collect();
    assert_eq!(got["bits"], serde_json::json!(bits));
}
