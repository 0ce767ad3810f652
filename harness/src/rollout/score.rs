//! Trainer-side scoring of sampled responses: log-probs (`π_old` or `π_θ`), entropy, and MoE routing,
//! from one full forward over prompt + response.
use crate::model::recompute::{forward_recompute, Recompute};
use crate::model::{KvCache, Qwen3};
use tch::{Kind, Tensor};

pub struct Scored {
    /// `[N, R]` log-prob of each response token under `log_softmax(logits / T)`, fp32.
    pub logp: Tensor,
    /// `[N, R]` entropy of that distribution (nats), fp32.
    pub entropy: Tensor,
    /// MoE only: per sparse layer, the selected experts `[N, R, k]` (sorted ids) at the position
    /// that produced each response token.
    pub experts: Vec<Tensor>,
    /// MoE router load-balancing loss over the real tokens (multiply by the config's coefficient).
    pub aux_loss: Option<Tensor>,
    /// Log-probs `[N, R, K]` at the token ids passed as `gather_ids` (DPPO top-K).
    pub gathered: Option<Tensor>,
}

impl Scored {
    /// The log-probs, entropy and experts without the graph (π_old taken from a π_θ forward).
    pub fn detached(&self) -> Scored {
        Scored {
            logp: self.logp.detach(),
            entropy: self.entropy.detach(),
            experts: self.experts.iter().map(Tensor::shallow_clone).collect(),
            aux_loss: None,
            gathered: None,
        }
    }
}

/// Score `response_ids` `[N, R]` after left-padded prompts `[N, P]`. Runs with gradients if the
/// caller has them enabled. `temperature` ≤ 0 (greedy) scores at temperature 1.
pub fn score_responses(
    model: &Qwen3,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    response_ids: &Tensor,
    response_mask: &Tensor,
    temperature: f64,
    gather_ids: Option<&Tensor>,
) -> Scored {
    let (n, p) = prompt_ids.size2().unwrap();
    let r = response_ids.size()[1];
    let mask = joint_mask(prompt_mask, response_mask);
    // `hidden`: the positions that predict response tokens (only they go through the LM head);
    // `router_logits`: per sparse layer, `[N*(P+R), E]` as a plain forward would give them.
    let (hidden, router_logits) = match prompt_groups(prompt_ids, prompt_mask) {
        None => {
            let ids = Tensor::cat(&[prompt_ids, response_ids], 1);
            let out = model.forward_hidden(&ids, Some(&mask), None);
            (out.hidden.narrow(1, p - 1, r), out.router_logits)
        }
        Some((first, group)) => {
            // GRPO groups repeat each prompt: encode it once, share its keys/values (gradients
            // from every row flow back through the shared prefix), then run only the responses.
            let mut cache = KvCache::new(model.cfg.num_hidden_layers);
            let pre = model.forward_hidden(
                &prompt_ids.index_select(0, &first),
                Some(&prompt_mask.index_select(0, &first)),
                Some(&mut cache),
            );
            cache.select_rows(&group);
            let out = model.forward_hidden(response_ids, Some(&mask), Some(&mut cache));
            let last_prompt = pre.hidden.narrow(1, p - 1, 1).index_select(0, &group);
            let hidden = Tensor::cat(&[last_prompt, out.hidden.narrow(1, 0, r - 1)], 1);
            let router_logits = pre
                .router_logits
                .iter()
                .zip(&out.router_logits)
                .map(|(a, b)| {
                    let e = a.size()[1];
                    let a = a.view([-1, p, e]).index_select(0, &group);
                    Tensor::cat(&[a, b.view([n, r, e])], 1).view([n * (p + r), e])
                })
                .collect();
            (hidden, router_logits)
        }
    };
    score_hidden(
        model,
        &hidden,
        &router_logits,
        p,
        &mask,
        response_ids,
        temperature,
        gather_ids,
    )
}

/// `score_responses` with per-layer activation recompute (`train.recompute`): the layers run
/// without a graph; after `loss.backward()` the caller must call `Recompute::backward` to get the
/// layers' gradients (see `model::recompute`). Runs the full prompt + response sequence per row.
pub fn score_responses_recompute<'m>(
    model: &'m Qwen3,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    response_ids: &Tensor,
    response_mask: &Tensor,
    temperature: f64,
    gather_ids: Option<&Tensor>,
) -> (Scored, Recompute<'m>) {
    let p = prompt_ids.size()[1];
    let r = response_ids.size()[1];
    let ids = Tensor::cat(&[prompt_ids, response_ids], 1);
    let mask = joint_mask(prompt_mask, response_mask);
    let (out, rc) = forward_recompute(model, &ids, Some(&mask));
    let scored = score_hidden(
        model,
        &out.hidden.narrow(1, p - 1, r),
        &out.router_logits,
        p,
        &mask,
        response_ids,
        temperature,
        gather_ids,
    );
    (scored, rc)
}

/// Attention mask of prompt + response. Tokens after a response's end are masked out as keys;
/// causality already keeps them from influencing the real tokens.
fn joint_mask(prompt_mask: &Tensor, response_mask: &Tensor) -> Tensor {
    Tensor::cat(&[prompt_mask, &response_mask.to_kind(Kind::Int64)], 1)
}

/// Log-probs, entropy and MoE routing from the hidden states `[N, R, H]` that predict the response
/// tokens and the per-layer router logits `[N*(P+R), E]`.
#[allow(clippy::too_many_arguments)]
fn score_hidden(
    model: &Qwen3,
    hidden: &Tensor,
    router_logits: &[Tensor],
    p: i64,
    mask: &Tensor,
    response_ids: &Tensor,
    temperature: f64,
    gather_ids: Option<&Tensor>,
) -> Scored {
    let (n, r) = response_ids.size2().unwrap();
    let temp = if temperature > 0.0 { temperature } else { 1.0 };
    let logits = model.logits(hidden).to_kind(Kind::Float) / temp;
    let logp_all = logits.log_softmax(-1, Kind::Float);
    let logp = logp_all
        .gather(-1, &response_ids.unsqueeze(-1), false)
        .squeeze_dim(-1);
    let gathered = gather_ids.map(|ids| logp_all.gather(-1, ids, false));
    let entropy = -(logp_all.exp() * &logp_all).sum_dim_intlist(-1, false, Kind::Float);
    let (experts, aux_loss) = match &model.cfg.moe {
        Some(m) if !router_logits.is_empty() => {
            let k = m.num_experts_per_tok as i64;
            let experts = router_logits
                .iter()
                .map(|rl| {
                    let e = rl.size()[1];
                    let sel = rl
                        .view([n, p + r, e])
                        .narrow(1, p - 1, r)
                        .topk(k, -1, true, true)
                        .1;
                    sel.sort(-1, false).0
                })
                .collect();
            let aux = crate::model::qwen3_moe::load_balancing_loss(
                router_logits,
                m.num_experts as i64,
                k,
                Some(mask),
            );
            (experts, Some(aux))
        }
        _ => (vec![], None),
    };
    Scored {
        logp,
        entropy,
        experts,
        aux_loss,
        gathered,
    }
}

/// Runs of consecutive rows with the same prompt (ids and mask), as GRPO groups lay them out:
/// `(first row of each run, run index of every row)`, or `None` when no two neighbours share one.
pub(crate) fn prompt_groups(prompt_ids: &Tensor, prompt_mask: &Tensor) -> Option<(Tensor, Tensor)> {
    let n = prompt_ids.size()[0];
    if n < 2 {
        return None;
    }
    let rows = |t: &Tensor| -> Vec<Vec<i64>> {
        Vec::<Vec<i64>>::try_from(t.to_device(tch::Device::Cpu).to_kind(Kind::Int64)).unwrap()
    };
    let (ids, mask) = (rows(prompt_ids), rows(prompt_mask));
    let mut first = vec![0i64];
    let mut group = vec![0i64];
    for i in 1..n as usize {
        if ids[i] != ids[i - 1] || mask[i] != mask[i - 1] {
            first.push(i as i64);
        }
        group.push(first.len() as i64 - 1);
    }
    if first.len() as i64 == n {
        return None;
    }
    let device = prompt_ids.device();
    Some((
        Tensor::from_slice(&first).to_device(device),
        Tensor::from_slice(&group).to_device(device),
    ))
}
