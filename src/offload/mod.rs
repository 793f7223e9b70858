//! Smart-NIC offload analysis (issue 9): which flows a NIC could run in hardware, and why not.

pub mod datapath;
