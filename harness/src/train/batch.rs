//! The step's batch as the stages hand it over: token rows, and per row what scoring and advantage
//! estimation add. A mini-batch is the same type with some rows selected, so the update's
//! per-mini-batch forward/backward takes any subset of rows, and a micro-batch
//! ([`Batch::micro_batches`]) is a run of a mini-batch's rows trimmed to their own padding.
use crate::model::recompute::Recompute;
use crate::model::Qwen3;
use crate::rollout::{score_responses, score_responses_recompute, Rollouts, Scored};
use std::ops::Range;
use tch::{Kind, Tensor};

/// `t`'s rows at `idx`, or all of them (a shallow clone) when `idx` is `None`.
fn rows_of(t: &Tensor, idx: Option<&Tensor>) -> Tensor {
    match idx {
        Some(i) => t.index_select(0, i),
        None => t.shallow_clone(),
    }
}

/// `t`'s first `cols` columns (dim 1), contiguous.
fn trim_right(t: &Tensor, cols: i64) -> Tensor {
    t.narrow(1, 0, cols).contiguous()
}

/// Consecutive runs of rows, each of at most `budget` tokens counted as rows × the run's padded
/// length (the longest prompt extent plus the longest response extent in it, each at least 1);
/// a row longer than `budget` on its own is a run of one. Greedy: a run grows while it fits.
pub fn plan_micro_batches(extents: &[(usize, usize)], budget: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut p, mut r) = (0, 1, 1);
    for (i, &(pi, ri)) in extents.iter().enumerate() {
        let (np, nr) = (p.max(pi), r.max(ri));
        if i > start && (i + 1 - start) * (np + nr) > budget {
            runs.push(start..i);
            (start, p, r) = (i, pi.max(1), ri.max(1));
        } else {
            (p, r) = (np, nr);
        }
    }
    if start < extents.len() {
        runs.push(start..extents.len());
    }
    runs
}

/// One run of rows and the columns its forward needs (see [`Rows::runs`]).
struct Run {
    range: Range<usize>,
    prompt: i64,
    response: i64,
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

    /// Real tokens (prompt and response) of the rows.
    pub fn real_tokens(&self) -> f64 {
        let prompt = self.prompt_mask.sum(Kind::Double).double_value(&[]);
        prompt + self.mask.sum(Kind::Double).double_value(&[])
    }

    /// Per row: `(prompt extent, response extent)`, the columns a forward needs — from the first
    /// real prompt token (prompts are left-padded) to the last response token inside the mask.
    pub fn extents(&self) -> Vec<(usize, usize)> {
        let p = self.prompt_mask.size()[1];
        let r = self.mask.size()[1];
        let real = self.prompt_mask.gt(0).to_kind(Kind::Int64);
        // argmax gives the first real prompt column; rows without one have no extent.
        let prompt = (-real.argmax(1, false) + p) * real.amax(1, false);
        let cols = Tensor::arange_start(1, r + 1, (Kind::Int64, self.mask.device()));
        let response = (cols.unsqueeze(0) * self.mask.gt(0.0).to_kind(Kind::Int64)).amax(1, false);
        let host = |t: Tensor| Vec::<i64>::try_from(t.to_device(tch::Device::Cpu)).unwrap();
        let pairs = host(prompt).into_iter().zip(host(response));
        pairs.map(|(a, b)| (a as usize, b as usize)).collect()
    }

    /// Rows `range`, keeping the last `prompt` prompt columns and the first `response` response
    /// columns (contiguous copies).
    fn trimmed(&self, range: &Range<usize>, prompt: i64, response: i64) -> Self {
        let p = self.prompt_ids.size()[1];
        let rows = |t: &Tensor| t.narrow(0, range.start as i64, range.len() as i64);
        let left = |t: &Tensor| rows(t).narrow(1, p - prompt, prompt).contiguous();
        let right = |t: &Tensor| trim_right(&rows(t), response);
        Rows {
            prompt_ids: left(&self.prompt_ids),
            prompt_mask: left(&self.prompt_mask),
            response_ids: right(&self.response_ids),
            mask: right(&self.mask),
        }
    }

    /// Runs of rows of at most `budget` tokens ([`plan_micro_batches`] over [`Rows::extents`]),
    /// each with the prompt and response columns it needs.
    fn runs(&self, budget: usize) -> Vec<Run> {
        let extents = self.extents();
        plan_micro_batches(&extents, budget)
            .into_iter()
            .map(|range| {
                let ext = &extents[range.clone()];
                let prompt = ext.iter().map(|e| e.0).max().unwrap_or(0).max(1) as i64;
                let response = ext.iter().map(|e| e.1).max().unwrap_or(0).max(1) as i64;
                Run {
                    range,
                    prompt,
                    response,
                }
            })
            .collect()
    }

    /// These rows in consecutive parts of at most `budget` tokens, each trimmed to its own padded
    /// length (forwards without a graph in bounded memory; reassemble with [`stack_parts`]).
    pub fn parts(&self, budget: usize) -> Vec<Rows> {
        let runs = self.runs(budget);
        runs.iter()
            .map(|r| self.trimmed(&r.range, r.prompt, r.response))
            .collect()
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

    /// This batch's rows as micro-batches of at most `budget` tokens ([`plan_micro_batches`]), in
    /// order, each trimmed to its own padded length. The aggregation's denominators are the whole
    /// batch's (take them before splitting), so the trimming changes no loss.
    pub fn micro_batches(&self, budget: usize) -> Vec<Batch> {
        self.rows
            .runs(budget)
            .into_iter()
            .map(
                |Run {
                     range,
                     prompt,
                     response,
                 }| {
                    let rows = |t: &Tensor| {
                        let part = t.narrow(0, range.start as i64, range.len() as i64);
                        trim_right(&part, response)
                    };
                    let opt = |t: &Option<Tensor>| t.as_ref().map(rows);
                    Batch {
                        rows: self.rows.trimmed(&range, prompt, response),
                        rollout_logp: rows(&self.rollout_logp),
                        rollout_topk: self
                            .rollout_topk
                            .as_ref()
                            .map(|(lp, ids)| (rows(lp), rows(ids))),
                        old_logp: rows(&self.old_logp),
                        advantages: rows(&self.advantages),
                        returns: opt(&self.returns),
                        ref_logp: opt(&self.ref_logp),
                        old_values: opt(&self.old_values),
                    }
                },
            )
            .collect()
    }
}

/// Per-row results `[n_i, r_i, ...]` of consecutive parts of the rows, right-padded with zeros to
/// `cols` columns and stacked into `[N, cols, ...]`: a forward in parts reassembled.
pub fn stack_parts(parts: &[Tensor], cols: i64) -> Tensor {
    let padded: Vec<Tensor> = parts
        .iter()
        .map(|t| {
            // constant_pad_nd lists (before, after) from the last dim back to dim 1.
            let mut pad = vec![0i64; 2 * (t.dim() - 2)];
            pad.extend([0, cols - t.size()[1]]);
            t.constant_pad_nd(pad.as_slice())
        })
        .collect();
    Tensor::cat(&padded, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_fills_runs_up_to_the_budget() {
        // Padded length of a run = longest prompt + longest response in it.
        let ext = [(2, 3), (2, 1), (1, 4), (3, 4), (2, 2)];
        // Rows 0-1: 2×5 = 10; 0-2: 3×6 = 18 > 12; 2-3: 2×7 = 14 > 12; 3-4: 2×7 > 12.
        assert_eq!(plan_micro_batches(&ext, 12), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(plan_micro_batches(&ext, 14), vec![0..2, 2..4, 4..5]);
        // One run when everything fits; one row per run at the smallest budget.
        assert_eq!(plan_micro_batches(&ext, 1000), vec![0..5]);
        assert_eq!(
            plan_micro_batches(&ext, 1),
            vec![0..1, 1..2, 2..3, 3..4, 4..5]
        );
        // A row longer than the budget is a run of its own; its neighbours still pack.
        let ext = [(1, 1), (1, 1), (5, 5), (1, 1), (1, 1)];
        assert_eq!(plan_micro_batches(&ext, 4), vec![0..2, 2..3, 3..5]);
        // Empty rows count as length 1 + 1.
        assert_eq!(plan_micro_batches(&[(0, 0); 3], 4), vec![0..2, 2..3]);
        assert!(plan_micro_batches(&[], 4).is_empty());
    }

    #[test]
    fn every_run_fits_unless_it_is_one_row() {
        let mut rng = crate::task::Rng::new(3, 0);
        for _ in 0..200 {
            let n = 1 + rng.below(12) as usize;
            let ext: Vec<(usize, usize)> = (0..n)
                .map(|_| (rng.below(6) as usize, rng.below(9) as usize))
                .collect();
            let budget = 1 + rng.below(40) as usize;
            let runs = plan_micro_batches(&ext, budget);
            let flat: Vec<usize> = runs.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..n).collect::<Vec<_>>(), "rows in order, each once");
            for run in &runs {
                let e = &ext[run.clone()];
                let p = e.iter().map(|x| x.0).max().unwrap().max(1);
                let r = e.iter().map(|x| x.1).max().unwrap().max(1);
                assert!(run.len() == 1 || run.len() * (p + r) <= budget);
            }
            // Greedy: a run plus the next row would not have fit.
            for w in runs.windows(2) {
                let e = &ext[w[0].start..=w[1].start];
                let p = e.iter().map(|x| x.0).max().unwrap().max(1);
                let r = e.iter().map(|x| x.1).max().unwrap().max(1);
                assert!(e.len() * (p + r) > budget);
            }
        }
    }

    #[test]
    fn extents_and_trimming() {
        let rows = Rows {
            prompt_ids: Tensor::from_slice(&[0i64, 5, 6, 0, 0, 7, 8, 9, 1]).view([3, 3]),
            prompt_mask: Tensor::from_slice(&[0i64, 1, 1, 0, 0, 1, 1, 1, 1]).view([3, 3]),
            response_ids: Tensor::from_slice(&[1i64, 2, 0, 0, 3, 0, 0, 0, 4, 4, 4, 0]).view([3, 4]),
            mask: Tensor::from_slice(&[1.0f32, 1., 0., 0., 1., 0., 0., 0., 1., 1., 1., 0.])
                .view([3, 4]),
        };
        assert_eq!(rows.extents(), vec![(2, 2), (1, 1), (3, 3)]);
        let t = rows.trimmed(&(0..2), 2, 2);
        assert_eq!(
            t.prompt_ids,
            Tensor::from_slice(&[5i64, 6, 0, 7]).view([2, 2])
        );
        assert_eq!(
            t.prompt_mask,
            Tensor::from_slice(&[1i64, 1, 0, 1]).view([2, 2])
        );
        assert_eq!(
            t.response_ids,
            Tensor::from_slice(&[1i64, 2, 3, 0]).view([2, 2])
        );
        assert_eq!(t.mask.size(), [2, 2]);
    }
}
