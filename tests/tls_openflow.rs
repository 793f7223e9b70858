//! OpenFlow over TLS (`ssl:`, issue 11 item 1) against a real Open vSwitch 3.1 with OVS's own
//! PKI (`ovs-pki`): the daemon's shards require a client certificate chaining to the switch CA;
//! OVS, given `ovs-vsctl set-ssl` and `ssl:` controllers, connects to both shards and gets the
//! pipeline installed, and a pod's first packet is decided through a packet-in over TLS and
//! delivered. A plain TCP peer (an OpenFlow HELLO in the clear), a TLS client with no
//! certificate, and one whose certificate comes from another CA are refused (counted as
//! `shardflow_openflow_connections_refused_total{cause="tls"}`), and the bridge keeps its
//! connections.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use shardflow::packet::{build, MacAddr};
use support::pcap_packet_count;
use support::pipeline_env::{add_dummy_ports, example_toml, inject, pcap_path, wait_pipeline, DPID};
use support::{wait_until, Daemon, Ovs};

fn run(dir: &Path, prog: &str, args: &[&str]) {
    let out = Command::new(prog).current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An `ovs-pki` tree in `dir/pki` with `ctl-*` (controller) and `sw-*` (switch) pairs in `dir`.
fn ovs_pki(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let pki = format!("--dir={}/pki", dir.display());
    let log = format!("--log={}/pki.log", dir.display());
    run(dir, "ovs-pki", &["init", &pki, &log]);
    run(dir, "ovs-pki", &["req+sign", "ctl", "controller", &pki, &log, "-b"]);
    run(dir, "ovs-pki", &["req+sign", "sw", "switch", &pki, &log, "-b"]);
}

fn refused_tls(d: &Daemon) -> u64 {
    d.metric_sum("shardflow_openflow_connections_refused_total", &["cause=\"tls\""]) as u64
}

/// `openssl s_client` to `port` with `cert` (or none); returns once it exits (its stdin closed).
fn s_client(port: u16, cert: Option<(&PathBuf, &PathBuf)>, ca: &Path) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"]).arg(ca);
    if let Some((c, k)) = cert {
        cmd.arg("-cert").arg(c).arg("-key").arg(k);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // A HELLO's worth of bytes after the handshake, then EOF: s_client exits.
    let _ = child.stdin.take().unwrap().write_all(&[4, 0, 0, 8, 0, 0, 0, 1]);
    let ok = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
    if !ok {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn ovs_connects_over_ssl_with_ovs_pki_and_bad_peers_are_refused() {
    let dir = std::env::temp_dir().join(format!("shardflow-tls-of-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ovs_pki(&dir);
    let other = dir.join("other");
    ovs_pki(&other);
    let p = |n: &str| dir.join(n);

    let toml = format!(
        "{}\n[openflow]\ntls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\n",
        example_toml(),
        p("ctl-cert.pem"),
        p("ctl-privkey.pem"),
        p("pki/switchca/cacert.pem"),
    );
    let d = Daemon::start_with_config(2, &toml);
    let ovs = Ovs::start(&["br0"]);
    add_dummy_ports(&ovs, &[3, 4, 5]);
    let (sw_key, sw_cert, ctl_ca) = (p("sw-privkey.pem"), p("sw-cert.pem"), p("pki/controllerca/cacert.pem"));
    ovs.ok("ovs-vsctl", &["set-ssl", sw_key.to_str().unwrap(), sw_cert.to_str().unwrap(), ctl_ca.to_str().unwrap()]);
    let t0 = std::time::Instant::now();
    ovs.ok(
        "ovs-vsctl",
        &[
            "set-controller",
            "br0",
            &format!("ssl:127.0.0.1:{}", d.of_port(0)),
            &format!("ssl:127.0.0.1:{}", d.of_port(1)),
        ],
    );
    let uuids = ovs.ok("ovs-vsctl", &["--bare", "--columns=_uuid", "list", "controller"]);
    for u in uuids.split_whitespace() {
        ovs.ok("ovs-vsctl", &["set", "controller", u, "connection_mode=out-of-band"]);
    }
    // Both shards' connections over TLS, the pipeline installed through them.
    wait_pipeline(&d, 2, Duration::from_secs(20));
    eprintln!("FIGURE ssl: set-controller to pipeline in place on both shards: {:?}", t0.elapsed());
    assert!(ovs.flows("br0").len() > 10, "the pipeline is on the bridge: {:#?}", ovs.flows("br0"));
    // OVS's own view (its status columns are refreshed every few seconds).
    let mut status = String::new();
    let both = wait_until(Duration::from_secs(15), || {
        status = ovs.ok("ovs-vsctl", &["--bare", "--columns=is_connected", "list", "controller"]);
        status.split_whitespace().filter(|s| *s == "true").count() == 2
    });
    assert!(both, "OVS reports both ssl: controllers connected: {status}");
    assert_eq!(refused_tls(&d), 0);

    // Large messages both ways over TLS: 2000 flows in one POST (flow-mods, barrier), then the
    // whole table dumped back (a multipart reply of several hundred KiB through rustls).
    let cfg = shardflow::config::Config::from_toml(&toml).unwrap();
    let generation = shardflow::pipeline::resync::generation_of(&shardflow::daemon::desired_texts(&cfg, 0));
    let c = shardflow::pipeline::cookie::make(generation, shardflow::pipeline::cookie::Category::Connection, 0x77);
    let body: String = (0..2000u32)
        .map(|i| {
            format!(
                "table=3,priority=100,cookie={c:#x},tcp,nw_src=10.244.{}.{},tp_src=1000,actions=output:4\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    let (st, text) = d.post(&format!("/v1/switches/{DPID}/flows?command=add"), &body);
    assert_eq!(st, 200, "{text}");
    let on_bridge = ovs.flows("br0").iter().filter(|l| l.contains(&format!("cookie={c:#x},"))).count();
    assert_eq!(on_bridge, 2000, "the 2000 flows are on the bridge");
    let (st, dump) = d.get(&format!("/v1/switches/{DPID}/flows"));
    assert_eq!(st, 200);
    assert_eq!(dump.matches(&format!("{c:#x}")).count(), 2000, "the dump over TLS has them all ({} bytes)", dump.len());

    // A packet-in over TLS decided and its packet-out delivered: pod B's SYN to pod A:80
    // (docs/pipeline.md's pods on ports 4 and 2; the embedded policy allows it).
    let syn = build::tcp_syn(
        MacAddr([0x0a, 0x58, 0x0a, 0xf4, 1, 4]),
        MacAddr([0x02, 0x00, 0x0a, 0xf4, 1, 1]),
        "10.244.1.4".parse().unwrap(),
        "10.244.1.2".parse().unwrap(),
        41000,
        80,
    );
    let a0 = pcap_packet_count(&pcap_path(&ovs, 2));
    inject(&ovs, 4, &[syn]);
    assert!(
        wait_until(Duration::from_secs(10), || pcap_packet_count(&pcap_path(&ovs, 2)) > a0),
        "the SYN reaches pod A through a decision over ssl:\n{}",
        d.stderr()
    );
    let allowed = d.metric_sum("shardflow_decisions_total", &["verdict=\"allow\""]);
    assert!(allowed >= 1.0, "decided by the daemon: allow={allowed}");

    // 1. Plain TCP: an OpenFlow HELLO in the clear gets no OpenFlow answer, and the connection
    //    is closed.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", d.of_port(0))).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    assert!(got.first() != Some(&4), "no OpenFlow reply in the clear: {got:02x?}");
    assert!(wait_until(Duration::from_secs(5), || refused_tls(&d) >= 1), "plain TCP counted as refused");

    // 2. TLS without a client certificate, 3. with a certificate of another CA.
    s_client(d.of_port(0), None, &ctl_ca);
    assert!(wait_until(Duration::from_secs(5), || refused_tls(&d) >= 2), "no certificate: refused {}", refused_tls(&d));
    let (oc, ok) = (other.join("sw-cert.pem"), other.join("sw-privkey.pem"));
    s_client(d.of_port(1), Some((&oc, &ok)), &ctl_ca);
    assert!(
        wait_until(Duration::from_secs(5), || refused_tls(&d) >= 3),
        "another CA: refused {}\n{}",
        refused_tls(&d),
        d.stderr()
    );
    assert!(d.stderr().contains("TLS handshake failed"), "{}", d.stderr());

    // The bridge keeps its two TLS connections.
    let sw = d.json("/v1/switches");
    let s = sw.as_array().and_then(|a| a.iter().find(|s| s["dpid"] == DPID)).cloned();
    assert_eq!(s.as_ref().and_then(|s| s["connections"].as_u64()), Some(2), "{sw}");
    drop(ovs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_openflow_tls_files_are_config_errors_before_any_port_is_bound() {
    let dir = std::env::temp_dir().join(format!("shardflow-tls-of-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ovs_pki(&dir);
    let p = |n: &str| dir.join(n);
    std::fs::write(p("junk.pem"), "junk\n").unwrap();
    let cases = [
        (p("ctl-cert.pem"), p("junk.pem"), p("pki/switchca/cacert.pem"), "openflow.tls_key"),
        (p("ctl-cert.pem"), p("sw-privkey.pem"), p("pki/switchca/cacert.pem"), "openflow.tls_key"),
        (p("ctl-cert.pem"), p("ctl-privkey.pem"), p("missing.pem"), "openflow.tls_ca"),
        (p("junk.pem"), p("ctl-privkey.pem"), p("pki/switchca/cacert.pem"), "openflow.tls_cert"),
    ];
    for (i, (cert, key, ca, name)) in cases.iter().enumerate() {
        let cfg = p(&format!("bad-{i}.toml"));
        std::fs::write(&cfg, format!("[openflow]\ntls_cert = {cert:?}\ntls_key = {key:?}\ntls_ca = {ca:?}\n")).unwrap();
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
        assert!(err.contains(name), "case {i}: {name} is named: {err}");
        assert!(support::port_free(of), "case {i}: the OpenFlow port was never bound");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
