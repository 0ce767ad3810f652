//! `harness logprobs`: per-token log-probabilities of token sequences (parity checks, scoring).
use super::{CliResult, Failure};
use anyhow::{anyhow, Context};
use harness::model::{load_model, next_token_logprobs, Qwen3};
use harness::rollout::sampler::left_pad;
use harness::runtime::{ensure_device, parse_device, parse_dtype};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// Score token sequences: input line k `{"tokens": [ids…]}` gives output line k
/// `{"logprobs": [...]}` with log p(token_i | tokens_<i) for i = 1..n (length n−1, so `[]` for a
/// one-token line). Blank lines are refused (naming the line), except at the end of the file.
/// Sequences longer than the model's max_position_embeddings are refused unless --allow-long.
/// The output is written to a temporary file beside --out and renamed when complete.
#[derive(clap::Args)]
pub struct Args {
    /// A local Hugging Face model directory, a Hub id in the local cache, or a preset (random
    /// weights from --seed).
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
    /// Sequences per forward pass (left-padded), at least 1.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Seed for presets' random weights.
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// Score sequences longer than the model's max_position_embeddings anyway (with a warning).
    #[arg(long)]
    allow_long: bool,
}

#[derive(serde::Deserialize)]
struct Line {
    tokens: Vec<i64>,
}

/// The token sequences of `input`, one per line (line k of the file is entry k − 1).
fn read_input(input: &Path) -> Result<Vec<Vec<i64>>, Failure> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("reading {}", input.display()))
        .map_err(Failure::bad_input)?;
    let lines: Vec<&str> = text.lines().collect();
    // Trailing blank lines are not records; any other blank line would shift the output.
    let n = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1);
    let mut seqs = Vec::with_capacity(n);
    for (i, line) in lines[..n].iter().enumerate() {
        let at = format!("{}:{}", input.display(), i + 1);
        if line.trim().is_empty() {
            return Err(Failure::bad_input(anyhow!(
                "{at}: blank line (output line k answers input line k, so every line up to the \
                 last must be {{\"tokens\": [ids…]}})"
            )));
        }
        let l: Line = serde_json::from_str(line)
            .with_context(|| format!("{at}: expected {{\"tokens\": [ids…]}}"))
            .map_err(Failure::bad_input)?;
        seqs.push(l.tokens);
    }
    Ok(seqs)
}

/// Refuse token ids outside the vocabulary and (unless `allow_long`) sequences longer than the
/// model's context, naming the lines.
fn check_fits(seqs: &[Vec<i64>], model: &Qwen3, input: &Path, allow_long: bool) -> CliResult {
    let vocab = model.cfg.vocab_size as i64;
    for (i, toks) in seqs.iter().enumerate() {
        if let Some(bad) = toks.iter().find(|&&t| t < 0 || t >= vocab) {
            return Err(Failure::bad_input(anyhow!(
                "{}:{}: token id {bad} outside the vocabulary (0..{vocab})",
                input.display(),
                i + 1
            )));
        }
    }
    let max = model.cfg.max_position_embeddings;
    let long: Vec<String> = seqs
        .iter()
        .enumerate()
        .filter(|(_, t)| t.len() > max)
        .map(|(i, t)| format!("line {} ({} tokens)", i + 1, t.len()))
        .collect();
    if long.is_empty() {
        return Ok(());
    }
    let shown = long.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    let what = format!(
        "{}: {} sequence(s) longer than the model's max_position_embeddings {max}: {shown}{}",
        input.display(),
        long.len(),
        if long.len() > 5 { ", …" } else { "" }
    );
    if allow_long {
        eprintln!("warning: {what}; scoring them anyway (--allow-long)");
        Ok(())
    } else {
        Err(Failure::bad_input(anyhow!(
            "{what}; pass --allow-long to score them anyway"
        )))
    }
}

/// Log-probs of each sequence (at least 2 tokens each) in one left-padded forward pass.
fn score(model: &Qwen3, rows: &[&Vec<i64>], device: Device) -> anyhow::Result<Vec<Vec<f64>>> {
    let max = rows.iter().map(|t| t.len()).max().unwrap_or(0);
    let owned: Vec<Vec<i64>> = rows.iter().map(|t| t.to_vec()).collect();
    let (ids, mask) = left_pad(&owned, 0, device);
    let padded = rows.iter().any(|t| t.len() != max);
    let logits = model.forward(&ids, padded.then_some(&mask), None).logits;
    let lp = next_token_logprobs(&logits, &ids)
        .to_kind(Kind::Double)
        .to_device(Device::Cpu);
    rows.iter()
        .enumerate()
        .map(|(r, t)| {
            let n = t.len() as i64 - 1;
            let row = lp.get(r as i64).narrow(0, max as i64 - 1 - n, n);
            Ok(Vec::<f64>::try_from(row)?)
        })
        .collect()
}

/// The output file while it is written: removed unless [`Partial::finish`] renames it.
struct Partial {
    tmp: PathBuf,
    done: bool,
}

impl Partial {
    fn create(out: &Path) -> Result<(Self, std::fs::File), Failure> {
        if out.is_dir() {
            return Err(Failure::bad_input(anyhow!(
                "--out {} is a directory: give a file path",
                out.display()
            )));
        }
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = out.with_file_name(format!(
            ".{}.partial",
            name.unwrap_or_else(|| "logprobs".into())
        ));
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("--out {}: cannot write there", out.display()))
            .map_err(Failure::bad_input)?;
        Ok((Partial { tmp, done: false }, file))
    }

    fn finish(mut self, out: &Path) -> anyhow::Result<()> {
        std::fs::rename(&self.tmp, out).with_context(|| format!("writing {}", out.display()))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

pub fn run(a: Args) -> CliResult {
    let kind = parse_dtype(&a.dtype)?;
    let device = parse_device(&a.device)?;
    ensure_device(device)?;
    let seqs = read_input(&a.input)?;
    // Before the (possibly long) model load: an unwritable --out is the user's to fix.
    let (partial, file) = Partial::create(&a.out)?;
    let model = load_model(&a.model, kind, device, a.seed)
        .with_context(|| format!("loading model {}", a.model))?;
    check_fits(&seqs, &model, &a.input, a.allow_long)?;
    let mut w = BufWriter::new(file);
    let _guard = tch::no_grad_guard();
    for chunk in seqs.chunks(a.batch_size as usize) {
        // Fewer than two tokens: no next-token log-prob to give.
        let rows: Vec<&Vec<i64>> = chunk.iter().filter(|t| t.len() >= 2).collect();
        let mut scored = if rows.is_empty() {
            vec![]
        } else {
            score(&model, &rows, device)?
        }
        .into_iter();
        for t in chunk {
            let v = if t.len() >= 2 {
                scored.next().unwrap_or_default()
            } else {
                vec![]
            };
            writeln!(w, "{}", serde_json::json!({ "logprobs": v }))?;
        }
    }
    w.flush()?;
    drop(w);
    partial.finish(&a.out)?;
    eprintln!("wrote {} line(s) to {}", seqs.len(), a.out.display());
    Ok(())
}
