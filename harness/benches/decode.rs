//! Decode cost with and without the KV cache on the tiny preset (CPU, fp32, batch 8): with the cache
//! each new token is one single-position forward (time linear in the response length); without it
//! the whole sequence is re-encoded for every token (quadratic).
//!
//!   cargo bench -p harness --bench decode            # release build
//!   cargo bench --profile dev -p harness --bench decode  # reuses the test build's dependencies
//!
//! Intra-op threads: `HARNESS_BENCH_THREADS` (default 1, the only setting that stays meaningful on
//! a busy machine; libtorch's OpenMP threads spin when they share cores).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use harness::model::{load_model, Qwen3};
use harness::rollout::{generate, SamplingParams};
use tch::{Device, Kind, Tensor};

fn without_cache(model: &Qwen3, prompts: &Tensor, new_tokens: i64) -> Tensor {
    let _g = tch::no_grad_guard();
    let mut seq = prompts.shallow_clone();
    for _ in 0..new_tokens {
        let logits = model.forward(&seq, None, None).logits.select(1, -1);
        let tok = logits.softmax(-1, Kind::Float).multinomial(1, false);
        seq = Tensor::cat(&[&seq, &tok], 1);
    }
    seq
}

fn bench(c: &mut Criterion) {
    let threads = std::env::var("HARNESS_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    tch::set_num_threads(threads);
    let model = load_model("tiny-qwen3", Kind::Float, Device::Cpu, 0).unwrap();
    let prompts: Vec<Vec<i64>> = (0..8)
        .map(|i| (0..8).map(|j| 3 + (i * 5 + j) % 60).collect())
        .collect();
    let flat: Vec<i64> = prompts.iter().flatten().copied().collect();
    let prompt_t = Tensor::from_slice(&flat).view([8, 8]);
    let mut g = c.benchmark_group("decode_tiny_qwen3_b8");
    g.sample_size(10);
    for len in [16i64, 32, 64, 128] {
        g.throughput(Throughput::Elements((8 * len) as u64));
        let params = SamplingParams {
            max_new_tokens: len as usize,
            ..SamplingParams::default()
        };
        g.bench_with_input(BenchmarkId::new("kv_cache", len), &len, |b, _| {
            b.iter(|| generate(&model, &prompts, &params))
        });
        g.bench_with_input(BenchmarkId::new("no_cache", len), &len, |b, &l| {
            b.iter(|| without_cache(&model, &prompt_t, l))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
