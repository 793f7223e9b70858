//! Outstanding requests: xid allocation, deadlines and multipart reassembly.
//!
//! Deadlines are kept in an ordered index beside the map so that the next deadline is found
//! without scanning every request (a shard may have thousands of flow mods and barriers in
//! flight).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::openflow::message::Message;

/// Who is waiting for a reply: the application, or the session's own handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiter {
    /// `Session::request` / `Session::barrier`: the answer becomes an [`super::Event`].
    User,
    /// The handshake's FEATURES_REQUEST.
    Features,
    /// The handshake's PORT_DESC multipart request.
    PortDesc,
}

/// The bounds of one request's reply: what a multipart reply may grow to, and the fixed
/// deadline its parts cannot push the request past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    pub max_bytes: usize,
    pub max_parts: usize,
    pub until: Instant,
}

#[derive(Debug)]
struct Pending {
    waiter: Waiter,
    deadline: Instant,
    /// Replies received so far; multipart parts are merged into the last one while they can be.
    parts: Vec<Message>,
    /// Bytes (OpenFlow lengths) and messages received so far, checked against `limits`.
    bytes: usize,
    n_parts: usize,
    limits: Limits,
}

/// What happened to a request when a reply part arrived.
#[derive(Debug)]
pub(super) enum Progress {
    /// More parts follow (REPLY_MORE); the request stays pending.
    More,
    /// The reply is complete.
    Done(Waiter, Vec<Message>),
    /// The reply outgrew its limits: the request is gone (later parts are unsolicited).
    TooLarge(Waiter, super::Refusal),
}

/// The table of requests waiting for an answer, keyed by xid.
#[derive(Debug)]
pub(super) struct Requests {
    next_xid: u32,
    pending: HashMap<u32, Pending>,
    by_deadline: BTreeSet<(Instant, u32)>,
}

impl Requests {
    pub(super) fn new() -> Self {
        Requests { next_xid: 1, pending: HashMap::new(), by_deadline: BTreeSet::new() }
    }

    /// A fresh xid: never 0 (OVS uses 0 for asynchronous messages), wrapping after u32::MAX,
    /// and never one that is still waiting for its reply.
    pub(super) fn alloc_xid(&mut self) -> u32 {
        loop {
            let xid = self.next_xid;
            self.next_xid = self.next_xid.wrapping_add(1);
            if self.next_xid == 0 {
                self.next_xid = 1;
            }
            if xid != 0 && !self.pending.contains_key(&xid) {
                return xid;
            }
        }
    }

    #[cfg(test)]
    pub(super) fn set_next_xid(&mut self, xid: u32) {
        self.next_xid = xid;
    }

    pub(super) fn insert(&mut self, xid: u32, waiter: Waiter, deadline: Instant, limits: Limits) {
        let p = Pending { waiter, deadline, parts: Vec::new(), bytes: 0, n_parts: 0, limits };
        if let Some(old) = self.pending.insert(xid, p) {
            self.by_deadline.remove(&(old.deadline, xid));
        }
        self.by_deadline.insert((deadline, xid));
    }

    pub(super) fn contains(&self, xid: u32) -> bool {
        self.pending.contains_key(&xid)
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Removes the request, returning who waited for it.
    pub(super) fn remove(&mut self, xid: u32) -> Option<Waiter> {
        let p = self.pending.remove(&xid)?;
        self.by_deadline.remove(&(p.deadline, xid));
        Some(p.waiter)
    }

    /// Records one reply message of `len` bytes (its OpenFlow length). A multipart part with
    /// REPLY_MORE keeps the request pending and pushes its deadline out to `refreshed` (a long
    /// dump that makes progress is alive), but never past the request's fixed `limits.until`;
    /// a reply over `limits` ends the request with [`Progress::TooLarge`].
    pub(super) fn reply(&mut self, xid: u32, msg: Message, len: usize, refreshed: Instant) -> Option<Progress> {
        let p = self.pending.get_mut(&xid)?;
        p.bytes = p.bytes.saturating_add(len);
        p.n_parts += 1;
        if p.bytes > p.limits.max_bytes || p.n_parts > p.limits.max_parts {
            let reason = super::Refusal::ReplyTooLarge {
                bytes: p.bytes,
                parts: p.n_parts,
                max_bytes: p.limits.max_bytes,
                max_parts: p.limits.max_parts,
            };
            let waiter = p.waiter;
            self.remove(xid);
            return Some(Progress::TooLarge(waiter, reason));
        }
        let refreshed = refreshed.min(p.limits.until);
        let more = matches!(&msg, Message::MultipartReply(m) if m.more());
        match (p.parts.last_mut(), msg) {
            (Some(Message::MultipartReply(acc)), Message::MultipartReply(next)) if acc.more() => {
                if let Err(next) = acc.absorb(next) {
                    // A part of another type under the same xid: keep it as it came.
                    p.parts.push(Message::MultipartReply(*next));
                }
            }
            (_, msg) => p.parts.push(msg),
        }
        if more {
            let old = p.deadline;
            p.deadline = refreshed;
            self.by_deadline.remove(&(old, xid));
            self.by_deadline.insert((refreshed, xid));
            return Some(Progress::More);
        }
        let p = self.pending.remove(&xid)?;
        self.by_deadline.remove(&(p.deadline, xid));
        Some(Progress::Done(p.waiter, p.parts))
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(d, _)| d)
    }

    /// Removes and returns the requests whose deadline is at or before `now`, oldest first.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<(u32, Waiter)> {
        let mut out = Vec::new();
        while let Some(&(d, xid)) = self.by_deadline.first() {
            if d > now {
                break;
            }
            self.by_deadline.pop_first();
            if let Some(p) = self.pending.remove(&xid) {
                out.push((xid, p.waiter));
            }
        }
        out
    }

    /// Forgets every request (the session closed).
    pub(super) fn clear(&mut self) {
        self.pending.clear();
        self.by_deadline.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(now: Instant) -> Limits {
        Limits { max_bytes: 1 << 20, max_parts: 100, until: now + Duration::from_secs(60) }
    }

    #[test]
    fn xids_skip_zero_and_pending_ones_when_wrapping() {
        let now = Instant::now();
        let mut r = Requests::new();
        r.set_next_xid(u32::MAX - 1);
        let a = r.alloc_xid();
        assert_eq!(a, u32::MAX - 1);
        r.insert(a, Waiter::User, now, limits(now));
        assert_eq!(r.alloc_xid(), u32::MAX);
        assert_eq!(r.alloc_xid(), 1, "0 is skipped on wrap");
        r.set_next_xid(u32::MAX - 1);
        assert_eq!(r.alloc_xid(), u32::MAX, "a pending xid is not reused");
    }

    #[test]
    fn expire_returns_only_due_requests_in_order() {
        let t = Instant::now();
        let mut r = Requests::new();
        r.insert(7, Waiter::User, t + Duration::from_secs(2), limits(t));
        r.insert(5, Waiter::User, t + Duration::from_secs(1), limits(t));
        r.insert(9, Waiter::Features, t + Duration::from_secs(3), limits(t));
        assert_eq!(r.next_deadline(), Some(t + Duration::from_secs(1)));
        assert_eq!(r.expire(t + Duration::from_secs(2)), vec![(5, Waiter::User), (7, Waiter::User)]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.next_deadline(), Some(t + Duration::from_secs(3)));
        assert_eq!(r.remove(9), Some(Waiter::Features));
        assert_eq!(r.next_deadline(), None);
    }
}
