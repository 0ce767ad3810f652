//! `harness` CLI.
mod cli;

fn main() -> std::process::ExitCode {
    harness::runtime::default_sigpipe();
    harness::runtime::tune_allocator();
    harness::runtime::load_cuda();
    cli::main()
}
