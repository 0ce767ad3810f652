//! The library's one error type.
//!
//! Each message is complete on its own (`{path}: {reason}`), so wrapped errors are not also
//! exposed as `source()`: a chain printer (`{:#}`) would otherwise print the OS error twice.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{}: invalid JSON: {err}", path.display())]
    Json {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("tensor `{name}`: expected shape {expected:?}, checkpoint has {found:?}")]
    Shape {
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("checkpoint is missing tensor `{0}`")]
    MissingTensor(String),
    #[error("checkpoint has unexpected tensor(s): {0}")]
    UnexpectedTensors(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("unknown model preset `{0}` (known: {1})")]
    UnknownPreset(String, String),
    /// A model named by path or Hub id that is not on this machine.
    #[error("model `{spec}`: {msg}")]
    ModelNotFound { spec: String, msg: String },
    /// An inference server (`rollout.engine.server`) that failed or answered what the engine
    /// cannot use.
    #[error("inference server {url}: {msg}")]
    Server { url: String, msg: String },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }

    pub fn json(path: impl Into<PathBuf>, err: serde_json::Error) -> Self {
        Error::Json {
            path: path.into(),
            err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_path_and_the_os_error_once() {
        let e = std::fs::read("/nonexistent/x").unwrap_err();
        let e = Error::io("/nonexistent/x", e);
        let text = e.to_string();
        assert!(text.starts_with("/nonexistent/x: "), "{text}");
        assert!(text.contains("os error 2"), "{text}");
        // Chain printers (anyhow's `{:#}`) append each source: there must be none.
        assert!(std::error::Error::source(&e).is_none());
    }
}
