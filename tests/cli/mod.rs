//! Tests of the `harness` binary.
mod gpu_bench;
mod grid;
mod model;
mod objective;
mod report;
