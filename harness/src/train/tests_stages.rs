//! Each stage of a step on its own (tiny Qwen3 after a short SFT, CPU): collect, score, update
//! (and its per-mini-batch forward/backward), report.
use super::batch::Batch;
use super::step::{rewards, row, Collected, Timings, Update, Updated};
use super::tests::fast_config;
use super::trainer::{step_seed, Trainer};
use crate::config::RunConfig;
use crate::rollout::{FinishReason, Scored};
use std::time::Instant;
use tch::{Kind, Tensor};

fn trainer(cfg: &RunConfig) -> Trainer<'_> {
    tch::set_num_threads(1);
    Trainer::new(cfg, 7, false).unwrap()
}

/// Step 1's rollouts (libtorch's RNG seeded as the loop seeds it).
fn collect(t: &Trainer) -> Collected {
    tch::manual_seed(step_seed(7, 1, 1));
    t.collect(1).unwrap()
}

/// Step 1's update input: scored, with the algorithm's advantages.
fn update_input(t: &mut Trainer, c: &Collected) -> (Batch, Option<Scored>) {
    let scores = t.score(c);
    let adv = t.algo.advantages(&scores.advantage_input(c, 4));
    scores.into_batch(c, adv)
}

fn grads(t: &Trainer) -> Vec<Tensor> {
    t.actor
        .model
        .trainable_parameters()
        .iter()
        .map(|p| p.grad().copy())
        .collect()
}

#[test]
fn collect_samples_every_row_and_scores_it_with_the_task() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: grpo }", 1);
    let t = trainer(&cfg);
    let c = collect(&t);
    let n = (cfg.rollout.prompts_per_step * cfg.rollout.group_size) as i64;
    assert_eq!(c.rollouts.response_ids.size(), [n, 4]);
    assert_eq!(c.rewards.len(), n as usize);
    // Rewards are the task's, row i answering problem i / group_size.
    let problems = t.task.train_batch(7, 1, cfg.rollout.prompts_per_step);
    let rows = Vec::<Vec<i64>>::try_from(c.rollouts.response_ids.shallow_clone()).unwrap();
    for (i, ids) in rows.iter().enumerate() {
        let want = t.task.reward(&problems[i / 4], &t.task.decode(ids)) as f32;
        assert_eq!(c.rewards[i], want, "row {i}");
    }
    assert!(
        c.rewards.iter().any(|&r| r > 0.0),
        "after SFT some answers are right"
    );
    assert_eq!(
        Vec::<f32>::try_from(c.rewards_t.shallow_clone()).unwrap(),
        c.rewards,
        "the tensor is the list"
    );
    // Same seed, same rollouts.
    let again = collect(&t);
    assert!(again.rollouts.response_ids.equal(&c.rollouts.response_ids));
    assert_eq!(
        rewards(t.task.as_ref(), &problems, &c.rollouts.response_ids, 4),
        c.rewards.iter().map(|&r| r as f64).collect::<Vec<_>>()
    );
}

#[test]
fn score_fused_equals_plain_and_builds_what_the_algorithm_asks_for() {
    let _rng = crate::rng_lock();
    // PPO with a KL penalty in the reward: a critic and a reference.
    let cfg = fast_config("{ name: ppo, kl_in_reward: { coef: 0.1 } }", 1)
        .edit(|c| {
            c.train.mini_batches = 1;
        })
        .unwrap();
    let fused = trainer(&cfg);
    assert!(fused.fused_old_logp() && fused.critic.is_some() && fused.reference.is_some());
    let c = collect(&fused);
    let a = fused.score(&c);
    let cfg = cfg
        .edit(|c| {
            c.train.mini_batches = 2;
        })
        .unwrap();
    let plain = trainer(&cfg);
    assert!(!plain.fused_old_logp());
    let b = plain.score(&c);
    assert!(a.fused.is_some() && b.fused.is_none());
    // π_old from the update's forward is the plain no-grad scoring, bit for bit.
    assert!(a.old.logp.equal(&b.old.logp));
    assert!(!a.old.logp.requires_grad());
    // Right after building, π_ref is the policy and the critic's zero head gives V = 0.
    assert!(a.ref_logp.as_ref().unwrap().equal(&a.old.logp));
    let v = a.old_values.as_ref().unwrap();
    assert_eq!(v.size(), c.rollouts.response_ids.size());
    assert_eq!(v.abs().sum(Kind::Double).double_value(&[]), 0.0);
    // The diagnostics compare π_old with the engine's μ (same fp32 weights here).
    let d = a.discrepancy(&c);
    assert!(d["rollout_corr/abs_prob_diff"] < 1e-5, "{d:?}");

    // Without them the trainer builds neither.
    let grpo = fast_config("{ name: grpo }", 1);
    let t = trainer(&grpo);
    assert!(t.critic.is_none() && t.reference.is_none());
    let s = t.score(&c);
    assert!(s.ref_logp.is_none() && s.old_values.is_none());
}

#[test]
fn update_takes_one_adamw_step_per_mini_batch_per_epoch() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: ppo }", 1)
        .edit(|c| {
            c.train.ppo_epochs = 3;
        })
        .unwrap();
    let mut t = trainer(&cfg);
    let c = collect(&t);
    let (batch, fused) = update_input(&mut t, &c);
    let before = t.actor.updates();
    let u = match t.update(1, &batch, fused, 1.0, 1e-3) {
        Updated::Done(u) => u,
        Updated::Diverged { reason, .. } => panic!("{reason}"),
    };
    assert_eq!(t.actor.updates() - before, 3 * 2);
    assert!(u.grad_norm > 0.0);
    for k in ["actor/loss", "actor/pg_loss", "critic/vf_loss"] {
        assert!(
            u.means.get(k).is_some_and(|v| v.is_finite()),
            "{k}: {u:?}",
            u = u.means
        );
    }
    // Later epochs see a moved policy: the ratio to π_old is no longer 1.
    assert!(u.means["actor/ppo_kl"] != 0.0, "{:?}", u.means);
}

#[test]
fn forward_backward_accumulates_gradients_of_the_selected_rows() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: grpo }", 1);
    let mut t = trainer(&cfg);
    let c = collect(&t);
    let (batch, _) = update_input(&mut t, &c);
    let rows = batch.select(Some(&Tensor::from_slice(&[0i64, 5, 9, 12, 13, 30])));
    assert_eq!(rows.rows.len(), 6);
    t.actor.zero_grad();
    let once = t.forward_backward(&rows, None, false);
    let g1 = grads(&t);
    assert!(once.loss.is_finite());
    assert!(g1.iter().any(|g| g.abs().max().double_value(&[]) > 0.0));
    // A second call adds the same gradient: no zeroing inside (the micro-batching seam).
    let twice = t.forward_backward(&rows, None, false);
    assert_eq!(once.loss, twice.loss);
    for (a, b) in g1.iter().zip(grads(&t)) {
        assert!((a * 2.0).equal(&b));
    }
    // The fused forward (whole batch, in order) gives the plain forward's gradient.
    t.actor.zero_grad();
    let all = batch.select(None);
    t.forward_backward(&all, None, false);
    let plain = grads(&t);
    t.actor.zero_grad();
    let gather = batch.rollout_topk.as_ref().map(|(_, ids)| ids);
    let cur = all
        .rows
        .score(&t.actor.model, cfg.rollout.temperature, gather);
    t.forward_backward(&all, Some(cur), false);
    for (a, b) in plain.iter().zip(grads(&t)) {
        assert!(a.equal(&b));
    }
}

#[test]
fn report_row_summarises_rewards_lengths_and_the_update() {
    let _rng = crate::rng_lock();
    let cfg = fast_config("{ name: grpo }", 1);
    let t = trainer(&cfg);
    let c = collect(&t);
    let update = Update {
        means: Default::default(),
        grad_norm: 1.5,
        seconds: 0.25,
    };
    let timings = Timings {
        start: Instant::now(),
        old_log_prob: 0.5,
    };
    let m = row(&c, 0.75, &update, 1e-3, &timings);
    let n = c.rewards.len() as f64;
    let mean = c.rewards.iter().map(|&r| r as f64).sum::<f64>() / n;
    assert_eq!(m["critic/score/mean"], mean);
    let max = c.rewards.iter().cloned().fold(f32::MIN, f32::max) as f64;
    assert_eq!(m["critic/score/max"], max);
    let lens = &c.rollouts.lengths;
    assert_eq!(
        m["response_length/mean"],
        lens.iter().sum::<usize>() as f64 / n
    );
    let cut = c
        .rollouts
        .finish
        .iter()
        .filter(|f| **f == FinishReason::Length);
    assert_eq!(m["response_length/clip_ratio"], cut.count() as f64 / n);
    assert_eq!(
        (m["actor/entropy"], m["actor/grad_norm"], m["actor/lr"]),
        (0.75, 1.5, 1e-3)
    );
    assert_eq!(
        (m["timing_s/old_log_prob"], m["timing_s/update_actor"]),
        (0.5, 0.25)
    );
    let prompt_tokens = c.rollouts.prompt_mask.sum(Kind::Int64).int64_value(&[]);
    let tokens = (lens.iter().sum::<usize>() as i64 + prompt_tokens) as f64;
    assert_eq!(m["perf/total_num_tokens"], tokens);
}
