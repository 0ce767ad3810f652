//! Cross-checks with verl 0.9.1's own functions and the DPPO / DRPO authors' code
//! (`tests/fixtures/verl/make_fixtures.py`): random batches with ragged masks and mismatch
//! outliers; advantages, policy losses under every aggregation, KL estimators, GAE and the value
//! loss, every correction and every `rollout_corr/*` metric verl logs. Each number must agree
//! within 1e-5 (relative above 1). `harness objective` runs the same cases (`tests/cli/objective.rs`).
use super::batch_io::DumpedBatch;
use super::{build_algorithm, AdvantageInput, AlgorithmConfig, Metrics, PolicyBatch, StepStats};
use crate::diagnostics::rollout_corr_with;
use serde_json::Value;
use std::path::PathBuf;
use tch::{Kind, Tensor};

const VERL: &str = include_str!("../../../tests/fixtures/verl/verl.json");
const AUTHORS: &str = include_str!("../../../tests/fixtures/verl/authors.json");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/verl")
        .join(name)
}

/// `|got − want| ≤ 1e-5 · max(1, |want|)`.
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-5 * want.abs().max(1.0)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn host(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).reshape([-1])).unwrap()
}

/// One case's outcome: (quantity, verl, harness) for every number compared.
struct Compared {
    item: String,
    rows: Vec<(String, f64, f64)>,
}

impl Compared {
    fn scalar(&mut self, key: &str, want: f64, got: f64) {
        self.rows.push((key.to_string(), want, got));
    }

    /// Token tensors, on the entries where `mask` is 1 (`None`: all).
    fn tensor(&mut self, key: &str, want: &Value, got: &Tensor, mask: Option<&Tensor>) {
        let want = floats(want);
        let got = host(got);
        let mask = mask.map(host).unwrap_or_else(|| vec![1.0; want.len()]);
        assert_eq!(want.len(), got.len(), "{}: {key} length", self.item);
        for (i, ((w, g), m)) in want.iter().zip(&got).zip(&mask).enumerate() {
            if *m > 0.0 {
                self.rows.push((format!("{key}[{i}]"), *w, *g));
            }
        }
    }

    fn metrics(&mut self, want: Option<&Value>, got: &Metrics) {
        for (k, w) in want.and_then(Value::as_object).into_iter().flatten() {
            // A metric verl logs that the harness lacks is a failure (NaN never compares close).
            self.scalar(
                k,
                w.as_f64().unwrap(),
                got.get(k).copied().unwrap_or(f64::NAN),
            );
        }
    }

    fn worst(&self) -> (String, f64, f64, f64) {
        self.rows
            .iter()
            .map(|(k, w, g)| (k.clone(), *w, *g, (g - w).abs() / w.abs().max(1.0)))
            .fold(("-".into(), 0.0, 0.0, 0.0), |a, b| {
                if b.3.is_nan() || b.3 > a.3 {
                    b
                } else {
                    a
                }
            })
    }
}

/// `g` when the ids are consecutive groups of `g` rows.
fn regular_group_size(ids: &Tensor) -> Option<i64> {
    let ids = Vec::<i64>::try_from(ids.reshape([-1])).unwrap();
    let g = ids.iter().take_while(|&&i| i == ids[0]).count();
    let regular = ids.len() % g == 0
        && ids.chunks(g).all(|c| c.iter().all(|&i| i == c[0]))
        && ids
            .chunks(g)
            .map(|c| c[0])
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == ids.len() / g;
    regular.then_some(g as i64)
}

fn evaluate(case: &Value) -> Compared {
    let item = case["item"].as_str().unwrap().to_string();
    let cfg: AlgorithmConfig = serde_json::from_value(case["config"].clone())
        .unwrap_or_else(|e| panic!("{item}: config: {e}"));
    assert!(cfg.check().is_empty(), "{item}: {:?}", cfg.check());
    let b = DumpedBatch::load(&fixture(case["batch"].as_str().unwrap())).unwrap();
    let mut algo = build_algorithm(&cfg);
    let want = &case["expect"];
    let mut out = Compared { item, rows: vec![] };
    match case["kind"].as_str().unwrap() {
        "advantages" => {
            let rewards = b.rewards.as_ref().unwrap();
            let mut input = AdvantageInput::new(rewards, &b.mask, 1);
            input = match (algo.needs_value_model(), &b.old_values, &b.group_ids) {
                (true, Some(v), _) => input.with_values(v),
                // Consecutive groups of one size take the trainer's path, others the ids'.
                (false, _, Some(ids)) => match regular_group_size(ids) {
                    Some(g) => AdvantageInput::new(rewards, &b.mask, g),
                    None => input.with_group_ids(ids),
                },
                _ => panic!("{}: the batch lacks what the advantages need", out.item),
            };
            if let Some(r) = &b.ref_logp {
                input = input.with_logps(&b.old_logp, r);
            }
            let adv = algo.advantages(&input);
            out.tensor(
                "advantages",
                &want["advantages"],
                &adv.advantages,
                Some(&b.mask),
            );
            if let Some(r) = want.get("returns") {
                out.tensor("returns", r, adv.returns.as_ref().unwrap(), Some(&b.mask));
            }
            out.metrics(want.get("metrics"), &adv.metrics);
        }
        "loss" => {
            algo.begin_step(&StepStats::from_logps(
                &b.old_logp,
                &b.rollout_logp,
                &b.mask,
            ));
            let logp = b.logp.copy().set_requires_grad(true);
            let values = b
                .values
                .as_ref()
                .unwrap_or(&b.logp)
                .copy()
                .set_requires_grad(true);
            let adv = b.advantages.as_ref().unwrap();
            let mut batch = PolicyBatch::new(&logp, &b.old_logp, &b.rollout_logp, adv, &b.mask);
            if let Some(r) = &b.ref_logp {
                batch = batch.with_ref(r);
            }
            if let (Some(mk), Some(pk)) = (&b.rollout_topk_logp, &b.topk_logp) {
                batch = batch.with_topk(mk, pk);
            }
            if let (Some(o), Some(r)) = (&b.old_values, &b.returns) {
                batch = batch.with_values(&values, o, r);
            }
            let (loss, mut m) = algo.loss(&batch);
            loss.backward();
            m.extend(rollout_corr_with(
                &b.old_logp,
                &b.rollout_logp,
                &b.mask,
                cfg.corrections(),
                None,
            ));
            out.scalar(
                "loss",
                want["loss"].as_f64().unwrap(),
                loss.double_value(&[]),
            );
            out.tensor("grad_logp", &want["grad_logp"], &logp.grad(), None);
            if let Some(g) = want.get("grad_values") {
                out.tensor("grad_values", g, &values.grad(), None);
            }
            out.metrics(want.get("metrics"), &m);
        }
        other => panic!("unknown case kind {other}"),
    }
    out
}

/// Evaluate every case, print the table (item, the worst quantity, verl, harness, difference)
/// and fail on any quantity that is not close.
fn check_all(text: &str) {
    let doc: Value = serde_json::from_str(text).unwrap();
    let mut failures = vec![];
    println!("| item | quantities | worst | reference | harness | max rel. diff |\n|---|---|---|---|---|---|");
    for case in doc["cases"].as_array().unwrap() {
        let c = evaluate(case);
        let (key, w, g, d) = c.worst();
        println!(
            "| {} | {} | {key} | {w:.6e} | {g:.6e} | {d:.1e} |",
            c.item,
            c.rows.len()
        );
        for (k, w, g) in &c.rows {
            if !close(*g, *w) {
                failures.push(format!("{}: {k}: reference {w}, harness {g}", c.item));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn verl_functions_agree() {
    check_all(VERL);
}

#[test]
fn authors_code_agrees() {
    check_all(AUTHORS);
}
