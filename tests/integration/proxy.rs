//! The real binary against a stand-in Task API socket: what clients get back,
//! and what reaches the socket.

use crate::support;
use crate::support::standin::{
    Options, EVENTS, HEALTH_BODY, NODE_ID, PROMETHEUS_HEAD, START_INDEX,
};
use crate::support::{get, send, setup, Conn, Harness, TOKEN};
use std::time::Duration;

#[test]
fn metrics_go_through_with_the_workload_token_only() {
    let s = setup(&[]);
    let resp = get(
        s.proxy.addr,
        "/v1/metrics?format=prometheus",
        "X-Nomad-Token: client-supplied\r\nAuthorization: Bearer client-bearer\r\nProxy-Authorization: Basic eDp5\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(resp.text(), PROMETHEUS_HEAD);

    let reqs = s.standin.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("GET", "/v1/metrics?format=prometheus")
    );
    assert_eq!(r.header_values("x-nomad-token"), vec![TOKEN]);
    assert!(r.header_values("authorization").is_empty());
    assert!(r.header_values("proxy-authorization").is_empty());

    // The JSON format, and agent health, from the same defaults.
    let resp = get(s.proxy.addr, "/v1/metrics", "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(resp.text().starts_with(r#"{"Timestamp":"#));
    let resp = get(s.proxy.addr, "/v1/agent/health", "");
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
    // Nomad's own error statuses and bodies pass through untouched.
    let resp = get(s.proxy.addr, "/v1/agent/health?type=server", "");
    assert_eq!(resp.status, 500);
    assert_eq!(
        resp.text(),
        r#"{"server":{"ok":false,"message":"server not enabled"}}"#
    );
    assert_eq!(s.standin.requests().len(), 4);
}

#[test]
fn startup_logs_every_setting_and_never_the_token() {
    let s = setup(&[("HOLEPUNCH_ALLOW_NODES", "true")]);
    let log = s.proxy.log();
    for line in [
        format!("listen address: {}", s.proxy.addr),
        format!(
            "Task API socket: {} (from HOLEPUNCH_SOCKET_PATH)",
            s.dir.join("api.sock").display()
        ),
        "workload token: NOMAD_TOKEN (<redacted>)".to_string(),
        "HOLEPUNCH_ALLOW_ALL = false".to_string(),
        "HOLEPUNCH_ALLOW_METRICS = true".to_string(),
        "HOLEPUNCH_ALLOW_NODES = true".to_string(),
        "HOLEPUNCH_ALLOW_STATUS = false".to_string(),
        format!("listening on http://{}", s.proxy.addr),
    ] {
        assert!(log.contains(&line), "missing {line:?} in:\n{log}");
    }
    assert!(!log.contains(TOKEN));
}

#[test]
fn denied_paths_get_403_naming_the_flag_and_never_reach_the_socket() {
    let s = setup(&[]);
    let resp = get(s.proxy.addr, "/v1/agent/self", "");
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        resp.text(),
        "forbidden: this path needs HOLEPUNCH_ALLOW_AGENT_SELF=true"
    );
    let resp = get(s.proxy.addr, "/v1/node/abc?x=1", "");
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.text(),
        "forbidden: this path needs HOLEPUNCH_ALLOW_NODES=true"
    );
    let resp = get(s.proxy.addr, "/v1/jobs", "");
    assert_eq!(resp.status, 403);
    assert!(resp.text().starts_with("forbidden"));
    assert!(resp.text().contains("HOLEPUNCH_ALLOW_ALL"));
    // Case-sensitive: a different case is a different path.
    assert_eq!(get(s.proxy.addr, "/v1/Metrics", "").status, 403);
    // Even a write to a denied path is a plain 403.
    let raw = "DELETE /v1/job/web HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(send(s.proxy.addr, raw.as_bytes()).unwrap().status, 403);

    assert!(
        s.standin.requests().is_empty(),
        "{:?}",
        s.standin.requests()
    );
    let log = s.proxy.log();
    assert!(
        log.contains("INFO  holepunch::proxy] denied 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains(" GET /v1/agent/self\n"), "{log}");
    assert!(log.contains(" DELETE /v1/job/web\n"), "{log}");
}

#[test]
fn other_methods_on_open_groups_get_405_and_are_not_forwarded() {
    let s = setup(&[("HOLEPUNCH_ALLOW_SERVICES", "1")]);
    for raw in [
        "POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_string(),
        "PUT /v1/agent/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_string(),
        format!("DELETE /v1/service/web/_nomad-task-{NODE_ID} HTTP/1.1\r\nHost: x\r\n\r\n"),
        "OPTIONS /v1/services HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
    ] {
        let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
        assert_eq!(resp.status, 405, "{raw}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD"));
        assert_eq!(
            resp.text(),
            "method not allowed: this endpoint forwards only GET and HEAD"
        );
    }
    assert!(s.standin.requests().is_empty());
    // HEAD is forwarded, and answered as Nomad answers it: its handlers
    // serve GET only, so the socket says 405 and that passes through.
    let resp = send(
        s.proxy.addr,
        b"HEAD /v1/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("content-length"), Some("14")); // "Invalid method"
    assert!(resp.header("allow").is_none());
    assert!(resp.body.is_empty());
    assert_eq!(s.standin.requests()[0].method, "HEAD");
}

#[test]
fn path_tricks_get_400_and_are_never_forwarded() {
    let s = setup(&[("HOLEPUNCH_ALLOW_ALL", "true")]);
    for target in [
        "/v1/metrics/../agent/self",
        "/v1/./metrics",
        "//v1/metrics",
        "/v1//agent/self",
        "/v1/metrics/%2e%2e/agent/self",
        "/v1/metrics%2f..%2fagent%2fself",
        "/v1/metrics%5cx",
        "/v1/metrics\\x",
        "/v1/metrics%00",
        "/v1/metrics%zz",
        "/v1/metrics%",
        "*",
        "http://localhost/v1/../v1/agent/self",
        "http://localhost/v1/metrics/%2e%2e/jobs",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
        assert_eq!(resp.status, 400, "{target}");
        assert!(
            resp.text().starts_with("bad request: "),
            "{target}: {}",
            resp.text()
        );
        assert_eq!(resp.header("connection"), Some("close"), "{target}");
    }
    assert!(
        s.standin.requests().is_empty(),
        "{:?}",
        s.standin.requests()
    );
    // Pingora refuses, before any filter, an absolute-form target whose
    // authority differs from Host (RFC 9112 3.2.2), such as one with userinfo.
    let raw = b"GET http://user@localhost/v1/metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let resp = send(s.proxy.addr, raw).unwrap();
    assert_eq!((resp.status, resp.body.len()), (400, 0));
    // Raw control bytes and spaces are escaped by the HTTP parser, then refused.
    let resp = send(
        s.proxy.addr,
        b"GET /v1/metrics\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    assert_eq!(resp.status, 400);
    assert!(s.standin.requests().is_empty());
}

#[test]
fn absolute_form_is_forwarded_as_its_path_or_refused() {
    let s = setup(&[]);
    let raw = b"GET http://127.0.0.1:6120/v1/metrics?format=prometheus HTTP/1.1\r\nHost: 127.0.0.1:6120\r\nConnection: close\r\n\r\n";
    let resp = send(s.proxy.addr, raw).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        s.standin.requests()[0].target,
        "/v1/metrics?format=prometheus"
    );
    let raw = b"GET http://127.0.0.1:6120/v1/agent/self HTTP/1.1\r\nHost: 127.0.0.1:6120\r\nConnection: close\r\n\r\n";
    let resp = send(s.proxy.addr, raw).unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.text(),
        "bad request: absolute-form request target for a path that is not forwarded"
    );
    assert_eq!(s.standin.requests().len(), 1);
}

#[test]
fn health_is_local_and_other_paths_are_404() {
    // No socket at all: /health still answers, with no token involved.
    let (proxy, _dir) = Harness::new().start_proxy();
    let resp = get(proxy.addr, "/health", "");
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let resp = send(
        proxy.addr,
        b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("2"));
    assert!(resp.body.is_empty());
    let resp = send(
        proxy.addr,
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(resp.status, 405);
    for target in ["/", "/v1", "/metrics", "/healthz", "/V1/metrics"] {
        let resp = get(proxy.addr, target, "");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (404, "not found"),
            "{target}"
        );
    }
}

#[test]
fn blocking_queries_keep_nomad_headers_and_the_query_string() {
    let s = setup(&[("HOLEPUNCH_ALLOW_NODES", "true")]);
    let resp = get(
        s.proxy.addr,
        "/v1/nodes?prefix=f7&filter=Status%20%3D%3D%20%22ready%22",
        "",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("x-nomad-index"),
        Some(&*START_INDEX.to_string())
    );
    assert_eq!(resp.header("x-nomad-knownleader"), Some("true"));
    assert_eq!(resp.header("x-nomad-lastcontact"), Some("0"));
    assert!(resp.text().contains(NODE_ID));

    // A blocking query that waits until the index moves.
    let addr = s.proxy.addr;
    let waiter = std::thread::spawn(move || {
        get(addr, &format!("/v1/nodes?index={START_INDEX}&wait=20s"), "")
    });
    assert!(s.standin.wait_for_requests(2, Duration::from_secs(10)));
    s.standin.bump_index();
    let resp = waiter.join().unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("x-nomad-index"),
        Some(&*(START_INDEX + 1).to_string())
    );

    let targets: Vec<String> = s.standin.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        vec![
            "/v1/nodes?prefix=f7&filter=Status%20%3D%3D%20%22ready%22".to_string(),
            format!("/v1/nodes?index={START_INDEX}&wait=20s"),
        ]
    );
    // Everything under /v1/node/ belongs to NODES too.
    let resp = get(s.proxy.addr, &format!("/v1/node/{NODE_ID}/allocations"), "");
    assert_eq!((resp.status, resp.text().as_str()), (200, "[]"));
}

#[test]
fn each_group_flag_opens_its_endpoints() {
    let s = setup(&[
        ("HOLEPUNCH_ALLOW_AGENT_SELF", "true"),
        ("HOLEPUNCH_ALLOW_AGENT_MEMBERS", "true"),
        ("HOLEPUNCH_ALLOW_AGENT_SERVERS", "true"),
        ("HOLEPUNCH_ALLOW_AGENT_HOST", "true"),
        ("HOLEPUNCH_ALLOW_AGENT_SCHEDULERS", "true"),
        ("HOLEPUNCH_ALLOW_PLUGINS", "true"),
        ("HOLEPUNCH_ALLOW_SERVICES", "true"),
        ("HOLEPUNCH_ALLOW_STATUS", "true"),
        ("HOLEPUNCH_ALLOW_METRICS", "false"),
    ]);
    let expect: &[(&str, u16, &str)] = &[
        ("/v1/agent/servers", 200, r#"["127.0.0.1:4647"]"#),
        ("/v1/agent/schedulers", 400, "Server only endpoint"),
        ("/v1/agent/schedulers/config", 400, "Server only endpoint"),
        ("/v1/plugins?type=csi", 200, "[]"),
        ("/v1/status/leader", 200, r#""127.0.0.1:4647""#),
        ("/v1/status/peers", 200, r#"["127.0.0.1:4647"]"#),
    ];
    for (target, status, body) in expect {
        let resp = get(s.proxy.addr, target, "");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (*status, *body),
            "{target}"
        );
    }
    for target in [
        "/v1/agent/self",
        "/v1/agent/members",
        "/v1/agent/host",
        "/v1/services",
    ] {
        let resp = get(s.proxy.addr, target, "");
        assert_eq!(resp.status, 200, "{target}");
        assert!(
            resp.text().starts_with(['{', '[']),
            "{target}: {}",
            resp.text()
        );
    }
    let resp = get(s.proxy.addr, "/v1/service/web", "");
    assert_eq!(resp.status, 200);
    assert!(resp.text().contains(r#""ServiceName":"web""#));
    assert_eq!(s.standin.requests().len(), expect.len() + 5);
    // METRICS=false closes the default group.
    assert_eq!(get(s.proxy.addr, "/v1/metrics", "").status, 403);
    assert_eq!(s.standin.requests().len(), expect.len() + 5);
}

#[test]
fn event_stream_reaches_the_client_event_by_event() {
    let s = setup(&[("HOLEPUNCH_ALLOW_ALL", "true")]);
    let mut conn = Conn::open(s.proxy.addr).unwrap();
    conn.send(b"GET /v1/event/stream?topic=Node HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = conn.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    // Each event arrives before the stand-in is even allowed to send the next.
    for (i, event) in EVENTS.iter().enumerate() {
        if i > 0 {
            s.standin.release_event();
        }
        let chunk = conn.read_chunk().unwrap().expect("an event");
        assert_eq!(String::from_utf8(chunk).unwrap(), format!("{event}\n"));
    }
    assert_eq!(conn.read_chunk().unwrap(), None);
}

#[test]
fn all_forwards_every_method_with_its_body() {
    let s = setup(&[("HOLEPUNCH_ALLOW_ALL", "true")]);
    let body = "{\"Items\":{\"user\":\"admin\"}}";
    let raw = format!(
        "PUT /v1/var/app/config?cas=0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.text(),
        format!(r#"{{"Path":"app/config","BodyBytes":{}}}"#, body.len())
    );

    // A chunked upload streams through.
    let raw = "POST /v1/var/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let resp = send(s.proxy.addr, raw.as_bytes()).unwrap();
    assert_eq!(resp.status, 200);

    let raw =
        "DELETE /v1/service/web/_nomad-task-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(send(s.proxy.addr, raw.as_bytes()).unwrap().status, 200);
    // Unknown Nomad paths come back as Nomad answers them: 404, empty body.
    let resp = get(s.proxy.addr, "/v1/no/such/endpoint", "");
    assert_eq!((resp.status, resp.body.len()), (404, 0));

    let reqs = s.standin.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].target.as_str()),
        ("PUT", "/v1/var/app/config?cas=0")
    );
    assert_eq!(reqs[0].body, body.as_bytes());
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(reqs[1].body, b"hello world");
    assert_eq!(reqs[2].method, "DELETE");
    assert!(reqs
        .iter()
        .all(|r| r.header_values("x-nomad-token") == vec![TOKEN]));
}

#[test]
fn upstream_connections_are_pooled() {
    let s = setup(&[]);
    let mut conn = Conn::open(s.proxy.addr).unwrap();
    for _ in 0..50 {
        let resp = conn
            .request(b"GET /v1/metrics?format=prometheus HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(resp.status, 200);
    }
    assert_eq!(s.standin.requests().len(), 50);
    assert_eq!(s.standin.connections(), 1);
}

#[test]
fn bind_to_ipv6_loopback() {
    let s = Harness::new().bind("::1").start();
    assert_eq!(
        s.proxy.addr.to_string(),
        format!("[::1]:{}", s.proxy.addr.port())
    );
    let resp = send(
        s.proxy.addr,
        b"GET /v1/agent/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .ok();
    let resp = resp.expect("the proxy answers on [::1]");
    assert_eq!((resp.status, resp.text().as_str()), (200, HEALTH_BODY));
    assert_eq!(s.standin.requests().len(), 1);
}

#[test]
fn all_carries_an_exec_websocket_upgrade_both_ways() {
    let s = setup(&[("HOLEPUNCH_ALLOW_ALL", "true")]);
    let mut conn = Conn::open(s.proxy.addr).unwrap();
    conn.send(
        b"GET /v1/client/allocation/0b1c/exec?task=web&command=%5B%22sh%22%5D HTTP/1.1\r\nHost: x\r\n\
          Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let head = conn.read_head().unwrap();
    assert_eq!(head.status, 101);
    assert_eq!(head.header("upgrade"), Some("websocket"));
    for msg in [&b"first frame"[..], b"second frame"] {
        conn.send(msg).unwrap();
        assert_eq!(conn.read_exact(msg.len()).unwrap(), msg);
    }
    let r = &s.standin.requests()[0];
    assert_eq!(
        r.target,
        "/v1/client/allocation/0b1c/exec?task=web&command=%5B%22sh%22%5D"
    );
    assert_eq!(r.header_values("x-nomad-token"), vec![TOKEN]);
}

#[test]
fn metrics_are_gzipped_for_clients_that_accept_it() {
    use std::io::Read;
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = 90_000;
    let s = Harness::new().standin(options).start();
    let proxy = &s.proxy;
    let plain = get(proxy.addr, "/v1/metrics?format=prometheus", "");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, support::standin::prometheus_body(90_000));

    // What Prometheus sends.
    let gz = get(
        proxy.addr,
        "/v1/metrics?format=prometheus",
        "Accept-Encoding: gzip\r\n",
    );
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(
        gz.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain.body);
    assert!(
        gz.body.len() * 5 < plain.body.len(),
        "{} bytes gzipped from {}",
        gz.body.len(),
        plain.body.len()
    );

    // Only metrics: other groups pass through as Nomad sent them.
    let health = get(proxy.addr, "/v1/agent/health", "Accept-Encoding: gzip\r\n");
    assert_eq!(health.header("content-encoding"), None);
    assert_eq!(health.text(), HEALTH_BODY);
}

#[test]
fn after_warm_up_steady_load_opens_no_new_upstream_connection() {
    // docs/performance.md: no new upstream connection after warm-up. A new
    // one opens only when more requests than ever are on the socket at
    // once, so the warm-up puts as many there as the load will: one
    // blocking query per client, held by the stand-in until all are there.
    // Pingora puts an upstream connection back in its pool before it reads
    // the client connection's next request (pingora-proxy 0.9.1 `src/lib.rs`,
    // `proxy_to_upstream`), so these 16 clients never use more than 16.
    const CLIENTS: usize = 16;
    const ROUNDS: usize = 200;
    let s = setup(&[("HOLEPUNCH_ALLOW_NODES", "true")]);
    let addr = s.proxy.addr;
    let held: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut conn = Conn::open(addr).unwrap();
            std::thread::spawn(move || {
                let raw = format!(
                    "GET /v1/nodes?index={START_INDEX}&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n"
                );
                let resp = conn.request(raw.as_bytes()).unwrap();
                assert_eq!(resp.status, 200);
                conn
            })
        })
        .collect();
    assert!(s
        .standin
        .wait_for_requests(CLIENTS, Duration::from_secs(20)));
    let warm = s.standin.connections();
    assert_eq!(warm, CLIENTS, "one upstream connection per request held");
    s.standin.bump_index();
    let conns: Vec<Conn> = held.into_iter().map(|h| h.join().unwrap()).collect();

    // Steady load: the same clients, each on its kept-alive connection.
    // Agent health: metrics scrapes would be coalesced, another matter.
    let clients: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let resp = conn
                        .request(b"GET /v1/agent/health HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                    assert_eq!(resp.status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(s.standin.requests().len(), CLIENTS * (ROUNDS + 1));
    assert_eq!(
        s.standin.connections(),
        warm,
        "{} requests after warm-up opened new upstream connections",
        CLIENTS * ROUNDS
    );
}
