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

#[derive(Debug)]
struct Pending {
    waiter: Waiter,
    deadline: Instant,
    /// Replies received so far; multipart parts are merged into the last one while they can be.
    parts: Vec<Message>,
}

/// What happened to a request when a reply part arrived.
#[derive(Debug)]
pub(super) enum Progress {
    /// More parts follow (REPLY_MORE); the request stays pending.
    More,
    /// The reply is complete.
    Done(Waiter, Vec<Message>),
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

    pub(super) fn insert(&mut self, xid: u32, waiter: Waiter, deadline: Instant) {
        if let Some(old) = self.pending.insert(xid, Pending { waiter, deadline, parts: Vec::new() }) {
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

    /// Records one reply message. A multipart part with REPLY_MORE keeps the request pending and
    /// pushes its deadline out to `refreshed` (a long dump that makes progress is alive).
    pub(super) fn reply(&mut self, xid: u32, msg: Message, refreshed: Instant) -> Option<Progress> {
        let p = self.pending.get_mut(&xid)?;
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

    #[test]
    fn xids_skip_zero_and_pending_ones_when_wrapping() {
        let now = Instant::now();
        let mut r = Requests::new();
        r.set_next_xid(u32::MAX - 1);
        let a = r.alloc_xid();
        assert_eq!(a, u32::MAX - 1);
        r.insert(a, Waiter::User, now);
        assert_eq!(r.alloc_xid(), u32::MAX);
        assert_eq!(r.alloc_xid(), 1, "0 is skipped on wrap");
        r.set_next_xid(u32::MAX - 1);
        assert_eq!(r.alloc_xid(), u32::MAX, "a pending xid is not reused");
    }

    #[test]
    fn expire_returns_only_due_requests_in_order() {
        let t = Instant::now();
        let mut r = Requests::new();
        r.insert(7, Waiter::User, t + Duration::from_secs(2));
        r.insert(5, Waiter::User, t + Duration::from_secs(1));
        r.insert(9, Waiter::Features, t + Duration::from_secs(3));
        assert_eq!(r.next_deadline(), Some(t + Duration::from_secs(1)));
        assert_eq!(r.expire(t + Duration::from_secs(2)), vec![(5, Waiter::User), (7, Waiter::User)]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.next_deadline(), Some(t + Duration::from_secs(3)));
        assert_eq!(r.remove(9), Some(Waiter::Features));
        assert_eq!(r.next_deadline(), None);
    }
}
