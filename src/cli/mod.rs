//! Command-line interface: the daemon (`run`) and operator tools on flows (`flow ...`).

mod flow;
mod switch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for bad input data (sysexits EX_DATAERR).
pub const EX_DATAERR: u8 = 65;
/// Exit status for a usage or configuration error (sysexits EX_USAGE).
pub const EX_USAGE: u8 = 64;
/// Exit status for a service that is not available (sysexits EX_UNAVAILABLE).
pub const EX_UNAVAILABLE: u8 = 69;

#[derive(Parser, Debug)]
#[command(name = "shardflow", version, about = "Thread-per-core OpenFlow 1.3 controller for Open vSwitch")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller daemon.
    Run,
    /// Flows and OpenFlow messages: encode, decode, send to a switch, dump.
    #[command(subcommand)]
    Flow(flow::FlowCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            eprintln!(
                "shardflow: the daemon (pinned glommio shards, FlowManager, pipeline, Packet-In \
                 decisions) is not built yet; this build has the OpenFlow codec and the `flow` \
                 tools (see `shardflow flow --help`)."
            );
            ExitCode::from(EX_UNAVAILABLE)
        }
        Command::Flow(cmd) => flow::run(cmd),
    }
}
