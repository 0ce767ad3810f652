//! Model tests: logits parity with HF `transformers` (fixtures from
//! `tests/fixtures/parity/make_fixtures.py`), cached decode, checkpoint loading errors, save/load.
use super::*;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/parity")
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<Vec<i64>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn load(dir: &str, kind: Kind) -> Qwen3 {
    load_model(fixtures().join(dir).to_str().unwrap(), kind, Device::Cpu, 0).unwrap()
}

fn batch(seqs: &[Vec<i64>]) -> Tensor {
    let t = seqs[0].len() as i64;
    let flat: Vec<i64> = seqs.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([seqs.len() as i64, t])
}

/// Left-pad `seqs` into `[B, T]` ids and a 0/1 mask.
fn left_pad(seqs: &[Vec<i64>]) -> (Tensor, Tensor) {
    let t = seqs.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut mask) = (vec![], vec![]);
    for s in seqs {
        let pad = t - s.len();
        ids.extend(std::iter::repeat_n(0, pad).chain(s.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1, s.len())));
    }
    let shape = [seqs.len() as i64, t as i64];
    (
        Tensor::from_slice(&ids).view(shape),
        Tensor::from_slice(&mask).view(shape),
    )
}

fn max_abs_diff(got: &Tensor, want: &[f64]) -> f64 {
    let got = Vec::<f64>::try_from(got.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

fn check_parity(key: &str, tol: f64) {
    let r = &reference()[key];
    let model = load(r["dir"].as_str().unwrap(), Kind::Float);
    let seqs = ids(&r["sequences"]);
    let want: Vec<f64> = floats(&r["logprobs"]).concat();
    let x = batch(&seqs);
    let out = tch::no_grad(|| model.forward(&x, None, None));
    let lp = next_token_logprobs(&out.logits, &x);
    let d = max_abs_diff(&lp, &want);
    assert!(d <= tol, "{key}: max |Δlogp| = {d:e} > {tol:e}");
    if let Some(aux) = r.get("aux_loss") {
        let got = out.aux_loss.unwrap().double_value(&[]);
        assert!((got - aux.as_f64().unwrap()).abs() < 1e-5, "aux {got}");
    }
}

#[test]
fn dense_matches_transformers_fp32() {
    check_parity("dense", 1e-4);
}

#[test]
fn bf16_stored_checkpoint_matches_transformers() {
    check_parity("dense_bf16", 1e-4);
}

#[test]
fn sharded_moe_matches_transformers_fp32_with_aux_loss() {
    check_parity("moe", 1e-4);
}

fn check_left_padded(key: &str) {
    let r = &reference()[key];
    let model = load(r["dir"].as_str().unwrap(), Kind::Float);
    let seqs = ids(&r["ragged"]);
    let want = floats(&r["ragged_logprobs"]);
    let (x, mask) = left_pad(&seqs);
    let out = tch::no_grad(|| model.forward(&x, Some(&mask), None));
    let lp = next_token_logprobs(&out.logits, &x);
    let t = x.size()[1];
    for (i, (s, w)) in seqs.iter().zip(&want).enumerate() {
        let n = s.len() as i64 - 1;
        let row = lp.get(i as i64).narrow(0, t - 1 - n, n);
        let d = max_abs_diff(&row, w);
        assert!(d <= 1e-4, "{key} row {i}: max |Δlogp| = {d:e}");
    }
}

#[test]
fn left_padded_batch_matches_unpadded_reference() {
    check_left_padded("dense");
    check_left_padded("moe");
}

/// Prefill part of each (left-padded) row, then decode the rest token by token with the cache.
fn check_cached_decode(model: &Qwen3, seqs: &[Vec<i64>], prefill: i64) {
    let (x, mask) = left_pad(seqs);
    let t = x.size()[1];
    let full = tch::no_grad(|| model.forward(&x, Some(&mask), None).logits);
    let mut cache = KvCache::new(model.cfg.num_hidden_layers);
    let mut steps = vec![tch::no_grad(|| {
        model
            .forward(
                &x.narrow(1, 0, prefill),
                Some(&mask.narrow(1, 0, prefill)),
                Some(&mut cache),
            )
            .logits
    })];
    for i in prefill..t {
        steps.push(tch::no_grad(|| {
            model
                .forward(
                    &x.narrow(1, i, 1),
                    Some(&mask.narrow(1, 0, i + 1)),
                    Some(&mut cache),
                )
                .logits
        }));
    }
    let cached = Tensor::cat(&steps, 1);
    // Compare real positions only (padding rows are don't-care).
    let m = mask.to_kind(Kind::Bool).unsqueeze(-1);
    let d = (full - cached)
        .abs()
        .masked_fill(&m.logical_not(), 0.0)
        .max()
        .double_value(&[]);
    assert!(d <= 1e-5, "cached decode differs by {d:e}");
    assert_eq!(cache.seq_len(), t);
}

#[test]
fn cached_decode_equals_full_forward() {
    let _rng = crate::rng_lock();
    let r = reference();
    for key in ["dense", "moe"] {
        let model = load(r[key]["dir"].as_str().unwrap(), Kind::Float);
        check_cached_decode(&model, &ids(&r[key]["ragged"]), 5);
        check_cached_decode(&model, &ids(&r[key]["sequences"]), 1);
    }
    tch::manual_seed(3);
    let tiny = load_model("tiny-qwen3-moe", Kind::Float, Device::Cpu, 7).unwrap();
    let seqs: Vec<Vec<i64>> = (0..3)
        .map(|i| (0..20 - 4 * i).map(|j| (j * 7 + i) % 64).collect())
        .collect();
    check_cached_decode(&tiny, &seqs, 3);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn changed_shape_missing_and_extra_tensors_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    copy_dir(&fixtures().join("dense"), &dir);
    let file = dir.join("model.safetensors");
    let tensors = Tensor::read_safetensors(&file).unwrap();
    let spec = dir.to_str().unwrap().to_string();

    let bad: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            let t = if n == "model.layers.1.self_attn.k_proj.weight" {
                t.narrow(0, 0, 32).contiguous()
            } else {
                t.shallow_clone()
            };
            (n.clone(), t)
        })
        .collect();
    Tensor::write_safetensors(&bad, &file).unwrap();
    let err = load_model(&spec, Kind::Float, Device::Cpu, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.layers.1.self_attn.k_proj.weight")
            && err.contains("[64, 64]")
            && err.contains("[32, 64]"),
        "{err}"
    );

    let missing: Vec<_> = tensors
        .iter()
        .filter(|(n, _)| n != "model.norm.weight")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    Tensor::write_safetensors(&missing, &file).unwrap();
    let err = load_model(&spec, Kind::Float, Device::Cpu, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing tensor `model.norm.weight`"), "{err}");

    let mut extra: Vec<_> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    extra.push((
        "model.layers.9.foo.weight".into(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    ));
    Tensor::write_safetensors(&extra, &file).unwrap();
    let err = load_model(&spec, Kind::Float, Device::Cpu, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.layers.9.foo.weight"), "{err}");
}

#[test]
fn save_then_load_roundtrips_single_and_sharded() {
    let _rng = crate::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let x = Tensor::from_slice(&[3i64, 9, 27, 17, 51, 5, 60, 2]).view([2, 4]);
    for preset in ["tiny-qwen3", "tiny-qwen3-moe"] {
        let model = load_model(preset, Kind::Float, Device::Cpu, 11).unwrap();
        let want = tch::no_grad(|| model.forward(&x, None, None).logits);
        for (shard, name) in [(u64::MAX, "one"), (200_000, "sharded")] {
            let dir = tmp.path().join(format!("{preset}-{name}"));
            save_hf_dir(
                &model.cfg,
                model.named_parameters(),
                &dir,
                Kind::Float,
                shard,
            )
            .unwrap();
            assert_eq!(
                dir.join("model.safetensors.index.json").exists(),
                name == "sharded"
            );
            let back = load_model(dir.to_str().unwrap(), Kind::Float, Device::Cpu, 0).unwrap();
            let got = tch::no_grad(|| back.forward(&x, None, None).logits);
            assert!(
                got.equal(&want),
                "{preset} {name}: logits changed after save/load"
            );
        }
    }
}

#[test]
fn bf16_compute_is_close_to_fp32() {
    let r = &reference()["dense"];
    let m32 = load("dense", Kind::Float);
    let m16 = load("dense", Kind::BFloat16);
    let x = batch(&ids(&r["sequences"]));
    let a = tch::no_grad(|| next_token_logprobs(&m32.forward(&x, None, None).logits, &x));
    let b = tch::no_grad(|| next_token_logprobs(&m16.forward(&x, None, None).logits, &x));
    let d = (a - b).abs().max().double_value(&[]);
    assert!(d > 0.0 && d < 0.5, "bf16 vs fp32 max diff {d}");
}

/// Logits and every weight's gradient of a left-padded batch, with the fused ops (RMSNorm, RoPE)
/// or the tensor ops alone.
fn logits_and_grads(model: &Qwen3, ops_only: bool) -> Vec<Tensor> {
    super::ops::OPS_ONLY.with(|f| f.set(ops_only));
    let seqs: Vec<Vec<i64>> = (0..4)
        .map(|i| (0..12 - 2 * i).map(|j| (j * 5 + i) % 64).collect())
        .collect();
    let (x, mask) = left_pad(&seqs);
    let logits = model.forward(&x, Some(&mask), None).logits;
    let params: Vec<Tensor> = model
        .named_parameters()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let loss = (logits.log_softmax(-1, Kind::Float) * logits.sin()).sum(Kind::Float);
    let mut out = Tensor::run_backward(&[loss], &params, false, false);
    super::ops::OPS_ONLY.with(|f| f.set(false));
    out.push(logits.detach());
    out
}

#[test]
fn fused_ops_leave_the_model_bit_for_bit_unchanged() {
    let _rng = crate::rng_lock();
    for preset in ["tiny-qwen3", "tiny-qwen3-moe"] {
        let model = load_model(preset, Kind::Float, Device::Cpu, 11).unwrap();
        for p in model.named_parameters() {
            let _ = p.1.set_requires_grad(true);
        }
        let fused = logits_and_grads(&model, false);
        let ops = logits_and_grads(&model, true);
        let mut names: Vec<String> = model
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.push("logits".into());
        let differ: Vec<String> = fused
            .iter()
            .zip(&ops)
            .zip(&names)
            .filter(|((a, b), _)| !a.view_dtype(Kind::Int).equal(&b.view_dtype(Kind::Int)))
            .map(|((a, b), n)| format!("{n} ({})", (a - b).abs().max().double_value(&[])))
            .collect();
        assert!(differ.is_empty(), "{preset}: {differ:?}");
    }
}
