//! Math task for real models: problems from JSONL or Parquet files in the common layouts
//! (DAPO-Math-17K: `prompt` as chat messages + `reward_model.ground_truth`; AIME / MATH500:
//! `problem` + `answer`; or plain `prompt` + `answer`), Qwen3 chat prompts, verifier rewards.
use super::verifier::{is_correct, last_boxed};
use super::{Problem, Rng, Task};
use crate::model::tokenizer::{qwen3_chat_prompt, ChatMessage, Tokenizer};
use crate::{Error, Result};
use std::path::Path;

/// Instruction appended to each problem, as in DAPO / DCMDP setups.
pub const INSTRUCTION: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

/// A problem as text.
#[derive(Debug, Clone, PartialEq)]
pub struct MathItem {
    pub question: String,
    pub answer: String,
}

fn text_of(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        // Chat messages: the last user turn.
        serde_json::Value::Array(msgs) => msgs
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str().map(str::to_string)),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Extract (question, answer) from one record in any supported layout.
pub fn item_from_json(v: &serde_json::Value) -> std::result::Result<MathItem, String> {
    let question = ["prompt", "problem", "question"]
        .iter()
        .find_map(|k| v.get(*k).and_then(text_of))
        .ok_or("no `prompt`, `problem` or `question` field")?;
    let answer = ["answer", "ground_truth"]
        .iter()
        .find_map(|k| v.get(*k).and_then(text_of))
        .or_else(|| {
            v.get("reward_model")
                .and_then(|r| r.get("ground_truth"))
                .and_then(text_of)
        })
        .or_else(|| {
            v.get("solution")
                .and_then(|s| s.as_str())
                .and_then(last_boxed)
        })
        .ok_or("no `answer`, `ground_truth`, `reward_model.ground_truth` or boxed `solution`")?;
    Ok(MathItem { question, answer })
}

/// Load a `.jsonl` / `.json` (one object per line) or `.parquet` file.
pub fn load_items(path: &Path) -> Result<Vec<MathItem>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let records: Vec<serde_json::Value> = match ext {
        "parquet" => parquet_records(path)?,
        _ => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    serde_json::from_str(l)
                        .map_err(|e| Error::Input(format!("{}:{}: {e}", path.display(), i + 1)))
                })
                .collect::<Result<_>>()?
        }
    };
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            item_from_json(r)
                .map_err(|e| Error::Input(format!("{} record {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

fn parquet_records(path: &Path) -> Result<Vec<serde_json::Value>> {
    use polars::prelude::*;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let mut rows = vec![serde_json::Map::new(); df.height()];
    for col in df.columns() {
        let name = col.name().to_string();
        // Flat columns only (cast to text); nested layouts should be exported to JSONL.
        let Ok(c) = col.cast(&DataType::String) else {
            continue;
        };
        let Ok(ca) = c.str() else { continue };
        for (i, row) in rows.iter_mut().enumerate() {
            if let Some(s) = ca.get(i) {
                row.insert(name.clone(), serde_json::Value::String(s.to_string()));
            }
        }
    }
    Ok(rows.into_iter().map(serde_json::Value::Object).collect())
}

/// Math problems with a HF tokenizer and the Qwen3 chat prompt (thinking off by default).
pub struct MathTask {
    tok: Tokenizer,
    train: Vec<MathItem>,
    eval: Vec<(String, Vec<MathItem>)>,
    stop: Vec<i64>,
    pad: i64,
    pub enable_thinking: bool,
}

impl MathTask {
    pub fn new(
        tok: Tokenizer,
        train: Vec<MathItem>,
        eval: Vec<(String, Vec<MathItem>)>,
    ) -> Result<Self> {
        let stop: Vec<i64> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tok.token_id(t))
            .collect();
        if stop.is_empty() {
            return Err(Error::Tokenizer(
                "tokenizer has neither <|im_end|> nor <|endoftext|>".into(),
            ));
        }
        let pad = tok.token_id("<|endoftext|>").unwrap_or(stop[0]);
        Ok(MathTask {
            tok,
            train,
            eval,
            stop,
            pad,
            enable_thinking: false,
        })
    }

    fn problem(&self, item: &MathItem) -> Problem {
        let prompt = qwen3_chat_prompt(
            &[ChatMessage {
                role: "user".into(),
                content: format!("{}\n\n{INSTRUCTION}", item.question),
            }],
            true,
            self.enable_thinking,
        );
        Problem {
            prompt_ids: self.tok.encode(&prompt).unwrap_or_default(),
            answer: item.answer.clone(),
        }
    }
}

impl Task for MathTask {
    fn name(&self) -> &str {
        "math"
    }

    fn train_batch(&self, seed: i64, step: usize, n: usize) -> Vec<Problem> {
        let mut rng = Rng::new(seed, 1 + step as u64);
        (0..n)
            .map(|_| self.problem(&self.train[rng.below(self.train.len() as u64) as usize]))
            .collect()
    }

    fn eval_sets(&self, n: usize) -> Vec<(String, Vec<Problem>)> {
        self.eval
            .iter()
            .map(|(name, items)| {
                (
                    name.clone(),
                    items.iter().take(n).map(|i| self.problem(i)).collect(),
                )
            })
            .collect()
    }

    fn reward(&self, problem: &Problem, response: &str) -> f64 {
        f64::from(u8::from(is_correct(response, &problem.answer)))
    }

    fn sft_target(&self, problem: &Problem) -> Result<Vec<i64>> {
        let mut ids = self.tok.encode(&format!("\\boxed{{{}}}", problem.answer))?;
        ids.push(self.stop[0]);
        Ok(ids)
    }

    fn decode(&self, ids: &[i64]) -> String {
        let end = ids
            .iter()
            .position(|t| self.stop.contains(t))
            .unwrap_or(ids.len());
        self.tok.decode(&ids[..end]).unwrap_or_default()
    }

    fn stop_tokens(&self) -> Vec<i64> {
        self.stop.clone()
    }

    fn pad_token(&self) -> i64 {
        self.pad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_layouts() {
        let dapo = serde_json::json!({
            "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "What is 1+1?"}],
            "reward_model": {"ground_truth": "2", "style": "rule"}
        });
        assert_eq!(
            item_from_json(&dapo).unwrap(),
            MathItem {
                question: "What is 1+1?".into(),
                answer: "2".into()
            }
        );
        let aime = serde_json::json!({"problem": "Find x.", "answer": 204});
        assert_eq!(item_from_json(&aime).unwrap().answer, "204");
        let math500 = serde_json::json!({"problem": "p", "solution": "so \\boxed{\\frac{3}{4}}"});
        assert_eq!(item_from_json(&math500).unwrap().answer, "\\frac{3}{4}");
        assert!(item_from_json(&serde_json::json!({"problem": "p"})).is_err());
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let f = tempfile::NamedTempFile::with_suffix(".jsonl").unwrap();
        std::fs::write(f.path(), "{\"problem\":\"a\",\"answer\":\"1\"}\n{bad\n").unwrap();
        let e = load_items(f.path()).unwrap_err().to_string();
        assert!(e.contains(":2:"), "{e}");
    }

    #[test]
    fn reads_flat_parquet() {
        use polars::prelude::*;
        let mut df = df!("problem" => ["1+1?", "2+2?"], "answer" => ["2", "4"]).unwrap();
        let f = tempfile::NamedTempFile::with_suffix(".parquet").unwrap();
        ParquetWriter::new(std::fs::File::create(f.path()).unwrap())
            .finish(&mut df)
            .unwrap();
        let items = load_items(f.path()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].answer, "4");
    }
}
