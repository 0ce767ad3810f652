//! Tokenizers: Hugging Face `tokenizer.json` (via the `tokenizers` crate) for real checkpoints, the
//! Qwen3 chat format, and a small character-level tokenizer for synthetic tasks on tiny models.
use crate::{Error, Result};
use std::path::Path;

/// Character-level tokenizer with a fixed 64-symbol vocabulary: `<pad>`, `<bos>`, `<eos>`, then
/// printable characters. Unknown characters are an error, not silently dropped.
#[derive(Debug, Clone)]
pub struct CharTokenizer {
    chars: Vec<char>,
}

pub const PAD: i64 = 0;
pub const BOS: i64 = 1;
pub const EOS: i64 = 2;
const SPECIALS: [&str; 3] = ["<pad>", "<bos>", "<eos>"];
const ALPHABET: &str = "0123456789abcdefghijklmnopqrstuvwxyz +-*/=<>()[]{},.:;?!|#_'\"";

impl Default for CharTokenizer {
    fn default() -> Self {
        let chars: Vec<char> = ALPHABET.chars().collect();
        debug_assert_eq!(chars.len() + SPECIALS.len(), 64);
        CharTokenizer { chars }
    }
}

impl CharTokenizer {
    pub fn vocab_size(&self) -> usize {
        SPECIALS.len() + self.chars.len()
    }

    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        text.chars()
            .map(|c| {
                self.chars
                    .iter()
                    .position(|&x| x == c)
                    .map(|i| (i + SPECIALS.len()) as i64)
                    .ok_or_else(|| {
                        Error::Tokenizer(format!("character {c:?} is not in the char vocabulary"))
                    })
            })
            .collect()
    }

    /// Decode ids; special tokens are skipped, out-of-range ids shown as `?`.
    pub fn decode(&self, ids: &[i64]) -> String {
        ids.iter()
            .filter(|&&i| i >= SPECIALS.len() as i64)
            .map(|&i| *self.chars.get(i as usize - SPECIALS.len()).unwrap_or(&'?'))
            .collect()
    }
}

/// Either a HF tokenizer or the char-level one.
pub enum Tokenizer {
    Hf(Box<tokenizers::Tokenizer>),
    Char(CharTokenizer),
}

impl Tokenizer {
    /// Load `tokenizer.json` from a model directory (or the file itself).
    pub fn from_hf(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        let tok = tokenizers::Tokenizer::from_file(&file)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", file.display())))?;
        Ok(Tokenizer::Hf(Box::new(tok)))
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Hf(t) => t.get_vocab_size(true),
            Tokenizer::Char(c) => c.vocab_size(),
        }
    }

    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        match self {
            Tokenizer::Hf(t) => Ok(t
                .encode(text, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?
                .get_ids()
                .iter()
                .map(|&i| i as i64)
                .collect()),
            Tokenizer::Char(c) => c.encode(text),
        }
    }

    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        match self {
            Tokenizer::Hf(t) => {
                let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
                t.decode(&ids, true)
                    .map_err(|e| Error::Tokenizer(e.to_string()))
            }
            Tokenizer::Char(c) => Ok(c.decode(ids)),
        }
    }

    pub fn token_id(&self, token: &str) -> Option<i64> {
        match self {
            Tokenizer::Hf(t) => t.token_to_id(token).map(|i| i as i64),
            Tokenizer::Char(_) => SPECIALS.iter().position(|&s| s == token).map(|i| i as i64),
        }
    }
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Qwen3's chat format: `<|im_start|>role\n…<|im_end|>\n` per turn, then the generation prompt
/// `<|im_start|>assistant\n`; with thinking off, an empty `<think>` block as Qwen3's template inserts.
pub fn qwen3_chat_prompt(
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    enable_thinking: bool,
) -> String {
    let mut s = String::new();
    for m in messages {
        s.push_str("<|im_start|>");
        s.push_str(&m.role);
        s.push('\n');
        s.push_str(m.content.trim());
        s.push_str("<|im_end|>\n");
    }
    if add_generation_prompt {
        s.push_str("<|im_start|>assistant\n");
        if !enable_thinking {
            s.push_str("<think>\n\n</think>\n\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_roundtrip_and_vocab() {
        let t = CharTokenizer::default();
        assert_eq!(t.vocab_size(), 64);
        let ids = t.encode("12+34=46").unwrap();
        assert!(ids.iter().all(|&i| (3..64).contains(&i)));
        assert_eq!(t.decode(&ids), "12+34=46");
        assert!(t.encode("é").is_err());
    }

    #[test]
    fn chat_format_matches_qwen3_template() {
        let msgs = vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "1+1?".into(),
            },
        ];
        assert_eq!(
            qwen3_chat_prompt(&msgs, true, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n\
             <|im_start|>assistant\n<think>\n\n</think>\n\n"
        );
        assert!(qwen3_chat_prompt(&msgs, true, true).ends_with("<|im_start|>assistant\n"));
    }
}
