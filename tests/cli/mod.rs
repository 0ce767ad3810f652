//! Tests of the `harness` binary.
mod bench_limits;
mod checkpoint;
mod config;
mod error_texts;
mod export_files;
mod gpu_bench;
mod grid;
mod hub;
mod logprobs_lines;
mod lora_targets;
mod model;
mod objective;
mod output_dirs;
mod report;
mod report_files;
mod run_dir;
mod scripts;
