//! The per-request decision, [`decide_request`] after [`parse_target`]: the target rule, the
//! allowlist and every head rule (address, web page, Host, body, upgrade,
//! region, node), as the proxy runs it on each request before anything is
//! forwarded. An allowed path, one with escapes, a denied path and a
//! hostile one, each with the headers a Prometheus scrape sends, under
//! rules with every check on (`HOLEPUNCH_ALLOW_FROM`,
//! `HOLEPUNCH_ALLOWED_HOSTS`, `NOMAD_REGION`). `make bench` runs it with the
//! other benchmarks; alone: `cargo bench --locked --bench decision`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use holepunch::decision::allowlist::{Allowlist, Group};
use holepunch::decision::cidr::AddrSet;
use holepunch::decision::head::{decide_request, Decision, Head, Rules};
use holepunch::decision::hosts::HostList;
use holepunch::decision::target::parse_target;
use http::{HeaderMap, HeaderValue, Method};
use std::net::{IpAddr, Ipv4Addr};

fn decision(c: &mut Criterion) {
    let rules = Rules {
        allow: Allowlist::default().with(Group::Services, true),
        allow_from: Some(AddrSet::parse("10.0.0.0/8,127.0.0.1").expect("a CIDR list")),
        allowed_hosts: Some(HostList::parse("nomad.example,localhost").expect("a host list")),
        region: Some("global".to_string()),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "nomad.example:6120"),
        ("user-agent", "Prometheus/3.0.0"),
        ("accept", "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
        ("accept-encoding", "gzip"),
        ("x-prometheus-scrape-timeout-seconds", "10"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let client = Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    let cases: [(&str, &[u8]); 5] = [
        ("allowed", b"/v1/metrics?format=prometheus"),
        ("allowed_subtree", b"/v1/service/web?index=1234&wait=30s"),
        ("allowed_escaped", b"/v1/service/caf%C3%A9"),
        ("denied", b"/v1/agent/self"),
        ("hostile", b"/v1/metrics/%2e%2e/agent/self"),
    ];
    let mut group = c.benchmark_group("decide_request");
    for (name, target) in cases {
        // Each case takes the path it is named for: the allowed ones are
        // forwarded past every head rule, not refused early by one.
        let parsed = parse_target(target);
        let head = Head {
            method: &Method::GET,
            target,
            parsed: &parsed,
            headers: &headers,
            client,
        };
        let forwarded = matches!(decide_request(&rules, &head), Decision::Forward { .. });
        assert_eq!(forwarded, name.starts_with("allowed"), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                // The target is read once per request, as the proxy does.
                let target = black_box(target);
                decide_request(
                    black_box(&rules),
                    &Head {
                        method: &Method::GET,
                        target,
                        parsed: &parse_target(target),
                        headers: &headers,
                        client,
                    },
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
