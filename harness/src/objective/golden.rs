//! Golden values from `tests/golden/objectives.py` (an independent NumPy implementation with
//! hand-derived gradients): every case's config goes through serde and `build_algorithm`, and loss,
//! gradient and the listed metrics must match to 1e-6 in f64.
use super::testutil::to_vec;
use super::{build_algorithm, AdvantageInput, AlgorithmConfig, PolicyBatch, StepStats};
use serde_json::Value;
use tch::Tensor;

const GOLDEN: &str = include_str!("../../../tests/golden/objectives.json");
const TOL: f64 = 1e-6;

struct Inputs {
    b: i64,
    t: i64,
    k: i64,
    v: Value,
}

impl Inputs {
    fn load() -> (Inputs, Value) {
        let root: Value = serde_json::from_str(GOLDEN).expect("golden JSON");
        let inp = root["inputs"].clone();
        let dim = |k: &str| inp[k].as_i64().unwrap();
        (
            Inputs {
                b: dim("B"),
                t: dim("T"),
                k: dim("K"),
                v: inp,
            },
            root,
        )
    }

    fn vec(&self, key: &str) -> Vec<f64> {
        floats(&self.v[key])
    }

    fn bt(&self, key: &str) -> Tensor {
        Tensor::from_slice(&self.vec(key)).view([self.b, self.t])
    }

    fn btk(&self, key: &str) -> Tensor {
        Tensor::from_slice(&self.vec(key)).view([self.b, self.t, self.k])
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[track_caller]
fn assert_all_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= TOL, "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn losses_gradients_and_metrics() {
    let (inp, root) = Inputs::load();
    let (old, mu, reference, adv, mask) = (
        inp.bt("old_logp"),
        inp.bt("rollout_logp"),
        inp.bt("ref_logp"),
        inp.bt("advantages"),
        inp.bt("mask"),
    );
    let (mu_topk, pi_topk) = (inp.btk("rollout_topk_logp"), inp.btk("topk_logp"));
    let (old_values, returns) = (inp.bt("old_values"), inp.bt("returns"));
    let cases = root["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let cfg: AlgorithmConfig = serde_json::from_value(case["config"].clone())
            .unwrap_or_else(|e| panic!("{name}: config: {e}"));
        let mut algo = build_algorithm(&cfg);
        if let Some(state) = case.get("state") {
            algo.load_state(state).unwrap();
        }
        if let Some(d) = case.get("delta_bar") {
            algo.begin_step(&StepStats::new(d.as_f64().unwrap()));
        }
        let logp = inp.bt("logp").set_requires_grad(true);
        let values = inp.bt("values").set_requires_grad(true);
        let batch = PolicyBatch::new(&logp, &old, &mu, &adv, &mask)
            .with_ref(&reference)
            .with_topk(&mu_topk, &pi_topk)
            .with_values(&values, &old_values, &returns);
        let (loss, metrics) = algo.loss(&batch);
        loss.backward();
        let want = case["loss"].as_f64().unwrap();
        let got = loss.double_value(&[]);
        assert!((got - want).abs() <= TOL, "{name}: loss {got}, want {want}");
        assert_all_close(
            &format!("{name}: grad logp"),
            &to_vec(&logp.grad()),
            &floats(&case["grad_logp"]),
        );
        if let Some(gv) = case.get("grad_values") {
            assert_all_close(
                &format!("{name}: grad values"),
                &to_vec(&values.grad()),
                &floats(gv),
            );
        }
        for (key, want) in case["metrics"].as_object().unwrap() {
            let got = *metrics
                .get(key)
                .unwrap_or_else(|| panic!("{name}: metric {key} missing"));
            let want = want.as_f64().unwrap();
            assert!(
                (got - want).abs() <= TOL,
                "{name}: {key} = {got}, want {want}"
            );
        }
    }
}

#[test]
fn advantages() {
    let (inp, root) = Inputs::load();
    let mask = inp.bt("mask");
    let rewards = Tensor::from_slice(&inp.vec("rewards"));
    let old_values = inp.bt("old_values");
    for case in root["advantages"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let cfg: AlgorithmConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let mut algo = build_algorithm(&cfg);
        let g = case["group_size"].as_i64().unwrap();
        let input = AdvantageInput::new(&rewards, &mask, g).with_values(&old_values);
        let out = algo.advantages(&input);
        assert_all_close(name, &to_vec(&out.advantages), &floats(&case["advantages"]));
        match case.get("returns") {
            Some(r) => assert_all_close(name, &to_vec(&out.returns.unwrap()), &floats(r)),
            None => assert!(out.returns.is_none()),
        }
    }
}

#[test]
fn dual_update() {
    let (_, root) = Inputs::load();
    let d = &root["dual_update"];
    let cfg: AlgorithmConfig = serde_json::from_value(d["config"].clone()).unwrap();
    let mut algo = build_algorithm(&cfg);
    for step in d["steps"].as_array().unwrap() {
        let lam = |k: &str| step[k].as_f64().unwrap();
        assert!((algo.state()["lambda"].as_f64().unwrap() - lam("lambda_before")).abs() <= 1e-12);
        let stats = StepStats::new(lam("delta_bar"));
        algo.begin_step(&stats);
        let m = algo.end_step(&stats);
        assert!((m["dc/lambda_next"] - lam("lambda_after")).abs() <= 1e-12);
    }
}
