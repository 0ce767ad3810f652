//! Math task for real models: problems from JSONL or Parquet files in the published layouts of
//! DAPO-Math-17K and the usual evaluation sets (field by field in `docs/data.md`), prompts
//! rendered with the checkpoint's chat template, rewards from the verifier.
//!
//! A record's prompt is either chat messages (DAPO-Math-17K's `prompt`: used as given, with the
//! dataset's own answer instruction) or a problem text (`problem` / `question`), to which
//! `task.instruction` is appended unless the text already asks for an answer format. Records
//! whose prompt repeats an earlier one are dropped (the published DAPO-Math-17K file holds each
//! of its ~17.9k prompts about 100 times).
use super::verifier::{is_correct, last_boxed};
use super::{Problem, Rng, Task};
use crate::model::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
use crate::{Error, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Appended to problem texts that carry no answer instruction of their own (Qwen's
/// recommended math prompt; the verifier also reads `Answer:` lines and Minerva's format).
pub const BOXED_INSTRUCTION: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

/// A problem as text: its prompt as chat messages and the reference answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MathItem {
    pub messages: Vec<ChatMessage>,
    pub answer: String,
}

/// What loading one file found.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Unique problems, in file order.
    pub items: Vec<MathItem>,
    /// Records read.
    pub records: usize,
    /// Records dropped because their prompt repeats an earlier one.
    pub duplicates: usize,
    /// Of those, how many gave a different answer than the first (the first is kept).
    pub conflicting: usize,
}

impl Loaded {
    /// One line for the run log, e.g. `1791700 records, 17917 unique prompts (…)`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} records, {} unique prompts",
            self.records,
            self.items.len()
        );
        if self.duplicates > 0 {
            s.push_str(&format!(" ({} duplicates dropped", self.duplicates));
            if self.conflicting > 0 {
                s.push_str(&format!(
                    ", {} of them with a different answer: the first answer kept",
                    self.conflicting
                ));
            }
            s.push(')');
        }
        s
    }
}

/// Text of a scalar field: strings as they are, integral floats as integers (`27.0` → `27`).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        }),
        _ => None,
    }
}

/// Chat messages, if `v` is a list of `{role, content}`.
fn messages_of(v: &Value) -> Option<Vec<ChatMessage>> {
    let list = v.as_array()?;
    let msgs: Option<Vec<ChatMessage>> = list
        .iter()
        .map(|m| {
            Some(ChatMessage {
                role: m.get("role")?.as_str()?.to_string(),
                content: m.get("content")?.as_str()?.to_string(),
            })
        })
        .collect();
    msgs.filter(|m| !m.is_empty())
}

/// Whether a problem text already says how to give the answer.
fn has_answer_instruction(text: &str) -> bool {
    text.contains("\\boxed") || text.to_lowercase().contains("answer:")
}

/// The reference answer of a record, from the first field present: `reward_model.ground_truth`
/// (DAPO), `answer` / `Answer`, `final_answer` (OlympiadBench: a list, joined with `, `),
/// `ground_truth`, or the last `\boxed{}` of `solution` (MATH-style files without `answer`).
fn answer_of(v: &Value) -> Option<String> {
    if let Some(a) = v.get("reward_model").and_then(|r| r.get("ground_truth")) {
        return scalar_text(a);
    }
    for key in ["answer", "Answer"] {
        if let Some(a) = v.get(key).and_then(scalar_text) {
            return Some(a);
        }
    }
    if let Some(list) = v.get("final_answer") {
        return match list {
            Value::Array(parts) => {
                let parts: Option<Vec<String>> = parts.iter().map(scalar_text).collect();
                parts.filter(|p| !p.is_empty()).map(|p| {
                    p.iter()
                        .map(|s| s.trim().trim_matches('$'))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            }
            other => scalar_text(other),
        };
    }
    if let Some(a) = v.get("ground_truth").and_then(scalar_text) {
        return Some(a);
    }
    v.get("solution")
        .and_then(|s| s.as_str())
        .and_then(last_boxed)
}

/// Extract one problem from a record in any supported layout; `instruction` is appended to
/// bare problem texts (empty: nothing appended).
pub fn item_from_json(v: &Value, instruction: &str) -> std::result::Result<MathItem, String> {
    let messages = if let Some(m) = v.get("prompt").and_then(messages_of) {
        m
    } else {
        let text = ["prompt", "problem", "question", "Problem", "Question"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
            .ok_or("no `prompt` (chat messages or text), `problem` or `question` field")?;
        let content = if instruction.is_empty() || has_answer_instruction(text) {
            text.to_string()
        } else {
            format!("{text}\n\n{instruction}")
        };
        vec![ChatMessage {
            role: "user".into(),
            content,
        }]
    };
    let answer = answer_of(v).ok_or(
        "no `reward_model.ground_truth`, `answer`, `final_answer`, `ground_truth` or boxed `solution`",
    )?;
    Ok(MathItem { messages, answer })
}

/// Load a `.parquet` file or a `.jsonl` / `.json` file (one object per line), dropping repeated
/// prompts.
pub fn load_items(path: &Path, instruction: &str) -> Result<Loaded> {
    let mut dedup = Dedup::default();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut add = |i: usize, r: &Value| -> Result<()> {
        let item = item_from_json(r, instruction)
            .map_err(|e| Error::Input(format!("{} record {}: {e}", path.display(), i + 1)))?;
        dedup.push(item);
        Ok(())
    };
    if ext == "parquet" {
        parquet_records(path, &mut add)?;
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .map_err(|e| Error::Input(format!("{}:{}: {e}", path.display(), i + 1)))?;
            add(i, &v)?;
        }
    }
    let loaded = dedup.finish();
    if loaded.items.is_empty() {
        return Err(Error::Input(format!("{}: no records", path.display())));
    }
    Ok(loaded)
}

#[derive(Default)]
struct Dedup {
    seen: HashMap<Vec<ChatMessage>, usize>,
    loaded: Option<Loaded>,
}

impl Dedup {
    fn push(&mut self, item: MathItem) {
        let l = self.loaded.get_or_insert_with(|| Loaded {
            items: vec![],
            records: 0,
            duplicates: 0,
            conflicting: 0,
        });
        l.records += 1;
        match self.seen.get(&item.messages) {
            Some(&first) => {
                l.duplicates += 1;
                if l.items[first].answer != item.answer {
                    l.conflicting += 1;
                }
            }
            None => {
                self.seen.insert(item.messages.clone(), l.items.len());
                l.items.push(item);
            }
        }
    }

    fn finish(self) -> Loaded {
        self.loaded.unwrap_or(Loaded {
            items: vec![],
            records: 0,
            duplicates: 0,
            conflicting: 0,
        })
    }
}

/// Rows converted per slice, so a large file is never held as JSON all at once.
const PARQUET_SLICE: usize = 16_384;

/// Every row of a Parquet file as a JSON object (nested lists and structs included), in slices.
fn parquet_records(path: &Path, add: &mut dyn FnMut(usize, &Value) -> Result<()>) -> Result<()> {
    use polars::prelude::*;
    let bad = |e: PolarsError| Error::Input(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = ParquetReader::new(file).finish().map_err(bad)?;
    let mut row = 0;
    while row < df.height() {
        let slice = df.slice(row as i64, PARQUET_SLICE);
        let mut columns = Vec::new();
        for col in slice.columns() {
            let values = series_to_json(col.as_materialized_series()).map_err(bad)?;
            columns.push((col.name().to_string(), values));
        }
        for i in 0..slice.height() {
            let obj: serde_json::Map<String, Value> = columns
                .iter()
                .map(|(name, values)| (name.clone(), values[i].clone()))
                .collect();
            add(row + i, &Value::Object(obj))?;
        }
        row += slice.height();
    }
    Ok(())
}

/// One JSON value per row of a column.
fn series_to_json(s: &polars::prelude::Series) -> polars::prelude::PolarsResult<Vec<Value>> {
    use polars::prelude::*;
    let dtype = s.dtype().clone();
    Ok(match dtype {
        DataType::String => s
            .str()?
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::String(v.to_string())))
            .collect(),
        DataType::Boolean => s
            .bool()?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        DataType::Float32 | DataType::Float64 => s
            .cast(&DataType::Float64)?
            .f64()?
            .iter()
            .map(|v| {
                v.and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            })
            .collect(),
        d if d.is_integer() => s
            .cast(&DataType::Int64)?
            .i64()?
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::Number(v.into())))
            .collect(),
        DataType::List(_) => s
            .list()?
            .series_iter()
            .map(|v| match v {
                Some(inner) => series_to_json(&inner).map(Value::Array),
                None => Ok(Value::Null),
            })
            .collect::<PolarsResult<_>>()?,
        DataType::Struct(_) => {
            let fields = s.struct_()?.fields_as_series();
            let mut rows = vec![serde_json::Map::new(); s.len()];
            for f in &fields {
                for (row, v) in rows.iter_mut().zip(series_to_json(f)?) {
                    row.insert(f.name().to_string(), v);
                }
            }
            rows.into_iter().map(Value::Object).collect()
        }
        // Images, binary and anything else: not used by the math task.
        _ => vec![Value::Null; s.len()],
    })
}

/// Math problems with a HF tokenizer and the checkpoint's chat template.
pub struct MathTask {
    tok: Tokenizer,
    train: Vec<Problem>,
    eval: Vec<(String, Vec<Problem>)>,
    stop: Vec<i64>,
    pad: i64,
}

impl MathTask {
    /// Prompts are rendered (with `enable_thinking`) and tokenised once, here.
    pub fn new(
        tok: Tokenizer,
        template: &ChatTemplate,
        enable_thinking: bool,
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
        let problems = |items: Vec<MathItem>| -> Result<Vec<Problem>> {
            items
                .into_iter()
                .map(|item| {
                    let text = template.render(&item.messages, true, enable_thinking)?;
                    Ok(Problem {
                        prompt_ids: tok.encode(&text)?,
                        answer: item.answer,
                    })
                })
                .collect()
        };
        let train = problems(train)?;
        let eval = eval
            .into_iter()
            .map(|(name, items)| Ok((name, problems(items)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(MathTask {
            tok,
            train,
            eval,
            stop,
            pad,
        })
    }
}

impl Task for MathTask {
    fn name(&self) -> &str {
        "math"
    }

    fn train_batch(&self, seed: i64, step: usize, n: usize) -> Vec<Problem> {
        let mut rng = Rng::new(seed, 1 + step as u64);
        (0..n)
            .map(|_| self.train[rng.below(self.train.len() as u64) as usize].clone())
            .collect()
    }

    fn eval_sets(&self, limit: Option<usize>) -> Vec<(String, Vec<Problem>)> {
        self.eval
            .iter()
            .map(|(name, problems)| {
                let n = limit.unwrap_or(problems.len());
                (name.clone(), problems.iter().take(n).cloned().collect())
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

    fn data(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/math/data")
            .join(name)
    }

    #[test]
    fn dapo_parquet_keeps_its_own_instruction_and_drops_repeats() {
        let l = load_items(&data("dapo-math-17k.parquet"), BOXED_INSTRUCTION).unwrap();
        assert_eq!(
            (l.records, l.items.len(), l.duplicates, l.conflicting),
            (15, 5, 10, 0)
        );
        let first = &l.items[0];
        assert_eq!(first.answer, "55");
        assert_eq!(first.messages.len(), 1);
        assert_eq!(first.messages[0].role, "user");
        let c = &first.messages[0].content;
        assert!(
            c.starts_with("Solve the following math problem step by step."),
            "{c}"
        );
        assert!(c.ends_with("on its own line after \"Answer:\"."), "{c}");
        assert!(
            !c.contains("\\boxed"),
            "no conflicting boxed instruction: {c}"
        );
        assert!(
            l.summary().contains("10 duplicates dropped"),
            "{}",
            l.summary()
        );
    }

    #[test]
    fn eval_sets_in_their_published_layouts() {
        let cases: [(&str, usize, &str, &str); 6] = [
            ("aime24.parquet", 3, "9", "ordered pairs"),
            ("aime25.jsonl", 2, "28", "positive divisors of $12$"),
            ("amc23.parquet", 2, "36", "of $48$"),
            ("math500.jsonl", 3, "\\frac{3}{4}", "Simplify"),
            ("minerva.jsonl", 2, "60", "average speed"),
            ("olympiadbench.parquet", 2, "2, 3", "x^2 - 5x + 6"),
        ];
        for (file, n, answer, text) in cases {
            let l = load_items(&data(file), BOXED_INSTRUCTION).unwrap();
            assert_eq!(l.items.len(), n, "{file}");
            assert_eq!(l.duplicates, 0, "{file}");
            let item = &l.items[0];
            assert_eq!(item.answer, answer, "{file}");
            let content = &item.messages[0].content;
            assert!(content.contains(text), "{file}: {content}");
            assert!(content.ends_with(BOXED_INSTRUCTION), "{file}: {content}");
        }
    }

    #[test]
    fn reads_the_common_record_shapes() {
        let dapo = serde_json::json!({
            "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "What is 1+1?"}],
            "reward_model": {"ground_truth": "2", "style": "rule"}
        });
        let item = item_from_json(&dapo, BOXED_INSTRUCTION).unwrap();
        assert_eq!(item.messages.len(), 2);
        assert_eq!(item.answer, "2");
        let aime = serde_json::json!({"problem": "Find x.", "answer": 204});
        assert_eq!(item_from_json(&aime, "").unwrap().answer, "204");
        assert_eq!(
            item_from_json(&aime, "").unwrap().messages[0].content,
            "Find x."
        );
        let amc = serde_json::json!({"question": "q", "answer": 27.0});
        assert_eq!(item_from_json(&amc, "").unwrap().answer, "27");
        let math = serde_json::json!({"problem": "p", "solution": "so \\boxed{\\frac{3}{4}}"});
        assert_eq!(item_from_json(&math, "").unwrap().answer, "\\frac{3}{4}");
        let own = serde_json::json!({"problem": "Give it as Answer: N.", "answer": "1"});
        assert_eq!(
            item_from_json(&own, BOXED_INSTRUCTION).unwrap().messages[0].content,
            "Give it as Answer: N."
        );
        assert!(item_from_json(&serde_json::json!({"problem": "p"}), "").is_err());
    }

    #[test]
    fn conflicting_repeats_keep_the_first_answer() {
        let f = tempfile::NamedTempFile::with_suffix(".jsonl").unwrap();
        std::fs::write(
            f.path(),
            "{\"problem\":\"a\",\"answer\":\"1\"}\n{\"problem\":\"a\",\"answer\":\"2\"}\n",
        )
        .unwrap();
        let l = load_items(f.path(), "").unwrap();
        assert_eq!((l.items.len(), l.duplicates, l.conflicting), (1, 1, 1));
        assert_eq!(l.items[0].answer, "1");
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let f = tempfile::NamedTempFile::with_suffix(".jsonl").unwrap();
        std::fs::write(f.path(), "{\"problem\":\"a\",\"answer\":\"1\"}\n{bad\n").unwrap();
        let e = load_items(f.path(), "").unwrap_err().to_string();
        assert!(e.contains(":2:"), "{e}");
    }
}
