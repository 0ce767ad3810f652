//! `harness logprobs`: per-token log-probabilities of token sequences (parity checks, scoring).
use super::{CliResult, Failure};
use anyhow::Context;
use harness::model::{load_model, next_token_logprobs};
use harness::rollout::sampler::left_pad;
use harness::runtime::{ensure_device, parse_device, parse_dtype};
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use tch::Kind;

/// Score token sequences: each input line `{"tokens": [ids…]}` gives an output line
/// `{"logprobs": [...]}` with log p(token_i | tokens_<i) for i = 1..n (length n−1).
#[derive(clap::Args)]
pub struct Args {
    /// A local Hugging Face model directory, or a preset (random weights from --seed).
    #[arg(long)]
    model: String,
    /// JSONL input, one `{"tokens": [...]}` per line.
    #[arg(long)]
    input: PathBuf,
    /// JSONL output path.
    #[arg(long)]
    out: PathBuf,
    /// Compute dtype: fp32, bf16 or fp16.
    #[arg(long, default_value = "fp32")]
    dtype: String,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Sequences per forward pass (left-padded).
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Seed for presets' random weights.
    #[arg(long, default_value_t = 0)]
    seed: i64,
}

#[derive(serde::Deserialize)]
struct Line {
    tokens: Vec<i64>,
}

pub fn run(a: Args) -> CliResult {
    let kind = parse_dtype(&a.dtype)?;
    let device = parse_device(&a.device)?;
    ensure_device(device)?;
    let file = std::fs::File::open(&a.input)
        .with_context(|| format!("reading {}", a.input.display()))
        .map_err(Failure::bad_input)?;
    let mut seqs = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", a.input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line)
            .with_context(|| {
                format!(
                    "{}:{}: expected {{\"tokens\": [ids…]}}",
                    a.input.display(),
                    i + 1
                )
            })
            .map_err(Failure::bad_input)?;
        if l.tokens.len() < 2 {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "{}:{}: need at least 2 tokens",
                a.input.display(),
                i + 1
            )));
        }
        seqs.push((i + 1, l.tokens));
    }
    let model = load_model(&a.model, kind, device, a.seed)
        .with_context(|| format!("loading model {}", a.model))?;
    let vocab = model.cfg.vocab_size as i64;
    for (line_no, toks) in &seqs {
        if let Some(bad) = toks.iter().find(|&&t| t < 0 || t >= vocab) {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "{}:{line_no}: token id {bad} outside the vocabulary (0..{vocab})",
                a.input.display()
            )));
        }
    }
    let out =
        std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut w = BufWriter::new(out);
    let _guard = tch::no_grad_guard();
    for chunk in seqs.chunks(a.batch_size.max(1)) {
        let max = chunk.iter().map(|(_, t)| t.len()).max().unwrap();
        let rows: Vec<Vec<i64>> = chunk.iter().map(|(_, t)| t.clone()).collect();
        let (ids, mask) = left_pad(&rows, 0, device);
        let padded = chunk.iter().any(|(_, t)| t.len() != max);
        let logits = model.forward(&ids, padded.then_some(&mask), None).logits;
        let lp = next_token_logprobs(&logits, &ids)
            .to_kind(Kind::Double)
            .to_device(tch::Device::Cpu);
        for (r, (_, t)) in chunk.iter().enumerate() {
            let n = t.len() as i64 - 1;
            let row = lp.get(r as i64).narrow(0, max as i64 - 1 - n, n);
            let v = Vec::<f64>::try_from(row)?;
            writeln!(w, "{}", serde_json::json!({ "logprobs": v }))?;
        }
    }
    w.flush()?;
    eprintln!("wrote {} line(s) to {}", seqs.len(), a.out.display());
    Ok(())
}
