//! The HTTP endpoint: health, Prometheus metrics and the REST API, served by tiny_http.
//!
//! tiny_http is blocking, so it runs on a few std threads of its own (`shardflow-http-N`), never
//! on a shard nor on the control runtime. Several workers let `/metrics` and `/healthz` answer
//! while another request waits on a slow switch.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /healthz` | 200 `ok`, or 503 with the reason |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /v1/switches` | JSON array of [`SwitchInfo`](super::api::SwitchInfo) |
//! | `GET /v1/shards` | JSON array of [`ShardStats`](super::api::ShardStats) |
//! | `GET /v1/switches/{dpid}/flows` | JSON array of `ovs-ofctl dump-flows` lines |
//! | `POST /v1/switches/{dpid}/flows?command=add&bundle=false` | body: one flow per line (`#` comments and blank lines skipped); JSON [`FlowModReply`](super::api::FlowModReply) |
//! | `DELETE /v1/switches/{dpid}/flows?cookie=0x..&cookie_mask=0x..&table=N&force=false` | JSON [`FlowModReply`](super::api::FlowModReply); `cookie` without `cookie_mask` means an exact cookie; `cookie_mask` without `cookie` is a 400; 409 when the filter (or no filter) can reach the daemon's dispatch or pipeline flows, unless `force=true` |
//! | `GET /readyz` | 200 `ready` when every shard listens and every connected bridge has its pipeline installed and intact; 503 naming the dpid otherwise |
//!
//! Errors are JSON `{"error": "..."}` naming the problem: 400 (bad dpid, query or flow text,
//! naming the line), 404 (unknown path or switch), 405 (wrong method, with `Allow`), 413 (body
//! over 1 MiB), 409 (a delete that would hit the daemon's own flows), 502 (switch refused: `openflow_error` holds the OpenFlow error name, or another
//! failure), 503 (not ready), 504 (no answer before the deadline).

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tiny_http::{Header, Method, Request, Response, Server};

use super::api::{ApiError, ControlApi, DeleteFilter, Dpid, FlowCommand};
use super::metrics::Metrics;
use super::ControlError;
use crate::openflow::flow::FlowMod;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// Content type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What a request handler needs.
#[derive(Clone)]
pub struct HttpContext {
    pub metrics: Arc<Metrics>,
    pub api: Arc<dyn ControlApi>,
    /// Deadline given to each api call.
    pub request_timeout: Duration,
}

/// A response before it is turned into a tiny_http one (and what the tests inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: body.into(), allow: None }
    }

    fn json<T: Serialize>(status: u16, v: &T) -> Reply {
        match serde_json::to_string(v) {
            Ok(body) => Reply { status, content_type: "application/json", body, allow: None },
            Err(e) => Reply::error(500, format!("cannot encode answer: {e}")),
        }
    }

    fn error(status: u16, msg: impl Into<String>) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": msg.into() }))
    }

    fn method_not_allowed(allow: &'static str) -> Reply {
        let mut r = Reply::error(405, format!("method not allowed here; allowed: {allow}"));
        r.allow = Some(allow);
        r
    }

    fn from_api(e: ApiError) -> Reply {
        match &e {
            ApiError::NotReady(_) => Reply::error(503, e.to_string()),
            ApiError::UnknownSwitch(_) => Reply::error(404, e.to_string()),
            ApiError::Refused { name, .. } => {
                Reply::json(502, &serde_json::json!({ "error": e.to_string(), "openflow_error": name }))
            }
            ApiError::Timeout => Reply::error(504, e.to_string()),
            ApiError::Failed(_) => Reply::error(502, e.to_string()),
        }
    }
}

/// The request body as read: the bytes, or "too large".
pub enum Body {
    Bytes(Vec<u8>),
    TooLarge,
}

// === routing ===

/// Answer one request. `route` is set to the route template for the metrics label.
pub fn handle(ctx: &HttpContext, method: &Method, url: &str, body: Body, route: &mut &'static str) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let deadline = Instant::now() + ctx.request_timeout;
    match segs.as_slice() {
        ["healthz"] => {
            *route = "/healthz";
            if *method != Method::Get {
                return Reply::method_not_allowed("GET");
            }
            match ctx.api.ready() {
                Ok(()) => Reply::text(200, "ok\n"),
                Err(why) => Reply::text(503, format!("not ready: {why}\n")),
            }
        }
        ["readyz"] => {
            *route = "/readyz";
            if *method != Method::Get {
                return Reply::method_not_allowed("GET");
            }
            match ctx.api.pipelines_ready() {
                Ok(()) => Reply::text(200, "ready\n"),
                Err(why) => Reply::text(503, format!("not ready: {why}\n")),
            }
        }
        ["metrics"] => {
            *route = "/metrics";
            if *method != Method::Get {
                return Reply::method_not_allowed("GET");
            }
            Reply { status: 200, content_type: METRICS_CONTENT_TYPE, body: ctx.metrics.render(), allow: None }
        }
        ["v1", "switches"] => {
            *route = "/v1/switches";
            if *method != Method::Get {
                return Reply::method_not_allowed("GET");
            }
            match ctx.api.switches(deadline) {
                Ok(s) => Reply::json(200, &s),
                Err(e) => Reply::from_api(e),
            }
        }
        ["v1", "shards"] => {
            *route = "/v1/shards";
            if *method != Method::Get {
                return Reply::method_not_allowed("GET");
            }
            match ctx.api.shards(deadline) {
                Ok(s) => Reply::json(200, &s),
                Err(e) => Reply::from_api(e),
            }
        }
        ["v1", "switches", dpid, "flows"] => {
            *route = "/v1/switches/{dpid}/flows";
            let allow = "GET, POST, DELETE";
            if !matches!(method, Method::Get | Method::Post | Method::Delete) {
                return Reply::method_not_allowed(allow);
            }
            let dpid: Dpid = match dpid.parse() {
                Ok(d) => d,
                Err(e) => return Reply::error(400, e),
            };
            match method {
                Method::Get => get_flows(ctx, dpid, query, deadline),
                Method::Post => post_flows(ctx, dpid, query, body, deadline),
                _ => delete_flows(ctx, dpid, query, deadline),
            }
        }
        ["v1", "tracker"] => {
            *route = "/v1/tracker";
            if *method != Method::Get {
                return Reply::method_not_allowed("GET");
            }
            match ctx.api.tracker() {
                Ok(v) => Reply::json(200, &v),
                Err(e) => Reply::from_api(e),
            }
        }
        ["v1", "invalidate"] => {
            *route = "/v1/invalidate";
            if *method != Method::Post {
                return Reply::method_not_allowed("POST");
            }
            let mut ips = Vec::new();
            let (mut below, mut all) = (0u64, false);
            for part in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                match k {
                    "ip" => match v.parse() {
                        Ok(ip) => ips.push(ip),
                        Err(_) => return Reply::error(400, format!("bad ip {v:?}")),
                    },
                    "below_version" => match v.parse() {
                        Ok(n) => below = n,
                        Err(_) => return Reply::error(400, format!("bad below_version {v:?}: expected a number")),
                    },
                    "all" => match v {
                        "true" | "1" => all = true,
                        "false" | "0" => all = false,
                        _ => return Reply::error(400, format!("bad all {v:?}: expected true or false")),
                    },
                    _ => {
                        return Reply::error(
                            400,
                            format!("unknown query parameter {k:?}: expected ip, below_version or all"),
                        )
                    }
                }
            }
            if ips.is_empty() && below == 0 && !all {
                return Reply::error(400, "say what to invalidate: ip=..., below_version=N or all=true");
            }
            match ctx.api.invalidate(ips, below, all, deadline) {
                Ok(r) => Reply::json(200, &r),
                Err(e) => Reply::from_api(e),
            }
        }
        ["v1", "switches", dpid, kind @ ("groups" | "meters")] => {
            *route = if *kind == "groups" { "/v1/switches/{dpid}/groups" } else { "/v1/switches/{dpid}/meters" };
            if !matches!(method, Method::Get | Method::Post) {
                return Reply::method_not_allowed("GET, POST");
            }
            let dpid: Dpid = match dpid.parse() {
                Ok(d) => d,
                Err(e) => return Reply::error(400, e),
            };
            let groups = *kind == "groups";
            match method {
                Method::Get => {
                    if let Err(e) = parse_query(query, &[]) {
                        return Reply::error(400, e);
                    }
                    let r =
                        if groups { ctx.api.dump_groups(dpid, deadline) } else { ctx.api.dump_meters(dpid, deadline) };
                    match r {
                        Ok(v) => Reply::json(200, &v),
                        Err(e) => Reply::from_api(e),
                    }
                }
                _ => post_groups_or_meters(ctx, dpid, groups, query, body, deadline),
            }
        }
        _ => {
            *route = "other";
            Reply::error(404, format!("no such path {path:?}"))
        }
    }
}

/// `POST .../groups` or `.../meters`: one `add-group` / `add-meter` text per line,
/// `?command=add|modify|delete` (and `bundle=true` for groups).
fn post_groups_or_meters(
    ctx: &HttpContext,
    dpid: Dpid,
    groups: bool,
    query: &str,
    body: Body,
    deadline: Instant,
) -> Reply {
    let allowed: &[&str] = if groups { &["command", "bundle"] } else { &["command"] };
    let q = match parse_query(query, allowed) {
        Ok(q) => q,
        Err(e) => return Reply::error(400, e),
    };
    let mut command = "add";
    let mut bundle = false;
    for (k, v) in q {
        match (k, v) {
            ("command", "add" | "modify" | "delete") => command = v,
            ("command", _) => return Reply::error(400, format!("bad command {v:?}: expected add, modify or delete")),
            (_, "true" | "1") => bundle = true,
            (_, "false" | "0") => bundle = false,
            _ => return Reply::error(400, format!("bad bundle {v:?}: expected true or false")),
        }
    }
    let text = match body {
        Body::TooLarge => return Reply::error(413, format!("body larger than {MAX_BODY} bytes")),
        Body::Bytes(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => return Reply::error(400, "body is not UTF-8 text"),
        },
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // An empty delete means all of them, as `del-groups BR` / `del-meters BR` send.
    let lines = if lines.is_empty() && command == "delete" { vec![(1, "")] } else { lines };
    if lines.is_empty() {
        return Reply::error(400, "empty body: send one ovs-ofctl group or meter per line");
    }
    let r = if groups {
        use crate::openflow::text::group::{parse_group_mod, GroupCommand};
        let cmd = match command {
            "modify" => GroupCommand::Modify,
            "delete" => GroupCommand::Delete,
            _ => GroupCommand::Add,
        };
        let mut mods = Vec::new();
        for (n, l) in lines {
            match parse_group_mod(l, cmd) {
                Ok(g) => mods.push(g),
                Err(e) => return Reply::error(400, format!("line {n}: {e}")),
            }
        }
        ctx.api.group_mods(dpid, mods, bundle, deadline)
    } else {
        use crate::openflow::text::meter::{parse_meter_mod, MeterCommand};
        let cmd = match command {
            "modify" => MeterCommand::Modify,
            "delete" => MeterCommand::Delete,
            _ => MeterCommand::Add,
        };
        let mut mods = Vec::new();
        for (n, l) in lines {
            match parse_meter_mod(l, cmd) {
                Ok(m) => mods.push(m),
                Err(e) => return Reply::error(400, format!("line {n}: {e}")),
            }
        }
        ctx.api.meter_mods(dpid, mods, deadline)
    };
    match r {
        Ok(r) => Reply::json(200, &r),
        Err(e) => Reply::from_api(e),
    }
}

fn get_flows(ctx: &HttpContext, dpid: Dpid, query: &str, deadline: Instant) -> Reply {
    if let Err(e) = parse_query(query, &[]) {
        return Reply::error(400, e);
    }
    match ctx.api.dump_flows(dpid, deadline) {
        Ok(f) => Reply::json(200, &f),
        Err(e) => Reply::from_api(e),
    }
}

fn post_flows(ctx: &HttpContext, dpid: Dpid, query: &str, body: Body, deadline: Instant) -> Reply {
    let q = match parse_query(query, &["command", "bundle"]) {
        Ok(q) => q,
        Err(e) => return Reply::error(400, e),
    };
    let mut command = FlowCommand::Add;
    let mut bundle = false;
    for (k, v) in q {
        match k {
            "command" => match v.parse() {
                Ok(c) => command = c,
                Err(e) => return Reply::error(400, e),
            },
            _ => match v {
                "true" | "1" => bundle = true,
                "false" | "0" => bundle = false,
                _ => return Reply::error(400, format!("bad bundle {v:?}: expected true or false")),
            },
        }
    }
    let bytes = match body {
        Body::Bytes(b) => b,
        Body::TooLarge => return Reply::error(413, format!("body larger than {MAX_BODY} bytes")),
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => return Reply::error(400, "body is not UTF-8 text"),
    };
    let mut flows: Vec<FlowMod> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match FlowMod::parse(line, command.into()) {
            Ok(fm) => flows.push(fm),
            Err(e) => return Reply::error(400, format!("line {}: {e}", i + 1)),
        }
    }
    if flows.is_empty() {
        return Reply::error(400, "no flows in body: send one ovs-ofctl flow per line");
    }
    match ctx.api.flow_mods(dpid, command, flows, bundle, deadline) {
        Ok(r) => Reply::json(200, &r),
        Err(e) => Reply::from_api(e),
    }
}

/// `DELETE .../flows?cookie=..&cookie_mask=..&table=N&force=true`. A `cookie_mask` without a
/// `cookie` is refused (400: it is not cookie 0). A filter that can reach the flows the daemon
/// owns and keeps (dispatch and pipeline cookies; no filter at all reaches every flow) is refused
/// with 409 naming them unless `force=true`; the daemon then puts its flows back within a
/// second anyway (the pipeline audit), so `force` is for an operator who means it briefly.
fn delete_flows(ctx: &HttpContext, dpid: Dpid, query: &str, deadline: Instant) -> Reply {
    let q = match parse_query(query, &["cookie", "cookie_mask", "table", "force"]) {
        Ok(q) => q,
        Err(e) => return Reply::error(400, e),
    };
    let mut filter = DeleteFilter::default();
    let (mut cookie_given, mut mask_given, mut force) = (false, false, false);
    for (k, v) in q {
        match k {
            "cookie" => match parse_u64(v) {
                Some(c) => {
                    filter.cookie = c;
                    cookie_given = true;
                }
                None => return Reply::error(400, format!("bad cookie {v:?}: expected a number like 0x1f")),
            },
            "cookie_mask" => match parse_u64(v) {
                Some(m) => {
                    filter.cookie_mask = m;
                    mask_given = true;
                }
                None => return Reply::error(400, format!("bad cookie_mask {v:?}: expected a number like 0xff")),
            },
            "force" => match v {
                "true" | "1" => force = true,
                "false" | "0" => force = false,
                _ => return Reply::error(400, format!("bad force {v:?}: expected true or false")),
            },
            _ => match parse_u64(v) {
                Some(t) if t < 255 => filter.table = Some(t as u8),
                _ => return Reply::error(400, format!("bad table {v:?}: expected 0 to 254")),
            },
        }
    }
    if mask_given && !cookie_given {
        return Reply::error(400, "cookie_mask without cookie: say which cookie the masked bits must equal");
    }
    if cookie_given && !mask_given {
        filter.cookie_mask = u64::MAX;
    }
    let owned = filter.owned_hit();
    if !force && !owned.is_empty() {
        let names: Vec<&str> = owned
            .iter()
            .map(|c| match c {
                crate::pipeline::cookie::Category::Dispatch => "dispatch",
                _ => "pipeline",
            })
            .collect();
        let what = if cookie_given { "this cookie filter" } else { "a delete without a cookie filter" };
        return Reply::error(
            409,
            format!(
                "{what} would delete the daemon's own {} flows; name the flows with cookie=..&cookie_mask=.. \
                 (e.g. the manual category: cookie=0x{:x}&cookie_mask=0x{:x}), or add force=true \
                 (the daemon puts its flows back within a second)",
                names.join(" and "),
                crate::pipeline::cookie::make(0, crate::pipeline::cookie::Category::Manual, 0),
                crate::pipeline::cookie::CATEGORY_MASK,
            ),
        );
    }
    match ctx.api.delete_flows(dpid, filter, deadline) {
        Ok(r) => Reply::json(200, &r),
        Err(e) => Reply::from_api(e),
    }
}

/// Split `a=1&b=2`; every key must be in `allowed` and appear once.
fn parse_query<'a>(query: &'a str, allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        if !allowed.contains(&k) {
            return Err(if allowed.is_empty() {
                format!("unknown query parameter {k:?}: this route takes none")
            } else {
                format!("unknown query parameter {k:?}: expected one of {}", allowed.join(", "))
            });
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("query parameter {k:?} given twice"));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// A number in hex (`0x..`) or decimal.
fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

// === server ===

/// The running HTTP server: its listener and worker threads.
pub struct HttpServer {
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl HttpServer {
    /// Bind `addr` and start `workers` threads (at least one).
    pub fn start(addr: SocketAddr, ctx: HttpContext, workers: usize) -> Result<HttpServer, ControlError> {
        let server = Server::http(addr).map_err(|e| ControlError::HttpBind { addr, message: e.to_string() })?;
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let (srv, stop, ctx) = (server.clone(), stopping.clone(), ctx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("shardflow-http-{i}"))
                .spawn(move || worker(&srv, &stop, &ctx));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    let partial = HttpServer { server, workers: handles, stopping, addr: bound };
                    partial.stop();
                    return Err(ControlError::Thread(e));
                }
            }
        }
        tracing::info!(addr = %bound, "http endpoint listening");
        Ok(HttpServer { server, workers: handles, stopping, addr: bound })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop the workers, wait for them, and close the listener.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers {
            if w.join().is_err() {
                tracing::error!("an http worker panicked");
            }
        }
        // Dropping the last Arc<Server> tells tiny_http's accept thread to stop; that thread
        // owns the listening socket and closes it a moment later, unjoinable. Wait (bounded)
        // until the port can be bound again, so "stopped" really means "port released".
        drop(self.server);
        let until = Instant::now() + Duration::from_secs(1);
        while std::net::TcpListener::bind(self.addr).is_err() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn worker(server: &Server, stopping: &AtomicBool, ctx: &HttpContext) {
    loop {
        let req = server.recv();
        if stopping.load(Ordering::SeqCst) {
            // Unblocked for shutdown; a request received in the race is dropped (connection closes).
            return;
        }
        match req {
            Ok(req) => serve(ctx, req),
            Err(e) => {
                // E.g. out of file descriptors: do not spin on it.
                tracing::warn!(error = %e, "http accept failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn serve(ctx: &HttpContext, mut req: Request) {
    let body = read_body(&mut req);
    let method = req.method().clone();
    let url = req.url().to_string();
    let mut route: &'static str = "other";
    let reply = handle(ctx, &method, &url, body, &mut route);
    ctx.metrics.http_requests_total.with_label_values(&[route, &reply.status.to_string()]).inc();
    tracing::debug!(%method, %url, status = reply.status, "http request");
    let mut resp = Response::from_string(reply.body).with_status_code(reply.status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes()) {
        resp = resp.with_header(h);
    }
    if let Some(allow) = reply.allow {
        if let Ok(h) = Header::from_bytes(&b"Allow"[..], allow.as_bytes()) {
            resp = resp.with_header(h);
        }
    }
    if let Err(e) = req.respond(resp) {
        tracing::debug!(error = %e, "http response not delivered");
    }
}

fn read_body(req: &mut Request) -> Body {
    if req.body_length().is_some_and(|n| n > MAX_BODY) {
        return Body::TooLarge;
    }
    let mut buf = Vec::new();
    match req.as_reader().take(MAX_BODY as u64 + 1).read_to_end(&mut buf) {
        Ok(_) if buf.len() > MAX_BODY => Body::TooLarge,
        Ok(_) => Body::Bytes(buf),
        // A broken body reads as empty; the route then says what it missed.
        Err(_) => Body::Bytes(Vec::new()),
    }
}
