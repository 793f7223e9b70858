//! CPU time and resident memory of a process, from /proc (Linux).

use std::sync::OnceLock;
use std::time::Instant;

/// One sample of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// utime + stime, seconds (all threads).
    pub cpu_secs: Option<f64>,
    /// VmRSS, bytes.
    pub rss_bytes: Option<u64>,
}

/// Clock ticks per second for /proc/PID/stat (`getconf CLK_TCK`, 100 when that fails).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime in seconds from the text of /proc/PID/stat.
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// VmRSS in bytes from the text of /proc/PID/status.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn sample_path(dir: &str) -> Sample {
    let at = Instant::now();
    let cpu_secs = std::fs::read_to_string(format!("{dir}/stat")).ok().and_then(|s| parse_stat_cpu(&s));
    let rss_bytes = std::fs::read_to_string(format!("{dir}/status")).ok().and_then(|s| parse_status_rss(&s));
    Sample { at, cpu_secs, rss_bytes }
}

pub fn sample(pid: u32) -> Sample {
    sample_path(&format!("/proc/{pid}"))
}

pub fn sample_self() -> Sample {
    sample_path("/proc/self")
}

/// CPU % (100 = one core busy) between two samples.
pub fn cpu_percent(a: &Sample, b: &Sample) -> Option<f64> {
    let wall = b.at.saturating_duration_since(a.at).as_secs_f64();
    if wall <= 0.0 {
        return None;
    }
    Some((b.cpu_secs? - a.cpu_secs?) / wall * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (shard flow) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        let cpu = parse_stat_cpu(stat).expect("parses");
        assert!((cpu - 300.0 / clk_tck()).abs() < 1e-9);
        assert_eq!(parse_status_rss("Name:\tx\nVmRSS:\t   2048 kB\n"), Some(2048 * 1024));
        let s = sample_self();
        assert!(s.cpu_secs.is_some() && s.rss_bytes.is_some());
    }
}
