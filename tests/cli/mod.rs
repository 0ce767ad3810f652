//! Tests of the `harness` binary.
mod config;
mod gpu_bench;
mod grid;
mod model;
mod report;
