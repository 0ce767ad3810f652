//! `harness`: Qwen3 dense / MoE models on LibTorch, a rollout engine whose inference copy can be made
//! to differ from the trainer's, and the RL objectives that cope with that discrepancy.

pub mod backend;
pub mod config;
pub mod diagnostics;
pub mod error;
pub mod grid;
pub mod model;
pub mod objective;
pub mod report;
pub mod rollout;
pub mod rundir;
pub mod runtime;
pub mod table;
pub mod task;
pub mod train;

pub use error::{Error, Result};

#[cfg(test)]
mod tests_imports;
#[cfg(test)]
mod tests_layout;

/// libtorch's RNG and thread count are process-global: tests that seed it (or compare seeded
/// results) hold this lock so parallel tests do not interleave their draws.
#[cfg(test)]
pub(crate) fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
