//! `shardflow-cni`: the CNI plugin binary. A thin edge: the environment, stdin and stdout; the
//! logic is `shardflow::cni` (docs/cni.md).

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use shardflow::cni::{self, CniError};

/// The most of stdin read: a network configuration (with a prevResult) is a few KiB.
const MAX_STDIN: u64 = 1 << 20;

fn main() -> ExitCode {
    // Logs on stderr (stdout is the runtime's): SHARDFLOW_CNI_LOG, an env-filter, warn by default.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHARDFLOW_CNI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();

    let env = |k: &str| std::env::var(k).ok();
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().take(MAX_STDIN + 1).read_to_end(&mut stdin) {
        _ if stdin.len() as u64 > MAX_STDIN => {
            Err((CniError::decode(format!("network configuration over {MAX_STDIN} bytes")), "1.0.0".to_string()))
        }
        Err(e) => Err((CniError::io("cannot read stdin", e), "1.0.0".to_string())),
        Ok(_) => cni::plugin::run(&env, &stdin, cni::ovs::connect),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err((e, version)) => {
            tracing::error!(code = e.code, "{e}");
            let _ = writeln!(out, "{}", e.to_json(&version));
            let _ = out.flush();
            ExitCode::FAILURE
        }
    }
}
