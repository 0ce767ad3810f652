//! Tokenizers: Hugging Face `tokenizer.json` (via the `tokenizers` crate) for real checkpoints,
//! chat templates (the checkpoint's Jinja `chat_template`, rendered with `minijinja`; Qwen3's as
//! the fallback), and a small character-level tokenizer for synthetic tasks on tiny models.
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

    /// Decode, dropping special tokens.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        self.decode_with(ids, true)
    }

    /// Decode keeping special tokens (`<|im_start|>`, …): the exact text of a prompt.
    pub fn decode_all(&self, ids: &[i64]) -> Result<String> {
        self.decode_with(ids, false)
    }

    fn decode_with(&self, ids: &[i64], skip_special: bool) -> Result<String> {
        match self {
            Tokenizer::Hf(t) => {
                let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
                t.decode(&ids, skip_special)
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The chat template Qwen3 checkpoints ship (`chat_template` in `Qwen/Qwen3-*`'s
/// `tokenizer_config.json`, Apache-2.0), used when a model directory has none.
pub const QWEN3_CHAT_TEMPLATE: &str = include_str!("qwen3_chat_template.jinja");

/// Where a [`ChatTemplate`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// A file of the model directory (`tokenizer_config.json` or `chat_template.jinja`).
    Checkpoint(std::path::PathBuf),
    /// [`QWEN3_CHAT_TEMPLATE`].
    BuiltinQwen3,
}

/// A Jinja chat template, rendered with `minijinja` the way `transformers`' `apply_chat_template`
/// renders it with Jinja2: `trim_blocks` and `lstrip_blocks` on, Python string methods
/// (`startswith`, `split`, `strip`, …) available, the tokenizer's special tokens (`bos_token`,
/// `eos_token`, …) and `enable_thinking` passed as variables.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    template: String,
    source: TemplateSource,
    special_tokens: std::collections::BTreeMap<String, String>,
}

impl ChatTemplate {
    /// Qwen3's template, as its checkpoints ship it.
    pub fn qwen3() -> Self {
        ChatTemplate {
            template: QWEN3_CHAT_TEMPLATE.to_string(),
            source: TemplateSource::BuiltinQwen3,
            special_tokens: Default::default(),
        }
    }

    /// The template of a Hugging Face model directory: `chat_template` in
    /// `tokenizer_config.json` (a string, or a list of `{name, template}` of which `default` or
    /// the first is used), else a `chat_template.jinja` file, else Qwen3's built-in template.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let config_path = dir.join("tokenizer_config.json");
        let mut special_tokens = std::collections::BTreeMap::new();
        let mut from_config = None;
        if config_path.exists() {
            let text =
                std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
            let config: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    path: config_path.clone(),
                    err: source,
                })?;
            for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
                let token = match &config[key] {
                    serde_json::Value::String(s) => Some(s.clone()),
                    // AddedToken form: {"content": "<|im_end|>", ...}
                    v => v["content"].as_str().map(str::to_string),
                };
                if let Some(t) = token {
                    special_tokens.insert(key.to_string(), t);
                }
            }
            from_config = match &config["chat_template"] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(named) => named
                    .iter()
                    .find(|t| t["name"] == "default")
                    .or_else(|| named.first())
                    .and_then(|t| t["template"].as_str().map(str::to_string)),
                _ => None,
            };
        }
        let jinja_path = dir.join("chat_template.jinja");
        let (template, source) = match from_config {
            Some(t) => (t, TemplateSource::Checkpoint(config_path)),
            None if jinja_path.exists() => (
                std::fs::read_to_string(&jinja_path).map_err(|e| Error::io(&jinja_path, e))?,
                TemplateSource::Checkpoint(jinja_path),
            ),
            None => (
                QWEN3_CHAT_TEMPLATE.to_string(),
                TemplateSource::BuiltinQwen3,
            ),
        };
        let t = ChatTemplate {
            template,
            source,
            special_tokens,
        };
        // Fail at load, not at the first prompt, on a template minijinja cannot read.
        t.environment()?;
        Ok(t)
    }

    pub fn source(&self) -> &TemplateSource {
        &self.source
    }

    fn environment(&self) -> Result<minijinja::Environment<'_>> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", &self.template)
            .map_err(|e| self.error(e))?;
        Ok(env)
    }

    fn error(&self, e: minijinja::Error) -> Error {
        let origin = match &self.source {
            TemplateSource::Checkpoint(p) => p.display().to_string(),
            TemplateSource::BuiltinQwen3 => "built-in Qwen3 template".to_string(),
        };
        Error::Tokenizer(format!("chat template ({origin}): {e:#}"))
    }

    /// The prompt text for `messages`; with `add_generation_prompt` it ends where the
    /// assistant's reply starts. `enable_thinking: false` gives Qwen3's empty `<think>` block.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        enable_thinking: bool,
    ) -> Result<String> {
        let env = self.environment()?;
        let tmpl = env.get_template("chat").map_err(|e| self.error(e))?;
        let mut ctx = std::collections::BTreeMap::new();
        for (k, v) in &self.special_tokens {
            ctx.insert(k.clone(), minijinja::Value::from(v.clone()));
        }
        ctx.insert(
            "messages".to_string(),
            minijinja::Value::from_serialize(messages),
        );
        ctx.insert(
            "add_generation_prompt".to_string(),
            minijinja::Value::from(add_generation_prompt),
        );
        ctx.insert(
            "enable_thinking".to_string(),
            minijinja::Value::from(enable_thinking),
        );
        tmpl.render(ctx).map_err(|e| self.error(e))
    }
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

    /// `tests/fixtures/math/chat/`: model directories and `transformers`' renders of them.
    fn chat_fixtures() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/math/chat")
    }

    #[derive(serde::Deserialize)]
    struct Case {
        model_dir: String,
        messages: Vec<ChatMessage>,
        enable_thinking: bool,
        add_generation_prompt: bool,
        text: String,
    }

    #[test]
    fn templates_render_as_transformers_does() {
        let text = std::fs::read_to_string(chat_fixtures().join("reference.json")).unwrap();
        let cases: Vec<Case> = serde_json::from_str(&text).unwrap();
        assert!(cases.len() >= 8);
        for c in &cases {
            let dir = chat_fixtures().join(&c.model_dir);
            let t = ChatTemplate::from_model_dir(&dir).unwrap();
            assert!(matches!(t.source(), TemplateSource::Checkpoint(_)));
            let got = t
                .render(&c.messages, c.add_generation_prompt, c.enable_thinking)
                .unwrap();
            assert_eq!(
                got, c.text,
                "{} thinking={}",
                c.model_dir, c.enable_thinking
            );
            // The built-in template is Qwen3's own.
            if c.model_dir == "qwen3" {
                let builtin = ChatTemplate::qwen3()
                    .render(&c.messages, c.add_generation_prompt, c.enable_thinking)
                    .unwrap();
                assert_eq!(builtin, c.text);
            }
        }
        let thinking_off = cases
            .iter()
            .find(|c| c.model_dir == "qwen3" && !c.enable_thinking && c.add_generation_prompt)
            .unwrap();
        assert!(thinking_off
            .text
            .ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    }

    #[test]
    fn template_sources() {
        let empty = tempfile::tempdir().unwrap();
        let t = ChatTemplate::from_model_dir(empty.path()).unwrap();
        assert_eq!(t.source(), &TemplateSource::BuiltinQwen3);
        // A chat_template.jinja file next to a config without one.
        std::fs::write(empty.path().join("tokenizer_config.json"), "{}").unwrap();
        std::fs::write(
            empty.path().join("chat_template.jinja"),
            "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}",
        )
        .unwrap();
        let t = ChatTemplate::from_model_dir(empty.path()).unwrap();
        let msgs = [ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }];
        assert_eq!(t.render(&msgs, true, false).unwrap(), "[user]hi");
        // A broken template fails at load, naming its file.
        std::fs::write(
            empty.path().join("tokenizer_config.json"),
            r#"{"chat_template": "{% if %}"}"#,
        )
        .unwrap();
        let e = ChatTemplate::from_model_dir(empty.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokenizer_config.json"), "{e}");
    }
}
