//! The log redaction (src/secrets.rs), which runs on every line written
//! (and only then): a Pingora trace line carrying the workload token and a
//! short line carrying nothing, with the workload token alone and with
//! client tokens in use and retired; and the rebuild a reload costs.
//! `cargo bench --bench redaction`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use holepunch::secrets::Redactor;

/// A workload identity's size: a JWT of about 700 bytes.
fn jwt(n: usize) -> String {
    let body: String = (0..640)
        .map(|i| (b'a' + ((i * 7 + n) % 26) as u8) as char)
        .collect();
    format!("eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.{body}.sig{n:08x}")
}

/// A client token: 32 random-looking bytes, hex.
fn client(n: usize) -> String {
    format!(
        "{:016x}{:016x}",
        (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        n
    )
}

fn secrets(clients: usize) -> Vec<String> {
    let mut all = vec![jwt(0)];
    all.extend((0..clients).map(client));
    all
}

fn redaction(c: &mut Criterion) {
    let trace = format!(
        "Writing request header: b\"GET /v1/metrics?format=prometheus HTTP/1.1\\r\\n\
         X-Nomad-Token: {}\\r\\nHost: localhost\\r\\nAccept: text/plain\\r\\n\\r\\n\"",
        jwt(0)
    );
    let short = "refused 127.0.0.1:41000 GET /v1/agent/self: HOLEPUNCH_ALLOW_AGENT_SELF is off";
    let mut group = c.benchmark_group("redact");
    // The workload token alone; with 1000 client tokens in use and 1000
    // retired; with 10000 and 10000.
    for clients in [0, 2_000, 20_000] {
        let all = secrets(clients);
        let redactor = Redactor::new(all.iter().map(String::as_str));
        println!(
            "{} secrets: about {} KiB",
            all.len(),
            redactor.heap_bytes() / 1024
        );
        group.bench_function(format!("trace_line/{}", all.len()), |b| {
            b.iter(|| redactor.redact(black_box(&trace)).len())
        });
        group.bench_function(format!("short_line/{}", all.len()), |b| {
            b.iter(|| redactor.redact(black_box(short)).len())
        });
    }
    group.finish();
    let mut group = c.benchmark_group("rebuild");
    group.sample_size(10);
    for clients in [2_000, 20_000] {
        let all = secrets(clients);
        group.bench_function(format!("{}", all.len()), |b| {
            b.iter(|| Redactor::new(black_box(&all).iter().map(String::as_str)))
        });
    }
    group.finish();
}

criterion_group!(benches, redaction);
criterion_main!(benches);
