//! The `shardflow` binary: a thin edge over the library (argument parsing, exit codes).

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
