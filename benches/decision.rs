//! The per-request decision (path rules plus allowlist), which runs before
//! anything is forwarded: an allowed path, one with escapes, a denied path
//! and a hostile one. `make bench-decision` (or `cargo bench --bench decision`).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use holepunch::decision::allowlist::{Allowlist, Group};
use holepunch::decision::head::decide_target;
use holepunch::decision::target::parse_target;
use http::Method;

fn decision(c: &mut Criterion) {
    let allow = Allowlist::default().with(Group::Services, true);
    let cases: [(&str, &[u8]); 5] = [
        ("allowed", b"/v1/metrics?format=prometheus"),
        ("allowed_subtree", b"/v1/service/web?index=1234&wait=30s"),
        ("allowed_escaped", b"/v1/service/caf%C3%A9"),
        ("denied", b"/v1/agent/self"),
        ("hostile", b"/v1/metrics/%2e%2e/agent/self"),
    ];
    let mut group = c.benchmark_group("decide");
    for (name, target) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                decide_target(
                    black_box(&allow),
                    black_box(&Method::GET),
                    &parse_target(black_box(target)),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
