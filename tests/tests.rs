//! CLI integration tests (one test binary).
mod cli;
