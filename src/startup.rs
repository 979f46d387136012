//! Startup: everything the environment and the files say, validated before
//! anything listens (so `--check` and a real start agree), and the Pingora
//! server assembled from it.

use crate::config::Config;
use crate::conn::connections::{Connections, Fitted};
use crate::conn::guard::{GuardSettings, HeaderGuard, Outsiders};
use crate::files::client_auth::ClientTokens;
use crate::files::client_cert::ClientCas;
use crate::files::reload::Reloadable;
use crate::files::tls::CertReloader;
use crate::files::token::Token;
use crate::files::watch::Watcher;
use crate::open_files::OpenFiles;
use crate::proxy::{Holepunch, Loaded};
use crate::rundir::RunDir;
use crate::shutdown::{Drain, OpenRequests};
use crate::vars::{ConfigError, Problems, MAX_CONNECTIONS, TLS_CERT_FILE};
use pingora::listeners::tls::Acceptor;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Seconds that requests in flight get after SIGTERM: Nomad's default
/// `kill_timeout`. A config file (`-c`) may set `grace_period_seconds`.
pub const DEFAULT_GRACE_SECONDS: u64 = 5;

/// Pingora's defaults for these two, in `/tmp`: replaced by paths in a
/// private directory (`crate::rundir`).
const PINGORA_PID_FILE: &str = "/tmp/pingora.pid";
const PINGORA_UPGRADE_SOCK: &str = "/tmp/pingora_upgrade.sock";

/// The `file` label of every kind of reloaded file, each series created at
/// 0 at startup ([`crate::telemetry::init_series`]).
const RELOADED_FILES: [&str; 4] = [
    <Token as Reloadable>::NAME.label,
    <ClientTokens as Reloadable>::NAME.label,
    <CertReloader as Reloadable>::NAME.label,
    <ClientCas as Reloadable>::NAME.label,
];

/// Everything needed to run, checked.
pub struct Startup {
    pub config: Config,
    pub token: Arc<Token>,
    pub client_tokens: Option<Arc<ClientTokens>>,
    pub tls: Option<Arc<CertReloader>>,
    /// The CAs of client certificates, when they are required.
    pub client_cas: Option<Arc<ClientCas>>,
    pub server_conf: ServerConf,
    /// The open-files limits, after the soft one was raised.
    pub open_files: OpenFiles,
    /// `HOLEPUNCH_MAX_CONNECTIONS` as it applies under them.
    pub max_connections: Fitted,
    /// The private directory of the upgrade socket and pid file, when
    /// either is left to its default.
    pub run_dir: Option<RunDir>,
}

impl Startup {
    /// Reads the environment and every file it names, and the `-c` file.
    /// Returns every problem found. Takes `-c` out of `opt`: the settings
    /// from it are in `server_conf`. Raises the soft open-files limit to the
    /// hard one first ([`OpenFiles::raise`]): the connection cap is fitted
    /// to the result.
    pub fn load(opt: &mut Opt) -> Result<Startup, Vec<ConfigError>> {
        let open_files = OpenFiles::raise();
        let server_conf = server_conf(opt);
        let mut problems = Problems::default();
        let config = Config::from_env().map_err(|errors| problems.extend(errors));
        let server_conf = problems.take(server_conf);
        let run_dir = server_conf
            .as_ref()
            .and_then(|(_, run_dir)| run_dir.clone());
        if let Some(run_dir) = &run_dir {
            problems.take(run_dir.check());
        }
        let Ok(config) = config else {
            return problems.finish(None);
        };
        let threads = server_conf.as_ref().map_or(1, |(c, _)| c.threads);
        let max_connections = problems.take(max_connections(&config, threads, &open_files));
        let token = problems.take(Token::load(&config.files.token));
        let client_tokens = config
            .files
            .client_token_file
            .as_ref()
            .and_then(|path| problems.take(ClientTokens::load(path)));
        let tls = config
            .files
            .tls
            .as_ref()
            .and_then(|files| problems.take(CertReloader::load(files)));
        let client_cas = config
            .files
            .tls
            .as_ref()
            .and_then(|files| files.client_ca.as_ref())
            .and_then(|path| problems.take(ClientCas::load(path)));
        let startup = token.zip(server_conf).zip(max_connections).map(
            |((token, (server_conf, _)), max_connections)| Startup {
                config,
                token: Arc::new(token),
                client_tokens: client_tokens.map(Arc::new),
                tls: tls.map(Arc::new),
                client_cas: client_cas.map(Arc::new),
                server_conf,
                open_files,
                max_connections,
                run_dir,
            },
        );
        problems.finish(startup)
    }

    /// One line per effective setting, for the startup log and `--check`.
    pub fn setting_lines(&self) -> Vec<String> {
        let c = &self.server_conf;
        let mut lines = self.config.setting_lines();
        lines.push(self.token.describe_lifetime(std::time::SystemTime::now()));
        lines.extend([
            format!("threads: {}", c.threads),
            format!(
                "shutdown grace period: {}s",
                c.grace_period_seconds.unwrap_or(0)
            ),
            format!("upgrade socket: {}", c.upgrade_sock),
            format!("pid file: {}", c.pid_file),
            self.open_files.to_string(),
            self.max_connections.to_string(),
        ]);
        lines
    }

    /// Binds each address the server will listen on, and lets go at once,
    /// so that a port in use, a port this user may not bind, or an address
    /// not on this host stops the start with one clear line. Pingora itself
    /// would retry for about 30 s, then panic in its service thread and
    /// leave the process running with no listener. Skipped for a graceful
    /// upgrade (`-u`), whose sockets come from the old process.
    pub fn check_listeners(&self) -> Result<(), ConfigError> {
        use crate::vars::{BIND, PORT, TELEMETRY_BIND};
        let bind = |addr: SocketAddr, var: String| {
            std::net::TcpListener::bind(addr)
                .map(drop)
                .map_err(|e| ConfigError {
                    var,
                    value: None,
                    problem: format!("cannot listen on {addr}: {}", bind_reason(&e)),
                })
        };
        bind(self.config.listeners.listen, format!("{BIND}/{PORT}"))?;
        if let Some(addr) = self.config.listeners.telemetry_listen {
            bind(addr, TELEMETRY_BIND.to_string())?;
        }
        Ok(())
    }

    /// The Pingora server, with the proxy, the file watcher, the drain and,
    /// when asked for, the telemetry endpoint.
    pub fn into_server(mut self, opt: Opt) -> Result<Server, ConfigError> {
        // Before Pingora binds the upgrade socket (`-u`) or writes the pid
        // file (`-d`) there.
        if let Some(run_dir) = &self.run_dir {
            if let Some(warning) = run_dir.prepare(opt.upgrade || opt.daemon)? {
                log::warn!("{warning}");
            }
        }
        let grace = Duration::from_secs(self.server_conf.grace_period_seconds.unwrap_or(0));
        let server_conf = std::mem::take(&mut self.server_conf);
        let mut server = Server::new_with_opt_and_conf(opt, server_conf);
        server.bootstrap();

        let open_requests = Arc::new(OpenRequests::default());
        let holepunch = self.holepunch(&open_requests)?;
        let proxy = pingora::proxy::http_proxy(&server.configuration, holepunch);
        // One count for both listeners.
        crate::telemetry::init();
        let connections =
            Connections::new(self.max_connections.max, self.max_connections.per_client);
        // TLS is the guard's: its handshake counts toward the header deadline.
        let acceptor = self.tls_acceptor()?;
        let guard = |tls, client_cas, outsiders| GuardSettings {
            listeners: self.config.listeners.clone(),
            tls,
            client_cas,
            allow_from: self.config.rules.allow_from.clone(),
            outsiders,
            connections: Arc::clone(&connections),
        };
        let guarded = HeaderGuard::new(
            proxy,
            guard(acceptor, self.client_cas.clone(), Outsiders::OneAnswer),
        );
        let mut service = Service::new("nomad-holepunch".to_string(), guarded);
        service.add_tcp(&self.config.listeners.listen.to_string());
        let listener = server.add_service(service);

        let mut watcher = Watcher::default();
        watcher.watch(self.token);
        if let Some(client_tokens) = self.client_tokens {
            watcher.watch(client_tokens);
        }
        if let Some(tls) = self.tls {
            watcher.watch(tls);
        }
        if let Some(client_cas) = self.client_cas {
            watcher.watch(client_cas);
        }
        // Always: with no file to watch it still answers SIGHUP. The
        // listener starts once the watcher's first pass has read every
        // file again (`crate::files::watch`): a `-u` process loaded them before
        // it waited for the old one's sockets.
        let watching = server.add_service(background_service("file watcher", watcher));
        listener.add_dependency(&watching);
        server.add_service(background_service(
            "drain",
            Drain::new(open_requests, grace),
        ));

        let open: Vec<&str> = crate::decision::allowlist::Group::ALL
            .into_iter()
            .filter(|g| self.config.rules.allow.allows(*g))
            .map(crate::decision::allowlist::Group::name)
            .collect();
        crate::telemetry::init_series(&open, self.config.rules.allow.all(), &RELOADED_FILES);
        if let Some(addr) = self.config.listeners.telemetry_listen {
            // The same guard as the proxy's: header, write and idle
            // deadlines, the connection cap, and HOLEPUNCH_ALLOW_FROM.
            // pingora-prometheus's app is pingora-core's `HttpServer`, an
            // `HttpServerApp` (pingora-prometheus 0.9.1 `lib.rs`,
            // `new_prometheus_server`), which the guard wraps as it does
            // the proxy.
            let app = pingora_prometheus::new_prometheus_server();
            let guarded = HeaderGuard::new(app, guard(None, None, Outsiders::Forbidden));
            let mut telemetry = Service::new("telemetry".to_string(), guarded);
            telemetry.add_tcp(&addr.to_string());
            server.add_service(telemetry);
        }
        Ok(server)
    }

    /// The proxy itself, handed the parts of the configuration it uses,
    /// each whole, and what was loaded.
    fn holepunch(&self, open_requests: &Arc<OpenRequests>) -> Result<Holepunch, ConfigError> {
        let config = &self.config;
        let loaded = Loaded {
            token: Arc::clone(&self.token),
            client_tokens: self.client_tokens.clone(),
            client_cas: self.client_cas.clone(),
            open_requests: Arc::clone(open_requests),
        };
        Holepunch::new(
            config.rules.clone(),
            config.upstream.clone(),
            config.limits.clone(),
            config.listeners.client_header_timeout,
            loaded,
        )
        .map_err(|e| {
            ConfigError::with_path(
                config.upstream.socket_path_from,
                std::path::Path::new(&config.upstream.socket_path),
                format!("not a usable Unix socket path: {e}"),
            )
        })
    }

    /// The TLS acceptor for the guard, when TLS is on, with client
    /// certificates required when their CAs are set.
    fn tls_acceptor(&self) -> Result<Option<Acceptor>, ConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let acceptor = tls
            .acceptor(self.client_cas.clone())
            .map_err(|e| ConfigError {
                var: TLS_CERT_FILE.to_string(),
                value: None,
                problem: format!("cannot set up TLS: {e}"),
            })?;
        Ok(Some(acceptor))
    }
}

/// `HOLEPUNCH_MAX_CONNECTIONS` under the open-files limit in force: the
/// default lowered to fit, with a warning; a value set too high, or a limit
/// with no room, an error ([`crate::conn::connections::fit`]).
fn max_connections(
    config: &Config,
    threads: usize,
    open_files: &OpenFiles,
) -> Result<Fitted, ConfigError> {
    if let Some(problem) = &open_files.problem {
        log::warn!("{problem}");
    }
    let fitted = crate::conn::connections::fit(
        config.listeners.max_connections,
        config.limits.max_in_flight,
        threads,
        open_files.soft,
    )
    .map_err(|problem| ConfigError {
        var: MAX_CONNECTIONS.to_string(),
        value: config.listeners.max_connections.map(|n| n.to_string()),
        problem,
    })?
    .share(config.listeners.max_connections_per_client);
    if let Some(from) = fitted.lowered_from {
        log::warn!(
            "{MAX_CONNECTIONS}: its default {from} needs {} open files with {} = {}, \
             but the open-files limit is {}: at most {} client connections \
             (raise the task's hard limit, or set {MAX_CONNECTIONS})",
            crate::conn::connections::files_needed(from, config.limits.max_in_flight, threads),
            crate::vars::MAX_IN_FLIGHT,
            config.limits.max_in_flight,
            open_files.soft,
            fitted.max
        );
    }
    Ok(fitted)
}

/// Why a bind failed, in the operator's terms.
fn bind_reason(e: &std::io::Error) -> String {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => "the port is in use by another process",
        std::io::ErrorKind::AddrNotAvailable => "the address is not on this host",
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        }
        _ => "",
    };
    if hint.is_empty() {
        e.to_string()
    } else {
        format!("{hint} ({e})")
    }
}

/// Pingora's settings: from `-c FILE` if given, else its defaults; then our
/// defaults for what the file leaves unset, and the private directory when
/// the upgrade socket or the pid file is left to its default. A path set in
/// the file whose directory other users can write gets a warning.
fn server_conf(opt: &mut Opt) -> Result<(ServerConf, Option<RunDir>), ConfigError> {
    let mut conf = match opt.conf.take() {
        Some(path) => ServerConf::load_from_yaml(&path).map_err(|e| ConfigError {
            var: "-c".to_string(),
            value: Some(path.clone()),
            problem: format!("cannot load the Pingora configuration file: {e}"),
        })?,
        // One thread with no work stealing: the cheapest request path the
        // floor benchmark found (examples/floor.rs, benches/load.sh). And
        // tokio's timer for every timeout of a second or more: Pingora's
        // fast timers run a clock thread that wakes every 10 ms for the life
        // of the process (pingora-timeout 0.9 `timer.rs`, `clock_thread`), a
        // fixed cost that dominates between the scrapes of a quiet node.
        None => ServerConf {
            work_stealing: false,
            fast_timeout_to_tokio_threshold_seconds: Some(0),
            ..ServerConf::default()
        },
    };
    conf.grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_SECONDS);
    conf.graceful_shutdown_timeout_seconds.get_or_insert(1);
    let default_sock = conf.upgrade_sock == PINGORA_UPGRADE_SOCK;
    let default_pid = conf.pid_file == PINGORA_PID_FILE;
    let run_dir = (default_sock || default_pid).then(|| {
        let (run_dir, warning) = RunDir::choose();
        if let Some(warning) = warning {
            log::warn!("{warning}");
        }
        run_dir
    });
    if let Some(run_dir) = &run_dir {
        if default_sock {
            conf.upgrade_sock = run_dir.upgrade_sock();
        }
        if default_pid {
            conf.pid_file = run_dir.pid_file();
        }
    }
    for (what, path, default) in [
        ("upgrade_sock", &conf.upgrade_sock, default_sock),
        ("pid_file", &conf.pid_file, default_pid),
    ] {
        if let Some(warning) = (!default)
            .then(|| crate::rundir::shared_dir_warning(what, path))
            .flatten()
        {
            log::warn!("{warning}");
        }
    }
    Ok((conf, run_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `file` label of the reload metrics is what alert rules
    /// (conf/holepunch.rules.yml) and dashboards match on, and the log
    /// words are what operators grep for: both stay exactly these.
    #[test]
    fn names_in_logs_and_metrics_are_fixed() {
        let names = [Token::NAME, ClientTokens::NAME, CertReloader::NAME];
        let labels: Vec<_> = names.iter().map(|n| n.label).collect();
        assert_eq!(
            labels,
            ["workload_token", "client_tokens", "tls_certificate"]
        );
        let what: Vec<_> = names.iter().map(|n| n.what).collect();
        assert_eq!(what, ["workload token", "client tokens", "TLS certificate"]);
    }
}
