//! Tests of the `harness` binary.
mod grid;
mod model;
mod report;
