//! `harness`: Qwen3 dense / MoE models on LibTorch, a rollout engine whose inference copy can be made
//! to differ from the trainer's, and the RL objectives that cope with that discrepancy.

pub mod error;
pub mod model;
pub mod objective;
pub mod runtime;

pub use error::{Error, Result};
