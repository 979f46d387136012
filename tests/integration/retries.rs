//! Retries on the Task API socket, as the README promises them: a GET or
//! HEAD whose pooled connection the agent had closed is sent again, once,
//! on another connection; never a second time, and never once response
//! bytes have gone to the client.
//!
//! Pingora marks only a failure to read the response header on a reused
//! connection as retryable (`RetryType::ReusedOnly`, pingora-core 0.9
//! `protocols/http/v1/client.rs`, `read_response`); `error_while_proxy` in
//! `src/proxy/mod.rs` narrows that to GET and HEAD, once per request, before any
//! response byte. Connect errors are never retried (pingora-core
//! `connectors/` marks none).

use crate::support::standin::{Options, HEALTH_BODY};
use crate::support::{get, send, setup, Conn, Harness, IO_TIMEOUT, TOKEN};
use std::io::ErrorKind;

const HEAD_HEALTH: &[u8] =
    b"HEAD /v1/agent/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[test]
fn a_head_on_a_dropped_pooled_connection_is_retried_on_another() {
    let s = setup(&[]);
    // One pooled connection to the agent.
    let resp = get(s.proxy.addr, "/v1/agent/health", "");
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
    assert_eq!(s.standin.connections(), 1);

    // The agent drops it as the HEAD arrives: the HEAD goes again on a new
    // connection, and the client gets the agent's answer (Nomad's handlers
    // serve GET only: 405 `Invalid method`, here without its body).
    s.standin.drop_next(1);
    let resp = send(s.proxy.addr, HEAD_HEALTH).unwrap();
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("content-length"), Some("14"));
    assert_eq!(
        s.seen(),
        [
            "GET /v1/agent/health",
            "HEAD /v1/agent/health",
            "HEAD /v1/agent/health"
        ]
    );
    assert_eq!(s.standin.connections(), 2);
}

#[test]
fn a_request_is_retried_only_once() {
    let s = setup(&[("HOLEPUNCH_ALLOW_NODES", "true")]);
    // Two pooled connections: two blocking queries held at once, then
    // answered together.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let addr = s.proxy.addr;
            std::thread::spawn(move || get(addr, "/v1/nodes?index=42", ""))
        })
        .collect();
    assert!(s.standin.wait_for_requests(2, IO_TIMEOUT));
    s.standin.bump_index();
    for h in held {
        assert_eq!(h.join().unwrap().status, 200);
    }
    assert_eq!(s.standin.connections(), 2);

    // The agent drops both as requests arrive: the first try and the one
    // retry both land on a pooled connection, and there is no third try.
    s.standin.drop_next(2);
    let resp = send(s.proxy.addr, HEAD_HEALTH).unwrap();
    assert_eq!(resp.status, 502);
    let bad_gateway = "bad gateway: the Nomad Task API socket is not available";
    let length = bad_gateway.len().to_string();
    assert_eq!(resp.header("content-length"), Some(length.as_str()));
    let resp = get(s.proxy.addr, "/v1/agent/health", "");
    assert_eq!(resp.status, 200);
    let seen = s.seen();
    assert_eq!(
        seen[2..],
        [
            "HEAD /v1/agent/health",
            "HEAD /v1/agent/health",
            "GET /v1/agent/health"
        ]
    );
    // The GET after it needed a new connection; the HEAD never opened one.
    assert_eq!(s.standin.connections(), 3);
}

#[test]
fn a_get_is_never_retried_once_response_bytes_went_out() {
    let mut options = Options::new(TOKEN);
    // Agent health (37 bytes) goes through; agent self (164) stalls.
    options.stall_body_after = Some(100);
    let s = Harness::new()
        .standin(options)
        .envs(&[("HOLEPUNCH_ALLOW_AGENT_SELF", "true")])
        .start();
    let resp = get(s.proxy.addr, "/v1/agent/health", "");
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));

    // On the pooled connection, the agent sends the header and 100 bytes,
    // then closes it.
    let mut conn = Conn::open(s.proxy.addr).unwrap();
    conn.send(b"GET /v1/agent/self HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(s.standin.wait_for_stalled(1, IO_TIMEOUT));
    s.standin.cut_body();
    let head = conn.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("164"));
    let first = conn.read_exact(100).expect("the bytes before the cut");
    assert!(first.starts_with(b"{\"config\":{\"Region\":\"global\""));
    let rest = conn.read_exact(1);
    assert!(
        matches!(&rest, Err(e) if e.kind() == ErrorKind::UnexpectedEof),
        "{rest:?}"
    );
    assert_eq!(
        s.seen(),
        ["GET /v1/agent/health", "GET /v1/agent/self"],
        "sent again after the response had started"
    );
    assert_eq!(s.standin.connections(), 1);
}

/// The shared metrics fetch (coalescing's own upstream client, with a pool
/// of its own) follows the same retry policy as every other request
/// (`src/proxy/retry.rs`): a scrape whose pooled connection the agent
/// dropped is sent again, once, on another connection.
#[test]
fn a_shared_metrics_fetch_on_a_dropped_pooled_connection_is_retried_on_another() {
    let s = setup(&[]);
    let scrape = "/v1/metrics?format=prometheus";
    // One pooled connection in the shared fetch's pool.
    let first = get(s.proxy.addr, scrape, "");
    assert_eq!(first.status, 200);
    assert_eq!(s.standin.connections(), 1);

    // The agent drops it as the next scrape arrives: the fetch goes again
    // on a new connection, and the client gets the agent's answer.
    s.standin.drop_next(1);
    let resp = get(s.proxy.addr, scrape, "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, first.body);
    let sent = format!("GET {scrape}");
    assert_eq!(s.seen(), [sent.as_str(); 3]);
    assert_eq!(s.standin.connections(), 2);
}
