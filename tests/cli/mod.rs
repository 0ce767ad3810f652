//! Tests of the `harness` binary.
mod gpu_bench;
mod grid;
mod math;
mod model;
mod report;
