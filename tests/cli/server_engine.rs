//! The server engine (`rollout.engine.server`) against a real HTTP server on CPU:
//! `tests/fixtures/server/serve.py`, a transformers stand-in for vLLM/SGLang (neither runs on a
//! CPU-only machine; README "Real inference server"). Skipped, saying so, without the venv's
//! torch + transformers.
use super::{harness, root, text};
use harness::config::server::{Reload, ServerConfig};
use harness::rollout::server::Client;
use harness::rollout::SamplingParams;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tch::{Device, Kind};

/// The project venv's Python when it has torch and transformers.
fn python() -> Option<PathBuf> {
    super::venv_python("torch, transformers")
}

/// A running `serve.py`, killed on drop.
struct Server {
    child: Child,
    port_file: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(py: &Path, model: &Path, dtype: &str, dir: &Path) -> Server {
        let (port_file, log) = (dir.join("port"), dir.join("server.jsonl"));
        let child = Command::new(py)
            .arg(root().join("tests/fixtures/server/serve.py"))
            .arg("--model")
            .arg(model)
            .args(["--dtype", dtype, "--port", "0", "--port-file"])
            .arg(&port_file)
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Server {
            child,
            port_file,
            log,
        }
    }

    /// Its URL once it serves (the port file appears after the model is loaded).
    fn url(&mut self) -> String {
        let start = Instant::now();
        while !self.port_file.exists() {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("serve.py exited early: {st}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "serve.py did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let port = std::fs::read_to_string(&self.port_file).unwrap();
        format!("http://127.0.0.1:{}", port.trim())
    }

    /// `(event, weights_sum)` of each logged event.
    fn events(&self) -> Vec<(String, f64)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let w = v["weights_sum"].as_f64().unwrap_or(f64::NAN);
                (v["event"].as_str().unwrap().to_string(), w)
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const STEPS: usize = 3;

fn config(server: &ServerConfig) -> harness::config::RunConfig {
    let yaml = format!(
        "model: {{ name: tiny-qwen3, init_seed: 0 }}\n\
         task: {{ name: addition, difficulty: 1, sft: {{ steps: 30, lr: 0.003, batch_size: 64 }} }}\n\
         rollout: {{ prompts_per_step: 8, group_size: 4, max_new_tokens: 4, engine: {{ server: {} }} }}\n\
         algorithm: {{ name: grpo }}\n\
         optim: {{ lr: 0.001 }}\n\
         train: {{ steps: {STEPS} }}\n\
         eval: {{ every: 0, prompts: 8 }}\n\
         checkpoint: {{ every: 0 }}\n",
        serde_json::to_string(server).unwrap()
    );
    let raw: harness::config::RawRunConfig = serde_yaml::from_str(&yaml).unwrap();
    raw.check().unwrap_or_else(|e| panic!("{e}"))
}

/// A fixed prompt's sampled token and its log-prob on the server (seeded: same weights, same
/// answer).
fn probe(cfg: &ServerConfig) -> (i64, f64) {
    let p = SamplingParams {
        max_new_tokens: 1,
        ..SamplingParams::default()
    };
    let r = Client::new(cfg)
        .complete(&[vec![1, 2, 3]], 1, &p, 7, 1 << 20)
        .unwrap();
    (r[0].response_ids[0], r[0].logprobs[0])
}

/// Max |μ − log π| over the tokens the server samples for a few prompts, π being the harness's
/// own fp32 model of the weights in `dir` (the last ones the trainer pushed).
fn max_token_logp_diff(cfg: &ServerConfig, dir: &Path) -> f64 {
    let model = harness::model::load_model(&dir.display().to_string(), Kind::Float, Device::Cpu, 0)
        .unwrap();
    let p = SamplingParams {
        max_new_tokens: 6,
        ..SamplingParams::default()
    };
    let prompts = [vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9]];
    let vocab = model.cfg.vocab_size;
    let ro = Client::new(cfg)
        .rollouts(&prompts, 3, &p, 11, vocab, Device::Cpu)
        .unwrap();
    let s = harness::rollout::score_responses(
        &model,
        &ro.prompt_ids,
        &ro.prompt_mask,
        &ro.response_ids,
        &ro.response_mask,
        1.0,
        None,
    );
    ((s.logp - &ro.rollout_logp).abs() * &ro.response_mask)
        .max()
        .double_value(&[])
}

fn metrics(dir: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn col(rows: &[serde_json::Map<String, serde_json::Value>], key: &str) -> Vec<f64> {
    rows.iter()
        .map(|r| r[key].as_f64().unwrap_or_else(|| panic!("{key} missing")))
        .collect()
}

#[test]
fn trains_against_a_real_server_fp32_matches_bf16_differs() {
    let Some(py) = python() else {
        println!(
            "SKIP server_engine: no Python venv with torch + transformers \
             ($HARNESS_VENV or ~/.cache/harness/venv)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = |s: &str| tmp.path().join(s);
    for name in ["fp32_model", "bf16_model"] {
        let o = harness()
            .args(["init", "tiny-qwen3", "--seed", "0", "--out"])
            .arg(d(name))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    for s in ["fp32_srv", "bf16_srv"] {
        std::fs::create_dir_all(d(s)).unwrap();
    }
    // fp32 speaks vLLM's reload (re-read the served directory), bf16 SGLang's (load a path).
    let mut fp32 = Server::start(&py, &d("fp32_model"), "fp32", &d("fp32_srv"));
    let mut bf16 = Server::start(&py, &d("bf16_model"), "bf16", &d("bf16_srv"));
    let cfg_fp32 = ServerConfig {
        url: fp32.url(),
        model: "model".into(),
        reload: Reload::Vllm,
        weights_dir: Some(d("fp32_model").display().to_string()),
        timeout_s: 120.0,
    };
    let cfg_bf16 = ServerConfig {
        url: bf16.url(),
        reload: Reload::Sglang,
        weights_dir: Some(d("bf16_weights").display().to_string()),
        ..cfg_fp32.clone()
    };
    let before = probe(&cfg_fp32);
    tch::set_num_threads(1);
    for (cfg, run) in [(&cfg_fp32, "run_fp32"), (&cfg_bf16, "run_bf16")] {
        harness::train::run_training(
            &config(cfg),
            1,
            &d(run),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
    }
    let after = probe(&cfg_fp32);
    let token_diff = [
        max_token_logp_diff(&cfg_fp32, &d("fp32_model")),
        max_token_logp_diff(&cfg_bf16, &d("bf16_weights")),
    ];
    println!("max |μ − log π| per token, fp32 and bf16 servers: {token_diff:?}");

    // (1) fp32 server: its μ is the trainer's π_old to fp32 rounding, on every token.
    let m32 = metrics(&d("run_fp32"));
    assert_eq!(m32.len(), STEPS);
    for key in [
        "rollout_corr/abs_prob_diff_max",
        "rollout_corr/log_ppl_abs_diff",
        "rollout_corr/k3_kl",
    ] {
        let worst = col(&m32, key).into_iter().fold(0f64, |a, x| a.max(x.abs()));
        println!("fp32 server: max over steps of |{key}| = {worst:.3e}");
        assert!(worst < 1e-4, "fp32 server: {key} = {worst}");
    }
    assert!(
        token_diff[0] < 1e-4,
        "fp32 server, per token: {}",
        token_diff[0]
    );
    // (2) bf16 server: a real, reported discrepancy.
    assert!(
        token_diff[1] > 1e-4,
        "bf16 server, per token: {}",
        token_diff[1]
    );
    let m16 = metrics(&d("run_bf16"));
    let diff = col(&m16, "rollout_corr/abs_prob_diff_max");
    println!("bf16 server: rollout_corr/abs_prob_diff_max per step = {diff:?}");
    assert!(diff.iter().all(|&x| x > 1e-4), "bf16 server: {diff:?}");
    assert!(col(&m16, "rollout_corr/log_ppl_abs_diff")
        .iter()
        .all(|&x| x > 0.0));
    // (3) rewards are the task's: after SFT the tiny model solves some additions.
    for m in [&m32, &m16] {
        let score: f64 = col(m, "critic/score/mean").iter().sum();
        println!("mean reward summed over steps: {score:.3}");
        assert!(score > 0.0, "no reward in {STEPS} steps");
    }
    // (4) weights went to the server before every step (after SFT, then after each update), and
    // they changed: the server's weights and its log-prob of a fixed prompt moved.
    // (The fp32 server also answered the probes before and after; both, the per-token check.)
    for (srv, probes) in [(&fp32, true), (&bf16, false)] {
        let ev = srv.events();
        let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
        let mut want = vec!["reload"];
        want.extend(probes.then_some("completions"));
        for _ in 0..STEPS {
            want.extend(["reload", "completions"]);
        }
        want.extend(probes.then_some("completions"));
        want.push("completions");
        assert_eq!(kinds, want, "server events");
        let sums: Vec<f64> = ev.iter().filter(|e| e.0 == "reload").map(|e| e.1).collect();
        assert!(
            sums.windows(2).all(|w| w[0] != w[1]),
            "weights unchanged: {sums:?}"
        );
    }
    assert_ne!(after, before, "the server's log-probs did not change");
}

#[test]
fn validate_names_each_bad_server_key() {
    let d = tempfile::tempdir().unwrap();
    let grid = d.path().join("g.yaml");
    std::fs::write(
        &grid,
        "name: srv\nbase:\n  model: { name: tiny-qwen3 }\n  task: { name: addition }\n  \
         algorithm: { name: grpo }\n  rollout:\n    engine:\n      staleness: 2\n      \
         server: { url: 'https://h:1', model: policy, reload: sglang }\nseeds: [0]\n",
    )
    .unwrap();
    let o = harness().arg("validate").arg(&grid).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    for key in [
        "rollout.engine.server.url",
        "rollout.engine.server.weights_dir",
        "rollout.engine.staleness",
    ] {
        assert!(t.contains(key), "{key} not in\n{t}");
    }
    let ok = "server: { url: 'http://127.0.0.1:8000', model: policy, reload: sglang, \
              weights_dir: /tmp/w }";
    let body = std::fs::read_to_string(&grid).unwrap();
    let body = body.replace("      staleness: 2\n", "");
    let body = body.replace(
        "server: { url: 'https://h:1', model: policy, reload: sglang }",
        ok,
    );
    std::fs::write(&grid, body).unwrap();
    let o = harness().arg("validate").arg(&grid).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
