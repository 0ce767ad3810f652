//! The server engine (`rollout.engine.server`): a step's rollouts come from an OpenAI-compatible
//! completions server (vLLM, SGLang), and the trainer's weights go back to it before every step.
//!
//! One `POST {url}/v1/completions` per step: the prompts as token-id lists, `n` = group size, the
//! run's sampling settings, the task's stop tokens (`stop_token_ids`, `ignore_eos`, so only they end
//! a response, as in the in-process engine), `logprobs: 1` and the two vLLM extensions that return
//! token ids (`return_token_ids`, vLLM ≥ 0.10.2: `choices[].token_ids`; `return_tokens_as_token_ids`:
//! `logprobs.tokens` as `"token_id:N"`). Choices come back prompt-major (`index = prompt · n + j`);
//! each is checked as an external rollout line is ([`crate::config::external::check`]).
//!
//! The log-prob a server reports is its own (its precision, kernels, weights), so `rollout_corr/*`
//! measures the real engine's discrepancy. vLLM reports log-probs of the raw logits unless started
//! with `--logprobs-mode processed_logprobs`; the trainer's π_old is `log_softmax(logits / T)`,
//! so with `temperature ≠ 1` start vLLM with that flag.
use super::external::to_rollouts;
use super::{Rollouts, SamplingParams};
use crate::config::external::{check, ExternalRollout};
use crate::config::server::{Reload, ServerConfig};
use crate::model::{save_hf_dir, Qwen3};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tch::{Device, Kind};

/// Largest reply body read (a step's completions with their log-probs).
const MAX_REPLY_BYTES: u64 = 1 << 32;

/// A blocking client of one server.
pub struct Client {
    cfg: ServerConfig,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(cfg: &ServerConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_s)))
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            cfg: cfg.clone(),
            agent,
        }
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::Server {
            url: self.cfg.url.clone(),
            msg: msg.into(),
        }
    }

    /// `POST {url}{path}` with a JSON body: the JSON reply, or an error naming the endpoint, the
    /// HTTP status and what the server said.
    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.cfg.url.trim_end_matches('/'));
        let mut reply = self
            .agent
            .post(&url)
            .send_json(body)
            .map_err(|e| self.err(format!("POST {path}: {e}")))?;
        let status = reply.status();
        let text = reply
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_string()
            .map_err(|e| self.err(format!("POST {path}: reading the reply: {e}")))?;
        if !status.is_success() {
            return Err(self.err(format!("POST {path}: HTTP {status}: {}", snippet(&text))));
        }
        serde_json::from_str(&text).map_err(|e| {
            self.err(format!(
                "POST {path}: reply is not JSON ({e}): {}",
                snippet(&text)
            ))
        })
    }

    /// The `/v1/completions` request for `prompts`, `n` samples each.
    pub fn request(&self, prompts: &[Vec<i64>], n: usize, p: &SamplingParams, seed: u64) -> Value {
        let mut body = json!({
            "model": self.cfg.model,
            "prompt": prompts,
            "n": n,
            "max_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "logprobs": 1,
            "return_token_ids": true,
            "return_tokens_as_token_ids": true,
            "stop_token_ids": p.stop_tokens,
            "ignore_eos": true,
            "skip_special_tokens": false,
            "seed": seed,
            "stream": false,
        });
        if p.top_k > 0 {
            body["top_k"] = json!(p.top_k);
        }
        body
    }

    /// Sample `n` responses to each prompt: one checked rollout per choice, prompt-major.
    pub fn complete(
        &self,
        prompts: &[Vec<i64>],
        n: usize,
        p: &SamplingParams,
        seed: u64,
        vocab_size: usize,
    ) -> Result<Vec<ExternalRollout>> {
        let reply = self.post("/v1/completions", &self.request(prompts, n, p, seed))?;
        parse_choices(&reply, prompts, n, vocab_size).map_err(|m| self.err(m))
    }

    /// A step's rollouts as a batch (responses padded to at least `p.max_new_tokens`).
    pub fn rollouts(
        &self,
        prompts: &[Vec<i64>],
        n: usize,
        p: &SamplingParams,
        seed: u64,
        vocab_size: usize,
        device: Device,
    ) -> Result<Rollouts> {
        let rows = self.complete(prompts, n, p, seed, vocab_size)?;
        Ok(to_rollouts(&rows, p.pad_token, p.max_new_tokens, device))
    }

    /// Hand `model`'s weights to the server: write them to `weights_dir` as a Hugging Face
    /// directory (fp32 safetensors: the server casts to its own dtype) and call its reload
    /// endpoint. Nothing with `reload: none`.
    pub fn push_weights(&self, model: &Qwen3) -> Result<()> {
        let Some(dir) = self
            .cfg
            .weights_dir
            .as_deref()
            .filter(|_| self.cfg.reload != Reload::None)
        else {
            return Ok(());
        };
        save_hf_dir(
            &model.cfg,
            model.merged_named_parameters(),
            Path::new(dir),
            Kind::Float,
            5 << 30,
        )?;
        let (path, body) = reload_call(self.cfg.reload, dir);
        let reply = self.post(path, &body)?;
        // SGLang answers `{"success": bool, "message": …}`; vLLM's collective_rpc `{"results": …}`.
        if reply.get("success").and_then(Value::as_bool) == Some(false) {
            return Err(self.err(format!("POST {path}: reload failed: {reply}")));
        }
        Ok(())
    }
}

/// The reload endpoint and body of each server.
pub fn reload_call(reload: Reload, dir: &str) -> (&'static str, Value) {
    match reload {
        Reload::Vllm => ("/collective_rpc", json!({ "method": "reload_weights" })),
        Reload::Sglang | Reload::None => {
            ("/update_weights_from_disk", json!({ "model_path": dir }))
        }
    }
}

/// The first 300 characters of a reply, for error messages.
fn snippet(text: &str) -> String {
    let s: String = text.chars().take(300).collect();
    if s.len() < text.len() {
        format!("{s}…")
    } else {
        s
    }
}

/// The choices of a completions reply, checked and ordered: `prompts.len() · n` of them, choice
/// `index` answering prompt `index / n`.
pub fn parse_choices(
    reply: &Value,
    prompts: &[Vec<i64>],
    n: usize,
    vocab_size: usize,
) -> std::result::Result<Vec<ExternalRollout>, String> {
    let choices = reply["choices"]
        .as_array()
        .ok_or("the reply has no `choices` list")?;
    let want = prompts.len() * n;
    if choices.len() != want {
        return Err(format!(
            "{} choices for {} prompts × n = {n} (expected {want})",
            choices.len(),
            prompts.len()
        ));
    }
    let mut rows: Vec<Option<ExternalRollout>> = vec![None; want];
    for (k, c) in choices.iter().enumerate() {
        let index = c["index"].as_u64().map_or(k, |i| i as usize);
        let row = rows
            .get_mut(index)
            .ok_or(format!("choice index {index} is out of range (0..{want})"))?;
        let parsed = choice(c, &prompts[index / n], vocab_size)
            .map_err(|m| format!("choice {index}: {m}"))?;
        if row.replace(parsed).is_some() {
            return Err(format!("choice index {index} appears twice"));
        }
    }
    Ok(rows.into_iter().map(Option::unwrap).collect())
}

/// One choice: its token ids (`token_ids`, else `logprobs.tokens` as `token_id:N`), their
/// log-probs and finish reason.
fn choice(
    c: &Value,
    prompt: &[i64],
    vocab_size: usize,
) -> std::result::Result<ExternalRollout, String> {
    let lp = &c["logprobs"];
    let logprobs: Vec<Option<f64>> = lp["token_logprobs"]
        .as_array()
        .ok_or("no `logprobs.token_logprobs` (request `logprobs`)")?
        .iter()
        .map(Value::as_f64)
        .collect();
    let ids = match c["token_ids"].as_array() {
        Some(ids) => ids.iter().map(Value::as_i64).collect::<Option<Vec<i64>>>(),
        None => lp["tokens"]
            .as_array()
            .ok_or(
                "no `token_ids` and no `logprobs.tokens`: the server must return token ids \
             (vLLM: return_token_ids / return_tokens_as_token_ids)",
            )?
            .iter()
            .map(|t| t.as_str()?.strip_prefix("token_id:")?.parse().ok())
            .collect(),
    }
    .ok_or("token ids are not integers (or `token_id:N` strings)")?;
    check(
        prompt.to_vec(),
        ids,
        logprobs,
        c["finish_reason"].as_str(),
        Some(vocab_size),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> Value {
        // Two prompts × n = 2, out of order; one choice with ids only in `logprobs.tokens`.
        json!({"choices": [
            {"index": 1, "token_ids": [5, 2], "finish_reason": "stop",
             "logprobs": {"token_logprobs": [-0.5, -0.25]}},
            {"index": 0, "token_ids": [4], "finish_reason": "length",
             "logprobs": {"token_logprobs": [-1.0]}},
            {"index": 3, "finish_reason": "stop",
             "logprobs": {"tokens": ["token_id:7", "token_id:2"], "token_logprobs": [-0.1, -0.2]}},
            {"index": 2, "token_ids": [6], "finish_reason": "length",
             "logprobs": {"token_logprobs": [-2.0]}},
        ]})
    }

    #[test]
    fn choices_are_ordered_checked_and_padded() {
        let prompts = vec![vec![1, 2], vec![3]];
        let rows = parse_choices(&reply(), &prompts, 2, 16).unwrap();
        let ids: Vec<Vec<i64>> = rows.iter().map(|r| r.response_ids.clone()).collect();
        assert_eq!(ids, vec![vec![4], vec![5, 2], vec![6], vec![7, 2]]);
        assert_eq!(rows[2].prompt_ids, vec![3]);
        assert!(rows[0].truncated && !rows[1].truncated);
        let ro = to_rollouts(&rows, 0, 3, Device::Cpu);
        assert_eq!(ro.response_ids.size(), [4, 3]);
        assert_eq!(ro.lengths, vec![1, 2, 1, 2]);
        let lp = Vec::<f32>::try_from(ro.rollout_logp.get(3)).unwrap();
        assert_eq!(lp, vec![-0.1, -0.2, 0.0]);
    }

    #[test]
    fn bad_replies_say_what_is_wrong() {
        let prompts = vec![vec![1, 2], vec![3]];
        let cases = [
            (json!({}), "no `choices`"),
            (json!({"choices": []}), "0 choices for 2 prompts"),
        ];
        for (r, want) in cases {
            let e = parse_choices(&r, &prompts, 2, 16).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        let mut r = reply();
        r["choices"][0]["token_ids"] = json!([5, 99]);
        let e = parse_choices(&r, &prompts, 2, 16).unwrap_err();
        assert!(e.contains("choice 1") && e.contains("token id 99"), "{e}");
        let mut r = reply();
        r["choices"][2]["logprobs"]["tokens"] = json!(["a", "b"]);
        let e = parse_choices(&r, &prompts, 2, 16).unwrap_err();
        assert!(e.contains("choice 3") && e.contains("not integers"), "{e}");
        let mut r = reply();
        r["choices"][1]["index"] = json!(1);
        let e = parse_choices(&r, &prompts, 2, 16).unwrap_err();
        assert!(e.contains("appears twice"), "{e}");
    }

    #[test]
    fn request_carries_ids_group_size_and_stop_tokens() {
        let cfg = ServerConfig {
            url: "http://127.0.0.1:1".into(),
            model: "m".into(),
            reload: Reload::Sglang,
            weights_dir: Some("/w".into()),
            timeout_s: 1.0,
        };
        let p = SamplingParams {
            max_new_tokens: 5,
            stop_tokens: vec![2],
            top_k: 3,
            ..SamplingParams::default()
        };
        let b = Client::new(&cfg).request(&[vec![1, 2]], 4, &p, 9);
        assert_eq!(b["prompt"], json!([[1, 2]]));
        assert_eq!(
            (b["n"].clone(), b["max_tokens"].clone()),
            (json!(4), json!(5))
        );
        assert_eq!(b["stop_token_ids"], json!([2]));
        assert_eq!(b["top_k"], json!(3));
        assert_eq!(
            reload_call(Reload::Sglang, "/w"),
            ("/update_weights_from_disk", json!({"model_path": "/w"}))
        );
        assert_eq!(reload_call(Reload::Vllm, "/w").0, "/collective_rpc");
    }

    #[test]
    fn an_unreachable_server_is_named() {
        let cfg = ServerConfig {
            url: "http://127.0.0.1:9".into(),
            model: "m".into(),
            reload: Reload::None,
            weights_dir: None,
            timeout_s: 5.0,
        };
        let e = Client::new(&cfg)
            .complete(&[vec![1]], 1, &SamplingParams::default(), 0, 16)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("http://127.0.0.1:9") && e.contains("/v1/completions"),
            "{e}"
        );
    }
}
