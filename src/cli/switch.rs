//! A small blocking OpenFlow 1.3 client for the operator tools (`flow add`, `flow dump`): one
//! connection to a switch, request/response with a barrier. Not the daemon's session (that one is
//! sans-IO and runs on the shards); this runs in the CLI process only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use shardflow::openflow::message::bundle::{ctrl_type, BUNDLE_ATOMIC, BUNDLE_ORDERED};
use shardflow::openflow::message::multipart::{
    FlowStats, FlowStatsRequest, MultipartReplyBody, MultipartRequest, MultipartRequestBody, MULTIPART_MORE,
};
use shardflow::openflow::message::{self, BundleAdd, BundleControl, Header, Hello, Message};

const OF13: u8 = 4;
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where a switch listens: a bridge's management socket or a passive TCP controller port.
#[derive(Debug, Clone)]
pub enum SwitchAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl FromStr for SwitchAddr {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if let Some(p) = s.strip_prefix("unix:") {
            Ok(SwitchAddr::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            Ok(SwitchAddr::Tcp(a.parse().with_context(|| format!("bad address {a:?} (want IP:PORT)"))?))
        } else {
            bail!("bad switch address {s:?}: want unix:PATH or tcp:IP:PORT")
        }
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A connected switch that has completed the HELLO exchange at OpenFlow 1.3.
pub struct Switch {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    next_xid: u32,
}

impl Switch {
    pub fn connect(addr: &SwitchAddr) -> anyhow::Result<Switch> {
        let stream: Box<dyn Stream> = match addr {
            SwitchAddr::Unix(p) => {
                let s = UnixStream::connect(p).with_context(|| format!("connect to {}", p.display()))?;
                s.set_read_timeout(Some(TIMEOUT))?;
                Box::new(s)
            }
            SwitchAddr::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, TIMEOUT).with_context(|| format!("connect to {a}"))?;
                s.set_read_timeout(Some(TIMEOUT))?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        };
        let mut sw = Switch { stream, buf: Vec::new(), next_xid: 1 };
        sw.send(&Message::Hello(Hello::with_bitmap(1 << OF13)))?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (h, m) = sw.recv(deadline)?;
            match m {
                Message::Hello(_) if h.version >= OF13 => return Ok(sw),
                Message::Hello(_) => bail!("switch speaks OpenFlow version {:#x} only; 1.3 is needed", h.version),
                Message::Error(e) => bail!("switch refused the hello: {}", e.code),
                _ => continue,
            }
        }
    }

    fn send(&mut self, msg: &Message) -> anyhow::Result<u32> {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        let bytes = message::try_encode(msg, xid)?;
        self.stream.write_all(&bytes).context("send to switch")?;
        Ok(xid)
    }

    /// The next message; echo requests are answered on the way.
    fn recv(&mut self, deadline: Instant) -> anyhow::Result<(Header, Message)> {
        loop {
            if let Some(n) = message::frame_len(&self.buf)? {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                let (h, m) = message::decode(&frame).map_err(|e| anyhow!("undecodable message from switch: {e}"))?;
                if let Message::EchoRequest(data) = &m {
                    let reply = message::encode(&Message::EchoReply(data.clone()), h.xid);
                    self.stream.write_all(&reply)?;
                    continue;
                }
                return Ok((h, m));
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for the switch");
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).context("read from switch")?;
            if n == 0 {
                bail!("switch closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends `msgs`, then a barrier; fails listing every OpenFlow error the switch answered with.
    pub fn transact(&mut self, msgs: Vec<Message>) -> anyhow::Result<()> {
        let xids = self.send_all(&msgs)?;
        let errors = self.barrier_errors(&xids)?;
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("the switch refused: {}", errors.join("; "))
        }
    }

    fn send_all(&mut self, msgs: &[Message]) -> anyhow::Result<Vec<u32>> {
        msgs.iter().map(|m| self.send(m)).collect()
    }

    /// Sends a barrier and reads until its reply: the errors about messages `xids` (by
    /// 1-based position) or anything else that came before it.
    fn barrier_errors(&mut self, xids: &[u32]) -> anyhow::Result<Vec<String>> {
        let barrier = self.send(&Message::BarrierRequest)?;
        let mut errors = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (h, m) = self.recv(deadline)?;
            match m {
                Message::BarrierReply if h.xid == barrier => return Ok(errors),
                Message::Error(e) => errors.push(error_about(xids, h.xid, &e.code.to_string())),
                _ => {}
            }
        }
    }

    /// Applies `msgs` atomically and in order through an ONF bundle (OpenFlow 1.3 extension):
    /// all or nothing. The adds are followed by a barrier and the COMMIT goes out only when no
    /// add was refused (OVS refuses some at add time, e.g. `OFPBIC_BAD_TABLE_ID`, and would
    /// commit the rest); otherwise the bundle is discarded and the error names the message.
    pub fn bundle(&mut self, msgs: Vec<Message>) -> anyhow::Result<()> {
        const BUNDLE_ID: u32 = 1;
        let flags = BUNDLE_ATOMIC | BUNDLE_ORDERED;
        let ctrl =
            |t| Message::BundleControl(BundleControl { bundle_id: BUNDLE_ID, ctrl_type: t, flags, properties: vec![] });
        self.expect_ctrl(ctrl(ctrl_type::OPEN_REQUEST), ctrl_type::OPEN_REPLY, &[])?;
        let adds: Vec<Message> = msgs
            .into_iter()
            .map(|m| {
                Message::BundleAdd(BundleAdd { bundle_id: BUNDLE_ID, flags, message: Box::new(m), properties: vec![] })
            })
            .collect();
        let xids = self.send_all(&adds)?;
        // Adds are acknowledged only by errors; the barrier makes sure none came.
        let errors = self.barrier_errors(&xids)?;
        if !errors.is_empty() {
            let discarded = self.expect_ctrl(ctrl(ctrl_type::DISCARD_REQUEST), ctrl_type::DISCARD_REPLY, &[]);
            let note = match discarded {
                Ok(()) => "bundle discarded, nothing applied".to_string(),
                Err(e) => format!("discarding the bundle failed ({e}); the connection closes, which discards it"),
            };
            bail!("the switch refused: {} ({note})", errors.join("; "));
        }
        self.expect_ctrl(ctrl(ctrl_type::COMMIT_REQUEST), ctrl_type::COMMIT_REPLY, &xids)
    }

    /// Sends a bundle control and waits for the `want` reply. Errors about `earlier` messages
    /// that come first (OVS names the failing add before failing a commit) are reported with it.
    fn expect_ctrl(&mut self, msg: Message, want: u16, earlier: &[u32]) -> anyhow::Result<()> {
        let xid = self.send(&msg)?;
        let deadline = Instant::now() + TIMEOUT;
        let mut errors = Vec::new();
        loop {
            let (h, m) = self.recv(deadline)?;
            if h.xid != xid {
                if let Message::Error(e) = &m {
                    if earlier.contains(&h.xid) {
                        errors.push(error_about(earlier, h.xid, &e.code.to_string()));
                    }
                }
                continue;
            }
            match m {
                Message::BundleControl(c) if c.ctrl_type == want => return Ok(()),
                Message::Error(e) => {
                    errors.push(format!("the bundle: {}", e.code));
                    bail!("the switch refused: {}", errors.join("; "))
                }
                other => bail!("unexpected answer to a bundle control: {:?}", message::msg_type(&other)),
            }
        }
    }

    /// Every flow of every table (OFPMP_FLOW, all parts).
    pub fn flow_stats(&mut self) -> anyhow::Result<Vec<FlowStats>> {
        let req = MultipartRequest::new(MultipartRequestBody::Flow(FlowStatsRequest::default()));
        let xid = self.send(&Message::MultipartRequest(req))?;
        let mut flows = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (h, m) = self.recv(deadline)?;
            if h.xid != xid {
                continue;
            }
            match m {
                Message::MultipartReply(r) => {
                    if let MultipartReplyBody::Flow(f) = r.body {
                        flows.extend(f);
                    }
                    if r.flags & MULTIPART_MORE == 0 {
                        return Ok(flows);
                    }
                }
                Message::Error(e) => bail!("the switch refused the flow stats request: {}", e.code),
                _ => {}
            }
        }
    }
}

/// An OpenFlow error about message `xid`: `message N: NAME` when it is the N-th (from 1) of
/// `xids`.
fn error_about(xids: &[u32], xid: u32, name: &str) -> String {
    match xids.iter().position(|x| *x == xid) {
        Some(i) => format!("message {}: {name}", i + 1),
        None => format!("xid {xid:#x}: {name}"),
    }
}

/// A flow from a flow-stats reply as `ovs-ofctl dump-flows` prints it: `--no-stats` form
/// unless `stats`.
pub fn flow_stats_text(fs: &FlowStats, stats: bool) -> String {
    if stats {
        fs.fmt()
    } else {
        shardflow::daemon::flow_stats_line(fs)
    }
}
