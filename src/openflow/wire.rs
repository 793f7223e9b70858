//! Checked big-endian reading and writing of OpenFlow bytes.
//!
//! Every length a peer sends passes through [`Reader`], which never panics: a short buffer is a
//! [`DecodeError`] naming what was being read. Writing goes into a plain `Vec<u8>` (it implements
//! [`bytes::BufMut`]); lengths that are only known at the end are patched in with [`patch_u16`].

use super::error::{DecodeError, ErrorCode};

/// A NUL-padded fixed-size string field (`ofp_port.name`, `ofp_desc.mfr_desc`, ...) from text: at
/// most `N - 1` bytes of `s`, then NULs.
pub fn fixed_str<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    for (d, b) in out.iter_mut().zip(s.bytes().take(N.saturating_sub(1))) {
        *d = b;
    }
    out
}

/// A fixed-size string field as OVS prints it (`%.*s`): the bytes up to the first NUL, here as
/// lossy UTF-8. The field itself is kept raw so that bytes after the NUL survive a re-encode.
pub fn fixed_str_text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A cursor over borrowed bytes whose every read is bounds-checked.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// What is being read, for error messages ("ofp_match", "NXAST_LEARN", ...).
    what: &'static str,
    /// The OpenFlow error a short read maps to.
    code: ErrorCode,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str, code: ErrorCode) -> Self {
        Reader { buf, pos: 0, what, code }
    }

    /// The same bytes, read as something else (error context and code change).
    pub fn context(mut self, what: &'static str, code: ErrorCode) -> Self {
        self.what = what;
        self.code = code;
        self
    }

    pub fn what(&self) -> &'static str {
        self.what
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.remaining() < n {
            Err(DecodeError::new(
                self.code,
                self.what,
                format!("truncated: need {n} more bytes at offset {}, have {}", self.pos, self.remaining()),
            ))
        } else {
            Ok(())
        }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.need(n)?;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.bytes(n).map(|_| ())
    }

    /// Splits off the next `n` bytes as a reader of their own (same context).
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        let b = self.bytes(n)?;
        Ok(Reader { buf: b, pos: 0, what: self.what, code: self.code })
    }

    /// Takes everything that is left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u16 at `offset` from the current position without consuming it.
    pub fn peek_u16(&self, offset: usize) -> Result<u16, DecodeError> {
        self.need(offset + 2)?;
        let p = self.pos + offset;
        Ok(u16::from_be_bytes([self.buf[p], self.buf[p + 1]]))
    }

    /// An error in this reader's context.
    pub fn error(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError::new(self.code, self.what, detail)
    }

    pub fn error_code(&self, code: ErrorCode, detail: impl Into<String>) -> DecodeError {
        DecodeError::new(code, self.what, detail)
    }
}

/// Rounds `n` up to a multiple of 8, the alignment of OpenFlow matches, actions and instructions.
pub const fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// Overwrites the big-endian u16 at `pos` (a length written as a placeholder earlier).
///
/// # Panics
/// When `pos + 2 > buf.len()`: a bug in the caller's encoder, never a result of peer input.
pub fn patch_u16(buf: &mut [u8], pos: usize, value: u16) {
    buf[pos..pos + 2].copy_from_slice(&value.to_be_bytes());
}

/// Appends zero bytes until `buf.len() - start` is a multiple of 8.
pub fn pad_to_8(buf: &mut Vec<u8>, start: usize) {
    let len = buf.len() - start;
    buf.resize(start + pad8(len), 0);
}

/// Lower-case hex, no separators.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses hex, ignoring ASCII white space; `None` on an odd count or a non-hex digit.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_errors_not_panics() {
        let mut r = Reader::new(&[1, 2, 3], "test", ErrorCode::BAD_REQUEST_BAD_LEN);
        assert_eq!(r.u16().unwrap(), 0x0102);
        let e = r.u16().unwrap_err();
        assert_eq!(e.code, ErrorCode::BAD_REQUEST_BAD_LEN);
        assert_eq!(r.u8().unwrap(), 3);
        assert!(r.is_empty());
        assert!(r.peek_u16(0).is_err());
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(to_hex(&[0x04, 0xab]), "04ab");
        assert_eq!(from_hex("04 ab").unwrap(), vec![4, 0xab]);
        assert!(from_hex("4ab").is_none());
        assert!(from_hex("zz").is_none());
    }

    #[test]
    fn padding() {
        assert_eq!(pad8(0), 0);
        assert_eq!(pad8(1), 8);
        assert_eq!(pad8(8), 8);
        let mut v = vec![1u8; 3];
        pad_to_8(&mut v, 1);
        assert_eq!(v.len(), 9);
    }
}
