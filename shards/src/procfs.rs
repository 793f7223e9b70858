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

/// Why a CPU list (`"0-3,8"`) did not parse; the text of the offending part is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    #[error("{0:?} is not a CPU range")]
    BadRange(String),
    #[error("{0:?} is not an ascending CPU range")]
    NotAscending(String),
    #[error("{0:?} is not a CPU number")]
    BadNumber(String),
}

/// Widest range accepted (`a-b` with `b - a` above this is refused): a typo such as
/// `0-99999999` must not allocate a hundred million entries.
const MAX_RANGE: usize = 1 << 16;

/// The one CPU-list parser, for the kernel's lists (`Cpus_allowed_list`,
/// `/sys/devices/system/cpu/online`) and the operator's (`shards.cpus`, `--cpus`):
/// `"0-3,8,10-11"`, spaces and empty parts ignored. The CPUs come in the order written, duplicates
/// kept, because `shards.cpus` maps shard i to the i-th entry and its validation names a CPU
/// listed twice; callers that want a set sort and dedup. An empty text gives an empty list (the
/// configuration refuses that at its edge).
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, CpuListError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let bad = || CpuListError::BadRange(part.to_string());
                let (a, b): (usize, usize) =
                    (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if b < a || b - a > MAX_RANGE {
                    return Err(CpuListError::NotAscending(part.to_string()));
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| CpuListError::BadNumber(part.to_string()))?),
        }
    }
    Ok(out)
}

/// [`parse_cpu_list`] as a set: sorted, each CPU once (the kernel's lists are sets).
pub fn parse_cpu_set(text: &str) -> Result<Vec<usize>, CpuListError> {
    let mut out = parse_cpu_list(text)?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The `Cpus_allowed_list` of a procfs `status` file.
fn allowed_in(path: &Path) -> io::Result<Vec<usize>> {
    let status = std::fs::read_to_string(path)?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Cpus_allowed_list line"))?;
    parse_cpu_set(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad CPU list {line:?}: {e}")))
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
        assert_eq!(parse_cpu_set("0-3,8,10-11\n"), Ok(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpu_set("5"), Ok(vec![5]));
        assert_eq!(parse_cpu_set("3,1,1-2"), Ok(vec![1, 2, 3]));
        assert_eq!(parse_cpu_set(""), Ok(vec![]));
        assert_eq!(parse_cpu_set("3-1"), Err(CpuListError::NotAscending("3-1".into())));
        assert_eq!(parse_cpu_set("a"), Err(CpuListError::BadNumber("a".into())));
        assert_eq!(parse_cpu_set("0-99999999"), Err(CpuListError::NotAscending("0-99999999".into())));
        assert_eq!(parse_cpu_set("0-x"), Err(CpuListError::BadRange("0-x".into())));
    }

    /// The operator's lists (`shards.cpus`): order as written (shard i gets the i-th CPU),
    /// duplicates kept for the configuration to name, spaces and empty parts ignored.
    #[test]
    fn parses_operator_lists_in_order() {
        assert_eq!(parse_cpu_list("0,2-4, 7"), Ok(vec![0, 2, 3, 4, 7]));
        assert_eq!(parse_cpu_list("3,1,1"), Ok(vec![3, 1, 1]));
        assert_eq!(parse_cpu_list("1,,2,"), Ok(vec![1, 2]));
        assert_eq!(parse_cpu_list(" "), Ok(vec![]));
        assert_eq!(parse_cpu_list("4-2").unwrap_err().to_string(), "\"4-2\" is not an ascending CPU range");
        assert_eq!(parse_cpu_list("x").unwrap_err().to_string(), "\"x\" is not a CPU number");
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
