//! Facts about this process read from procfs: which CPUs it (or a thread) may run on, and its
//! locked-memory limit.
//!
//! glommio does not expose an executor's CPU binding, and `std` only offers a count
//! (`available_parallelism`). The kernel's own view is the `Cpus_allowed_list` line of
//! `/proc/self/status` (process) and `/proc/thread-self/status` (calling thread), e.g.
//! `0-3,8,10-11`. Reading it needs no `libc`, so the crate stays free of `unsafe`.
//!
//! These functions do blocking file IO: call them at start-up or from tests, not on a hot
//! path of an executor.

use std::io;
use std::path::Path;

/// Parses a kernel CPU list (`"0-3,8,10-11"`) into sorted, distinct CPU numbers.
/// `None` when the text is not such a list (an empty list is valid and gives `Some(vec![])`).
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let text = text.trim();
    let mut out = Vec::new();
    if text.is_empty() {
        return Some(out);
    }
    for part in text.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// The `Cpus_allowed_list` of a procfs `status` file.
fn allowed_in(path: &Path) -> io::Result<Vec<usize>> {
    let status = std::fs::read_to_string(path)?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Cpus_allowed_list line"))?;
    parse_cpu_list(line).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad CPU list {line:?}")))
}

/// CPUs the whole process may run on (its affinity mask, which a cgroup cpuset or `taskset`
/// may narrow below the machine's online CPUs).
pub fn process_allowed_cpus() -> io::Result<Vec<usize>> {
    allowed_in(Path::new("/proc/self/status"))
}

/// CPUs the calling thread may run on: after a pinned executor started on this thread, the
/// single CPU it is pinned to.
pub fn thread_allowed_cpus() -> io::Result<Vec<usize>> {
    allowed_in(Path::new("/proc/thread-self/status"))
}

/// The soft RLIMIT_MEMLOCK of this process in bytes (`Max locked memory` in
/// `/proc/self/limits`), `None` when unlimited. Each executor locks `io_memory` bytes; glommio
/// running as an ordinary user silently loses its registered buffers above the limit, so a
/// daemon should compare `PoolConfig::memlock_needed` against this and say so.
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max locked memory"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Max locked memory line"))?;
    parse_limit(line).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad limit {line:?}")))
}

/// The soft limit (first column) of a `/proc/self/limits` line after its name.
fn parse_limit(rest: &str) -> Option<Option<u64>> {
    match rest.split_whitespace().next()? {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("3,1,1-2"), Some(vec![1, 2, 3]));
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
        assert_eq!(parse_cpu_list("1,,2"), None);
        assert_eq!(parse_cpu_list("0-99999999"), None);
    }

    #[test]
    fn parses_limits() {
        assert_eq!(parse_limit("         8388608              8388608              bytes"), Some(Some(8_388_608)));
        assert_eq!(parse_limit(" unlimited unlimited bytes"), Some(None));
        assert_eq!(parse_limit(" lots"), None);
        assert_eq!(parse_limit(""), None);
        assert!(memlock_limit().is_ok());
    }

    #[test]
    fn this_process_has_cpus() {
        let cpus = process_allowed_cpus().expect("procfs readable");
        assert!(!cpus.is_empty());
        let thread = thread_allowed_cpus().expect("procfs readable");
        assert!(thread.iter().all(|c| cpus.contains(c)));
    }
}
