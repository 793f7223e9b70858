//! The cheapest possible "controller", to measure loadgen itself: answers every PACKET_IN with a
//! PACKET_OUT carrying its packet (no actions), and nothing else but the handshake and echoes.
//!
//! ```sh
//! cargo run --release -p shardflow-perf --example echo_controller -- 127.0.0.1:7653
//! target/release/loadgen --controller 127.0.0.1:7653 --switches 16
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn serve(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    // HELLO (1.3 bitmap) + FEATURES_REQUEST.
    s.write_all(&[4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x10, 4, 5, 0, 8, 0, 0, 0, 2])?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut start, mut end) = (0, 0);
    let mut out = Vec::with_capacity(1 << 20);
    loop {
        if end + 65536 > buf.len() {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = s.read(&mut buf[end..])?;
        if n == 0 {
            return Ok(());
        }
        end += n;
        while end - start >= 8 {
            let len = usize::from(u16::from_be_bytes([buf[start + 2], buf[start + 3]]));
            if len < 8 {
                return Ok(());
            }
            if end - start < len {
                break;
            }
            let m = &buf[start..start + len];
            start += len;
            match m[1] {
                2 => {
                    let at = out.len();
                    out.extend_from_slice(m);
                    out[at + 1] = 3;
                }
                10 if m.len() >= 28 => {
                    let match_len = usize::from(u16::from_be_bytes([m[26], m[27]]));
                    let data_at = 24 + match_len.div_ceil(8) * 8 + 2;
                    let Some(data) = m.get(data_at..) else { continue };
                    let total = (24 + data.len()) as u16;
                    out.extend_from_slice(&[4, 13]);
                    out.extend_from_slice(&total.to_be_bytes());
                    out.extend_from_slice(&m[4..8]);
                    out.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0]);
                    out.extend_from_slice(data);
                }
                _ => {}
            }
        }
        if start == end {
            start = 0;
            end = 0;
        }
        if !out.is_empty() {
            s.write_all(&out)?;
            out.clear();
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7653".into());
    let l = TcpListener::bind(&addr)?;
    eprintln!("echo controller on {addr}");
    for s in l.incoming() {
        let s = s?;
        std::thread::spawn(move || {
            let _ = serve(s);
        });
    }
    Ok(())
}
