//! `harness export`: refuses non-empty folders unless --force, carries the tokenizer, and writes
//! or names the adapter's base (issue #20, items 1 and the export docs).
use super::harness;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::AtomicBool;

/// Train a one-step LoRA run of `model` in `dir` (config.yaml + checkpoints), in process.
fn train_run(dir: &Path, model: &str) {
    let yaml = format!(
        "model: {{ {model}, lora: {{ rank: 4 }} }}\ntask: {{ name: addition, difficulty: 1 }}\n\
         algorithm: {{ name: grpo }}\n\
         rollout: {{ prompts_per_step: 2, group_size: 2, max_new_tokens: 2 }}\n\
         train: {{ steps: 1 }}\neval: {{ prompts: 2 }}\ncheckpoint: {{ every: 1 }}\n"
    );
    let cfg: harness::config::RunConfig = serde_yaml::from_str(&yaml).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.yaml"), &yaml).unwrap();
    harness::train::run_training(&cfg, 3, dir, &AtomicBool::new(false), &mut |_| {}).unwrap();
}

fn export(run: &Path, args: &[(&str, &Path)], extra: &[&str]) -> Output {
    let mut c = harness();
    c.arg("export").arg(run);
    for (flag, dir) in args {
        c.arg(flag).arg(dir);
    }
    c.args(extra).output().unwrap()
}

fn init(out: &Path, seed: &str) {
    let o = harness()
        .args(["init", "tiny-qwen3", "--seed", seed, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn exports_carry_the_tokenizer_write_the_base_and_refuse_full_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| -> PathBuf { tmp.path().join(p) };
    init(&t("m"), "11");
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::write(t("m").join(f), format!("{{\"file\": \"{f}\"}}")).unwrap();
    }
    train_run(&t("run"), &format!("name: {}", t("m").display()));
    let dirs = [
        ("--adapter", t("a")),
        ("--merged", t("merged")),
        ("--base", t("base")),
    ];
    let args: Vec<(&str, &Path)> = dirs.iter().map(|(f, d)| (*f, d.as_path())).collect();
    let out = export(&t("run"), &args, &["--dtype", "fp32"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("tokenizer: copied tokenizer.json"),
        "{stdout}"
    );
    for (_, d) in &dirs {
        assert_eq!(
            std::fs::read(d.join("tokenizer.json")).unwrap(),
            std::fs::read(t("m/tokenizer.json")).unwrap()
        );
    }
    assert!(t("merged/generation_config.json").exists());
    assert!(!t("a/generation_config.json").exists());
    // The adapter points at the base written beside it, which is the model it was trained on.
    let ac: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t("a/adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(
        ac["base_model_name_or_path"],
        std::path::absolute(t("base"))
            .unwrap()
            .display()
            .to_string()
    );
    assert_eq!(
        std::fs::read(t("base/model.safetensors")).unwrap(),
        std::fs::read(t("m/model.safetensors")).unwrap()
    );

    // A second export into the same folder: refused, then allowed with --force.
    let merged_dir = t("merged");
    let merged = [("--merged", merged_dir.as_path())];
    let out = export(&t("run"), &merged, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    let out = export(&t("run"), &merged, &["--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_preset_adapter_says_how_to_rebuild_its_base() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| -> PathBuf { tmp.path().join(p) };
    train_run(&t("run"), "name: tiny-qwen3, init_seed: 4");
    let out = export(&t("run"), &[("--adapter", &t("a"))], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tokenizer: none"), "{stdout}");
    assert!(
        stdout.contains("harness init tiny-qwen3 --seed 4 --dtype fp32"),
        "{stdout}"
    );
    // That command rebuilds exactly the base that --base writes.
    init(&t("rebuilt"), "4");
    let out = export(&t("run"), &[("--base", &t("base"))], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(t("base/model.safetensors")).unwrap(),
        std::fs::read(t("rebuilt/model.safetensors")).unwrap()
    );
}
