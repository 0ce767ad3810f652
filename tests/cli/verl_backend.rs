//! The verl backend (`harness::backend`, `python/harness_verl/`), against fixtures that verl 0.9.1
//! and the plugins made (`tests/fixtures/verl_backend/make_fixtures.py`): the plugins' losses,
//! metrics and gradients equal `harness objective`'s; λ's trajectory, data-parallel δ̄ and
//! checkpoint round trip equal the harness's dual update; verl's file-logger output becomes the
//! run's metrics.jsonl / eval.jsonl; `run --dry-run` prints the paper grids' verl launches, whose
//! overrides are the ones verl's real config was composed with (`composed.json`).
use super::{harness, root, text};
use harness::config::RawRunConfig;
use harness::objective::dcmdp::dual_update;
use harness::objective::{Algorithm, Dcmdp, DcmdpConfig, StepStats};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verl_backend")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

#[test]
fn verl_plugins_match_the_harness() {
    // Batches are tests/fixtures/verl/'s; the case file is ours.
    super::objective::check_file("../verl_backend/plugins.json");
}

#[test]
fn verl_plugin_dual_update_is_the_harness_s() {
    let d = json("dual.json");
    let c = &d["config"];
    let f = |k: &str| c[k].as_f64().unwrap();
    let mut lam = f("lambda_0");
    let mut algo = Dcmdp::new(DcmdpConfig {
        c: f("c"),
        lambda_0: lam,
        eta_lambda: f("eta_lambda"),
        lambda_max: f("lambda_max"),
        ..DcmdpConfig::default()
    });
    let deltas = d["deltas"].as_array().unwrap();
    for (i, delta) in deltas.iter().enumerate() {
        let delta = delta.as_f64().unwrap();
        lam = dual_update(lam, delta, f("c"), f("eta_lambda"), f("lambda_max"));
        let stats = StepStats::new(delta);
        algo.begin_step(&stats);
        let m = algo.end_step(&stats);
        let want = d["lambdas"][i].as_f64().unwrap();
        assert_eq!(lam.to_bits(), want.to_bits(), "step {i}");
        assert_eq!(m["dc/lambda_next"].to_bits(), want.to_bits(), "step {i}");
        assert_eq!(
            m["dc/gate"],
            d["gates"][i].as_f64().unwrap(),
            "gate at step {i}"
        );
    }
    // The checkpoint hook restored the last λ exactly, with the step count.
    assert_eq!(
        d["checkpoint"]["lambda_restored"]
            .as_f64()
            .unwrap()
            .to_bits(),
        lam.to_bits()
    );
    assert_eq!(
        d["checkpoint"]["steps"].as_u64().unwrap(),
        deltas.len() as u64
    );

    // The update hook on the whole batch, and two gloo ranks with half the rows each: δ̄ is the
    // harness's δ̄ of the whole batch, and both ranks hold the same λ.
    let b =
        harness::objective::batch_io::DumpedBatch::load(&dir().join("../verl/batch.safetensors"))
            .unwrap();
    let whole = StepStats::from_logps(&b.old_logp, &b.rollout_logp, &b.mask).delta_bar;
    let hook = &d["hook_step"];
    assert!((hook["dc/delta_bar"].as_f64().unwrap() - whole).abs() < 1e-12);
    let want_next = dual_update(lam, whole, f("c"), f("eta_lambda"), f("lambda_max"));
    assert!((hook["dc/lambda_next"].as_f64().unwrap() - want_next).abs() < 1e-12);
    let dp = &d["data_parallel"];
    let ranks = dp["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 2);
    assert_eq!(ranks[0], ranks[1], "ranks disagree");
    let rank_delta = ranks[0]["delta_bar"].as_f64().unwrap();
    assert!(
        (rank_delta - whole).abs() < 1e-12,
        "{rank_delta} vs {whole}"
    );
    let l0 = dp["lambda_0"].as_f64().unwrap();
    let want = dual_update(l0, whole, dp["c"].as_f64().unwrap(), 1.0, 10.0);
    assert!((ranks[0]["lambda"].as_f64().unwrap() - want).abs() < 1e-12);
}

#[test]
fn verl_file_log_becomes_the_run_logs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir().join("verl_metrics.jsonl"),
        tmp.path().join(harness::backend::verl::VERL_LOG),
    )
    .unwrap();
    harness::backend::verl_log::ingest(tmp.path()).unwrap();
    let rows = harness::rundir::logs::read_jsonl(&tmp.path().join("metrics.jsonl")).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2]["step"], 3.0);
    assert!((rows[0]["critic/score/mean"] - 0.35).abs() < 1e-12);
    assert!((rows[1]["actor/pg_loss"] + 0.02).abs() < 1e-12);
    assert!((rows[2]["dc/lambda"] - 0.103).abs() < 1e-12);
    assert!(rows
        .iter()
        .all(|r| !r.keys().any(|k| k.starts_with("val-"))));
    let eval = harness::rundir::logs::read_jsonl(&tmp.path().join("eval.jsonl")).unwrap();
    assert_eq!(eval.len(), 1);
    assert_eq!(eval[0]["eval/aime24/avg@32"], 0.125);
    assert_eq!(eval[0]["eval/math500/avg@4"], 0.75);
    assert_eq!(eval[0]["eval/aime24/reward/mean@32"], 0.125);
    for f in ["metrics.parquet", "eval.parquet"] {
        assert!(tmp.path().join(f).exists(), "{f}");
    }
}

/// Every run's `# label (id)` and command of a dry run.
fn dry_run(grid: &str, out: &Path) -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let o = harness()
        .current_dir(&root)
        .args(["run", grid, "--dry-run", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

/// The Hydra overrides of a printed command (after `--`), unquoted, with the run directory
/// replaced by `RUN`.
fn overrides_of(cmd: &str, run_dir: &str) -> Vec<String> {
    let tail = cmd.split(" -- ").nth(1).unwrap();
    tail.split(' ')
        .map(|w| w.trim_matches('\'').replace(run_dir, "RUN"))
        .collect()
}

#[test]
fn verl_dry_run_prints_the_paper_launches() {
    let tmp = tempfile::tempdir().unwrap();
    for (grid, nnodes) in [
        ("experiments/paper-qwen3-8b-verl.yaml", 2),
        ("experiments/paper-qwen3-30b-a3b-verl.yaml", 4),
    ] {
        let runs = dry_run(grid, tmp.path());
        assert_eq!(runs.len(), 4, "{grid}");
        for (label, cmd) in &runs {
            assert!(cmd.contains("-m harness_verl.launch"), "{cmd}");
            assert!(cmd.contains(&format!("trainer.nnodes={nnodes}")), "{cmd}");
            let dcmdp = label.contains("dcmdp");
            assert_eq!(cmd.contains("loss_mode=harness_dcmdp"), dcmdp, "{label}");
            assert_eq!(cmd.contains("HARNESS_VERL_PLUGIN="), dcmdp, "{label}");
            assert_eq!(
                cmd.contains("rollout.quantization=fp8"),
                label.contains("fp8-e4m3"),
                "{label}"
            );
        }
    }
    // The DC-GRPO / FP8 run of the 8B grid: its overrides are the ones composed with verl's
    // real config (make_fixtures.py → composed.json).
    let runs = dry_run("experiments/paper-qwen3-8b-verl.yaml", tmp.path());
    let (label, cmd) = runs
        .iter()
        .find(|(l, _)| l.contains("dcmdp") && l.contains("fp8-e4m3"))
        .unwrap();
    let id = label.rsplit('(').next().unwrap().trim_end_matches(')');
    let run_dir = tmp
        .path()
        .join("paper-qwen3-8b-verl/runs")
        .join(id)
        .display()
        .to_string();
    let got = overrides_of(cmd, &run_dir);
    let path = dir().join("overrides.txt");
    if std::env::var_os("HARNESS_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, got.join("\n") + "\n").unwrap();
    }
    let want: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        got, want,
        "overrides changed: rerun with HARNESS_UPDATE_FIXTURES=1, then make_fixtures.py"
    );
    let composed = json("composed.json");
    assert_eq!(composed["overrides"].as_u64().unwrap(), want.len() as u64);
    let v = &composed["values"];
    assert_eq!(
        v["actor_rollout_ref.actor.policy_loss.loss_mode"],
        "harness_dcmdp"
    );
    assert_eq!(v["actor_rollout_ref.rollout.quantization"], "fp8");
    assert_eq!(v["data.train_batch_size"], 64);
    assert_eq!(v["actor_rollout_ref.rollout.n"], 8);
    assert_eq!(v["data.max_response_length"], 8192);
    assert_eq!(v["algorithm.rollout_correction.rollout_is"], "token");
}

/// The 8B verl paper grid with `edit` applied, dry-run: the overrides of the run whose label
/// contains `label`.
fn variant_overrides(edit: impl FnOnce(&mut serde_yaml::Value), label: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let mut grid: serde_yaml::Value =
        serde_yaml::from_str(&read(&root().join("experiments/paper-qwen3-8b-verl.yaml"))).unwrap();
    edit(&mut grid);
    let path = tmp.path().join("variant.yaml");
    std::fs::write(&path, serde_yaml::to_string(&grid).unwrap()).unwrap();
    let runs = dry_run(path.to_str().unwrap(), &tmp.path().join("out"));
    let (l, cmd) = runs.iter().find(|(l, _)| l.contains(label)).unwrap();
    let id = l.rsplit('(').next().unwrap().trim_end_matches(')');
    let run_dir = tmp.path().join("out/paper-qwen3-8b-verl/runs").join(id);
    overrides_of(cmd, &run_dir.display().to_string())
}

/// `got` must equal the committed overrides fixture `name` (which make_fixtures.py composes with
/// verl's config); `HARNESS_UPDATE_FIXTURES=1` rewrites it first.
fn committed_overrides(name: &str, got: &[String]) -> Vec<String> {
    let fixture = dir().join(name);
    if std::env::var_os("HARNESS_UPDATE_FIXTURES").is_some() {
        std::fs::write(&fixture, got.join("\n") + "\n").unwrap();
    }
    let want: Vec<String> = read(&fixture).lines().map(String::from).collect();
    assert_eq!(
        got, want,
        "overrides changed: rerun with HARNESS_UPDATE_FIXTURES=1, then make_fixtures.py"
    );
    want
}

/// `model.lora` becomes verl's FSDP LoRA keys (the 8B verl grid with adapters on attention and
/// MLP), and those overrides are the ones verl's real config was composed with
/// (make_fixtures.py → composed_lora.json); a fractional alpha (verl's is an integer) is refused
/// at its key path.
#[test]
fn verl_lora_maps_to_verls_lora_keys() {
    let lora = "{ rank: 32, alpha: 64, targets: [q_proj, k_proj, v_proj, o_proj, gate_proj] }";
    let got = variant_overrides(
        |g| g["base"]["model"]["lora"] = serde_yaml::from_str(lora).unwrap(),
        "dcmdp",
    );
    let m = "actor_rollout_ref.model";
    for want in [
        format!("{m}.lora_rank=32"),
        format!("{m}.lora_alpha=64"),
        format!("{m}.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj]"),
    ] {
        assert!(got.contains(&want), "{want} missing from {got:?}");
    }
    let want = committed_overrides("overrides_lora.txt", &got);
    let composed = json("composed_lora.json");
    assert_eq!(composed["overrides"].as_u64().unwrap(), want.len() as u64);
    let v = &composed["values"];
    assert_eq!(v[format!("{m}.lora_rank")], 32);
    assert_eq!(v[format!("{m}.lora_alpha")], 64);
    assert_eq!(
        v[format!("{m}.target_modules")],
        serde_json::json!(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"])
    );
    assert_eq!(composed["typed"]["actor"], "FSDPActorConfig");

    let raw: RawRunConfig = serde_yaml::from_str(
        "model: { name: models/Qwen3-8B, lora: { rank: 8, alpha: 16.5 } }\n\
         task: { name: math, train_file: data/train.jsonl }\nalgorithm: { name: grpo }\n\
         train: { precision: bf16 }\nbackend: { name: verl }\n",
    )
    .unwrap();
    let errs = raw.check().unwrap_err().to_string();
    assert!(errs.contains("model.lora.alpha"), "{errs}");
}

/// PPO becomes verl's GAE estimator with an FSDP critic from the same checkpoint (its optimizer
/// the run's, KL in the reward as verl's fixed controller); the overrides compose with verl's real
/// config into its typed `FSDPCriticConfig` (composed_ppo.json, make_fixtures.py).
#[test]
fn verl_ppo_maps_to_gae_and_a_critic() {
    let ppo = "{ name: ppo, lam: 0.95, cliprange_value: 0.2, kl_in_reward: { coef: 0.002, estimator: k3 } }";
    let got = variant_overrides(
        |g| {
            g["base"]["algorithm"] = serde_yaml::from_str(ppo).unwrap();
            g["cases"] = serde_yaml::from_str("{ ppo: {} }").unwrap();
        },
        "weight_quant=none",
    );
    for want in [
        "algorithm.adv_estimator=gae",
        "algorithm.lam=0.95",
        "algorithm.use_kl_in_reward=true",
        "algorithm.kl_penalty=low_var_kl",
        "algorithm.kl_ctrl.kl_coef=0.002",
        "critic.enable=true",
        "critic.model.path=models/Qwen3-8B",
        "critic.cliprange_value=0.2",
        "critic.optim.lr=1e-6",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
    }
    let want = committed_overrides("overrides_ppo.txt", &got);
    let composed = json("composed_ppo.json");
    assert_eq!(composed["overrides"].as_u64().unwrap(), want.len() as u64);
    let v = &composed["values"];
    assert_eq!(v["algorithm.adv_estimator"], "gae");
    assert_eq!(v["critic.enable"], true);
    assert_eq!(v["critic.model.path"], "models/Qwen3-8B");
    assert_eq!(v["critic.cliprange_value"], 0.2);
    assert_eq!(v["algorithm.kl_ctrl.kl_coef"], 0.002);
    assert_eq!(composed["typed"]["critic"], "FSDPCriticConfig");

    let raw: RawRunConfig = serde_yaml::from_str(
        "model: { name: models/Qwen3-8B }\n\
         task: { name: math, train_file: data/train.jsonl }\n\
         algorithm: { name: ppo, vf_coef: 0.5, whiten_advantages: false }\n\
         train: { precision: bf16 }\nbackend: { name: verl }\n",
    )
    .unwrap();
    let errs = raw.check().unwrap_err().to_string();
    for key in ["algorithm.vf_coef", "algorithm.whiten_advantages"] {
        assert!(errs.contains(key), "{key} missing from:\n{errs}");
    }
}

#[test]
fn verl_unmapped_settings_are_errors_with_key_paths() {
    let raw: RawRunConfig = serde_yaml::from_str(
        "model: { name: tiny-qwen3 }\ntask: { name: addition }\n\
         algorithm: { name: dppo, divergence: topk-tv }\n\
         rollout: { engine: { staleness: 2, logit_noise: 0.1 } }\n\
         backend: { name: verl, nnodes: 2 }\n",
    )
    .unwrap();
    let errs = raw.check().unwrap_err().to_string();
    for key in [
        "model.name",
        "task.name",
        "algorithm.divergence",
        "rollout.engine.staleness",
        "rollout.engine.logit_noise",
        "train.precision",
    ] {
        assert!(errs.contains(key), "{key} missing from:\n{errs}");
    }
    // A harness run with the same knobs is fine, and `backend` is not serialised at its default.
    let raw: RawRunConfig = serde_yaml::from_str(
        "model: { name: tiny-qwen3 }\ntask: { name: addition }\nalgorithm: { name: grpo }\n",
    )
    .unwrap();
    let cfg = raw.check().unwrap();
    assert!(!serde_yaml::to_string(&cfg).unwrap().contains("backend"));
}

/// The eval sets and DAPO-Math-17K in their published layouts (tests/fixtures/math/data) become
/// `{"prompt": [chat], "answer"}` lines with the harness's prompts, which the launcher's converter
/// (python/harness_verl/data.py) turns into verl's Parquet schema. Before this, the converter
/// rejected every eval layout (`problem`/`question` columns). The converter step runs when the
/// venv has pandas, pyarrow and verl (importing `harness_verl` registers its verl plugins), and
/// says SKIP otherwise.
#[test]
fn every_published_layout_reaches_verls_schema() {
    use harness::backend::run::normalize_data;
    use harness::task::math::{load_items, BOXED_INSTRUCTION};
    let src = root().join("tests/fixtures/math/data");
    let names = [
        ("train", "dapo-math-17k.parquet"),
        ("aime24", "aime24.parquet"),
        ("aime25", "aime25.jsonl"),
        ("amc23", "amc23.parquet"),
        ("math500", "math500.jsonl"),
        ("minerva", "minerva.jsonl"),
        ("olympiadbench", "olympiadbench.parquet"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut data: Vec<(String, String)> = names
        .iter()
        .map(|(n, f)| (n.to_string(), src.join(f).display().to_string()))
        .collect();
    normalize_data(tmp.path(), BOXED_INSTRUCTION, &mut data).unwrap();
    for ((name, file), (n, written)) in names.iter().zip(&data) {
        assert_eq!(name, n);
        assert!(
            written.ends_with(&format!("verl_data/{name}.source.jsonl")),
            "{written}"
        );
        let want = load_items(&src.join(file), BOXED_INSTRUCTION)
            .unwrap()
            .items;
        let lines: Vec<Value> = std::fs::read_to_string(written)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), want.len(), "{name}");
        for (l, it) in lines.iter().zip(&want) {
            assert_eq!(l["answer"], it.answer.as_str(), "{name}");
            let last = it.messages.last().unwrap();
            assert_eq!(l["prompt"].as_array().unwrap().len(), it.messages.len());
            assert_eq!(
                l["prompt"][it.messages.len() - 1]["content"],
                last.content.as_str()
            );
        }
    }
    let py = super::venv_python("pandas, pyarrow, verl.trainer.ppo.core_algos");
    let Some(py) = py else {
        eprintln!("SKIP converter step: no venv with pandas + pyarrow + verl ($HARNESS_VENV or ~/.cache/harness/venv)");
        return;
    };
    let files: Vec<String> = data.iter().map(|(n, f)| format!("{n}={f}")).collect();
    let script = r#"
import sys, pandas as pd
from harness_verl.data import convert
out = sys.argv[1]
files = dict(a.split("=", 1) for a in sys.argv[2:])
convert(files, out, "math_dapo")
for n in files:
    d = pd.read_parquet(f"{out}/{n}.parquet")
    assert {"data_source", "prompt", "ability", "reward_model"} <= set(d.columns), d.columns
    print(n, len(d), d.iloc[0]["reward_model"]["ground_truth"])
"#;
    let out = std::process::Command::new(py)
        .env("PYTHONPATH", root().join("python"))
        .arg("-c")
        .arg(script)
        .arg(tmp.path().join("verl_data"))
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    for (name, _) in names {
        assert!(
            printed.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{printed}"
        );
    }
}
