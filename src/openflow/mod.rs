//! OpenFlow 1.3 with Open vSwitch's Nicira and ONF extensions, sans IO: bytes in, typed messages
//! out and back, and flows as `ovs-ofctl` text both ways. No sockets, no clock, no runtime here.

pub mod action;
pub mod check;
pub mod dpid;
pub mod error;
pub mod field;
pub mod flow;
pub mod instruction;
pub mod message;
pub mod oxm;
pub mod session;
pub mod text;
pub mod wire;

pub use dpid::Dpid;
pub use error::{DecodeError, ErrorCode, TextError};
pub use field::{Field, Subfield, Value};
