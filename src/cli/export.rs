//! `harness export RUN_DIR`: write a run's trained policy (latest checkpoint) as a PEFT adapter
//! directory (LoRA runs), a merged Hugging Face model directory, and/or the frozen base the
//! adapter applies to; tokenizer files travel along when the run's model directory has them.
use super::{check_output_dir, CliResult, Failure};
use anyhow::{anyhow, Context};
use harness::model::hub::{locate, ModelSource};
use harness::model::save_hf_dir;
use harness::model::weights::TOKENIZER_FILES;
use harness::runtime::parse_dtype;
use std::path::{Path, PathBuf};
use tch::Kind;

/// Export a run's policy from its latest checkpoint. `--adapter DIR`: PEFT adapter
/// (`adapter_model.safetensors` + `adapter_config.json`; LoRA runs only). `--merged DIR`: HF model
/// directory (`config.json` + safetensors) with LoRA adapters merged into the base weights.
/// `--base DIR`: the frozen base weights the adapter was trained on, as a HF model directory (the
/// adapter's `base_model_name_or_path` then points there). Output folders must be new or empty
/// unless --force. The run's tokenizer files (tokenizer.json, …) are copied into every folder
/// when its model is a directory that has them; presets have none.
#[derive(clap::Args)]
pub struct Args {
    /// A run directory (`runs/<grid>/runs/<id>`, with `config.yaml` and `checkpoints/`).
    run_dir: PathBuf,
    /// Write the PEFT adapter directory here.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Write the merged HF model directory here.
    #[arg(long)]
    merged: Option<PathBuf>,
    /// Write the adapter's frozen base model here (LoRA runs), stored as it was trained.
    #[arg(long)]
    base: Option<PathBuf>,
    /// Dtype of the merged weights: fp32, bf16 or fp16 (adapters are always fp32).
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Write into folders that already hold files: only the files export writes are replaced.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> CliResult {
    check_targets(&a)?;
    let kind = parse_dtype(&a.dtype)?;
    let (cfg, policy) = harness::train::policy::load_run_policy(&a.run_dir)?;
    let lora = cfg.model.lora.as_ref();
    if lora.is_none() && (a.adapter.is_some() || a.base.is_some()) {
        return Err(Failure::bad_input(anyhow!(
            "this run has no `model.lora`, so no adapter or separate base: export it with --merged"
        )));
    }
    let tokenizer = Tokenizer::of(&cfg.model.name)?;
    if let Some(dir) = &a.base {
        let stored = stored_kind(&policy);
        save_hf_dir(&policy.cfg, policy.named_parameters(), dir, stored, 5 << 30)?;
        tokenizer.copy_to(dir, false)?;
        println!("base: {}", dir.display());
    }
    if let (Some(dir), Some(l)) = (&a.adapter, lora) {
        // With --base, the adapter names the folder it was written to (absolute, so PEFT finds
        // it from anywhere); otherwise the run's model spec.
        let base_name = match &a.base {
            Some(b) => std::path::absolute(b)
                .with_context(|| format!("resolving {}", b.display()))?
                .display()
                .to_string(),
            None => cfg.model.name.clone(),
        };
        policy.save_peft_adapter(l, &base_name, dir)?;
        tokenizer.copy_to(dir, true)?;
        println!(
            "adapter: {} (base_model_name_or_path: {base_name})",
            dir.display()
        );
    }
    if let Some(dir) = &a.merged {
        let merged = policy.merged_named_parameters();
        save_hf_dir(&policy.cfg, merged, dir, kind, 5 << 30)?;
        tokenizer.copy_to(dir, false)?;
        println!("merged: {}", dir.display());
    }
    tokenizer.report(&cfg.model.name);
    if a.adapter.is_some() && a.base.is_none() && tokenizer.model_dir.is_none() {
        preset_base_note(&a.run_dir, &cfg, &policy);
    }
    Ok(())
}

/// At least one output folder, no two the same, each new or empty (unless --force).
fn check_targets(a: &Args) -> CliResult {
    let targets: Vec<(&str, &PathBuf)> = [
        ("--adapter", &a.adapter),
        ("--merged", &a.merged),
        ("--base", &a.base),
    ]
    .into_iter()
    .filter_map(|(f, d)| d.as_ref().map(|d| (f, d)))
    .collect();
    if targets.is_empty() {
        return Err(Failure::bad_input(anyhow!(
            "nothing to export: give --adapter DIR, --merged DIR and/or --base DIR"
        )));
    }
    for (i, (flag, dir)) in targets.iter().enumerate() {
        if let Some((other, _)) = targets[..i].iter().find(|(_, d)| d == dir) {
            return Err(Failure::bad_input(anyhow!(
                "{other} and {flag} name the same folder {}: give each its own",
                dir.display()
            )));
        }
        check_output_dir(dir, a.force, flag)?;
    }
    Ok(())
}

/// The dtype the policy's weights are stored in.
fn stored_kind(policy: &harness::model::Qwen3) -> Kind {
    let named = policy.named_parameters();
    named.first().map_or(Kind::Float, |(_, t)| t.kind())
}

/// The tokenizer files of the run's model directory (none for a preset), which travel along.
struct Tokenizer {
    model_dir: Option<PathBuf>,
    files: Vec<&'static str>,
}

impl Tokenizer {
    fn of(model: &str) -> Result<Tokenizer, Failure> {
        let model_dir = match locate(model)? {
            ModelSource::Dir(d) => Some(d),
            ModelSource::Preset(_) => None,
        };
        let files = model_dir.as_deref().map_or(vec![], |d| {
            TOKENIZER_FILES
                .iter()
                .copied()
                .filter(|f| d.join(f).is_file())
                .collect()
        });
        Ok(Tokenizer { model_dir, files })
    }

    /// Copy the files into `dir` (an adapter folder gets no `generation_config.json`).
    fn copy_to(&self, dir: &Path, adapter: bool) -> anyhow::Result<()> {
        for f in &self.files {
            if adapter && *f == "generation_config.json" {
                continue;
            }
            let src = self.model_dir.as_ref().unwrap().join(f);
            std::fs::copy(&src, dir.join(f))
                .with_context(|| format!("copying {} to {}", src.display(), dir.display()))?;
        }
        Ok(())
    }

    /// Say what was copied, or why nothing was.
    fn report(&self, model: &str) {
        match (&self.model_dir, self.files.is_empty()) {
            (Some(d), false) => println!(
                "tokenizer: copied {} from {}",
                self.files.join(", "),
                d.display()
            ),
            (Some(d), true) => println!("tokenizer: none ({} has no tokenizer files)", d.display()),
            (None, _) => println!(
                "tokenizer: none (the preset `{model}` uses the harness's character vocabulary, \
                 harness::model::tokenizer::CharTokenizer, not a Hugging Face tokenizer)"
            ),
        }
    }
}

/// An adapter of a preset without `--base`: say how to get the base it applies to.
fn preset_base_note(
    run_dir: &Path,
    cfg: &harness::config::RunConfig,
    policy: &harness::model::Qwen3,
) {
    let seed = cfg
        .model
        .init_seed
        .map(|s| s.to_string())
        .or_else(|| run_seed(run_dir))
        .unwrap_or_else(|| "<the run's seed>".into());
    println!(
        "note: the adapter's base_model_name_or_path is the preset `{}`, which is no Hugging \
         Face model: write its base with `--base DIR`, or rebuild it with `harness init {} \
         --seed {seed} --dtype {} --out DIR`",
        cfg.model.name,
        cfg.model.name,
        harness::runtime::dtype_name(stored_kind(policy))
    );
}

/// The run's seed as its latest checkpoint records it (best effort: `None` when unreadable).
fn run_seed(run_dir: &Path) -> Option<String> {
    let (_, ck) = harness::train::checkpoint::latest(run_dir)?;
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("meta.json")).ok()?).ok()?;
    meta.get("seed").map(|s| s.to_string())
}
