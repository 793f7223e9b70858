//! The process's open-file limit (RLIMIT_NOFILE). Every switch connection is a file descriptor;
//! a daemon left at a distribution's default soft limit (often 1024) runs out long before the
//! hard limit the administrator granted. [`raise_to_hard`] lifts the soft limit to the hard one
//! at start, so the connection caps can be sized well below what is really available.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The soft and hard RLIMIT_NOFILE before and after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit. An error leaves the limit as it was (the
/// caller logs it and sizes its caps with [`current`]).
pub fn raise_to_hard() -> Result<FdLimit, nix::Error> {
    let (soft_before, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft_before < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(FdLimit { soft_before, soft, hard })
}

/// The current soft limit.
pub fn current() -> Result<u64, nix::Error> {
    getrlimit(Resource::RLIMIT_NOFILE).map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let l = raise_to_hard().expect("getrlimit/setrlimit");
        assert_eq!(l.soft, l.hard);
        assert!(l.soft >= l.soft_before);
        assert_eq!(current().expect("getrlimit"), l.soft);
        let again = raise_to_hard().expect("again");
        assert_eq!((again.soft_before, again.soft), (l.soft, l.soft));
    }
}
