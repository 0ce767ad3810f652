//! Rollouts produced by a real engine (vLLM, SGLang): JSONL lines
//! `{"prompt_ids": [...], "response_ids": [...], "logprobs": [...]}` (optionally `"finish_reason"`),
//! as tensors. [`to_rollouts`] is shared with the server engine ([`super::server`]).
use super::sampler::{left_pad, FinishReason, Rollouts};
use crate::config::external::{self, ExternalRollout};
use crate::{Error, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Read external rollouts (format and checks: [`crate::config::external`], every bad line
/// reported), checking ids against `vocab_size`. Responses are right-padded to the longest one (or
/// `width` if larger).
pub fn read_external(
    path: &Path,
    vocab_size: usize,
    pad: i64,
    width: usize,
    device: Device,
) -> Result<Rollouts> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let rows = external::parse(&text, Some(vocab_size))
        .map_err(|errs| Error::Input(external::describe(path, &errs).join("\n")))?;
    Ok(to_rollouts(&rows, pad, width, device))
}

/// Checked engine rollouts (at least one) as a [`Rollouts`] batch: prompts left-padded, responses
/// right-padded to the longest one (or `width` if larger), log-probs 0 where masked.
pub fn to_rollouts(rows: &[ExternalRollout], pad: i64, width: usize, device: Device) -> Rollouts {
    let r = rows
        .iter()
        .map(|x| x.response_ids.len())
        .max()
        .unwrap()
        .max(width);
    let prompts: Vec<Vec<i64>> = rows.iter().map(|x| x.prompt_ids.clone()).collect();
    let (prompt_ids, prompt_mask) = left_pad(&prompts, pad, device);
    let (mut ids, mut mask, mut lps) = (vec![], vec![], vec![]);
    for row in rows {
        let (resp, lp) = (&row.response_ids, &row.logprobs);
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
    let finish = |x: &ExternalRollout| {
        if x.truncated {
            FinishReason::Length
        } else {
            FinishReason::Stop
        }
    };
    Rollouts {
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
        lengths: rows.iter().map(|x| x.response_ids.len()).collect(),
        finish: rows.iter().map(finish).collect(),
    }
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
