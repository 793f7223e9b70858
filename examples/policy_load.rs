//! Loads a policy file, indexes it and times decisions:
//!
//!     scripts/gen-policy.py --rules 1000000 > /tmp/policy-1m.toml
//!     /usr/bin/time -v cargo run --release --example policy_load -- /tmp/policy-1m.toml
//!
//! `--toml` loads through the TOML parser alone (the loader before the line scanner), for a
//! before/after comparison; `--scan N` also times N decisions by the in-order scan. Peak memory
//! is `/usr/bin/time -v`'s "Maximum resident set size"; the final size is printed (VmRSS).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use shardflow::packet::MacAddr;
use shardflow::policy::index::IndexedPolicy;
use shardflow::policy::source::{PolicyCell, PolicyView};
use shardflow::policy::{PolicyFile, PolicyQuery};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn queries(n: usize) -> Vec<PolicyQuery> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let r = next();
            PolicyQuery {
                src_ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x00ff_ffff))),
                dst_ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | ((r >> 24) as u32 & 0x00ff_ffff))),
                src_mac: MacAddr::ZERO,
                dst_mac: MacAddr::ZERO,
                src_port: 40000,
                dst_port: [80, 443, 53, 8080, 1234][(r >> 50) as usize % 5],
                protocol: [6, 17, 1][(r >> 56) as usize % 3],
                is_reply: false,
                nat: false,
            }
        })
        .collect()
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path =
        args.iter().find(|a| !a.starts_with("--")).ok_or_else(|| anyhow::anyhow!("usage: FILE [--toml] [--scan N]"))?;
    let toml = args.iter().any(|a| a == "--toml");
    let scan_n: usize =
        args.iter().position(|a| a == "--scan").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    let t = Instant::now();
    let f = if toml { PolicyFile::parse_toml(&std::fs::read_to_string(path)?)? } else { PolicyFile::load(path)? };
    let load = t.elapsed();
    println!(
        "loaded {} rules in {load:?} ({}), RSS {:.0} MiB",
        f.rules.len(),
        if toml { "TOML parser" } else { "line scanner" },
        rss_mib()
    );
    let t = Instant::now();
    let p = IndexedPolicy::new(f);
    let build = t.elapsed();
    println!(
        "indexed in {build:?} ({} address shapes); total {:?}; RSS {:.0} MiB",
        p.shapes(),
        load + build,
        rss_mib()
    );
    let qs = queries(200_000);
    let mut lat = Vec::with_capacity(qs.len());
    let mut allowed = 0usize;
    for q in &qs {
        let t = Instant::now();
        allowed += usize::from(std::hint::black_box(p.evaluate(q)).allowed);
        lat.push(t.elapsed());
    }
    println!(
        "index: {} decisions, p50 {:?}, p99 {:?}, max {:?} ({allowed} allowed)",
        qs.len(),
        percentile(lat.clone(), 0.5),
        percentile(lat.clone(), 0.99),
        percentile(lat, 1.0)
    );
    if args.iter().any(|a| a == "--reload") {
        reload_under_decisions(p, path, &qs)?;
        return Ok(());
    }
    if scan_n > 0 {
        let mut lat = Vec::with_capacity(scan_n);
        for q in qs.iter().take(scan_n) {
            let t = Instant::now();
            let a = std::hint::black_box(p.file().evaluate(q));
            lat.push(t.elapsed());
            assert_eq!(a, p.evaluate(q), "index and scan disagree on {q:?}");
        }
        println!("scan: {scan_n} decisions, p50 {:?}, max {:?}", percentile(lat.clone(), 0.5), percentile(lat, 1.0));
    }
    Ok(())
}

/// A "shard" thread decides through a `PolicyView` without pause while this thread reloads the
/// file (read, parse, index, swap), as the daemon's reload thread does; decision latencies are
/// reported per phase: before (1 s), during the reload, after (until the old index is freed).
fn reload_under_decisions(p: IndexedPolicy, path: &str, qs: &[PolicyQuery]) -> anyhow::Result<()> {
    let cell = Arc::new(PolicyCell::new(p));
    let phase = Arc::new(AtomicU8::new(0));
    let shard = {
        let (cell, phase, qs) = (cell.clone(), phase.clone(), qs.to_vec());
        std::thread::spawn(move || {
            let view = PolicyView::new(cell);
            let mut lat: [Vec<Duration>; 3] = Default::default();
            let mut i = 0;
            loop {
                let ph = phase.load(Ordering::Acquire);
                if ph > 2 {
                    break;
                }
                let t = Instant::now();
                view.refresh();
                std::hint::black_box(view.with(|f| f.evaluate(&qs[i % qs.len()])));
                lat[ph as usize].push(t.elapsed());
                i += 1;
            }
            lat
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    phase.store(1, Ordering::Release);
    let t = Instant::now();
    let fresh = IndexedPolicy::new(PolicyFile::load(path)?);
    let old = cell.replace(Arc::new(fresh));
    let reload = t.elapsed();
    phase.store(2, Ordering::Release);
    while Arc::strong_count(&old) > 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    drop(old);
    let freed = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    phase.store(3, Ordering::Release);
    let lat = shard.join().map_err(|_| anyhow::anyhow!("the shard thread panicked"))?;
    println!("reload (read + parse + index + swap) {reload:?}; old index freed off the shard in {freed:?}");
    for (name, l) in ["before", "during", "after"].iter().zip(lat) {
        if l.is_empty() {
            continue;
        }
        let n = l.len();
        println!(
            "  {name:>6}: {n} decisions, p50 {:?}, p99.9 {:?}, max {:?}",
            percentile(l.clone(), 0.5),
            percentile(l.clone(), 0.999),
            percentile(l, 1.0)
        );
    }
    Ok(())
}
