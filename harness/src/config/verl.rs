//! A `backend: verl` run's config as verl 0.9.1's settings: the Hydra overrides of verl's
//! `ppo_trainer.yaml`, the plugin settings (`HARNESS_VERL_PLUGIN`, JSON) and the data files, and
//! every setting with no verl equivalent as an error at its key path. It lives in config, not in
//! `crate::backend`, because [`check`] is one of config's checks (a verl run that cannot run is
//! refused by `validate`, `plan`, `run` and when a run's saved config is loaded) and one mapping
//! makes both the settings and the errors, so they cannot disagree; `crate::backend::verl`
//! (which imports config) turns the settings into a launch. The mapping, key by key, is the table
//! in README.md ("Past one machine: verl").
use super::source::KeyPath;
use super::{
    ConfigError, LoraConfig, OptimConfig, Precision, RawRunConfig, Schedule, VerlBackend,
    WeightQuant,
};
use crate::objective::{
    AlgorithmConfig, Correction, DcForm, DppoDivergence, KlEstimator, LossAggMode,
    PolicyLossConfig, PpoConfig,
};
use std::path::Path;

/// The μ-carrying IS threshold of `harness_dcmdp` (python/harness_verl/losses.py `IS_THRESHOLD`).
pub const DCMDP_IS_THRESHOLD: &str = "1e9";
/// A run's verl settings (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct VerlSettings {
    /// Hydra overrides of verl's `ppo_trainer.yaml`, in order (`backend.overrides` last).
    pub overrides: Vec<String>,
    /// The policy-loss plugin's settings (`HARNESS_VERL_PLUGIN`, JSON), if the algorithm has one.
    pub plugin: Option<String>,
    /// Data files to convert to verl's Parquet schema first: (name, source file).
    pub data: Vec<(String, String)>,
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
        AlgorithmConfig::Ppo(p) => {
            ppo(o, e, p);
            None
        }
    }
}

/// PPO as verl's GAE estimator with a critic (its model and optimizer: [`critic`]).
fn ppo(o: &mut Vec<String>, e: &mut Errs, p: &PpoConfig) {
    push(o, "algorithm.adv_estimator", "gae");
    push(o, "algorithm.gamma", num(p.gamma));
    push(o, "algorithm.lam", num(p.lam));
    policy(o, e, &p.policy, "vanilla");
    corrections(o, e, &p.policy.corrections, false);
    e.no(
        p.vf_coef != 1.0,
        "algorithm.vf_coef",
        "verl's critic trains on its own, unweighted value loss",
    );
    e.no(
        !p.whiten_advantages,
        "algorithm.whiten_advantages",
        "verl's GAE always whitens advantages",
    );
    if let Some(k) = &p.kl_in_reward {
        push(o, "algorithm.use_kl_in_reward", true);
        push(o, "algorithm.kl_penalty", kl_type(k.estimator));
        push(o, "algorithm.kl_ctrl.type", "fixed");
        push(o, "algorithm.kl_ctrl.kl_coef", num(k.coef));
    }
}

/// PPO's value model: verl's FSDP critic from the policy's checkpoint, trained in full (as the
/// harness's critic is, LoRA or not) with the run's optimizer settings; mini-batches and epochs
/// follow the actor's (verl's defaults).
fn critic(o: &mut Vec<String>, cfg: &RawRunConfig, v: &VerlBackend, p: &PpoConfig) {
    let (t, op) = (&cfg.train, &cfg.optim);
    let c = "critic";
    push(o, &format!("{c}.enable"), true);
    push(o, &format!("{c}.strategy"), "fsdp2");
    push(o, &format!("{c}.model.path"), &cfg.model.name);
    push(
        o,
        &format!("{c}.model.enable_gradient_checkpointing"),
        t.recompute,
    );
    push(
        o,
        &format!("{c}.ppo_max_token_len_per_gpu"),
        t.micro_batch_tokens.unwrap_or(v.max_token_len_per_gpu),
    );
    push(o, &format!("{c}.cliprange_value"), num(p.cliprange_value));
    push(o, &format!("{c}.grad_clip"), num(op.grad_clip));
    push(o, &format!("{c}.fsdp.param_offload"), v.offload);
    push(o, &format!("{c}.fsdp.optimizer_offload"), v.offload);
    optim(o, &format!("{c}.optim"), op);
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
        cfg.model
            .lora
            .as_ref()
            .is_some_and(|l| l.alpha.fract() != 0.0),
        "model.lora.alpha",
        "verl's lora_alpha is an integer",
    );
    e.no(
        super::validate::is_preset(&cfg.model.name),
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

/// The data files to convert into verl's schema (by the launcher) and the `data.*` overrides.
fn data(
    o: &mut Vec<String>,
    e: &mut Errs,
    cfg: &RawRunConfig,
    v: &VerlBackend,
    place: &RunPlace,
) -> Vec<(String, String)> {
    let r = &cfg.rollout;
    let data_dir = format!("{}/verl_data", place.run_dir.display());
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
    push(o, "data.train_files", format!("{data_dir}/train.parquet"));
    let vals: Vec<String> = cfg
        .task
        .eval_files
        .keys()
        .map(|n| format!("{data_dir}/{n}.parquet"))
        .collect();
    if !vals.is_empty() {
        push(o, "data.val_files", format!("[{}]", vals.join(",")));
    }
    push(o, "data.prompt_key", "prompt");
    push(o, "data.train_batch_size", r.prompts_per_step);
    push(o, "data.max_prompt_length", v.max_prompt_length);
    push(o, "data.max_response_length", r.max_new_tokens);
    push(o, "data.seed", place.seed);
    push(
        o,
        "+data.apply_chat_template_kwargs.enable_thinking",
        cfg.task.enable_thinking,
    );
    data
}

/// `model.lora` as verl's FSDP LoRA (PEFT on the named modules; the MLP names adapt every
/// expert of an MoE layer, as PEFT matches module names).
fn lora(o: &mut Vec<String>, l: &LoraConfig) {
    let m = "actor_rollout_ref.model";
    push(o, &format!("{m}.lora_rank"), l.rank);
    push(o, &format!("{m}.lora_alpha"), l.alpha as i64);
    push(
        o,
        &format!("{m}.target_modules"),
        format!("[{}]", l.targets.join(",")),
    );
}

/// The model, the FSDP actor and its optimizer.
fn actor(o: &mut Vec<String>, cfg: &RawRunConfig, v: &VerlBackend, place: &RunPlace) {
    let (r, t, op) = (&cfg.rollout, &cfg.train, &cfg.optim);
    let a = "actor_rollout_ref";
    push(o, &format!("{a}.model.path"), &cfg.model.name);
    if let Some(l) = &cfg.model.lora {
        lora(o, l);
    }
    push(
        o,
        &format!("{a}.model.enable_gradient_checkpointing"),
        t.recompute,
    );
    push(o, &format!("{a}.model.use_remove_padding"), true);
    push(o, &format!("{a}.actor.strategy"), "fsdp2");
    push(
        o,
        &format!("{a}.actor.ppo_mini_batch_size"),
        r.prompts_per_step / t.mini_batches.max(1),
    );
    push(o, &format!("{a}.actor.ppo_epochs"), t.ppo_epochs);
    push(o, &format!("{a}.actor.use_dynamic_bsz"), true);
    push(
        o,
        &format!("{a}.actor.ppo_max_token_len_per_gpu"),
        t.micro_batch_tokens.unwrap_or(v.max_token_len_per_gpu),
    );
    push(o, &format!("{a}.actor.grad_clip"), num(op.grad_clip));
    push(o, &format!("{a}.actor.entropy_coeff"), 0);
    push(o, &format!("{a}.actor.data_loader_seed"), place.seed);
    push(
        o,
        &format!("{a}.actor.fsdp_config.param_offload"),
        v.offload,
    );
    push(
        o,
        &format!("{a}.actor.fsdp_config.optimizer_offload"),
        v.offload,
    );
    optim(o, &format!("{a}.actor.optim"), op);
}

/// An FSDP optimizer's settings under `key` (the actor's or the critic's).
fn optim(o: &mut Vec<String>, key: &str, op: &OptimConfig) {
    push(o, &format!("{key}.lr"), num(op.lr));
    push(
        o,
        &format!("{key}.betas"),
        format!("[{},{}]", num(op.betas.0), num(op.betas.1)),
    );
    push(o, &format!("{key}.weight_decay"), num(op.weight_decay));
    push(o, &format!("{key}.lr_warmup_steps"), op.warmup_steps);
    let sched = match op.schedule {
        Schedule::Constant | Schedule::LinearWarmup => "constant",
        Schedule::Cosine => "cosine",
    };
    push(o, &format!("{key}.lr_scheduler_type"), sched);
}

/// The rollout engine (sampling and evaluation) and π_ref's scoring.
fn rollout(o: &mut Vec<String>, cfg: &RawRunConfig, v: &VerlBackend, place: &RunPlace) {
    let a = "actor_rollout_ref";
    let r = &cfg.rollout;
    let eng = &r.engine;
    push(o, &format!("{a}.rollout.name"), v.engine.as_str());
    push(o, &format!("{a}.rollout.mode"), "async");
    push(o, &format!("{a}.rollout.n"), r.group_size);
    push(o, &format!("{a}.rollout.temperature"), num(r.temperature));
    push(o, &format!("{a}.rollout.top_p"), num(r.top_p));
    push(
        o,
        &format!("{a}.rollout.top_k"),
        if r.top_k == 0 { -1 } else { r.top_k as i64 },
    );
    push(o, &format!("{a}.rollout.dtype"), dtype(eng.precision));
    if eng.weight_quant == WeightQuant::Fp8E4m3 {
        push(o, &format!("{a}.rollout.quantization"), "fp8");
    }
    push(o, &format!("{a}.rollout.calculate_log_probs"), true);
    push(
        o,
        &format!("{a}.rollout.tensor_model_parallel_size"),
        v.rollout_tp,
    );
    push(
        o,
        &format!("{a}.rollout.gpu_memory_utilization"),
        num(v.gpu_memory_utilization),
    );
    push(o, &format!("{a}.rollout.seed"), place.seed);
    if let Some(n) = r.max_num_seqs {
        push(o, &format!("{a}.rollout.max_num_seqs"), n);
    }
    push(o, &format!("{a}.rollout.log_prob_use_dynamic_bsz"), true);
    push(
        o,
        &format!("{a}.rollout.log_prob_max_token_len_per_gpu"),
        v.max_token_len_per_gpu,
    );
    let ev = &cfg.eval;
    push(o, &format!("{a}.rollout.val_kwargs.n"), ev.k);
    push(
        o,
        &format!("{a}.rollout.val_kwargs.temperature"),
        num(ev.temperature),
    );
    push(
        o,
        &format!("{a}.rollout.val_kwargs.do_sample"),
        ev.temperature > 0.0,
    );
    push(o, &format!("{a}.ref.log_prob_use_dynamic_bsz"), true);
    push(
        o,
        &format!("{a}.ref.log_prob_max_token_len_per_gpu"),
        v.max_token_len_per_gpu,
    );
}

/// verl's trainer: schedule, checkpoints, logs, cluster.
fn trainer(o: &mut Vec<String>, cfg: &RawRunConfig, v: &VerlBackend, place: &RunPlace) {
    let (t, ev) = (&cfg.train, &cfg.eval);
    let dir = place.run_dir.display();
    let tr = "trainer";
    push(o, &format!("{tr}.total_training_steps"), t.steps);
    push(o, &format!("{tr}.total_epochs"), 1000);
    push(
        o,
        &format!("{tr}.test_freq"),
        if ev.every == 0 { t.steps } else { ev.every },
    );
    push(o, &format!("{tr}.val_before_train"), false);
    push(
        o,
        &format!("{tr}.save_freq"),
        if cfg.checkpoint.every == 0 {
            t.steps
        } else {
            cfg.checkpoint.every
        },
    );
    push(
        o,
        &format!("{tr}.max_actor_ckpt_to_keep"),
        cfg.checkpoint.keep,
    );
    push(
        o,
        &format!("{tr}.default_local_dir"),
        format!("{dir}/checkpoints"),
    );
    push(o, &format!("{tr}.resume_mode"), "auto");
    push(o, &format!("{tr}.logger"), "[console,file]");
    push(o, &format!("{tr}.project_name"), place.grid);
    push(o, &format!("{tr}.experiment_name"), place.run_id);
    push(o, &format!("{tr}.nnodes"), v.nnodes);
    push(o, &format!("{tr}.n_gpus_per_node"), v.gpus_per_node);
}

/// verl's settings of a raw config; every unmapped setting as an error.
pub fn settings(
    cfg: &RawRunConfig,
    v: &VerlBackend,
    place: &RunPlace,
) -> (VerlSettings, Vec<ConfigError>) {
    let mut e = Errs(Vec::new());
    unsupported(&mut e, cfg);
    let mut o = Vec::new();
    let data = data(&mut o, &mut e, cfg, v, place);
    actor(&mut o, cfg, v, place);
    let ralgo = cfg.algorithm.as_ref();
    let plugin = ralgo.and_then(|alg| algorithm(&mut o, &mut e, alg));
    if let Some(AlgorithmConfig::Ppo(p)) = ralgo {
        critic(&mut o, cfg, v, p);
    }
    e.no(ralgo.is_none(), "algorithm", "required");
    rollout(&mut o, cfg, v, place);
    trainer(&mut o, cfg, v, place);
    o.extend(v.overrides.iter().cloned());
    let settings = VerlSettings {
        overrides: o,
        plugin,
        data,
    };
    (settings, e.0)
}

/// Config's check of a `backend: verl` run: every setting verl cannot honour, by key path.
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
    settings(cfg, v, &place).1
}
