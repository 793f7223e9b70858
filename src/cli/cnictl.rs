//! `shardflow cnictl`: the reference cni-ctl server. Serves `RouteService` from a policy file
//! (docs/policy.md) on its own current-thread tokio runtime; prints the address it listens on;
//! reloads the file on SIGHUP (a bad file keeps the old policy); stops on SIGTERM/SIGINT.
//! With `--tls-cert/--tls-key/--tls-client-ca` it serves mutual TLS only (docs/security.md).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use shardflow::config::LogFormat;
use shardflow::control::cnictl::server::{self, RouteState, Services};
use shardflow::control::cnictl::tls::{TlsFiles, TlsPaths};
use shardflow::policy::PolicyFile;

/// Exit status when the address cannot be bound (sysexits EX_UNAVAILABLE).
const EX_UNAVAILABLE: u8 = 69;
/// Exit status for an internal error (sysexits EX_SOFTWARE).
const EX_SOFTWARE: u8 = 70;

#[derive(Args, Debug)]
pub struct CnictlArgs {
    /// Policy file (TOML): rules, services, endpoints. See docs/policy.md.
    #[arg(long)]
    policy: PathBuf,
    /// Address to serve gRPC on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Added latency per `Exist` call, in milliseconds (tests and benchmarks).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Log level or filter directive (also RUST_LOG).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Serve over TLS with this certificate chain (PEM); needs --tls-key and --tls-client-ca.
    #[arg(long, requires_all = ["tls_key", "tls_client_ca"])]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_client_ca"])]
    tls_key: Option<PathBuf>,
    /// The CA (PEM) that every client's certificate must chain to: clients without one are refused.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_client_ca: Option<PathBuf>,
}

pub fn run(args: CnictlArgs) -> ExitCode {
    super::init_logging(&args.log_level, LogFormat::Plain);
    let policy = match PolicyFile::load(&args.policy) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shardflow cnictl: {e}");
            return ExitCode::from(super::EX_DATAERR);
        }
    };
    // The TLS files are checked before the port is bound: a bad one is a usage error.
    let tls = match (&args.tls_cert, &args.tls_key, &args.tls_client_ca) {
        (Some(cert), Some(key), Some(ca)) => {
            let paths = TlsPaths {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
                names: ["--tls-cert", "--tls-key", "--tls-client-ca"],
            };
            match TlsFiles::load(&paths) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("shardflow cnictl: {e}");
                    return ExitCode::from(super::EX_DATAERR);
                }
            }
        }
        _ => None,
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardflow cnictl: cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    rt.block_on(serve(args, policy, tls))
}

async fn serve(args: CnictlArgs, policy: PolicyFile, tls: Option<TlsFiles>) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("shardflow cnictl: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    let (mut term, mut int, mut hup) =
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup())) {
            (Ok(t), Ok(i), Ok(h)) => (t, i, h),
            _ => {
                eprintln!("shardflow cnictl: cannot install signal handlers");
                return ExitCode::from(EX_SOFTWARE);
            }
        };
    tracing::info!(
        %addr,
        rules = policy.rules.len(),
        services = policy.services.len(),
        version = policy.version,
        latency_ms = args.latency_ms,
        tls = tls.is_some(),
        "reference cni-ctl serving {}",
        args.policy.display()
    );
    let state = RouteState::new(policy, Duration::from_millis(args.latency_ms));
    // The one line on stdout: scripts and tests read the address from it.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "cnictl listening on {addr}");
    let _ = out.flush();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reload_state = state.clone();
    let path = args.policy.clone();
    let signals = async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match PolicyFile::load(&path) {
                    Ok(p) => {
                        tracing::info!(version = p.version, rules = p.rules.len(), "policy reloaded");
                        reload_state.replace(p);
                    }
                    Err(e) => tracing::error!("policy not reloaded, the old one stays: {e}"),
                },
            }
        }
        let _ = stop_tx.send(());
    };
    let shutdown = async {
        let _ = stop_rx.await;
        tracing::info!("stopping");
    };
    tokio::spawn(signals);
    match server::serve_with_tls(listener, Services::new().route(state), tls.as_ref(), shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardflow cnictl: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}
