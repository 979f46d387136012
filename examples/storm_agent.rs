//! A stand-in Nomad agent for the scrape-storm benchmark
//! (`benches/storm.sh`): it costs CPU the way a Nomad agent does. Every
//! request is one token check against the servers (counted), and rendering
//! the Prometheus metrics takes `RENDER_MS` of CPU (spun, so the time is
//! really spent) before a fresh ~90 KB body is written.
//!
//! `GET /count` (no token) answers how many requests carried the token.
//!
//! Usage: storm_agent SOCKET_PATH TOKEN [RENDER_MS]
//! Runs until killed. Standard library only: one thread per connection.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(token)) = (args.first(), args.get(1)) else {
        eprintln!("usage: storm_agent SOCKET_PATH TOKEN [RENDER_MS]");
        std::process::exit(2);
    };
    let render = Duration::from_micros(
        args.get(2)
            .and_then(|ms| ms.parse::<f64>().ok())
            .map_or(3000, |ms| (ms * 1000.0) as u64),
    );
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap_or_else(|e| {
        eprintln!("storm_agent: cannot listen on {path}: {e}");
        std::process::exit(1)
    });
    let checks = Arc::new(AtomicU64::new(0));
    for conn in listener.incoming().flatten() {
        let (token, checks) = (token.clone(), Arc::clone(&checks));
        std::thread::spawn(move || serve(conn, &token, &checks, render));
    }
}

fn serve(conn: UnixStream, token: &str, checks: &AtomicU64, render: Duration) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    // One request per turn, for as long as the connection lives.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split(' ').nth(1).unwrap_or("").to_string();
        let mut authorized = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("x-nomad-token") && v.trim() == token {
                    authorized = true;
                }
            }
        }
        let (status, ctype, body) = if target == "/count" {
            let n = checks.load(Ordering::SeqCst).to_string();
            (200, "text/plain", n.into_bytes())
        } else if !authorized {
            (401, "text/plain", b"Unauthorized".to_vec())
        } else {
            checks.fetch_add(1, Ordering::SeqCst);
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics(render),
            )
        };
        let head = format!(
            "HTTP/1.1 {status} OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
    }
}

/// A ~90 KB Prometheus body, rendered for at least `render` of CPU.
fn metrics(render: Duration) -> Vec<u8> {
    let start = Instant::now();
    let mut body = String::with_capacity(96 * 1024);
    let mut round = 0u64;
    loop {
        body.clear();
        let mut i = 0u64;
        while body.len() < 90_000 {
            body.push_str(&format!(
                "nomad_client_host_cpu_idle{{cpu=\"cpu{i}\",datacenter=\"dc1\",node_id=\"f7476465-4d6e-c0de-26d0-e383c49be941\"}} {}.{}\n",
                97 + round % 3,
                i
            ));
            i += 1;
        }
        round += 1;
        if start.elapsed() >= render {
            return body.into_bytes();
        }
    }
}
