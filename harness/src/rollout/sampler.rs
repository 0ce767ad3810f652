//! Batched sampling with the KV cache: left-padded prompts, temperature, top-k, top-p, stop tokens.
//! The prefix is encoded once; each new token costs one single-position forward.
//!
//! `μ` (the engine's log-prob of a sampled token) is `log_softmax(logits / T)` of the engine's
//! (possibly perturbed) logits, before top-k/top-p truncation, which is what the trainer recomputes
//! as `π_old`; with `top_k = 0`, `top_p = 1` it is exactly the sampling distribution.
use crate::model::{KvCache, Qwen3};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    /// 0 = off.
    pub top_k: usize,
    /// Tokens that end a response (EOS and any stop tokens); the stop token is part of the response.
    pub stop_tokens: Vec<i64>,
    /// Id written after a response ends.
    pub pad_token: i64,
    /// Report the engine's top-K log-probs per position (0 = off).
    pub topk_logprobs: usize,
    /// Std of additive Gaussian noise on the engine's logits (discrepancy knob; 0 = off).
    pub logit_noise: f64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_new_tokens: 8,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            stop_tokens: vec![],
            pad_token: 0,
            topk_logprobs: 0,
            logit_noise: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Stop,
    Length,
}

/// A batch of sampled responses. `N` rows (prompts × group size), prompt width `P`, response
/// width `R = max_new_tokens`.
pub struct Rollouts {
    /// `[N, P]` left-padded prompt ids and their 0/1 mask (Int64).
    pub prompt_ids: Tensor,
    pub prompt_mask: Tensor,
    /// `[N, R]` response ids (pad after the end) and a float mask (1 on generated tokens).
    pub response_ids: Tensor,
    pub response_mask: Tensor,
    /// `[N, R]` the engine's log-prob of each sampled token (fp32; 0 where masked).
    pub rollout_logp: Tensor,
    /// `[N, R, K]` the engine's top-K log-probs and their token ids, when requested.
    pub topk: Option<(Tensor, Tensor)>,
    /// MoE only: per sparse layer, the engine's selected experts `[N, R, k]` (sorted ids).
    pub engine_experts: Vec<Tensor>,
    pub finish: Vec<FinishReason>,
    pub lengths: Vec<usize>,
}

/// Left-pad token sequences into `[N, P]` ids and mask.
pub fn left_pad(seqs: &[Vec<i64>], pad: i64, device: Device) -> (Tensor, Tensor) {
    let p = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * p);
    let mut mask = Vec::with_capacity(seqs.len() * p);
    for s in seqs {
        let n = p - s.len();
        ids.extend(std::iter::repeat_n(pad, n).chain(s.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, n).chain(std::iter::repeat_n(1, s.len())));
    }
    let shape = [seqs.len() as i64, p as i64];
    (
        Tensor::from_slice(&ids).view(shape).to_device(device),
        Tensor::from_slice(&mask).view(shape).to_device(device),
    )
}

/// Mask logits outside the top-k and outside the top-p nucleus with -inf (`logits` `[N, V]`).
fn filter_logits(logits: Tensor, top_k: usize, top_p: f64) -> Tensor {
    let v = logits.size()[1];
    let mut logits = logits;
    if top_k > 0 && (top_k as i64) < v {
        let (kth, _) = logits.topk(top_k as i64, -1, true, true);
        let threshold = kth.narrow(1, top_k as i64 - 1, 1);
        logits = logits.masked_fill(&logits.lt_tensor(&threshold), f64::NEG_INFINITY);
    }
    if top_p < 1.0 {
        let (sorted, idx) = logits.sort(-1, true);
        let probs = sorted.softmax(-1, Kind::Float);
        // Drop a token when the mass before it already reaches top_p (always keeps the first).
        let before = probs.cumsum(-1, Kind::Float) - &probs;
        let drop_sorted = before.ge(top_p);
        let drop = drop_sorted.zeros_like().scatter(-1, &idx, &drop_sorted);
        logits = logits.masked_fill(&drop, f64::NEG_INFINITY);
    }
    logits
}

/// Sample `params.max_new_tokens` tokens for every prompt with `model` (the inference copy).
/// Randomness comes from libtorch's global generator: seed it with `tch::manual_seed`.
pub fn generate(model: &Qwen3, prompts: &[Vec<i64>], params: &SamplingParams) -> Rollouts {
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let n = prompts.len() as i64;
    let (prompt_ids, prompt_mask) = left_pad(prompts, params.pad_token, device);
    let mut cache = KvCache::new(model.cfg.num_hidden_layers);
    let mut mask = prompt_mask.shallow_clone();
    // A GRPO group repeats its prompt: prefill each distinct prompt once and share its cache.
    let groups = super::score::prompt_groups(&prompt_ids, &prompt_mask);
    let mut out = match &groups {
        None => model.forward(&prompt_ids, Some(&mask), Some(&mut cache)),
        Some((first, _)) => model.forward(
            &prompt_ids.index_select(0, first),
            Some(&prompt_mask.index_select(0, first)),
            Some(&mut cache),
        ),
    };
    let mut logits = out.logits.select(1, -1);
    if let Some((_, group)) = &groups {
        cache.select_rows(group);
        logits = logits.index_select(0, group);
        let p = prompt_ids.size()[1];
        for rl in out.router_logits.iter_mut() {
            let e = rl.size()[1];
            *rl = rl.view([-1, p, e]).index_select(0, group).view([-1, e]);
        }
    }
    let top_k_experts = model
        .cfg
        .moe
        .as_ref()
        .map_or(0, |m| m.num_experts_per_tok as i64);
    let last_experts = |router_logits: &[Tensor], t: i64| -> Vec<Tensor> {
        router_logits
            .iter()
            .map(|rl| {
                let e = rl.size()[1];
                let sel = rl
                    .view([n, t, e])
                    .select(1, t - 1)
                    .topk(top_k_experts, -1, true, true)
                    .1;
                sel.sort(-1, false).0
            })
            .collect()
    };
    let mut experts: Vec<Vec<Tensor>> =
        vec![last_experts(&out.router_logits, prompt_ids.size()[1])];

    let stop = Tensor::from_slice(&params.stop_tokens).to_device(device);
    let mut alive = Tensor::ones([n], (Kind::Bool, device));
    let (mut toks, mut lps, mut masks) = (vec![], vec![], vec![]);
    let (mut topk_lp, mut topk_ids) = (vec![], vec![]);
    for step in 0..params.max_new_tokens {
        let mut l = logits.to_kind(Kind::Float);
        if params.logit_noise > 0.0 {
            l = &l + l.randn_like() * params.logit_noise;
        }
        let temp = if params.temperature > 0.0 {
            params.temperature
        } else {
            1.0
        };
        let l = l / temp;
        let logp = l.log_softmax(-1, Kind::Float);
        let tok = if params.temperature <= 0.0 {
            l.argmax(-1, false)
        } else {
            filter_logits(l, params.top_k, params.top_p)
                .softmax(-1, Kind::Float)
                .multinomial(1, false)
                .squeeze_dim(-1)
        };
        let tok = tok.where_self(&alive, &Tensor::from(params.pad_token).to_device(device));
        lps.push(
            logp.gather(-1, &tok.unsqueeze(-1), false)
                .squeeze_dim(-1)
                .where_self(&alive, &Tensor::from(0f32).to_device(device)),
        );
        if params.topk_logprobs > 0 {
            let (v, i) = logp.topk(params.topk_logprobs as i64, -1, true, true);
            topk_lp.push(v);
            topk_ids.push(i);
        }
        masks.push(alive.to_kind(Kind::Float));
        toks.push(tok.shallow_clone());
        if stop.numel() > 0 {
            alive = alive.logical_and(
                &tok.unsqueeze(-1)
                    .eq_tensor(&stop.unsqueeze(0))
                    .any_dim(-1, false)
                    .logical_not(),
            );
        }
        if step + 1 == params.max_new_tokens || !bool::try_from(alive.any()).unwrap() {
            break;
        }
        mask = Tensor::cat(&[&mask, &Tensor::ones([n, 1], (Kind::Int64, device))], 1);
        let out = model.forward(&tok.unsqueeze(-1), Some(&mask), Some(&mut cache));
        logits = out.logits.select(1, -1);
        experts.push(last_experts(&out.router_logits, 1));
    }
    // Pad to max_new_tokens so every batch has the same response width.
    let r = params.max_new_tokens as i64;
    let pad_to = |v: Vec<Tensor>, fill: f64| -> Tensor {
        let t = Tensor::stack(&v, 1);
        let have = t.size()[1];
        if have == r {
            return t;
        }
        let mut shape = t.size();
        shape[1] = r - have;
        Tensor::cat(&[&t, &Tensor::full(&shape, fill, (t.kind(), device))], 1)
    };
    let response_ids = pad_to(toks, params.pad_token as f64);
    let response_mask = pad_to(masks, 0.0);
    let rollout_logp = pad_to(lps, 0.0);
    let topk = (params.topk_logprobs > 0)
        .then(|| (pad_to(topk_lp, f64::NEG_INFINITY), pad_to(topk_ids, 0.0)));
    // experts[j] holds the selection for response token j (computed on the position before it).
    let engine_experts = if top_k_experts > 0 {
        let n_layers = experts[0].len();
        (0..n_layers)
            .map(|layer| {
                let per_tok: Vec<Tensor> = experts
                    .iter()
                    .take(r as usize)
                    .map(|e| e[layer].shallow_clone())
                    .collect();
                pad_to(per_tok, 0.0)
            })
            .collect()
    } else {
        vec![]
    };
    let lengths: Vec<usize> =
        Vec::<f64>::try_from(response_mask.sum_dim_intlist(1, false, Kind::Double))
            .unwrap()
            .into_iter()
            .map(|x| x as usize)
            .collect();
    let alive_end = Vec::<bool>::try_from(alive).unwrap();
    let finish = alive_end
        .iter()
        .map(|&a| {
            if a {
                FinishReason::Length
            } else {
                FinishReason::Stop
            }
        })
        .collect();
    Rollouts {
        prompt_ids,
        prompt_mask,
        response_ids,
        response_mask,
        rollout_logp,
        topk,
        engine_experts,
        finish,
        lengths,
    }
}
