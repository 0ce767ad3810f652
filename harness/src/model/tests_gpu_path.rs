//! LoRA, activation recompute, grouped-GEMM MoE and bf16 compute on the CPU (the GPU path's
//! CPU-testable side).
use super::lora::LoraConfig;
use super::recompute::forward_recompute;
use super::*;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

pub(super) fn tiny(name: &str) -> Qwen3 {
    load_model(name, Kind::Float, Device::Cpu, 0).unwrap()
}

pub(super) fn lora_cfg(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: targets.iter().map(|s| s.to_string()).collect(),
    }
}

pub(super) const ALL: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Left-padded batch: `[3, 12]` ids and mask (rows with 0, 3 and 5 pads).
pub(super) fn padded_batch(vocab: i64) -> (Tensor, Tensor) {
    let ids = Tensor::randint_low(1, vocab, [3, 12], (Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([3, 12], (Kind::Int64, Device::Cpu));
    let _ = mask.get(1).narrow(0, 0, 3).fill_(0);
    let _ = mask.get(2).narrow(0, 0, 5).fill_(0);
    (ids, mask)
}

pub(super) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Give every adapter's `B` random values (a fresh adapter is a no-op).
pub(super) fn randomise_b(m: &Qwen3) {
    tch::no_grad(|| {
        for (n, mut t) in m.lora_parameters() {
            if n.contains("lora_B") {
                t.copy_(&(t.randn_like() * 0.05));
            }
        }
    });
}

#[test]
fn lora_with_zero_b_matches_the_base_model() {
    let _rng = crate::rng_lock();
    let mut m = tiny("tiny-qwen3");
    let (ids, mask) = padded_batch(m.cfg.vocab_size as i64);
    let base = tch::no_grad(|| m.forward(&ids, Some(&mask), None).logits);
    m.attach_lora(&lora_cfg(ALL), 7).unwrap();
    assert_eq!(m.lora_parameters().len(), 2 * 7 * m.cfg.num_hidden_layers);
    let with = tch::no_grad(|| m.forward(&ids, Some(&mask), None).logits);
    assert_eq!(max_diff(&base, &with), 0.0);
    // A is kaiming-uniform: non-zero, within ±1/√in.
    let (_, a) = &m.lora_parameters()[0];
    let bound = 1.0 / (m.cfg.hidden_size as f64).sqrt();
    let amax = a.abs().max().double_value(&[]);
    assert!(amax > 0.5 * bound && amax <= bound, "{amax} vs {bound}");
}

#[test]
fn lora_gradients_reach_only_the_adapters() {
    let _rng = crate::rng_lock();
    let mut m = tiny("tiny-qwen3");
    m.attach_lora(&lora_cfg(&["q_proj", "v_proj", "down_proj"]), 7)
        .unwrap();
    randomise_b(&m);
    let (ids, mask) = padded_batch(m.cfg.vocab_size as i64);
    let out = m.forward(&ids, Some(&mask), None);
    out.logits.square().mean(Kind::Float).backward();
    for (n, p) in m.named_parameters() {
        assert!(!p.requires_grad(), "{n} is not frozen");
        assert!(!p.grad().defined(), "{n} got a gradient");
    }
    let adapters = m.lora_parameters();
    assert_eq!(adapters.len(), 2 * 3 * m.cfg.num_hidden_layers);
    for (n, p) in adapters {
        let g = p.grad();
        assert!(
            g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "{n}"
        );
    }
    assert_eq!(m.trainable_parameters().len(), 6 * m.cfg.num_hidden_layers);
}

#[test]
fn merged_weights_give_the_adapter_forward() {
    let _rng = crate::rng_lock();
    for name in ["tiny-qwen3", "tiny-qwen3-moe"] {
        let mut m = tiny(name);
        m.attach_lora(&lora_cfg(ALL), 3).unwrap();
        randomise_b(&m);
        let (ids, mask) = padded_batch(m.cfg.vocab_size as i64);
        let want = tch::no_grad(|| m.forward(&ids, Some(&mask), None).logits);
        let mut plain =
            Qwen3::from_source(&m.cfg, &mut RandomInit::zeros(Kind::Float, Device::Cpu)).unwrap();
        plain.copy_weights_from(&m);
        let got = tch::no_grad(|| plain.forward(&ids, Some(&mask), None).logits);
        let base = tch::no_grad(|| {
            let b = tiny(name);
            b.forward(&ids, Some(&mask), None).logits
        });
        assert!(
            max_diff(&want, &base) > 1e-3,
            "{name}: adapters changed nothing"
        );
        let d = max_diff(&want, &got);
        assert!(d < 1e-5, "{name}: merged vs adapter forward {d:e}");
    }
}

#[test]
fn lora_rejects_targets_that_match_nothing() {
    let _rng = crate::rng_lock(); // attach_lora seeds the global RNG
    let mut m = tiny("tiny-qwen3");
    let e = m
        .attach_lora(&lora_cfg(&["q_proj", "qkv_proj"]), 1)
        .unwrap_err();
    assert!(
        e.to_string().contains("`qkv_proj` matches no projection"),
        "{e}"
    );
}

/// `m`'s PEFT adapter directory (kept while the handle lives) and its safetensors bytes.
pub(super) fn save_peft(m: &Qwen3, cfg: &LoraConfig) -> (tempfile::TempDir, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    m.save_peft_adapter(cfg, "base", tmp.path()).unwrap();
    let bytes = std::fs::read(tmp.path().join("adapter_model.safetensors")).unwrap();
    (tmp, bytes)
}

/// The tensors of a PEFT adapter directory, by name.
pub(super) fn read_adapters(dir: &std::path::Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir.join("adapter_model.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn peft_adapter_dir_has_peft_names_shapes_and_config() {
    let _rng = crate::rng_lock();
    let mut m = tiny("tiny-qwen3");
    let cfg = lora_cfg(&["q_proj", "o_proj"]);
    m.attach_lora(&cfg, 1).unwrap();
    randomise_b(&m);
    let (tmp, bytes) = save_peft(&m, &cfg);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (h, q) = (
        m.cfg.hidden_size,
        m.cfg.num_attention_heads * m.cfg.head_dim,
    );
    let p = "base_model.model.model.layers.1.self_attn";
    let shape = |n: &str| st.tensor(n).unwrap().shape().to_vec();
    assert_eq!(shape(&format!("{p}.q_proj.lora_A.weight")), vec![4, h]);
    assert_eq!(shape(&format!("{p}.q_proj.lora_B.weight")), vec![q, 4]);
    assert_eq!(shape(&format!("{p}.o_proj.lora_A.weight")), vec![4, q]);
    assert_eq!(shape(&format!("{p}.o_proj.lora_B.weight")), vec![h, 4]);
    assert_eq!(st.len(), 2 * 2 * m.cfg.num_hidden_layers);
    let c: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(c["peft_type"], "LORA");
    assert_eq!(c["r"], 4);
    assert_eq!(c["lora_alpha"], 8.0);
    assert_eq!(c["target_modules"], serde_json::json!(["q_proj", "o_proj"]));
    // Round trip through load_lora.
    let loaded = read_adapters(tmp.path());
    let mut m2 = tiny("tiny-qwen3");
    m2.attach_lora(&cfg, 99).unwrap();
    m2.load_lora(&loaded).unwrap();
    for ((n, a), (_, b)) in m.lora_parameters().iter().zip(m2.lora_parameters()) {
        assert_eq!(max_diff(a, &b), 0.0, "{n}");
    }
}

/// Gradients of every trainable tensor after `loss(out).backward()` (plain or recomputed).
fn grads(m: &Qwen3, ids: &Tensor, mask: &Tensor, recompute: bool) -> (f64, Vec<(String, Tensor)>) {
    for (_, p) in m.named_parameters().into_iter().chain(m.lora_parameters()) {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let (out, rc) = if recompute {
        let (o, rc) = forward_recompute(m, ids, Some(mask));
        (o, Some(rc))
    } else {
        (m.forward_hidden(ids, Some(mask), None), None)
    };
    let lp = m.logits(&out.hidden).log_softmax(-1, Kind::Float);
    let w = mask.to_kind(Kind::Float).unsqueeze(-1);
    let mut loss = -(lp.narrow(-1, 0, 5) * w).sum(Kind::Float) / 100.0;
    if let Some(moe) = &m.cfg.moe {
        let aux = qwen3_moe::load_balancing_loss(
            &out.router_logits,
            moe.num_experts as i64,
            moe.num_experts_per_tok as i64,
            Some(mask),
        );
        loss = loss.g_add(&(aux * 0.5));
    }
    loss.backward();
    if let Some(rc) = rc {
        rc.backward();
    }
    let named = if m.has_lora() {
        m.lora_parameters()
    } else {
        m.named_parameters()
    };
    let g = named
        .into_iter()
        .map(|(n, p)| (n, p.grad().copy()))
        .collect();
    (loss.double_value(&[]), g)
}

#[test]
fn recompute_gives_the_plain_path_gradients() {
    let _rng = crate::rng_lock();
    for (name, lora) in [
        ("tiny-qwen3", false),
        ("tiny-qwen3-moe", false),
        ("tiny-qwen3", true),
        ("tiny-qwen3-moe", true),
    ] {
        let mut m = tiny(name);
        if lora {
            m.attach_lora(&lora_cfg(ALL), 5).unwrap();
            randomise_b(&m);
        } else {
            m.set_requires_grad(true);
        }
        let (ids, mask) = padded_batch(m.cfg.vocab_size as i64);
        let (l1, g1) = grads(&m, &ids, &mask, false);
        let (l2, g2) = grads(&m, &ids, &mask, true);
        assert_eq!(l1, l2, "{name}: loss");
        assert_eq!(g1.len(), g2.len());
        for ((n, a), (_, b)) in g1.iter().zip(&g2) {
            let scale = a.abs().max().double_value(&[]);
            assert!(scale > 0.0, "{name}: {n} has no gradient");
            let d = max_diff(a, b);
            assert!(
                d <= 1e-6 * scale.max(1.0),
                "{name} lora={lora}: {n} differs by {d:e} (scale {scale:e})"
            );
        }
    }
}

pub(super) fn moe_block(
    h: usize,
    i: usize,
    e: usize,
    k: usize,
    kind: Kind,
    device: Device,
) -> qwen3_moe::MoeBlock {
    let mut cfg = presets::preset("tiny-qwen3-moe").unwrap();
    cfg.hidden_size = h;
    let m = cfg.moe.as_mut().unwrap();
    m.num_experts = e;
    m.num_experts_per_tok = k;
    m.moe_intermediate_size = i;
    let b = qwen3_moe::MoeBlock::from_source(&cfg, "mlp", &mut RandomInit::new(3, kind, device))
        .unwrap();
    for (_, p) in b.named_parameters() {
        let _ = p.set_requires_grad(true);
    }
    b
}

/// Forward output and gradients (input, router, experts) of one block.
fn moe_fwd_bwd(b: &qwen3_moe::MoeBlock, x: &Tensor, g: &Tensor, imp: MoeImpl) -> Vec<Tensor> {
    let params = b.named_parameters().into_iter().map(|(_, p)| p).collect();
    block_grads(b, x, g, imp, params)
}

/// Forward output of one block and the gradients of `(y · g).sum()` for its input and `params`.
pub(super) fn block_grads(
    b: &qwen3_moe::MoeBlock,
    x: &Tensor,
    g: &Tensor,
    imp: MoeImpl,
    params: Vec<Tensor>,
) -> Vec<Tensor> {
    for p in &params {
        let mut gr = p.grad();
        if gr.defined() {
            let _ = gr.zero_();
        }
    }
    let x = x.detach().set_requires_grad(true);
    let (y, _) = b.forward(&x, 0.0, None, imp);
    (&y * g).sum(Kind::Float).backward();
    let mut out = vec![y.detach(), x.grad()];
    out.extend(params.iter().map(|p| p.grad().copy()));
    out
}

#[test]
fn grouped_moe_matches_the_per_expert_loop() {
    let _rng = crate::rng_lock();
    // 16 experts, top-4, 40 tokens: some experts get no token.
    let b = moe_block(64, 32, 16, 4, Kind::Float, Device::Cpu);
    let x = Tensor::randn([2, 20, 64], (Kind::Float, Device::Cpu));
    let g = Tensor::randn([2, 20, 64], (Kind::Float, Device::Cpu));
    let want = moe_fwd_bwd(&b, &x, &g, MoeImpl::Loop);
    let got = moe_fwd_bwd(&b, &x, &g, MoeImpl::Grouped);
    let names = ["output", "input grad", "router", "gate", "up", "down"];
    for ((w, gt), n) in want.iter().zip(&got).zip(names) {
        let d = max_diff(w, gt);
        assert!(d < 1e-5, "{n}: {d:e}");
        assert!(w.abs().max().double_value(&[]) > 0.0, "{n} is zero");
    }
    // Auto runs the loop on the CPU.
    assert!(!MoeImpl::Auto.grouped(Device::Cpu, Kind::Float, 64, 32));
    assert!(MoeImpl::Auto.grouped(Device::Cuda(0), Kind::BFloat16, 2048, 768));
    assert!(!MoeImpl::Auto.grouped(Device::Cuda(0), Kind::BFloat16, 2048, 100));
}

#[test]
#[ignore = "needs a CUDA device: cargo test -- --ignored cuda (scripts/test-gpu.sh)"]
fn grouped_moe_matches_the_loop_on_cuda_in_bf16() {
    // Without a device this test is reported as ignored (the CPU test covers fp32 grouped vs
    // loop); asked for explicitly on a machine without one, it fails rather than passing.
    assert!(
        crate::runtime::cuda_device_count() > 0,
        "no CUDA device is visible"
    );
    let _rng = crate::rng_lock();
    let dev = Device::Cuda(0);
    let b = moe_block(256, 128, 16, 4, Kind::BFloat16, dev);
    let x = Tensor::randn([4, 64, 256], (Kind::Float, dev)).to_kind(Kind::BFloat16);
    let g = Tensor::randn([4, 64, 256], (Kind::Float, dev)).to_kind(Kind::BFloat16);
    let want = moe_fwd_bwd(&b, &x, &g, MoeImpl::Loop);
    let got = moe_fwd_bwd(&b, &x, &g, MoeImpl::Grouped);
    for (w, gt) in want.iter().zip(&got) {
        let scale = w.abs().max().double_value(&[]);
        assert!(
            max_diff(w, gt) <= 0.03 * scale,
            "{} vs scale {scale}",
            max_diff(w, gt)
        );
    }
}

#[test]
fn grouped_moe_model_matches_loop_model_logits() {
    let _rng = crate::rng_lock();
    let mut m = tiny("tiny-qwen3-moe");
    let (ids, mask) = padded_batch(m.cfg.vocab_size as i64);
    m.moe_impl = MoeImpl::Loop;
    let a = tch::no_grad(|| m.forward(&ids, Some(&mask), None).logits);
    m.moe_impl = MoeImpl::Grouped;
    let b = tch::no_grad(|| m.forward(&ids, Some(&mask), None).logits);
    assert!(max_diff(&a, &b) < 1e-5);
}

#[test]
fn bf16_compute_keeps_fp32_master_weights() {
    let _rng = crate::rng_lock();
    let (ids, mask) = padded_batch(presets::preset("tiny-qwen3").unwrap().vocab_size as i64);
    let loss_of = |m: &Qwen3| {
        let out = m.forward(&ids, Some(&mask), None);
        let lp = next_token_logprobs(&out.logits, &ids);
        assert_eq!(lp.kind(), Kind::Float);
        -(lp * mask.narrow(1, 1, 11).to_kind(Kind::Float)).mean(Kind::Float)
    };
    let m32 = tiny("tiny-qwen3");
    let l32 = tch::no_grad(|| loss_of(&m32)).double_value(&[]);
    let mut m = tiny("tiny-qwen3");
    m.set_compute_kind(Kind::BFloat16);
    m.set_requires_grad(true);
    assert_eq!(m.kind(), Kind::Float);
    let out = tch::no_grad(|| m.forward(&ids, Some(&mask), None));
    assert_eq!(out.logits.kind(), Kind::BFloat16);
    let loss = loss_of(&m);
    let l16 = loss.double_value(&[]);
    assert!(
        (l16 - l32).abs() < 2e-2 * l32.abs(),
        "bf16 {l16} vs fp32 {l32}"
    );
    loss.backward();
    let before: Vec<Tensor> = m.parameters().iter().map(|p| p.detach().copy()).collect();
    for p in m.parameters() {
        assert_eq!(p.grad().kind(), Kind::Float);
    }
    let mut opt =
        crate::train::optim::AdamW::new(m.parameters(), &crate::config::OptimConfig::default());
    // An update far below bf16's resolution around 1 (2^-8): lost if weights were bf16.
    opt.step(1e-4);
    let norm = &m.named_parameters()[1];
    assert!(norm.0.contains("input_layernorm"));
    let moved = max_diff(&norm.1, &before[1]);
    assert!(
        moved > 5e-5 && moved < 2e-4,
        "master weight moved by {moved:e}"
    );
    assert_eq!(norm.1.kind(), Kind::Float);
}
