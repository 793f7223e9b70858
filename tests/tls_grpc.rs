//! Mutual TLS on the gRPC links (issue 11, item 1), real tonic/rustls on 127.0.0.1, with a
//! throwaway PKI made by the `openssl` CLI in a temporary directory: a good CA, an "evil" CA,
//! and certificates for cni-ctl, the daemon, an intruder (evil CA) and an impostor cni-ctl
//! (evil CA).
//!
//! - the daemon (`shardflow run`, `[policy] tls_*`) and the reference cni-ctl
//!   (`shardflow cnictl --tls-*`) talk mTLS: a SYN is decided by cni-ctl and delivered, against a
//!   real Open vSwitch; cni-ctl's `Invalidate` reaches the daemon's ControllerService over mTLS,
//!   and that service refuses no client certificate, a certificate of another CA, and plaintext;
//! - the library client against the reference server: answered with the right identity; refused
//!   with a client certificate of another CA, with none, in plaintext; and the client refuses a
//!   server whose certificate comes from another CA;
//! - bad TLS files are configuration errors before any port is bound (cnictl exit 65, daemon 64).
#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shardflow::control::cnictl::client::{ClientConfig, PolicyClient};
use shardflow::control::cnictl::proto::controller_service_client::ControllerServiceClient;
use shardflow::control::cnictl::proto::route_service_client::RouteServiceClient;
use shardflow::control::cnictl::proto::{Invalidation, RouteQuery};
use shardflow::control::cnictl::tls::{TlsFiles, TlsPaths};
use shardflow::packet::{build, MacAddr};
use shardflow::policy::PolicyQuery;
use support::pipeline_env::{example_toml, PipelineEnv};
use support::{free_port, wait_until, Cnictl};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

// === a throwaway PKI ===

struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("the openssl CLI");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    /// Two CAs (`ca`, `evil`) and leaf certificates `cnictl`, `daemon` (good CA), `intruder`,
    /// `impostor` (evil CA), every leaf valid for 127.0.0.1 and localhost, both server and client.
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("shardflow-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
                   keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n";
        std::fs::write(dir.join("leaf.ext"), ext).unwrap();
        for ca in ["ca", "evil"] {
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=shardflow test {ca} CA"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            );
        }
        for (leaf, ca) in [("cnictl", "ca"), ("daemon", "ca"), ("intruder", "evil"), ("impostor", "evil")] {
            openssl(
                &dir,
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-keyout",
                    &format!("{leaf}.key"),
                    "-out",
                    &format!("{leaf}.csr"),
                    "-subj",
                    &format!("/CN={leaf}"),
                ],
            );
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{leaf}.csr"),
                    "-CA",
                    &format!("{ca}.pem"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                    "-out",
                    &format!("{leaf}.pem"),
                    "-days",
                    "2",
                    "-extfile",
                    "leaf.ext",
                ],
            );
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `leaf`'s identity with `ca` as the peer's CA.
    fn files(&self, leaf: &str, ca: &str) -> TlsFiles {
        TlsFiles::load(&TlsPaths {
            cert: self.path(&format!("{leaf}.pem")),
            key: self.path(&format!("{leaf}.key")),
            ca: self.path(&format!("{ca}.pem")),
            names: ["cert", "key", "ca"],
        })
        .unwrap()
    }

    /// `shardflow cnictl` serving `leaf`'s certificate, requiring clients of `client_ca`.
    fn cnictl(&self, policy: &Path, leaf: &str, client_ca: &str) -> Cnictl {
        let (c, k, a) = (
            self.path(&format!("{leaf}.pem")),
            self.path(&format!("{leaf}.key")),
            self.path(&format!("{client_ca}.pem")),
        );
        let args: [&OsStr; 6] = [
            "--tls-cert".as_ref(),
            c.as_os_str(),
            "--tls-key".as_ref(),
            k.as_os_str(),
            "--tls-client-ca".as_ref(),
            a.as_os_str(),
        ];
        Cnictl::start_args(policy, "127.0.0.1:0", 0, &args)
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const POLICY: &str = "version = 4\ndefault = \"allow\"\nttl_ms = 60000\n";

fn query() -> PolicyQuery {
    PolicyQuery {
        src_ip: "10.244.1.4".parse().unwrap(),
        dst_ip: "10.244.1.2".parse().unwrap(),
        src_mac: "0a:58:0a:f4:01:04".parse().unwrap(),
        dst_mac: MacAddr::ZERO,
        src_port: 40000,
        dst_port: 80,
        protocol: 6,
        is_reply: false,
        nat: false,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// One query through the library client (`tls` as given) on `rt`; its answer or error text.
fn ask(rt: &tokio::runtime::Runtime, endpoint: String, tls: Option<TlsFiles>) -> Result<bool, String> {
    let cfg = ClientConfig { endpoint, deadline: Duration::from_secs(5), max_tries: 1, tls, ..ClientConfig::default() };
    let client = PolicyClient::new(cfg, rt.handle().clone()).map_err(|e| e.to_string())?;
    let rx = client.handle().query(query());
    rt.block_on(async { rx.recv_async().await })
        .expect("an answer or an error")
        .map(|p| p.allowed)
        .map_err(|e| e.to_string())
}

/// One `RouteService/Exist` over a raw tonic channel with `tls` (no client identity possible).
fn raw_exist(rt: &tokio::runtime::Runtime, url: String, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    rt.block_on(async {
        let mut ep = Endpoint::from_shared(url).unwrap().connect_timeout(Duration::from_secs(5));
        if let Some(t) = tls {
            ep = ep.tls_config(t).map_err(|e| e.to_string())?;
        }
        let ch = ep.connect().await.map_err(|e| format!("connect: {e}"))?;
        let q = RouteQuery {
            src_ip: "10.244.1.4".into(),
            dst_ip: "10.244.1.2".into(),
            protocol: 6,
            src_port: 40000,
            dst_port: 80,
            ..RouteQuery::default()
        };
        tokio::time::timeout(Duration::from_secs(5), RouteServiceClient::new(ch).exist(q))
            .await
            .map_err(|_| "no answer within 5 s".to_string())?
            .map(|_| ())
            .map_err(|e| format!("{e}"))
    })
}

#[test]
fn library_client_and_reference_cnictl_mtls_and_refusals() {
    let pki = Pki::new("lib");
    let policy = pki.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let srv = pki.cnictl(&policy, "cnictl", "ca");
    let rt = rt();

    // The right identity: answered.
    assert_eq!(ask(&rt, srv.https_url(), Some(pki.files("daemon", "ca"))), Ok(true), "{}", srv.stderr());
    // A bare HOST:PORT gets https:// when TLS is configured.
    assert_eq!(ask(&rt, srv.addr.to_string(), Some(pki.files("daemon", "ca"))), Ok(true));

    // A client certificate of another CA (the server's CA trusted, so only the server refuses).
    let e = ask(&rt, srv.https_url(), Some(pki.files("intruder", "ca")));
    eprintln!("refusal: {e:?}");
    assert!(e.is_err(), "a client certificate of another CA is refused: {e:?}");
    // No client certificate at all.
    let no_cert = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.pem("ca.pem")));
    let e = raw_exist(&rt, srv.https_url(), Some(no_cert));
    eprintln!("refusal: {e:?}");
    assert!(e.is_err(), "no client certificate is refused: {e:?}");
    // Plaintext.
    let e = ask(&rt, srv.url(), None);
    eprintln!("refusal: {e:?}");
    assert!(e.is_err(), "plaintext is refused: {e:?}");
    // The control: a raw client with the right identity is answered (so the refusals above are
    // about the certificate, not the raw client).
    let good = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.pem("ca.pem")))
        .identity(Identity::from_pem(pki.pem("daemon.pem"), pki.pem("daemon.key")));
    assert_eq!(raw_exist(&rt, srv.https_url(), Some(good)), Ok(()));

    // `http://` with TLS configured is a configuration error, not plaintext.
    let e = ask(&rt, srv.url(), Some(pki.files("daemon", "ca")));
    assert!(matches!(&e, Err(m) if m.contains("https")), "{e:?}");

    // The client refuses a server whose certificate comes from another CA (the impostor trusts
    // our CA for clients, so only the client can refuse).
    let impostor = pki.cnictl(&policy, "impostor", "ca");
    let e = ask(&rt, impostor.https_url(), Some(pki.files("daemon", "ca")));
    eprintln!("refusal: {e:?}");
    assert!(e.is_err(), "a server certificate of another CA is refused: {e:?}");
    // ... and a name mismatch too: the certificate is for 127.0.0.1/localhost.
    let cfg = ClientConfig {
        endpoint: srv.https_url(),
        deadline: Duration::from_secs(5),
        max_tries: 1,
        tls: Some(pki.files("daemon", "ca")),
        tls_server_name: Some("cnictl.example".into()),
        ..ClientConfig::default()
    };
    let client = PolicyClient::new(cfg, rt.handle().clone()).unwrap();
    let rx = client.handle().query(query());
    let r = rt.block_on(async { rx.recv_async().await }).unwrap();
    assert!(r.is_err(), "a server name not in the certificate is refused: {r:?}");
}

#[test]
fn bad_tls_files_are_config_errors_before_any_port_is_bound() {
    let pki = Pki::new("bad");
    let policy = pki.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let junk = pki.path("junk.pem");
    std::fs::write(&junk, "not a key\n").unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let p = |n: &str| pki.path(n).to_str().unwrap().to_string();

    // cnictl: a missing key file, then a key that is not a key, then a key of another cert.
    for (key, needle) in
        [(p("missing.key"), "--tls-key"), (p("junk.pem"), "--tls-key"), (p("intruder.key"), "--tls-key")]
    {
        let out = support::shardflow(&[
            "cnictl",
            "--policy",
            &p("policy.toml"),
            "--listen",
            &listen,
            "--tls-cert",
            &p("cnictl.pem"),
            "--tls-key",
            &key,
            "--tls-client-ca",
            &p("ca.pem"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{key}: {err}");
        assert!(err.contains(needle), "the flag is named: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "nothing was served");
    }
    // A flag alone is a usage error (clap: the other two are required).
    let out = support::shardflow(&["cnictl", "--policy", &p("policy.toml"), "--tls-cert", &p("cnictl.pem")]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // The daemon: exit 64 naming the key, before binding the ControllerService port.
    let cases = [
        (
            format!("tls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\n", p("daemon.pem"), p("junk.pem"), p("ca.pem")),
            "policy.tls_key",
        ),
        (
            format!(
                "tls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\n",
                p("daemon.pem"),
                p("daemon.key"),
                p("nope.pem")
            ),
            "policy.tls_ca",
        ),
        (format!("tls_cert = {:?}\ntls_key = {:?}\n", p("daemon.pem"), p("daemon.key")), "policy.tls_ca"),
    ];
    for (i, (tls, key)) in cases.iter().enumerate() {
        let cfg = pki.path(&format!("daemon-{i}.toml"));
        std::fs::write(&cfg, format!("[policy]\nlisten = \"{listen}\"\n{tls}")).unwrap();
        let (of, http) = support::free_ports(1);
        let out = support::shardflow(&[
            "run",
            "--shards",
            "1",
            "--config",
            cfg.to_str().unwrap(),
            "--base-port",
            &of.to_string(),
            "--http",
            &format!("127.0.0.1:{http}"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "case {i}: {err}");
        assert!(err.contains(key), "case {i}: {key} is named: {err}");
        assert!(support::port_free(port), "case {i}: the ControllerService port was never bound");
    }
}

// === the daemon against a real Open vSwitch ===

const B_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]);
const A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const A_PORT: u32 = 2;
const B_PORT: u32 = 4;

/// One Invalidate to the daemon's ControllerService at `url` with `tls`.
fn invalidate(rt: &tokio::runtime::Runtime, url: String, tls: Option<ClientTlsConfig>) -> Result<u64, String> {
    rt.block_on(async {
        let mut ep = Endpoint::from_shared(url).unwrap().connect_timeout(Duration::from_secs(5));
        if let Some(t) = tls {
            ep = ep.tls_config(t).map_err(|e| e.to_string())?;
        }
        let ch = ep.connect().await.map_err(|e| format!("connect: {e}"))?;
        let inv = Invalidation { ips: vec![A.to_string()], below_version: 0, all: false };
        tokio::time::timeout(Duration::from_secs(5), ControllerServiceClient::new(ch).invalidate(inv))
            .await
            .map_err(|_| "no answer within 5 s".to_string())?
            .map(|r| r.into_inner().dropped)
            .map_err(|e| format!("{e}"))
    })
}

#[test]
fn daemon_and_cnictl_decide_a_connection_over_mtls() {
    let pki = Pki::new("daemon");
    let policy = pki.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let srv = pki.cnictl(&policy, "cnictl", "ca");
    let listen = format!("127.0.0.1:{}", free_port());
    let toml = format!(
        "{}\n[policy]\nsource = \"cnictl\"\ncnictl = \"{}\"\ntimeout_ms = 5000\nlisten = \"{listen}\"\n\
         tls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\n",
        example_toml(),
        srv.https_url(),
        pki.path("daemon.pem"),
        pki.path("daemon.key"),
        pki.path("ca.pem"),
    );
    let env = PipelineEnv::start_with_config(&toml, &[], false, &[]);
    let decisions = |v: &str| env.d.metric_sum("shardflow_decisions_total", &[&format!("verdict=\"{v}\"")]) as u64;

    // A SYN from pod B to pod A:80, decided by cni-ctl over mTLS and delivered.
    let syn = build::tcp_syn(B_MAC, GW_MAC, IpAddr::V4(B), IpAddr::V4(A), 41000, 80);
    let a0 = env.count(A_PORT);
    env.inject(B_PORT, &[syn]);
    let got = env.wait_count(A_PORT, a0 + 1, Duration::from_secs(10));
    assert!(
        got > a0,
        "SYN delivered: allow={} fail_closed={}\n{}\n{}",
        decisions("allow"),
        decisions("fail_closed"),
        env.d.stderr(),
        srv.stderr()
    );
    assert!(wait_until(Duration::from_secs(5), || decisions("allow") == 1), "decided by cni-ctl: {}", env.d.stderr());

    // ControllerService over mTLS, as cni-ctl calls it: answered (one cached answer dropped).
    assert!(
        wait_until(Duration::from_secs(3), || env.d.stderr().contains("ControllerService")),
        "serving ControllerService"
    );
    let rt = rt();
    let url = format!("https://{listen}");
    let good = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.pem("ca.pem")))
        .identity(Identity::from_pem(pki.pem("cnictl.pem"), pki.pem("cnictl.key")));
    assert_eq!(invalidate(&rt, url.clone(), Some(good)), Ok(1), "{}", env.d.stderr());
    // Refused: a client certificate of another CA, no client certificate, plaintext.
    let intruder = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.pem("ca.pem")))
        .identity(Identity::from_pem(pki.pem("intruder.pem"), pki.pem("intruder.key")));
    let e = invalidate(&rt, url.clone(), Some(intruder));
    eprintln!("refusal: {e:?}");
    assert!(e.is_err(), "intruder refused: {e:?}");
    let none = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.pem("ca.pem")));
    let e = invalidate(&rt, url.clone(), Some(none));
    eprintln!("refusal: {e:?}");
    assert!(e.is_err(), "no client certificate refused: {e:?}");
    let e = invalidate(&rt, format!("http://{listen}"), None);
    eprintln!("refusal: {e:?}");
    assert!(e.is_err(), "plaintext refused: {e:?}");
    // The daemon's client refuses nothing it should not: still one allow, no failures.
    assert_eq!(decisions("fail_closed"), 0);
}
