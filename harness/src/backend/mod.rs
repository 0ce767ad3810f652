//! Other trainers that run a grid's runs. `verl`: a run's config as a verl 0.9.1 launch (Hydra
//! overrides, environment, the plugin settings) and verl's metric log read back into the run
//! directory's `metrics.jsonl` / `eval.jsonl`.
pub mod run;
pub mod verl;
pub mod verl_log;

use crate::config::{ConfigError, RawRunConfig};

/// The backends' rules for a run config: every setting its backend cannot honour, at its key path
/// (none for a harness run). Config's checks take this as their
/// [`BackendRules`](crate::config::BackendRules): config cannot call it, since this layer imports
/// config.
pub fn check(cfg: &RawRunConfig) -> Vec<ConfigError> {
    verl::check(cfg)
}
