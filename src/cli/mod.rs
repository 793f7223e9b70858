//! Command-line interface: the daemon (`run`) and operator tools on flows (`flow ...`).

mod cnictl;
mod flow;
mod offload;
mod offload_datapath;
mod run;
mod switch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shardflow::config::LogFormat;

/// Exit status for bad input data (sysexits EX_DATAERR).
pub const EX_DATAERR: u8 = 65;
/// Exit status for a usage or configuration error (sysexits EX_USAGE).
pub const EX_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "shardflow", version, about = "Thread-per-core OpenFlow 1.3 controller for Open vSwitch")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller daemon (the default when no command is given).
    Run(run::RunArgs),
    /// Flows and OpenFlow messages: encode, decode, send to a switch, dump.
    #[command(subcommand)]
    Flow(flow::FlowCommand),
    /// The reference cni-ctl server: answers RouteService from a policy file (docs/policy.md).
    Cnictl(cnictl::CnictlArgs),
    /// Smart-NIC offload analysis: which flows a NIC could run in hardware, and why not.
    #[command(subcommand)]
    Offload(offload::OffloadCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(run::RunArgs::default())) {
        Command::Run(args) => run::run(args),
        Command::Cnictl(args) => cnictl::run(args),
        Command::Flow(cmd) => {
            init_logging("warn", LogFormat::Plain);
            flow::run(cmd)
        }
        Command::Offload(cmd) => {
            init_logging("warn", LogFormat::Plain);
            offload::run(cmd)
        }
    }
}

/// Logs go to stderr, plain or JSON; RUST_LOG overrides the configured level.
pub fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}
