//! Tasks: prompts with verifiable answers, and their rewards.
//! Synthetic tasks (addition, reversal, sorting, counting) are learnable by tiny models on CPU;
//! `math` reads DAPO-Math-17K and the usual evaluation sets (AIME24/25, AMC23, MATH500, Minerva,
//! OlympiadBench) in their published layouts for real models (`docs/data.md`).
pub mod eval;
pub mod math;
pub mod synthetic;
pub mod verifier;

/// One problem: a prompt (already tokenised) and what counts as a correct answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub prompt_ids: Vec<i64>,
    /// Reference answer text (the SFT target for synthetic tasks).
    pub answer: String,
}

/// A source of problems and a reward for responses.
pub trait Task: Send {
    fn name(&self) -> &str;
    /// `n` training problems for step `step` (deterministic in `(seed, step)`).
    fn train_batch(&self, seed: i64, step: usize, n: usize) -> Vec<Problem>;
    /// The held-out evaluation set(s): `(name, problems)`, each cut to its first `limit`
    /// problems when given (file-based sets are whole otherwise; generated sets have
    /// [`synthetic::DEFAULT_EVAL_SIZE`] problems).
    fn eval_sets(&self, limit: Option<usize>) -> Vec<(String, Vec<Problem>)>;
    /// Reward of a decoded response (the text up to, not including, the stop token).
    fn reward(&self, problem: &Problem, response: &str) -> f64;
    /// Token ids of the SFT target for `problem` (answer followed by the stop token).
    fn sft_target(&self, problem: &Problem) -> crate::Result<Vec<i64>>;
    /// Decode response ids (stopping at the stop token).
    fn decode(&self, ids: &[i64]) -> String;
    /// Tokens that end a response.
    fn stop_tokens(&self) -> Vec<i64>;
    fn pad_token(&self) -> i64;
}

/// splitmix64: a tiny deterministic generator so problem streams do not depend on libtorch's
/// global RNG (which sampling uses) and survive resume exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// splitmix64's step and its output function.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// Stream `stream` of `seed`. The start state is a hash of both: before 2026-12-02 it was
    /// `seed ^ stream·GOLDEN`, so stream k+1 was stream k one draw later (for seed 0; stride 2^m
    /// for others) and consecutive training steps drew nearly the same problems.
    pub fn new(seed: i64, stream: u64) -> Self {
        let state = mix(mix((seed as u64) ^ 0x243F_6A88_85A3_08D3) ^ stream.wrapping_mul(GOLDEN));
        Rng(state)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The task a run config names. `model` is the model spec: for `math`, a Hugging Face model
/// directory whose `tokenizer.json` and chat template (`tokenizer_config.json`) serve the task.
pub fn build_task(cfg: &crate::config::TaskConfig, model: &str) -> crate::Result<Box<dyn Task>> {
    if cfg.name != "math" {
        return Ok(Box::new(synthetic::Synthetic::new(
            &cfg.name,
            cfg.difficulty,
        )?));
    }
    let dir = math_model_dir(model)?;
    let tok = crate::model::tokenizer::Tokenizer::from_hf(&dir)?;
    let template = crate::model::tokenizer::ChatTemplate::from_model_dir(&dir)?;
    let instruction = cfg
        .instruction
        .as_deref()
        .unwrap_or(math::BOXED_INSTRUCTION);
    let load = |path: &str| -> crate::Result<Vec<math::MathItem>> {
        let loaded = math::load_items(std::path::Path::new(path), instruction)?;
        // Goes to the run's log.txt.
        eprintln!("task math: {path}: {}", loaded.summary());
        Ok(loaded.items)
    };
    let train_file = cfg
        .train_file
        .as_deref()
        .ok_or_else(|| crate::Error::Input("task.train_file is required for `math`".into()))?;
    let train = load(train_file)?;
    let eval = cfg
        .eval_files
        .iter()
        .map(|(name, path)| Ok((name.clone(), load(path)?)))
        .collect::<crate::Result<Vec<_>>>()?;
    eprintln!(
        "task math: chat template from {}, thinking {}",
        match template.source() {
            crate::model::tokenizer::TemplateSource::Checkpoint(p) => p.display().to_string(),
            crate::model::tokenizer::TemplateSource::BuiltinQwen3 =>
                "the built-in Qwen3 template".into(),
        },
        if cfg.enable_thinking { "on" } else { "off" }
    );
    Ok(Box::new(math::MathTask::new(
        tok,
        &template,
        cfg.enable_thinking,
        train,
        eval,
    )?))
}

/// The model directory the math task reads its tokenizer from (a path, or a Hub id found in the
/// local Hugging Face cache: [`crate::model::hub::resolve`]), or an error that says which of the
/// directory and its `tokenizer.json` is missing, with the path.
fn math_model_dir(model: &str) -> crate::Result<std::path::PathBuf> {
    use crate::Error;
    let path = std::path::Path::new(model);
    if crate::model::presets::PRESETS.contains(&model) && !path.exists() {
        return Err(Error::Input(format!(
            "task `math` needs a Hugging Face model directory with tokenizer.json; `{model}` is a \
             preset (character vocabulary)"
        )));
    }
    if path.exists() && !path.is_dir() {
        return Err(Error::Input(format!(
            "task `math`: model `{}` is not a directory",
            path.display()
        )));
    }
    let dir = crate::model::hub::resolve(model).map_err(|e| {
        Error::Input(format!(
            "task `math`: {e} (download the checkpoint, e.g. `huggingface-cli download \
             Qwen/Qwen3-8B --local-dir <dir>`)"
        ))
    })?;
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.exists() {
        return Err(Error::Input(format!(
            "task `math`: `{}` is missing (the model directory exists but has no tokenizer)",
            tokenizer.display()
        )));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TaskConfig;

    /// Streams of one seed must not be shifted copies of each other (they were: stream k+1 was
    /// stream k one draw later), or consecutive steps train on nearly the same problems.
    #[test]
    fn streams_of_a_seed_share_no_draws() {
        for seed in [0i64, 1, 2, 3, 7, -1] {
            let mut seen = std::collections::HashSet::new();
            for stream in 0..300u64 {
                let mut r = Rng::new(seed, stream);
                for _ in 0..64 {
                    assert!(
                        seen.insert(r.next_u64()),
                        "seed {seed}: stream {stream} repeats"
                    );
                }
            }
        }
    }

    #[test]
    fn training_steps_draw_fresh_problems() {
        let task = build_task(
            &serde_yaml::from_str("{name: sorting, difficulty: 8}").unwrap(),
            "",
        )
        .unwrap();
        for seed in [0, 1, 2, 3] {
            let mut seen = std::collections::HashSet::new();
            for step in 0..200 {
                for p in task.train_batch(seed, step, 8) {
                    seen.insert(p.prompt_ids);
                }
            }
            // 1600 draws from ~10^13 problems: repeats would mean overlapping streams (the old
            // seeding gave 242 distinct problems for seed 0).
            assert_eq!(seen.len(), 1600, "seed {seed}");
        }
    }

    fn math_cfg(train: &str) -> TaskConfig {
        serde_yaml::from_str(&format!("{{name: math, train_file: {train}}}")).unwrap()
    }

    fn err(model: &str) -> String {
        match build_task(&math_cfg("x.jsonl"), model) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error for {model}"),
        }
    }

    #[test]
    fn missing_model_dir_and_missing_tokenizer_are_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("models/Qwen3-8B");
        let e = err(missing.to_str().unwrap());
        assert!(e.contains("no directory"), "{e}");
        assert!(e.contains(missing.to_str().unwrap()), "{e}");
        assert!(!e.contains("tokenizer.json` is missing"), "{e}");

        std::fs::create_dir_all(&missing).unwrap();
        let e = err(missing.to_str().unwrap());
        let tok = missing.join("tokenizer.json");
        assert!(
            e.contains(&format!("`{}` is missing", tok.display())),
            "{e}"
        );

        let e = err("tiny-qwen3");
        assert!(e.contains("is a preset"), "{e}");
    }

    #[test]
    fn math_task_end_to_end_on_the_fixtures() {
        let root =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/math");
        let data = |f: &str| root.join("data").join(f).display().to_string();
        let yaml = format!(
            "{{name: math, train_file: {}, eval_files: {{aime24: {}, olympiad: {}}}}}",
            data("dapo-math-17k.parquet"),
            data("aime24.parquet"),
            data("olympiadbench.parquet")
        );
        let cfg: TaskConfig = serde_yaml::from_str(&yaml).unwrap();
        let model = root.join("chat/qwen3");
        let tok = crate::model::tokenizer::Tokenizer::from_hf(&model).unwrap();
        let reference: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(root.join("chat/reference.json")).unwrap(),
        )
        .unwrap();
        // transformers' render of the fixture's first DAPO prompt, with thinking on or off.
        let rendered = |thinking: bool| {
            reference
                .iter()
                .find(|c| {
                    c["model_dir"] == "qwen3"
                        && c["enable_thinking"] == thinking
                        && c["add_generation_prompt"] == true
                        && c["messages"].as_array().unwrap().len() == 1
                })
                .unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let prompt_of_55 = |task: &dyn Task| {
            (0..100)
                .flat_map(|step| task.train_batch(0, step, 4))
                .find(|p| p.answer == "55")
                .unwrap()
        };
        let task = build_task(&cfg, model.to_str().unwrap()).unwrap();
        let p = prompt_of_55(task.as_ref());
        assert_eq!(tok.decode_all(&p.prompt_ids).unwrap(), rendered(false));
        assert_eq!(task.reward(&p, "Adding pairs: 5 * 11.\n\nAnswer: 55"), 1.0);
        assert_eq!(task.reward(&p, "Answer: 56"), 0.0);

        let sets = task.eval_sets(None);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].1.len(), 3, "no truncation unless asked");
        assert_eq!(task.eval_sets(Some(1))[0].1.len(), 1);
        let olympiad = &sets[1].1[0];
        assert_eq!(olympiad.answer, "2, 3");
        assert_eq!(task.reward(olympiad, "so \\boxed{3, 2}"), 1.0);
        assert_eq!(task.reward(olympiad, "\\boxed{2}"), 0.0);

        let thinking: TaskConfig = serde_yaml::from_str(
            &yaml.replace("{name: math,", "{name: math, enable_thinking: true,"),
        )
        .unwrap();
        let task = build_task(&thinking, model.to_str().unwrap()).unwrap();
        let p = prompt_of_55(task.as_ref());
        assert_eq!(tok.decode_all(&p.prompt_ids).unwrap(), rendered(true));
    }
}
