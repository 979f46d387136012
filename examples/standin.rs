//! A stand-in for the Nomad Task API socket, for trying the proxy with no
//! Nomad present (`make run` starts it). The same code backs the tests.
//!
//! Usage: standin SOCKET_PATH TOKEN [PROMETHEUS_BYTES]
//! Runs until killed.

use holepunch_testkit::standin::{Options, StandIn};
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(token)) = (args.next(), args.next()) else {
        eprintln!("usage: standin SOCKET_PATH TOKEN [PROMETHEUS_BYTES]");
        std::process::exit(2);
    };
    let mut options = Options::new(&token);
    if let Some(bytes) = args.next() {
        options.metrics_bytes = bytes.parse().unwrap_or_else(|_| {
            eprintln!("standin: PROMETHEUS_BYTES={bytes:?} is not a number");
            std::process::exit(2)
        });
    }
    let path = PathBuf::from(path);
    let _standin = StandIn::start(&path, options);
    eprintln!(
        "standin: Nomad Task API stand-in listening on {}",
        path.display()
    );
    loop {
        std::thread::park();
    }
}
