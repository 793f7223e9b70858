//! `shardflow flow ...`: the codec as an operator's tool, in `ovs-ofctl`'s terms.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use shardflow::openflow::flow::{FlowMod, FlowModCommand};
use shardflow::openflow::message::{self, Message};
use shardflow::openflow::wire;

use super::switch::{Switch, SwitchAddr};
use super::{EX_DATAERR, EX_USAGE};

#[derive(Subcommand, Debug)]
pub enum FlowCommand {
    /// Print the OpenFlow 1.3 FLOW_MOD for a flow as one line of lower-case hex (the bytes
    /// `ovs-ofctl -O OpenFlow13 -mmmmm parse-flow` shows).
    Encode {
        /// Transaction id to put in the header.
        #[arg(long, default_value_t = 1)]
        xid: u32,
        /// The flow-mod command.
        #[arg(long, value_enum, default_value_t = Cmd::Add)]
        command: Cmd,
        /// The flow, in ovs-ofctl syntax.
        flow: String,
    },
    /// Print any OpenFlow message given as hex the way `ovs-ofctl ofp-print` does.
    Decode {
        /// The message bytes as hex (white space allowed).
        hex: Vec<String>,
    },
    /// Send flows to a switch as FLOW_MODs and wait for its barrier reply (like ovs-ofctl
    /// add-flow, through shardflow's own encoder).
    Add {
        /// `unix:PATH` (a bridge's .mgmt socket) or `tcp:IP:PORT` (a passive controller port).
        #[arg(long)]
        switch: String,
        /// Apply all flows atomically in one ONF bundle.
        #[arg(long)]
        bundle: bool,
        #[arg(long, value_enum, default_value_t = Cmd::Add)]
        command: Cmd,
        /// Flows in ovs-ofctl syntax.
        #[arg(required = true)]
        flows: Vec<String>,
    },
    /// Read a switch's flows (OFPMP_FLOW) and print them as `ovs-ofctl dump-flows --no-stats` does.
    Dump {
        #[arg(long)]
        switch: String,
        /// Print statistics too (cookie, duration, packets, bytes), as dump-flows does.
        #[arg(long)]
        stats: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Cmd {
    Add,
    Modify,
    ModifyStrict,
    Delete,
    DeleteStrict,
}

impl From<Cmd> for FlowModCommand {
    fn from(c: Cmd) -> Self {
        match c {
            Cmd::Add => FlowModCommand::Add,
            Cmd::Modify => FlowModCommand::Modify,
            Cmd::ModifyStrict => FlowModCommand::ModifyStrict,
            Cmd::Delete => FlowModCommand::Delete,
            Cmd::DeleteStrict => FlowModCommand::DeleteStrict,
        }
    }
}

pub fn run(cmd: FlowCommand) -> ExitCode {
    match cmd {
        FlowCommand::Encode { xid, command, flow } => match FlowMod::parse(&flow, command.into()) {
            Ok(fm) => match fm.try_encode(xid) {
                Ok(bytes) => {
                    println!("{}", wire::to_hex(&bytes));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("shardflow: flow does not fit one message: {e}");
                    ExitCode::from(EX_DATAERR)
                }
            },
            Err(e) => {
                eprintln!("shardflow: bad flow: {e}");
                ExitCode::from(EX_DATAERR)
            }
        },
        FlowCommand::Decode { hex } => decode(&hex.join("")),
        FlowCommand::Add { switch, bundle, command, flows } => edge(add(&switch, bundle, command.into(), &flows)),
        FlowCommand::Dump { switch, stats } => edge(dump(&switch, stats)),
    }
}

fn edge(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardflow: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn decode(hex: &str) -> ExitCode {
    let Some(bytes) = wire::from_hex(hex) else {
        eprintln!("shardflow: not hex: an even number of hex digits is expected");
        return ExitCode::from(EX_USAGE);
    };
    match message::decode(&bytes) {
        Ok((header, msg)) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{}", message::ofp_print(&header, &msg));
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Like ofp-print: say what is wrong, show the bytes, and fail.
            let _ = write!(std::io::stdout().lock(), "{}", message::ofp_to_string(&bytes));
            eprintln!("shardflow: cannot decode: {e}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

fn add(addr: &str, bundle: bool, command: FlowModCommand, flows: &[String]) -> anyhow::Result<()> {
    let mods = flows
        .iter()
        .map(|f| FlowMod::parse(f, command).with_context(|| format!("bad flow {f:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let addr: SwitchAddr = addr.parse()?;
    let mut sw = Switch::connect(&addr)?;
    let msgs: Vec<Message> = mods.into_iter().map(Message::FlowMod).collect();
    if bundle {
        sw.bundle(msgs)?;
    } else {
        sw.transact(msgs)?;
    }
    Ok(())
}

fn dump(addr: &str, stats: bool) -> anyhow::Result<()> {
    let addr: SwitchAddr = addr.parse()?;
    let mut sw = Switch::connect(&addr)?;
    let flows = sw.flow_stats()?;
    if flows.is_empty() {
        return Ok(());
    }
    for fs in flows {
        let text = super::switch::flow_stats_text(&fs, stats);
        println!("{text}");
    }
    Ok(())
}
