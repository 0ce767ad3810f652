//! Batched sampling with the KV cache: left-padded prompts, temperature, top-k, top-p, stop tokens.
//! The prefix is encoded once; each new token costs one single-position forward. Rows that finish
//! (a stop token) leave the running batch and its KV cache, so decode cost follows the live rows.
//! With `max_num_seqs` the rows are decoded in waves of at most that many (the KV cache holds one
//! wave); randomness is then keyed by row (see `noise`), so the tokens do not depend on the wave
//! size.
//!
//! `μ` (the engine's log-prob of a sampled token) is `log_softmax(logits / T)` of the engine's
//! (possibly perturbed) logits, before top-k/top-p truncation, which is what the trainer recomputes
//! as `π_old`; with `top_k = 0`, `top_p = 1` it is exactly the sampling distribution.
use super::noise::{Live, SampleNoise};
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
    /// Most rows decoded at once (`rollout.max_num_seqs`); `None`: every row in one batch, with
    /// libtorch's global generator as the randomness (today's draws).
    pub max_num_seqs: Option<usize>,
    /// Keep finished rows in the running batch until every row is done (what the sampler did
    /// before finished rows were dropped). Same output; only for measuring what dropping saves.
    pub keep_finished_rows: bool,
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
            max_num_seqs: None,
            keep_finished_rows: false,
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
    left_pad_to(seqs, p, pad, device)
}

/// Left-pad token sequences to width `p` (at least the longest).
fn left_pad_to(seqs: &[Vec<i64>], p: usize, pad: i64, device: Device) -> (Tensor, Tensor) {
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
/// Randomness comes from libtorch's global generator: seed it with `tch::manual_seed`. With
/// `max_num_seqs`, rows run in waves of that many and every wave is padded to the step's prompt
/// width, so the output has the same shapes as one batch.
pub fn generate(model: &Qwen3, prompts: &[Vec<i64>], params: &SamplingParams) -> Rollouts {
    let inference = crate::runtime::InferenceMode::enter();
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let out = match params.max_num_seqs {
        None => generate_wave(model, prompts, width, 0, params, SampleNoise::Global),
        Some(wave) => {
            let noise = SampleNoise::keyed_from_global();
            let waves: Vec<Rollouts> = prompts
                .chunks(wave.max(1))
                .enumerate()
                .map(|(i, chunk)| {
                    generate_wave(model, chunk, width, (i * wave) as i64, params, noise)
                })
                .collect();
            concat(waves)
        }
    };
    drop(inference);
    out.into_normal_tensors()
}

impl Rollouts {
    /// The same rollouts in tensors made outside inference mode (see `runtime::InferenceMode`),
    /// which the trainer's graph may use.
    fn into_normal_tensors(self) -> Rollouts {
        let _guard = tch::no_grad_guard();
        Rollouts {
            prompt_ids: self.prompt_ids.copy(),
            prompt_mask: self.prompt_mask.copy(),
            response_ids: self.response_ids.copy(),
            response_mask: self.response_mask.copy(),
            rollout_logp: self.rollout_logp.copy(),
            topk: self.topk.map(|(lp, ids)| (lp.copy(), ids.copy())),
            engine_experts: self.engine_experts.iter().map(Tensor::copy).collect(),
            finish: self.finish,
            lengths: self.lengths,
        }
    }
}

/// Rows of several waves as one batch.
fn concat(waves: Vec<Rollouts>) -> Rollouts {
    if waves.len() == 1 {
        return waves.into_iter().next().unwrap();
    }
    let cat = |f: &dyn Fn(&Rollouts) -> &Tensor| -> Tensor {
        Tensor::cat(&waves.iter().map(f).collect::<Vec<_>>(), 0)
    };
    let topk = waves[0].topk.as_ref().map(|_| {
        (
            cat(&|w| &w.topk.as_ref().unwrap().0),
            cat(&|w| &w.topk.as_ref().unwrap().1),
        )
    });
    let engine_experts = (0..waves[0].engine_experts.len())
        .map(|l| cat(&|w| &w.engine_experts[l]))
        .collect();
    Rollouts {
        prompt_ids: cat(&|w| &w.prompt_ids),
        prompt_mask: cat(&|w| &w.prompt_mask),
        response_ids: cat(&|w| &w.response_ids),
        response_mask: cat(&|w| &w.response_mask),
        rollout_logp: cat(&|w| &w.rollout_logp),
        topk,
        engine_experts,
        finish: waves.iter().flat_map(|w| w.finish.clone()).collect(),
        lengths: waves.iter().flat_map(|w| w.lengths.clone()).collect(),
    }
}

/// Per sparse layer, the experts the router picks for the last position of each row, `[rows, k]`
/// (sorted ids).
fn last_experts(router_logits: &[Tensor], rows: i64, t: i64, k: i64) -> Vec<Tensor> {
    router_logits
        .iter()
        .map(|rl| {
            let e = rl.size()[1];
            let sel = rl
                .view([rows, t, e])
                .select(1, t - 1)
                .topk(k, -1, true, true)
                .1;
            sel.sort(-1, false).0
        })
        .collect()
}

/// Encode the prompts `[n, P]` into `cache`; returns the next-token logits `[n, V]` and the router
/// logits of the prompts' positions per sparse layer (`[n*P, E]`).
fn prefill(
    model: &Qwen3,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    cache: &mut KvCache,
) -> (Tensor, Vec<Tensor>) {
    // A GRPO group repeats its prompt: prefill each distinct prompt once and share its cache.
    let groups = super::score::prompt_groups(prompt_ids, prompt_mask);
    let Some((first, group)) = &groups else {
        let out = model.forward(prompt_ids, Some(prompt_mask), Some(cache));
        return (out.logits.select(1, -1), out.router_logits);
    };
    let out = model.forward(
        &prompt_ids.index_select(0, first),
        Some(&prompt_mask.index_select(0, first)),
        Some(cache),
    );
    cache.select_rows(group);
    let p = prompt_ids.size()[1];
    let router = out
        .router_logits
        .iter()
        .map(|rl| {
            let e = rl.size()[1];
            rl.view([-1, p, e]).index_select(0, group).view([-1, e])
        })
        .collect();
    (out.logits.select(1, -1).index_select(0, group), router)
}

/// What each decode step records, full-batch (finished rows: pad / 0 / -inf).
#[derive(Default)]
struct Steps {
    toks: Vec<Tensor>,
    lps: Vec<Tensor>,
    masks: Vec<Tensor>,
    topk_lp: Vec<Tensor>,
    topk_ids: Vec<Tensor>,
    /// Per response position, per sparse layer: `[n, k]`.
    experts: Vec<Vec<Tensor>>,
}

/// One sampling step on the live rows' logits `[L, V]`: the tokens and their log-probs `[L]`, and
/// the log-softmax `[L, V]` (for top-K reporting).
fn sample_step(
    logits: &Tensor,
    live: &Live,
    pos: usize,
    params: &SamplingParams,
    noise: SampleNoise,
) -> (Tensor, Tensor, Tensor) {
    let (v, device) = (logits.size()[1], logits.device());
    let mut l = logits.to_kind(Kind::Float);
    if params.logit_noise > 0.0 {
        l = &l + noise.normal(live, pos, v, device) * params.logit_noise;
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
        let p = filter_logits(l, params.top_k, params.top_p).softmax(-1, Kind::Float);
        // `multinomial(p, 1)` is exactly this race (see `noise`).
        (p / noise.exponential(live, pos, v, device)).argmax(-1, false)
    };
    let lp = logp.gather(-1, &tok.unsqueeze(-1), false).squeeze_dim(-1);
    (tok, lp, logp)
}

/// Sample the rows of one wave (`offset`: its first row's index in the step), prompts left-padded
/// to `width`.
fn generate_wave(
    model: &Qwen3,
    prompts: &[Vec<i64>],
    width: usize,
    offset: i64,
    params: &SamplingParams,
    noise: SampleNoise,
) -> Rollouts {
    let device = model.device();
    let n = prompts.len() as i64;
    let (prompt_ids, prompt_mask) = left_pad_to(prompts, width, params.pad_token, device);
    let r = params.max_new_tokens as i64;
    let mut cache = KvCache::with_capacity(model.cfg.num_hidden_layers, width as i64 + r);
    let (mut logits, router) = prefill(model, &prompt_ids, &prompt_mask, &mut cache);
    let k_experts = model
        .cfg
        .moe
        .as_ref()
        .map_or(0, |m| m.num_experts_per_tok as i64);
    let mut live = Live::all(n, offset, device);
    let mut steps = Steps::default();
    // experts[j] holds the selection for response token j (computed on the position before it).
    let mut experts = last_experts(&router, n, width as i64, k_experts);
    let mut mask = prompt_mask.shallow_clone();
    let stop = Tensor::from_slice(&params.stop_tokens).to_device(device);
    // `keep_finished_rows` only: which rows of the batch are still decoding.
    let mut running = Tensor::ones([n], (Kind::Bool, device));
    for pos in 0..params.max_new_tokens {
        let (mut tok, mut lp, logp) = sample_step(&logits, &live, pos, params, noise);
        if params.keep_finished_rows {
            tok = tok.where_self(&running, &Tensor::from(params.pad_token).to_device(device));
            lp = lp.where_self(&running, &Tensor::from(0f32).to_device(device));
        }
        steps.toks.push(live.scatter(&tok, params.pad_token as f64));
        steps.lps.push(live.scatter(&lp, 0.0));
        let on = if params.keep_finished_rows {
            running.to_kind(Kind::Float)
        } else {
            tok.ones_like().to_kind(Kind::Float)
        };
        steps.masks.push(live.scatter(&on, 0.0));
        if params.topk_logprobs > 0 {
            let (tv, ti) = logp.topk(params.topk_logprobs as i64, -1, true, true);
            steps.topk_lp.push(live.scatter(&tv, f64::NEG_INFINITY));
            steps.topk_ids.push(live.scatter(&ti, 0.0));
        }
        steps
            .experts
            .push(experts.iter().map(|e| live.scatter(e, 0.0)).collect());
        let keep: Vec<bool> = if stop.numel() > 0 {
            let stopped = tok
                .unsqueeze(-1)
                .eq_tensor(&stop.unsqueeze(0))
                .any_dim(-1, false);
            Vec::<bool>::try_from(stopped.logical_not()).unwrap()
        } else {
            vec![true; live.len() as usize]
        };
        if params.keep_finished_rows {
            let still = Tensor::from_slice(&keep).to_device(device);
            running = running.logical_and(&still);
            if pos + 1 == params.max_new_tokens || !bool::try_from(running.any()).unwrap() {
                let _ = live.retain(&Vec::<bool>::try_from(&running).unwrap());
                break;
            }
        } else if keep.iter().any(|k| !k) {
            let kept = live.retain(&keep);
            cache.select_rows(&kept);
            mask = mask.index_select(0, &kept);
            tok = tok.index_select(0, &kept);
        }
        if pos + 1 == params.max_new_tokens || live.is_empty() {
            break;
        }
        mask = Tensor::cat(&[&mask, &mask.ones_like().narrow(1, 0, 1)], 1);
        let out = model.forward(&tok.unsqueeze(-1), Some(&mask), Some(&mut cache));
        logits = out.logits.select(1, -1);
        experts = last_experts(&out.router_logits, live.len(), 1, k_experts);
    }
    let mut alive = vec![false; n as usize];
    for &row in &live.rows {
        alive[row as usize] = true;
    }
    finish_rollouts(
        prompt_ids,
        prompt_mask,
        steps,
        &alive,
        params,
        k_experts > 0,
    )
}

/// Stack the recorded steps into `[n, R]` tensors padded to `max_new_tokens`.
fn finish_rollouts(
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    steps: Steps,
    alive: &[bool],
    params: &SamplingParams,
    moe: bool,
) -> Rollouts {
    let device = prompt_ids.device();
    let r = params.max_new_tokens as i64;
    // Pad to max_new_tokens so every batch has the same response width.
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
    let response_ids = pad_to(steps.toks, params.pad_token as f64);
    let response_mask = pad_to(steps.masks, 0.0);
    let rollout_logp = pad_to(steps.lps, 0.0);
    let topk = (params.topk_logprobs > 0).then(|| {
        (
            pad_to(steps.topk_lp, f64::NEG_INFINITY),
            pad_to(steps.topk_ids, 0.0),
        )
    });
    let engine_experts = if moe {
        let n_layers = steps.experts[0].len();
        (0..n_layers)
            .map(|layer| {
                let per_tok: Vec<Tensor> = steps
                    .experts
                    .iter()
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
    let finish = alive
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
