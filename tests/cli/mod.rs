//! Tests of the `harness` binary.
mod gate_mutants;
mod gpu_bench;
mod grid;
mod model;
mod report;
mod report_files;
mod run_dir;
mod scripts;
