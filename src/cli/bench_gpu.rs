//! GPU-path benchmarks, each printing one JSON line (the Rust side of `benches/gpu/compare.sh`):
//! `bench-train` (forward+backward+AdamW on random tokens), `bench-decode` (batched greedy decode
//! with the KV cache), `bench-moe` (one MoE layer forward+backward, grouped GEMM or per-expert loop).
//! All run on the CPU with tiny shapes too.
use super::bench::peak_rss_mib;
use super::CliResult;
use harness::config::{LoraConfig, OptimConfig};
use harness::model::qwen3_moe::MoeBlock;
use harness::model::recompute::forward_recompute;
use harness::model::{load_model, model_config, MoeImpl, Qwen3Config, RandomInit};
use harness::rollout::sampler::{generate, SamplingParams};
use harness::runtime::{dtype_name, ensure_device, parse_device, parse_dtype};
use harness::train::optim::AdamW;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(clap::Args)]
pub struct Common {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Compute dtype: fp32, bf16 or fp16.
    #[arg(long, default_value = "fp32")]
    dtype: String,
    /// Timed iterations (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// libtorch intra-op threads (CPU).
    #[arg(long)]
    threads: Option<i32>,
}

impl Common {
    fn setup(&self) -> anyhow::Result<(Device, Kind)> {
        if let Some(t) = self.threads {
            tch::set_num_threads(t);
        }
        let device = parse_device(&self.device)?;
        ensure_device(device)?;
        Ok((device, parse_dtype(&self.dtype)?))
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Host tensor → device, through pinned memory and a non-blocking copy on CUDA.
fn upload(t: &Tensor, device: Device) -> Tensor {
    match device {
        Device::Cuda(_) => t
            .pin_memory(device)
            .to_device_(device, t.kind(), true, false),
        Device::Cpu => t.shallow_clone(),
        _ => t.to_device(device),
    }
}

/// Median of `times` after timing `warmup + steps` calls of `f` (device-synchronised).
fn time_it(c: &Common, device: Device, mut f: impl FnMut()) -> f64 {
    let mut times = Vec::with_capacity(c.steps);
    for i in 0..c.warmup + c.steps.max(1) {
        sync(device);
        let t0 = Instant::now();
        f();
        sync(device);
        if i >= c.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Model FLOPs per trained token (forward + backward): `6·N` over the matmul parameters active per
/// token (LM head included, embedding lookup excluded) plus causal attention `6·L·T·heads·head_dim`.
pub fn train_flops_per_token(cfg: &Qwen3Config, seq: i64) -> f64 {
    let (_, active) = cfg.param_counts();
    let embed = (cfg.vocab_size * cfg.hidden_size) as u64;
    let matmul = active - embed + if cfg.tie_word_embeddings { embed } else { 0 };
    let attn = 6.0
        * cfg.num_hidden_layers as f64
        * seq as f64
        * (cfg.num_attention_heads * cfg.head_dim) as f64;
    6.0 * matmul as f64 + attn
}

/// Forward + backward + AdamW step of a preset on random tokens (mean next-token NLL in fp32).
/// Full fine-tuning keeps fp32 master weights and computes in `--dtype`; `--lora-rank` trains
/// q/k/v/o adapters on a frozen `--dtype` base. Prints tokens/s and model FLOPs per token.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Model preset (or HF directory).
    #[arg(long, default_value = "tiny-qwen3")]
    preset: String,
    #[arg(long, default_value_t = 4)]
    batch: i64,
    #[arg(long, default_value_t = 128)]
    seq: i64,
    /// Per-layer activation recompute.
    #[arg(long)]
    recompute: bool,
    /// LoRA rank on q/k/v/o (0 = full fine-tuning).
    #[arg(long, default_value_t = 0)]
    lora_rank: i64,
    /// MoE experts: auto, grouped or loop.
    #[arg(long, default_value = "auto")]
    moe_impl: String,
    /// Run the LM head + loss over chunks of this many positions, each backpropagated at once
    /// (bounds the `[B, T, vocab]` logits' memory); 0 = whole sequence.
    #[arg(long, default_value_t = 0)]
    head_chunk: i64,
    #[command(flatten)]
    common: Common,
}

fn parse_moe_impl(s: &str) -> anyhow::Result<MoeImpl> {
    serde_yaml::from_str::<MoeImpl>(s)
        .map_err(|_| anyhow::anyhow!("unknown MoE implementation `{s}` (auto, grouped, loop)"))
}

pub fn train(a: TrainArgs) -> CliResult {
    let (device, kind) = a.common.setup()?;
    let lora = a.lora_rank > 0;
    let storage = if lora { kind } else { Kind::Float };
    let mut model = load_model(&a.preset, storage, device, 0)?;
    model.set_compute_kind(kind);
    model.moe_impl = parse_moe_impl(&a.moe_impl)?;
    if lora {
        let cfg = LoraConfig {
            rank: a.lora_rank,
            alpha: 2.0 * a.lora_rank as f64,
            targets: ["q_proj", "k_proj", "v_proj", "o_proj"]
                .map(String::from)
                .to_vec(),
        };
        model.attach_lora(&cfg, 1)?;
    } else {
        model.set_requires_grad(true);
    }
    let mut opt = AdamW::new(
        model.trainable_parameters(),
        &OptimConfig {
            lr: 1e-5,
            ..OptimConfig::default()
        },
    );
    tch::manual_seed(0);
    let vocab = model.cfg.vocab_size as i64;
    let ids = upload(
        &Tensor::randint_low(1, vocab, [a.batch, a.seq], (Kind::Int64, Device::Cpu)),
        device,
    );
    let mut last_loss = f64::NAN;
    let s = time_it(&a.common, device, || {
        opt.zero_grad();
        let (out, rc) = if a.recompute {
            let (o, rc) = forward_recompute(&model, &ids, None);
            (o, Some(rc))
        } else {
            (model.forward_hidden(&ids, None, None), None)
        };
        let t = a.seq;
        let targets = ids.narrow(1, 1, t - 1).unsqueeze(-1);
        let hidden = out.hidden.narrow(1, 0, t - 1);
        let n_tok = (a.batch * (t - 1)) as f64;
        let nll_of = |h: &Tensor, tg: &Tensor| {
            let lp = model.logits(h).log_softmax(-1, Kind::Float);
            -lp.gather(-1, tg, false).sum(Kind::Float) / n_tok
        };
        let nll = if a.head_chunk > 0 {
            let h = hidden.detach().set_requires_grad(true);
            let mut total = Tensor::zeros([], (Kind::Float, device));
            let mut s0 = 0;
            while s0 < t - 1 {
                let len = a.head_chunk.min(t - 1 - s0);
                let part = nll_of(&h.narrow(1, s0, len), &targets.narrow(1, s0, len));
                part.backward();
                total += part.detach();
                s0 += len;
            }
            (&hidden * h.grad()).sum(Kind::Float).backward();
            total
        } else {
            let nll = nll_of(&hidden, &targets);
            nll.backward();
            nll
        };
        if let Some(rc) = rc {
            rc.backward();
        }
        opt.step(1e-5);
        // One host sync per step, for the metric.
        last_loss = nll.double_value(&[]);
    });
    let tokens = (a.batch * a.seq) as f64;
    let (total, _) = model.cfg.param_counts();
    println!(
        "{}",
        serde_json::json!({
            "bench": "train", "impl": "harness", "preset": a.preset, "device": a.common.device,
            "dtype": dtype_name(kind), "batch": a.batch, "seq": a.seq, "recompute": a.recompute,
            "lora_rank": a.lora_rank, "head_chunk": a.head_chunk, "s_per_step": s, "tokens_per_s": tokens / s,
            "flops_per_token": train_flops_per_token(&model.cfg, a.seq), "params": total,
            "loss": last_loss, "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

/// Batched greedy decode of a preset from random prompts with the KV cache (the rollout sampler),
/// no early stop. Prints generated tokens/s.
#[derive(clap::Args)]
pub struct DecodeArgs {
    #[arg(long, default_value = "tiny-qwen3")]
    preset: String,
    #[arg(long, default_value_t = 8)]
    batch: i64,
    #[arg(long, default_value_t = 16)]
    prompt_len: i64,
    #[arg(long, default_value_t = 32)]
    new_tokens: usize,
    #[command(flatten)]
    common: Common,
}

pub fn decode(a: DecodeArgs) -> CliResult {
    let (device, kind) = a.common.setup()?;
    let model = load_model(&a.preset, kind, device, 0)?;
    tch::manual_seed(0);
    let vocab = model.cfg.vocab_size as i64;
    let prompts: Vec<Vec<i64>> = (0..a.batch)
        .map(|_| {
            Vec::<i64>::try_from(Tensor::randint_low(
                1,
                vocab,
                [a.prompt_len],
                (Kind::Int64, Device::Cpu),
            ))
            .unwrap()
        })
        .collect();
    let params = SamplingParams {
        max_new_tokens: a.new_tokens,
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        stop_tokens: vec![],
        pad_token: 0,
        ..SamplingParams::default()
    };
    let mut generated = 0i64;
    let s = time_it(&a.common, device, || {
        let ro = generate(&model, &prompts, &params);
        generated = ro.response_mask.sum(Kind::Int64).int64_value(&[]);
    });
    println!(
        "{}",
        serde_json::json!({
            "bench": "decode", "impl": "harness", "preset": a.preset, "device": a.common.device,
            "dtype": dtype_name(kind), "batch": a.batch, "prompt_len": a.prompt_len,
            "new_tokens": a.new_tokens, "generated": generated, "s": s,
            "tokens_per_s": generated as f64 / s, "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

/// One Qwen3-MoE sparse block (router, top-k, SwiGLU experts) forward + backward on random
/// activations, with grouped GEMM or the per-expert loop. Defaults: a Qwen3-30B-A3B layer.
#[derive(clap::Args)]
pub struct MoeArgs {
    #[arg(long, default_value_t = 2048)]
    hidden: usize,
    #[arg(long, default_value_t = 128)]
    experts: usize,
    #[arg(long, default_value_t = 8)]
    top_k: usize,
    /// Expert width (moe_intermediate_size).
    #[arg(long, default_value_t = 768)]
    inter: usize,
    /// Tokens in the batch.
    #[arg(long, default_value_t = 16384)]
    tokens: i64,
    /// grouped or loop.
    #[arg(long, default_value = "grouped")]
    r#impl: String,
    #[command(flatten)]
    common: Common,
}

pub fn moe(a: MoeArgs) -> CliResult {
    let (device, kind) = a.common.setup()?;
    let moe_impl = parse_moe_impl(&a.r#impl)?;
    let mut cfg = model_config("qwen3-30b-a3b")?;
    cfg.hidden_size = a.hidden;
    let m = cfg.moe.as_mut().unwrap();
    m.num_experts = a.experts;
    m.num_experts_per_tok = a.top_k;
    m.moe_intermediate_size = a.inter;
    let block = MoeBlock::from_source(&cfg, "mlp", &mut RandomInit::new(0, kind, device))?;
    for (_, p) in block.named_parameters() {
        let _ = p.set_requires_grad(true);
    }
    let x = (Tensor::randn([1, a.tokens, a.hidden as i64], (Kind::Float, device)))
        .to_kind(kind)
        .set_requires_grad(true);
    let g = Tensor::randn([1, a.tokens, a.hidden as i64], (Kind::Float, device)).to_kind(kind);
    let s = time_it(&a.common, device, || {
        let (y, _) = block.forward(&x, 0.0, None, moe_impl);
        (y * &g).sum(Kind::Float).backward();
    });
    let flops = 6.0 * (3 * a.hidden * a.inter * a.top_k) as f64 * a.tokens as f64;
    println!(
        "{}",
        serde_json::json!({
            "bench": "moe", "impl": format!("harness-{}", a.r#impl), "device": a.common.device,
            "dtype": dtype_name(kind), "hidden": a.hidden, "experts": a.experts, "top_k": a.top_k,
            "inter": a.inter, "tokens": a.tokens, "s": s, "tokens_per_s": a.tokens as f64 / s,
            "expert_tflops": flops / s / 1e12,
        })
    );
    Ok(())
}
