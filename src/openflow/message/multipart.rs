//! OFPT_MULTIPART_REQUEST / OFPT_MULTIPART_REPLY: statistics and descriptions. A reply may be
//! split over several messages; each keeps its `flags` (REPLY_MORE) so the session can
//! reassemble them.

use super::group::{GroupDesc, GroupStats};
use super::meter::{MeterConfig, MeterStats};
use super::packet::match_with_priority;
use super::port::Port;
use super::text::{duration_text, match_text, port_text};
use crate::openflow::error::ErrorCode;
use crate::openflow::instruction::{format_instructions, Instruction};
use crate::openflow::oxm::Match;
use crate::openflow::wire::{fixed_str, fixed_str_text, patch_u16, Reader};
use crate::openflow::DecodeError;

/// `OFPMPF_REQ_MORE` / `OFPMPF_REPLY_MORE`: more parts follow.
pub const MULTIPART_MORE: u16 = 1;

/// `OFPMP_*` types.
pub mod mp_type {
    pub const DESC: u16 = 0;
    pub const FLOW: u16 = 1;
    pub const AGGREGATE: u16 = 2;
    pub const TABLE: u16 = 3;
    pub const PORT_STATS: u16 = 4;
    pub const QUEUE: u16 = 5;
    pub const GROUP: u16 = 6;
    pub const GROUP_DESC: u16 = 7;
    pub const GROUP_FEATURES: u16 = 8;
    pub const METER: u16 = 9;
    pub const METER_CONFIG: u16 = 10;
    pub const METER_FEATURES: u16 = 11;
    pub const TABLE_FEATURES: u16 = 12;
    pub const PORT_DESC: u16 = 13;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// OVS's `OFPST_*` name for a multipart type.
pub fn mp_type_name(t: u16) -> Option<&'static str> {
    Some(match t {
        mp_type::DESC => "OFPST_DESC",
        mp_type::FLOW => "OFPST_FLOW",
        mp_type::AGGREGATE => "OFPST_AGGREGATE",
        mp_type::TABLE => "OFPST_TABLE",
        mp_type::PORT_STATS => "OFPST_PORT",
        mp_type::QUEUE => "OFPST_QUEUE",
        mp_type::GROUP => "OFPST_GROUP",
        mp_type::GROUP_DESC => "OFPST_GROUP_DESC",
        mp_type::GROUP_FEATURES => "OFPST_GROUP_FEATURES",
        mp_type::METER => "OFPST_METER",
        mp_type::METER_CONFIG => "OFPST_METER_CONFIG",
        mp_type::METER_FEATURES => "OFPST_METER_FEATURES",
        mp_type::TABLE_FEATURES => "OFPST_TABLE_FEATURES",
        mp_type::PORT_DESC => "OFPST_PORT_DESC",
        _ => return None,
    })
}

fn flags_text(flags: u16) -> String {
    let mut s = String::new();
    if flags != 0 {
        s.push_str(" flags=");
        if flags & MULTIPART_MORE != 0 {
            s.push_str("[more]");
        }
        if flags & !MULTIPART_MORE != 0 {
            s.push_str(&format!("[***unknown flags 0x{:04x}***]", flags & !MULTIPART_MORE));
        }
    }
    s
}

// === Requests ===

/// The body of OFPMP_FLOW and OFPMP_AGGREGATE requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatsRequest {
    /// 0xff: all tables.
    pub table_id: u8,
    /// OFPP_ANY (0xffffffff): any port.
    pub out_port: u32,
    /// OFPG_ANY (0xffffffff): any group.
    pub out_group: u32,
    pub cookie: u64,
    /// Which cookie bits must match; 0 ignores the cookie.
    pub cookie_mask: u64,
    pub r#match: Match,
}

impl Default for FlowStatsRequest {
    /// Every flow of every table.
    fn default() -> Self {
        FlowStatsRequest {
            table_id: 0xff,
            out_port: 0xffff_ffff,
            out_group: 0xffff_ffff,
            cookie: 0,
            cookie_mask: 0,
            r#match: Match::default(),
        }
    }
}

impl FlowStatsRequest {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let table_id = r.u8()?;
        r.skip(3)?;
        let out_port = r.u32()?;
        let out_group = r.u32()?;
        r.skip(4)?;
        Ok(FlowStatsRequest {
            table_id,
            out_port,
            out_group,
            cookie: r.u64()?,
            cookie_mask: r.u64()?,
            r#match: Match::decode(r)?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.table_id);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.out_port.to_be_bytes());
        out.extend_from_slice(&self.out_group.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.cookie.to_be_bytes());
        out.extend_from_slice(&self.cookie_mask.to_be_bytes());
        self.r#match.encode(out);
    }

    fn fmt(&self) -> String {
        let mut s = String::new();
        if self.table_id != 0xff {
            s.push_str(&format!(" table={}", self.table_id));
        }
        if self.out_port != 0xffff_ffff {
            s.push_str(&format!(" out_port={}", port_text(self.out_port)));
        }
        s.push(' ');
        s.push_str(&match_text(&self.r#match));
        s
    }
}

/// What a multipart request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartRequestBody {
    Desc,
    Flow(FlowStatsRequest),
    Aggregate(FlowStatsRequest),
    Table,
    /// Port statistics of one port or OFPP_ANY.
    PortStats {
        port_no: u32,
    },
    /// Group statistics of one group or OFPG_ALL.
    GroupStats {
        group_id: u32,
    },
    GroupDesc,
    GroupFeatures,
    /// Meter statistics of one meter or OFPM_ALL.
    MeterStats {
        meter_id: u32,
    },
    MeterConfig {
        meter_id: u32,
    },
    MeterFeatures,
    PortDesc,
    /// Any other type (queue, table features, experimenter...), body kept raw.
    Unknown {
        mp_type: u16,
        body: Vec<u8>,
    },
}

/// OFPT_MULTIPART_REQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartRequest {
    pub flags: u16,
    pub body: MultipartRequestBody,
}

impl MultipartRequest {
    pub fn new(body: MultipartRequestBody) -> Self {
        MultipartRequest { flags: 0, body }
    }

    pub fn mp_type(&self) -> u16 {
        use MultipartRequestBody as B;
        match &self.body {
            B::Desc => mp_type::DESC,
            B::Flow(_) => mp_type::FLOW,
            B::Aggregate(_) => mp_type::AGGREGATE,
            B::Table => mp_type::TABLE,
            B::PortStats { .. } => mp_type::PORT_STATS,
            B::GroupStats { .. } => mp_type::GROUP,
            B::GroupDesc => mp_type::GROUP_DESC,
            B::GroupFeatures => mp_type::GROUP_FEATURES,
            B::MeterStats { .. } => mp_type::METER,
            B::MeterConfig { .. } => mp_type::METER_CONFIG,
            B::MeterFeatures => mp_type::METER_FEATURES,
            B::PortDesc => mp_type::PORT_DESC,
            B::Unknown { mp_type, .. } => *mp_type,
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        use MultipartRequestBody as B;
        let t = r.u16()?;
        let flags = r.u16()?;
        r.skip(4)?;
        let id_then_pad = |r: &mut Reader<'_>| -> Result<u32, DecodeError> {
            let id = r.u32()?;
            r.skip(4)?;
            Ok(id)
        };
        let body = match t {
            mp_type::DESC => B::Desc,
            mp_type::FLOW => B::Flow(FlowStatsRequest::decode(r)?),
            mp_type::AGGREGATE => B::Aggregate(FlowStatsRequest::decode(r)?),
            mp_type::TABLE => B::Table,
            mp_type::PORT_STATS => B::PortStats { port_no: id_then_pad(r)? },
            mp_type::GROUP => B::GroupStats { group_id: id_then_pad(r)? },
            mp_type::GROUP_DESC => B::GroupDesc,
            mp_type::GROUP_FEATURES => B::GroupFeatures,
            mp_type::METER => B::MeterStats { meter_id: id_then_pad(r)? },
            mp_type::METER_CONFIG => B::MeterConfig { meter_id: id_then_pad(r)? },
            mp_type::METER_FEATURES => B::MeterFeatures,
            mp_type::PORT_DESC => B::PortDesc,
            other => B::Unknown { mp_type: other, body: r.take_rest().to_vec() },
        };
        if !r.is_empty() {
            return Err(r.error_code(ErrorCode::BAD_REQUEST_BAD_LEN, format!("{} trailing bytes", r.remaining())));
        }
        Ok(MultipartRequest { flags, body })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        use MultipartRequestBody as B;
        out.extend_from_slice(&self.mp_type().to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        match &self.body {
            B::Flow(f) | B::Aggregate(f) => f.encode(out),
            B::PortStats { port_no: id }
            | B::GroupStats { group_id: id }
            | B::MeterStats { meter_id: id }
            | B::MeterConfig { meter_id: id } => {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&[0; 4]);
            }
            B::Unknown { body, .. } => out.extend_from_slice(body),
            B::Desc | B::Table | B::GroupDesc | B::GroupFeatures | B::MeterFeatures | B::PortDesc => {}
        }
    }

    pub fn fmt_body(&self) -> String {
        use MultipartRequestBody as B;
        let group = |id: u32| match id {
            0xffff_fffc => "ALL".to_string(),
            0xffff_ffff => "ANY".to_string(),
            n => n.to_string(),
        };
        let meter = |id: u32| if id == 0xffff_ffff { "all".to_string() } else { id.to_string() };
        let mut s = flags_text(self.flags);
        s.push_str(&match &self.body {
            B::Flow(f) | B::Aggregate(f) => f.fmt(),
            B::PortStats { port_no } => format!(" port_no={}", port_text(*port_no)),
            B::GroupStats { group_id } => format!(" group_id={}", group(*group_id)),
            B::GroupDesc => " group_id=ALL".to_string(),
            B::MeterStats { meter_id } | B::MeterConfig { meter_id } => format!(" meter={}", meter(*meter_id)),
            B::PortDesc => " port=ANY".to_string(),
            B::Unknown { mp_type: mp_type::QUEUE, body } if body.len() == 8 => {
                let (port, queue) = (be32(&body[0..4]), be32(&body[4..8]));
                format!(" port={} queue={}", port_text(port), queue_text(queue))
            }
            _ => String::new(),
        });
        s
    }
}

// === Replies ===

/// OFPMP_DESC reply: fixed-width NUL-padded strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    /// The fixed-size, NUL-padded fields are kept raw: a switch may send any bytes (not UTF-8,
    /// junk after the NUL) and decode -> encode must give them back. [`Desc::new`] builds them
    /// from text; they print as OVS prints them (up to the first NUL).
    pub mfr_desc: [u8; DESC_STR_LEN],
    pub hw_desc: [u8; DESC_STR_LEN],
    pub sw_desc: [u8; DESC_STR_LEN],
    pub serial_num: [u8; SERIAL_NUM_LEN],
    pub dp_desc: [u8; DESC_STR_LEN],
}

const DESC_STR_LEN: usize = 256;
const SERIAL_NUM_LEN: usize = 32;

impl Desc {
    /// A description from text (each field truncated to fit with its NUL).
    pub fn new(mfr: &str, hw: &str, sw: &str, serial: &str, dp: &str) -> Desc {
        Desc {
            mfr_desc: fixed_str(mfr),
            hw_desc: fixed_str(hw),
            sw_desc: fixed_str(sw),
            serial_num: fixed_str(serial),
            dp_desc: fixed_str(dp),
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Desc {
            mfr_desc: r.array()?,
            hw_desc: r.array()?,
            sw_desc: r.array()?,
            serial_num: r.array()?,
            dp_desc: r.array()?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for f in [&self.mfr_desc[..], &self.hw_desc, &self.sw_desc, &self.serial_num, &self.dp_desc] {
            out.extend_from_slice(f);
        }
    }

    fn fmt(&self) -> String {
        format!(
            "\nManufacturer: {}\nHardware: {}\nSoftware: {}\nSerial Num: {}\nDP Description: {}",
            fixed_str_text(&self.mfr_desc),
            fixed_str_text(&self.hw_desc),
            fixed_str_text(&self.sw_desc),
            fixed_str_text(&self.serial_num),
            fixed_str_text(&self.dp_desc)
        )
    }
}

/// One `ofp_flow_stats` entry of an OFPMP_FLOW reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// OFPFF_* flags the flow was added with.
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub r#match: Match,
    pub instructions: Vec<Instruction>,
}

const FLOW_FLAG_NAMES: &[(u16, &str)] =
    &[(1, "send_flow_rem"), (2, "check_overlap"), (4, "reset_counts"), (8, "no_packet_counts"), (16, "no_byte_counts")];

impl FlowStats {
    /// Size of the fixed part before the match.
    const FIXED: usize = 48;

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.u16()? as usize;
        if len < Self::FIXED + 8 {
            return Err(r.error_code(ErrorCode::BAD_REQUEST_BAD_LEN, format!("flow stats length {len}")));
        }
        let mut e = r.sub(len - 2)?;
        let table_id = e.u8()?;
        e.skip(1)?;
        let duration_sec = e.u32()?;
        let duration_nsec = e.u32()?;
        let priority = e.u16()?;
        let idle_timeout = e.u16()?;
        let hard_timeout = e.u16()?;
        let flags = e.u16()?;
        e.skip(4)?;
        let cookie = e.u64()?;
        let packet_count = e.u64()?;
        let byte_count = e.u64()?;
        let r#match = Match::decode(&mut e)?;
        let mut ir = e.context("ofp_flow_stats instructions", ErrorCode::BAD_INSTRUCTION_BAD_LEN);
        let instructions = Instruction::decode_list(&mut ir)?;
        Ok(FlowStats {
            table_id,
            duration_sec,
            duration_nsec,
            priority,
            idle_timeout,
            hard_timeout,
            flags,
            cookie,
            packet_count,
            byte_count,
            r#match,
            instructions,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        out.push(self.table_id);
        out.push(0);
        out.extend_from_slice(&self.duration_sec.to_be_bytes());
        out.extend_from_slice(&self.duration_nsec.to_be_bytes());
        out.extend_from_slice(&self.priority.to_be_bytes());
        out.extend_from_slice(&self.idle_timeout.to_be_bytes());
        out.extend_from_slice(&self.hard_timeout.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.cookie.to_be_bytes());
        out.extend_from_slice(&self.packet_count.to_be_bytes());
        out.extend_from_slice(&self.byte_count.to_be_bytes());
        self.r#match.encode(out);
        Instruction::encode_list(&self.instructions, out);
        let len = (out.len() - start) as u16;
        patch_u16(out, start, len);
    }

    /// One line as `ovs-ofctl dump-flows` prints it (leading space, no newline).
    pub fn fmt(&self) -> String {
        let mut s = format!(
            " cookie=0x{:x}, duration={}, table={}, n_packets={}, n_bytes={}, ",
            self.cookie,
            duration_text(self.duration_sec, self.duration_nsec),
            self.table_id,
            self.packet_count,
            self.byte_count
        );
        if self.idle_timeout != 0 {
            s.push_str(&format!("idle_timeout={}, ", self.idle_timeout));
        }
        if self.hard_timeout != 0 {
            s.push_str(&format!("hard_timeout={}, ", self.hard_timeout));
        }
        for (bit, name) in FLOW_FLAG_NAMES {
            if self.flags & bit != 0 {
                s.push_str(name);
                s.push(' ');
            }
        }
        let m = match_with_priority(&self.r#match, self.priority);
        if !m.is_empty() {
            s.push_str(&m);
            s.push(' ');
        }
        s.push_str("actions=");
        s.push_str(&format_instructions(&self.instructions));
        s
    }
}

/// OFPMP_AGGREGATE reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateStats {
    pub packet_count: u64,
    pub byte_count: u64,
    pub flow_count: u32,
}

/// One `ofp_table_stats` of an OFPMP_TABLE reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    pub table_id: u8,
    pub active_count: u32,
    pub lookup_count: u64,
    pub matched_count: u64,
}

/// One `ofp_port_stats` of an OFPMP_PORT_STATS reply. Counters the switch does not keep are
/// all-ones (printed `?`), a duration it does not keep is `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub port_no: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_frame_err: u64,
    pub rx_over_err: u64,
    pub rx_crc_err: u64,
    pub collisions: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

impl PortStats {
    const LEN: usize = 112;

    fn counters(&self) -> [u64; 12] {
        [
            self.rx_packets,
            self.tx_packets,
            self.rx_bytes,
            self.tx_bytes,
            self.rx_dropped,
            self.tx_dropped,
            self.rx_errors,
            self.tx_errors,
            self.rx_frame_err,
            self.rx_over_err,
            self.rx_crc_err,
            self.collisions,
        ]
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let mut c = [0u64; 12];
        for v in c.iter_mut() {
            *v = r.u64()?;
        }
        Ok(PortStats {
            port_no,
            rx_packets: c[0],
            tx_packets: c[1],
            rx_bytes: c[2],
            tx_bytes: c[3],
            rx_dropped: c[4],
            tx_dropped: c[5],
            rx_errors: c[6],
            tx_errors: c[7],
            rx_frame_err: c[8],
            rx_over_err: c[9],
            rx_crc_err: c[10],
            collisions: c[11],
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.port_no.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        for v in self.counters() {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.duration_sec.to_be_bytes());
        out.extend_from_slice(&self.duration_nsec.to_be_bytes());
    }

    fn fmt(&self) -> String {
        let n = |v: u64| if v == u64::MAX { "?".to_string() } else { v.to_string() };
        let mut s = "  port ".to_string();
        let p16 = if self.port_no >= 0xffff_ff00 { self.port_no - 0xffff_0000 } else { self.port_no };
        if p16 < 10 {
            s.push(' ');
        }
        s.push_str(&port_text(self.port_no));
        s.push_str(&format!(
            ": rx pkts={}, bytes={}, drop={}, errs={}, frame={}, over={}, crc={}\n",
            n(self.rx_packets),
            n(self.rx_bytes),
            n(self.rx_dropped),
            n(self.rx_errors),
            n(self.rx_frame_err),
            n(self.rx_over_err),
            n(self.rx_crc_err)
        ));
        s.push_str(&format!(
            "           tx pkts={}, bytes={}, drop={}, errs={}, coll={}\n",
            n(self.tx_packets),
            n(self.tx_bytes),
            n(self.tx_dropped),
            n(self.tx_errors),
            n(self.collisions)
        ));
        if self.duration_sec != u32::MAX {
            s.push_str(&format!("           duration={}\n", duration_text(self.duration_sec, self.duration_nsec)));
        }
        s
    }
}

/// OFPMP_METER_FEATURES reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterFeatures {
    pub max_meter: u32,
    /// Bit `1 << OFPMBT_*` per supported band type.
    pub band_types: u32,
    /// OFPMF_* flags supported.
    pub capabilities: u32,
    pub max_bands: u8,
    pub max_color: u8,
}

impl MeterFeatures {
    fn fmt(&self) -> String {
        let mut bands = Vec::new();
        if self.band_types & 2 != 0 {
            bands.push("drop");
        }
        if self.band_types & 4 != 0 {
            bands.push("dscp_remark");
        }
        let caps: Vec<&str> = [(1, "kbps"), (2, "pktps"), (4, "burst"), (8, "stats")]
            .iter()
            .filter(|(b, _)| self.capabilities & b != 0)
            .map(|(_, n)| *n)
            .collect();
        format!(
            "\nmax_meter:{} max_bands:{} max_color:{}\nband_types: {}\ncapabilities: {}",
            self.max_meter,
            self.max_bands,
            self.max_color,
            bands.join(" "),
            caps.join(" ")
        )
    }
}

/// OFPMP_GROUP_FEATURES reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupFeatures {
    /// Bit `1 << OFPGT_*` per supported group type.
    pub types: u32,
    /// OFPGFC_* bits.
    pub capabilities: u32,
    /// Per group type (all, select, indirect, ff).
    pub max_groups: [u32; 4],
    /// Per group type, bit `1 << OFPAT_*` per supported action.
    pub actions: [u32; 4],
}

impl GroupFeatures {
    fn fmt(&self) -> String {
        // OFPAT_* bit and OVS's name, in the order OVS lists its actions.
        const ACTIONS: &[(u32, &str)] = &[
            (0, "output"),
            (22, "group"),
            (25, "set_field"),
            (18, "strip_vlan"),
            (17, "push_vlan"),
            (23, "mod_nw_ttl"),
            (24, "dec_ttl"),
            (15, "set_mpls_ttl"),
            (16, "dec_mpls_ttl"),
            (19, "push_mpls"),
            (20, "pop_mpls"),
            (21, "set_queue"),
        ];
        const TYPES: [&str; 4] = ["all", "select", "indirect", "fast failover"];
        let mut s =
            format!("\n Group table:\n    Types:  0x{:x}\n    Capabilities:  0x{:x}\n", self.types, self.capabilities);
        for (i, name) in TYPES.iter().enumerate() {
            if self.types & (1 << i) == 0 {
                continue;
            }
            let acts: Vec<&str> =
                ACTIONS.iter().filter(|(bit, _)| self.actions[i] & (1 << bit) != 0).map(|(_, n)| *n).collect();
            s.push_str(&format!(
                "    {} group:\n       max_groups=0x{:x}\n       actions: {}\n",
                name,
                self.max_groups[i],
                if acts.is_empty() { "<none>".to_string() } else { acts.join(" ") }
            ));
        }
        s
    }
}

/// OVS prints a run of tables whose counters equal the previous table's as `ditto`.
fn fmt_tables(v: &[TableStats]) -> String {
    let mut s = String::new();
    let same = |a: &TableStats, b: &TableStats| {
        (a.active_count, a.lookup_count, a.matched_count) == (b.active_count, b.lookup_count, b.matched_count)
    };
    let mut i = 0;
    while i < v.len() {
        let t = &v[i];
        s.push_str(&format!(
            "\n  table {}:\n    active={}, lookup={}, matched={}\n",
            t.table_id, t.active_count, t.lookup_count, t.matched_count
        ));
        let mut j = i + 1;
        while j < v.len() && same(&v[j], t) {
            j += 1;
        }
        match j - (i + 1) {
            0 => {}
            1 => s.push_str(&format!("\n  table {}: ditto\n", v[i + 1].table_id)),
            _ => s.push_str(&format!("\n  tables {}...{}: ditto\n", v[i + 1].table_id, v[j - 1].table_id)),
        }
        i = j;
    }
    s
}

/// What a multipart reply carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartReplyBody {
    /// Boxed: its five fixed-size string fields make it 1 KiB.
    Desc(Box<Desc>),
    Flow(Vec<FlowStats>),
    Aggregate(AggregateStats),
    Table(Vec<TableStats>),
    PortStats(Vec<PortStats>),
    GroupStats(Vec<GroupStats>),
    GroupDesc(Vec<GroupDesc>),
    MeterStats(Vec<MeterStats>),
    MeterConfig(Vec<MeterConfig>),
    PortDesc(Vec<Port>),
    MeterFeatures(MeterFeatures),
    GroupFeatures(GroupFeatures),
    /// Any other type (features, queues, experimenter...), body kept raw.
    Unknown {
        mp_type: u16,
        body: Vec<u8>,
    },
}

/// OFPT_MULTIPART_REPLY: one part; `flags & MULTIPART_MORE` says more parts follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartReply {
    pub flags: u16,
    pub body: MultipartReplyBody,
}

/// Reads fixed-size or self-delimiting entries until `r` is empty.
fn entries<T>(
    r: &mut Reader<'_>,
    f: impl Fn(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut v = Vec::new();
    while !r.is_empty() {
        v.push(f(r)?);
    }
    Ok(v)
}

/// Reads entries that start with their own u16 length.
fn sized_entries<T>(
    r: &mut Reader<'_>,
    len_at: usize,
    f: impl Fn(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut v = Vec::new();
    while !r.is_empty() {
        let len = r.peek_u16(len_at)? as usize;
        if len == 0 {
            return Err(r.error_code(ErrorCode::BAD_REQUEST_BAD_LEN, "entry of length 0"));
        }
        let mut e = r.sub(len)?;
        v.push(f(&mut e)?);
        if !e.is_empty() {
            return Err(e.error_code(ErrorCode::BAD_REQUEST_BAD_LEN, "entry longer than its content"));
        }
    }
    Ok(v)
}

impl MultipartReply {
    pub fn new(body: MultipartReplyBody) -> Self {
        MultipartReply { flags: 0, body }
    }

    /// Appends the entries of a following part (same type) to this one, for reassembling a
    /// reply split with REPLY_MORE; `flags` become the later part's. `Err(next)` when the
    /// parts are of different or single-valued types.
    pub fn absorb(&mut self, next: MultipartReply) -> Result<(), Box<MultipartReply>> {
        use MultipartReplyBody as B;
        match (&mut self.body, next.body) {
            (B::Flow(a), B::Flow(b)) => a.extend(b),
            (B::Table(a), B::Table(b)) => a.extend(b),
            (B::PortStats(a), B::PortStats(b)) => a.extend(b),
            (B::GroupStats(a), B::GroupStats(b)) => a.extend(b),
            (B::GroupDesc(a), B::GroupDesc(b)) => a.extend(b),
            (B::MeterStats(a), B::MeterStats(b)) => a.extend(b),
            (B::MeterConfig(a), B::MeterConfig(b)) => a.extend(b),
            (B::PortDesc(a), B::PortDesc(b)) => a.extend(b),
            (B::Unknown { mp_type: t, body: a }, B::Unknown { mp_type, body: b }) if *t == mp_type => a.extend(b),
            (_, body) => return Err(Box::new(MultipartReply { flags: next.flags, body })),
        }
        self.flags = next.flags;
        Ok(())
    }

    /// Whether more parts of this reply follow.
    pub fn more(&self) -> bool {
        self.flags & MULTIPART_MORE != 0
    }

    pub fn mp_type(&self) -> u16 {
        use MultipartReplyBody as B;
        match &self.body {
            B::Desc(_) => mp_type::DESC,
            B::Flow(_) => mp_type::FLOW,
            B::Aggregate(_) => mp_type::AGGREGATE,
            B::Table(_) => mp_type::TABLE,
            B::PortStats(_) => mp_type::PORT_STATS,
            B::GroupStats(_) => mp_type::GROUP,
            B::GroupDesc(_) => mp_type::GROUP_DESC,
            B::MeterStats(_) => mp_type::METER,
            B::MeterConfig(_) => mp_type::METER_CONFIG,
            B::PortDesc(_) => mp_type::PORT_DESC,
            B::MeterFeatures(_) => mp_type::METER_FEATURES,
            B::GroupFeatures(_) => mp_type::GROUP_FEATURES,
            B::Unknown { mp_type, .. } => *mp_type,
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        use MultipartReplyBody as B;
        let t = r.u16()?;
        let flags = r.u16()?;
        r.skip(4)?;
        let body = match t {
            mp_type::DESC => B::Desc(Box::new(Desc::decode(r)?)),
            mp_type::FLOW => B::Flow(sized_entries(r, 0, FlowStats::decode)?),
            mp_type::AGGREGATE => {
                let a = AggregateStats { packet_count: r.u64()?, byte_count: r.u64()?, flow_count: r.u32()? };
                r.skip(4)?;
                B::Aggregate(a)
            }
            mp_type::TABLE => B::Table(entries(r, |r| {
                let table_id = r.u8()?;
                r.skip(3)?;
                Ok(TableStats { table_id, active_count: r.u32()?, lookup_count: r.u64()?, matched_count: r.u64()? })
            })?),
            mp_type::PORT_STATS => B::PortStats(entries(r, |r| {
                let mut e = r.sub(PortStats::LEN)?;
                PortStats::decode(&mut e)
            })?),
            mp_type::GROUP => B::GroupStats(sized_entries(r, 0, GroupStats::decode)?),
            mp_type::GROUP_DESC => B::GroupDesc(sized_entries(r, 0, GroupDesc::decode)?),
            mp_type::METER => B::MeterStats(sized_entries(r, 4, MeterStats::decode)?),
            mp_type::METER_CONFIG => B::MeterConfig(sized_entries(r, 0, MeterConfig::decode)?),
            mp_type::PORT_DESC => B::PortDesc(entries(r, |r| {
                let mut e = r.sub(Port::LEN)?;
                Port::decode(&mut e)
            })?),
            mp_type::METER_FEATURES => {
                let f = MeterFeatures {
                    max_meter: r.u32()?,
                    band_types: r.u32()?,
                    capabilities: r.u32()?,
                    max_bands: r.u8()?,
                    max_color: r.u8()?,
                };
                r.skip(2)?;
                B::MeterFeatures(f)
            }
            mp_type::GROUP_FEATURES => {
                let mut f =
                    GroupFeatures { types: r.u32()?, capabilities: r.u32()?, max_groups: [0; 4], actions: [0; 4] };
                for v in f.max_groups.iter_mut() {
                    *v = r.u32()?;
                }
                for v in f.actions.iter_mut() {
                    *v = r.u32()?;
                }
                B::GroupFeatures(f)
            }
            other => B::Unknown { mp_type: other, body: r.take_rest().to_vec() },
        };
        if !r.is_empty() {
            return Err(r.error_code(ErrorCode::BAD_REQUEST_BAD_LEN, format!("{} trailing bytes", r.remaining())));
        }
        Ok(MultipartReply { flags, body })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        use MultipartReplyBody as B;
        out.extend_from_slice(&self.mp_type().to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        match &self.body {
            B::Desc(d) => d.encode(out),
            B::Flow(v) => v.iter().for_each(|e| e.encode(out)),
            B::Aggregate(a) => {
                out.extend_from_slice(&a.packet_count.to_be_bytes());
                out.extend_from_slice(&a.byte_count.to_be_bytes());
                out.extend_from_slice(&a.flow_count.to_be_bytes());
                out.extend_from_slice(&[0; 4]);
            }
            B::Table(v) => {
                for t in v {
                    out.push(t.table_id);
                    out.extend_from_slice(&[0; 3]);
                    out.extend_from_slice(&t.active_count.to_be_bytes());
                    out.extend_from_slice(&t.lookup_count.to_be_bytes());
                    out.extend_from_slice(&t.matched_count.to_be_bytes());
                }
            }
            B::PortStats(v) => v.iter().for_each(|e| e.encode(out)),
            B::GroupStats(v) => v.iter().for_each(|e| e.encode(out)),
            B::GroupDesc(v) => v.iter().for_each(|e| e.encode(out)),
            B::MeterStats(v) => v.iter().for_each(|e| e.encode(out)),
            B::MeterConfig(v) => v.iter().for_each(|e| e.encode(out)),
            B::PortDesc(v) => v.iter().for_each(|e| e.encode(out)),
            B::GroupFeatures(f) => {
                out.extend_from_slice(&f.types.to_be_bytes());
                out.extend_from_slice(&f.capabilities.to_be_bytes());
                for v in f.max_groups.iter().chain(f.actions.iter()) {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            B::MeterFeatures(f) => {
                out.extend_from_slice(&f.max_meter.to_be_bytes());
                out.extend_from_slice(&f.band_types.to_be_bytes());
                out.extend_from_slice(&f.capabilities.to_be_bytes());
                out.extend_from_slice(&[f.max_bands, f.max_color, 0, 0]);
            }
            B::Unknown { body, .. } => out.extend_from_slice(body),
        }
    }

    pub fn fmt_body(&self) -> String {
        use MultipartReplyBody as B;
        let mut s = flags_text(self.flags);
        match &self.body {
            B::Desc(d) => s.push_str(&d.fmt()),
            B::Flow(v) => v.iter().for_each(|e| {
                s.push('\n');
                s.push_str(&e.fmt())
            }),
            B::Aggregate(a) => s.push_str(&format!(
                " packet_count={} byte_count={} flow_count={}",
                a.packet_count, a.byte_count, a.flow_count
            )),
            B::Table(v) => s.push_str(&fmt_tables(v)),
            B::MeterFeatures(f) => s.push_str(&f.fmt()),
            B::GroupFeatures(f) => s.push_str(&f.fmt()),
            B::PortStats(v) => {
                s.push_str(&format!(" {} ports\n", v.len()));
                v.iter().for_each(|p| s.push_str(&p.fmt()));
            }
            B::GroupStats(v) => v.iter().for_each(|g| s.push_str(&g.fmt())),
            B::GroupDesc(v) => v.iter().for_each(|g| s.push_str(&g.fmt())),
            B::MeterStats(v) => v.iter().for_each(|m| s.push_str(&m.fmt())),
            B::MeterConfig(v) => v.iter().for_each(|m| s.push_str(&m.fmt())),
            B::PortDesc(v) => {
                // OVS prints ports sorted by their (16-bit) number, LOCAL last.
                let mut sorted: Vec<&Port> = v.iter().collect();
                sorted.sort_by_key(|p| if p.port_no >= 0xffff_ff00 { p.port_no - 0xffff_0000 } else { p.port_no });
                s.push('\n');
                sorted.iter().for_each(|p| s.push_str(&p.fmt()));
            }
            B::Unknown { mp_type: mp_type::QUEUE, body } => s.push_str(&fmt_queue_stats(body)),
            B::Unknown { .. } => {}
        }
        s
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// `OFPQ_ALL` prints as `ALL` (OVS `ofp_print_queue_name`).
fn queue_text(q: u32) -> String {
    if q == 0xffff_ffff {
        "ALL".into()
    } else {
        q.to_string()
    }
}

/// OFPMP_QUEUE reply entries (40 bytes each), as OVS's `ofp_print_ofpst_queue_reply`.
fn fmt_queue_stats(body: &[u8]) -> String {
    let stat = |name: &str, v: u64| if v == u64::MAX { format!("{name}?, ") } else { format!("{name}{v}, ") };
    let entries: Vec<&[u8]> = body.chunks_exact(40).collect();
    let mut s = format!(" {} queues\n", entries.len());
    for e in entries {
        s.push_str(&format!("  port {} queue {}: ", port_text(be32(&e[0..4])), queue_text(be32(&e[4..8]))));
        s.push_str(&stat("bytes=", be64(&e[8..16])));
        s.push_str(&stat("pkts=", be64(&e[16..24])));
        s.push_str(&stat("errors=", be64(&e[24..32])));
        let (sec, nsec) = (be32(&e[32..36]), be32(&e[36..40]));
        let d = if sec == u32::MAX { "?".to_string() } else { duration_text(sec, nsec) };
        s.push_str(&format!("duration={d}\n"));
    }
    s
}

/// ONFST_FLOW_MONITOR requests (after the ONF vendor header), as OVS's
/// `ofputil_decode_flow_monitor_request` reads them and `ofputil_flow_monitor_request_format`
/// prints them; what OVS cannot read ends the text with its decode error and the hex dump of
/// `whole`.
pub fn onf_flow_monitor_request_text(data: &[u8], whole: &[u8]) -> String {
    // ONFFMF_* bit -> the name OVS prints for the OpenFlow 1.4 flag it maps to.
    const FLAGS: [(u16, &str); 6] =
        [(1, "initial"), (2, "add"), (4, "delete"), (8, "modify"), (16, "actions"), (32, "own")];
    let mut s = String::new();
    let mut rest = data;
    let error = loop {
        if rest.is_empty() {
            break None;
        }
        if rest.len() < 16 {
            break Some(ErrorCode::BAD_REQUEST_BAD_LEN);
        }
        let (id, flags, out_port, table) =
            (be32(&rest[0..4]), u16::from_be_bytes([rest[4], rest[5]]), be32(&rest[8..12]), rest[12]);
        if flags & (2 | 4 | 8) == 0 || flags & !0x3f != 0 {
            break Some(ErrorCode::FLOW_MONITOR_FAILED_BAD_FLAGS);
        }
        if rest[13..16] != [0, 0, 0] {
            break Some(ErrorCode::NX_BAD_REQUEST_MUST_BE_ZERO);
        }
        if (0xff00..0xffff_ff00).contains(&out_port) {
            break Some(ErrorCode::BAD_ACTION_BAD_OUT_PORT);
        }
        let mut r = Reader::new(&rest[16..], "ofp_match", ErrorCode::BAD_MATCH_BAD_LEN);
        let m = match Match::decode(&mut r) {
            Ok(m) => m,
            Err(e) => break Some(e.code),
        };
        let names: Vec<&str> = FLAGS.iter().filter(|(b, _)| flags & b != 0).map(|(_, n)| *n).collect();
        s.push_str(&format!("\n id={id} flags={}", names.join(",")));
        if out_port != 0xffff_ffff {
            s.push_str(&format!(" out_port={}", port_text(out_port)));
        }
        if table != 0xff {
            s.push_str(&format!(" table={table}"));
        }
        s.push(' ');
        s.push_str(&m.to_string());
        s.truncate(s.trim_end_matches(' ').len());
        rest = r.rest();
    };
    if let Some(code) = error {
        if !s.is_empty() {
            s.push('\n');
        } else {
            s.push(' ');
        }
        s.push_str(&format!("***decode error: {code}***\n{}", super::text::hex_dump(whole)));
    }
    s
}

/// ONFST_FLOW_MONITOR reply updates (after the ONF vendor header), as OVS's
/// `ofputil_decode_flow_update` reads them and `ofputil_flow_update_format` prints them; what OVS
/// cannot read ends the text with its decode error and the hex dump of `whole`.
pub fn onf_flow_monitor_reply_text(data: &[u8], whole: &[u8]) -> String {
    let be16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let mut s = String::new();
    let mut rest = data;
    let error = loop {
        if rest.is_empty() {
            break None;
        }
        if rest.len() < 4 {
            break Some(ErrorCode::BAD_REQUEST_BAD_LEN);
        }
        let (length, event) = (be16(rest, 0) as usize, be16(rest, 2));
        if length > rest.len() || length % 8 != 0 {
            break Some(ErrorCode::BAD_REQUEST_BAD_LEN);
        }
        match event {
            // NXFME_ABBREV
            3 => {
                if length != 8 {
                    break Some(ErrorCode::BAD_REQUEST_BAD_LEN);
                }
                s.push_str(&format!("\n event=ABBREV xid={:#x}", be32(&rest[4..8])));
            }
            // NXFME_ADDED, DELETED, MODIFIED: nx_flow_update_full (24 bytes), match, instructions.
            0..=2 => {
                if length < 24 {
                    break Some(ErrorCode::BAD_REQUEST_BAD_LEN);
                }
                let match_len = be16(rest, 12) as usize;
                if 24 + match_len > length {
                    break Some(ErrorCode::BAD_REQUEST_BAD_LEN);
                }
                let (reason, idle, hard, table) = (be16(rest, 4), be16(rest, 8), be16(rest, 10), rest[14]);
                let cookie = be64(&rest[16..24]);
                let mut r = Reader::new(&rest[24..length], "ofp_match", ErrorCode::BAD_MATCH_BAD_LEN);
                let m = match Match::decode(&mut r) {
                    Ok(m) => m,
                    Err(e) => break Some(e.code),
                };
                let mut ir = Reader::new(r.rest(), "ofp_instruction", ErrorCode::BAD_INSTRUCTION_BAD_LEN);
                let instructions = match Instruction::decode_list(&mut ir) {
                    Ok(i) => i,
                    Err(e) => break Some(e.code),
                };
                s.push_str("\n event=");
                s.push_str(match event {
                    0 => "ADDED",
                    1 => "DELETED",
                    _ => "MODIFIED",
                });
                if event == 1 {
                    s.push_str(&format!(" reason={}", removed_reason_text(reason)));
                }
                s.push_str(&format!(" table={table}"));
                if idle != 0 {
                    s.push_str(&format!(" idle_timeout={idle}"));
                }
                if hard != 0 {
                    s.push_str(&format!(" hard_timeout={hard}"));
                }
                s.push_str(&format!(" cookie={cookie:#x} {m}"));
                let actions = format_instructions(&instructions);
                if !instructions.is_empty() {
                    if !s.ends_with(' ') {
                        s.push(' ');
                    }
                    s.push_str("actions=");
                    s.push_str(&actions);
                }
            }
            _ => break Some(ErrorCode::NX_BAD_REQUEST_FM_BAD_EVENT),
        }
        rest = &rest[length..];
    };
    if let Some(code) = error {
        s.truncate(s.trim_end_matches(' ').len());
        s.push(if s.is_empty() { ' ' } else { '\n' });
        s.push_str(&format!("***decode error: {code}***\n{}", super::text::hex_dump(whole)));
    }
    s
}

/// OVS's `ofp_flow_removed_reason_to_string`.
fn removed_reason_text(reason: u16) -> String {
    match reason {
        0 => "idle".into(),
        1 => "hard".into(),
        2 => "delete".into(),
        3 => "group_delete".into(),
        4 => "meter_delete".into(),
        5 => "eviction".into(),
        n => n.to_string(),
    }
}
