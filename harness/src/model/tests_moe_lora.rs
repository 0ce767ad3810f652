//! LoRA on stacked MoE experts: the dense LoRA properties (B = 0 is the base, gradients reach only
//! adapters, merging equals the adapter forward) on both expert paths, loop vs grouped with
//! adapters, and the PEFT round trip.
use super::ops::LoraAdapter;
use super::qwen3_moe::MoeImpl;
use super::tests_gpu_path::{
    block_grads, lora_cfg, max_diff, moe_block, padded_batch, randomise_b, read_adapters,
    save_peft, tiny, ALL,
};
use super::*;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

const MLP: &[&str] = &["gate_proj", "up_proj", "down_proj"];
const IMPLS: [MoeImpl; 2] = [MoeImpl::Loop, MoeImpl::Grouped];

fn moe(imp: MoeImpl) -> Qwen3 {
    let mut m = tiny("tiny-qwen3-moe");
    m.moe_impl = imp;
    m
}

#[test]
fn expert_lora_with_zero_b_matches_the_base_model() {
    let _rng = crate::rng_lock();
    for imp in IMPLS {
        let mut m = moe(imp);
        let (ids, mask) = padded_batch(m.cfg.vocab_size as i64);
        let base = tch::no_grad(|| m.forward(&ids, Some(&mask), None).logits);
        m.attach_lora(&lora_cfg(ALL), 7).unwrap();
        let layers = m.cfg.num_hidden_layers;
        assert_eq!(m.lora_parameters().len(), 2 * 7 * layers);
        let with = tch::no_grad(|| m.forward(&ids, Some(&mask), None).logits);
        assert_eq!(max_diff(&base, &with), 0.0, "{imp:?}");
        // Stacked per-expert adapters, A kaiming-uniform within ±1/√in for every expert.
        let named: HashMap<String, Tensor> = m.lora_parameters().into_iter().collect();
        let (h, i) = (m.cfg.hidden_size as i64, 96);
        for (proj, in_f, out_f) in [("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)] {
            let p = format!("model.layers.2.mlp.experts.{proj}");
            let a = &named[&format!("{p}.lora_A.weight")];
            let b = &named[&format!("{p}.lora_B.weight")];
            assert_eq!(a.size(), [8, 4, in_f], "{p}");
            assert_eq!(b.size(), [8, out_f, 4], "{p}");
            assert_eq!(a.kind(), Kind::Float);
            assert_eq!(
                b.abs().max().double_value(&[]),
                0.0,
                "{p}: B starts at zero"
            );
            let bound = 1.0 / (in_f as f64).sqrt();
            let amax = a.abs().amax([1, 2], false);
            for e in 0..8 {
                let v = amax.double_value(&[e]);
                assert!(
                    v > 0.5 * bound && v <= bound,
                    "{p} expert {e}: {v} vs {bound}"
                );
            }
            // Experts draw their own A.
            assert!(max_diff(&a.get(0), &a.get(1)) > 0.0, "{p}");
        }
    }
}

#[test]
fn expert_lora_gradients_reach_only_the_adapters() {
    let _rng = crate::rng_lock();
    for imp in IMPLS {
        let mut m = moe(imp);
        m.attach_lora(
            &lora_cfg(&["q_proj", "gate_proj", "up_proj", "down_proj"]),
            7,
        )
        .unwrap();
        randomise_b(&m);
        // 3 tokens × top-2 over 8 experts: every layer has experts without tokens.
        let ids = Tensor::from_slice(&[5i64, 17, 40]).view([1, 3]);
        let out = m.forward(&ids, None, None);
        out.logits.square().mean(Kind::Float).backward();
        for (n, p) in m.named_parameters() {
            assert!(!p.requires_grad(), "{n} is not frozen");
            assert!(!p.grad().defined(), "{n} got a gradient");
        }
        let k = m.cfg.moe.as_ref().unwrap().num_experts_per_tok as i64;
        let counts: Vec<Tensor> = out
            .router_logits
            .iter()
            .map(|l| {
                l.topk(k, -1, true, true)
                    .1
                    .reshape([-1])
                    .bincount::<Tensor>(None, 8)
            })
            .collect();
        let adapters = m.lora_parameters();
        assert_eq!(adapters.len(), 2 * 4 * m.cfg.num_hidden_layers);
        let (mut with, mut without) = (0, 0);
        for (n, p) in &adapters {
            let g = p.grad();
            assert!(g.defined(), "{imp:?} {n}: no gradient");
            let Some(rest) = n.strip_prefix("model.layers.") else {
                unreachable!()
            };
            if !n.contains(".experts.") {
                assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{n}");
                continue;
            }
            let l: usize = rest.split('.').next().unwrap().parse().unwrap();
            for e in 0..8 {
                let got = g.get(e).abs().sum(Kind::Float).double_value(&[]) > 0.0;
                let routed = counts[l].int64_value(&[e]) > 0;
                assert_eq!(
                    got, routed,
                    "{imp:?} {n} expert {e}: gradient iff it got tokens"
                );
                if routed {
                    with += 1;
                } else {
                    without += 1;
                }
            }
        }
        assert!(with > 0 && without > 0, "{with} / {without}");
        assert_eq!(m.trainable_parameters().len(), adapters.len());
    }
}

#[test]
fn merged_experts_give_the_adapter_forward_on_both_paths() {
    let _rng = crate::rng_lock();
    let base_model = tiny("tiny-qwen3-moe");
    let (ids, mask) = padded_batch(base_model.cfg.vocab_size as i64);
    let base = tch::no_grad(|| base_model.forward(&ids, Some(&mask), None).logits);
    // One model (the same adapters) run both ways.
    let mut m = tiny("tiny-qwen3-moe");
    m.attach_lora(&lora_cfg(MLP), 3).unwrap();
    randomise_b(&m);
    let mut want_by_impl = vec![];
    for imp in IMPLS {
        m.moe_impl = imp;
        let want = tch::no_grad(|| m.forward(&ids, Some(&mask), None).logits);
        assert!(
            max_diff(&want, &base) > 1e-3,
            "{imp:?}: adapters changed nothing"
        );
        let mut plain =
            Qwen3::from_source(&m.cfg, &mut RandomInit::zeros(Kind::Float, Device::Cpu)).unwrap();
        plain.moe_impl = imp;
        plain.copy_weights_from(&m);
        let got = tch::no_grad(|| plain.forward(&ids, Some(&mask), None).logits);
        let d = max_diff(&want, &got);
        assert!(d < 1e-5, "{imp:?}: merged vs adapter forward {d:e}");
        want_by_impl.push(want);
        // Merging is per expert: Wₑ + (α/r)·Bₑ Aₑ; effective weights are the merged ones.
        let merged: HashMap<String, Tensor> = m.merged_named_parameters().into_iter().collect();
        let lora: HashMap<String, Tensor> = m.lora_parameters().into_iter().collect();
        let p = "model.layers.1.mlp.experts.down_proj";
        let w = &m
            .named_parameters()
            .into_iter()
            .find(|(n, _)| n == p)
            .unwrap()
            .1;
        let (a, b) = (
            &lora[&format!("{p}.lora_A.weight")],
            &lora[&format!("{p}.lora_B.weight")],
        );
        let want_w = w.get(5) + b.get(5).matmul(&a.get(5)) * 2.0;
        assert!(max_diff(&merged[p].get(5), &want_w) < 1e-6);
        for (n, t) in m.effective_named_parameters() {
            assert!(t.equal(&merged[&n]), "{n}");
        }
    }
    // Loop and grouped agree with adapters on the whole model.
    let d = max_diff(&want_by_impl[0], &want_by_impl[1]);
    assert!(d < 1e-5, "loop vs grouped with adapters: {d:e}");
}

/// Forward output and gradients (input, adapters) of one block with adapters.
fn block_fwd_bwd(b: &qwen3_moe::MoeBlock, x: &Tensor, g: &Tensor, imp: MoeImpl) -> Vec<Tensor> {
    let adapters = b
        .lora
        .iter()
        .flatten()
        .flat_map(|l| [l.a.shallow_clone(), l.b.shallow_clone()])
        .collect();
    block_grads(b, x, g, imp, adapters)
}

#[test]
fn grouped_expert_lora_matches_the_loop_for_aligned_and_unaligned_ranks() {
    let _rng = crate::rng_lock();
    // Rank 3 is not a multiple of 16 bytes in fp32: the grouped path pads it.
    for r in [3, 4, 8] {
        let mut b = moe_block(64, 32, 16, 4, Kind::Float, Device::Cpu);
        random_adapters(&mut b, r, Kind::Float, Device::Cpu);
        let x = Tensor::randn([2, 20, 64], (Kind::Float, Device::Cpu));
        let g = Tensor::randn([2, 20, 64], (Kind::Float, Device::Cpu));
        let want = block_fwd_bwd(&b, &x, &g, MoeImpl::Loop);
        let got = block_fwd_bwd(&b, &x, &g, MoeImpl::Grouped);
        assert_eq!(want.len(), 8);
        for (j, (w, gt)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.size(), gt.size());
            let d = max_diff(w, gt);
            assert!(d < 1e-5, "r={r} tensor {j}: {d:e}");
            assert!(
                w.abs().max().double_value(&[]) > 0.0,
                "r={r} tensor {j} is zero"
            );
        }
    }
}

/// Random per-expert adapters of rank `r` on every stacked projection of `b` (frozen base).
fn random_adapters(b: &mut qwen3_moe::MoeBlock, r: i64, kind: Kind, device: Device) {
    for (_, w) in b.named_parameters() {
        let _ = w.set_requires_grad(false);
    }
    for (_, w, lora) in b.experts_mut() {
        let (e, o, i) = w.size3().unwrap();
        let rand = |shape: [i64; 3]| {
            (Tensor::randn(shape, (Kind::Float, device)) * 0.1)
                .to_kind(kind)
                .set_requires_grad(true)
        };
        *lora = Some(LoraAdapter {
            a: rand([e, r, i]),
            b: rand([e, o, r]),
            scale: 1.5,
        });
    }
}

#[test]
#[ignore = "needs a CUDA device: cargo test -- --ignored cuda (scripts/test-gpu.sh)"]
fn grouped_expert_lora_matches_the_loop_on_cuda_in_bf16() {
    // Without a device this test is reported as ignored (the CPU test covers fp32); asked for
    // explicitly on a machine without one, it fails rather than passing. Rank 4 is padded to 8
    // for bf16's 16-byte alignment.
    assert!(tch::Cuda::is_available(), "no CUDA device is visible");
    let _rng = crate::rng_lock();
    let dev = Device::Cuda(0);
    for r in [4, 16] {
        let mut b = moe_block(256, 128, 16, 4, Kind::BFloat16, dev);
        random_adapters(&mut b, r, Kind::Float, dev);
        let x = Tensor::randn([4, 64, 256], (Kind::Float, dev)).to_kind(Kind::BFloat16);
        let g = Tensor::randn([4, 64, 256], (Kind::Float, dev)).to_kind(Kind::BFloat16);
        let want = block_fwd_bwd(&b, &x, &g, MoeImpl::Loop);
        let got = block_fwd_bwd(&b, &x, &g, MoeImpl::Grouped);
        for (j, (w, gt)) in want.iter().zip(&got).enumerate() {
            let scale = w.abs().max().double_value(&[]);
            let d = max_diff(w, gt);
            assert!(
                scale > 0.0 && d <= 0.03 * scale,
                "r={r} tensor {j}: {d} vs scale {scale}"
            );
        }
    }
}

#[test]
fn expert_adapters_round_trip_through_a_peft_dir() {
    let _rng = crate::rng_lock();
    let mut m = tiny("tiny-qwen3-moe");
    let cfg = lora_cfg(&["q_proj", "up_proj"]);
    m.attach_lora(&cfg, 1).unwrap();
    randomise_b(&m);
    let (tmp, bytes) = save_peft(&m, &cfg);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let shape = |n: &str| st.tensor(n).unwrap().shape().to_vec();
    // PEFT's per-expert module names and shapes.
    let p = "base_model.model.model.layers.3.mlp.experts.7.up_proj";
    assert_eq!(shape(&format!("{p}.lora_A.weight")), vec![4, 128]);
    assert_eq!(shape(&format!("{p}.lora_B.weight")), vec![96, 4]);
    let layers = m.cfg.num_hidden_layers;
    assert_eq!(st.len(), 2 * (1 + 8) * layers);
    let loaded = read_adapters(tmp.path());
    let mut m2 = tiny("tiny-qwen3-moe");
    m2.attach_lora(&cfg, 99).unwrap();
    m2.load_lora(&loaded).unwrap();
    for ((n, a), (_, b)) in m.lora_parameters().iter().zip(m2.lora_parameters()) {
        assert_eq!(max_diff(a, &b), 0.0, "{n}");
    }
    // A missing expert is reported, not silently skipped.
    let mut partial = loaded;
    partial.remove(&format!("{p}.lora_B.weight"));
    let e = m2.load_lora(&partial).unwrap_err().to_string();
    assert!(
        e.contains("model.layers.3.mlp.experts.up_proj.lora_B.weight"),
        "{e}"
    );
}
