//! The file `rollout.engine.external` names: rollouts produced by a real engine (vLLM, SGLang), one
//! JSON object per line, `{"prompt_ids": [...], "response_ids": [...], "logprobs": [...]}`
//! (optionally `"finish_reason": "stop" | "length"`). Blank lines are skipped. Parsed here, once,
//! for both `validate` (every bad line at once) and the engine that reads it.
use std::path::Path;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    prompt_ids: Vec<i64>,
    response_ids: Vec<i64>,
    logprobs: Option<Vec<Option<f64>>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// One checked line.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalRollout {
    pub prompt_ids: Vec<i64>,
    pub response_ids: Vec<i64>,
    /// One per response token, finite and ≤ 0.
    pub logprobs: Vec<f64>,
    /// `finish_reason: length` (truncated); `stop` or absent otherwise.
    pub truncated: bool,
}

/// A problem on one line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub msg: String,
}

/// Parse the file's text. `vocab_size`, when known, bounds the token ids. Every bad line is
/// reported (with its number), not only the first.
pub fn parse(
    text: &str,
    vocab_size: Option<usize>,
) -> Result<Vec<ExternalRollout>, Vec<LineError>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line, vocab_size) {
            Ok(r) => rows.push(r),
            Err(msg) => errors.push(LineError { line: i + 1, msg }),
        }
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(LineError {
            line: 0,
            msg: "no rollouts (the file is empty)".into(),
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

fn parse_line(line: &str, vocab_size: Option<usize>) -> Result<ExternalRollout, String> {
    let l: Line = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let lp = l.logprobs.ok_or("missing `logprobs`")?;
    check(
        l.prompt_ids,
        l.response_ids,
        lp,
        l.finish_reason.as_deref(),
        vocab_size,
    )
}

/// One rollout as an engine reported it (from this file or a server's response), checked: ids in
/// the vocabulary, one finite log-prob ≤ 0 per response token, a known finish reason.
pub fn check(
    prompt_ids: Vec<i64>,
    response_ids: Vec<i64>,
    lp: Vec<Option<f64>>,
    finish_reason: Option<&str>,
    vocab_size: Option<usize>,
) -> Result<ExternalRollout, String> {
    if lp.len() != response_ids.len() {
        return Err(format!(
            "{} logprobs for {} response tokens (misaligned)",
            lp.len(),
            response_ids.len()
        ));
    }
    if prompt_ids.is_empty() || response_ids.is_empty() {
        return Err("empty prompt or response".into());
    }
    for (what, ids) in [("prompt_ids", &prompt_ids), ("response_ids", &response_ids)] {
        let outside = |t: i64| t < 0 || vocab_size.is_some_and(|v| t as usize >= v);
        if let Some(bad) = ids.iter().find(|&&t| outside(t)) {
            let range = vocab_size
                .map(|v| format!("0..{v}"))
                .unwrap_or("≥ 0".into());
            return Err(format!(
                "{what} has token id {bad} outside the vocabulary ({range})"
            ));
        }
    }
    let logprobs = lp
        .into_iter()
        .enumerate()
        .map(|(j, x)| match x {
            Some(v) if v.is_finite() && v <= 1e-6 => Ok(v),
            _ => Err(format!("logprobs[{j}] is missing, not finite or positive")),
        })
        .collect::<Result<Vec<f64>, String>>()?;
    let truncated = match finish_reason {
        None | Some("stop") => false,
        Some("length") => true,
        Some(other) => return Err(format!("unknown finish_reason `{other}`")),
    };
    Ok(ExternalRollout {
        prompt_ids,
        response_ids,
        logprobs,
        truncated,
    })
}

/// Read and parse a file; errors are `file:line: message`.
pub fn read(path: &Path, vocab_size: Option<usize>) -> Result<Vec<ExternalRollout>, Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    parse(&text, vocab_size).map_err(|errs| describe(path, &errs))
}

/// `file:line: message` for each error (`file: message` for the whole file).
pub fn describe(path: &Path, errs: &[LineError]) -> Vec<String> {
    errs.iter()
        .map(|e| match e.line {
            0 => format!("{}: {}", path.display(), e.msg),
            n => format!("{}:{n}: {}", path.display(), e.msg),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "{\"prompt_ids\":[1],\"response_ids\":[3,4],\"logprobs\":[-0.1,-0.2]}\n\
                    \n\
                    {\"prompt_ids\":[1],\"response_ids\":[3,4]}\n\
                    {\"prompt_ids\":[1],\"response_ids\":[3,40],\"logprobs\":[-0.1,-0.1]}\n\
                    not json\n\
                    {\"prompt_ids\":[1],\"response_ids\":[3],\"logprobs\":[0.5],\"finish_reason\":\"length\"}\n";
        let errs = parse(text, Some(16)).unwrap_err();
        let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.msg.as_str())).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], (3, "missing `logprobs`"));
        assert!(got[1].0 == 4 && got[1].1.contains("token id 40"), "{got:?}");
        assert!(got[2].0 == 5 && got[2].1.contains("expected"), "{got:?}");
        assert!(got[3].0 == 6 && got[3].1.contains("positive"), "{got:?}");
        // Without a vocabulary size only negative ids are out of range.
        let ok = parse(
            "{\"prompt_ids\":[1],\"response_ids\":[99],\"logprobs\":[-1.0],\"finish_reason\":\"length\"}",
            None,
        )
        .unwrap();
        assert!(ok[0].truncated);
        assert!(parse("\n\n", None).is_err());
    }
}
