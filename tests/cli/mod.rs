//! Tests of the `harness` binary.
mod config;
mod gpu_bench;
mod grid;
mod model;
mod report;
mod report_files;
mod run_dir;
mod scripts;
