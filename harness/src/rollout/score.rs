//! Trainer-side scoring of sampled responses: log-probs (`π_old` or `π_θ`), entropy, and MoE routing,
//! from one full forward over prompt + response.
use crate::model::recompute::{forward_recompute, Recompute};
use crate::model::{HiddenOutput, Qwen3};
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
    let (ids, mask) = join(prompt_ids, prompt_mask, response_ids, response_mask);
    let out = model.forward_hidden(&ids, Some(&mask), None);
    score_hidden(
        model,
        out,
        prompt_ids,
        &mask,
        response_ids,
        temperature,
        gather_ids,
    )
}

/// `score_responses` with per-layer activation recompute (`train.recompute`): the layers run
/// without a graph; after `loss.backward()` the caller must call `Recompute::backward` to get the
/// layers' gradients (see `model::recompute`).
pub fn score_responses_recompute<'m>(
    model: &'m Qwen3,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    response_ids: &Tensor,
    response_mask: &Tensor,
    temperature: f64,
    gather_ids: Option<&Tensor>,
) -> (Scored, Recompute<'m>) {
    let (ids, mask) = join(prompt_ids, prompt_mask, response_ids, response_mask);
    let (out, rc) = forward_recompute(model, &ids, Some(&mask));
    let scored = score_hidden(
        model,
        out,
        prompt_ids,
        &mask,
        response_ids,
        temperature,
        gather_ids,
    );
    (scored, rc)
}

/// Prompt + response ids and their attention mask.
fn join(
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    response_ids: &Tensor,
    response_mask: &Tensor,
) -> (Tensor, Tensor) {
    let ids = Tensor::cat(&[prompt_ids, response_ids], 1);
    // Tokens after a response's end are masked out as keys; causality already keeps them from
    // influencing the real tokens.
    let mask = Tensor::cat(&[prompt_mask, &response_mask.to_kind(Kind::Int64)], 1);
    (ids, mask)
}

fn score_hidden(
    model: &Qwen3,
    out: HiddenOutput,
    prompt_ids: &Tensor,
    mask: &Tensor,
    response_ids: &Tensor,
    temperature: f64,
    gather_ids: Option<&Tensor>,
) -> Scored {
    let (n, p) = prompt_ids.size2().unwrap();
    let r = response_ids.size()[1];
    // Only the positions that predict response tokens go through the LM head.
    let hidden = out.hidden.narrow(1, p - 1, r);
    let temp = if temperature > 0.0 { temperature } else { 1.0 };
    let logits = model.logits(&hidden).to_kind(Kind::Float) / temp;
    let logp_all = logits.log_softmax(-1, Kind::Float);
    let logp = logp_all
        .gather(-1, &response_ids.unsqueeze(-1), false)
        .squeeze_dim(-1);
    let gathered = gather_ids.map(|ids| logp_all.gather(-1, ids, false));
    let entropy = -(logp_all.exp() * &logp_all).sum_dim_intlist(-1, false, Kind::Float);
    let (experts, aux_loss) = match &model.cfg.moe {
        Some(m) if !out.router_logits.is_empty() => {
            let k = m.num_experts_per_tok as i64;
            let experts = out
                .router_logits
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
                &out.router_logits,
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
