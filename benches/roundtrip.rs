//! A full round trip through the proxy, in one process: a kept-alive client
//! on loopback TCP, the real server assembly (guard, proxy, pooled upstream
//! connections), and the stand-in Task API on a Unix socket. One request per
//! iteration, for a small answer (`/v1/agent/health`) and a ~90 KB
//! Prometheus scrape. `cargo bench --bench roundtrip` (part of `make bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use holepunch::config::Config;
use holepunch::conn::connections::{Fitted, DEFAULT_MAX_CONNECTIONS};
use holepunch::files::token::Token;
use holepunch::open_files::OpenFiles;
use holepunch::startup::Startup;
use holepunch_testkit::standin::{Options, StandIn};
use holepunch_testkit::{Conn, TempDir, TOKEN};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::RunArgs;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

const METRICS_BYTES: usize = 90_000;

/// Starts the stand-in and the proxy; returns the proxy's address.
fn start(dir: &TempDir) -> (StandIn, std::net::SocketAddr) {
    let sock = dir.join("api.sock");
    let mut options = Options::new(TOKEN);
    options.metrics_bytes = METRICS_BYTES;
    let standin = StandIn::start(&sock, options);
    let port = holepunch_testkit::free_port();
    let vars = [
        ("HOLEPUNCH_BIND", "127.0.0.1".to_string()),
        ("HOLEPUNCH_PORT", port.to_string()),
        ("HOLEPUNCH_SOCKET_PATH", sock.to_str().unwrap().to_string()),
        ("NOMAD_TOKEN", TOKEN.to_string()),
    ];
    let config = Config::from_vars(
        vars.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    )
    .expect("a valid configuration");
    let token = Token::load(&config.files.token).expect("the token");
    let startup = Startup {
        config,
        token: Arc::new(token),
        client_tokens: None,
        tls: None,
        client_cas: None,
        server_conf: ServerConf::default(),
        open_files: OpenFiles::raise(),
        max_connections: Fitted::exactly(DEFAULT_MAX_CONNECTIONS),
        run_dir: None,
    };
    let server = startup.into_server(Opt::default()).expect("the server");
    std::thread::spawn(move || server.run(RunArgs::default()));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..500 {
        if let Ok(r) = holepunch_testkit::send(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") {
            if r.status == 200 {
                return (standin, addr);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the proxy did not come up");
}

fn roundtrip(c: &mut Criterion) {
    let dir = TempDir::new();
    let (_standin, addr) = start(&dir);
    let mut group = c.benchmark_group("roundtrip");
    let cases: [(&str, &[u8], usize); 2] = [
        (
            "agent_health",
            b"GET /v1/agent/health HTTP/1.1\r\nHost: x\r\n\r\n",
            holepunch_testkit::standin::HEALTH_BODY.len(),
        ),
        (
            "metrics_90k",
            b"GET /v1/metrics?format=prometheus HTTP/1.1\r\nHost: x\r\n\r\n",
            METRICS_BYTES,
        ),
    ];
    for (name, request, bytes) in cases {
        let mut conn = Conn::open(addr).expect("connect");
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let resp = conn.request(request).expect("a response");
                assert_eq!(resp.status, 200);
                resp.body.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
