//! Accepting switch connections and their lifecycle: the connection cap, TLS handshakes,
//! session events, the datapath-id claim (verified with an echo when contested) and routing a
//! connection to its switch, which starts the pipeline install or the restore of this shard's
//! connection flows (see [`super::reconnect`]).

use super::*;
use crate::daemon::heal;
use crate::daemon::tls::{SwitchStream, TlsStream, HANDSHAKE_TIMEOUT};

impl Shard {
    /// Accepts switch connections: at most `max_switch_connections` at once (the rest are closed
    /// at once, counted), and accept errors (EMFILE...) back off and are logged rate-limited.
    pub(super) async fn accept_loop(self: Rc<Self>, listener: TcpListener) {
        let cap = self.shared.max_switch_connections;
        let backoff = accept::Backoff::default();
        let (refused_log, error_log) = (accept::RateLimitedLog::default(), accept::RateLimitedLog::default());
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    backoff.success();
                    if self.conns.borrow().len() + self.handshakes.get() >= cap {
                        self.metrics.connection_refused("cap");
                        if let Some(suppressed) = refused_log.should_log(Instant::now()) {
                            let peer = stream.peer_addr().ok();
                            tracing::warn!(
                                shard = self.id(),
                                ?peer,
                                cap,
                                suppressed,
                                "switch connection refused: openflow.max_switch_connections reached"
                            );
                        }
                        drop(stream);
                        continue;
                    }
                    match self.shared.of_tls.clone() {
                        None => {
                            let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                            self.clone().serve(SwitchStream::Plain(stream), peer)
                        }
                        Some(tls) => self.clone().serve_tls(stream, tls),
                    }
                }
                Err(e) => {
                    self.metrics.connection_refused("accept_error");
                    let wait = backoff.error();
                    if let Some(suppressed) = error_log.should_log(Instant::now()) {
                        tracing::warn!(shard = self.id(), suppressed, retry_in = ?wait, "accept failed: {e}");
                    }
                    glommio::timer::sleep(wait).await;
                }
            }
        }
    }

    /// `ssl:`: the TLS handshake (client certificate required, within the deadline) on its
    /// own task, then [`Self::serve`]; a failed one is closed, counted (`cause="tls"`), logged.
    pub(super) fn serve_tls(self: Rc<Self>, stream: glommio::net::TcpStream, tls: Arc<rustls::ServerConfig>) {
        let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let _ = stream.set_nodelay(true);
        glommio::spawn_local(async move {
            let handshake = async { Some(TlsStream::accept(stream, tls).await) };
            let timeout = async {
                glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
                None
            };
            self.handshakes.set(self.handshakes.get() + 1);
            let done = futures_lite::future::race(handshake, timeout).await;
            self.handshakes.set(self.handshakes.get().saturating_sub(1));
            match done {
                Some(Ok(s)) => self.serve(SwitchStream::Tls(Box::new(s)), peer),
                Some(Err(e)) => {
                    self.metrics.connection_refused("tls");
                    tracing::warn!(shard = self.id(), %peer, "switch refused: TLS handshake failed: {e}");
                }
                None => {
                    self.metrics.connection_refused("tls");
                    tracing::warn!(shard = self.id(), %peer, "switch refused: no TLS handshake within {:?}", HANDSHAKE_TIMEOUT);
                }
            }
        })
        .detach();
    }

    /// Serves one accepted switch connection until it closes.
    pub(super) fn serve(self: Rc<Self>, stream: SwitchStream, peer: SocketAddr) {
        if let SwitchStream::Plain(s) = &stream {
            let _ = s.set_nodelay(true);
        }
        let id = ((self.id() as u64) << 48) | self.next_conn.replace(self.next_conn.get() + 1);
        let of = &self.shared.cfg.openflow;
        let limits = OutputLimits { high_water: of.output_high_water, stall_timeout: of.output_stall_timeout() };
        let (conn, tasks) = Conn::new(id, peer, self.session_config(), limits, self.metrics.clone());
        self.conns.borrow_mut().insert(id, conn.clone());
        tracing::debug!(shard = self.id(), %peer, conn = id, "switch connected");
        let (rd, wr) = Conn::tasks(stream);
        let rx = tasks.into_parts();
        let shard = self.clone();
        glommio::spawn_local(async move {
            let on_events = |evs: Vec<Event>| {
                // One clock read per batch of messages read: the packet-ins of the batch share
                // it as their arrival time.
                shard.batch_now.set(Instant::now());
                for ev in evs {
                    shard.on_event(&conn, ev);
                }
            };
            let writer = conn.write_loop(wr, rx.kick, rx.stop_write);
            let timer = conn.timer_loop(rx.rearm, on_events);
            let reader = conn.read_loop(rd, rx.stop_read, on_events);
            futures_lite::future::zip(writer, futures_lite::future::zip(timer, reader)).await;
            shard.conns.borrow_mut().remove(&conn.id);
            if let Some(dpid) = conn.dpid() {
                if shard.by_dpid.borrow().get(&dpid) == Some(&conn.id) {
                    shard.by_dpid.borrow_mut().remove(&dpid);
                }
                // A connection never routed (refused, or closed while its claim was checked)
                // was never counted nor registered.
                if shard.routed.borrow_mut().remove(&conn.id) {
                    shard.shared.registry.disconnected(dpid, shard.id(), conn.id);
                    shard.metrics.switch_connections.dec();
                    shard.metrics.session_event("disconnected");
                }
            }
            tracing::info!(shard = shard.id(), %peer, dpid = ?conn.dpid().map(|d| format!("{d:016x}")), "switch disconnected");
        })
        .detach();
    }

    pub(super) fn on_event(self: &Rc<Self>, conn: &Rc<Conn>, ev: Event) {
        match ev {
            Event::Ready { datapath_id } => self.on_ready(conn, datapath_id),
            Event::PacketIn(pi) => self.on_packet_in(conn, pi, None),
            Event::PacketIn2(mut p) => {
                // Paused (a continuation to resume): kept whole for NXT_RESUME, so the packet and
                // the metadata are copied; otherwise they are taken.
                let paused = p.continuation.is_some();
                let (packet, metadata) =
                    if paused { (p.packet.clone(), p.metadata.clone()) } else { (p.packet.take(), p.metadata.take()) };
                if let Some(data) = packet {
                    let pi = PacketIn {
                        buffer_id: p.buffer_id.unwrap_or(u32::MAX),
                        total_len: p.full_len.unwrap_or(data.len() as u32) as u16,
                        reason: p.reason.unwrap_or(0),
                        table_id: p.table_id.unwrap_or(0),
                        cookie: p.cookie.unwrap_or(0),
                        r#match: metadata.unwrap_or_default(),
                        data,
                    };
                    self.on_packet_in(conn, pi, paused.then(|| Box::new(p)));
                }
            }
            Event::Closed { reason } => {
                self.metrics.session_event(reason.label());
                tracing::info!(shard = self.id(), peer = %conn.peer, "session closed: {reason}");
            }
            Event::Refused { xid, reason } => {
                // A decided answer (packet-out, flow mod) too large to send: dropped, counted.
                self.metrics.dropped(reason.label(), 1);
                tracing::warn!(shard = self.id(), peer = %conn.peer, xid, "not sent: {reason}");
            }
            Event::Error { xid, error } => {
                self.metrics.openflow_error(&error.code.to_string());
                tracing::warn!(shard = self.id(), peer = %conn.peer, xid, "switch error: {}", error.code);
            }
            other => tracing::trace!(shard = self.id(), "session event {other:?}"),
        }
    }

    /// A connection finished its handshake claiming `dpid`: routed if nobody else holds the
    /// dpid here, refused if another live connection does, and let in after the old one was
    /// asked with an echo and did not answer (see [`Claim`], docs/security.md).
    pub(super) fn on_ready(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64) {
        let fanout = matches!(self.shared.cfg.openflow.mode, Mode::Fanout);
        match self.shared.registry.claim(dpid, self.id(), conn.id, fanout) {
            Claim::Free => self.route(conn, dpid),
            Claim::InUse { shard, conn: holder, peer } => self.refuse_claim(
                conn,
                dpid,
                &format!("shard {shard} already has connection {holder:#x} from {peer} for it (single mode)"),
            ),
            Claim::Verify { conn: old } => {
                let (shard, conn) = (self.clone(), conn.clone());
                glommio::spawn_local(async move { shard.verify_claim(&conn, dpid, old).await }).detach();
            }
        }
    }

    /// Another connection of this shard (`old`) holds `dpid`: it gets an echo request and
    /// [`VERIFY_DEADLINE`] to answer. Answered: the newcomer is refused. Not answered (or
    /// `old` is already closing): `old` is closed and the newcomer routed. Until then the
    /// newcomer is not routed: its packet-ins are ignored.
    pub(super) async fn verify_claim(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64, old: u64) {
        let holder = self.conns.borrow().get(&old).cloned();
        let alive = match &holder {
            Some(h) if !h.is_closed() => {
                let echo = async { h.request(&Message::EchoRequest(Vec::new())).await.is_ok() };
                let deadline = async {
                    glommio::timer::sleep(VERIFY_DEADLINE).await;
                    false
                };
                futures_lite::future::or(echo, deadline).await
            }
            _ => false,
        };
        if conn.is_closed() {
            return;
        }
        // Someone else took the dpid meanwhile (another claimant's check ended first).
        let current = self.by_dpid.borrow().get(&dpid).copied();
        if alive || current.is_some_and(|c| c != old) {
            let why = match &holder {
                Some(h) => format!("connection {old:#x} from {} holds it and answered an echo", h.peer),
                None => format!("connection {old:#x} holds it"),
            };
            self.refuse_claim(conn, dpid, &why);
            return;
        }
        if let Some(h) = holder {
            tracing::warn!(
                shard = self.id(),
                dpid = %format!("{dpid:016x}"),
                old = %h.peer,
                new = %conn.peer,
                "switch connection did not answer an echo within {VERIFY_DEADLINE:?} when another claimed its datapath id: closed, the new one takes over"
            );
            self.metrics.connection_closed("superseded");
            h.close(CloseReason::Local(
                "superseded: no echo reply while another connection claimed the datapath id".into(),
            ));
        }
        // Its own disconnect comes later and removes nothing of the new route.
        self.shared.registry.disconnected(dpid, self.id(), old);
        self.route(conn, dpid);
    }

    /// Refuses `conn`'s claim on `dpid` (closed, counted as
    /// `openflow_connections_refused_total{cause="dpid_in_use"}`, logged rate-limited).
    pub(super) fn refuse_claim(&self, conn: &Conn, dpid: u64, why: &str) {
        self.metrics.connection_refused("dpid_in_use");
        if let Some(suppressed) = self.impostor_log.should_log(Instant::now()) {
            tracing::warn!(
                shard = self.id(),
                peer = %conn.peer,
                dpid = %format!("{dpid:016x}"),
                suppressed,
                "switch connection refused: datapath id already connected: {why}"
            );
        }
        conn.close(CloseReason::Local(format!("datapath id {dpid:016x} already connected")));
    }

    /// Makes `conn` the shard's connection to `dpid` and installs or restores what it needs.
    pub(super) fn route(self: &Rc<Self>, conn: &Rc<Conn>, dpid: u64) {
        let ready_at = Instant::now();
        self.by_dpid.borrow_mut().insert(dpid, conn.id);
        self.routed.borrow_mut().insert(conn.id);
        self.shared.registry.connected(
            dpid,
            ConnInfo {
                shard: self.id(),
                conn: conn.id,
                peer: conn.peer,
                connected_at: ready_at,
                n_tables: conn.n_tables(),
            },
        );
        self.metrics.switch_connections.inc();
        self.metrics.session_event("connected");
        if let Some(d) = &self.decider {
            for port in d.infrastructure_ports() {
                self.shared.tracker.exclude_port(dpid, port);
            }
        }
        tracing::info!(shard = self.id(), peer = %conn.peer, dpid = %format!("{dpid:016x}"), "switch ready");
        // One connection per switch installs the pipeline: the dpid's primary shard. Every other
        // shard puts back the connection flows it decided, if the switch lost them (an
        // ovs-vswitchd restart), without touching anything else.
        if !self.shared.installs_pipeline(dpid, self.id()) {
            let mine = self.live.borrow().flows(dpid);
            if mine.is_empty() && !self.decided_flows_n.borrow().contains_key(&dpid) {
                return;
            }
            let (shard, conn) = (self.clone(), conn.clone());
            glommio::spawn_local(async move {
                let Ok(actual) = shard.flow_stats(&conn).await else { return };
                let plan = resync::plan(&mine, &actual, &ResyncPolicy::none());
                if !plan.is_empty() {
                    let n = plan.adds.len() + plan.changed.len();
                    match conn.bundle(plan.messages()).await {
                        Ok(()) => tracing::info!(shard = shard.id(), restored = n, "connection flows restored"),
                        Err(e) => tracing::warn!(shard = shard.id(), "restoring connection flows failed: {e}"),
                    }
                }
                shard.restore_decided(&conn, dpid, &actual).await;
            })
            .detach();
            return;
        }
        self.shared.registry.pipeline_state(dpid, PipelineState::Pending);
        let (shard, conn) = (self.clone(), conn.clone());
        glommio::spawn_local(async move {
            shard.install_pipeline(&conn, dpid, ready_at).await;
            // Then keep it in place for as long as the connection lives.
            let desired: heal::DesiredFn = {
                let shard = shard.clone();
                Rc::new(move || shard.desired_for(dpid))
            };
            heal::watch(shard.shared.clone(), conn, dpid, shard.id(), desired).await;
        })
        .detach();
    }
}
