//! The HTTP endpoint: health, Prometheus metrics and the REST API, served by hyper (HTTP/1.1)
//! on the control runtime.
//!
//! Why hyper and not tiny_http (which the design first named): tiny_http panics in its accept
//! thread when the process runs out of file descriptors (the endpoint is then gone for good),
//! has no limit on the size of a request head, no header timeout, a thread per connection, and
//! reads a body in full before it can be refused. hyper (already built for tonic) gives each of
//! those bounds directly; what remains is ours, here:
//!
//! - **Accept errors never end the server**: counted (`shardflow_http_accept_errors_total`),
//!   logged at most every 10 s, retried after [`ACCEPT_BACKOFF`].
//! - **Connections capped** ([`HttpLimits::max_connections`], `http.max_connections`): one more
//!   is answered 503 and closed, counted in `shardflow_http_connections_refused_total`.
//! - **Request heads bounded**: at most [`MAX_HEADER_BYTES`] and [`MAX_HEADERS`] lines (hyper
//!   answers 431 and closes), received within `http.header_timeout_ms` (else hyper closes the
//!   connection; an idle kept-alive connection is closed after the same time). A body must
//!   arrive within the request's deadline (else 408, closed).
//! - **Bodies bounded**: a `Content-Length` over [`MAX_BODY`] is answered 413 at once, the body
//!   never read, the connection closed; a chunked body is cut at [`MAX_BODY`] (413 as well).
//! - **Two lanes**: `/healthz`, `/readyz` and `/metrics` take a slot among [`LIGHT_IN_FLIGHT`]
//!   of their own; every other request one among `http.max_in_flight`. A light request never
//!   queues behind a flow dump. A heavy request that finds no slot before its deadline gets 503.
//! - **The runtime never waits**: [`handle`] (whose [`ControlApi`] calls wait for a shard, each
//!   until its deadline) runs on tokio's blocking pool, sized by [`blocking_threads`], never on
//!   the runtime's own thread, which also runs the gRPC clients and servers.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /healthz` | 200 `ok`, or 503 with the reason |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /v1/switches` | JSON array of [`SwitchInfo`](super::api::SwitchInfo) |
//! | `GET /v1/shards` | JSON array of [`ShardStats`](super::api::ShardStats) |
//! | `GET /v1/switches/{dpid}/flows` | JSON array of `ovs-ofctl dump-flows` lines |
//! | `GET /v1/switches/{dpid}/offload?profile=NAME&flows=blocked` | JSON [`Report`](crate::offload::report::Report): which of the switch's flows a NIC could offload, and why not (400 unknown profile; `flows=all|blocked|none`) |
//! | `POST /v1/switches/{dpid}/flows?command=add&bundle=false` | body: one flow per line (`#` comments and blank lines skipped); JSON [`FlowModReply`](super::api::FlowModReply) |
//! | `DELETE /v1/switches/{dpid}/flows?cookie=0x..&cookie_mask=0x..&table=N&force=false` | JSON [`FlowModReply`](super::api::FlowModReply); `cookie` without `cookie_mask` means an exact cookie; `cookie_mask` without `cookie` is a 400; 409 when the filter (or no filter) can reach the daemon's dispatch or pipeline flows, unless `force=true` |
//! | `GET /readyz` | 200 `ready` when every shard listens and every connected bridge has its pipeline installed and intact; 503 naming the dpid otherwise |
//!
//! Every route but `/healthz`, `/readyz`, `/metrics`, `/v1/switches` and `/v1/shards` needs
//! `Authorization: Bearer <token>` ([`super::auth`], docs/security.md); without it, or with a
//! wrong one, 401 with `WWW-Authenticate: Bearer`, before the body is read or a slot taken.
//!
//! Errors are JSON `{"error": "..."}` naming the problem: 400 (bad dpid, query or flow text,
//! naming the line), 404 (unknown path or switch), 405 (wrong method, with `Allow`), 413 (body
//! over 1 MiB), 409 (a delete that would hit the daemon's own flows), 502 (switch refused: `openflow_error` holds the OpenFlow error name, or another
//! failure), 503 (not ready), 504 (no answer before the deadline).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api::{ApiError, ControlApi, DeleteFilter, Dpid, FlowCommand};
use super::auth::HttpAuth;
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
    /// Who may call what (docs/security.md): checked by [`handle`] before any route.
    pub auth: HttpAuth,
}

/// A response before it is turned into an HTTP one (and what the tests inspect).
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
            ApiError::BadRequest(_) => Reply::error(400, e.to_string()),
        }
    }
}

/// The request body as read: the bytes, or "too large".
pub enum Body {
    Bytes(Vec<u8>),
    TooLarge,
}

// === routing ===

/// The route label of requests refused for want of a valid token.
pub const UNAUTHORIZED_ROUTE: &str = "unauthorized";

/// 401 with the reason (the `WWW-Authenticate: Bearer` header is added by the server).
fn unauthorized(why: &str) -> Reply {
    Reply::error(401, format!("unauthorized: {why} (see docs/security.md)"))
}

/// Answer one request. `authorization` is the `Authorization` header's value, if any; a
/// route that needs the token answers 401 without it ([`HttpAuth::refuse`]), before anything
/// else is looked at. `route` is set to the route template for the metrics label.
pub fn handle(
    ctx: &HttpContext,
    method: &Method,
    url: &str,
    authorization: Option<&[u8]>,
    body: Body,
    route: &mut &'static str,
) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    if let Some(why) = ctx.auth.refuse(path, authorization) {
        *route = UNAUTHORIZED_ROUTE;
        return unauthorized(why);
    }
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
        ["v1", "switches", dpid, "offload"] => {
            *route = "/v1/switches/{dpid}/offload";
            if *method != Method::Get {
                return Reply::method_not_allowed("GET");
            }
            let dpid: Dpid = match dpid.parse() {
                Ok(d) => d,
                Err(e) => return Reply::error(400, e),
            };
            get_offload(ctx, dpid, query, deadline)
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

/// `GET .../offload?profile=NAME&flows=blocked|all|none`: the offload report of the switch's
/// flows (`offload::report`). Built-in profiles only: a caller cannot make the daemon read a
/// file. Under the default profile it refreshes `shardflow_offloadable_flows_ratio`.
fn get_offload(ctx: &HttpContext, dpid: Dpid, query: &str, deadline: Instant) -> Reply {
    let q = match parse_query(query, &["profile", "flows"]) {
        Ok(q) => q,
        Err(e) => return Reply::error(400, e),
    };
    let get = |k: &str| q.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let profile = match crate::offload::Profile::builtin(get("profile").unwrap_or(crate::offload::DEFAULT_PROFILE)) {
        Ok(p) => p,
        Err(e) => return Reply::error(400, e.to_string()),
    };
    let keep = get("flows").unwrap_or("blocked");
    if !matches!(keep, "blocked" | "all" | "none") {
        return Reply::error(400, format!("bad flows {keep:?}: expected blocked, all or none"));
    }
    let lines = match ctx.api.dump_flows(dpid, deadline) {
        Ok(l) => l,
        Err(e) => return Reply::from_api(e),
    };
    let mut report = crate::offload::report::analyze_dump(&profile, &lines);
    if profile.name == crate::offload::DEFAULT_PROFILE {
        ctx.metrics.set_offloadable_ratios(report.tables.iter().map(|t| (t.table, t.share.ratio)));
    }
    match keep {
        "none" => report.flows.clear(),
        "blocked" => report.flows.retain(|f| !f.offloadable),
        _ => {}
    }
    Reply::json(200, &report)
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

// === method ===

/// The request method, as `handle` sees it (the variant names tiny_http used, so routing code
/// reads the same whichever transport feeds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    NonStandard(String),
}

impl From<&hyper::Method> for Method {
    fn from(m: &hyper::Method) -> Method {
        match *m {
            hyper::Method::GET => Method::Get,
            hyper::Method::HEAD => Method::Head,
            hyper::Method::POST => Method::Post,
            hyper::Method::PUT => Method::Put,
            hyper::Method::DELETE => Method::Delete,
            hyper::Method::CONNECT => Method::Connect,
            hyper::Method::OPTIONS => Method::Options,
            hyper::Method::TRACE => Method::Trace,
            hyper::Method::PATCH => Method::Patch,
            _ => Method::NonStandard(m.as_str().to_string()),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::NonStandard(s) => s,
        })
    }
}

// === server ===

/// Largest request head (request line and headers) accepted; a larger one is answered 431 and
/// the connection closed. hyper's own floor for its read buffer is 8 KiB.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Most header lines in one request (hyper answers 431 past it).
pub const MAX_HEADERS: usize = 64;
/// Light requests (`/healthz`, `/readyz`, `/metrics`) handled at once; more wait for a slot.
pub const LIGHT_IN_FLIGHT: usize = 4;
/// Pause after a failed accept (out of file descriptors, usually) before trying again: the
/// pending connection stays in the backlog, so spinning would only burn the control thread.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Blocking threads the control runtime may start: every lane full, plus a few for tokio's own
/// use (name resolution of the gRPC client).
pub fn blocking_threads(limits: &HttpLimits) -> usize {
    limits.max_in_flight.max(1) + LIGHT_IN_FLIGHT + 4
}

pub use crate::config::HttpLimits;

/// A bound HTTP listener, not yet serving: binding happens before the control thread starts,
/// so a port in use is a start-up error, and serving runs on the control runtime.
pub struct HttpServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl HttpServer {
    /// Bind `addr` (non-blocking, for tokio).
    pub fn bind(addr: SocketAddr) -> Result<HttpServer, ControlError> {
        let err = |e: std::io::Error| ControlError::HttpBind { addr, message: e.to_string() };
        let listener = std::net::TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let bound = listener.local_addr().map_err(err)?;
        Ok(HttpServer { listener, addr: bound })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until `stop` fires, on the current tokio runtime (which must have the time driver
    /// and room for [`blocking_threads`] blocking threads). Returns when the listener is closed;
    /// connections still open are asked to finish their request and close.
    pub async fn serve(self, ctx: HttpContext, limits: HttpLimits, stop: super::ShutdownSignal) {
        let addr = self.addr;
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, error = %e, "http endpoint cannot start");
                return;
            }
        };
        tracing::info!(%addr, ?limits, "http endpoint listening");
        let lanes = Arc::new(Lanes {
            ctx,
            heavy: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            light: Arc::new(Semaphore::new(LIGHT_IN_FLIGHT)),
        });
        let conns = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let mut last_warning: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait() => break,
            };
            let metrics = &lanes.ctx.metrics;
            match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = conns.clone().try_acquire_owned() else {
                        metrics.http_connections_refused_total.inc();
                        tracing::debug!(%peer, "http connection refused: too many open");
                        refuse(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, lanes.clone(), limits, stop.clone(), permit));
                }
                Err(e) => {
                    metrics.http_accept_errors_total.inc();
                    // Rate-limited: under fd exhaustion this fails every ACCEPT_BACKOFF.
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "http accept failed; retrying");
                        last_warning = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = stop.wait() => break,
                    }
                }
            }
        }
        tracing::debug!(%addr, "http endpoint closed");
    }
}

/// Answer 503 to a connection over the cap without waiting for anything: whatever fits in the
/// socket buffer now is written, then the socket is closed.
fn refuse(stream: tokio::net::TcpStream) {
    const BODY: &str = "{\"error\":\"too many http connections\"}";
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(resp.as_bytes());
}

/// What every connection shares: the handler context and the two lanes.
struct Lanes {
    ctx: HttpContext,
    /// Slots for heavy requests (REST calls that ask the shards or parse bodies).
    heavy: Arc<Semaphore>,
    /// Slots for health and metrics: never taken by a heavy request, so these never queue
    /// behind a flow dump.
    light: Arc<Semaphore>,
}

/// One connection, HTTP/1.1 with keep-alive, within [`MAX_HEADER_BYTES`] and the header timeout.
async fn connection(
    stream: tokio::net::TcpStream,
    lanes: Arc<Lanes>,
    limits: HttpLimits,
    stop: super::ShutdownSignal,
    _slot: OwnedSemaphorePermit,
) {
    let svc = service_fn(move |req| respond(lanes.clone(), req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.wait() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection ended");
    }
}

/// The route of `path` if it is a light one (served from its own lane), else None.
fn light_route(path: &str) -> Option<&'static str> {
    match path.trim_end_matches('/') {
        "/healthz" => Some("/healthz"),
        "/readyz" => Some("/readyz"),
        "/metrics" => Some("/metrics"),
        _ => None,
    }
}

type HttpResponse = hyper::Response<Full<Bytes>>;

/// One request: the body limit checked from `Content-Length` before anything is read, a slot
/// in its lane, then [`handle`] on a blocking thread (the `ControlApi` calls wait for shards;
/// the control runtime itself never waits).
async fn respond(lanes: Arc<Lanes>, req: hyper::Request<Incoming>) -> Result<HttpResponse, Infallible> {
    let started = Instant::now();
    let ctx = &lanes.ctx;
    let method = Method::from(req.method());
    let url = req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |pq| pq.as_str().to_string());
    let light = light_route(req.uri().path());
    let deadline = started + ctx.request_timeout;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let has_body = declared.is_some_and(|n| n > 0) || req.headers().contains_key(hyper::header::TRANSFER_ENCODING);

    // 413 from the header alone: the body is never read (and the connection is closed, since
    // its unread bytes would otherwise be taken for the next request).
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        let reply = Reply::error(413, format!("body larger than {MAX_BODY} bytes"));
        return Ok(to_response(ctx, "too_large", &method, &url, reply, true));
    }

    // Refused before taking a lane slot or reading a body: a caller without the token costs
    // nothing but this answer. (`handle` checks again; this is only the early exit.)
    let authorization = req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
    if let Some(why) = ctx.auth.refuse(req.uri().path(), authorization.as_deref()) {
        return Ok(to_response(ctx, UNAUTHORIZED_ROUTE, &method, &url, unauthorized(why), has_body));
    }

    let lane = if light.is_some() { &lanes.light } else { &lanes.heavy };
    let permit = match tokio::time::timeout_at(deadline.into(), lane.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => {
            let reply = Reply::error(503, "too many requests in progress; try again");
            return Ok(to_response(ctx, light.unwrap_or("busy"), &method, &url, reply, has_body));
        }
    };

    // The body, within MAX_BODY and the request's deadline. Whenever it is not read to its end
    // the connection is closed after the answer.
    let body = if has_body {
        let limited = Limited::new(req.into_body(), MAX_BODY);
        match tokio::time::timeout_at(deadline.into(), limited.collect()).await {
            Ok(Ok(b)) => Body::Bytes(b.to_bytes().to_vec()),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Body::TooLarge,
            Ok(Err(e)) => {
                let reply = Reply::error(400, format!("cannot read the request body: {e}"));
                return Ok(to_response(ctx, "bad_body", &method, &url, reply, true));
            }
            Err(_) => {
                let reply = Reply::error(408, "request body not received before the deadline");
                return Ok(to_response(ctx, "bad_body", &method, &url, reply, true));
            }
        }
    } else {
        Body::Bytes(Vec::new())
    };
    let close = matches!(body, Body::TooLarge);

    let work_ctx = ctx.clone();
    let (m, u) = (method.clone(), url.clone());
    let work = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut route: &'static str = "other";
        let reply = handle(&work_ctx, &m, &u, authorization.as_deref(), body, &mut route);
        (route, reply)
    });
    // The api answers by its deadline; this bound only guards against one that does not.
    let guard = deadline + API_GRACE;
    let (route, reply) = match tokio::time::timeout_at(guard.into(), work).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::error!(error = %e, %url, "http handler panicked");
            ("other", Reply::error(500, "internal error"))
        }
        Err(_) => ("other", Reply::error(504, "no answer before the deadline")),
    };
    Ok(to_response(ctx, route, &method, &url, reply, close))
}

/// Time past a request's deadline after which a handler that has not returned is answered 504
/// anyway (its blocking thread and lane slot stay taken until it does return).
const API_GRACE: Duration = Duration::from_millis(500);

fn to_response(
    ctx: &HttpContext,
    route: &'static str,
    method: &Method,
    url: &str,
    reply: Reply,
    close: bool,
) -> HttpResponse {
    ctx.metrics.http_requests_total.with_label_values(&[route, &reply.status.to_string()]).inc();
    tracing::debug!(%method, %url, status = reply.status, "http request");
    let mut resp = hyper::Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(reply.content_type));
    if let Some(allow) = reply.allow {
        headers.insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static(allow));
    }
    if reply.status == 401 {
        headers.insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"shardflow\""),
        );
    }
    if close {
        headers.insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    }
    resp
}
