//! Framing: OVSDB sends JSON values back to back with nothing between them (RFC 7047 has no
//! length prefix), so a message ends where its JSON value ends. [`Framer`] collects bytes and
//! cuts whole values out with serde_json's `StreamDeserializer`.
//!
//! Bound: an incomplete value may not grow past `max_frame` bytes (the whole connection is
//! then refused: there is no way to skip a half-read JSON value).

use serde_json::Value;

use super::OvsdbError;

/// Default largest message: the initial monitor reply of a node with thousands of ports fits.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Bytes in, JSON values out.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    max_frame: usize,
}

impl Framer {
    pub fn new(max_frame: usize) -> Framer {
        Framer { buf: Vec::new(), max_frame }
    }

    /// Adds bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for an incomplete value.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Every complete value received so far, in order. An incomplete tail stays buffered;
    /// one past `max_frame` bytes, or bytes that are not JSON, are an error.
    pub fn drain(&mut self) -> Result<Vec<Value>, OvsdbError> {
        let mut out = Vec::new();
        let consumed = {
            let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            let mut start = 0;
            loop {
                match stream.next() {
                    Some(Ok(v)) => {
                        // A whole value that arrived in one read is bounded too.
                        if stream.byte_offset() - start > self.max_frame {
                            return Err(OvsdbError::FrameTooLarge { limit: self.max_frame });
                        }
                        start = stream.byte_offset();
                        out.push(v);
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => return Err(OvsdbError::Protocol(format!("not JSON: {e}"))),
                    None => break,
                }
            }
            stream.byte_offset()
        };
        self.buf.drain(..consumed);
        // Whitespace between values is not a message.
        let lead = self.buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        self.buf.drain(..lead);
        if self.buf.len() > self.max_frame {
            return Err(OvsdbError::FrameTooLarge { limit: self.max_frame });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An `echo` request as OVS's jsonrpc sends it (id "echo") and a transact reply captured from
    /// ovsdb-server 3.1.
    const CAPTURED: &str = concat!(
        r#"{"id":"echo","method":"echo","params":[]}"#,
        r#"{"id":2,"result":[{"rows":[{"name":"br0"}]},{"uuid":["uuid","0f836002-3337-46a1-9128-29ed82536d55"]}],"error":null}"#
    );

    #[test]
    fn cuts_values_at_any_split_point() {
        for split in 0..CAPTURED.len() {
            let mut f = Framer::new(1 << 20);
            f.push(&CAPTURED.as_bytes()[..split]);
            let mut got = f.drain().unwrap();
            f.push(&CAPTURED.as_bytes()[split..]);
            got.extend(f.drain().unwrap());
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0]["method"], "echo");
            assert_eq!(got[1]["result"][0]["rows"][0]["name"], "br0");
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn whitespace_between_values_is_skipped() {
        let mut f = Framer::new(1024);
        f.push(b"{\"a\":1}\n  {\"b\":2}\n");
        assert_eq!(f.drain().unwrap().len(), 2);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn refuses_garbage_and_oversized_frames() {
        let mut f = Framer::new(1024);
        f.push(b"{\"a\":1} }garbage");
        assert!(matches!(f.drain(), Err(OvsdbError::Protocol(_))));

        let mut f = Framer::new(64);
        f.push(b"{\"a\":\"");
        f.push(&[b'x'; 100]);
        assert!(matches!(f.drain(), Err(OvsdbError::FrameTooLarge { limit: 64 })));
        // Complete, but too large.
        let mut f = Framer::new(64);
        f.push(format!("{{\"a\":1}}{{\"a\":\"{}\"}}", "x".repeat(100)).as_bytes());
        assert!(matches!(f.drain(), Err(OvsdbError::FrameTooLarge { limit: 64 })));
    }
}
