//! The trainer of one run: the task, the actor, the inference engine, the algorithm, and the
//! components the algorithm asks for (a critic, a reference policy). Its step is in `step/`;
//! here: building it, sampling settings, its checkpoint state, and evaluation.
use super::actor::Actor;
use super::checkpoint::{find, EngineState, NamedTensors, TrainerState, ENGINE_FILE, STATE_FILE};
use super::critic::Critic;
use super::guard::Guard;
use super::reference::Reference;
use super::step::{repeat_prompts, rewards};
use super::{sft, sft_cache};
use crate::config::{EvalEngine, RunConfig};
use crate::objective::{build_algorithm, Algorithm, Metrics};
use crate::rollout::discrepancy::precision_kind;
use crate::rollout::{Engine, SamplingParams};
use crate::task::eval::{self, avg_and_pass_at_k};
use crate::task::{build_task, Rng, Task};
use crate::{Error, Result};
use std::path::Path;
use tch::{Device, Tensor};

/// Random stream `stream` of step `step`: 1 seeds libtorch's global RNG for the step, 2 for the
/// evaluation after it, 3 orders the step's mini-batches.
pub(super) fn step_stream(step: usize, stream: u64) -> u64 {
    (step as u64) << 8 | stream
}

/// Seed of libtorch's global RNG from a step's stream.
pub(super) fn step_seed(seed: i64, step: usize, stream: u64) -> i64 {
    (Rng::new(seed, step_stream(step, stream)).next_u64() >> 1) as i64
}

pub(super) struct Trainer<'a> {
    pub cfg: &'a RunConfig,
    pub seed: i64,
    pub device: Device,
    pub task: Box<dyn Task>,
    pub actor: Actor,
    pub engine: Engine,
    pub algo: Box<dyn Algorithm>,
    /// Built when `algo.needs_value_model()`.
    pub critic: Option<Critic>,
    /// Built when `algo.needs_ref_policy()`.
    pub reference: Option<Reference>,
    pub guard: Guard,
}

impl<'a> Trainer<'a> {
    /// The run's trainer before its first step: policy (after SFT unless `resuming`, whose state
    /// comes from a checkpoint), the engine synced to it, and what the algorithm needs.
    pub fn new(cfg: &'a RunConfig, seed: i64, resuming: bool) -> Result<Self> {
        Self::with_sft_cache(cfg, seed, resuming, None)
    }

    /// [`Trainer::new`], taking the SFT warm-start from (or storing it in) the cache directory
    /// `sft_cache` when the run's warm-start can be cached (see `sft_cache`).
    pub fn with_sft_cache(
        cfg: &'a RunConfig,
        seed: i64,
        resuming: bool,
        sft_cache: Option<&Path>,
    ) -> Result<Self> {
        let device = crate::runtime::default_device();
        let task = build_task(&cfg.task, &cfg.model.name)?;
        let policy = super::policy::build_policy(cfg, seed, device)?;
        if let (false, Some(s)) = (resuming, &cfg.task.sft) {
            match sft_cache.and_then(|d| sft_cache::entry(d, cfg, seed, device)) {
                Some(file) => sft_cache::warm_start(&policy, task.as_ref(), cfg, seed, &file)?,
                None => sft::warm_start(&policy, task.as_ref(), s, seed).map(|_| ())?,
            }
        }
        let algo = build_algorithm(&cfg.algorithm);
        let kind = precision_kind(cfg.train.precision);
        let reference = algo
            .needs_ref_policy()
            .then(|| Reference::new(&policy, kind, device))
            .transpose()?;
        let critic = algo
            .needs_value_model()
            .then(|| Critic::new(&policy, &cfg.optim))
            .transpose()?;
        let actor = Actor::new(policy, &cfg.optim);
        let engine = Engine::new(&actor.model, &cfg.rollout.engine, device)?;
        Ok(Trainer {
            cfg,
            seed,
            device,
            task,
            actor,
            engine,
            algo,
            critic,
            reference,
            guard: Guard {
                max_grad_norm: cfg.train.max_grad_norm,
                min_entropy: cfg.train.min_entropy,
            },
        })
    }

    /// What to sample at `temperature`. The engine's own knobs (logit noise, the top-K log-probs
    /// it reports) come from `rollout.engine` and are applied by [`Engine::generate`].
    pub fn sampling(&self, temperature: f64) -> SamplingParams {
        let r = &self.cfg.rollout;
        SamplingParams {
            max_new_tokens: r.max_new_tokens,
            temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            stop_tokens: self.task.stop_tokens(),
            pad_token: self.task.pad_token(),
            max_num_seqs: r.max_num_seqs,
            ..SamplingParams::default()
        }
    }

    // ---- checkpoints ----

    /// LoRA without staleness: the engine holds exactly the merged adapters, so checkpoints skip
    /// its full weights and resume re-syncs it.
    fn engine_rebuildable(&self) -> bool {
        self.actor.model.has_lora() && self.cfg.rollout.engine.staleness == 0
    }

    /// The checkpoint of this trainer after step `step`.
    pub fn state(&self, step: usize) -> TrainerState {
        let names = |named: Vec<(String, Tensor)>| -> Vec<String> {
            named.into_iter().map(|(n, _)| n).collect()
        };
        let (weight_names, pending_names) = (
            names(self.engine.named_weights()),
            names(self.engine.named_pending_like()),
        );
        let with = |names: &[String], ts: Vec<Tensor>| -> NamedTensors {
            names.iter().cloned().zip(ts).collect()
        };
        let (policy, optim) = self.actor.state();
        TrainerState {
            step,
            seed: self.seed,
            policy,
            optim,
            engine: EngineState {
                weights: (!self.engine_rebuildable())
                    .then(|| with(&weight_names, self.engine.weights())),
                pending: self
                    .engine
                    .pending()
                    .iter()
                    .map(|snap| {
                        with(
                            &pending_names,
                            snap.iter().map(Tensor::shallow_clone).collect(),
                        )
                    })
                    .collect(),
            },
            critic: self.critic.as_ref().map(Critic::state),
            reference: self.reference.as_ref().map(Reference::state),
            algorithm: self.algo.state(),
        }
    }

    /// Restore a checkpoint read from `dir`; errors name the file and the tensor.
    pub fn load_state(&mut self, s: &TrainerState, dir: &Path) -> Result<()> {
        self.actor.load_state(&s.policy, &s.optim, dir)?;
        let engine_file = dir.join(ENGINE_FILE);
        let in_order = |shapes: &[(String, Tensor)], named: &NamedTensors| -> Result<Vec<Tensor>> {
            let mut out = vec![];
            for (name, want) in shapes {
                let t = find(named, name, want, &engine_file)?;
                out.push(t.to_device(self.device));
            }
            Ok(out)
        };
        let (weight_shapes, pending_shapes) = (
            self.engine.named_weights(),
            self.engine.named_pending_like(),
        );
        let weights = match (&s.engine.weights, self.engine_rebuildable()) {
            (_, true) => None,
            (Some(w), false) => Some(in_order(&weight_shapes, w)?),
            (None, false) => return Err(missing(&engine_file, "the engine's weights")),
        };
        let pending = s
            .engine
            .pending
            .iter()
            .map(|p| in_order(&pending_shapes, p))
            .collect::<Result<_>>()?;
        match weights {
            Some(w) => self.engine.set_weights(&w),
            None => self.engine.sync(&self.actor.model),
        }
        self.engine.set_pending(pending);
        match (&mut self.critic, &s.critic) {
            (Some(c), Some(cs)) => c.load_state(cs, dir)?,
            (None, None) => {}
            (Some(_), None) => return Err(missing(dir, "the critic")),
            (None, Some(_)) => return Err(unexpected(dir, "a critic")),
        }
        match (&self.reference, &s.reference) {
            (Some(r), Some(rs)) => r.load_state(rs, dir)?,
            (None, None) => {}
            (Some(_), None) => return Err(missing(dir, "the reference policy")),
            (None, Some(_)) => return Err(unexpected(dir, "a reference policy")),
        }
        self.algo
            .load_state(&s.algorithm)
            .map_err(|e| Error::Checkpoint {
                path: dir.join(STATE_FILE),
                msg: format!("algorithm state: {e}"),
            })
    }

    // ---- evaluation ----

    /// avg@k / pass@k on each held-out set, sampled by the inference engine (as deployed) or,
    /// with `eval.engine: trainer`, by the trainer's own weights, with the evaluation protocol's
    /// k per set and sampling ([`crate::task::eval`]), whole problems per engine call, up to
    /// `eval.batch_size` sequences (at least one problem).
    pub fn evaluate(&self, step: usize) -> Metrics {
        tch::manual_seed(step_seed(self.seed, step, 2));
        let e = &self.cfg.eval;
        let sampling = SamplingParams {
            max_new_tokens: eval::max_new_tokens(self.cfg),
            top_p: e.top_p,
            top_k: e.top_k,
            ..self.sampling(e.temperature)
        };
        let mut out = Metrics::new();
        for (name, problems) in self.task.eval_sets(e.prompts) {
            if problems.is_empty() {
                continue;
            }
            let k = eval::k_for(e, &name);
            let mut r = Vec::with_capacity(problems.len() * k);
            for chunk in problems.chunks(eval::sequences_per_call(self.cfg, k) / k) {
                let prompts = repeat_prompts(chunk, k);
                let ro = match e.engine {
                    EvalEngine::Inference => self.engine.generate(&prompts, &sampling),
                    EvalEngine::Trainer => {
                        crate::rollout::generate(&self.actor.model, &prompts, &sampling)
                    }
                };
                r.extend(rewards(self.task.as_ref(), chunk, &ro.response_ids, k));
            }
            let correct: Vec<Vec<bool>> = r
                .chunks(k)
                .map(|c| c.iter().map(|&x| x > 0.5).collect())
                .collect();
            let (avg, pass) = avg_and_pass_at_k(&correct);
            out.insert(format!("eval/{name}/avg@{k}"), avg);
            out.insert(format!("eval/{name}/pass@{k}"), pass);
        }
        out
    }
}

fn missing(path: &Path, what: &str) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("has no {what}, which this run needs"),
    }
}

fn unexpected(path: &Path, what: &str) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("holds {what}, which this run's algorithm does not use"),
    }
}
