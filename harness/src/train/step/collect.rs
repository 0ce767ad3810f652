//! Stage 1, collect: the engine samples `prompts_per_step × group_size` responses (or a real
//! engine's are read from `rollout.engine.external`, or an inference server samples them:
//! `rollout.engine.server`) and the task scores them by problem.
use super::super::trainer::{step_seed, Trainer};
use crate::rollout::external::read_external;
use crate::rollout::server::Client;
use crate::rollout::Rollouts;
use crate::task::{Problem, Task};
use crate::Result;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

/// What the engine produced this step, and the rewards.
pub struct Collected {
    pub rollouts: Rollouts,
    /// One per row (0 for external rollouts, which carry no problem to score against).
    pub rewards: Vec<f32>,
    /// The same, as a tensor `[N]` on the trainer's device.
    pub rewards_t: Tensor,
    /// Seconds spent sampling.
    pub gen_s: f64,
}

/// Each problem's prompt `k` times in a row (a GRPO group).
pub fn repeat_prompts(problems: &[Problem], k: usize) -> Vec<Vec<i64>> {
    problems
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.prompt_ids.clone(), k))
        .collect()
}

/// The task's reward of each response row `[N, R]`, row `i` answering problem `i / k`.
pub fn rewards(task: &dyn Task, problems: &[Problem], response_ids: &Tensor, k: usize) -> Vec<f64> {
    let (n, _) = response_ids.size2().unwrap();
    (0..n)
        .map(|i| {
            let ids = Vec::<i64>::try_from(response_ids.get(i).to_device(Device::Cpu)).unwrap();
            match problems.get(i as usize / k) {
                Some(p) => task.reward(p, &task.decode(&ids)),
                None => 0.0,
            }
        })
        .collect()
}

impl Trainer<'_> {
    /// The server engine's rollouts of step `step`: first the trainer's current weights go to the
    /// server (so it samples with the weights after the last update, after SFT and after a
    /// resume alike), then the step's problems go out as token ids.
    fn collect_from_server(&self, step: usize) -> Result<(Rollouts, Vec<Problem>)> {
        let r = &self.cfg.rollout;
        let client = Client::new(r.engine.server.as_ref().expect("server engine"));
        client.push_weights(&self.actor.model)?;
        let problems = self.task.train_batch(self.seed, step, r.prompts_per_step);
        let prompts: Vec<Vec<i64>> = problems.iter().map(|p| p.prompt_ids.clone()).collect();
        let ro = client.rollouts(
            &prompts,
            r.group_size,
            &self.sampling(r.temperature),
            step_seed(self.seed, step, 1) as u64,
            self.actor.model.cfg.vocab_size,
            self.device,
        )?;
        Ok((ro, problems))
    }

    /// Stage 1 of step `step` (libtorch's RNG already seeded for it).
    pub fn collect(&self, step: usize) -> Result<Collected> {
        let t = Instant::now();
        let r = &self.cfg.rollout;
        let (rollouts, problems) = match &r.engine.external {
            Some(path) => {
                let ro = read_external(
                    Path::new(path),
                    self.actor.model.cfg.vocab_size,
                    self.task.pad_token(),
                    r.max_new_tokens,
                    self.device,
                )?;
                (ro, vec![])
            }
            None if r.engine.server.is_some() => self.collect_from_server(step)?,
            None => {
                let problems = self.task.train_batch(self.seed, step, r.prompts_per_step);
                let prompts = repeat_prompts(&problems, r.group_size);
                let ro = self
                    .engine
                    .generate(&prompts, &self.sampling(r.temperature));
                (ro, problems)
            }
        };
        let gen_s = t.elapsed().as_secs_f64();
        let rewards: Vec<f32> = rewards(
            self.task.as_ref(),
            &problems,
            &rollouts.response_ids,
            r.group_size,
        )
        .into_iter()
        .map(|x| x as f32)
        .collect();
        let rewards_t = Tensor::from_slice(&rewards).to_device(self.device);
        Ok(Collected {
            rollouts,
            rewards,
            rewards_t,
            gen_s,
        })
    }
}
