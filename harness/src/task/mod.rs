//! Tasks: prompts with verifiable answers, and their rewards.
//! Synthetic tasks (addition, reversal, sorting, counting) are learnable by tiny models on CPU;
//! `math` reads DAPO-Math / AIME / MATH500-style files for real models.
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
    /// The held-out evaluation set(s): `(name, problems)`.
    fn eval_sets(&self, n: usize) -> Vec<(String, Vec<Problem>)>;
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

impl Rng {
    pub fn new(seed: i64, stream: u64) -> Self {
        let mut r = Rng((seed as u64) ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The task a run config names. `model` is the model spec (its `tokenizer.json` serves `math`).
pub fn build_task(cfg: &crate::config::TaskConfig, model: &str) -> crate::Result<Box<dyn Task>> {
    use crate::Error;
    if cfg.name == "math" {
        let dir = std::path::Path::new(model);
        if !dir.is_dir() {
            return Err(Error::Input(
                "task `math` needs a model directory with tokenizer.json (presets use a char vocabulary)"
                    .into(),
            ));
        }
        let tok = crate::model::tokenizer::Tokenizer::from_hf(dir)?;
        let train_file = cfg
            .train_file
            .as_ref()
            .ok_or_else(|| Error::Input("task.train_file is required for `math`".into()))?;
        let train = math::load_items(std::path::Path::new(train_file))?;
        let eval = cfg
            .eval_files
            .iter()
            .map(|(name, path)| Ok((name.clone(), math::load_items(std::path::Path::new(path))?)))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Box::new(math::MathTask::new(tok, train, eval)?))
    } else {
        Ok(Box::new(synthetic::Synthetic::new(
            &cfg.name,
            cfg.difficulty,
        )?))
    }
}
