//! OpenFlow over TLS (`ssl:` controllers) on a shard: rustls's sans-IO `ServerConnection`
//! between the glommio socket and the session's bytes (glommio has no TLS of its own).
//!
//! Every switch must show a certificate chaining to `[openflow] tls_ca` (OVS's
//! `ovs-vsctl set-ssl`); a plain TCP peer or one without such a certificate fails the handshake
//! and is closed before any OpenFlow byte is read. The handshake has a deadline
//! ([`HANDSHAKE_TIMEOUT`]) so a silent peer cannot hold a connection slot.
//!
//! Bounds: rustls's outgoing buffer is capped at [`SEND_BUFFER_LIMIT`] (past it `poll_write`
//! accepts nothing and waits for the socket, so the connection's own output budget applies);
//! incoming records are read only as rustls asks for them (at most one record's worth buffered).
//! The stream is one-threaded (one shard) and no call blocks: socket `Pending` becomes rustls's
//! `WouldBlock` and back. `poll_write` may leave encrypted bytes in rustls when the socket is
//! full: the writer flushes after each batch. The read side never writes (see `poll_read`).

use std::io::{self, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::control::cnictl::tls::TlsError;

/// A switch that has not finished its TLS handshake by then is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS bytes rustls holds for the socket (plaintext written and not yet sent).
pub const SEND_BUFFER_LIMIT: usize = 256 << 10;

/// The shards' TLS settings from `[openflow] tls_cert/tls_key/tls_ca`: client certificates
/// required, verified against the CA. Built (files read and checked) before any port is bound.
pub fn server_config(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |k: &str, p: &Path| {
        std::fs::read(p).map_err(|e| TlsError::Read { key: k.into(), path: p.into(), reason: e.to_string() })
    };
    let certs = |k: &str, p: &Path| -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = read(k, p)?;
        let v: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        let v = v.map_err(|e| TlsError::Pem { key: k.into(), path: p.into(), reason: format!("bad PEM: {e}") })?;
        if v.is_empty() {
            return Err(TlsError::Pem { key: k.into(), path: p.into(), reason: "no CERTIFICATE block".into() });
        }
        Ok(v)
    };
    let chain = certs("openflow.tls_cert", cert)?;
    let key_der = PrivateKeyDer::from_pem_slice(&read("openflow.tls_key", key)?).map_err(|e| TlsError::Pem {
        key: "openflow.tls_key".into(),
        path: key.into(),
        reason: format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })?;
    let mut roots = RootCertStore::empty();
    for c in certs("openflow.tls_ca", ca)? {
        roots.add(c).map_err(|e| TlsError::Unusable { key: "openflow.tls_ca".into(), reason: e.to_string() })?;
    }
    // ring, as tonic's `tls-ring` (aws-lc would be a large C build); ring has no post-quantum
    // key exchange, hence the deprecation, which does not matter to OVS 3.1 (OpenSSL, TLS 1.2).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Unusable { key: "openflow.tls_ca".into(), reason: e.to_string() })?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Unusable { key: "openflow.tls_cert".into(), reason: e.to_string() })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Unusable { key: "openflow.tls_key".into(), reason: e.to_string() })?;
    Ok(Arc::new(config))
}

/// `io::Read`/`io::Write` over an async socket for one poll: `Pending` is `WouldBlock`.
struct SyncIo<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
}

impl<S: AsyncRead + Unpin> Read for SyncIo<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncWrite + Unpin> Write for SyncIo<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A TLS server stream over `S` (a glommio `TcpStream`), after the handshake.
pub struct TlsStream<S> {
    io: S,
    conn: ServerConnection,
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    /// Sends what rustls has for the socket; `Ready(Ok(0))` when nothing is left.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut total = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut SyncIo { io: &mut self.io, cx }) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(total))
    }

    /// Reads TLS bytes from the socket into rustls and processes them; `Ready(Ok(0))` at EOF.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = match self.conn.read_tls(&mut SyncIo { io: &mut self.io, cx }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Err(e) = self.conn.process_new_packets() {
            // Tell the peer why (best effort: the alert is queued by rustls).
            let _ = self.poll_write_tls(cx);
            return Poll::Ready(Err(tls_err(e)));
        }
        Poll::Ready(Ok(n))
    }

    /// Runs the server handshake on `io` with `config` (no deadline here: the caller races it).
    pub async fn accept(io: S, config: Arc<ServerConfig>) -> io::Result<TlsStream<S>> {
        let mut conn = ServerConnection::new(config).map_err(tls_err)?;
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        let mut s = TlsStream { io, conn };
        futures_lite::future::poll_fn(|cx| loop {
            let wrote = match s.poll_write_tls(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(_)) => true,
                Poll::Pending => false,
            };
            if !s.conn.is_handshaking() {
                return if wrote { Poll::Ready(Ok(())) } else { Poll::Pending };
            }
            if !s.conn.wants_read() {
                if wrote {
                    continue;
                }
                return Poll::Pending;
            }
            match s.poll_read_tls(cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed during the TLS handshake",
                    )))
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await?;
        Ok(s)
    }

    /// The peer's certificate chain, leaf first (present after the handshake: it is required).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Whatever reading produced for the peer (a key update) goes out with the writer's
            // next write or flush (echoes come every few seconds): the reader never writes, so
            // it never takes the socket's write waker from the writer task.
            match this.poll_read_tls(cx) {
                // EOF without close_notify: the session sees the end of the stream.
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut pos = 0;
        loop {
            pos += this.conn.writer().write(&buf[pos..])?;
            match this.poll_write_tls(cx) {
                Poll::Ready(Ok(_)) => {
                    if pos == buf.len() {
                        return Poll::Ready(Ok(pos));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return if pos == 0 { Poll::Pending } else { Poll::Ready(Ok(pos)) },
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.writer().flush()?;
        match this.poll_write_tls(cx) {
            Poll::Ready(Ok(_)) => Pin::new(&mut this.io).poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.send_close_notify();
        match this.poll_write_tls(cx) {
            Poll::Ready(Ok(_)) => Pin::new(&mut this.io).poll_close(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A switch connection: plain TCP (`tcp:`) or TLS (`ssl:`).
pub enum SwitchStream {
    Plain(glommio::net::TcpStream),
    Tls(Box<TlsStream<glommio::net::TcpStream>>),
}

impl AsyncRead for SwitchStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SwitchStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            SwitchStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SwitchStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SwitchStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            SwitchStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SwitchStream::Plain(s) => Pin::new(s).poll_flush(cx),
            SwitchStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SwitchStream::Plain(s) => Pin::new(s).poll_close(cx),
            SwitchStream::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}
