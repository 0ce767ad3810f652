//! Supervised warm-start: teacher-forced cross-entropy on (prompt, answer + stop) pairs so that RL
//! starts from a policy that sometimes succeeds.
use super::optim::AdamW;
use crate::config::{OptimConfig, SftConfig};
use crate::model::Qwen3;
use crate::rollout::sampler::left_pad;
use crate::rollout::score_responses;
use crate::task::Task;
use crate::Result;
use tch::{Kind, Tensor};

/// Stream id of SFT batches (disjoint from RL steps' problem streams).
const SFT_STREAM: usize = 1 << 40;

/// Train `model` for `cfg.steps` steps on batches of `cfg.seed` (else the run's `seed`); returns
/// the final mean token NLL.
pub fn warm_start(model: &Qwen3, task: &dyn Task, cfg: &SftConfig, seed: i64) -> Result<f64> {
    let seed = cfg.seed.unwrap_or(seed);
    let ocfg = OptimConfig {
        lr: cfg.lr,
        weight_decay: 0.0,
        ..OptimConfig::default()
    };
    let mut opt = AdamW::new(model.trainable_parameters(), &ocfg);
    let device = model.device();
    let mut last = f64::NAN;
    for step in 0..cfg.steps {
        let problems = task.train_batch(seed, SFT_STREAM + step, cfg.batch_size);
        let prompts: Vec<Vec<i64>> = problems.iter().map(|p| p.prompt_ids.clone()).collect();
        let targets = problems
            .iter()
            .map(|p| task.sft_target(p))
            .collect::<Result<Vec<_>>>()?;
        let (pi, pm) = left_pad(&prompts, task.pad_token(), device);
        let r = targets.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(targets.len() * r);
        let mut mask = Vec::with_capacity(targets.len() * r);
        for t in &targets {
            ids.extend(
                t.iter()
                    .copied()
                    .chain(std::iter::repeat_n(task.pad_token(), r - t.len())),
            );
            mask.extend(
                std::iter::repeat_n(1f32, t.len()).chain(std::iter::repeat_n(0.0, r - t.len())),
            );
        }
        let shape = [targets.len() as i64, r as i64];
        let ri = Tensor::from_slice(&ids).view(shape).to_device(device);
        let rm = Tensor::from_slice(&mask).view(shape).to_device(device);
        let scored = score_responses(model, &pi, &pm, &ri, &rm, 1.0, None);
        let loss = -(scored.logp * &rm).sum(Kind::Float) / rm.sum(Kind::Float);
        opt.zero_grad();
        loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step(cfg.lr);
        last = loss.double_value(&[]);
    }
    opt.zero_grad();
    Ok(last)
}
