//! Synthetic verifiable tasks on the character tokenizer. Prompts look like `12+34=`, `rev abc=`,
//! `sort 312=`, `count a abca=`; the answer follows and ends with `<eos>`. Reward 1 for an exact
//! answer, 0 otherwise.
use super::{Problem, Rng, Task};
use crate::model::tokenizer::{CharTokenizer, EOS, PAD};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Addition,
    Reversal,
    Sorting,
    Counting,
}

pub struct Synthetic {
    kind: Kind,
    difficulty: usize,
    tok: CharTokenizer,
}

/// Problems in a synthetic eval set when `eval.prompts` is unset.
pub const DEFAULT_EVAL_SIZE: usize = 64;

/// Problems with this stream id are held out from training.
const EVAL_STREAM: u64 = 0xE7A1;

impl Synthetic {
    pub fn new(name: &str, difficulty: usize) -> Result<Self> {
        let kind = match name {
            "addition" => Kind::Addition,
            "reversal" => Kind::Reversal,
            "sorting" => Kind::Sorting,
            "counting" => Kind::Counting,
            _ => {
                return Err(Error::Input(format!(
                    "unknown synthetic task `{name}` (addition, reversal, sorting, counting)"
                )))
            }
        };
        if !(1..=8).contains(&difficulty) {
            return Err(Error::Input(format!(
                "difficulty {difficulty} must be in 1..=8"
            )));
        }
        Ok(Synthetic {
            kind,
            difficulty,
            tok: CharTokenizer::default(),
        })
    }

    /// (prompt text, answer text) for one random instance.
    fn instance(&self, rng: &mut Rng) -> (String, String) {
        let d = self.difficulty;
        match self.kind {
            Kind::Addition => {
                let max = 10u64.pow(d as u32);
                let (a, b) = (rng.below(max), rng.below(max));
                (format!("{a}+{b}="), (a + b).to_string())
            }
            Kind::Reversal => {
                let n = 1 + d + rng.below(d as u64 + 1) as usize;
                let s: String = (0..n)
                    .map(|_| (b'a' + rng.below(8) as u8) as char)
                    .collect();
                (format!("rev {s}="), s.chars().rev().collect())
            }
            Kind::Sorting => {
                let n = 1 + d + rng.below(d as u64 + 1) as usize;
                let mut v: Vec<u8> = (0..n).map(|_| b'0' + rng.below(10) as u8).collect();
                let p = String::from_utf8(v.clone()).unwrap();
                v.sort();
                (format!("sort {p}="), String::from_utf8(v).unwrap())
            }
            Kind::Counting => {
                let n = 2 + 2 * d + rng.below(2 * d as u64) as usize;
                let s: String = (0..n)
                    .map(|_| (b'a' + rng.below(4) as u8) as char)
                    .collect();
                let c = (b'a' + rng.below(4) as u8) as char;
                let k = s.chars().filter(|&x| x == c).count();
                (format!("count {c} {s}="), k.to_string())
            }
        }
    }

    fn problem(&self, rng: &mut Rng) -> Problem {
        let (p, a) = self.instance(rng);
        Problem {
            prompt_ids: self
                .tok
                .encode(&p)
                .expect("synthetic prompts use the char vocabulary"),
            answer: a,
        }
    }
}

impl Task for Synthetic {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Addition => "addition",
            Kind::Reversal => "reversal",
            Kind::Sorting => "sorting",
            Kind::Counting => "counting",
        }
    }

    fn train_batch(&self, seed: i64, step: usize, n: usize) -> Vec<Problem> {
        let mut rng = Rng::new(seed, 1 + step as u64);
        (0..n).map(|_| self.problem(&mut rng)).collect()
    }

    fn eval_sets(&self, limit: Option<usize>) -> Vec<(String, Vec<Problem>)> {
        // Fixed across seeds so every run of a grid is evaluated on the same problems.
        let mut rng = Rng::new(0, EVAL_STREAM);
        let n = limit.unwrap_or(DEFAULT_EVAL_SIZE);
        vec![(
            self.name().to_string(),
            (0..n).map(|_| self.problem(&mut rng)).collect(),
        )]
    }

    fn reward(&self, problem: &Problem, response: &str) -> f64 {
        f64::from(u8::from(response == problem.answer))
    }

    fn sft_target(&self, problem: &Problem) -> Result<Vec<i64>> {
        let mut ids = self.tok.encode(&problem.answer)?;
        ids.push(EOS);
        Ok(ids)
    }

    fn decode(&self, ids: &[i64]) -> String {
        let end = ids.iter().position(|&t| t == EOS).unwrap_or(ids.len());
        self.tok.decode(&ids[..end])
    }

    fn stop_tokens(&self) -> Vec<i64> {
        vec![EOS]
    }

    fn pad_token(&self) -> i64 {
        PAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_right_and_streams_deterministic() {
        let t = Synthetic::new("addition", 2).unwrap();
        let a = t.train_batch(3, 5, 4);
        assert_eq!(a, t.train_batch(3, 5, 4));
        assert_ne!(a, t.train_batch(3, 6, 4));
        let tok = CharTokenizer::default();
        for p in &a {
            let text = tok.decode(&p.prompt_ids);
            let (x, y) = text.trim_end_matches('=').split_once('+').unwrap();
            let sum: u64 = x.parse::<u64>().unwrap() + y.parse::<u64>().unwrap();
            assert_eq!(p.answer, sum.to_string());
            assert_eq!(t.reward(p, &p.answer), 1.0);
            assert_eq!(t.reward(p, "x"), 0.0);
        }
        for name in ["reversal", "sorting", "counting"] {
            let t = Synthetic::new(name, 3).unwrap();
            let p = &t.train_batch(0, 0, 1)[0];
            let target = t.sft_target(p).unwrap();
            assert_eq!(*target.last().unwrap(), EOS);
            assert_eq!(t.decode(&target), p.answer);
        }
        assert!(Synthetic::new("parity", 1).is_err());
    }

    #[test]
    fn eval_set_is_fixed_and_disjoint_stream() {
        let t = Synthetic::new("sorting", 2).unwrap();
        assert_eq!(t.eval_sets(Some(8)), t.eval_sets(Some(8)));
        assert_ne!(t.eval_sets(Some(8))[0].1, t.train_batch(0, 0, 8));
        assert_eq!(t.eval_sets(None)[0].1.len(), DEFAULT_EVAL_SIZE);
    }
}
