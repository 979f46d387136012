//! Request targets at the HTTP level, sent as raw bytes: the bytes the path
//! rules name get 400 and never reach the socket, even those Pingora's
//! parser would otherwise percent-encode first (a space, a control byte);
//! and a target with percent escapes reaches the socket exactly as the
//! client sent it, decided on as Nomad decodes it.

use crate::support::standin::{HEALTH_BODY, PROMETHEUS_HEAD};
use crate::support::{setup, Conn, Response};

const PATH_BYTE: &str = "bad request: the path contains a byte that is not allowed there";
const QUERY_BYTE: &str = "bad request: the query contains a byte that is not allowed there";

/// Sends `GET <target> HTTP/1.1` on a new connection; returns the response
/// and the connection.
fn raw_get(addr: std::net::SocketAddr, target: &[u8]) -> (Response, Conn) {
    let mut raw = b"GET ".to_vec();
    raw.extend_from_slice(target);
    raw.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut conn = Conn::open(addr).expect("connect");
    let resp = conn
        .request(&raw)
        .unwrap_or_else(|e| panic!("{}: {e}", target.escape_ascii()));
    (resp, conn)
}

/// Whether the proxy closed the connection (after its response).
fn closed(mut conn: Conn) -> bool {
    matches!(
        conn.read_exact(1),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof
    )
}

#[test]
fn bytes_the_path_rules_name_get_400_and_are_not_forwarded() {
    let s = setup(&[("HOLEPUNCH_ALLOW_SERVICES", "true")]);
    let cases: &[(&[u8], &str)] = &[
        // Pingora would percent-encode these before parsing (a raw space
        // became %20 and was forwarded under SERVICES): the guard refuses
        // the bytes the client sent.
        (b"/v1/service/a b", PATH_BYTE),
        (b"/v1/service/a\tb", PATH_BYTE),
        (b"/v1/service/a\x01b", PATH_BYTE),
        (b"/v1/service/a\x7fb", PATH_BYTE),
        (b"/v1/service/a b?namespace=default", PATH_BYTE),
        (b"/v1/metrics ", PATH_BYTE),
        (b"/v1/metrics?format=prometheus x", QUERY_BYTE),
        (b"/v1/metrics?format=\x01", QUERY_BYTE),
        (b"/v1/metrics?format=\x7f", QUERY_BYTE),
        // Pingora would cut a fragment off (and forward /v1/service/web).
        (b"/v1/service/web#frag", PATH_BYTE),
        (b"/v1/metrics#", PATH_BYTE),
        (b"/v1/metrics?format=prometheus#x", QUERY_BYTE),
        // The `http` crate's URI parser would refuse these with an empty body.
        (b"/v1/service/<a>", PATH_BYTE),
        (b"/v1/service/a`b", PATH_BYTE),
        (b"/v1/metrics?filter=Status==\"ready\"", QUERY_BYTE),
        (b"/v1/metrics?q=<a>", QUERY_BYTE),
        // httparse and Pingora take these raw: the path rules see them as sent.
        (b"/v1/service/a\"b", PATH_BYTE),
        (b"/v1/service/{a}", PATH_BYTE),
        (b"/v1/service/a|b", PATH_BYTE),
        (b"/v1/service/a^b", PATH_BYTE),
        (b"/v1/service/a[0]", PATH_BYTE),
        (b"/v1/service/caf\xc3\xa9", PATH_BYTE),
        (b"/v1/service/\xff", PATH_BYTE),
    ];
    for (target, body) in cases {
        let shown = target.escape_ascii().to_string();
        let (resp, conn) = raw_get(s.proxy.addr, target);
        assert_eq!((resp.status, resp.text().as_str()), (400, *body), "{shown}");
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{shown}"
        );
        assert!(closed(conn), "{shown}: the connection stayed open");
    }
    assert!(
        s.standin.requests().is_empty(),
        "forwarded: {:?}",
        s.standin.requests()
    );

    // A query may hold the other visible bytes a path may not; they are
    // forwarded byte for byte.
    let (resp, _) = raw_get(s.proxy.addr, b"/v1/service/web?q={x}|[y]^`z`\\");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let targets: Vec<String> = s.standin.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/v1/service/web?q={x}|[y]^`z`\\"]);
    assert!(
        s.proxy.log().contains("refused 127.0.0.1:"),
        "{}",
        s.proxy.log()
    );
}

#[test]
fn escaped_paths_reach_the_socket_byte_for_byte() {
    let s = setup(&[("HOLEPUNCH_ALLOW_SERVICES", "true")]);
    let addr = s.proxy.addr;
    // (target sent, status, a piece of the body, what the socket receives)
    let cases: &[(&[u8], u16, &str, Option<&str>)] = &[
        (
            b"/v1/m%65trics",
            200,
            "nomad.client.allocations.running",
            Some("/v1/m%65trics"),
        ),
        (
            b"/v1/m%65trics?format=prometheus",
            200,
            PROMETHEUS_HEAD,
            Some("/v1/m%65trics?format=prometheus"),
        ),
        (
            b"/v1/agent/h%65alth",
            200,
            HEALTH_BODY,
            Some("/v1/agent/h%65alth"),
        ),
        (
            b"/v1/service/caf%C3%A9",
            200,
            "\"ServiceName\":\"caf\u{e9}\"",
            Some("/v1/service/caf%C3%A9"),
        ),
        (
            b"/v1/service/caf%c3%a9?namespace=default",
            200,
            "\"ServiceName\":\"caf\u{e9}\"",
            Some("/v1/service/caf%c3%a9?namespace=default"),
        ),
        // An escaped space is a space in a name, as Nomad decodes it.
        (
            b"/v1/service/a%20b",
            200,
            "\"ServiceName\":\"a b\"",
            Some("/v1/service/a%20b"),
        ),
        (
            b"/v1/s%65rvices",
            200,
            "\"ServiceName\":\"web\"",
            Some("/v1/s%65rvices"),
        ),
        // Absolute form: the path is forwarded, as sent.
        (
            b"http://localhost/v1/m%65trics",
            200,
            "nomad.client.allocations.running",
            Some("/v1/m%65trics"),
        ),
        // Decoded, it is a closed group's path: denied, never forwarded.
        (b"/v1/agent/s%65lf", 403, "HOLEPUNCH_ALLOW_AGENT_SELF", None),
        (b"/v1/%6eodes", 403, "HOLEPUNCH_ALLOW_NODES", None),
    ];
    let mut expected = Vec::new();
    for (target, status, piece, forwarded) in cases {
        let shown = target.escape_ascii().to_string();
        let (resp, _) = raw_get(addr, target);
        assert_eq!(resp.status, *status, "{shown}: {}", resp.text());
        assert!(resp.text().contains(piece), "{shown}: {}", resp.text());
        expected.extend(forwarded.map(str::to_string));
        let targets: Vec<String> = s.standin.requests().into_iter().map(|r| r.target).collect();
        assert_eq!(targets, expected, "after {shown}");
    }
}
