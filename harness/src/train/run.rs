//! One run: SFT warm-start (optional), then `train.steps` RL steps with evaluation, checkpoints,
//! the divergence guard and exact resume.
use super::checkpoint::{self, CheckpointMeta};
use super::guard::Guard;
use super::optim::{clip_grad_norm, lr_at, AdamW};
use super::value::ValueModel;
use super::{sft, RunOutcome, RunState, StepReport};
use crate::config::RunConfig;
use crate::diagnostics::rollout_corr;
use crate::model::{Qwen3, RandomInit};
use crate::objective::{
    build_algorithm, AdvantageInput, Algorithm, Metrics, PolicyBatch, StepStats,
};
use crate::rollout::discrepancy::precision_kind;
use crate::rollout::external::read_external;
use crate::rollout::{
    score_responses, score_responses_recompute, Engine, Rollouts, SamplingParams,
};
use crate::task::eval::avg_and_pass_at_k;
use crate::task::{build_task, Rng, Task};
use crate::{Error, Result};
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Seed of libtorch's global RNG at the start of step `step` (and of the evaluation after it).
fn step_seed(seed: i64, step: usize, stream: u64) -> i64 {
    (Rng::new(seed, (step as u64) << 8 | stream).next_u64() >> 1) as i64
}

struct Trainer<'a> {
    cfg: &'a RunConfig,
    seed: i64,
    device: Device,
    task: Box<dyn Task>,
    policy: Qwen3,
    params: Vec<Tensor>,
    opt: AdamW,
    value: Option<(ValueModel, AdamW)>,
    reference: Option<Qwen3>,
    engine: Engine,
    algo: Box<dyn Algorithm>,
    guard: Guard,
}

fn append_jsonl(path: &Path, row: &Metrics, step: usize) -> Result<()> {
    let mut obj = serde_json::Map::new();
    obj.insert("step".into(), step.into());
    for (k, v) in row {
        // JSON has no NaN/∞: write them as null.
        obj.insert(
            k.clone(),
            serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into),
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{}", serde_json::Value::Object(obj)).map_err(|e| Error::io(path, e))?;
    f.flush().map_err(|e| Error::io(path, e))
}

/// Keep only complete lines whose step is ≤ `step` (after resuming from that checkpoint).
fn truncate_jsonl(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .collect();
    let tmp = path.with_extension("jsonl.tmp");
    let body = if kept.is_empty() {
        String::new()
    } else {
        kept.join("\n") + "\n"
    };
    std::fs::write(&tmp, body).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn to_rows(t: &Tensor) -> Vec<Vec<i64>> {
    let (n, _) = t.size2().unwrap();
    (0..n)
        .map(|i| Vec::<i64>::try_from(t.get(i).to_device(Device::Cpu)).unwrap())
        .collect()
}

fn masked_mean(x: &Tensor, m: &Tensor) -> f64 {
    ((x * m).sum(Kind::Double) / m.sum(Kind::Double).clamp_min(1.0)).double_value(&[])
}

impl<'a> Trainer<'a> {
    fn new(cfg: &'a RunConfig, seed: i64, resuming: bool) -> Result<Self> {
        let device = crate::runtime::default_device();
        let task = build_task(&cfg.task, &cfg.model.name)?;
        let kind = precision_kind(cfg.train.precision);
        let policy = super::policy::build_policy(cfg, seed, device)?;
        if !resuming {
            if let Some(s) = &cfg.task.sft {
                sft::warm_start(&policy, task.as_ref(), s, seed)?;
            }
        }
        let algo = build_algorithm(&cfg.algorithm)?;
        let reference = if algo.needs_ref_policy() {
            let mut r = Qwen3::from_source(&policy.cfg, &mut RandomInit::zeros(kind, device))?;
            r.copy_weights_from(&policy);
            Some(r)
        } else {
            None
        };
        let value = if algo.needs_value_model() {
            let v = ValueModel::from_policy(&policy)?;
            let o = AdamW::new(v.parameters(), &cfg.optim);
            Some((v, o))
        } else {
            None
        };
        let params = policy.trainable_parameters();
        let opt = AdamW::new(policy.trainable_parameters(), &cfg.optim);
        let engine = Engine::new(&policy, &cfg.rollout.engine, device)?;
        Ok(Trainer {
            cfg,
            seed,
            device,
            task,
            policy,
            params,
            opt,
            value,
            reference,
            engine,
            algo,
            guard: Guard {
                max_grad_norm: cfg.train.max_grad_norm,
                min_entropy: cfg.train.min_entropy,
            },
        })
    }

    fn sampling(&self, temperature: f64) -> SamplingParams {
        let r = &self.cfg.rollout;
        SamplingParams {
            max_new_tokens: r.max_new_tokens,
            temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            stop_tokens: self.task.stop_tokens(),
            pad_token: self.task.pad_token(),
            topk_logprobs: if self.algo.needs_rollout_topk() {
                r.engine.topk_logprobs
            } else {
                0
            },
            logit_noise: 0.0,
        }
    }

    // ---- checkpoints ----

    fn save(&self, dir: &Path, step: usize) -> Result<()> {
        let mut t: Vec<(String, Tensor)> = Vec::new();
        // With LoRA: the adapters only (the base is rebuilt from the config).
        for (n, p) in self.policy.trainable_named_parameters() {
            t.push((format!("policy/{n}"), p.detach()));
        }
        let (m, v) = self.opt.moments();
        for (i, (a, b)) in m.iter().zip(v).enumerate() {
            t.push((format!("adam_m/{i}"), a.shallow_clone()));
            t.push((format!("adam_v/{i}"), b.shallow_clone()));
        }
        if !self.engine_rebuildable() {
            for (i, w) in self.engine.weights().into_iter().enumerate() {
                t.push((format!("engine/{i}"), w));
            }
        }
        for (j, snap) in self.engine.pending().iter().enumerate() {
            for (i, w) in snap.iter().enumerate() {
                t.push((format!("pending/{j}/{i}"), w.shallow_clone()));
            }
        }
        let mut value_t = 0;
        if let Some((vm, vo)) = &self.value {
            for (n, p) in vm.named_parameters() {
                t.push((format!("value/{n}"), p.detach()));
            }
            let (m, v) = vo.moments();
            for (i, (a, b)) in m.iter().zip(v).enumerate() {
                t.push((format!("value_adam_m/{i}"), a.shallow_clone()));
                t.push((format!("value_adam_v/{i}"), b.shallow_clone()));
            }
            value_t = vo.t;
        }
        if let Some(r) = &self.reference {
            for (n, p) in r.named_parameters() {
                t.push((format!("ref/{n}"), p));
            }
        }
        let meta = CheckpointMeta {
            step,
            seed: self.seed,
            adam_t: self.opt.t,
            value_adam_t: value_t,
            algorithm_state: self.algo.state(),
            pending: self.engine.pending().len(),
        };
        checkpoint::save(dir, &t, &meta)?;
        Ok(())
    }

    fn restore(&mut self, path: &Path) -> Result<usize> {
        let (tensors, meta) = checkpoint::load(path)?;
        let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        let get = |k: &str| {
            map.get(k)
                .map(|t| t.to_device(self.device))
                .ok_or_else(|| Error::Checkpoint {
                    path: path.to_path_buf(),
                    msg: format!("missing `{k}`"),
                })
        };
        let copy_into = |named: Vec<(String, Tensor)>, prefix: &str| -> Result<()> {
            for (n, mut p) in named {
                let src = get(&format!("{prefix}/{n}"))?;
                tch::no_grad(|| p.copy_(&src));
            }
            Ok(())
        };
        copy_into(self.policy.trainable_named_parameters(), "policy")?;
        let n = self.params.len();
        let m = (0..n)
            .map(|i| get(&format!("adam_m/{i}")))
            .collect::<Result<Vec<_>>>()?;
        let v = (0..n)
            .map(|i| get(&format!("adam_v/{i}")))
            .collect::<Result<Vec<_>>>()?;
        self.opt.load_moments(&m, &v, meta.adam_t);
        let n_w = self.engine.weights().len();
        if self.engine_rebuildable() {
            self.engine.sync(&self.policy);
        } else {
            let w = (0..n_w)
                .map(|i| get(&format!("engine/{i}")))
                .collect::<Result<Vec<_>>>()?;
            self.engine.set_weights(&w);
        }
        let mut pending = VecDeque::new();
        for j in 0..meta.pending {
            pending.push_back(
                (0..n_w)
                    .map(|i| get(&format!("pending/{j}/{i}")))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        self.engine.set_pending(pending);
        if let Some((vm, vo)) = &mut self.value {
            copy_into(vm.named_parameters(), "value")?;
            let k = vm.parameters().len();
            let m = (0..k)
                .map(|i| get(&format!("value_adam_m/{i}")))
                .collect::<Result<Vec<_>>>()?;
            let v = (0..k)
                .map(|i| get(&format!("value_adam_v/{i}")))
                .collect::<Result<Vec<_>>>()?;
            vo.load_moments(&m, &v, meta.value_adam_t);
        }
        if let Some(r) = &self.reference {
            copy_into(r.named_parameters(), "ref")?;
        }
        self.algo
            .load_state(&meta.algorithm_state)
            .map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                msg: format!("algorithm state: {e}"),
            })?;
        Ok(meta.step)
    }

    /// LoRA without staleness: the engine holds exactly the merged adapters, so checkpoints skip
    /// its full weights and resume re-syncs it.
    fn engine_rebuildable(&self) -> bool {
        self.policy.has_lora() && self.cfg.rollout.engine.staleness == 0
    }

    // ---- evaluation ----

    /// avg@k / pass@k on each held-out set, sampled by the inference engine (as deployed), with
    /// the evaluation protocol's k per set and sampling (`crate::task::eval`).
    fn evaluate(&self, step: usize) -> Metrics {
        use crate::task::eval;
        tch::manual_seed(step_seed(self.seed, step, 2));
        let e = &self.cfg.eval;
        let sampling = SamplingParams {
            max_new_tokens: eval::max_new_tokens(self.cfg),
            temperature: e.temperature,
            top_p: e.top_p,
            top_k: e.top_k,
            topk_logprobs: 0,
            ..self.sampling(e.temperature)
        };
        let mut out = Metrics::new();
        for (name, problems) in self.task.eval_sets(e.prompts) {
            if problems.is_empty() {
                continue;
            }
            let k = eval::k_for(e, &name);
            let prompts: Vec<Vec<i64>> = problems
                .iter()
                .flat_map(|p| std::iter::repeat_n(p.prompt_ids.clone(), k))
                .collect();
            let resp: Vec<Vec<i64>> = prompts
                .chunks(eval::batch_size(self.cfg))
                .flat_map(|chunk| to_rows(&self.engine.generate(chunk, &sampling).response_ids))
                .collect();
            let correct: Vec<Vec<bool>> = problems
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    (0..k)
                        .map(|j| {
                            let r = &resp[i * k + j];
                            self.task.reward(p, &self.task.decode(r)) > 0.5
                        })
                        .collect()
                })
                .collect();
            let (avg, pass) = avg_and_pass_at_k(&correct);
            out.insert(format!("eval/{name}/avg@{k}"), avg);
            out.insert(format!("eval/{name}/pass@{k}"), pass);
        }
        out
    }

    // ---- one RL step ----

    fn step(&mut self, step: usize) -> Result<(Metrics, Option<String>)> {
        let cfg = self.cfg;
        let r = &cfg.rollout;
        let t_step = Instant::now();
        tch::manual_seed(step_seed(self.seed, step, 1));
        let group = r.group_size;
        let (ro, problems): (Rollouts, Vec<_>) = match &r.engine.external {
            Some(path) => {
                let ro = read_external(
                    Path::new(path),
                    self.policy.cfg.vocab_size,
                    self.task.pad_token(),
                    r.max_new_tokens,
                    self.device,
                )?;
                (ro, vec![])
            }
            None => {
                let problems = self.task.train_batch(self.seed, step, r.prompts_per_step);
                let prompts: Vec<Vec<i64>> = problems
                    .iter()
                    .flat_map(|p| std::iter::repeat_n(p.prompt_ids.clone(), group))
                    .collect();
                (
                    self.engine
                        .generate(&prompts, &self.sampling(r.temperature)),
                    problems,
                )
            }
        };
        let t_gen = t_step.elapsed().as_secs_f64();
        let n = ro.response_ids.size()[0];
        let mask = ro.response_mask.shallow_clone();
        let resp = to_rows(&ro.response_ids);
        let rewards: Vec<f32> = resp
            .iter()
            .enumerate()
            .map(|(i, ids)| match problems.get(i / group) {
                Some(p) => self.task.reward(p, &self.task.decode(ids)) as f32,
                None => 0.0,
            })
            .collect();
        let rewards_t = Tensor::from_slice(&rewards).to_device(self.device);

        // Trainer-side recompute of π_old (and π_ref, V_old).
        let t0 = Instant::now();
        let temp = r.temperature;
        // With one epoch of one mini-batch the update's forward runs on the very weights that
        // define π_old: do that forward once, with the graph, and take π_old as its detached copy.
        // (Not with recompute, whose forward must run without a graph.)
        let fused = cfg.train.ppo_epochs.max(1) == 1
            && cfg.train.mini_batches.max(1) == 1
            && !cfg.train.recompute;
        let mut fused_cur = None;
        let old = if fused {
            let cur = score_responses(
                &self.policy,
                &ro.prompt_ids,
                &ro.prompt_mask,
                &ro.response_ids,
                &mask,
                temp,
                ro.topk.as_ref().map(|(_, ids)| ids),
            );
            let old = cur.detached();
            fused_cur = Some(cur);
            old
        } else {
            tch::no_grad(|| {
                score_responses(
                    &self.policy,
                    &ro.prompt_ids,
                    &ro.prompt_mask,
                    &ro.response_ids,
                    &mask,
                    temp,
                    None,
                )
            })
        };
        let ref_logp = self.reference.as_ref().map(|m| {
            tch::no_grad(|| {
                score_responses(
                    m,
                    &ro.prompt_ids,
                    &ro.prompt_mask,
                    &ro.response_ids,
                    &mask,
                    temp,
                    None,
                )
                .logp
            })
        });
        let old_values = self.value.as_ref().map(|(v, _)| {
            tch::no_grad(|| v.values(&ro.prompt_ids, &ro.prompt_mask, &ro.response_ids, &mask))
        });
        let t_old = t0.elapsed().as_secs_f64();

        let mut metrics = Metrics::new();
        let experts = (!ro.engine_experts.is_empty())
            .then_some((ro.engine_experts.as_slice(), old.experts.as_slice()));
        metrics.extend(rollout_corr(&old.logp, &ro.rollout_logp, &mask, experts));
        let stats = StepStats::from_logps(&old.logp, &ro.rollout_logp, &mask);
        let mut ain = AdvantageInput::new(&rewards_t, &mask, group as i64);
        if let Some(v) = &old_values {
            ain = ain.with_values(v);
        }
        if let Some(rl) = &ref_logp {
            ain = ain.with_logps(&old.logp, rl);
        }
        let adv = self.algo.advantages(&ain);
        metrics.extend(adv.metrics.clone());
        self.algo.begin_step(&stats);

        // Updates.
        let t1 = Instant::now();
        let mb = cfg.train.mini_batches.max(1) as i64;
        let mb_size = (n + mb - 1) / mb;
        let lr = lr_at(&cfg.optim, step - 1, cfg.train.steps);
        let mut perm_rng = Rng::new(self.seed, (step as u64) << 8 | 3);
        let mut sums = Metrics::new();
        let mut count = 0.0;
        let mut grad_norms = vec![];
        let moe_coef = self.policy.cfg.moe.as_ref().map(|m| m.router_aux_loss_coef);
        for _epoch in 0..cfg.train.ppo_epochs.max(1) {
            // Fisher–Yates with the step's own stream, so resume replays the same order.
            let mut order: Vec<i64> = (0..n).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, perm_rng.below(i as u64 + 1) as usize);
            }
            for chunk in order.chunks(mb_size as usize) {
                // The fused single mini-batch keeps the rows in order (the loss is a mean).
                let idx = fused_cur
                    .is_none()
                    .then(|| Tensor::from_slice(chunk).to_device(self.device));
                let sel = |t: &Tensor| match &idx {
                    Some(idx) => t.index_select(0, idx),
                    None => t.shallow_clone(),
                };
                let (pi, pm, ri, rm) = (
                    sel(&ro.prompt_ids),
                    sel(&ro.prompt_mask),
                    sel(&ro.response_ids),
                    sel(&mask),
                );
                let topk = ro.topk.as_ref().map(|(lp, ids)| (sel(lp), sel(ids)));
                let gather = topk.as_ref().map(|(_, ids)| ids);
                let (cur, recompute) = match fused_cur.take() {
                    Some(cur) => (cur, None),
                    None if cfg.train.recompute => {
                        let (s, rc) = score_responses_recompute(
                            &self.policy,
                            &pi,
                            &pm,
                            &ri,
                            &rm,
                            temp,
                            gather,
                        );
                        (s, Some(rc))
                    }
                    None => (
                        score_responses(&self.policy, &pi, &pm, &ri, &rm, temp, gather),
                        None,
                    ),
                };
                let (old_lp, mu_lp, a) =
                    (sel(&old.logp), sel(&ro.rollout_logp), sel(&adv.advantages));
                let rl = ref_logp.as_ref().map(sel);
                let vals = self
                    .value
                    .as_ref()
                    .map(|(v, _)| v.values(&pi, &pm, &ri, &rm));
                let (ov, ret) = (old_values.as_ref().map(sel), adv.returns.as_ref().map(sel));
                let mut batch = PolicyBatch::new(&cur.logp, &old_lp, &mu_lp, &a, &rm);
                if let Some(rl) = &rl {
                    batch = batch.with_ref(rl);
                }
                if let (Some((tl, _)), Some(g)) = (&topk, &cur.gathered) {
                    batch = batch.with_topk(tl, g);
                }
                if let (Some(v), Some(o), Some(rt)) = (&vals, &ov, &ret) {
                    batch = batch.with_values(v, o, rt);
                }
                let (loss, m) = self.algo.loss(&batch);
                let loss = match (moe_coef, &cur.aux_loss) {
                    (Some(c), Some(aux)) => {
                        *sums.entry("actor/aux_loss".into()).or_default() += aux.double_value(&[]);
                        loss + aux * c
                    }
                    _ => loss,
                };
                let loss = if cfg.train.fault_nan_at_step == Some(step) {
                    loss * f64::NAN
                } else {
                    loss
                };
                self.opt.zero_grad();
                if let Some((_, vo)) = &mut self.value {
                    vo.zero_grad();
                }
                loss.backward();
                if let Some(rc) = recompute {
                    rc.backward();
                }
                let loss_v = loss.double_value(&[]);
                let gn = clip_grad_norm(&self.params, cfg.optim.grad_clip);
                let entropy = masked_mean(&old.entropy, &mask);
                if let Some(reason) = self.guard.check(loss_v, gn, entropy) {
                    metrics.insert("actor/grad_norm".into(), gn);
                    metrics.insert("actor/loss".into(), loss_v);
                    return Ok((metrics, Some(reason)));
                }
                grad_norms.push(gn);
                self.opt.step(lr);
                if let Some((vm, vo)) = &mut self.value {
                    clip_grad_norm(&vm.parameters(), cfg.optim.grad_clip);
                    vo.step(lr);
                }
                for (k, v) in m {
                    *sums.entry(k).or_default() += v;
                }
                *sums.entry("actor/loss".into()).or_default() += loss_v;
                count += 1.0;
            }
        }
        for (k, v) in sums {
            metrics.insert(k, v / count);
        }
        let t_update = t1.elapsed().as_secs_f64();
        metrics.extend(self.algo.end_step(&stats));
        self.engine.sync(&self.policy);

        let lens: Vec<f64> = ro.lengths.iter().map(|&l| l as f64).collect();
        let tokens: f64 = lens.iter().sum::<f64>()
            + Vec::<i64>::try_from(ro.prompt_mask.sum(Kind::Int64).reshape([1])).unwrap()[0] as f64;
        let nf = rewards.len().max(1) as f64;
        let put = |m: &mut Metrics, k: &str, v: f64| {
            m.insert(k.to_string(), v);
        };
        put(
            &mut metrics,
            "critic/score/mean",
            rewards.iter().map(|&x| x as f64).sum::<f64>() / nf,
        );
        put(
            &mut metrics,
            "critic/score/max",
            rewards.iter().fold(f64::MIN, |a, &b| a.max(b as f64)),
        );
        put(
            &mut metrics,
            "critic/score/min",
            rewards.iter().fold(f64::MAX, |a, &b| a.min(b as f64)),
        );
        put(
            &mut metrics,
            "response_length/mean",
            lens.iter().sum::<f64>() / nf,
        );
        put(
            &mut metrics,
            "response_length/clip_ratio",
            ro.finish
                .iter()
                .filter(|f| **f == crate::rollout::FinishReason::Length)
                .count() as f64
                / nf,
        );
        put(
            &mut metrics,
            "actor/entropy",
            masked_mean(&old.entropy, &mask),
        );
        put(
            &mut metrics,
            "actor/grad_norm",
            grad_norms.iter().sum::<f64>() / grad_norms.len().max(1) as f64,
        );
        put(&mut metrics, "actor/lr", lr);
        let t_total = t_step.elapsed().as_secs_f64();
        put(&mut metrics, "timing_s/gen", t_gen);
        put(&mut metrics, "timing_s/old_log_prob", t_old);
        put(&mut metrics, "timing_s/update_actor", t_update);
        put(&mut metrics, "timing_s/step", t_total);
        put(&mut metrics, "perf/total_num_tokens", tokens);
        put(&mut metrics, "perf/throughput", tokens / t_total.max(1e-9));
        Ok((metrics, None))
    }
}

/// Train one run in `dir` (created if needed): writes `metrics.jsonl` (one JSON object per step,
/// `{"step": n, "<metric>": value, …}`), `eval.jsonl` (one object per evaluation; step 0 is the
/// model before RL, after SFT), and `checkpoints/`. With an existing checkpoint in `dir`, resumes
/// from it (truncating the JSONL files to the checkpoint step) and continues bitwise identically on
/// CPU. `stop` is polled between steps; when set, the run checkpoints and returns `Running`.
pub fn run_training(
    cfg: &RunConfig,
    seed: i64,
    dir: &Path,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&StepReport),
) -> Result<RunOutcome> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let metrics_path = dir.join("metrics.jsonl");
    let eval_path = dir.join("eval.jsonl");
    let resume = checkpoint::latest(dir);
    let mut t = Trainer::new(cfg, seed, resume.is_some())?;
    let total = cfg.train.steps;
    let mut step = match &resume {
        Some((_, path)) => {
            let s = t.restore(path)?;
            truncate_jsonl(&metrics_path, s)?;
            truncate_jsonl(&eval_path, s)?;
            s
        }
        None => {
            let _ = std::fs::remove_file(&metrics_path);
            let _ = std::fs::remove_file(&eval_path);
            append_jsonl(&eval_path, &t.evaluate(0), 0)?;
            t.save(dir, 0)?;
            0
        }
    };
    let every = |n: usize, s: usize| n > 0 && s.is_multiple_of(n);
    while step < total {
        if stop.load(Ordering::SeqCst) {
            t.save(dir, step)?;
            return Ok(RunOutcome {
                state: RunState::Running,
                step,
                reason: None,
            });
        }
        let s = step + 1;
        let (metrics, diverged) = t.step(s)?;
        append_jsonl(&metrics_path, &metrics, s)?;
        on_step(&StepReport {
            step: s,
            total_steps: total,
            metrics: &metrics,
        });
        if let Some(reason) = diverged {
            return Ok(RunOutcome {
                state: RunState::Diverged,
                step: s,
                reason: Some(reason),
            });
        }
        step = s;
        if every(cfg.eval.every, s) || s == total {
            append_jsonl(&eval_path, &t.evaluate(s), s)?;
        }
        if every(cfg.checkpoint.every, s) || s == total {
            t.save(dir, s)?;
        }
    }
    Ok(RunOutcome {
        state: RunState::Done,
        step,
        reason: None,
    })
}
