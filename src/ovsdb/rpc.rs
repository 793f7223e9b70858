//! The JSON-RPC session of RFC 7047 section 4, without IO: numbers our requests, remembers which
//! are waiting for an answer (bounded), answers the server's `echo` (its liveness probe: no
//! answer and it drops the connection), and sorts what arrives into responses and `update`
//! notifications.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::OvsdbError;

/// Default bound on requests waiting for an answer on one connection.
pub const DEFAULT_MAX_PENDING: usize = 256;

/// What one received message means.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The answer to request `id` (`method` is what was asked).
    Response { id: u64, method: String, outcome: Result<Value, RpcError> },
    /// A monitor's `update` notification: `monitor` is the id given to `monitor`, `updates` the
    /// `<table-updates>` object.
    Update { monitor: Value, updates: Value },
    /// Bytes to send back at once (the answer to an `echo`, or an error for an unknown request).
    Send(Vec<u8>),
    /// Nothing to do (a notification we do not use, an answer nobody waits for any more).
    Ignored(&'static str),
}

/// An error answer (`"error": {"error": ..., "details": ...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub error: String,
    pub details: Option<String>,
}

/// The session state of one connection.
#[derive(Debug)]
pub struct Session {
    next_id: u64,
    pending: HashMap<u64, String>,
    max_pending: usize,
    /// Requests refused because `max_pending` were waiting.
    pub refused_pending: u64,
}

impl Session {
    pub fn new(max_pending: usize) -> Session {
        Session { next_id: 1, pending: HashMap::new(), max_pending, refused_pending: 0 }
    }

    /// Requests waiting for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A new request: its id and its bytes. Refused (and counted) when `max_pending` wait.
    pub fn request(&mut self, method: &str, params: Value) -> Result<(u64, Vec<u8>), OvsdbError> {
        if self.pending.len() >= self.max_pending {
            self.refused_pending += 1;
            return Err(OvsdbError::TooManyPending { limit: self.max_pending });
        }
        let id = self.next_id;
        self.next_id += 1;
        let bytes = serde_json::to_vec(&json!({"method": method, "params": params, "id": id}))
            .map_err(|e| OvsdbError::Protocol(e.to_string()))?;
        self.pending.insert(id, method.to_string());
        Ok((id, bytes))
    }

    /// Forgets a request whose caller stopped waiting (its answer, if it comes, is ignored).
    pub fn cancel(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    /// Sorts one received message. A message that is not a JSON-RPC object is an error (the
    /// connection is then closed: the peer does not speak OVSDB).
    pub fn handle(&mut self, msg: Value) -> Result<Event, OvsdbError> {
        let Value::Object(mut obj) = msg else {
            return Err(OvsdbError::Protocol("a message that is not a JSON object".into()));
        };
        let id = obj.remove("id").unwrap_or(Value::Null);
        if let Some(method) = obj.get("method").and_then(Value::as_str).map(str::to_string) {
            let params = obj.remove("params").unwrap_or(Value::Null);
            return Ok(match (method.as_str(), id.is_null()) {
                // A request: only `echo` is defined for a server to send.
                ("echo", false) => Event::Send(encode(&json!({"result": params, "error": null, "id": id}))?),
                (_, false) => Event::Send(encode(&json!({"result": null, "error": "unknown method", "id": id}))?),
                ("update", true) => match params {
                    Value::Array(mut p) if p.len() == 2 => {
                        let updates = p.pop().unwrap_or(Value::Null);
                        let monitor = p.pop().unwrap_or(Value::Null);
                        Event::Update { monitor, updates }
                    }
                    _ => return Err(OvsdbError::Protocol("update notification without [id, updates]".into())),
                },
                _ => Event::Ignored("notification"),
            });
        }
        let Some(id) = id.as_u64() else {
            // Answers to requests we never send (string ids) or malformed ones.
            return Ok(Event::Ignored("response with an id we do not use"));
        };
        let Some(method) = self.pending.remove(&id) else {
            return Ok(Event::Ignored("response nobody waits for"));
        };
        let error = obj.remove("error").unwrap_or(Value::Null);
        let outcome =
            if error.is_null() { Ok(obj.remove("result").unwrap_or(Value::Null)) } else { Err(rpc_error(&error)) };
        Ok(Event::Response { id, method, outcome })
    }
}

fn encode(v: &Value) -> Result<Vec<u8>, OvsdbError> {
    serde_json::to_vec(v).map_err(|e| OvsdbError::Protocol(e.to_string()))
}

/// An `error` member: `{"error": "...", "details": "..."}` or a bare string.
pub fn rpc_error(e: &Value) -> RpcError {
    match e {
        Value::String(s) => RpcError { error: s.clone(), details: None },
        Value::Object(o) => RpcError {
            error: o.get("error").and_then(Value::as_str).unwrap_or("error").to_string(),
            details: o.get("details").and_then(Value::as_str).map(str::to_string),
        },
        other => RpcError { error: other.to_string(), details: None },
    }
}

/// The results of a `transact` (RFC 7047 5.2): one per operation, and one more for a commit
/// failure. The first operation error becomes [`OvsdbError::Operation`] naming its index.
pub fn transact_results(result: Value) -> Result<Vec<Value>, OvsdbError> {
    let Value::Array(results) = result else {
        return Err(OvsdbError::Protocol("transact result is not an array".into()));
    };
    for (index, r) in results.iter().enumerate() {
        // An operation's error is the result object itself: {"error": ..., "details": ...}.
        if r.get("error").is_some_and(|e| !e.is_null()) {
            let e = rpc_error(r);
            return Err(OvsdbError::Operation { index, error: e.error, details: e.details });
        }
    }
    Ok(results)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_numbered_and_bounded() {
        let mut s = Session::new(2);
        let (a, bytes) = s.request("list_dbs", json!([])).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v, json!({"method": "list_dbs", "params": [], "id": a}));
        let (b, _) = s.request("list_dbs", json!([])).unwrap();
        assert_ne!(a, b);
        assert!(matches!(s.request("x", json!([])), Err(OvsdbError::TooManyPending { limit: 2 })));
        assert_eq!(s.refused_pending, 1);
        // An answer frees a place.
        let ev = s.handle(json!({"id": a, "result": ["Open_vSwitch"], "error": null})).unwrap();
        assert_eq!(ev, Event::Response { id: a, method: "list_dbs".into(), outcome: Ok(json!(["Open_vSwitch"])) });
        assert_eq!(s.pending(), 1);
        s.cancel(b);
        assert_eq!(
            s.handle(json!({"id": b, "result": [], "error": null})).unwrap(),
            Event::Ignored("response nobody waits for")
        );
    }

    #[test]
    fn echo_is_answered_with_its_params_and_id() {
        let mut s = Session::new(4);
        // ovsdb-server's inactivity probe, as it sends it.
        let ev = s.handle(json!({"id": "echo", "method": "echo", "params": []})).unwrap();
        let Event::Send(bytes) = ev else { panic!("{ev:?}") };
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v, json!({"id": "echo", "result": [], "error": null}));
        let ev = s.handle(json!({"id": 9, "method": "steal", "params": []})).unwrap();
        let Event::Send(bytes) = ev else { panic!("{ev:?}") };
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"], "unknown method");
    }

    #[test]
    fn updates_errors_and_garbage() {
        let mut s = Session::new(4);
        let ev = s.handle(json!({"id": null, "method": "update", "params": ["m", {"Bridge": {}}]})).unwrap();
        assert_eq!(ev, Event::Update { monitor: json!("m"), updates: json!({"Bridge": {}}) });
        assert!(s.handle(json!({"id": null, "method": "update", "params": ["m"]})).is_err());
        assert!(s.handle(json!([1, 2])).is_err());
        let (id, _) = s.request("transact", json!([])).unwrap();
        let ev = s
            .handle(json!({"id": id, "result": null, "error": {"error": "unknown database", "details": "x"}}))
            .unwrap();
        let Event::Response { outcome: Err(e), .. } = ev else { panic!("{ev:?}") };
        assert_eq!(e, RpcError { error: "unknown database".into(), details: Some("x".into()) });
    }

    #[test]
    fn transact_results_name_the_failed_operation() {
        let ok = transact_results(json!([{"uuid": ["uuid", "u"]}, {"count": 1}])).unwrap();
        assert_eq!(ok.len(), 2);
        // A commit-time failure: one result more than operations (here 1 operation).
        let e = transact_results(json!([{"uuid": ["uuid", "u"]}, {"error": "constraint violation", "details": "dup"}]))
            .unwrap_err();
        match e {
            OvsdbError::Operation { index, error, details } => {
                assert_eq!((index, error.as_str(), details.as_deref()), (1, "constraint violation", Some("dup")))
            }
            other => panic!("{other:?}"),
        }
        assert!(transact_results(json!({})).is_err());
    }
}
