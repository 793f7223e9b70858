//! Actions as bytes: [`Action::decode_list`] / [`Action::encode_list`] and the per-action
//! layouts (standard OFPAT_* and Nicira NXAST_*), with OVS's length and value checks.

use super::value;
use super::*;

// === helpers for writing ===

/// Starts a Nicira action: writes the 10-byte header with a length placeholder; returns where the
/// action starts, for [`nx_finish`].
pub(crate) fn nx_start(out: &mut Vec<u8>, subtype: u16) -> usize {
    let start = out.len();
    out.extend_from_slice(&OFPAT_EXPERIMENTER.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&NX_VENDOR_ID.to_be_bytes());
    out.extend_from_slice(&subtype.to_be_bytes());
    start
}

/// Pads an action to a multiple of 8 and writes its length. Ends what [`nx_start`] or
/// [`std_start`] began.
pub(crate) fn nx_finish(out: &mut Vec<u8>, start: usize) {
    pad_to_8(out, start);
    let len = (out.len() - start) as u16;
    patch_u16(out, start + 2, len);
}

/// Starts a standard action (type and a length placeholder).
fn std_start(out: &mut Vec<u8>, atype: u16) -> usize {
    let start = out.len();
    out.extend_from_slice(&atype.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    start
}

/// A standard 8-byte action whose body is `body` padded with zeros.
fn std_short(out: &mut Vec<u8>, atype: u16, body: &[u8]) {
    let start = std_start(out, atype);
    out.extend_from_slice(body);
    nx_finish(out, start);
}

/// An NX action with nothing but padding after the header (16 bytes).
fn nx_empty(out: &mut Vec<u8>, subtype: u16) {
    let start = nx_start(out, subtype);
    nx_finish(out, start);
}

fn bad_len(r: &Reader<'_>, detail: impl Into<String>) -> DecodeError {
    r.error_code(ErrorCode::BAD_ACTION_BAD_LEN, detail)
}

fn must_be_zero(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    if r.take_rest().iter().any(|b| *b != 0) {
        return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, "nonzero padding"));
    }
    Ok(())
}

// === impl Action: wire ===

impl Action {
    /// Reads every action in `r` (all of its bytes). Each action's length is checked: at least 8,
    /// a multiple of 8, inside the buffer and exactly the size of a fixed-size action
    /// (`OFPBAC_BAD_LEN` otherwise, as OVS answers).
    pub fn decode_list(r: &mut Reader<'_>) -> Result<Vec<Action>, DecodeError> {
        let mut out = Vec::new();
        while !r.is_empty() {
            if r.remaining() < 8 {
                return Err(bad_len(r, format!("{} trailing bytes", r.remaining())));
            }
            let len = r.peek_u16(2)? as usize;
            if len < 8 || len % 8 != 0 || len > r.remaining() {
                return Err(bad_len(r, format!("action length {len} with {} bytes left", r.remaining())));
            }
            let bytes = r.bytes(len)?;
            out.push(Action::decode(bytes)?);
        }
        Ok(out)
    }

    /// Decodes one action from exactly its bytes (its length field must equal `bytes.len()`).
    pub fn decode(bytes: &[u8]) -> Result<Action, DecodeError> {
        let mut r = Reader::new(bytes, "ofp_action", ErrorCode::BAD_ACTION_BAD_LEN);
        let atype = r.u16()?;
        let len = r.u16()? as usize;
        if len != bytes.len() || len < 8 || len % 8 != 0 {
            return Err(bad_len(&r, format!("action length {len} for {} bytes", bytes.len())));
        }
        let fixed = |r: &Reader<'_>, want: usize| -> Result<(), DecodeError> {
            if len != want {
                Err(bad_len(r, format!("action type {atype} length {len}, expected {want}")))
            } else {
                Ok(())
            }
        };
        let a = match atype {
            OFPAT_OUTPUT => {
                fixed(&r, 16)?;
                let port = r.u32()?;
                let max_len = r.u16()?;
                let p16 = port::port_from_ofp11(port, "OFPAT_OUTPUT")?;
                if !port::is_valid_output(p16) {
                    return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_OUT_PORT, format!("output to port {port:#x}")));
                }
                Action::Output { port, max_len }
            }
            OFPAT_GROUP => {
                fixed(&r, 8)?;
                Action::Group(r.u32()?)
            }
            OFPAT_SET_QUEUE => {
                fixed(&r, 8)?;
                Action::SetQueue(r.u32()?)
            }
            OFPAT_PUSH_VLAN | OFPAT_PUSH_MPLS | OFPAT_POP_MPLS => {
                fixed(&r, 8)?;
                let ethertype = r.u16()?;
                // OVS accepts only VLAN ethertypes for push_vlan and MPLS ones for push_mpls.
                let ok = match atype {
                    OFPAT_PUSH_VLAN => matches!(ethertype, 0x8100 | 0x88a8),
                    OFPAT_PUSH_MPLS => matches!(ethertype, 0x8847 | 0x8848),
                    _ => true,
                };
                if !ok {
                    return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, format!("ethertype {ethertype:#06x}")));
                }
                match atype {
                    OFPAT_PUSH_VLAN => Action::PushVlan(ethertype),
                    OFPAT_PUSH_MPLS => Action::PushMpls(ethertype),
                    _ => Action::PopMpls(ethertype),
                }
            }
            OFPAT_SET_NW_TTL => {
                fixed(&r, 8)?;
                Action::SetNwTtl(r.u8()?)
            }
            OFPAT_SET_MPLS_TTL => {
                fixed(&r, 8)?;
                Action::SetMplsTtl(r.u8()?)
            }
            OFPAT_POP_VLAN | OFPAT_DEC_NW_TTL | OFPAT_DEC_MPLS_TTL | OFPAT_COPY_TTL_IN | OFPAT_COPY_TTL_OUT => {
                fixed(&r, 8)?;
                match atype {
                    OFPAT_POP_VLAN => Action::PopVlan,
                    OFPAT_DEC_NW_TTL => Action::DecTtl,
                    OFPAT_DEC_MPLS_TTL => Action::DecMplsTtl,
                    OFPAT_COPY_TTL_IN => Action::CopyTtlIn,
                    _ => Action::CopyTtlOut,
                }
            }
            OFPAT_SET_FIELD => Self::decode_set_field(&mut r)?,
            OFPAT_EXPERIMENTER => {
                let vendor = r.u32()?;
                if vendor != NX_VENDOR_ID {
                    return Ok(Action::Unknown { bytes: bytes.to_vec() });
                }
                if len < 16 {
                    return Err(bad_len(&r, format!("Nicira action length {len}")));
                }
                let subtype = r.u16()?;
                match Self::decode_nx(subtype, len, &mut r)? {
                    Some(a) => a,
                    None => Action::Unknown { bytes: bytes.to_vec() },
                }
            }
            _ => Action::Unknown { bytes: bytes.to_vec() },
        };
        Ok(a)
    }

    fn decode_set_field(r: &mut Reader<'_>) -> Result<Action, DecodeError> {
        let mut r = r.context("OFPAT_SET_FIELD", ErrorCode::BAD_ACTION_BAD_SET_LEN);
        // As OVS's `nx_pull_entry__` for an action: an unknown field is OFPBAC_BAD_SET_TYPE, a
        // known one with the wrong length OFPBAC_BAD_SET_LEN; the other errors stay as they are.
        let h = value::read_header(&mut r).map_err(|e| {
            let code = match e.code {
                ErrorCode::BAD_MATCH_BAD_FIELD => ErrorCode::BAD_ACTION_BAD_SET_TYPE,
                ErrorCode::BAD_MATCH_BAD_LEN if e.detail.contains("header length") => ErrorCode::BAD_ACTION_BAD_SET_LEN,
                other => other,
            };
            DecodeError { code, ..e }
        })?;
        if h.masked {
            return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_SET_ARGUMENT, "masked set_field in OpenFlow 1.3"));
        }
        if !h.field.def().writable {
            return Err(
                r.error_code(ErrorCode::BAD_ACTION_BAD_SET_ARGUMENT, format!("{} is not writable", h.field.name()))
            );
        }
        let value = Value::new(r.bytes(h.len)?).ok_or_else(|| r.error("value too long"))?;
        if r.take_rest().iter().any(|b| *b != 0) {
            return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_SET_ARGUMENT, "nonzero padding"));
        }
        // OVS's value checks: meaningful bits only, and an OXM vlan_vid carries OFPVID_PRESENT.
        let present_missing = h.field == Field::VLAN_VID && value.to_u128() & 0x1000 == 0;
        if text::check_value(h.field, &value).is_err() || present_missing {
            return Err(
                r.error_code(ErrorCode::BAD_ACTION_BAD_SET_ARGUMENT, format!("bad value for {}", h.field.name()))
            );
        }
        Ok(Action::SetField { field: h.field, value })
    }

    /// A Nicira action; `r` is positioned after the 10-byte header. `None`: unknown subtype.
    fn decode_nx(subtype: u16, len: usize, r: &mut Reader<'_>) -> Result<Option<Action>, DecodeError> {
        let fixed = |r: &Reader<'_>, want: usize| -> Result<(), DecodeError> {
            if len != want {
                Err(bad_len(r, format!("NXAST subtype {subtype} length {len}, expected {want}")))
            } else {
                Ok(())
            }
        };
        let a = match subtype {
            NXAST_RESUBMIT | NXAST_RESUBMIT_TABLE | NXAST_RESUBMIT_TABLE_CT => {
                fixed(r, 16)?;
                let in_port = r.u16()?;
                let table = r.u8()?;
                if subtype == NXAST_RESUBMIT {
                    Action::Resubmit { in_port, table: 255, ct: false, legacy: true }
                } else {
                    let pad = r.bytes(3)?;
                    if pad.iter().any(|b| *b != 0) {
                        return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, "nonzero padding"));
                    }
                    Action::Resubmit { in_port, table, ct: subtype == NXAST_RESUBMIT_TABLE_CT, legacy: false }
                }
            }
            NXAST_REG_LOAD => {
                fixed(r, 24)?;
                let ofs_nbits = r.u16()?;
                let hdr = value::read_header(r)?;
                let dst = value::subfield_from(hdr.field, ofs_nbits, r)?;
                let v = r.u64()?;
                if dst.n_bits < 64 && v >> dst.n_bits != 0 {
                    return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, "value wider than destination"));
                }
                Action::RegLoad { dst, value: v }
            }
            NXAST_REG_LOAD2 => {
                // The OXM entry starts right after the subtype, over the usual 6 pad bytes.
                let h = value::read_header(r)?;
                let n = h.field.bytes();
                let v = Value::new(r.bytes(n)?).ok_or_else(|| r.error("value too long"))?;
                let mask = if h.masked {
                    Some(Value::new(r.bytes(n)?).ok_or_else(|| r.error("mask too long"))?)
                } else {
                    None
                };
                if r.take_rest().iter().any(|b| *b != 0) {
                    return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_SET_ARGUMENT, "nonzero padding"));
                }
                if !h.field.def().writable {
                    return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_SET_ARGUMENT, "field not writable"));
                }
                Action::RegLoad2 { field: h.field, value: v, mask }
            }
            NXAST_REG_MOVE => {
                if len < 24 {
                    return Err(bad_len(r, "NXAST_REG_MOVE shorter than 24"));
                }
                let n_bits = r.u16()?;
                let src_ofs = r.u16()?;
                let dst_ofs = r.u16()?;
                let sh = value::read_header(r)?;
                let dh = value::read_header(r)?;
                must_be_zero(r)?;
                let src = value::check_subfield(Subfield { field: sh.field, ofs: src_ofs, n_bits }, r)?;
                let dst = value::check_subfield(Subfield { field: dh.field, ofs: dst_ofs, n_bits }, r)?;
                Action::RegMove { src, dst }
            }
            NXAST_NOTE => Action::Note(r.take_rest().to_vec()),
            NXAST_OUTPUT_REG => {
                fixed(r, 24)?;
                let ofs_nbits = r.u16()?;
                let hdr = value::read_header(r)?;
                let src = value::subfield_from(hdr.field, ofs_nbits, r)?;
                let max_len = r.u16()?;
                must_be_zero(r)?;
                Action::OutputReg { src, max_len, reg2: false }
            }
            NXAST_OUTPUT_REG2 => {
                if len < 24 {
                    return Err(bad_len(r, "NXAST_OUTPUT_REG2 shorter than 24"));
                }
                let ofs_nbits = r.u16()?;
                let max_len = r.u16()?;
                let hdr = value::read_header(r)?;
                let src = value::subfield_from(hdr.field, ofs_nbits, r)?;
                must_be_zero(r)?;
                Action::OutputReg { src, max_len, reg2: true }
            }
            NXAST_OUTPUT_TRUNC => {
                fixed(r, 16)?;
                let port = r.u16()?;
                let max_len = r.u32()?;
                Action::OutputTrunc { port, max_len }
            }
            NXAST_POP_QUEUE | NXAST_EXIT | NXAST_CT_CLEAR => {
                // OVS ignores the padding of these (and so re-encodes it as zeros).
                fixed(r, 16)?;
                match subtype {
                    NXAST_POP_QUEUE => Action::PopQueue,
                    NXAST_EXIT => Action::Exit,
                    _ => Action::CtClear,
                }
            }
            NXAST_FIN_TIMEOUT => {
                fixed(r, 16)?;
                let idle_timeout = r.u16()?;
                let hard_timeout = r.u16()?;
                Action::FinTimeout { idle_timeout, hard_timeout }
            }
            NXAST_CONTROLLER => {
                fixed(r, 16)?;
                Action::Controller(Controller::decode_v1(r)?)
            }
            NXAST_CONTROLLER2 => Action::Controller(Controller::decode_v2(r)?),
            NXAST_DEC_TTL_CNT_IDS => {
                let n = r.u16()? as usize;
                let zeros = r.bytes(4)?;
                if zeros.iter().any(|b| *b != 0) {
                    return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, "nonzero padding"));
                }
                if r.remaining() < n * 2 {
                    return Err(bad_len(r, format!("room for {} controller ids, {n} claimed", r.remaining() / 2)));
                }
                let ids = (0..n).map(|_| r.u16()).collect::<Result<Vec<_>, _>>()?;
                must_be_zero(r)?;
                Action::DecTtlCntIds(ids)
            }
            NXAST_CLONE => {
                // OVS ignores the padding (and so re-encodes it as zeros).
                r.skip(6)?;
                Action::Clone(Action::decode_list(r)?)
            }
            NXAST_STACK_PUSH | NXAST_STACK_POP => {
                fixed(r, 24)?;
                let ofs = r.u16()?;
                let h = value::read_header(r)?;
                let n_bits = r.u16()?;
                must_be_zero(r)?;
                let sf = value::check_subfield(Subfield { field: h.field, ofs, n_bits }, r)?;
                if subtype == NXAST_STACK_PUSH {
                    Action::StackPush(sf)
                } else {
                    Action::StackPop(sf)
                }
            }
            NXAST_SAMPLE | NXAST_SAMPLE2 | NXAST_SAMPLE3 => {
                fixed(r, if subtype == NXAST_SAMPLE { 24 } else { 32 })?;
                let probability = r.u16()?;
                let collector_set_id = r.u32()?;
                let obs_domain_id = r.u32()?;
                let obs_point_id = r.u32()?;
                let (sampling_port, direction) = if subtype == NXAST_SAMPLE {
                    (port::OFPP_NONE, 0)
                } else {
                    let p = r.u16()?;
                    let d = if subtype == NXAST_SAMPLE3 { r.u8()? } else { 0 };
                    (p, d)
                };
                // OVS ignores the trailing padding of SAMPLE2/3 (re-encoded as zeros).
                if probability == 0 || direction > 2 {
                    return Err(r.error_code(ErrorCode::BAD_ACTION_BAD_ARGUMENT, "bad sample probability or direction"));
                }
                Action::Sample(Sample {
                    probability,
                    collector_set_id,
                    obs_domain_id,
                    obs_point_id,
                    sampling_port,
                    direction,
                    subtype,
                })
            }
            NXAST_CHECK_PKT_LARGER => {
                fixed(r, 24)?;
                let pkt_len = r.u16()?;
                let ofs = r.u16()?;
                let h = value::read_header(r)?;
                must_be_zero(r)?;
                let dst = value::check_subfield(Subfield { field: h.field, ofs, n_bits: 1 }, r)?;
                Action::CheckPktLarger { pkt_len, dst }
            }
            NXAST_CT => Action::Ct(ct::Ct::decode(r)?),
            NXAST_NAT => Action::Nat(ct::Nat::decode(r)?),
            NXAST_LEARN | NXAST_LEARN2 => Action::Learn(learn::Learn::decode_subtype(subtype, r)?),
            NXAST_MULTIPATH => Action::Multipath(multipath::Multipath::decode(subtype, r)?),
            NXAST_BUNDLE | NXAST_BUNDLE_LOAD => Action::Bundle(bundle::Bundle::decode(subtype, r)?),
            NXAST_CONJUNCTION => Action::Conjunction(conjunction::Conjunction::decode(subtype, r)?),
            _ => return Ok(None),
        };
        Ok(Some(a))
    }

    /// Writes every action, each padded to 8 bytes.
    pub fn encode_list(actions: &[Action], out: &mut Vec<u8>) {
        for a in actions {
            a.encode(out);
        }
    }

    /// Writes one action, header and padding included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Action::Output { port, max_len } => {
                let start = std_start(out, OFPAT_OUTPUT);
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(&max_len.to_be_bytes());
                out.extend_from_slice(&[0; 6]);
                nx_finish(out, start);
            }
            Action::OutputTrunc { port, max_len } => {
                let start = nx_start(out, NXAST_OUTPUT_TRUNC);
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(&max_len.to_be_bytes());
                nx_finish(out, start);
            }
            Action::OutputReg { src, max_len, reg2 } => {
                if *reg2 || !value::fits_nxm_slot(src.field) {
                    let start = nx_start(out, NXAST_OUTPUT_REG2);
                    out.extend_from_slice(&value::ofs_nbits(src).to_be_bytes());
                    out.extend_from_slice(&max_len.to_be_bytes());
                    value::put_nx_header(src.field, out);
                    out.resize(out.len().max(start + 24), 0);
                    nx_finish(out, start);
                } else {
                    let start = nx_start(out, NXAST_OUTPUT_REG);
                    out.extend_from_slice(&value::ofs_nbits(src).to_be_bytes());
                    value::put_nx_header(src.field, out);
                    out.extend_from_slice(&max_len.to_be_bytes());
                    out.extend_from_slice(&[0; 6]);
                    nx_finish(out, start);
                }
            }
            Action::Group(g) => std_short(out, OFPAT_GROUP, &g.to_be_bytes()),
            Action::SetField { field, value } => {
                let start = std_start(out, OFPAT_SET_FIELD);
                field.def().header13().put(out, value.len() as u8, false);
                out.extend_from_slice(value.as_bytes());
                nx_finish(out, start);
            }
            Action::RegLoad { dst, value } => {
                let start = nx_start(out, NXAST_REG_LOAD);
                out.extend_from_slice(&value::ofs_nbits(dst).to_be_bytes());
                value::put_nx_header(dst.field, out);
                out.extend_from_slice(&value.to_be_bytes());
                nx_finish(out, start);
            }
            Action::RegLoad2 { field, value, mask } => {
                let start = nx_start(out, NXAST_REG_LOAD2);
                value::nx_header(*field).put(out, value.len() as u8, mask.is_some());
                out.extend_from_slice(value.as_bytes());
                if let Some(m) = mask {
                    out.extend_from_slice(m.as_bytes());
                }
                nx_finish(out, start);
            }
            Action::RegMove { src, dst } => {
                let start = nx_start(out, NXAST_REG_MOVE);
                out.extend_from_slice(&src.n_bits.to_be_bytes());
                out.extend_from_slice(&src.ofs.to_be_bytes());
                out.extend_from_slice(&dst.ofs.to_be_bytes());
                value::put_nx_header(src.field, out);
                value::put_nx_header(dst.field, out);
                nx_finish(out, start);
            }
            Action::PushVlan(e) => std_short(out, OFPAT_PUSH_VLAN, &e.to_be_bytes()),
            Action::PopVlan => std_short(out, OFPAT_POP_VLAN, &[]),
            Action::PushMpls(e) => std_short(out, OFPAT_PUSH_MPLS, &e.to_be_bytes()),
            Action::PopMpls(e) => std_short(out, OFPAT_POP_MPLS, &e.to_be_bytes()),
            Action::SetQueue(q) => std_short(out, OFPAT_SET_QUEUE, &q.to_be_bytes()),
            Action::PopQueue => nx_empty(out, NXAST_POP_QUEUE),
            Action::DecTtl => std_short(out, OFPAT_DEC_NW_TTL, &[]),
            Action::DecTtlCntIds(ids) => {
                let start = nx_start(out, NXAST_DEC_TTL_CNT_IDS);
                out.extend_from_slice(&(ids.len() as u16).to_be_bytes());
                out.extend_from_slice(&[0; 4]);
                for id in ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                nx_finish(out, start);
            }
            Action::SetNwTtl(t) => std_short(out, OFPAT_SET_NW_TTL, &[*t]),
            Action::SetMplsTtl(t) => std_short(out, OFPAT_SET_MPLS_TTL, &[*t]),
            Action::DecMplsTtl => std_short(out, OFPAT_DEC_MPLS_TTL, &[]),
            Action::CopyTtlOut => std_short(out, OFPAT_COPY_TTL_OUT, &[]),
            Action::CopyTtlIn => std_short(out, OFPAT_COPY_TTL_IN, &[]),
            Action::Resubmit { in_port, table, ct, legacy } => {
                let sub = if *ct {
                    NXAST_RESUBMIT_TABLE_CT
                } else if *legacy && *table == 255 {
                    NXAST_RESUBMIT
                } else {
                    NXAST_RESUBMIT_TABLE
                };
                let start = nx_start(out, sub);
                out.extend_from_slice(&in_port.to_be_bytes());
                if sub != NXAST_RESUBMIT {
                    out.push(*table);
                }
                nx_finish(out, start);
            }
            Action::Note(bytes) => {
                let start = nx_start(out, NXAST_NOTE);
                out.extend_from_slice(bytes);
                // At least the 6 pad bytes of the 16-byte header.
                out.resize(out.len().max(start + 16), 0);
                nx_finish(out, start);
            }
            Action::CtClear => nx_empty(out, NXAST_CT_CLEAR),
            Action::Exit => nx_empty(out, NXAST_EXIT),
            Action::FinTimeout { idle_timeout, hard_timeout } => {
                let start = nx_start(out, NXAST_FIN_TIMEOUT);
                out.extend_from_slice(&idle_timeout.to_be_bytes());
                out.extend_from_slice(&hard_timeout.to_be_bytes());
                nx_finish(out, start);
            }
            Action::Controller(c) => c.encode(out),
            Action::Clone(acts) => {
                let start = nx_start(out, NXAST_CLONE);
                out.extend_from_slice(&[0; 6]);
                Action::encode_list(acts, out);
                nx_finish(out, start);
            }
            Action::StackPush(sf) | Action::StackPop(sf) => {
                let sub = if matches!(self, Action::StackPush(_)) { NXAST_STACK_PUSH } else { NXAST_STACK_POP };
                let start = nx_start(out, sub);
                out.extend_from_slice(&sf.ofs.to_be_bytes());
                value::put_nx_header(sf.field, out);
                out.extend_from_slice(&sf.n_bits.to_be_bytes());
                out.resize(out.len().max(start + 24), 0);
                nx_finish(out, start);
            }
            Action::Sample(smp) => {
                let sub = smp.wire_subtype();
                let start = nx_start(out, sub);
                out.extend_from_slice(&smp.probability.to_be_bytes());
                out.extend_from_slice(&smp.collector_set_id.to_be_bytes());
                out.extend_from_slice(&smp.obs_domain_id.to_be_bytes());
                out.extend_from_slice(&smp.obs_point_id.to_be_bytes());
                if sub != NXAST_SAMPLE {
                    out.extend_from_slice(&smp.sampling_port.to_be_bytes());
                    if sub == NXAST_SAMPLE3 {
                        out.push(smp.direction);
                    }
                    out.resize(out.len().max(start + 32), 0);
                }
                nx_finish(out, start);
            }
            Action::CheckPktLarger { pkt_len, dst } => {
                let start = nx_start(out, NXAST_CHECK_PKT_LARGER);
                out.extend_from_slice(&pkt_len.to_be_bytes());
                out.extend_from_slice(&dst.ofs.to_be_bytes());
                value::put_nx_header(dst.field, out);
                out.resize(out.len().max(start + 24), 0);
                nx_finish(out, start);
            }
            Action::Ct(a) => a.encode(out),
            Action::Nat(a) => a.encode(out),
            Action::Learn(a) => a.encode(out),
            Action::Multipath(a) => a.encode(out),
            Action::Bundle(a) => a.encode(out),
            Action::Conjunction(a) => a.encode(out),
            Action::Unknown { bytes } => out.extend_from_slice(bytes),
        }
    }
}
