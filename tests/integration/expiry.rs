//! Token rotation as Nomad does it, on the real binary: a named identity
//! with a `ttl`, whose file the client rewrites in place at each renewal
//! (hashicorp/nomad `client/allocrunner/taskrunner/identity_hook.go`,
//! `setAltToken`, through `os.WriteFile`), and what the client and the
//! operator see when renewal stops: the stand-in refuses a token past its
//! `exp` as Nomad does (500), `/ready` says why, and the expiry gauges are
//! in the past.

use crate::support::standin::{jwt, Options, AUTH_ERROR};
use crate::support::{
    eventually, get, run_to_exit, sample, Exit, Harness, Proxy, Setup, IO_TIMEOUT, TOKEN,
};
use std::time::{SystemTime, UNIX_EPOCH};

const EXPIRY: &str = "holepunch_workload_token_expiry_timestamp_seconds";
const ISSUED: &str = "holepunch_workload_token_issued_timestamp_seconds";
const FILE: &str = "nomad_holepunch.jwt";
const METRICS: &str = "/v1/metrics?format=prometheus";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}

/// A named identity's token as Nomad signs it: `iat` and `nbf` at signing,
/// `exp` a `ttl` later (nomad/structs/workload_id.go, `Build`).
fn token(iat: i64, exp: i64) -> String {
    jwt(&format!(
        r#"{{"nomad_namespace":"default","nomad_job_id":"holepunch","nomad_allocation_id":"0b1c2d3e-0000-4000-8000-000000000001","nomad_task":"holepunch","sub":"global:default:holepunch:holepunch:holepunch:holepunch","aud":["nomadproject.io"],"iat":{iat},"nbf":{iat},"exp":{exp},"jti":"{iat}-{exp}"}}"#
    ))
}

/// The proxy reading its token from `nomad_holepunch.jwt`, holding `first`,
/// in front of a stand-in that issued every token of `issued`.
fn start(first: &str, issued: &[&str]) -> Setup {
    let h = Harness::new().telemetry();
    let file = h.path(FILE);
    std::fs::write(&file, first).unwrap();
    let mut options = Options::new(issued[0]);
    options.tokens = issued.iter().map(|t| t.to_string()).collect();
    h.standin(options)
        .unset("NOMAD_TOKEN")
        .env("HOLEPUNCH_TOKEN_FILE", file.to_str().unwrap())
        .start()
}

/// Waits until the gauge reads `want`.
fn gauge_reaches(proxy: &Proxy, name: &str, want: i64) {
    eventually(
        IO_TIMEOUT,
        || sample(&proxy.own_metrics(), name) == Some(want as f64),
        || format!("{name} never read {want}:\n{}", proxy.own_metrics()),
    );
}

fn token_at_socket(s: &Setup) -> String {
    let last = s
        .standin
        .requests()
        .pop()
        .expect("a request reached the socket");
    last.header("x-nomad-token").unwrap_or("").to_string()
}

#[test]
fn the_proxy_carries_on_across_a_renewal() {
    let t = now();
    // A 12 h ttl; the client renews it at about half its life.
    let first = token(t, t + 43_200);
    let renewed = token(t + 1, t + 43_201);
    let s = start(&first, &[&first, &renewed]);
    gauge_reaches(&s.proxy, EXPIRY, t + 43_200);
    gauge_reaches(&s.proxy, ISSUED, t);
    assert_eq!(get(s.proxy.addr, METRICS, "").status, 200);
    assert_eq!(token_at_socket(&s), first);
    assert_eq!(get(s.proxy.addr, "/ready", "").text(), "ready");

    // The renewal: the file rewritten in place, as os.WriteFile does.
    std::fs::write(s.dir.join(FILE), &renewed).unwrap();
    // Requests go on, every one answered 200, until the new token is the
    // one at the socket, and the gauges follow it.
    eventually(
        IO_TIMEOUT,
        || {
            let resp = get(s.proxy.addr, METRICS, "");
            assert_eq!(resp.status, 200, "{}", resp.text());
            token_at_socket(&s) == renewed
        },
        || {
            format!(
                "the renewed token never reached the socket:\n{}",
                s.proxy.log()
            )
        },
    );
    gauge_reaches(&s.proxy, EXPIRY, t + 43_201);
    gauge_reaches(&s.proxy, ISSUED, t + 1);
    for _ in 0..20 {
        assert_eq!(get(s.proxy.addr, METRICS, "").status, 200);
        assert_eq!(token_at_socket(&s), renewed);
    }
    let own = s.proxy.own_metrics();
    assert_eq!(
        sample(&own, r#"holepunch_reloads_total{file="workload_token"}"#),
        Some(1.0),
        "{own}"
    );
    assert_eq!(get(s.proxy.addr, "/ready", "").text(), "ready");
}

#[test]
fn when_renewal_stops_nomad_answers_500_and_the_operator_sees_why() {
    let t = now();
    // The token still in the file when renewal stopped: its exp is past by
    // more than Nomad's one-minute leeway.
    let stale = token(t - 43_320, t - 120);
    let renewed = token(t, t + 43_200);
    let s = start(&stale, &[&stale, &renewed]);

    // The client gets Nomad's own answer, passed through.
    let resp = get(s.proxy.addr, METRICS, "");
    assert_eq!(resp.status, 500);
    assert_eq!(resp.text(), AUTH_ERROR);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(token_at_socket(&s), stale);
    // The operator: /ready says why, without asking Nomad ...
    let requests = s.standin.requests().len();
    let ready = get(s.proxy.addr, "/ready", "");
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().starts_with(
            "not ready: the workload token expired (its exp claim is more than 60 s past)"
        ),
        "{}",
        ready.text()
    );
    assert_eq!(s.standin.requests().len(), requests);
    // ... the gauge is in the past, and the 5xx are counted for the alerts.
    gauge_reaches(&s.proxy, EXPIRY, t - 120);
    let own = s.proxy.own_metrics();
    assert!(sample(&own, EXPIRY).unwrap() < now() as f64);
    assert_eq!(
        sample(
            &own,
            r#"holepunch_requests_total{code="5xx",decision="allowed",group="metrics"}"#
        ),
        Some(1.0),
        "{own}"
    );
    // ... and the startup log said so.
    let log = s.proxy.log();
    let line = format!("workload token expiry: exp {}, expired ", t - 120);
    assert!(log.contains(&line), "{line:?} not in:\n{log}");
    assert!(log.contains("s ago: Nomad refuses it"), "{log}");

    // Renewal resumes: the proxy carries on with no restart.
    std::fs::write(s.dir.join(FILE), &renewed).unwrap();
    eventually(
        IO_TIMEOUT,
        || get(s.proxy.addr, "/ready", "").status == 200,
        || format!("/ready never recovered:\n{}", s.proxy.log()),
    );
    assert_eq!(get(s.proxy.addr, METRICS, "").status, 200);
    assert_eq!(token_at_socket(&s), renewed);
    gauge_reaches(&s.proxy, EXPIRY, t + 43_200);
}

#[test]
fn nomad_refuses_an_unknown_uuid_with_403_and_any_other_token_with_500() {
    // The stand-in answers as the Task API does with ACLs on: 403 only for a
    // UUID that is no ACL token; a JWT it did not sign, or anything else, 500.
    for (token, status, body) in [
        ("6a2e1e3a-9a6b-4c1e-8f4e-0e6a2b1c3d4e", 403, "Forbidden"),
        ("not-a-token-nomad-knows", 500, AUTH_ERROR),
        (&token(1, 2)[..], 500, AUTH_ERROR),
    ] {
        let s = Harness::new().env("NOMAD_TOKEN", token).start();
        let resp = get(s.proxy.addr, "/v1/agent/health", "");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (status, body),
            "{token}"
        );
    }
}

#[test]
fn check_reports_the_token_expiry() {
    let t = now();
    let dir = crate::support::TempDir::new();
    let file = dir.file(FILE);
    std::fs::write(&file, token(t, t + 43_200)).unwrap();
    let socket = dir.file("api.sock");
    for (env, line) in [
        (
            vec![("HOLEPUNCH_TOKEN_FILE", file.as_str())],
            format!("workload token expiry: exp {}, expires in ", t + 43_200),
        ),
        (
            vec![("NOMAD_TOKEN", TOKEN)],
            "workload token expiry: none (no exp claim".to_string(),
        ),
        (
            vec![("NOMAD_TOKEN", "6a2e1e3a-9a6b-4c1e-8f4e-0e6a2b1c3d4e")],
            "workload token expiry: unknown (not a JWT".to_string(),
        ),
    ] {
        let mut env = env;
        env.push(("HOLEPUNCH_SOCKET_PATH", socket.as_str()));
        let Exit { status, stdout, .. } = run_to_exit(&env, &["--check"]);
        assert_eq!(status.code(), Some(0), "{stdout}");
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "{line:?} not in:\n{stdout}"
        );
    }
}
