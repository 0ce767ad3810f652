//! A run's config as a verl 0.9.1 launch: `python -m harness_verl.launch` with Hydra overrides of
//! verl's `ppo_trainer.yaml`, the environment that loads the harness's policy-loss plugins
//! (`python/harness_verl/`) into every verl process, and the run directory layout
//! (`runs/<id>/checkpoints/`, `runs/<id>/verl_metrics.jsonl`, read back by
//! [`super::verl_log`]). Settings with no verl equivalent are errors naming the key path
//! ([`check`], run with config's checks wherever a run is validated: see
//! `crate::config::BackendRules`). The mapping, key by key, is the table in README.md
//! ("Past one machine: verl").
use crate::config::source::KeyPath;
use crate::config::{
    ConfigError, Precision, RawRunConfig, RunConfig, Schedule, VerlBackend, WeightQuant,
};
use crate::objective::{
    AlgorithmConfig, Correction, DcForm, DppoDivergence, KlEstimator, LossAggMode, PolicyLossConfig,
};
use std::path::Path;

/// The μ-carrying IS threshold of `harness_dcmdp` (python/harness_verl/losses.py `IS_THRESHOLD`).
pub const DCMDP_IS_THRESHOLD: &str = "1e9";
/// verl's log file in a run directory.
pub const VERL_LOG: &str = "verl_metrics.jsonl";

/// One run's verl launch.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// `NAME=value` pairs exported before the launcher starts.
    pub env: Vec<(String, String)>,
    /// Hydra overrides of verl's `ppo_trainer.yaml`, in order.
    pub overrides: Vec<String>,
    pub python: String,
    /// Data files to convert to verl's Parquet schema first: (name, source file).
    pub data: Vec<(String, String)>,
    pub data_source: String,
}

struct Errs(Vec<ConfigError>);

impl Errs {
    fn no(&mut self, bad: bool, path: &str, why: &str) {
        if bad {
            self.0.push(ConfigError::new(
                KeyPath::dotted(path),
                format!("backend verl: {why}"),
            ));
        }
    }
}

fn agg_mode(m: LossAggMode) -> &'static str {
    match m {
        LossAggMode::TokenMean => "token-mean",
        LossAggMode::SeqMeanTokenMean => "seq-mean-token-mean",
        LossAggMode::SeqMeanTokenSum => "seq-mean-token-sum",
        LossAggMode::SeqMeanTokenSumNorm => "seq-mean-token-sum-norm",
    }
}

fn kl_type(e: KlEstimator) -> &'static str {
    match e {
        KlEstimator::K1 => "kl",
        KlEstimator::Abs => "abs",
        KlEstimator::K2 => "mse",
        KlEstimator::K3 => "low_var_kl",
    }
}

fn dtype(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "float32",
        Precision::Bf16 => "bfloat16",
        Precision::Fp16 => "float16",
    }
}

/// `x` as Hydra reads it back as the same float.
fn num(x: f64) -> String {
    format!("{x:?}")
}

fn push(o: &mut Vec<String>, key: &str, value: impl std::fmt::Display) {
    o.push(format!("{key}={value}"));
}

/// The policy-loss keys shared by grpo and dcmdp; corrections map to verl's rollout correction.
fn policy(o: &mut Vec<String>, e: &mut Errs, p: &PolicyLossConfig, loss_mode: &str) {
    let a = "actor_rollout_ref.actor";
    push(o, &format!("{a}.policy_loss.loss_mode"), loss_mode);
    push(o, &format!("{a}.clip_ratio_low"), num(p.clip_ratio_low));
    push(o, &format!("{a}.clip_ratio_high"), num(p.clip_ratio_high));
    match p.clip_ratio_c {
        Some(c) => push(o, &format!("{a}.clip_ratio_c"), num(c)),
        None => e.no(
            true,
            "algorithm.clip_ratio_c",
            "verl always applies the dual clip: set a number",
        ),
    }
    push(o, &format!("{a}.loss_agg_mode"), agg_mode(p.loss_agg_mode));
    if let Some(h) = p.loss_agg_norm {
        push(o, &format!("{a}.loss_scale_factor"), h.round() as i64);
        e.no(
            h.fract() != 0.0,
            "algorithm.loss_agg_norm",
            "verl's loss_scale_factor is an integer",
        );
    }
    match &p.kl {
        Some(k) => {
            push(o, &format!("{a}.use_kl_loss"), true);
            push(o, &format!("{a}.kl_loss_coef"), num(k.coef));
            push(o, &format!("{a}.kl_loss_type"), kl_type(k.estimator));
        }
        None => push(o, &format!("{a}.use_kl_loss"), false),
    }
}

fn corrections(o: &mut Vec<String>, e: &mut Errs, list: &[Correction], dcmdp: bool) {
    let rc = "algorithm.rollout_correction";
    if dcmdp {
        e.no(
            !list.is_empty(),
            "algorithm.corrections",
            "harness_dcmdp uses verl's IS weights to carry μ; corrections are not mapped with it",
        );
        push(o, &format!("{rc}.rollout_is"), "token");
        push(o, &format!("{rc}.rollout_is_threshold"), DCMDP_IS_THRESHOLD);
        return;
    }
    let (mut is, mut rs) = (None::<(String, String)>, None::<(String, String)>);
    for c in list {
        let (slot, value) = match c {
            Correction::Tis { c } => (&mut is, ("token".into(), num(*c))),
            Correction::SeqTis { c } => (&mut is, ("sequence".into(), num(*c))),
            Correction::Icepop { low, high } => {
                (&mut is, ("token".into(), format!("'{low}_{high}'")))
            }
            Correction::Mis { c, one_sided } => {
                e.no(
                    *one_sided,
                    "algorithm.corrections",
                    "mis one_sided has no verl equivalent",
                );
                (&mut rs, ("token_k1".into(), num(*c)))
            }
            Correction::SeqMis { c, weight } => {
                if *weight {
                    e.no(
                        is.is_some(),
                        "algorithm.corrections",
                        "verl has one IS weight",
                    );
                    is = Some(("sequence".into(), num(*c)));
                }
                (
                    &mut rs,
                    ("seq_sum_k1".into(), format!("'{}_{}'", 1.0 / c, c)),
                )
            }
            Correction::GeoRs { lower, upper } => {
                let lo = lower.unwrap_or(1.0 / upper);
                (&mut rs, ("seq_mean_k1".into(), format!("'{lo}_{upper}'")))
            }
        };
        e.no(
            slot.is_some(),
            "algorithm.corrections",
            "verl takes one IS weight and one rejection rule here",
        );
        *slot = Some(value);
    }
    if let Some((level, thr)) = is {
        push(o, &format!("{rc}.rollout_is"), level);
        push(o, &format!("{rc}.rollout_is_threshold"), thr);
    }
    if let Some((level, thr)) = rs {
        push(o, &format!("{rc}.rollout_rs"), level);
        push(o, &format!("{rc}.rollout_rs_threshold"), thr);
    }
}

/// The algorithm's overrides and the plugin settings (`HARNESS_VERL_PLUGIN`, JSON) if any.
fn algorithm(o: &mut Vec<String>, e: &mut Errs, alg: &AlgorithmConfig) -> Option<String> {
    let adv = |o: &mut Vec<String>, by_std: bool| {
        push(o, "algorithm.adv_estimator", "grpo");
        push(o, "algorithm.norm_adv_by_std_in_grpo", by_std);
    };
    let bypass = |o: &mut Vec<String>| push(o, "algorithm.rollout_correction.bypass_mode", true);
    match alg {
        AlgorithmConfig::Grpo(g) => {
            adv(o, g.norm_adv_by_std);
            policy(o, e, &g.policy, "vanilla");
            corrections(o, e, &g.policy.corrections, false);
            None
        }
        AlgorithmConfig::Dcmdp(d) => {
            adv(o, d.norm_adv_by_std);
            policy(o, e, &d.policy, "harness_dcmdp");
            corrections(o, e, &d.policy.corrections, true);
            let form = match d.form {
                DcForm::Loss => "loss",
                DcForm::Advantage => "advantage",
            };
            Some(
                serde_json::json!({"name": "dcmdp", "c": d.c, "lambda_0": d.lambda_0,
                    "eta_lambda": d.eta_lambda, "lambda_max": d.lambda_max, "gating": d.gating,
                    "form": form})
                .to_string(),
            )
        }
        AlgorithmConfig::Drpo(d) => {
            adv(o, d.norm_adv_by_std);
            let a = "actor_rollout_ref.actor";
            push(o, &format!("{a}.policy_loss.loss_mode"), "harness_drpo");
            push(o, &format!("{a}.loss_agg_mode"), agg_mode(d.loss_agg_mode));
            if let Some(h) = d.loss_agg_norm {
                push(o, &format!("{a}.loss_scale_factor"), h.round() as i64);
            }
            bypass(o);
            Some(
                serde_json::json!({"name": "drpo", "delta": d.delta, "mu_weighted": d.mu_weighted})
                    .to_string(),
            )
        }
        AlgorithmConfig::Dppo(d) => {
            adv(o, d.norm_adv_by_std);
            let mode = match d.divergence {
                DppoDivergence::BinaryTv => "dppo_tv",
                DppoDivergence::BinaryKl => "dppo_kl",
                DppoDivergence::TopkTv | DppoDivergence::TopkKl => {
                    e.no(true, "algorithm.divergence", "top-K divergences need the engine's top-K log-probs in the policy loss, which verl 0.9.1 does not pass");
                    "dppo_tv"
                }
            };
            let a = "actor_rollout_ref.actor";
            let (low, high) = d.deltas();
            push(o, &format!("{a}.policy_loss.loss_mode"), mode);
            push(o, &format!("{a}.clip_ratio_low"), num(low));
            push(o, &format!("{a}.clip_ratio_high"), num(high));
            push(o, &format!("{a}.clip_ratio_c"), num(d.is_cap));
            push(o, &format!("{a}.loss_agg_mode"), agg_mode(d.loss_agg_mode));
            if let Some(h) = d.loss_agg_norm {
                push(o, &format!("{a}.loss_scale_factor"), h.round() as i64);
            }
            bypass(o);
            None
        }
        AlgorithmConfig::Ppo(_) => {
            e.no(
                true,
                "algorithm.name",
                "ppo (a critic) is not mapped to verl yet: use grpo, dcmdp, dppo or drpo",
            );
            None
        }
    }
}

/// Keys that must keep their defaults on verl (the harness's engine knobs and guards).
fn unsupported(e: &mut Errs, cfg: &RawRunConfig) {
    let eng = &cfg.rollout.engine;
    e.no(
        eng.weight_quant == WeightQuant::Int8,
        "rollout.engine.weight_quant",
        "int8 inference weights are not mapped (fp8-e4m3 is vLLM's fp8)",
    );
    e.no(
        eng.quant_scale != Default::default(),
        "rollout.engine.quant_scale",
        "vLLM's fp8 chooses its own scales",
    );
    e.no(
        eng.router != Default::default(),
        "rollout.engine.router",
        "router noise/precision is a harness engine knob",
    );
    e.no(
        eng.staleness != 0,
        "rollout.engine.staleness",
        "synthetic staleness is a harness engine knob",
    );
    e.no(
        eng.logit_noise != 0.0,
        "rollout.engine.logit_noise",
        "logit noise is a harness engine knob",
    );
    e.no(
        eng.topk_logprobs != 0,
        "rollout.engine.topk_logprobs",
        "verl's policy losses get no top-K log-probs",
    );
    e.no(
        eng.external.is_some(),
        "rollout.engine.external",
        "verl samples with its own engine",
    );
    e.no(
        cfg.model.lora.is_some(),
        "model.lora",
        "not mapped yet (verl's lora_rank/lora_alpha/target_modules)",
    );
    e.no(
        crate::config::validate::is_preset(&cfg.model.name),
        "model.name",
        "verl needs a Hugging Face model directory, not a preset",
    );
    e.no(
        cfg.task.name != "math",
        "task.name",
        "only the math task (Parquet/JSONL prompt/answer files) is mapped",
    );
    e.no(
        cfg.task.sft.is_some(),
        "task.sft",
        "the supervised warm-start is not mapped",
    );
    e.no(
        cfg.train.precision == Precision::Fp32,
        "train.precision",
        "verl's FSDP trainer computes in bf16 (set bf16)",
    );
    e.no(
        cfg.train.precision == Precision::Fp16,
        "train.precision",
        "verl's FSDP trainer computes in bf16 (set bf16)",
    );
    e.no(
        cfg.train.fault_nan_at_step.is_some(),
        "train.fault_nan_at_step",
        "fault injection is a harness test knob",
    );
    e.no(
        cfg.optim.eps != 1e-8,
        "optim.eps",
        "verl's AdamW uses eps 1e-8",
    );
    let mb = cfg.train.mini_batches.max(1);
    e.no(
        !cfg.rollout.prompts_per_step.is_multiple_of(mb),
        "train.mini_batches",
        "must divide rollout.prompts_per_step (verl's mini-batch size is in prompts)",
    );
}

/// Where a run's files go and what names it.
#[derive(Debug, Clone, Copy)]
pub struct RunPlace<'a> {
    pub run_dir: &'a Path,
    pub grid: &'a str,
    pub run_id: &'a str,
    pub seed: i64,
}

/// verl's overrides and the plugin settings of a raw config; every unmapped setting as an error.
fn generate(cfg: &RawRunConfig, v: &VerlBackend, place: &RunPlace) -> (Launch, Vec<ConfigError>) {
    let mut e = Errs(Vec::new());
    unsupported(&mut e, cfg);
    let mut o = Vec::new();
    let (r, t, op) = (&cfg.rollout, &cfg.train, &cfg.optim);
    let dir = place.run_dir.display().to_string();
    let data_dir = format!("{dir}/verl_data");
    // Data: converted by the launcher into verl's schema.
    let mut data = Vec::new();
    if let Some(f) = &cfg.task.train_file {
        data.push(("train".to_string(), f.clone()));
    }
    e.no(
        cfg.task.name == "math" && cfg.task.train_file.is_none(),
        "task.train_file",
        "required",
    );
    for (name, f) in &cfg.task.eval_files {
        data.push((name.clone(), f.clone()));
    }
    push(
        &mut o,
        "data.train_files",
        format!("{data_dir}/train.parquet"),
    );
    let vals: Vec<String> = cfg
        .task
        .eval_files
        .keys()
        .map(|n| format!("{data_dir}/{n}.parquet"))
        .collect();
    if !vals.is_empty() {
        push(&mut o, "data.val_files", format!("[{}]", vals.join(",")));
    }
    push(&mut o, "data.prompt_key", "prompt");
    push(&mut o, "data.train_batch_size", r.prompts_per_step);
    push(&mut o, "data.max_prompt_length", v.max_prompt_length);
    push(&mut o, "data.max_response_length", r.max_new_tokens);
    push(&mut o, "data.seed", place.seed);
    push(
        &mut o,
        "+data.apply_chat_template_kwargs.enable_thinking",
        cfg.task.enable_thinking,
    );
    // Model and trainer.
    let a = "actor_rollout_ref";
    push(&mut o, &format!("{a}.model.path"), &cfg.model.name);
    push(
        &mut o,
        &format!("{a}.model.enable_gradient_checkpointing"),
        t.recompute,
    );
    push(&mut o, &format!("{a}.model.use_remove_padding"), true);
    push(&mut o, &format!("{a}.actor.strategy"), "fsdp2");
    push(
        &mut o,
        &format!("{a}.actor.ppo_mini_batch_size"),
        r.prompts_per_step / t.mini_batches.max(1),
    );
    push(&mut o, &format!("{a}.actor.ppo_epochs"), t.ppo_epochs);
    push(&mut o, &format!("{a}.actor.use_dynamic_bsz"), true);
    push(
        &mut o,
        &format!("{a}.actor.ppo_max_token_len_per_gpu"),
        t.micro_batch_tokens.unwrap_or(v.max_token_len_per_gpu),
    );
    push(&mut o, &format!("{a}.actor.grad_clip"), num(op.grad_clip));
    push(&mut o, &format!("{a}.actor.entropy_coeff"), 0);
    push(&mut o, &format!("{a}.actor.data_loader_seed"), place.seed);
    push(
        &mut o,
        &format!("{a}.actor.fsdp_config.param_offload"),
        v.offload,
    );
    push(
        &mut o,
        &format!("{a}.actor.fsdp_config.optimizer_offload"),
        v.offload,
    );
    push(&mut o, &format!("{a}.actor.optim.lr"), num(op.lr));
    push(
        &mut o,
        &format!("{a}.actor.optim.betas"),
        format!("[{},{}]", num(op.betas.0), num(op.betas.1)),
    );
    push(
        &mut o,
        &format!("{a}.actor.optim.weight_decay"),
        num(op.weight_decay),
    );
    push(
        &mut o,
        &format!("{a}.actor.optim.lr_warmup_steps"),
        op.warmup_steps,
    );
    let sched = match op.schedule {
        Schedule::Constant | Schedule::LinearWarmup => "constant",
        Schedule::Cosine => "cosine",
    };
    push(&mut o, &format!("{a}.actor.optim.lr_scheduler_type"), sched);
    let ralgo = cfg.algorithm.as_ref();
    let plugin = ralgo.and_then(|alg| algorithm(&mut o, &mut e, alg));
    e.no(ralgo.is_none(), "algorithm", "required");
    // Rollout engine.
    let eng = &r.engine;
    push(&mut o, &format!("{a}.rollout.name"), v.engine.as_str());
    push(&mut o, &format!("{a}.rollout.mode"), "async");
    push(&mut o, &format!("{a}.rollout.n"), r.group_size);
    push(
        &mut o,
        &format!("{a}.rollout.temperature"),
        num(r.temperature),
    );
    push(&mut o, &format!("{a}.rollout.top_p"), num(r.top_p));
    push(
        &mut o,
        &format!("{a}.rollout.top_k"),
        if r.top_k == 0 { -1 } else { r.top_k as i64 },
    );
    push(&mut o, &format!("{a}.rollout.dtype"), dtype(eng.precision));
    if eng.weight_quant == WeightQuant::Fp8E4m3 {
        push(&mut o, &format!("{a}.rollout.quantization"), "fp8");
    }
    push(&mut o, &format!("{a}.rollout.calculate_log_probs"), true);
    push(
        &mut o,
        &format!("{a}.rollout.tensor_model_parallel_size"),
        v.rollout_tp,
    );
    push(
        &mut o,
        &format!("{a}.rollout.gpu_memory_utilization"),
        num(v.gpu_memory_utilization),
    );
    push(&mut o, &format!("{a}.rollout.seed"), place.seed);
    if let Some(n) = r.max_num_seqs {
        push(&mut o, &format!("{a}.rollout.max_num_seqs"), n);
    }
    push(
        &mut o,
        &format!("{a}.rollout.log_prob_use_dynamic_bsz"),
        true,
    );
    push(
        &mut o,
        &format!("{a}.rollout.log_prob_max_token_len_per_gpu"),
        v.max_token_len_per_gpu,
    );
    let ev = &cfg.eval;
    push(&mut o, &format!("{a}.rollout.val_kwargs.n"), ev.k);
    push(
        &mut o,
        &format!("{a}.rollout.val_kwargs.temperature"),
        num(ev.temperature),
    );
    push(
        &mut o,
        &format!("{a}.rollout.val_kwargs.do_sample"),
        ev.temperature > 0.0,
    );
    push(&mut o, &format!("{a}.ref.log_prob_use_dynamic_bsz"), true);
    push(
        &mut o,
        &format!("{a}.ref.log_prob_max_token_len_per_gpu"),
        v.max_token_len_per_gpu,
    );
    // Trainer: schedule, checkpoints, logs, cluster.
    let tr = "trainer";
    push(&mut o, &format!("{tr}.total_training_steps"), t.steps);
    push(&mut o, &format!("{tr}.total_epochs"), 1000);
    push(
        &mut o,
        &format!("{tr}.test_freq"),
        if ev.every == 0 { t.steps } else { ev.every },
    );
    push(&mut o, &format!("{tr}.val_before_train"), false);
    push(
        &mut o,
        &format!("{tr}.save_freq"),
        if cfg.checkpoint.every == 0 {
            t.steps
        } else {
            cfg.checkpoint.every
        },
    );
    push(
        &mut o,
        &format!("{tr}.max_actor_ckpt_to_keep"),
        cfg.checkpoint.keep,
    );
    push(
        &mut o,
        &format!("{tr}.default_local_dir"),
        format!("{dir}/checkpoints"),
    );
    push(&mut o, &format!("{tr}.resume_mode"), "auto");
    push(&mut o, &format!("{tr}.logger"), "[console,file]");
    push(&mut o, &format!("{tr}.project_name"), place.grid);
    push(&mut o, &format!("{tr}.experiment_name"), place.run_id);
    push(&mut o, &format!("{tr}.nnodes"), v.nnodes);
    push(&mut o, &format!("{tr}.n_gpus_per_node"), v.gpus_per_node);
    o.extend(v.overrides.iter().cloned());
    let mut env = vec![
        (
            "VERL_USE_EXTERNAL_MODULES".to_string(),
            "harness_verl".to_string(),
        ),
        (
            "VERL_FILE_LOGGER_PATH".to_string(),
            format!("{dir}/{VERL_LOG}"),
        ),
    ];
    if let Some(p) = plugin {
        env.push(("HARNESS_VERL_PLUGIN".into(), p));
    }
    let launch = Launch {
        env,
        overrides: o,
        python: v.python.clone(),
        data,
        data_source: v.data_source.clone(),
    };
    (launch, e.0)
}

/// `validate`'s check of a `backend: verl` run: every setting verl cannot honour, by key path.
pub fn check(cfg: &RawRunConfig) -> Vec<ConfigError> {
    let Some(v) = cfg.backend.verl() else {
        return Vec::new();
    };
    let place = RunPlace {
        run_dir: Path::new("run"),
        grid: "grid",
        run_id: "run",
        seed: 0,
    };
    generate(cfg, v, &place).1
}

/// The launch of a checked `backend: verl` run (`None` for a harness run).
pub fn launch(cfg: &RunConfig, place: &RunPlace) -> Option<Launch> {
    let v = cfg.backend.verl()?;
    let raw = cfg.clone().into_raw();
    Some(generate(&raw, v, place).0)
}

/// Single-quote for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Launch {
    /// The launch as one shell command, run from the repository root (the data conversion, then
    /// verl's trainer through the plugin launcher).
    pub fn command(&self, repo: &Path, run_dir: &Path) -> String {
        let q = shell_quote;
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", q(v)))
            .chain(std::iter::once(format!(
                "PYTHONPATH={}/python${{PYTHONPATH:+:$PYTHONPATH}}",
                q(&repo.display().to_string())
            )))
            .collect();
        let data: Vec<String> = self
            .data
            .iter()
            .map(|(n, f)| q(&format!("{n}={f}")))
            .collect();
        let overrides: Vec<String> = self.overrides.iter().map(|o| q(o)).collect();
        format!(
            "env {env} {py} -m harness_verl.launch --run-dir {dir} --data-source {ds} --data {data} -- {ov}",
            env = env.join(" "),
            py = q(&self.python),
            dir = q(&run_dir.display().to_string()),
            ds = q(&self.data_source),
            data = data.join(" "),
            ov = overrides.join(" "),
        )
    }
}
