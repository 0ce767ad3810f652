//! Rollout: batched KV-cached sampling with an inference copy of the weights that can be made to
//! differ from the trainer's, trainer-side recompute of `π_old`, external-engine rollouts, and an
//! inference-server client that trains.
pub mod discrepancy;
pub mod engine;
pub mod external;
pub mod noise;
pub mod sampler;
pub mod score;
pub mod server;

pub use engine::Engine;
pub use sampler::{generate, FinishReason, Rollouts, SamplingParams};
pub use score::{score_responses, score_responses_recompute, Scored};

#[cfg(test)]
mod tests;
