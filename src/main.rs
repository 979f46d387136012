//! The `nomad-holepunch` binary: wires configuration, token, proxy and
//! shutdown together and hands them to Pingora. The logic lives in the
//! library (`src/lib.rs`).

use holepunch::config::{Config, ConfigError};
use holepunch::logging;
use holepunch::proxy::Holepunch;
use holepunch::shutdown::{Drain, InFlight};
use holepunch::token::{Token, TokenWatcher};
use log::info;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use std::sync::Arc;
use std::time::Duration;

/// Seconds that requests in flight get after SIGTERM: Nomad's default
/// `kill_timeout`. A config file (`-c`) may set `grace_period_seconds`.
const DEFAULT_GRACE_SECONDS: u64 = 5;

fn main() {
    logging::init();
    let mut opt = Opt::parse_args();

    let config = Config::from_env().unwrap_or_else(|errors| exit_with(&errors));
    let token = Token::load(&config.token).unwrap_or_else(|e| exit_with(&[e]));
    let server_conf = server_conf(&mut opt).unwrap_or_else(|e| exit_with(&[e]));
    let grace = Duration::from_secs(server_conf.grace_period_seconds.unwrap_or(0));

    info!("nomad-holepunch {} starting", env!("CARGO_PKG_VERSION"));
    for line in config.describe() {
        info!("{line}");
    }

    let token = Arc::new(token);
    let in_flight = Arc::new(InFlight::default());
    let holepunch = Holepunch::new(
        config.allow,
        &config.socket_path,
        Arc::clone(&token),
        Arc::clone(&in_flight),
    )
    .unwrap_or_else(|e| {
        exit_with(&[ConfigError {
            var: config.socket_path_from.to_string(),
            value: Some(config.socket_path.clone()),
            expected: format!("not a usable Unix socket path: {e}"),
        }])
    });

    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, holepunch);
    proxy.add_tcp(&config.listen.to_string());
    server.add_service(proxy);
    if token.file().is_some() {
        server.add_service(background_service(
            "token watcher",
            TokenWatcher::new(token),
        ));
    }
    server.add_service(background_service("drain", Drain::new(in_flight, grace)));

    info!("listening on http://{}", config.listen);
    server.run_forever();
}

/// Pingora's settings: from `-c FILE` if given, else its defaults; then our
/// defaults for what the file leaves unset.
fn server_conf(opt: &mut Opt) -> Result<ServerConf, ConfigError> {
    let mut conf = match opt.conf.take() {
        Some(path) => ServerConf::load_from_yaml(&path).map_err(|e| ConfigError {
            var: "-c".to_string(),
            value: Some(path.clone()),
            expected: format!("cannot load the Pingora configuration file: {e}"),
        })?,
        None => ServerConf::default(),
    };
    conf.grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_SECONDS);
    conf.graceful_shutdown_timeout_seconds.get_or_insert(1);
    Ok(conf)
}

/// Prints one line per problem and exits 2, before anything listens.
fn exit_with(errors: &[ConfigError]) -> ! {
    for e in errors {
        eprintln!("nomad-holepunch: {e}");
    }
    eprintln!(
        "nomad-holepunch: not starting: {} configuration problem(s)",
        errors.len()
    );
    std::process::exit(2)
}
