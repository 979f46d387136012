//! A stand-in for the Nomad Task API socket, behaving as
//! `docs/nomad-facts.md` describes: token checks as with ACLs on (401
//! without, 403 for an unknown UUID, 500 for a JWT past its `exp` or one it
//! did not issue), the endpoints of every allowlist group with Nomad's
//! response shapes and `X-Nomad-*` headers, blocking queries, Prometheus
//! text, an NDJSON event stream, and 404 with an empty body for the rest.
//!
//! It records every request that reaches it, counts connections, and can be
//! stopped and restarted on the same path. Standard library only: one thread
//! per connection, every wait bounded.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request as it reached the socket.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The values of header `name` in `headers`, in order, names compared
/// case-insensitively.
pub fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

impl Recorded {
    /// The values of a header, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }
}

/// Options for a stand-in.
#[derive(Clone, Debug)]
pub struct Options {
    /// Tokens the socket accepts.
    pub tokens: Vec<String>,
    /// Size of the `?format=prometheus` body, roughly (at least the fixed metrics).
    pub metrics_bytes: usize,
    /// How long every response is delayed (0 for none).
    pub delay: Duration,
    /// Close a connection, unanswered, when a second request arrives on it:
    /// an agent dropping a kept-alive connection just as it is reused.
    pub drop_reused: bool,
    /// Hold every `?format=prometheus` response until [`StandIn::release_metrics`].
    pub hold_metrics: bool,
    /// The status of `?format=prometheus` responses (Nomad answers 415
    /// `Prometheus is not enabled` when its telemetry does not export them).
    pub metrics_status: u16,
    /// Stall every response body longer than this many bytes once that many
    /// are sent, until [`StandIn::release_body`] (the rest follows) or
    /// [`StandIn::cut_body`] (the connection is closed instead).
    pub stall_body_after: Option<usize>,
}

impl Options {
    pub fn new(token: &str) -> Options {
        Options {
            tokens: vec![token.to_string()],
            metrics_bytes: 0,
            delay: Duration::ZERO,
            drop_reused: false,
            hold_metrics: false,
            metrics_status: 200,
            stall_body_after: None,
        }
    }
}

#[derive(Default)]
struct State {
    tokens: Mutex<Vec<String>>,
    requests: Mutex<Vec<Recorded>>,
    /// Notified at each request recorded: the latch of [`StandIn::wait_for_requests`].
    recorded: Condvar,
    connections: AtomicUsize,
    stop: AtomicBool,
    /// Open connections by number, so that stop() can close them.
    open: Mutex<HashMap<usize, UnixStream>>,
    /// Events of the event stream released by the test.
    released: Mutex<u64>,
    release: Condvar,
    index: AtomicU64,
    metrics_body: Vec<u8>,
    delay: Duration,
    drop_reused: bool,
    /// Open once the test released the held metrics responses.
    metrics_gate: Mutex<bool>,
    metrics_opened: Condvar,
    metrics_status: u16,
    stall_body_after: Option<usize>,
    /// Where stalled bodies stand: released, cut, and how many have stalled.
    body_gate: Mutex<BodyGate>,
    body_moved: Condvar,
    /// Requests still to be closed unanswered ([`StandIn::drop_next`]).
    drop_next: AtomicUsize,
    /// Bytes read on upgraded connections ([`StandIn::tunnelled`]).
    tunnelled: AtomicUsize,
}

#[derive(Default)]
struct BodyGate {
    released: bool,
    cut: bool,
    stalled: usize,
}

/// A running stand-in. Stops (closing every connection and removing the
/// socket file) when dropped.
pub struct StandIn {
    path: PathBuf,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

/// The fixed part of the Prometheus response; tests look for these lines,
/// and the Grafana dashboard's Nomad panels (conf/grafana/) read them: the
/// names Nomad's client gives them, under go-metrics' "nomad" prefix
/// (hashicorp/nomad client/client.go: emitClientMetrics for the gauge of
/// running allocations, `client.allocations.running`, not the counter
/// `client.allocs.running` that task runners bump; setGaugeForMemoryStats
/// and setGaugeForCPUStats for the host, with publish_node_metrics).
pub const PROMETHEUS_HEAD: &str =
    "# HELP nomad_client_allocations_running nomad_client_allocations_running\n\
# TYPE nomad_client_allocations_running gauge\n\
nomad_client_allocations_running{datacenter=\"dc1\",node_class=\"none\"} 3\n\
# HELP nomad_client_uptime Client uptime in seconds\n\
# TYPE nomad_client_uptime gauge\n\
nomad_client_uptime{datacenter=\"dc1\",node_class=\"none\"} 4242\n\
# HELP nomad_client_host_memory_total nomad_client_host_memory_total\n\
# TYPE nomad_client_host_memory_total gauge\n\
nomad_client_host_memory_total{datacenter=\"dc1\",node_class=\"none\"} 8.3e+09\n\
# HELP nomad_client_host_memory_used nomad_client_host_memory_used\n\
# TYPE nomad_client_host_memory_used gauge\n\
nomad_client_host_memory_used{datacenter=\"dc1\",node_class=\"none\"} 2.1e+09\n\
# HELP nomad_client_host_cpu_idle nomad_client_host_cpu_idle\n\
# TYPE nomad_client_host_cpu_idle gauge\n\
nomad_client_host_cpu_idle{cpu=\"cpu\",datacenter=\"dc1\",node_class=\"none\"} 97.5\n";

pub const HEALTH_BODY: &str = r#"{"client":{"ok":true,"message":"ok"}}"#;
/// `/v1/metrics` without `format=prometheus`: the agent's in-memory metrics.
pub const METRICS_JSON: &str = r#"{"Timestamp":"2026-11-25 08:00:00 +0000 UTC","Gauges":[{"Name":"nomad.client.allocations.running","Value":3,"Labels":{}}],"Counters":[],"Samples":[],"Points":[]}"#;
/// The same with `pretty`.
pub const METRICS_JSON_PRETTY: &str = "{\n    \"Timestamp\": \"2026-11-25 08:00:00 +0000 UTC\",\n    \"Gauges\": [\n        {\n            \"Name\": \"nomad.client.allocations.running\",\n            \"Value\": 3,\n            \"Labels\": {}\n        }\n    ],\n    \"Counters\": [],\n    \"Samples\": [],\n    \"Points\": []\n}\n";
pub const NODE_ID: &str = "f7476465-4d6e-c0de-26d0-e383c49be941";
pub const START_INDEX: u64 = 42;

/// How often the accept loop checks for new connections and for stop().
const ACCEPT_POLL: Duration = Duration::from_millis(1);

/// The Prometheus text body for a given size.
pub fn prometheus_body(min_bytes: usize) -> Vec<u8> {
    let mut body = PROMETHEUS_HEAD.as_bytes().to_vec();
    let mut i = 0;
    while body.len() < min_bytes {
        body.extend_from_slice(
            format!(
                "nomad_client_host_cpu_idle{{cpu=\"cpu{i}\",datacenter=\"dc1\",node_id=\"{NODE_ID}\"}} 97.{i}\n"
            )
            .as_bytes(),
        );
        i += 1;
    }
    body
}

impl StandIn {
    /// Listens on `path` (removing a stale socket file first).
    pub fn start(path: &Path, options: Options) -> StandIn {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the stand-in socket");
        let state = Arc::new(State {
            tokens: Mutex::new(options.tokens),
            index: AtomicU64::new(START_INDEX),
            metrics_body: prometheus_body(options.metrics_bytes),
            delay: options.delay,
            drop_reused: options.drop_reused,
            metrics_gate: Mutex::new(!options.hold_metrics),
            metrics_status: options.metrics_status,
            stall_body_after: options.stall_body_after,
            ..State::default()
        });
        // Non-blocking accept, polled: stop() must work even when the socket
        // file is already gone (so nothing could connect to wake a blocked
        // accept).
        listener
            .set_nonblocking(true)
            .expect("make the stand-in listener non-blocking");
        let accept_state = Arc::clone(&state);
        let accept = std::thread::spawn(move || {
            while !accept_state.stop.load(Ordering::SeqCst) {
                let conn = match listener.accept() {
                    Ok((conn, _)) => conn,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(ACCEPT_POLL);
                        continue;
                    }
                    Err(_) => continue,
                };
                if conn.set_nonblocking(false).is_err() {
                    continue;
                }
                let id = accept_state.connections.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = conn.try_clone() {
                    accept_state.open.lock().unwrap().insert(id, clone);
                }
                let state = Arc::clone(&accept_state);
                std::thread::spawn(move || {
                    serve(&conn, &state);
                    // Done with it: close it for real (stop() holds a clone).
                    state.open.lock().unwrap().remove(&id);
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        StandIn {
            path: path.to_path_buf(),
            state,
            accept: Some(accept),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every request that reached the socket so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many bytes upgraded connections have carried to the socket.
    pub fn tunnelled(&self) -> usize {
        self.state.tunnelled.load(Ordering::SeqCst)
    }

    /// How many connections the socket accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Lets the event stream send its next gated event.
    pub fn release_event(&self) {
        *self.state.released.lock().unwrap() += 1;
        self.state.release.notify_all();
    }

    /// Lets every held metrics response go, now and from now on.
    pub fn release_metrics(&self) {
        *self.state.metrics_gate.lock().unwrap() = true;
        self.state.metrics_opened.notify_all();
    }

    /// Raises X-Nomad-Index, ending blocking queries.
    pub fn bump_index(&self) {
        self.state.index.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits until `n` requests have been recorded, up to `timeout` (a
    /// latch: woken by each request recorded, no polling).
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let requests = self.state.requests.lock().unwrap();
        let (requests, _) = self
            .state
            .recorded
            .wait_timeout_while(requests, timeout, |r| r.len() < n)
            .unwrap();
        requests.len() >= n
    }

    fn stop_now(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // The accept loop sees the flag within one poll; then close every
        // connection it handed out.
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for (_, conn) in self.state.open.lock().unwrap().drain() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        self.state.release.notify_all();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// A parsed request.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).first().copied()
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The first value of query parameter `name`, as Nomad reads it: Go's
    /// `url.ParseQuery` (split on `&`; a piece with `;` or a bad escape
    /// dropped; `+` a space; escapes decoded once; no parameter at all past
    /// 10,000, `net/url` `parseQuery`), then `Values.Get`.
    fn param(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        if query.matches('&').count() + 1 > GO_MAX_QUERY_PARAMS {
            return None;
        }
        query
            .split('&')
            .filter(|piece| !piece.is_empty() && !piece.contains(';'))
            .filter_map(|piece| {
                let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
                Some((go_unescape(k)?, go_unescape(v)?))
            })
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Go's `url.ParseQuery` reads no parameter from a query with more (the
/// `urlmaxqueryparams` default).
const GO_MAX_QUERY_PARAMS: usize = 10_000;

/// Go's `url.QueryUnescape`; `None` where it fails.
fn go_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn serve(conn: &UnixStream, state: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let (Ok(mut writer), Ok(reader)) = (conn.try_clone(), conn.try_clone()) else {
        return;
    };
    let mut reader = BufReader::new(reader);
    // Bounded: a connection serves at most this many requests.
    for served in 0..100_000 {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(req) = read_request(&mut reader) else {
            return;
        };
        state.requests.lock().unwrap().push(Recorded {
            method: req.method.clone(),
            target: req.target.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
        });
        state.recorded.notify_all();
        if state.drop_reused && served > 0 {
            return;
        }
        if take_one(&state.drop_next) {
            return;
        }
        if !state.delay.is_zero() {
            std::thread::sleep(state.delay);
        }
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if respond(&mut writer, &req, state).is_err() || close {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<UnixStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    for _ in 0..200 {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = req.header("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        req.body = body;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        req.body = read_chunked(reader)?;
    }
    Some(req)
}

fn read_chunked(reader: &mut BufReader<UnixStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    for _ in 0..100_000 {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            let mut end = String::new();
            reader.read_line(&mut end).ok()?;
            return Some(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
    None
}

/// A response: status, headers, body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn json(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.into().into_bytes(),
        }
    }

    /// A JSON list reply with the blocking-query headers.
    fn indexed(body: impl Into<String>, index: u64) -> Reply {
        let mut reply = Reply::json(body);
        reply.headers.extend([
            ("X-Nomad-Index", index.to_string()),
            ("X-Nomad-Knownleader", "true".into()),
            ("X-Nomad-Lastcontact", "0".into()),
        ]);
        reply
    }
}

/// The body of the Task API's 500 when it cannot authenticate a request
/// (hashicorp/nomad `command/agent/http.go`, `authMiddleware`), with its
/// newline.
pub const AUTH_ERROR: &str = "Server error authenticating request\n";

/// How the Task API takes a token, with ACLs on (hashicorp/nomad 2.0.5):
/// `authMiddleware` asks `ACL.WhoAmI`, and answers 403 only when the error
/// ends in "Permission denied", which `Authenticate` (`nomad/auth/auth.go`)
/// returns for a UUID that is no ACL token. Anything else is taken as a
/// workload identity JWT, and `VerifyClaim` (`nomad/encrypter.go`) fails one
/// that is expired (go-jose's `Validate`: `exp` more than a minute past) or
/// not signed by Nomad with another error: 500.
fn authenticate(state: &State, token: &str) -> Option<Reply> {
    let known = state.tokens.lock().unwrap().iter().any(|t| t == token);
    if known && !expired(token, std::time::SystemTime::now()) {
        return None;
    }
    if !known && is_uuid(token) {
        return Some(Reply::text(403, "Forbidden"));
    }
    Some(Reply::text(500, AUTH_ERROR))
}

/// `helper.IsUUID` in hashicorp/nomad `helper/funcs.go`.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Whether a JWT's `exp` is more than go-jose's one-minute leeway past
/// (`jwt/validation.go`). Read with serde_json, independently of the proxy's
/// own reader (`src/files/claims.rs`), from tokens the tests made with [`jwt`].
pub fn expired(token: &str, now: std::time::SystemTime) -> bool {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(base64url_decode)
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|claims| claims.get("exp").and_then(serde_json::Value::as_i64));
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    exp.is_some_and(|exp| now - 60 > exp)
}

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes() {
        let v = BASE64URL.iter().position(|&a| a == c)? as u32;
        bits = bits << 6 | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut bits, mut count) = (0u32, 0);
    for &b in bytes {
        bits = bits << 8 | u32::from(b);
        count += 8;
        while count >= 6 {
            count -= 6;
            out.push(BASE64URL[(bits >> count & 63) as usize] as char);
        }
    }
    if count > 0 {
        out.push(BASE64URL[(bits << (6 - count) & 63) as usize] as char);
    }
    out
}

/// A compact JWT with these claims (a JSON object) and a dummy signature,
/// shaped like the ones Nomad signs.
pub fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.{}",
        base64url_encode(br#"{"alg":"RS256","kid":"test","typ":"JWT"}"#),
        base64url_encode(claims.as_bytes()),
        base64url_encode(b"signature")
    )
}

fn respond(w: &mut UnixStream, req: &Request, state: &State) -> std::io::Result<()> {
    // Authentication, as the Task API does it for every request.
    let token = req.header("x-nomad-token").map(str::to_string).or_else(|| {
        req.header("authorization").and_then(|a| {
            let (scheme, tok) = a.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| tok.trim().to_string())
        })
    });
    let refused = token.as_deref().map(|t| authenticate(state, t));
    let reply = match refused {
        None => Reply::text(401, "Unauthorized"),
        Some(Some(refused)) => refused,
        Some(None) => {
            if req.path() == "/v1/event/stream" && req.method == "GET" {
                return event_stream(w, state);
            }
            if req.path().starts_with("/v1/client/allocation/")
                && req.path().ends_with("/exec")
                && req
                    .header("upgrade")
                    .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
            {
                return upgraded_echo(w, state);
            }
            route(req, state)
        }
    };
    match state.stall_body_after {
        Some(n) if req.method != "HEAD" && reply.body.len() > n => {
            write_stalled(w, reply, n, state)
        }
        _ => write_reply(w, &req.method, reply),
    }
}

fn route(req: &Request, state: &State) -> Reply {
    // Nomad routes on the path with its escapes decoded once (Go's URL.Path).
    let path = req.routed_path();
    let path = path.as_str();
    let get = req.method == "GET";
    let index = state.index.load(Ordering::SeqCst);
    match (req.method.as_str(), path) {
        // Nomad's handlers serve GET only (HEAD included): anything else on a
        // read endpoint is 405 with this body.
        ("HEAD", _) => Reply::text(405, "Invalid method"),
        (_, "/v1/metrics") if !get => Reply::text(405, "Invalid method"),
        (_, "/v1/metrics") => {
            if req.param("format").as_deref() == Some("prometheus") {
                wait_metrics_released(state);
                if state.metrics_status != 200 {
                    return Reply::text(state.metrics_status, "Prometheus is not enabled");
                }
                Reply {
                    status: 200,
                    headers: vec![(
                        "Content-Type",
                        "text/plain; version=0.0.4; charset=utf-8".into(),
                    )],
                    body: state.metrics_body.clone(),
                }
            } else if req.param("pretty").is_some_and(|v| v != "0") {
                // Nomad's `wrap` indents JSON for `pretty` (first value not 0).
                Reply::json(METRICS_JSON_PRETTY)
            } else {
                Reply::json(METRICS_JSON)
            }
        }
        ("GET", "/v1/agent/health") => match req.param("type").as_deref() {
            Some("server") => Reply {
                status: 500,
                ..Reply::json(r#"{"server":{"ok":false,"message":"server not enabled"}}"#)
            },
            _ => Reply::json(HEALTH_BODY),
        },
        ("GET", "/v1/agent/self") => Reply::json(format!(
            r#"{{"config":{{"Region":"global","Datacenter":"dc1","NodeName":"node1"}},"member":{{"Name":"node1"}},"stats":{{"client":{{"node_id":"{NODE_ID}"}}}}}}"#
        )),
        ("GET", "/v1/agent/members") => Reply::json(
            r#"{"ServerName":"node1.global","ServerRegion":"global","ServerDC":"dc1","Members":[{"Name":"node1.global","Addr":"127.0.0.1","Port":4648,"Status":"alive","Tags":{"role":"nomad"}}]}"#,
        ),
        ("GET", "/v1/agent/servers") => Reply::json(r#"["127.0.0.1:4647"]"#),
        ("GET", "/v1/agent/host") => {
            Reply::json(r#"{"AgentID":"node1","HostData":{"OS":"linux","Uptime":4242}}"#)
        }
        ("GET", "/v1/agent/schedulers" | "/v1/agent/schedulers/config") => {
            Reply::text(400, "Server only endpoint")
        }
        ("GET", "/v1/nodes") => {
            let index = blocking_wait(req, state, index);
            Reply::indexed(
                format!(
                    r#"[{{"ID":"{NODE_ID}","Datacenter":"dc1","Name":"node1","NodeClass":"","Status":"ready","SchedulingEligibility":"eligible","CreateIndex":7,"ModifyIndex":{index}}}]"#
                ),
                index,
            )
        }
        ("GET", p) if p.starts_with("/v1/node/") && p.ends_with("/allocations") => {
            Reply::indexed("[]", index)
        }
        ("GET", p) if p.starts_with("/v1/node/") => Reply::indexed(
            format!(
                r#"{{"ID":"{}","Datacenter":"dc1","Name":"node1","Status":"ready","Attributes":{{"kernel.name":"linux"}}}}"#,
                &p["/v1/node/".len()..]
            ),
            index,
        ),
        ("GET", "/v1/plugins") => Reply::indexed("[]", index),
        // Service reads are blocking queries too (Nomad's
        // nomad/service_registration_endpoint.go: List and GetService use blockingRPC).
        ("GET", "/v1/services") => Reply::indexed(
            r#"[{"Namespace":"default","Services":[{"ServiceName":"web","Tags":["prometheus","http"]}]}]"#,
            blocking_wait(req, state, index),
        ),
        ("GET", p) if p.starts_with("/v1/service/") => {
            let name = &p["/v1/service/".len()..];
            let index = blocking_wait(req, state, index);
            Reply::indexed(
                format!(
                    r#"[{{"ID":"_nomad-task-0b1c-web-http","ServiceName":"{name}","Namespace":"default","NodeID":"{NODE_ID}","Datacenter":"dc1","JobID":"web","AllocID":"0b1c2d3e-0000-0000-0000-000000000001","Tags":["prometheus"],"Address":"127.0.0.1","Port":8080,"CreateIndex":10,"ModifyIndex":10}}]"#
                ),
                index,
            )
        }
        ("DELETE", p) if p.starts_with("/v1/service/") => Reply::json("{}"),
        ("GET", "/v1/status/leader") => Reply::json(r#""127.0.0.1:4647""#),
        ("GET", "/v1/status/peers") => Reply::json(r#"["127.0.0.1:4647"]"#),
        ("PUT" | "POST", p) if p.starts_with("/v1/var/") => Reply::json(format!(
            r#"{{"Path":"{}","BodyBytes":{}}}"#,
            &p["/v1/var/".len()..],
            req.body.len()
        )),
        _ => Reply {
            status: 404,
            headers: Vec::new(),
            body: Vec::new(),
        },
    }
}

/// A blocking query: with `?index=N` at or above the current index, waits
/// for the index to move or for `wait` (default 5 min), and answers with the
/// index then current. Nomad caps `wait` at 5 min plus up to 1/16 jitter;
/// so does this, to let a long query be tried by hand.
fn blocking_wait(req: &Request, state: &State, index: u64) -> u64 {
    let Some(min) = req.param("index").and_then(|i| i.parse::<u64>().ok()) else {
        return index;
    };
    if min < index {
        return index;
    }
    let wait = req
        .param("wait")
        .and_then(|w| parse_wait(&w))
        .unwrap_or(Duration::from_secs(300));
    let deadline = Instant::now() + wait.min(Duration::from_secs(300 + 300 / 16));
    while Instant::now() < deadline && !state.stop.load(Ordering::SeqCst) {
        let now = state.index.load(Ordering::SeqCst);
        if now > min {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    state.index.load(Ordering::SeqCst)
}

fn parse_wait(w: &str) -> Option<Duration> {
    if let Some(ms) = w.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(s) = w.strip_suffix('s') {
        return s.parse().ok().map(Duration::from_secs);
    }
    if let Some(m) = w.strip_suffix('m') {
        return m.parse::<u64>().ok().map(|m| Duration::from_secs(m * 60));
    }
    None
}

/// The event stream: the first event at once, then each further one when
/// the test releases it, then a heartbeat and the end of the stream.
pub const EVENTS: [&str; 3] = [
    r#"{"Index":43,"Events":[{"Topic":"Node","Type":"NodeRegistration","Key":"node1","Index":43}]}"#,
    r#"{"Index":44,"Events":[{"Topic":"Job","Type":"JobRegistered","Key":"web","Index":44}]}"#,
    "{}",
];

fn event_stream(w: &mut UnixStream, state: &State) -> std::io::Result<()> {
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    for (i, event) in EVENTS.iter().enumerate() {
        if i > 0 && !wait_released(state, i as u64) {
            break;
        }
        let line = format!("{event}\n");
        write!(w, "{:x}\r\n{line}\r\n", line.len())?;
        w.flush()?;
    }
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}

/// `/v1/client/allocation/:id/exec` is a WebSocket: answer 101, then echo
/// whatever bytes arrive until the peer closes. (The stand-in does not speak
/// WebSocket framing; the proxy only has to carry the upgraded bytes.)
fn upgraded_echo(w: &mut UnixStream, state: &State) -> std::io::Result<()> {
    w.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    )?;
    w.flush()?;
    let mut reader = w.try_clone()?;
    let mut buf = [0; 4096];
    for _ in 0..10_000 {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        state.tunnelled.fetch_add(n, Ordering::SeqCst);
        w.write_all(&buf[..n])?;
        w.flush()?;
    }
    Err(std::io::ErrorKind::ConnectionAborted.into())
}

/// Waits (up to 20 s) until the test releases the metrics responses.
fn wait_metrics_released(state: &State) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut open = state.metrics_gate.lock().unwrap();
    while !*open && !state.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        open = state
            .metrics_opened
            .wait_timeout(open, deadline - now)
            .unwrap()
            .0;
    }
}

fn wait_released(state: &State, n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut released = state.released.lock().unwrap();
    while *released < n {
        let now = Instant::now();
        if now >= deadline || state.stop.load(Ordering::SeqCst) {
            return false;
        }
        released = state
            .release
            .wait_timeout(released, deadline - now)
            .unwrap()
            .0;
    }
    true
}

fn write_reply(w: &mut UnixStream, method: &str, reply: Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
    w.write_all(head.as_bytes())?;
    if method != "HEAD" {
        w.write_all(&reply.body)?;
    }
    w.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

// ---- Added for the timeout, retry and target tests -------------------------

impl StandIn {
    /// Closes the next `n` requests unanswered, on whatever connection they
    /// arrive (they are still recorded): an agent dropping connections.
    pub fn drop_next(&self, n: usize) {
        self.state.drop_next.store(n, Ordering::SeqCst);
    }

    /// Lets every stalled body (see `Options::stall_body_after`) go on, now
    /// and from now on.
    pub fn release_body(&self) {
        self.state.body_gate.lock().unwrap().released = true;
        self.state.body_moved.notify_all();
    }

    /// Ends every stalled body, now and from now on, by closing its
    /// connection without the rest.
    pub fn cut_body(&self) {
        self.state.body_gate.lock().unwrap().cut = true;
        self.state.body_moved.notify_all();
    }

    /// How many response bodies have stalled so far.
    pub fn bodies_stalled(&self) -> usize {
        self.state.body_gate.lock().unwrap().stalled
    }

    /// Waits until `n` bodies have stalled, up to `timeout` (a latch).
    pub fn wait_for_stalled(&self, n: usize, timeout: Duration) -> bool {
        let gate = self.state.body_gate.lock().unwrap();
        let (gate, _) = self
            .state
            .body_moved
            .wait_timeout_while(gate, timeout, |g| g.stalled < n)
            .unwrap();
        gate.stalled >= n
    }
}

/// Takes one from a count of things still to do; false when none are left.
fn take_one(count: &AtomicUsize) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Writes the header and the first `n` body bytes, then waits (up to 60 s,
/// or until the stand-in stops) for the test to release or cut the body.
fn write_stalled(w: &mut UnixStream, reply: Reply, n: usize, state: &State) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
    w.write_all(head.as_bytes())?;
    w.write_all(&reply.body[..n])?;
    w.flush()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut gate = state.body_gate.lock().unwrap();
    gate.stalled += 1;
    state.body_moved.notify_all();
    // Bounded: 60 s in slices, so that a stop is seen.
    while !gate.released && !gate.cut {
        let now = Instant::now();
        if now >= deadline || state.stop.load(Ordering::SeqCst) {
            break;
        }
        let slice = (deadline - now).min(Duration::from_millis(50));
        gate = state.body_moved.wait_timeout(gate, slice).unwrap().0;
    }
    if !gate.released {
        return Err(std::io::ErrorKind::ConnectionAborted.into());
    }
    drop(gate);
    w.write_all(&reply.body[n..])?;
    w.flush()
}

impl Request {
    /// The path with its percent escapes decoded once, as Go's server
    /// routes it (invalid UTF-8 replaced).
    fn routed_path(&self) -> String {
        let raw = self.path().as_bytes();
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let hex = raw
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (raw[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
