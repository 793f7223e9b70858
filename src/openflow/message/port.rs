//! Switch ports: the 64-byte OF1.3 `ofp_port`, PORT_STATUS and PORT_MOD; and TABLE_MOD, its
//! table-side sibling.

use super::text::{bit_names, port_text};
use crate::openflow::wire::{fixed_str, fixed_str_text, Reader};
use crate::openflow::DecodeError;

const CONFIG_NAMES: &[&str] = &["PORT_DOWN", "", "NO_RECV", "", "", "NO_FWD", "NO_PACKET_IN"];
const STATE_NAMES: &[&str] = &["LINK_DOWN", "BLOCKED", "LIVE"];
const FEATURE_NAMES: &[&str] = &[
    "10MB-HD",
    "10MB-FD",
    "100MB-HD",
    "100MB-FD",
    "1GB-HD",
    "1GB-FD",
    "10GB-FD",
    "40GB-FD",
    "100GB-FD",
    "1TB-FD",
    "OTHER",
    "COPPER",
    "FIBER",
    "AUTO_NEG",
    "AUTO_PAUSE",
    "AUTO_PAUSE_ASYM",
];

/// `OFPPC_PORT_DOWN`: the port is administratively down.
pub const PORT_CONFIG_DOWN: u32 = 1;
/// `OFPPS_LINK_DOWN`: no physical link.
pub const PORT_STATE_LINK_DOWN: u32 = 1;

fn bits_or_zero(bits: u32, names: &[&str], known: u32) -> String {
    if bits & known == 0 {
        "0".into()
    } else {
        bit_names(bits & known, names, " ")
    }
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// An OpenFlow 1.3 `ofp_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub port_no: u32,
    pub hw_addr: [u8; 6],
    /// NUL-padded name, kept raw so bytes after the NUL survive a re-encode.
    pub name: [u8; 16],
    pub config: u32,
    pub state: u32,
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    /// kbps.
    pub curr_speed: u32,
    pub max_speed: u32,
}

impl Port {
    pub const LEN: usize = 64;

    /// A port with the given number and name and everything else zero.
    pub fn new(port_no: u32, name: &str) -> Port {
        Port {
            port_no,
            hw_addr: [0; 6],
            name: fixed_str(name),
            config: 0,
            state: 0,
            curr: 0,
            advertised: 0,
            supported: 0,
            peer: 0,
            curr_speed: 0,
            max_speed: 0,
        }
    }

    /// The name up to its first NUL (lossy UTF-8).
    pub fn name_str(&self) -> String {
        fixed_str_text(&self.name)
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let hw_addr = r.array()?;
        r.skip(2)?;
        Ok(Port {
            port_no,
            hw_addr,
            name: r.array()?,
            config: r.u32()?,
            state: r.u32()?,
            curr: r.u32()?,
            advertised: r.u32()?,
            supported: r.u32()?,
            peer: r.u32()?,
            curr_speed: r.u32()?,
            max_speed: r.u32()?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.port_no.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.hw_addr);
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&self.name);
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// OVS's multi-line port text, starting with a space and ending with a newline.
    pub fn fmt(&self) -> String {
        // As OVS's `ofputil_phy_port_format`: the name up to its first byte that is not printable
        // ASCII (at most 15 bytes).
        let printable: String =
            self.name.iter().take(15).take_while(|b| (0x20..0x7f).contains(*b)).map(|b| *b as char).collect();
        let mut s = format!(" {}({}): addr:{}\n", port_text(self.port_no), printable, mac_text(&self.hw_addr));
        s.push_str(&format!("     config:     {}\n", bits_or_zero(self.config, CONFIG_NAMES, 0x65)));
        s.push_str(&format!("     state:      {}\n", bits_or_zero(self.state, STATE_NAMES, 0x7)));
        for (label, v) in [
            ("current:   ", self.curr),
            ("advertised:", self.advertised),
            ("supported: ", self.supported),
            ("peer:      ", self.peer),
        ] {
            if v & 0xffff != 0 {
                s.push_str(&format!("     {} {}\n", label, bit_names(v & 0xffff, FEATURE_NAMES, " ")));
            }
        }
        s.push_str(&format!("     speed: {} Mbps now, {} Mbps max\n", self.curr_speed / 1000, self.max_speed / 1000));
        s
    }
}

/// OFPT_PORT_STATUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    /// OFPPR_ADD 0, OFPPR_DELETE 1, OFPPR_MODIFY 2.
    pub reason: u8,
    pub port: Port,
}

impl PortStatus {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let reason = r.u8()?;
        r.skip(7)?;
        Ok(PortStatus { reason, port: Port::decode(r)? })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.reason);
        out.extend_from_slice(&[0; 7]);
        self.port.encode(out);
    }

    pub fn fmt_body(&self) -> String {
        let reason = match self.reason {
            0 => "ADD".to_string(),
            1 => "DEL".to_string(),
            2 => "MOD".to_string(),
            n => format!("{n}"),
        };
        format!(" {}:{}", reason, self.port.fmt())
    }
}

/// OFPT_PORT_MOD: change a port's administrative config bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMod {
    pub port_no: u32,
    /// Must match the port's address (a guard against renumbered ports).
    pub hw_addr: [u8; 6],
    pub config: u32,
    /// Which `config` bits to change.
    pub mask: u32,
    /// Features to advertise; 0 leaves them unchanged.
    pub advertise: u32,
}

impl PortMod {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let hw_addr = r.array()?;
        r.skip(2)?;
        let config = r.u32()?;
        let mask = r.u32()?;
        let advertise = r.u32()?;
        r.skip(4)?;
        Ok(PortMod { port_no, hw_addr, config, mask, advertise })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.port_no.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.hw_addr);
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&self.config.to_be_bytes());
        out.extend_from_slice(&self.mask.to_be_bytes());
        out.extend_from_slice(&self.advertise.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
    }

    pub fn fmt_body(&self) -> String {
        let adv = if self.advertise & 0xffff == 0 {
            "UNCHANGED".to_string()
        } else {
            bit_names(self.advertise & 0xffff, FEATURE_NAMES, " ")
        };
        format!(
            " port: {}: addr:{}\n     config: {}\n     mask:   {}\n     advertise: {}",
            port_text(self.port_no),
            mac_text(&self.hw_addr),
            bits_or_zero(self.config, CONFIG_NAMES, 0x65),
            bits_or_zero(self.mask, CONFIG_NAMES, 0x65),
            adv
        )
    }
}

/// OFPT_TABLE_MOD (OF1.3: only the deprecated table-miss config bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMod {
    /// 0xff: all tables.
    pub table_id: u8,
    pub config: u32,
}

impl TableMod {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let table_id = r.u8()?;
        r.skip(3)?;
        Ok(TableMod { table_id, config: r.u32()? })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.table_id, 0, 0, 0]);
        out.extend_from_slice(&self.config.to_be_bytes());
    }

    pub fn fmt_body(&self) -> String {
        if self.table_id == 0xff {
            " table_id: ALL_TABLES".to_string()
        } else {
            format!(" table_id={}", self.table_id)
        }
    }
}
