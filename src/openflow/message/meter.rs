//! Meters: METER_MOD and the meter configurations and statistics of the multipart replies.

use super::text::{duration_text, mod_command_text};
use crate::openflow::error::ErrorCode;
use crate::openflow::wire::{patch_u16, Reader};
use crate::openflow::DecodeError;

/// `OFPMF_*` meter flags.
pub const METER_KBPS: u16 = 1;
pub const METER_PKTPS: u16 = 2;
pub const METER_BURST: u16 = 4;
pub const METER_STATS: u16 = 8;

/// `OFPMC_*`.
pub mod meter_command {
    pub const ADD: u16 = 0;
    pub const MODIFY: u16 = 1;
    pub const DELETE: u16 = 2;
}

/// OFPM_ALL in requests and deletes.
pub const METER_ALL: u32 = 0xffff_ffff;

/// One meter band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterBand {
    Drop {
        rate: u32,
        burst_size: u32,
    },
    DscpRemark {
        rate: u32,
        burst_size: u32,
        prec_level: u8,
    },
    /// Experimenter or unknown band types, body after rate/burst kept raw.
    Unknown {
        band_type: u16,
        rate: u32,
        burst_size: u32,
        data: Vec<u8>,
    },
}

impl MeterBand {
    /// As OVS's `ofputil_pull_bands`: every band is 16 bytes (OFPBRC_BAD_LEN otherwise) and of
    /// type drop or dscp_remark (OFPMMFC_BAD_BAND otherwise); OVS refuses the whole message.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.remaining() < 16 {
            return Err(
                r.error_code(ErrorCode::BAD_REQUEST_BAD_LEN, format!("{} bytes left for a band", r.remaining()))
            );
        }
        let band_type = r.u16()?;
        let len = r.u16()? as usize;
        if len != 16 {
            return Err(r.error_code(ErrorCode::BAD_REQUEST_BAD_LEN, format!("band length {len}, not 16")));
        }
        let rate = r.u32()?;
        let burst_size = r.u32()?;
        let mut body = r.sub(4)?;
        match band_type {
            1 => Ok(MeterBand::Drop { rate, burst_size }),
            2 => Ok(MeterBand::DscpRemark { rate, burst_size, prec_level: body.u8()? }),
            t => Err(r.error_code(ErrorCode::METER_MOD_FAILED_BAD_BAND, format!("band type {t}"))),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let (t, rate, burst) = match self {
            MeterBand::Drop { rate, burst_size } => (1u16, rate, burst_size),
            MeterBand::DscpRemark { rate, burst_size, .. } => (2, rate, burst_size),
            MeterBand::Unknown { band_type, rate, burst_size, .. } => (*band_type, rate, burst_size),
        };
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&rate.to_be_bytes());
        out.extend_from_slice(&burst.to_be_bytes());
        match self {
            MeterBand::Drop { .. } => out.extend_from_slice(&[0; 4]),
            MeterBand::DscpRemark { prec_level, .. } => out.extend_from_slice(&[*prec_level, 0, 0, 0]),
            MeterBand::Unknown { data, .. } => out.extend_from_slice(data),
        }
        let len = (out.len() - start) as u16;
        patch_u16(out, start + 2, len);
    }

    fn fmt(&self, flags: u16) -> String {
        let (name, rate, burst) = match self {
            MeterBand::Drop { rate, burst_size } => ("drop".to_string(), rate, burst_size),
            MeterBand::DscpRemark { rate, burst_size, .. } => ("dscp_remark".to_string(), rate, burst_size),
            MeterBand::Unknown { band_type, rate, burst_size, .. } => (band_type.to_string(), rate, burst_size),
        };
        let mut s = format!("\ntype={name} rate={rate}");
        if flags & METER_BURST != 0 {
            s.push_str(&format!(" burst_size={burst}"));
        }
        if let MeterBand::DscpRemark { prec_level, .. } = self {
            s.push_str(&format!(" prec_level={prec_level}"));
        }
        s
    }
}

fn decode_bands(r: &mut Reader<'_>) -> Result<Vec<MeterBand>, DecodeError> {
    let mut v = Vec::new();
    while !r.is_empty() {
        v.push(MeterBand::decode(r)?);
    }
    Ok(v)
}

fn meter_id_text(id: u32) -> String {
    match id {
        0xffff_ffff => "all".into(),
        0xffff_fffe => "controller".into(),
        0xffff_fffd => "slowpath".into(),
        n => n.to_string(),
    }
}

/// `meter=1 kbps burst bands=` + bands, OVS's `ofputil_format_meter_config`.
fn fmt_config(meter_id: u32, flags: u16, bands: &[MeterBand]) -> String {
    let mut s = format!("meter={}", meter_id_text(meter_id));
    for (bit, name) in [(METER_KBPS, "kbps"), (METER_PKTPS, "pktps"), (METER_BURST, "burst"), (METER_STATS, "stats")] {
        if flags & bit != 0 {
            s.push(' ');
            s.push_str(name);
        }
    }
    s.push_str(" bands=");
    for b in bands {
        s.push_str(&b.fmt(flags));
    }
    s
}

/// OFPT_METER_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterMod {
    pub command: u16,
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

impl MeterMod {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let command = r.u16()?;
        let flags = r.u16()?;
        let meter_id = r.u32()?;
        // As OVS's `ofputil_decode_meter_mod`.
        if command > meter_command::DELETE {
            return Err(r.error_code(ErrorCode::METER_MOD_FAILED_BAD_COMMAND, format!("command {command}")));
        }
        if command != meter_command::DELETE && flags & METER_KBPS != 0 && flags & METER_PKTPS != 0 {
            return Err(r.error_code(ErrorCode::METER_MOD_FAILED_BAD_FLAGS, "both kbps and pktps"));
        }
        let mut br = r.context("ofp_meter_band", ErrorCode::METER_MOD_FAILED_BAD_BAND);
        let bands = decode_bands(&mut br)?;
        *r = br.context(r.what(), r.code());
        Ok(MeterMod { command, flags, meter_id, bands })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.command.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.meter_id.to_be_bytes());
        for b in &self.bands {
            b.encode(out);
        }
    }

    pub fn fmt_body(&self) -> String {
        let cmd = mod_command_text(self.command);
        format!(" {} {}", cmd, fmt_config(self.meter_id, self.flags, &self.bands))
    }
}

/// One `ofp_meter_config` of an OFPMP_METER_CONFIG reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterConfig {
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

impl MeterConfig {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.u16()? as usize;
        if len < 8 {
            return Err(r.error(format!("meter config length {len}")));
        }
        let flags = r.u16()?;
        let meter_id = r.u32()?;
        let mut br = r.sub(len - 8)?;
        Ok(MeterConfig { flags, meter_id, bands: decode_bands(&mut br)? })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.meter_id.to_be_bytes());
        for b in &self.bands {
            b.encode(out);
        }
        let len = (out.len() - start) as u16;
        patch_u16(out, start, len);
    }

    pub fn fmt(&self) -> String {
        format!("\n{}\n", fmt_config(self.meter_id, self.flags, &self.bands))
    }
}

/// One `ofp_meter_stats` of an OFPMP_METER reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterStats {
    pub meter_id: u32,
    pub flow_count: u32,
    pub packet_in_count: u64,
    pub byte_in_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    /// (packet_band_count, byte_band_count) per band.
    pub band_stats: Vec<(u64, u64)>,
}

impl MeterStats {
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let meter_id = r.u32()?;
        let len = r.u16()? as usize;
        if len < 40 || (len - 40) % 16 != 0 {
            return Err(r.error(format!("meter stats length {len}")));
        }
        r.skip(6)?;
        let mut m = MeterStats {
            meter_id,
            flow_count: r.u32()?,
            packet_in_count: r.u64()?,
            byte_in_count: r.u64()?,
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
            band_stats: Vec::new(),
        };
        for _ in 0..(len - 40) / 16 {
            m.band_stats.push((r.u64()?, r.u64()?));
        }
        Ok(m)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.meter_id.to_be_bytes());
        out.extend_from_slice(&((40 + 16 * self.band_stats.len()) as u16).to_be_bytes());
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&self.flow_count.to_be_bytes());
        out.extend_from_slice(&self.packet_in_count.to_be_bytes());
        out.extend_from_slice(&self.byte_in_count.to_be_bytes());
        out.extend_from_slice(&self.duration_sec.to_be_bytes());
        out.extend_from_slice(&self.duration_nsec.to_be_bytes());
        for (p, b) in &self.band_stats {
            out.extend_from_slice(&p.to_be_bytes());
            out.extend_from_slice(&b.to_be_bytes());
        }
    }

    pub fn fmt(&self) -> String {
        let mut s = format!(
            "\nmeter:{} flow_count:{} packet_in_count:{} byte_in_count:{} duration:{} bands:",
            meter_id_text(self.meter_id),
            self.flow_count,
            self.packet_in_count,
            self.byte_in_count,
            duration_text(self.duration_sec, self.duration_nsec)
        );
        for (i, (p, b)) in self.band_stats.iter().enumerate() {
            s.push_str(&format!("\n{i}: packet_count:{p} byte_count:{b}"));
        }
        s.push('\n');
        s
    }
}
