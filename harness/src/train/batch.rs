//! The step's batch as the stages hand it over: token rows, and per row what scoring and advantage
//! estimation add. A mini-batch is the same type with some rows selected, so the update's
//! per-mini-batch forward/backward takes any subset of rows.
use crate::model::recompute::Recompute;
use crate::model::Qwen3;
use crate::rollout::{score_responses, score_responses_recompute, Rollouts, Scored};
use tch::Tensor;

/// `t`'s rows at `idx`, or all of them (a shallow clone) when `idx` is `None`.
fn rows_of(t: &Tensor, idx: Option<&Tensor>) -> Tensor {
    match idx {
        Some(i) => t.index_select(0, i),
        None => t.shallow_clone(),
    }
}

/// Token rows: left-padded prompts `[N, P]` and their 0/1 mask, responses `[N, R]` and their float
/// mask (1 on generated tokens).
pub struct Rows {
    pub prompt_ids: Tensor,
    pub prompt_mask: Tensor,
    pub response_ids: Tensor,
    pub mask: Tensor,
}

impl Rows {
    pub fn of(ro: &Rollouts) -> Self {
        Rows {
            prompt_ids: ro.prompt_ids.shallow_clone(),
            prompt_mask: ro.prompt_mask.shallow_clone(),
            response_ids: ro.response_ids.shallow_clone(),
            mask: ro.response_mask.shallow_clone(),
        }
    }

    pub fn len(&self) -> i64 {
        self.response_ids.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `model`'s log-probs (and entropy, experts) of the responses; with the graph unless the
    /// caller disables it. `gather` adds log-probs at those token ids `[N, R, K]`.
    pub fn score(&self, model: &Qwen3, temperature: f64, gather: Option<&Tensor>) -> Scored {
        score_responses(
            model,
            &self.prompt_ids,
            &self.prompt_mask,
            &self.response_ids,
            &self.mask,
            temperature,
            gather,
        )
    }

    /// [`Rows::score`] with per-layer activation recompute (`train.recompute`).
    pub fn score_recompute<'m>(
        &self,
        model: &'m Qwen3,
        temperature: f64,
        gather: Option<&Tensor>,
    ) -> (Scored, Recompute<'m>) {
        score_responses_recompute(
            model,
            &self.prompt_ids,
            &self.prompt_mask,
            &self.response_ids,
            &self.mask,
            temperature,
            gather,
        )
    }

    pub fn select(&self, idx: Option<&Tensor>) -> Self {
        Rows {
            prompt_ids: rows_of(&self.prompt_ids, idx),
            prompt_mask: rows_of(&self.prompt_mask, idx),
            response_ids: rows_of(&self.response_ids, idx),
            mask: rows_of(&self.mask, idx),
        }
    }
}

/// Everything the update reads per row (all `[N, R]` unless noted; none carries a graph).
pub struct Batch {
    pub rows: Rows,
    /// log μ: the engine's log-probs of the sampled tokens.
    pub rollout_logp: Tensor,
    /// The engine's top-K log-probs and their token ids `[N, R, K]`, when it reports them.
    pub rollout_topk: Option<(Tensor, Tensor)>,
    /// log π_old: the trainer's recomputation.
    pub old_logp: Tensor,
    pub advantages: Tensor,
    /// Value targets (algorithms with a critic).
    pub returns: Option<Tensor>,
    /// log π_ref (algorithms with a KL penalty).
    pub ref_logp: Option<Tensor>,
    /// The critic's values at rollout time.
    pub old_values: Option<Tensor>,
}

impl Batch {
    pub fn select(&self, idx: Option<&Tensor>) -> Self {
        let opt = |t: &Option<Tensor>| t.as_ref().map(|t| rows_of(t, idx));
        Batch {
            rows: self.rows.select(idx),
            rollout_logp: rows_of(&self.rollout_logp, idx),
            rollout_topk: self
                .rollout_topk
                .as_ref()
                .map(|(lp, ids)| (rows_of(lp, idx), rows_of(ids, idx))),
            old_logp: rows_of(&self.old_logp, idx),
            advantages: rows_of(&self.advantages, idx),
            returns: opt(&self.returns),
            ref_logp: opt(&self.ref_logp),
            old_values: opt(&self.old_values),
        }
    }
}
