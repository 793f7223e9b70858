//! `shardflow offload datapath`: `ovs-appctl dpctl/dump-flows -m` text on stdin, one line out
//! per datapath flow: the verdict under a profile (as `offload check` prints it), the flow's
//! type (`ovs`, `offloaded`, `partial`, `tc`) and its short form.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Args;
use shardflow::offload::datapath::{judge_dump, Offloaded};
use shardflow::offload::{Profile, DEFAULT_PROFILE};

use super::{EX_DATAERR, EX_USAGE};

/// The most stdin read: a dump of a busy switch is tens of MiB (100,000 verbose flows are
/// about 55 MiB); past this the input is refused rather than held in memory. Judging keeps a
/// few hundred bytes per flow besides the text (`judge_dump`).
pub const MAX_INPUT: u64 = 128 << 20;

#[derive(Args, Debug)]
pub struct DatapathArgs {
    /// A built-in profile (tc-flower, connectx) or a profile file (.toml).
    #[arg(long, default_value = DEFAULT_PROFILE)]
    pub profile: String,
    /// Only the flows not already in hardware (leave out `offloaded:yes`).
    #[arg(long)]
    pub not_offloaded: bool,
}

pub fn run(args: DatapathArgs) -> ExitCode {
    let profile = match Profile::named_or_file(&args.profile) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shardflow: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin().lock().take(MAX_INPUT + 1).read_to_end(&mut raw) {
        eprintln!("shardflow: cannot read stdin: {e}");
        return ExitCode::from(EX_DATAERR);
    }
    if raw.len() as u64 > MAX_INPUT {
        eprintln!("shardflow: stdin is longer than {} MiB: not a dpctl/dump-flows dump", MAX_INPUT >> 20);
        return ExitCode::from(EX_DATAERR);
    }
    let text = String::from_utf8_lossy(&raw);
    let (code, out) = render(&text, &profile, args.not_offloaded);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    code
}

/// The output for a dump, and the exit status: bad lines are reported on stderr (line and
/// column) and left out; the others are judged together, so the recirculation chain is seen.
fn render(text: &str, profile: &Profile, not_offloaded: bool) -> (ExitCode, String) {
    let mut bad = 0usize;
    let judged = judge_dump(text, profile, |e| {
        bad += 1;
        eprintln!("shardflow: {e}");
    });
    let mut out = String::new();
    let (mut shown, mut offloadable, mut offloaded) = (0usize, 0usize, 0usize);
    for j in &judged {
        if j.offloaded == Offloaded::Yes {
            offloaded += 1;
            if not_offloaded {
                continue;
            }
        }
        shown += 1;
        offloadable += usize::from(j.verdict.offloadable);
        out.push_str(&j.to_string());
        out.push('\n');
    }
    eprintln!(
        "shardflow: {} datapath flows ({offloaded} offloaded), {shown} shown: {offloadable} offloadable under {}, {} not{}",
        judged.len(),
        profile.name,
        shown - offloadable,
        if bad > 0 { format!("; {bad} bad lines left out") } else { String::new() }
    );
    let code = if bad > 0 { ExitCode::from(EX_DATAERR) } else { ExitCode::SUCCESS };
    (code, out)
}
