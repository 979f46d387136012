//! Revocation reaches requests already in flight: a client token removed
//! from the file while its blocking query waits, its event stream flows or
//! its scrape waits for an identical one's fetch gets no more Nomad data (a
//! 401 when nothing was written, the stream cut at its next event), while
//! the same requests with a token still listed are served. The stand-in
//! holds each answer until the test lets it go (a raised index, an event
//! released, the metrics released), after a new request with the revoked
//! token has been seen to get 401.

use crate::support::standin::{Options, EVENTS, START_INDEX};
use crate::support::{
    eventually, get, poll_until, Conn, Harness, Response, Setup, CLIENT_TOKENS, IO_TIMEOUT, TOKEN,
};
use std::net::SocketAddr;
use std::path::Path;

/// Kept throughout.
const KEPT: &str = "kept-0123456789abcdef";
/// Revoked while its requests are in flight.
const REVOKED: &str = "revoked-0123456789abcdef";

const UNAUTHORIZED: &str = "unauthorized: send Authorization: Bearer <client token>";

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Replaces `path` whole (a rename, as Nomad's templates write).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Rewrites the client token file without [`REVOKED`], and waits until a
/// new request with it gets 401: from then on, the list in use no longer
/// holds it.
fn revoke(s: &Setup, probe: &str) {
    replace(&s.dir.join(CLIENT_TOKENS), &format!("{KEPT}\n"));
    eventually(
        IO_TIMEOUT,
        || get(s.proxy.addr, probe, &bearer(REVOKED)).status == 401,
        || format!("{REVOKED} never refused:\n{}", s.proxy.log()),
    );
}

/// A GET with `token` on its own connection, in a thread.
fn get_in_thread(
    addr: SocketAddr,
    target: &str,
    token: &str,
) -> std::thread::JoinHandle<std::io::Result<Response>> {
    let raw = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\n{}Connection: close\r\n\r\n",
        bearer(token)
    );
    std::thread::spawn(move || crate::support::send(addr, raw.as_bytes()))
}

/// The stand-in sends the answer's header alone, and holds its body: only
/// the check of the response header stands between Nomad's answer and a
/// client whose token was revoked while it waited.
#[test]
fn a_blocking_query_answered_after_its_token_was_revoked_gets_401() {
    let mut options = Options::new(TOKEN);
    options.stall_body_after = Some(0);
    let s = Harness::new()
        .standin(options)
        .env("HOLEPUNCH_ALLOW_SERVICES", "true")
        .client_tokens(&format!("{KEPT}\n{REVOKED}\n"))
        .start();
    let target = format!("/v1/service/web?index={START_INDEX}&wait=5m");
    let mut revoked = Conn::open(s.proxy.addr).expect("connect");
    let raw = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        bearer(REVOKED)
    );
    revoked.send(raw.as_bytes()).unwrap();
    let kept = get_in_thread(s.proxy.addr, &target, KEPT);
    // Both wait at the socket for the index to move.
    assert!(s.standin.wait_for_requests(2, IO_TIMEOUT), "{:?}", s.seen());
    // A probe the proxy answers itself (403: the nodes group is closed),
    // once the token is good: no answer of the stand-in's, all held.
    revoke(&s, "/v1/nodes");
    // Nomad answers both now: each header comes, each body is held.
    s.standin.bump_index();
    assert!(s.standin.wait_for_stalled(2, IO_TIMEOUT));

    let head = revoked
        .read_head()
        .expect("a 401 at once, with nothing of Nomad's answer");
    assert_eq!(head.status, 401, "{:?}", head.headers);
    assert_eq!(head.header("x-nomad-index"), None, "no header of Nomad's");
    assert_eq!(
        head.header("www-authenticate"),
        Some("Bearer realm=\"nomad-holepunch\"")
    );
    let body = revoked.read_exact(UNAUTHORIZED.len()).unwrap();
    assert_eq!(String::from_utf8_lossy(&body), UNAUTHORIZED);
    revoked.wait_closed().expect("closed after the 401");
    s.standin.release_body();
    let resp = kept.join().unwrap().expect("an answer");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().contains("\"ServiceName\":\"web\""));
    s.proxy.wait_log(
        IO_TIMEOUT,
        "in flight: its client token was revoked; nothing more forwarded",
    );
}

/// Opens an event stream with `token` and reads its head and first event.
fn event_stream(addr: SocketAddr, token: &str) -> Conn {
    let mut conn = Conn::open(addr).expect("connect");
    let raw = format!(
        "GET /v1/event/stream HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        bearer(token)
    );
    conn.send(raw.as_bytes()).unwrap();
    let head = conn.read_head().expect("the stream's head");
    assert_eq!(head.status, 200);
    let first = conn.read_chunk().expect("the first event");
    assert_eq!(first, Some(format!("{}\n", EVENTS[0]).into_bytes()));
    conn
}

#[test]
fn an_event_stream_is_cut_at_its_next_event_once_its_token_is_revoked() {
    let s = Harness::new()
        .env("HOLEPUNCH_ALLOW_ALL", "true")
        .client_tokens(&format!("{KEPT}\n{REVOKED}\n"))
        .start();
    let mut revoked = event_stream(s.proxy.addr, REVOKED);
    let mut kept = event_stream(s.proxy.addr, KEPT);
    revoke(&s, "/v1/agent/health");
    // The next event, on both streams.
    s.standin.release_event();

    let next = kept.read_chunk().expect("the next event");
    assert_eq!(next, Some(format!("{}\n", EVENTS[1]).into_bytes()));
    // Closed with not a byte of it.
    revoked
        .wait_closed()
        .expect("the revoked token's stream is cut at its next event");
    s.proxy.wait_log(
        IO_TIMEOUT,
        "GET /v1/event/stream in flight: its client token was revoked",
    );
}

/// The value of the `holepunch_metrics_scrapes_waiting` gauge, or 0.
fn waiting(own: &str) -> usize {
    own.lines()
        .find_map(|l| l.strip_prefix("holepunch_metrics_scrapes_waiting "))
        .map_or(0, |v| v.parse::<usize>().unwrap())
}

/// A scrape waiting for another's fetch (a coalescing follower) when its
/// token is revoked is not served the shared answer.
#[test]
fn a_scrape_waiting_for_a_shared_answer_gets_401_once_its_token_is_revoked() {
    let mut options = Options::new(TOKEN);
    options.hold_metrics = true;
    let s = Harness::new()
        .standin(options)
        .telemetry()
        .client_tokens(&format!("{KEPT}\n{REVOKED}\n"))
        .start();
    const SCRAPE: &str = "/v1/metrics?format=prometheus";
    let leader = get_in_thread(s.proxy.addr, SCRAPE, KEPT);
    assert!(s.standin.wait_for_requests(1, IO_TIMEOUT));
    let follower = get_in_thread(s.proxy.addr, SCRAPE, REVOKED);
    let mut own = String::new();
    let followed = poll_until(IO_TIMEOUT, || {
        own = s.proxy.own_metrics();
        waiting(&own) == 1
    });
    assert!(followed.is_some(), "the scrape never waited:\n{own}");
    // A probe that is no scrape: it must not join the held fetch.
    revoke(&s, "/v1/metrics");
    s.standin.release_metrics();

    let resp = follower.join().unwrap().expect("an answer");
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.text(), UNAUTHORIZED);
    let resp = leader.join().unwrap().expect("an answer");
    assert_eq!(resp.status, 200);
    assert!(resp.text().starts_with("# HELP"), "{}", resp.text());
    assert_eq!(
        s.standin
            .requests()
            .iter()
            .filter(|r| r.target == SCRAPE)
            .count(),
        1,
        "one fetch, shared with nobody who lost their token"
    );
}

/// Opens an `exec` WebSocket (under ALL) with `token`, and sends one frame
/// through it and back.
fn exec(addr: SocketAddr, token: &str) -> Conn {
    let mut conn = Conn::open(addr).expect("connect");
    let raw = format!(
        "GET /v1/client/allocation/0b1c/exec?task=web&command=%5B%22sh%22%5D HTTP/1.1\r\n\
         Host: localhost\r\n{}Connection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        bearer(token)
    );
    conn.send(raw.as_bytes()).unwrap();
    assert_eq!(conn.read_head().expect("the upgrade").status, 101);
    conn.send(b"before").unwrap();
    assert_eq!(conn.read_exact(6).unwrap(), b"before");
    conn
}

/// An `exec` session whose token is revoked: what its client types next
/// never reaches the agent, and the tunnel is closed.
#[test]
fn an_exec_session_takes_no_more_input_once_its_token_is_revoked() {
    let s = Harness::new()
        .env("HOLEPUNCH_ALLOW_ALL", "true")
        .client_tokens(&format!("{KEPT}\n{REVOKED}\n"))
        .start();
    let mut revoked = exec(s.proxy.addr, REVOKED);
    let mut kept = exec(s.proxy.addr, KEPT);
    revoke(&s, "/v1/agent/health");
    let carried = s.standin.tunnelled();
    assert_eq!(carried, 12, "the two frames before");

    revoked.send(b"rm -rf /alloc/data\n").unwrap();
    revoked.wait_closed().expect("the tunnel is closed");
    assert_eq!(
        s.standin.tunnelled(),
        carried,
        "the input reached the agent"
    );
    kept.send(b"after").unwrap();
    assert_eq!(kept.read_exact(5).unwrap(), b"after");
}
