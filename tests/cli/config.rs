//! Grid and run-config checking from the command line: `--set` overrides on `validate`, `plan`
//! and `run`; every structural error at once, each at its key; `set:` merging into `base`; the
//! files a config names (model directories, data files, an external engine's rollouts); `plan`'s
//! refused zero values.
use super::{harness, root, text};
use std::path::{Path, PathBuf};
use std::process::Output;

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn validate(grid: &Path, extra: &[&str]) -> Output {
    harness()
        .arg("validate")
        .arg(grid)
        .args(extra)
        .output()
        .unwrap()
}

fn plan_json(grid: &Path, extra: &[&str]) -> serde_json::Value {
    let out = harness()
        .arg("plan")
        .arg(grid)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every line of `want` is in stderr, and the exit code is 2.
fn assert_bad_input(out: &Output, want: &[String]) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    for w in want {
        assert!(err.contains(w.as_str()), "{w}\nnot in\n{err}");
    }
}

const TINY: &str = "
name: tiny
base:
  model: { name: tiny-qwen3 }
  task: { name: addition, difficulty: 1 }
  algorithm: { name: grpo }
  rollout: { prompts_per_step: 2, group_size: 2, max_new_tokens: 2 }
  train: { steps: 4 }
  eval: { prompts: 4 }
seeds: [0]
";

#[test]
fn set_overrides_base_on_validate_and_plan_and_names_a_bad_key() {
    let d = tempfile::tempdir().unwrap();
    let g = write(d.path(), "g.yaml", TINY);
    let v = plan_json(
        &g,
        &["--set", "train.steps=2", "--set", "model.lora={rank: 4}"],
    );
    let r = &v["runs"][0];
    assert_eq!(r["steps"], 2);
    assert!(
        r["params_trainable"].as_u64().unwrap() < r["params_total"].as_u64().unwrap() / 10,
        "{r}"
    );
    // The run id is that of the same grid with the values written in `base`.
    let same = write(
        d.path(),
        "same.yaml",
        &TINY.replace(
            "  train: { steps: 4 }",
            "  train: { steps: 2 }\n  model.lora.rank: 4",
        ),
    );
    assert_eq!(plan_json(&same, &[])["runs"][0]["id"], r["id"]);

    let out = validate(&g, &["--set", "train.steps=3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--set train.steps=3"), "{}", text(&out));

    let f = g.display();
    let out = validate(
        &g,
        &["--set", "rollout.group_sise=4", "--set", "optim.lr=-1"],
    );
    assert_bad_input(
        &out,
        &[
            format!(
                "{f}: --set rollout.group_sise=4: rollout.group_sise: unknown field `group_sise`"
            ),
            format!("{f}: --set optim.lr=-1: optim.lr: must be a positive number"),
        ],
    );
    // Not KEY=VALUE: clap refuses it (exit 2) naming the argument.
    let out = validate(&g, &["--set", "train.steps"]);
    assert_bad_input(&out, &["expected KEY.PATH=VALUE".to_string()]);
}

#[test]
fn set_is_carried_to_the_runs_and_recorded() {
    let d = tempfile::tempdir().unwrap();
    let g = write(d.path(), "g.yaml", TINY);
    let out_dir = d.path().join("out");
    let out = harness()
        .arg("run")
        .arg(&g)
        .args(["--set", "train.steps=1", "--set", "eval.prompts=2"])
        .arg("--out")
        .arg(&out_dir)
        .args(["--threads", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let saved = std::fs::read_to_string(out_dir.join("tiny/grid.yaml")).unwrap();
    assert!(
        saved.contains("overrides:\n- train.steps=1\n- eval.prompts=2\n"),
        "{saved}"
    );
    let runs: Vec<PathBuf> = std::fs::read_dir(out_dir.join("tiny/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let cfg = harness::config::load_run_config(&runs[0].join("config.yaml")).unwrap();
    assert_eq!((cfg.train.steps, cfg.eval.prompts), (1, Some(2)));
    let status = std::fs::read_to_string(runs[0].join("status.json")).unwrap();
    assert!(status.contains("\"done\""), "{status}");
}

/// Slurm tasks run the saved grid: the overrides are in its configs and recorded in grid.yaml.
#[test]
fn set_reaches_the_slurm_tasks_through_the_saved_grid() {
    let d = tempfile::tempdir().unwrap();
    let g = write(d.path(), "g.yaml", TINY);
    let out_dir = d.path().join("out");
    let out = harness()
        .arg("slurm")
        .arg(&g)
        .args(["--set", "train.steps=2", "--set", "optim.betas=[0.9, 0.99]"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let saved = std::fs::read_to_string(out_dir.join("tiny/grid.yaml")).unwrap();
    assert!(
        saved.contains("overrides:\n- train.steps=2\n- optim.betas=[0.9,0.99]\n"),
        "{saved}"
    );
    let cfg = std::fs::read_dir(out_dir.join("tiny/runs"))
        .unwrap()
        .map(|e| e.unwrap().path().join("config.yaml"))
        .next()
        .unwrap();
    let cfg = harness::config::load_run_config(&cfg).unwrap();
    assert_eq!((cfg.train.steps, cfg.optim.betas), (2, (0.9, 0.99)));
    // A saved grid's configs are fixed.
    let out = harness()
        .arg("run")
        .arg(out_dir.join("tiny"))
        .args(["--set", "train.steps=3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is a saved grid"), "{}", text(&out));
}

#[test]
fn validate_reports_every_structural_error_at_its_key() {
    let d = tempfile::tempdir().unwrap();
    let g = write(
        d.path(),
        "g.yaml",
        "base:
  model: { name: tiny-qwen3, colour: red }
  task: { name: addition, flavour: 1 }
  algorithm: { name: dcmdp, eta_lambda: fast }
  rollout: { temperature: -1.0 }
",
    );
    let f = g.display();
    assert_bad_input(
        &validate(&g, &[]),
        &[
            format!("{f}:2: model.colour: unknown field `colour`"),
            format!("{f}:3: task.flavour: unknown field `flavour`"),
            format!("{f}:4: algorithm.eta_lambda: invalid type: string \"fast\", expected f64"),
            // A wrong type does not hide a range error elsewhere.
            format!("{f}:5: rollout.temperature: must be a positive number"),
            "4 problem(s)".to_string(),
        ],
    );

    let g = write(d.path(), "broken.yaml", "name: x\nfoo: [\n");
    let out = validate(&g, &[]);
    assert_bad_input(&out, &[format!("{}:3: YAML syntax error:", g.display())]);
    assert!(!text(&out).contains("unknown field"), "{}", text(&out));
}

/// #20 item 4: `set: { model: { name: … } }` in a case silently dropped `base`'s `model.lora` and
/// `model.init_seed` (a full fine-tune instead of LoRA). Now refused, naming what it would drop;
/// written key by key it keeps them.
#[test]
fn a_case_set_that_drops_what_base_defined_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let grid = |set: &str| {
        format!(
            "base:
  model: {{ name: tiny-qwen3, init_seed: 7, lora: {{ rank: 4 }} }}
  task: {{ name: addition }}
  algorithm: {{ name: grpo }}
cases:
  dense: {{}}
  moe: {{ set: {set} }}
"
        )
    };
    let g = write(
        d.path(),
        "g.yaml",
        &grid("{ model: { name: tiny-qwen3-moe } }"),
    );
    assert_bad_input(
        &validate(&g, &[]),
        &[format!(
            "{}:7: model: replaces all of `model`, dropping `model.init_seed`, `model.lora` set before it",
            g.display()
        )],
    );
    let g = write(d.path(), "g.yaml", &grid("{ model.name: tiny-qwen3-moe }"));
    let v = plan_json(&g, &[]);
    for r in v["runs"].as_array().unwrap() {
        let (total, trainable) = (
            r["params_total"].as_u64().unwrap(),
            r["params_trainable"].as_u64().unwrap(),
        );
        assert!(trainable * 20 < total, "LoRA kept in {}: {r}", r["label"]);
    }
    assert_eq!(v["runs"][1]["model"], "tiny-qwen3-moe");
}

/// #20 item 6: `validate` opens `rollout.engine.external` and reports its problems.
#[test]
fn validate_checks_the_external_rollout_file() {
    let d = tempfile::tempdir().unwrap();
    let line = r#"{"prompt_ids":[1,2],"response_ids":[3],"logprobs":[-0.5]}"#;
    let five = format!("{line}\n").repeat(5);
    let rollouts = write(d.path(), "r.jsonl", &five);
    let grid = |file: &Path| {
        format!(
            "base:
  model: {{ name: tiny-qwen3 }}
  task: {{ name: addition }}
  algorithm: {{ name: grpo }}
  rollout: {{ group_size: 4, engine: {{ external: {} }} }}
",
            file.display()
        )
    };
    let g = write(d.path(), "g.yaml", &grid(&rollouts));
    assert_bad_input(
        &validate(&g, &[]),
        &[format!(
            "{}:5: rollout.engine.external: `{}` has 5 rollouts, not a multiple of rollout.group_size (4)",
            g.display(),
            rollouts.display()
        )],
    );
    let bad = write(
        d.path(),
        "bad.jsonl",
        &format!(
            "{line}\n{}\n{line}\n{}\n",
            r#"{"prompt_ids":[1],"response_ids":[3,4]}"#,
            r#"{"prompt_ids":[1],"response_ids":[999],"logprobs":[-0.1]}"#
        ),
    );
    let g = write(d.path(), "g.yaml", &grid(&bad));
    let b = bad.display();
    assert_bad_input(
        &validate(&g, &[]),
        &[
            format!("{b}:2: missing `logprobs`"),
            format!("{b}:4: response_ids has token id 999 outside the vocabulary"),
        ],
    );
    let ok = write(d.path(), "ok.jsonl", &format!("{line}\n").repeat(8));
    let g = write(d.path(), "g.yaml", &grid(&ok));
    let out = validate(&g, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

/// #17: model directories and data files are checked by `validate` (not by `plan`).
#[test]
fn validate_checks_model_directories_and_data_files() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty-model");
    std::fs::create_dir_all(&empty).unwrap();
    let g = write(
        d.path(),
        "g.yaml",
        &format!(
            "base:
  model: {{ name: {} }}
  task: {{ name: math, train_file: {}/missing.jsonl, eval_files: {{ aime: {}/aime.jsonl }} }}
  algorithm: {{ name: grpo }}
",
            empty.display(),
            d.path().display(),
            d.path().display()
        ),
    );
    let f = g.display();
    assert_bad_input(
        &validate(&g, &[]),
        &[
            format!(
                "{f}:2: model.name: `{}` has no config.json (not a Hugging Face model directory)",
                empty.display()
            ),
            format!(
                "{f}:3: task.train_file: file `{}/missing.jsonl` does not exist",
                d.path().display()
            ),
            format!(
                "{f}:3: task.eval_files.aime: file `{}/aime.jsonl` does not exist",
                d.path().display()
            ),
        ],
    );

    // The paper grid names a model directory and data that are not here: `validate` says so,
    // `--no-file-checks` and `plan` (sizing before a download) do not look.
    let paper = root().join("experiments/paper-qwen3-8b.yaml");
    let p = paper.display();
    assert_bad_input(
        &validate(&paper, &[]),
        &[
            format!("{p}:31: model.name: model directory `models/Qwen3-8B` does not exist"),
            format!("{p}:34: task.train_file: file `data/dapo-math-17k.parquet` does not exist"),
        ],
    );
    let out = validate(&paper, &["--no-file-checks"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// #20: `plan --prompt-len 0` and `--gpu-mem 0` were accepted and ignored.
#[test]
fn plan_refuses_zero_prompt_length_and_gpu_memory() {
    let d = tempfile::tempdir().unwrap();
    let g = write(d.path(), "g.yaml", TINY);
    for (flag, v) in [
        ("--prompt-len", "0"),
        ("--gpu-mem", "0"),
        ("--gpu-mem", "-3"),
    ] {
        let out = harness()
            .arg("plan")
            .arg(&g)
            .arg(format!("{flag}={v}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {v}: {}", text(&out));
        assert!(text(&out).contains(flag), "{}", text(&out));
    }
}

/// A run's saved config goes through the same checks as a grid's runs.
#[test]
fn a_saved_run_config_is_checked_when_loaded() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "config.yaml",
        "# run x\nmodel: { name: tiny-qwen3 }\ntask: { name: addition }\nalgorithm: { name: grpo }\nrollout: { group_size: 1, tempreature: 1.0 }\n",
    );
    let e = harness::config::load_run_config(&p)
        .unwrap_err()
        .to_string();
    let f = p.display();
    assert!(
        e.contains(&format!(
            "{f}:5: rollout.tempreature: unknown field `tempreature`"
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("{f}:5: rollout.group_size: must be ≥ 2")),
        "{e}"
    );
}
