//! Rollout: batched KV-cached sampling with an inference copy of the weights that can be made to
//! differ from the trainer's, trainer-side recompute of `π_old`, and external-engine rollouts.
pub mod discrepancy;
pub mod engine;
pub mod external;
pub mod noise;
pub mod sampler;
pub mod score;

pub use engine::Engine;
pub use sampler::{generate, FinishReason, Rollouts, SamplingParams};
pub use score::{score_responses, score_responses_recompute, Scored};

#[cfg(test)]
mod tests;
