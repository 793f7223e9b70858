//! A shard's accept loop, bounded: at most `cap` switch connections at once (more are closed at
//! once and counted), and accept errors (EMFILE when the process is out of file descriptors,
//! ENFILE, ENOBUFS...) back off exponentially instead of spinning, counted, with a log line at
//! most every [`LOG_EVERY`] that says how many were not logged.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The first pause after an accept error, doubled on each error in a row up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per cause this often; the others are counted in the next line.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The pause after consecutive accept errors: 50 ms, 100 ms, ... 1 s; reset by a success.
#[derive(Debug, Default)]
pub struct Backoff {
    errors_in_a_row: Cell<u32>,
}

impl Backoff {
    /// Records an error; returns how long to wait before accepting again.
    pub fn error(&self) -> Duration {
        let n = self.errors_in_a_row.get();
        self.errors_in_a_row.set(n.saturating_add(1));
        BACKOFF_MIN.saturating_mul(1u32 << n.min(16)).min(BACKOFF_MAX)
    }

    pub fn success(&self) {
        self.errors_in_a_row.set(0);
    }
}

/// A log line at most every [`LOG_EVERY`]: `should_log` says whether to log now and how many
/// occurrences were suppressed since the last line.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl RateLimitedLog {
    /// `Some(suppressed)` when a line is due at `now`, else `None` (and this one is counted).
    pub fn should_log(&self, now: Instant) -> Option<u64> {
        match self.last.get() {
            Some(t) if now.saturating_duration_since(t) < LOG_EVERY => {
                self.suppressed.set(self.suppressed.get() + 1);
                None
            }
            _ => {
                self.last.set(Some(now));
                Some(self.suppressed.replace(0))
            }
        }
    }
}

/// The per-shard connection cap that fits the file-descriptor limit `nofile` (soft): a reserve
/// for everything else (HTTP, gRPC, files: a quarter of the limit, at most 256) and half of the
/// rest for switch connections, shared by `n_shards`; never above `configured`, never 0.
pub fn cap_for_fd_limit(configured: usize, nofile: u64, n_shards: usize) -> usize {
    let reserve = (nofile / 4).min(256);
    let budget = nofile.saturating_sub(reserve) / 2 / n_shards.max(1) as u64;
    configured.min(usize::try_from(budget).unwrap_or(usize::MAX)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let b = Backoff::default();
        let waits: Vec<u128> = (0..7).map(|_| b.error().as_millis()).collect();
        assert_eq!(waits, vec![50, 100, 200, 400, 800, 1000, 1000]);
        b.success();
        assert_eq!(b.error(), BACKOFF_MIN);
    }

    #[test]
    fn one_line_per_period_with_the_suppressed_count() {
        let l = RateLimitedLog::default();
        let t = Instant::now();
        assert_eq!(l.should_log(t), Some(0));
        for i in 1..=200u64 {
            // one error every 50 ms for 10 s: what the old loop logged 200 times
            assert_eq!(l.should_log(t + Duration::from_millis(50 * i) - Duration::from_millis(1)), None);
        }
        assert_eq!(l.should_log(t + LOG_EVERY + Duration::from_millis(50)), Some(200));
    }

    #[test]
    fn caps_sit_well_below_the_fd_limit() {
        assert_eq!(cap_for_fd_limit(512, 1_048_576, 2), 512);
        // ulimit -n 1024: 256 reserved, 384 for switches, 192 per shard
        assert_eq!(cap_for_fd_limit(512, 1024, 2), 192);
        // ulimit -n 256: 64 reserved, 96 for switches
        assert_eq!(cap_for_fd_limit(512, 256, 2), 48);
        assert_eq!(cap_for_fd_limit(512, 4, 8), 1);
        for n in [64u64, 256, 1024, 4096] {
            assert!(cap_for_fd_limit(usize::MAX, n, 1) as u64 <= n / 2);
        }
    }
}
