//! Client certificates (`HOLEPUNCH_TLS_CLIENT_CA_FILE`), with raw TLS
//! clients: a certificate from the CA gets through, with or without client
//! tokens; one from another CA, an expired one, one for servers only, and
//! none at all are refused during the handshake with nothing forwarded; the
//! CA file is re-read when it changes, and a kept-alive connection whose CA
//! was removed is closed before its next request; a broken CA file trusts
//! nobody until it is fixed; and the start-up checks. The real Prometheus
//! scraping with a certificate is in `clients.rs`.

use crate::support::{
    client_fixture, run_to_exit, sample, ClientCert, Conn, Harness, Response, Setup,
    CLIENT_FIXTURES, CLIENT_TOKENS, FIXTURES, IO_TIMEOUT, TLS_CLIENT_CA, TOKEN,
};
use crate::support::{eventually, tls_client_with};
use std::io::{Read, Write};
use std::net::SocketAddr;

const METRICS: &[u8] = b"GET /v1/metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// The proxy's certificate, which the clients trust.
fn server_ca() -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/a.crt")).unwrap()
}

/// A client-certificate fixture by its base name (`client`, `other`, ...):
/// its certificate and key.
fn pair(name: &str) -> (Vec<u8>, Vec<u8>) {
    (
        client_fixture(&format!("{name}.crt")),
        client_fixture(&format!("{name}.key")),
    )
}

/// A kept-alive TLS connection presenting the fixture `name`, if any.
fn connect(addr: SocketAddr, name: Option<&str>) -> std::io::Result<Conn> {
    let pair = name.map(pair);
    let cert = pair.as_ref().map(|(chain, key)| ClientCert { chain, key });
    Conn::tls_with(addr, &server_ca(), cert)
}

/// How the proxy refused a client presenting `name` (or no certificate):
/// the alert the client got in place of any answer. Over TLS 1.3, the
/// client reads before sending anything, so the alert is all there is to
/// read; over TLS 1.2, the client's own handshake fails with it. Panics if
/// the handshake was accepted.
fn refusal(addr: SocketAddr, name: Option<&str>, tls12: bool) -> String {
    let pair = name.map(pair);
    let cert = pair.as_ref().map(|(chain, key)| ClientCert { chain, key });
    let versions: &[_] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut tls = match tls_client_with(addr, &server_ca(), cert, versions) {
        Err(e) => {
            assert!(
                tls12,
                "a TLS 1.3 client's side of the handshake ends first: {e}"
            );
            return e.to_string();
        }
        Ok(tls) => tls,
    };
    assert!(!tls12, "{name:?}: the TLS 1.2 handshake was accepted");
    let mut got = Vec::new();
    match tls.read_to_end(&mut got) {
        Err(e) => e.to_string(),
        Ok(_) => panic!(
            "{name:?}: accepted, and read {:?}",
            String::from_utf8_lossy(&got)
        ),
    }
}

/// Sends a request straight after the client's side of the handshake and
/// expects no answer at all: the connection ends without a status line.
fn unanswered(addr: SocketAddr, name: Option<&str>) {
    let pair = name.map(pair);
    let cert = pair.as_ref().map(|(chain, key)| ClientCert { chain, key });
    let Ok(mut tls) = tls_client_with(addr, &server_ca(), cert, rustls::DEFAULT_VERSIONS) else {
        return;
    };
    // The write may fail once the alert has come: either way, no answer.
    let _ = tls.write_all(METRICS).and_then(|()| tls.flush());
    let mut got = Vec::new();
    let _ = tls.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "{name:?}: answered {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// A proxy with TLS and client certificates required.
fn mtls() -> Harness {
    Harness::new().tls().client_ca()
}

fn get(conn: &mut Conn, extra: &str) -> Response {
    let raw = format!("GET /v1/metrics HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
    conn.request(raw.as_bytes()).expect("an answer")
}

#[test]
fn a_certificate_from_the_ca_gets_through_with_or_without_client_tokens() {
    let s = mtls().start();
    let mut conn = connect(s.proxy.addr, Some("client")).expect("a handshake");
    let resp = get(&mut conn, "");
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The same connection, again: kept alive, checked, served.
    assert_eq!(get(&mut conn, "").status, 200);
    assert_eq!(s.seen(), ["GET /v1/metrics", "GET /v1/metrics"]);
    for r in s.standin.requests() {
        assert_eq!(r.header_values("x-nomad-token"), [TOKEN]);
    }

    // With client tokens as well, a client needs both.
    let s = mtls().client_tokens("scraper-token\n").start();
    let mut conn = connect(s.proxy.addr, Some("client")).expect("a handshake");
    let resp = get(&mut conn, "");
    assert_eq!(resp.status, 401, "{}", resp.text());
    let resp = get(&mut conn, "Authorization: Bearer scraper-token\r\n");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(s.seen(), ["GET /v1/metrics"]);
    // A token without a certificate never gets as far as HTTP.
    assert!(refusal(s.proxy.addr, None, false).contains("CertificateRequired"));
    unanswered(s.proxy.addr, None);
    assert_eq!(s.seen(), ["GET /v1/metrics"]);
    assert!(s.dir.join(CLIENT_TOKENS).exists());
}

#[test]
fn another_ca_an_expired_certificate_or_none_are_refused_in_the_handshake() {
    let s = mtls().telemetry().start();
    let addr = s.proxy.addr;
    for (name, alert) in [
        (Some("other"), "received fatal alert: UnknownCA"),
        (Some("expired"), "received fatal alert: CertificateExpired"),
        (
            Some("server-only"),
            "received fatal alert: UnsupportedCertificate",
        ),
        (None, "received fatal alert: CertificateRequired"),
    ] {
        for tls12 in [false, true] {
            let got = refusal(addr, name, tls12);
            assert!(got.contains(alert), "{name:?} (TLS 1.2: {tls12}): {got}");
        }
        unanswered(addr, name);
    }
    // Nothing reached the socket, and no request was even counted: the one
    // request counted is the harness's own /health, with its certificate
    // (the series the rules match exist from startup, at 0).
    assert!(s.seen().is_empty(), "{:?}", s.seen());
    let metrics = s.proxy.own_metrics();
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("holepunch_requests_total{") && !l.ends_with(" 0"))
        .collect();
    assert_eq!(
        counted,
        ["holepunch_requests_total{code=\"2xx\",decision=\"local\",group=\"none\"} 1"]
    );
    // The accepted certificate still gets through on the same proxy.
    let mut conn = connect(addr, Some("client")).expect("a handshake");
    assert_eq!(get(&mut conn, "").status, 200);
}

/// Writes `contents` to the proxy's CA file the way a template does: a new
/// file renamed over the old.
fn replace_ca(s: &Setup, contents: &[u8]) {
    let tmp = s.dir.join("client-ca.tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, s.dir.join(TLS_CLIENT_CA)).unwrap();
}

/// A `/health` request on a new connection presenting `name`: its status,
/// or the error in place of an answer.
fn health(addr: SocketAddr, name: &str) -> Result<u16, String> {
    let raw = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    connect(addr, Some(name))
        .and_then(|mut conn| conn.request(raw))
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

/// Waits until a new connection presenting `name` is served `/health`.
fn wait_accepted(s: &Setup, name: &str) {
    eventually(
        IO_TIMEOUT,
        || health(s.proxy.addr, name) == Ok(200),
        || format!("{name} never accepted:\n{}", s.proxy.log()),
    );
}

/// Waits until a new connection presenting `name` is refused, then checks
/// that the refusal is the `alert`, in the handshake.
fn wait_refused(s: &Setup, name: &str, alert: &str) {
    eventually(
        IO_TIMEOUT,
        || health(s.proxy.addr, name).is_err(),
        || format!("{name} never refused:\n{}", s.proxy.log()),
    );
    let got = refusal(s.proxy.addr, Some(name), false);
    assert!(
        got.contains(&format!("received fatal alert: {alert}")),
        "{got}"
    );
}

#[test]
fn a_new_ca_file_applies_to_new_connections_and_closes_kept_alive_ones_it_no_longer_trusts() {
    let s = mtls().telemetry().start();
    let addr = s.proxy.addr;
    let mut kept = connect(addr, Some("client")).expect("a handshake");
    assert_eq!(get(&mut kept, "").status, 200);
    assert!(refusal(addr, Some("other"), false).contains("UnknownCA"));

    // The CA replaced by the other one.
    replace_ca(&s, &client_fixture("other-ca.crt"));
    wait_refused(&s, "client", "UnknownCA");
    wait_accepted(&s, "other");
    // The connection made under the old CA is closed at its next request,
    // which is not forwarded.
    kept.send(METRICS).unwrap();
    let answer = kept.read_head();
    assert!(answer.is_err(), "answered under a removed CA: {answer:?}");
    s.proxy.wait_log(
        IO_TIMEOUT,
        "its client certificate is no longer trusted (invalid peer certificate: UnknownIssuer); nothing forwarded",
    );
    assert_eq!(s.seen(), ["GET /v1/metrics"]);
    let metrics = s.proxy.own_metrics();
    let reloads = "holepunch_reloads_total{file=\"tls_client_ca\"}";
    assert_eq!(sample(&metrics, reloads), Some(1.0), "{metrics}");
    // The other CA's client is served.
    let mut conn = connect(addr, Some("other")).expect("a handshake");
    assert_eq!(get(&mut conn, "").status, 200);
    assert_eq!(s.seen(), ["GET /v1/metrics", "GET /v1/metrics"]);
}

#[test]
fn a_broken_ca_file_trusts_nobody_until_it_is_fixed() {
    let s = mtls().telemetry().start();
    let addr = s.proxy.addr;
    let mut kept = connect(addr, Some("client")).expect("a handshake");
    assert_eq!(get(&mut kept, "").status, 200);

    // A render that went wrong: no certificate in the file.
    replace_ca(&s, b"# rendered from an empty secret\n");
    wait_refused(&s, "client", "AccessDenied");
    let ca = s.dir.file(TLS_CLIENT_CA);
    s.proxy.wait_log(
        IO_TIMEOUT,
        &format!(
            "{ca}: no PEM certificate in it: expected the CA certificates that client \
             certificates must chain to; no client certificate is trusted: every TLS \
             handshake is refused until it is fixed"
        ),
    );
    kept.send(METRICS).unwrap();
    assert!(kept.read_head().is_err(), "a kept-alive connection went on");
    let metrics = s.proxy.own_metrics();
    let failures = "holepunch_reload_failures_total{file=\"tls_client_ca\"}";
    assert_eq!(sample(&metrics, failures), Some(1.0), "{metrics}");

    // The very file that was in use, back again.
    replace_ca(&s, &client_fixture("ca.crt"));
    wait_accepted(&s, "client");
    let mut conn = connect(addr, Some("client")).expect("a handshake");
    assert_eq!(get(&mut conn, "").status, 200);
    assert_eq!(s.seen(), ["GET /v1/metrics", "GET /v1/metrics"]);
}

#[test]
fn a_client_ca_file_needs_tls_and_a_ca_certificate_to_start() {
    let env = |extra: &[(&'static str, String)]| {
        let mut env: Vec<(&str, String)> = vec![
            ("HOLEPUNCH_SOCKET_PATH", "/run/api.sock".into()),
            ("NOMAD_TOKEN", TOKEN.into()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    let check = |env: Vec<(&str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_to_exit(&env, &["--check"])
    };
    let ca = format!("{CLIENT_FIXTURES}/ca.crt");
    let pair = [
        ("HOLEPUNCH_TLS_CERT_FILE", format!("{FIXTURES}/a.crt")),
        ("HOLEPUNCH_TLS_KEY_FILE", format!("{FIXTURES}/a.key")),
    ];

    let exit = check(env(&[("HOLEPUNCH_TLS_CLIENT_CA_FILE", ca.clone())]));
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    let line = format!(
        "nomad-holepunch: HOLEPUNCH_TLS_CLIENT_CA_FILE=\"{ca}\": client certificates are \
         checked in the TLS handshake, so they need TLS on the listener: set \
         HOLEPUNCH_TLS_CERT_FILE and HOLEPUNCH_TLS_KEY_FILE too"
    );
    assert!(exit.stderr.contains(&line), "{}", exit.stderr);

    // A file with no CA certificate in it: a key, say.
    let key = format!("{CLIENT_FIXTURES}/ca.key");
    let exit = check(env(&[
        &pair[..],
        &[("HOLEPUNCH_TLS_CLIENT_CA_FILE", key.clone())],
    ]
    .concat()));
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    let line = format!(
        "nomad-holepunch: HOLEPUNCH_TLS_CLIENT_CA_FILE=\"{key}\": no PEM certificate in it"
    );
    assert!(exit.stderr.contains(&line), "{}", exit.stderr);

    // With a CA, ALL may listen off loopback: a certificate authenticates.
    let exit = check(env(&[
        &pair[..],
        &[
            ("HOLEPUNCH_TLS_CLIENT_CA_FILE", ca.clone()),
            ("HOLEPUNCH_ALLOW_ALL", "true".into()),
            ("HOLEPUNCH_BIND", "0.0.0.0".into()),
        ],
    ]
    .concat()));
    assert_eq!(exit.status.code(), Some(0), "{}", exit.stderr);
    let required = format!("client certificates: required, from a CA in {ca}");
    assert!(
        exit.stdout.contains(&required) || exit.stderr.contains(&required),
        "{}{}",
        exit.stdout,
        exit.stderr
    );
}

/// A rustls client configuration presenting `client.crt`, with rustls's
/// default session cache: it resumes whenever the server lets it.
fn resuming_client() -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    pingora::tls::install_default_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&server_ca()).unwrap())
        .unwrap();
    let (chain, key) = pair("client");
    let chain = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&key).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    std::sync::Arc::new(config)
}

/// One GET /health on a new connection made with `config`: how the
/// handshake went, and the answer (or the error in its place).
fn health_with(
    addr: SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> (Option<rustls::HandshakeKind>, std::io::Result<Vec<u8>>) {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let raw = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut got = Vec::new();
    let result = tls
        .write_all(raw)
        .and_then(|()| tls.read_to_end(&mut got))
        .map(|_| got);
    (tls.conn.handshake_kind(), result)
}

/// A resumed TLS session carries the certificate of the handshake that
/// made it, unchecked: the proxy never lets one resume, so a client whose
/// CA was removed cannot come back on an old session.
#[test]
fn no_session_is_resumed_so_a_removed_ca_cannot_come_back() {
    let s = mtls().start();
    let addr = s.proxy.addr;
    let config = resuming_client();
    for _ in 0..2 {
        let (kind, answer) = health_with(addr, &config);
        let answer = answer.expect("served");
        assert!(answer.starts_with(b"HTTP/1.1 200 "), "{answer:?}");
        assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    }
    replace_ca(&s, &client_fixture("other-ca.crt"));
    wait_refused(&s, "client", "UnknownCA");
    let (kind, answer) = health_with(addr, &config);
    match answer {
        Ok(got) => panic!("served: {}", String::from_utf8_lossy(&got)),
        Err(e) => assert!(e.to_string().contains("UnknownCA"), "{e}"),
    }
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
}

/// Responses under way when the client's CA is removed: an event stream
/// (under ALL) is cut at its next event, and a blocking query answered
/// after gets nothing at all, its connection closed. The guard's check
/// before each request cannot reach these: they started before.
#[test]
fn responses_in_flight_are_cut_once_their_certificate_is_no_longer_trusted() {
    use crate::support::standin::{EVENTS, START_INDEX};
    let s = mtls().env("HOLEPUNCH_ALLOW_ALL", "true").start();
    let addr = s.proxy.addr;
    let mut stream = connect(addr, Some("client")).expect("a handshake");
    stream
        .send(b"GET /v1/event/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(stream.read_head().expect("the stream's head").status, 200);
    let first = stream.read_chunk().expect("the first event");
    assert_eq!(first, Some(format!("{}\n", EVENTS[0]).into_bytes()));
    let mut query = connect(addr, Some("client")).expect("a handshake");
    let raw = format!(
        "GET /v1/service/web?index={START_INDEX}&wait=5m HTTP/1.1\r\nHost: localhost\r\n\r\n"
    );
    query.send(raw.as_bytes()).unwrap();
    assert!(s.standin.wait_for_requests(2, IO_TIMEOUT), "{:?}", s.seen());

    replace_ca(&s, &client_fixture("other-ca.crt"));
    wait_refused(&s, "client", "UnknownCA");
    // The next event, and the blocking query's answer.
    s.standin.release_event();
    s.standin.bump_index();
    let next = stream.read_chunk();
    assert!(next.is_err(), "the stream went on: {next:?}");
    let answer = query.read_head();
    assert!(answer.is_err(), "answered under a removed CA: {answer:?}");
    s.proxy.wait_log(
        IO_TIMEOUT,
        "GET /v1/event/stream in flight: its client certificate is no longer trusted",
    );
}
