//! The floor: the smallest Pingora proxy doing nomad-holepunch's job. Its
//! peer is the Task API socket, it sets the token header, and it does
//! nothing else: no allowlist, no limits, no guard, no modules. The load
//! benchmark (`benches/load.sh`) runs it beside the real proxy, so every run
//! shows what Pingora itself costs and what the project adds on top.
//!
//! Usage: floor LISTEN_ADDR SOCKET_PATH TOKEN [-c pingora.yaml]

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::Opt;
use pingora::upstreams::peer::HttpPeer;

struct Floor {
    peer: HttpPeer,
    token: String,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        upstream_request.insert_header("X-Nomad-Token", self.token.as_str())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(listen), Some(socket), Some(token)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: floor LISTEN_ADDR SOCKET_PATH TOKEN [-c pingora.yaml]");
        std::process::exit(2);
    };
    let conf = match args.get(3).map(String::as_str) {
        Some("-c") => args.get(4).cloned(),
        _ => None,
    };
    let opt = Opt {
        conf,
        ..Opt::default()
    };
    let mut server = match Server::new(Some(opt)) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("floor: {e}");
            std::process::exit(2);
        }
    };
    server.bootstrap();
    let peer = match HttpPeer::new_uds(socket, false, String::new()) {
        Ok(peer) => peer,
        Err(e) => {
            eprintln!("floor: {socket}: {e}");
            std::process::exit(2);
        }
    };
    let floor = Floor {
        peer,
        token: token.clone(),
    };
    let mut service = http_proxy_service(&server.configuration, floor);
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever();
}
