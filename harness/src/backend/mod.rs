//! Other trainers that run a grid's runs. `verl`: a run's config as a verl 0.9.1 launch (Hydra
//! overrides, environment, the plugin settings) and verl's metric log read back into the run
//! directory's `metrics.jsonl` / `eval.jsonl`.
pub mod run;
pub mod verl;
pub mod verl_log;
