use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const BASE: &str = "
base:
  model: { name: tiny-qwen3 }
  task: { name: addition }
  algorithm: { name: grpo }
  train: { steps: 4 }
";

fn parse(text: &str) -> Result<Grid, GridErrors> {
    Grid::parse(text, Path::new("experiments/g.yaml"))
}

fn ids(g: &Grid) -> BTreeSet<String> {
    g.runs.iter().map(|r| r.id.clone()).collect()
}

#[test]
fn cases_carry_their_own_axes() {
    let g = parse(&format!(
        "{BASE}
seeds: [1, 2]
axes:
  optim.lr: [1.0e-4, 3.0e-4]
cases:
  grpo: {{}}
  dcmdp:
    set: {{ algorithm: {{ name: dcmdp, lambda_0: 0.1 }} }}
    axes: {{ algorithm.c: [0.001, 0.0037, 0.01] }}
"
    ))
    .unwrap();
    assert_eq!(g.name, "g");
    // grpo: 2 lr × 2 seeds; dcmdp: 2 lr × 3 c × 2 seeds.
    let n = |c: &str| {
        g.runs
            .iter()
            .filter(|r| r.case.as_deref() == Some(c))
            .count()
    };
    assert_eq!((n("grpo"), n("dcmdp")), (4, 12));
    assert_eq!(g.axis_keys, vec!["optim.lr", "algorithm.c"]);
    assert_eq!(g.cases, vec!["grpo", "dcmdp"]);
    let labels: Vec<&str> = g.runs.iter().map(|r| r.label.as_str()).collect();
    assert!(
        labels.contains(&"dcmdp/lr=0.0003/c=0.0037/seed=1"),
        "{labels:?}"
    );
    assert!(labels.contains(&"grpo/lr=0.0001/seed=2"), "{labels:?}");
    let r = g
        .runs
        .iter()
        .find(|r| r.label == "dcmdp/lr=0.0003/c=0.0037/seed=1")
        .unwrap();
    match &r.config.algorithm {
        crate::objective::AlgorithmConfig::Dcmdp(c) => {
            assert_eq!(c.c, 0.0037);
            assert_eq!(c.lambda_0, 0.1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.config.optim.lr, 3e-4);
    assert_eq!(r.seed, 1);
    // Seeds of a point share its point id; every run id is distinct.
    assert_eq!(ids(&g).len(), g.runs.len());
    let points: BTreeSet<&str> = g.runs.iter().map(|r| r.point.as_str()).collect();
    assert_eq!(points.len(), g.runs.len() / 2);
    assert!(g
        .runs
        .iter()
        .all(|r| r.id.len() == 10 && r.point.len() == 10));
}

#[test]
fn paired_axes_move_together() {
    let g = parse(&format!(
        "{BASE}
paired:
  - rollout.group_size: [4, 8, 16]
    rollout.prompts_per_step: [16, 8, 4]
"
    ))
    .unwrap();
    assert_eq!(g.runs.len(), 3);
    for r in &g.runs {
        assert_eq!(
            r.config.rollout.group_size * r.config.rollout.prompts_per_step,
            64
        );
    }
    assert_eq!(g.runs[1].label, "group_size=8/prompts_per_step=8/seed=0");
}

#[test]
fn ids_ignore_key_order_spelling_and_defaults() {
    let a = parse(
        "
base:
  model: { name: tiny-qwen3 }
  task: { name: addition }
  algorithm: { name: grpo }
  rollout: { group_size: 8, temperature: 1.0 }
axes:
  optim.lr: [0.0001, 0.0002]
  train.steps: [3, 5]
",
    )
    .unwrap();
    let b = parse(
        "
axes:
  train.steps: [5, 3]
  optim.lr: [2.0e-4, 1.0e-4]
base:
  rollout.group_size: 8
  algorithm: { name: grpo }
  task: { difficulty: 2, name: addition }
  model: { name: tiny-qwen3 }
",
    )
    .unwrap();
    assert_eq!(ids(&a), ids(&b));
    // And across parses.
    let again = parse(
        "
base:
  model: { name: tiny-qwen3 }
  task: { name: addition }
  algorithm: { name: grpo }
  rollout: { group_size: 8, temperature: 1.0 }
axes:
  optim.lr: [0.0001, 0.0002]
  train.steps: [3, 5]
",
    )
    .unwrap();
    let la: Vec<_> = a.runs.iter().map(|r| (&r.id, &r.label)).collect();
    let lb: Vec<_> = again.runs.iter().map(|r| (&r.id, &r.label)).collect();
    assert_eq!(la, lb);
}

#[test]
fn null_restores_a_default_and_dotted_keys_nest() {
    let g = parse(
        "
base:
  model: { name: tiny-qwen3, init_seed: 7 }
  model.lora.rank: 4
  task: { name: addition }
  algorithm: { name: grpo }
cases:
  plain: { set: { model.init_seed: null, model.lora: ~ } }
  lora: {}
",
    )
    .unwrap();
    let plain = &g.runs[0].config.model;
    assert_eq!((plain.init_seed, plain.lora.is_none()), (None, true));
    let lora = &g.runs[1].config.model;
    assert_eq!(lora.init_seed, Some(7));
    assert_eq!(lora.lora.as_ref().unwrap().rank, 4);
}

fn errors(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn every_error_has_file_line_and_key_path_all_at_once() {
    let e = errors(
        "name: bad
base:
  model: { name: tiny-qwen3, nmae: x }
  task: { name: addition }
  algorithm: { name: grpo }
  optim:
    lr: -1.0
seeds: [0, 0]
axes:
  rollout.group_size: [1, 8]
cases:
  a: {}
  b:
    set: { algorithm: { name: dppo, divergence: topk-kl } }
",
    );
    // A structural error (the unknown key) no longer hides the value errors.
    let want = [
        "experiments/g.yaml:3: model.nmae: unknown field `nmae`",
        "experiments/g.yaml:7: optim.lr: must be a positive number",
        "experiments/g.yaml:8: seeds: seed 0 is listed twice",
        "experiments/g.yaml:10: rollout.group_size: must be ≥ 2",
        "experiments/g.yaml:14: algorithm.divergence: a top-K divergence needs",
    ];
    for w in want {
        assert!(e.iter().any(|l| l.starts_with(w)), "{w}\nnot in\n{e:#?}");
    }
    // `optim.lr` and the typo are wrong in every run: reported once, without a run label; the
    // group size only where the axis sets 1 (once per case: the message names the algorithm).
    for k in ["optim.lr", "model.nmae"] {
        let l: Vec<&String> = e.iter().filter(|l| l.contains(k)).collect();
        assert_eq!(l.len(), 1, "{e:#?}");
        assert!(!l[0].contains("(in `"), "{}", l[0]);
    }
    let gs: Vec<&String> = e
        .iter()
        .filter(|l| l.contains("rollout.group_size"))
        .collect();
    assert_eq!(gs.len(), 2, "{gs:#?}");
    assert!(gs[0].ends_with("(in `a/group_size=1`)"), "{}", gs[0]);
    assert!(gs[1].ends_with("(in `b/group_size=1`)"), "{}", gs[1]);
    let dppo: Vec<&String> = e
        .iter()
        .filter(|l| l.contains("algorithm.divergence"))
        .collect();
    assert!(
        dppo[0].ends_with("(in `b/group_size=1` and 1 more)"),
        "{}",
        dppo[0]
    );
}

#[test]
fn two_unknown_keys_are_two_errors_and_a_wrong_type_is_located_at_its_key() {
    let e = errors(
        "base:
  model: { name: tiny-qwen3, colour: red }
  task: { name: addition, flavour: 1 }
  algorithm: { name: dcmdp, eta_lambda: fast }
  optim: { lr: -1.0 }
axes:
  rollout.temprature: [0.5]
",
    );
    let want = [
        "experiments/g.yaml:2: model.colour: unknown field `colour`",
        "experiments/g.yaml:3: task.flavour: unknown field `flavour`",
        "experiments/g.yaml:4: algorithm.eta_lambda: invalid type: string \"fast\", expected f64",
        "experiments/g.yaml:5: optim.lr: must be a positive number",
        "experiments/g.yaml:7: rollout.temprature: unknown field `temprature`",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, w) in e.iter().zip(want) {
        assert!(got.starts_with(w), "{got}\nshould start with\n{w}");
    }
}

#[test]
fn grid_file_structure_errors_are_all_reported() {
    let e = errors(&format!(
        "{BASE}axis: {{x: [1]}}\nseed: [1]\ncases: {{a: {{sett: {{}}}}}}\n"
    ));
    let want = [
        "experiments/g.yaml:7: axis: unknown field `axis`",
        "experiments/g.yaml:8: seed: unknown field `seed`",
        "experiments/g.yaml:9: cases.a.sett: unknown field `sett`",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, w) in e.iter().zip(want) {
        assert!(got.starts_with(w), "{got}\nshould start with\n{w}");
    }
    let e = errors("seeds: [1]\n");
    assert_eq!(
        e,
        vec!["experiments/g.yaml: base: required: the run config every case starts from (model, task, algorithm, …)"]
    );
}

#[test]
fn broken_yaml_is_a_syntax_error_at_its_line() {
    let e = errors("base:\n  model: { name: tiny-qwen3 }\nfoo: [\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("experiments/g.yaml:4: YAML syntax error:"),
        "{e:?}"
    );
    assert!(!e[0].contains("unknown field"), "{e:?}");
}

/// A `set:` mapping replaces the section it names; dropping what `base` set there is refused,
/// naming the keys (restating them, or `null`, says what is meant).
#[test]
fn a_case_set_that_would_drop_base_keys_is_refused() {
    let base = "
base:
  model: { name: tiny-qwen3, init_seed: 3, lora: { rank: 4, alpha: 8.0 } }
  task: { name: addition }
  algorithm: { name: grpo, clip_ratio_high: 0.28 }
";
    let e = errors(&format!(
        "{base}cases:\n  moe: {{ set: {{ model: {{ name: tiny-qwen3-moe, lora: {{ rank: 2 }} }} }} }}\n"
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with(
            "experiments/g.yaml:7: model: replaces all of `model`, dropping `model.init_seed`, \
             `model.lora.alpha` set before it"
        ),
        "{e:?}"
    );
    let e = errors(&format!(
        "{base}axes:\n  algorithm: [{{ name: dcmdp, c: 0.01 }}]\n"
    ));
    assert!(
        e[0].starts_with("experiments/g.yaml:7: algorithm: replaces all of `algorithm`, dropping `algorithm.clip_ratio_high`"),
        "{e:?}"
    );
    // Restated, nulled or set key by key: accepted.
    let g = parse(&format!(
        "{base}cases:
  moe: {{ set: {{ model: {{ name: tiny-qwen3-moe, init_seed: 3, lora: {{ rank: 4, alpha: null }} }} }} }}
  full: {{ set: {{ model.lora: null }} }}
  dc: {{ set: {{ algorithm: {{ name: dcmdp, c: 0.01, clip_ratio_high: null }} }} }}
  swap: {{ set: {{ model.name: tiny-qwen3-moe }} }}
"
    ))
    .unwrap();
    let m = |i: usize| &g.runs[i].config.model;
    assert_eq!(
        (m(0).init_seed, m(0).lora.as_ref().unwrap().alpha),
        (Some(3), 16.0)
    );
    assert!(m(1).lora.is_none());
    assert_eq!(
        (m(3).name.as_str(), m(3).lora.as_ref().unwrap().rank),
        ("tiny-qwen3-moe", 4)
    );
}

fn with_set(text: &str, sets: &[&str]) -> Result<Grid, GridErrors> {
    let opts = LoadOptions {
        overrides: sets.iter().map(|s| s.parse().unwrap()).collect(),
        ..Default::default()
    };
    Grid::parse_with(text, Path::new("experiments/g.yaml"), &opts)
}

#[test]
fn overrides_change_base_and_name_their_key_path() {
    let text = format!("{BASE}seeds: [0, 1]\naxes:\n  optim.lr: [1.0e-4, 2.0e-4]\n");
    let g = with_set(&text, &["train.steps=2", "model.lora={rank: 2}"]).unwrap();
    assert!(g.runs.iter().all(|r| r.config.train.steps == 2));
    let m = &g.runs[0].config.model;
    assert_eq!(
        (m.name.as_str(), m.lora.as_ref().unwrap().rank),
        ("tiny-qwen3", 2)
    );
    assert_eq!(
        g.overrides
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>(),
        vec!["train.steps=2", "model.lora={\"rank\":2}"]
    );
    // The ids are those of the same grid written with the values in `base`.
    let same = parse(&format!(
        "{BASE}  train.steps: 2\n  model.lora.rank: 2\nseeds: [0, 1]\naxes:\n  optim.lr: [1.0e-4, 2.0e-4]\n"
    ))
    .unwrap();
    assert_eq!(ids(&g), ids(&same));

    let e: Vec<String> = with_set(
        &text,
        &["rollout.group_sise=4", "train.steps=0", "optim.lr=0.1"],
    )
    .unwrap_err()
    .0
    .iter()
    .map(|e| e.to_string())
    .collect();
    let want = [
        "experiments/g.yaml: --set optim.lr=0.1: optim.lr: the grid varies `optim.lr` along an axis",
        "experiments/g.yaml: --set rollout.group_sise=4: rollout.group_sise: unknown field `group_sise`",
        "experiments/g.yaml: --set train.steps=0: train.steps: must be ≥ 1, got 0",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, w) in e.iter().zip(want) {
        assert!(got.starts_with(w), "{got}\nshould start with\n{w}");
    }
    let case = format!("{BASE}cases:\n  a: {{ set: {{ algorithm: {{ name: dcmdp }} }} }}\n");
    // The case replaces all of `algorithm`: an override of any key in it would be lost.
    let e = with_set(&case, &["algorithm.clip_ratio_high=0.3"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("case `a` sets `algorithm`, which would replace"),
        "{e}"
    );
    let case = format!("{BASE}cases:\n  a: {{ set: {{ algorithm.name: dcmdp }} }}\n");
    let e = with_set(&case, &["algorithm.name=dppo"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("case `a` sets `algorithm.name`"), "{e}");
    let g = with_set(&case, &["algorithm.clip_ratio_high=0.3"]).unwrap();
    match &g.runs[0].config.algorithm {
        crate::objective::AlgorithmConfig::Dcmdp(c) => assert_eq!(c.policy.clip_ratio_high, 0.3),
        other => panic!("{other:?}"),
    }
    let e = with_set(&text, &["model={lora: {rank: 2}}"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--set model={\"lora\":{\"rank\":2}}: model: replaces all of `model`, dropping `model.name`"),
        "{e}"
    );
    for bad in ["novalue", "=3", "a..b=1", "x=[1"] {
        assert!(bad.parse::<Override>().is_err(), "{bad}");
    }
}

#[test]
fn structure_errors_have_lines() {
    let e = errors("base: {}\naxis: {x: [1]}\n");
    assert!(
        e.iter()
            .any(|l| l.starts_with("experiments/g.yaml:2: axis: unknown field `axis`")),
        "{e:?}"
    );

    let e = errors("base:\n  model: [\n");
    assert!(e[0].starts_with("experiments/g.yaml:"), "{e:?}");

    let e = errors(&format!(
        "{BASE}paired:\n  - {{ optim.lr: [1, 2], train.steps: [1] }}\naxes:\n  optim.lr: [0.1]\n"
    ));
    assert!(e.iter().any(|l| l.starts_with("experiments/g.yaml:8: paired: paired lists must have equal lengths (optim.lr: 2, train.steps: 1)")), "{e:#?}");

    let e = errors(&format!(
        "{BASE}axes:\n  optim.lr: [0.1, 0.1]\n  optim: [{{lr: 1}}]\n"
    ));
    assert!(
        e.iter().any(|l| l.contains("value 0.1 is listed twice")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("optim: axis key declared overlapping")),
        "{e:#?}"
    );
}

#[test]
fn semantic_errors_point_at_the_case_override() {
    let e = errors(&format!(
        "{BASE}cases:\n  x:\n    set:\n      algorithm:\n        name: dcmdp\n        c: -1.0\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("experiments/g.yaml:12: algorithm.c: "),
        "{e:?}"
    );
    assert!(e[0].ends_with("(in `x`)") || !e[0].contains("(in"), "{e:?}");
}

#[test]
fn duplicate_runs_are_rejected() {
    let e = errors(&format!(
        "{BASE}cases:\n  a: {{ set: {{ optim.lr: 0.001 }} }}\n  b: {{ axes: {{ optim.lr: [0.001, 0.002] }} }}\n"
    ));
    assert!(
        e.iter()
            .any(|l| l
                .contains("runs `a/seed=0` and `b/lr=0.001/seed=0` resolve to the same config")),
        "{e:#?}"
    );
}

#[test]
fn unknown_keys_in_axes_are_located() {
    let e = errors(&format!("{BASE}axes:\n  rollout.tempreature: [0.5, 1.0]\n"));
    assert!(
        e.iter()
            .any(|l| l.starts_with("experiments/g.yaml:8: rollout.tempreature: unknown field")),
        "{e:#?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Runs per case = Π axis lengths × seeds, ids unique, and the same ids whatever the order
    /// of the axes in the file.
    #[test]
    fn run_count_is_the_product(
        lens in proptest::collection::vec(1usize..4, 0..3),
        case_lens in proptest::collection::vec(proptest::collection::vec(1usize..3, 0..2), 0..3),
        seeds in 1usize..4,
    ) {
        // Axis i sets train.steps-like keys that always validate.
        let keys = ["train.steps", "optim.lr", "rollout.max_new_tokens"];
        let vals = |k: &str, n: usize| -> String {
            let v: Vec<String> = (1..=n).map(|i| match k {
                "optim.lr" => format!("{}.0e-4", i),
                _ => (i + 1).to_string(),
            }).collect();
            format!("[{}]", v.join(", "))
        };
        let axes: Vec<(String, String)> = lens.iter().enumerate()
            .map(|(i, &n)| (keys[i].to_string(), vals(keys[i], n))).collect();
        let seeds_s: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
        let case_keys = ["eval.prompts", "rollout.group_size"];
        let render = |axes: &[(String, String)]| -> String {
            let mut t = format!("{BASE}seeds: [{}]\n", seeds_s.join(", "));
            if !axes.is_empty() {
                t.push_str("axes:\n");
                for (k, v) in axes { t.push_str(&format!("  {k}: {v}\n")); }
            }
            if !case_lens.is_empty() {
                t.push_str("cases:\n");
                for (c, cl) in case_lens.iter().enumerate() {
                    t.push_str(&format!("  c{c}:\n    set: {{ eval.k: {} }}\n    axes:\n", c + 1));
                    if cl.is_empty() { t.push_str("      {}\n"); }
                    for (j, &n) in cl.iter().enumerate() {
                        t.push_str(&format!("      {}: {}\n", case_keys[j], vals(case_keys[j], n)));
                    }
                }
            }
            t
        };
        let g = parse(&render(&axes)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let global: usize = lens.iter().product();
        let want: usize = if case_lens.is_empty() {
            global * seeds
        } else {
            case_lens.iter().map(|cl| global * cl.iter().product::<usize>() * seeds).sum()
        };
        prop_assert_eq!(g.runs.len(), want);
        prop_assert_eq!(ids(&g).len(), want);
        let mut rev = axes.clone();
        rev.reverse();
        let g2 = parse(&render(&rev)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(ids(&g), ids(&g2));
    }
}
