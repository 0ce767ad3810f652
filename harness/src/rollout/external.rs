//! Rollouts produced by a real engine (vLLM, SGLang): JSONL lines
//! `{"prompt_ids": [...], "response_ids": [...], "logprobs": [...]}` (optionally `"finish_reason"`).
use super::sampler::{left_pad, FinishReason, Rollouts};
use crate::{Error, Result};
use std::io::BufRead;
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    prompt_ids: Vec<i64>,
    response_ids: Vec<i64>,
    logprobs: Option<Vec<Option<f64>>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// Read external rollouts, checking ids against `vocab_size` and that every response token has a
/// finite log-prob ≤ 0. Responses are right-padded to the longest one (or `width` if larger).
pub fn read_external(
    path: &Path,
    vocab_size: usize,
    pad: i64,
    width: usize,
    device: Device,
) -> Result<Rollouts> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let l: Line =
            serde_json::from_str(&line).map_err(|e| Error::Input(format!("{at}: {e}")))?;
        let lp = l
            .logprobs
            .ok_or_else(|| Error::Input(format!("{at}: missing `logprobs`")))?;
        if lp.len() != l.response_ids.len() {
            return Err(Error::Input(format!(
                "{at}: {} logprobs for {} response tokens (misaligned)",
                lp.len(),
                l.response_ids.len()
            )));
        }
        if l.prompt_ids.is_empty() || l.response_ids.is_empty() {
            return Err(Error::Input(format!("{at}: empty prompt or response")));
        }
        for (what, ids) in [
            ("prompt_ids", &l.prompt_ids),
            ("response_ids", &l.response_ids),
        ] {
            if let Some(bad) = ids.iter().find(|&&t| t < 0 || t as usize >= vocab_size) {
                return Err(Error::Input(format!(
                    "{at}: {what} has token id {bad} outside the vocabulary (0..{vocab_size})"
                )));
            }
        }
        let lp = lp
            .into_iter()
            .enumerate()
            .map(|(j, x)| match x {
                Some(v) if v.is_finite() && v <= 1e-6 => Ok(v),
                _ => Err(Error::Input(format!(
                    "{at}: logprobs[{j}] is missing, not finite or positive"
                ))),
            })
            .collect::<Result<Vec<f64>>>()?;
        let finish = match l.finish_reason.as_deref() {
            None | Some("stop") => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            Some(other) => {
                return Err(Error::Input(format!(
                    "{at}: unknown finish_reason `{other}`"
                )))
            }
        };
        rows.push((l.prompt_ids, l.response_ids, lp, finish));
    }
    if rows.is_empty() {
        return Err(Error::Input(format!("{}: no rollouts", path.display())));
    }
    let r = rows.iter().map(|x| x.1.len()).max().unwrap().max(width);
    let prompts: Vec<Vec<i64>> = rows.iter().map(|x| x.0.clone()).collect();
    let (prompt_ids, prompt_mask) = left_pad(&prompts, pad, device);
    let (mut ids, mut mask, mut lps) = (vec![], vec![], vec![]);
    for (_, resp, lp, _) in &rows {
        let extra = r - resp.len();
        ids.extend(resp.iter().copied().chain(std::iter::repeat_n(pad, extra)));
        mask.extend(std::iter::repeat_n(1f32, resp.len()).chain(std::iter::repeat_n(0.0, extra)));
        lps.extend(
            lp.iter()
                .map(|&x| x as f32)
                .chain(std::iter::repeat_n(0.0, extra)),
        );
    }
    let shape = [rows.len() as i64, r as i64];
    Ok(Rollouts {
        prompt_ids,
        prompt_mask,
        response_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
        response_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
        rollout_logp: Tensor::from_slice(&lps)
            .view(shape)
            .to_kind(Kind::Float)
            .to_device(device),
        topk: None,
        engine_experts: vec![],
        lengths: rows.iter().map(|x| x.1.len()).collect(),
        finish: rows.iter().map(|x| x.3).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), lines).unwrap();
        f
    }

    #[test]
    fn reads_and_pads() {
        let f = write(
            "{\"prompt_ids\":[1,2],\"response_ids\":[3,4,5],\"logprobs\":[-0.1,-0.2,-0.3]}\n\
             {\"prompt_ids\":[7],\"response_ids\":[9],\"logprobs\":[-1.5],\"finish_reason\":\"length\"}\n",
        );
        let r = read_external(f.path(), 16, 0, 0, Device::Cpu).unwrap();
        assert_eq!(r.response_ids.size(), [2, 3]);
        assert_eq!(r.lengths, vec![3, 1]);
        assert_eq!(r.finish, vec![FinishReason::Stop, FinishReason::Length]);
        assert_eq!(
            Vec::<f32>::try_from(r.response_mask.get(1)).unwrap(),
            vec![1.0, 0.0, 0.0]
        );
        assert_eq!(
            Vec::<i64>::try_from(r.prompt_mask.get(1)).unwrap(),
            vec![0, 1]
        );
    }

    #[test]
    fn clear_errors_for_bad_lines() {
        let cases = [
            (
                "{\"prompt_ids\":[1],\"response_ids\":[3,4]}",
                "missing `logprobs`",
            ),
            (
                "{\"prompt_ids\":[1],\"response_ids\":[3,4],\"logprobs\":[-0.1]}",
                "misaligned",
            ),
            (
                "{\"prompt_ids\":[1],\"response_ids\":[3,40],\"logprobs\":[-0.1,-0.1]}",
                "token id 40",
            ),
            (
                "{\"prompt_ids\":[1],\"response_ids\":[3],\"logprobs\":[null]}",
                "logprobs[0]",
            ),
            (
                "{\"prompt_ids\":[1],\"response_ids\":[3],\"logprobs\":[0.5]}",
                "positive",
            ),
        ];
        for (line, want) in cases {
            let f = write(&format!("{line}\n"));
            let e = read_external(f.path(), 16, 0, 0, Device::Cpu)
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains(want) && e.contains(":1:"),
                "{e} should mention {want}"
            );
        }
    }
}
