//! The flows shardflow owns on a bridge. For now: the packet-in dispatch that sends both
//! directions of a connection to the same shard's controller connection, and the cookie scheme
//! that says which part of shardflow owns a flow. The full default pipeline (tables 0-15, conntrack,
//! learned return flows) builds on these.

pub mod audit;
pub mod cookie;
pub mod default;
pub mod dispatch;
pub mod meters;
pub mod node;
pub mod resync;
