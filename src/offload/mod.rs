//! Smart-NIC offload analysis: which flows a NIC could run in hardware, and why not.
//!
//! A flow goes to hardware (TC flower, then the NIC driver) only when every field its datapath
//! flow matches and every action it runs is within what the hardware supports; anything else
//! stays in OVS's software path. shardflow knows every flow it installs, so it can say in
//! advance, per flow, with reasons:
//! - [`requirement`]: what a flow asks of the datapath, in datapath terms (shared by OpenFlow
//!   flows and `dpctl/dump-flows` datapath flows);
//! - [`lower`]: OpenFlow flow -> requirements, the way OVS's translation would fold it;
//! - [`profile`]: capability profiles as data (`profiles/*.toml`, each fact with its source)
//!   and [`Profile::judge`];
//! - [`verdict`]: the answer, with every reason;
//! - [`datapath`]: `ovs-appctl dpctl/dump-flows -m` text -> datapath flows -> requirements;
//! - [`report`]: per table of a pipeline (and for the installed connection flows), the share
//!   that could be offloaded and what blocks the rest.

pub mod datapath;
pub mod lower;
pub mod profile;
pub mod report;
pub mod requirement;
pub mod verdict;

pub use lower::{lower_flow_mod, lower_flow_mod_in};
pub use profile::{Profile, ProfileError, DEFAULT_PROFILE};
pub use requirement::{ActionReq, CtFlag, CtReq, MaskKind, MatchField, MatchReq, NatKind, OutputKind, Requirements};
pub use verdict::{Reason, Verdict};

use crate::openflow::flow::FlowMod;

/// Judges one OpenFlow flow under a profile (lowered alone: see [`lower`] for the limits).
pub fn check_flow(profile: &Profile, fm: &FlowMod) -> Verdict {
    profile.judge(&lower_flow_mod(fm))
}
