//! Configuration from the environment, with the Go original's variable names
//! and defaults, but strict: every bad value is an error naming the variable,
//! the value and what would be accepted, and nothing falls back silently.
//!
//! One table, [`table`], has one entry per variable: its name, its default,
//! what it means, how its value is parsed and how its effective setting is
//! described. The table drives the parsing, the unknown-variable check, and
//! the description printed by `--check` and at startup. Each variable is read
//! once, in the table's order; settings that depend on several variables
//! (the socket path, the token's source, the TLS pair, ALL off loopback) are
//! resolved after, so problems are reported in a stable order, each once.
//!
//! The parts: `table` (the variable table), `parse` (the value parsers),
//! `rules` (the cross-variable rules), and here [`Config`], one part per
//! consumer, each handed over whole.
//!
//! Pure: [`Config::from_vars`] takes the variables as a list, so tests and
//! `--check` see exactly what the server would. Reading the token itself
//! (a file, maybe) is `crate::files::token`'s job.

use crate::decision::allowlist::Allowlist;
use crate::decision::head::Rules;
use crate::files::tls::TlsFiles;
use crate::files::token::TokenSource;
use crate::logging::LogFormat;
use crate::proxy::limits::Limits;
use crate::proxy::Upstream;
use crate::vars::*;
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

mod parse;
mod rules;
mod table;

pub use parse::{parse_bool, parse_duration, parse_size};
pub use rules::{DEFAULT_SOCKET_PATH, MAX_SOCKET_PATH};
pub use table::{table, DefaultValue, Var};

/// Every variable of ours starts with this; any other such variable is an
/// error, so a typo cannot silently leave a default.
const PREFIX: &str = "HOLEPUNCH_";

/// The validated configuration, one part per consumer, each handed over
/// whole: the table's parsers write straight into the parts, and only
/// what rests on several variables is resolved after (`Pending`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The request decision's rules: the open groups, ALLOW_FROM,
    /// ALLOWED_HOSTS, the region (the proxy's; ALLOW_FROM the guard's too).
    pub rules: Rules,
    /// The Task API socket, and how the proxy talks to it.
    pub upstream: Upstream,
    /// What keeps one client, and all of them, from costing the Nomad
    /// servers too much.
    pub limits: Limits,
    /// The listeners and their clients' connections (the guard's).
    pub listeners: Listeners,
    /// The files read at startup and reloaded.
    pub files: Files,
    pub log_format: LogFormat,
}

/// The listeners, and what their clients' connections may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// The address the proxy listens on.
    pub listen: SocketAddr,
    /// Where the proxy's own Prometheus metrics are served, if anywhere.
    pub telemetry_listen: Option<SocketAddr>,
    /// How long a client may take to send a complete request header (and
    /// finish the TLS handshake before it); a request body's pace too.
    pub client_header_timeout: Duration,
    /// How long a write to a client may wait for it to take bytes.
    pub client_write_timeout: Duration,
    /// How long a kept-alive client connection may wait for its next request.
    pub client_idle_timeout: Duration,
    /// The most client connections open at once, when the operator set it;
    /// `None`: the default, fitted to the open-files limit at startup.
    pub max_connections: Option<usize>,
    /// The most of those from one client address, when the operator set
    /// it; `None`: a quarter of the cap in force (`crate::conn::connections::Fitted`).
    pub max_connections_per_client: Option<usize>,
}

impl Default for Listeners {
    /// Before the table is read: every field is written by its variable's
    /// default or value, or resolved after (`Pending::listen`).
    fn default() -> Listeners {
        Listeners {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            telemetry_listen: None,
            client_header_timeout: Duration::ZERO,
            client_write_timeout: Duration::ZERO,
            client_idle_timeout: Duration::ZERO,
            max_connections: None,
            max_connections_per_client: None,
        }
    }
}

/// The files read at startup and reloaded when they change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    /// Where the workload token comes from.
    pub token: TokenSource,
    /// TLS on the listener: the certificate chain and key, both PEM, and
    /// the CAs of client certificates, when they are required.
    pub tls: Option<TlsFiles>,
    /// Bearer tokens clients must present, one per line.
    pub client_token_file: Option<PathBuf>,
}

/// The variables as given: `Err(())` for a value that is not UTF-8.
type Vars = HashMap<String, Result<String, ()>>;

/// What the table's parsers write: the parts of [`Config`] that one
/// variable fills on its own, and [`Pending`], what the cross-variable
/// rules resolve ([`Draft::finish`]).
struct Draft {
    rules: Rules,
    upstream: Upstream,
    limits: Limits,
    listeners: Listeners,
    log_format: LogFormat,
    pending: Pending,
}

/// The variables that settle nothing on their own: each is one input of a
/// setting that rests on several (the listen address, the socket path, the
/// token's source, the TLS pair, the per-client share, the telemetry
/// address), resolved by [`Draft::finish`].
#[derive(Default)]
struct Pending {
    ip: Option<IpAddr>,
    port: Option<u16>,
    socket_path: Option<String>,
    socket_path_alias: Option<String>,
    secrets_dir: Option<String>,
    token_file: Option<PathBuf>,
    nomad_token: Option<String>,
    max_in_flight_per_client: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    client_token_file: Option<PathBuf>,
    /// The address, and the value as written, for the message if it clashes.
    telemetry: Option<(SocketAddr, String)>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, Vec<ConfigError>> {
        Config::from_vars(std::env::vars_os())
    }

    /// Builds the configuration from a list of variables. Returns every
    /// problem found, not just the first: each variable's, in the table's
    /// order, then unknown variables by name, then those across variables.
    pub fn from_vars<I>(vars: I) -> Result<Config, Vec<ConfigError>>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let vars: Vars = vars
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().map_err(|_| ()))))
            .collect();
        let mut problems = Problems::default();
        let mut draft = Draft {
            rules: Rules {
                allow: Allowlist::none(),
                ..Rules::default()
            },
            upstream: Upstream::default(),
            limits: Limits::default(),
            listeners: Listeners::default(),
            log_format: LogFormat::default(),
            pending: Pending::default(),
        };
        for var in table() {
            var.read(&vars, &mut draft, &mut problems);
        }
        let mut unknown: Vec<&String> = vars
            .keys()
            .filter(|name| name.starts_with(PREFIX) && !table().any(|var| var.name == *name))
            .collect();
        unknown.sort();
        for name in unknown {
            problems.push(unknown_variable(name));
        }
        let config = draft.finish(&mut problems);
        problems.finish(config)
    }

    /// One line per setting, for the startup log and `--check`, in the
    /// table's order. The token is described by its source only.
    pub fn setting_lines(&self) -> Vec<String> {
        table().filter_map(|var| var.setting_line(self)).collect()
    }
}

/// The error for a `HOLEPUNCH_` variable not in the table. Its value is
/// never shown: a misspelt variable may hold a token
/// (`HOLEPUNCH_NOMAD_TOKEN`), and the name is enough to fix it.
fn unknown_variable(name: &str) -> ConfigError {
    let ours = || {
        table()
            .map(|var| var.name)
            .filter(|n| n.starts_with(PREFIX))
    };
    let nearest = ours()
        .map(|k| (edit_distance(name, k), k))
        .min()
        .filter(|(d, _)| *d <= 3);
    let problem = match nearest {
        Some((_, k)) => format!("unknown variable; did you mean {k}?"),
        None => format!(
            "unknown variable; the {PREFIX} variables are {}",
            ours().collect::<Vec<_>>().join(", ")
        ),
    };
    ConfigError {
        var: name.to_string(),
        value: None,
        problem,
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::table::VARS;
    use super::*;
    use crate::decision::allowlist::Group;
    use crate::proxy::limits::RateLimit;
    use std::path::Path;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, Vec<ConfigError>> {
        Config::from_vars(
            vars.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
    }

    const TOKEN: (&str, &str) = ("NOMAD_TOKEN", "eyJhbGciOiJSUzI1NiJ9.e30.sig");

    fn errors_for(vars: &[(&str, &str)]) -> Vec<String> {
        cfg(vars)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn defaults_match_the_original() {
        let c = cfg(&[TOKEN]).unwrap();
        assert_eq!(c.listeners.listen, "0.0.0.0:6120".parse().unwrap());
        assert_eq!(c.upstream.socket_path, "/secrets/api.sock");
        assert_eq!(c.upstream.socket_path_from, "default");
        assert_eq!(c.files.token, TokenSource::Env(TOKEN.1.to_string()));
        assert_eq!(c.rules.allow, Allowlist::default());
    }

    #[test]
    fn bind_and_port() {
        let c = cfg(&[TOKEN, (BIND, "127.0.0.1"), (PORT, "8080")]).unwrap();
        assert_eq!(c.listeners.listen, "127.0.0.1:8080".parse().unwrap());
        let c = cfg(&[TOKEN, (BIND, "::"), (PORT, "65535")]).unwrap();
        assert_eq!(c.listeners.listen, "[::]:65535".parse().unwrap());
        let c = cfg(&[TOKEN, (BIND, "[::1]"), (PORT, "1")]).unwrap();
        assert_eq!(c.listeners.listen, "[::1]:1".parse().unwrap());
        // Empty means default.
        let c = cfg(&[TOKEN, (BIND, ""), (PORT, "")]).unwrap();
        assert_eq!(c.listeners.listen, "0.0.0.0:6120".parse().unwrap());

        for bad in ["0", "65536", "-1", "+80", "80a", " 80", "http"] {
            let errs = errors_for(&[TOKEN, (PORT, bad)]);
            assert_eq!(
                errs,
                vec![format!(
                    "HOLEPUNCH_PORT={bad:?}: expected a port number from 1 to 65535"
                )]
            );
        }
        for bad in ["localhost", "0.0.0.0:6120", "1.2.3", "256.0.0.1", "[::1"] {
            let errs = errors_for(&[TOKEN, (BIND, bad)]);
            assert_eq!(errs.len(), 1, "{bad}");
            assert!(
                errs[0].starts_with(&format!("HOLEPUNCH_BIND={bad:?}: expected an IPv4 or IPv6"))
            );
        }
    }

    #[test]
    fn socket_path_precedence() {
        let secrets = ("NOMAD_SECRETS_DIR", "/var/nomad/alloc/1/task/secrets/");
        let c = cfg(&[TOKEN, secrets]).unwrap();
        assert_eq!(
            c.upstream.socket_path,
            "/var/nomad/alloc/1/task/secrets/api.sock"
        );
        assert_eq!(c.upstream.socket_path_from, NOMAD_SECRETS_DIR);
        let c = cfg(&[TOKEN, secrets, (SOCKET_PATH_ALIAS, "/alias.sock")]).unwrap();
        assert_eq!(
            (c.upstream.socket_path.as_str(), c.upstream.socket_path_from),
            ("/alias.sock", SOCKET_PATH_ALIAS)
        );
        let c = cfg(&[
            TOKEN,
            secrets,
            (SOCKET_PATH_ALIAS, "/alias.sock"),
            (SOCKET_PATH, "/main.sock"),
        ])
        .unwrap();
        assert_eq!(
            (c.upstream.socket_path.as_str(), c.upstream.socket_path_from),
            ("/main.sock", SOCKET_PATH)
        );
    }

    #[test]
    fn socket_path_too_long() {
        let long = format!("/{}", "a".repeat(107));
        let errs = errors_for(&[TOKEN, (SOCKET_PATH, &long)]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("HOLEPUNCH_SOCKET_PATH="), "{}", errs[0]);
        assert!(
            errs[0].contains("at most 107 bytes; this one is 108"),
            "{}",
            errs[0]
        );
        assert!(cfg(&[TOKEN, (SOCKET_PATH, &long[..107])]).is_ok());
    }

    #[test]
    fn token_sources_in_order() {
        let file = (TOKEN_FILE, "/run/token");
        let secrets = (NOMAD_SECRETS_DIR, "/secrets");
        let c = cfg(&[file, TOKEN, secrets]).unwrap();
        assert_eq!(
            c.files.token,
            TokenSource::File {
                path: "/run/token".into(),
                var: TOKEN_FILE
            }
        );
        let c = cfg(&[TOKEN, secrets]).unwrap();
        assert_eq!(c.files.token, TokenSource::Env(TOKEN.1.into()));
        // An empty NOMAD_TOKEN counts as unset.
        let c = cfg(&[(NOMAD_TOKEN, " "), secrets]).unwrap();
        assert_eq!(
            c.files.token,
            TokenSource::File {
                path: "/secrets/nomad_token".into(),
                var: NOMAD_SECRETS_DIR
            }
        );
        let errs = errors_for(&[(NOMAD_TOKEN, "")]);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("NOMAD_TOKEN: no workload token"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn token_never_in_debug_or_errors() {
        let c = cfg(&[TOKEN, (PORT, "x")]);
        let shown = format!("{c:?}");
        assert!(!shown.contains(TOKEN.1), "{shown}");
        let c = cfg(&[TOKEN]).unwrap();
        assert!(!format!("{c:?}").contains(TOKEN.1));
        assert!(!c.setting_lines().join("\n").contains(TOKEN.1));
        let non_utf8 = Config::from_vars([(
            OsString::from(NOMAD_TOKEN),
            std::os::unix::ffi::OsStringExt::from_vec(vec![0xff, b'x']),
        )]);
        assert_eq!(
            non_utf8.unwrap_err()[0].to_string(),
            "NOMAD_TOKEN: the value is not valid UTF-8"
        );
    }

    #[test]
    fn booleans_are_go_parsebool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in [
            "yes", "no", "on", "off", "tRUE", "2", " true", "true ", "y", "-1",
        ] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_flag() {
        let a = cfg(&[TOKEN]).unwrap().rules.allow;
        for g in Group::ALL {
            assert_eq!(a.allows(g), g.default_enabled());
            let flipped = if g.default_enabled() { "false" } else { "true" };
            let a = cfg(&[TOKEN, (g.flag(), flipped)]).unwrap().rules.allow;
            assert_eq!(a.allows(g), !g.default_enabled(), "{g:?}");
            for other in Group::ALL.iter().filter(|o| **o != g) {
                assert_eq!(a.allows(*other), other.default_enabled());
            }
            // Empty is the default, not false.
            let a = cfg(&[TOKEN, (g.flag(), "")]).unwrap().rules.allow;
            assert_eq!(a.allows(g), g.default_enabled());
            let errs = errors_for(&[TOKEN, (g.flag(), "yes")]);
            assert_eq!(errs.len(), 1);
            assert!(errs[0].starts_with(&format!("{}=\"yes\": expected a boolean", g.flag())));
        }
        assert!(cfg(&[TOKEN, (ALLOW_ALL, "T"), (BIND, "127.0.0.1")])
            .unwrap()
            .rules
            .allow
            .all());
        assert!(!cfg(&[TOKEN, (ALLOW_ALL, "")]).unwrap().rules.allow.all());
    }

    /// Problems come in one order whatever the order of the environment:
    /// each variable's in the table's order, then unknown variables by name,
    /// then the checks across variables.
    #[test]
    fn problems_are_reported_in_a_stable_order() {
        let vars = [
            (TLS_CERT_FILE, "/c.pem"),
            ("HOLEPUNCH_ZZZ", "1"),
            (LOG_FORMAT, "yaml"),
            ("HOLEPUNCH_ALLOW_NODES", "yes"),
            ("HOLEPUNCH_AAA", "1"),
            (PORT, "0"),
            (BIND, "nowhere"),
        ];
        let want = [
            BIND,
            PORT,
            LOG_FORMAT,
            "HOLEPUNCH_ALLOW_NODES",
            "HOLEPUNCH_AAA",
            "HOLEPUNCH_ZZZ",
            NOMAD_TOKEN,
            TLS_KEY_FILE,
        ];
        for turn in 0..vars.len() {
            let mut vars = vars.to_vec();
            vars.rotate_left(turn);
            vars.swap(0, turn / 2);
            let errs = cfg(&vars).unwrap_err();
            let got: Vec<&str> = errs.iter().map(|e| e.var.as_str()).collect();
            assert_eq!(got, want, "{vars:?}");
        }
    }

    /// NOMAD_SECRETS_DIR gives both the socket path and the token file; a
    /// value that is not UTF-8 is one problem, reported once, and no "no
    /// workload token" besides.
    #[test]
    fn a_variable_used_twice_is_read_and_reported_once() {
        let non_utf8 = std::os::unix::ffi::OsStringExt::from_vec(vec![b'/', 0xff]);
        let errs = Config::from_vars([(OsString::from(NOMAD_SECRETS_DIR), non_utf8)]).unwrap_err();
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["NOMAD_SECRETS_DIR: the value is not valid UTF-8"]
        );
    }

    /// One entry per variable, every group's flag among them, and each
    /// default that is a value gives what setting it to that value gives.
    #[test]
    fn the_table_has_each_variable_once_with_the_default_that_applies() {
        let names: Vec<&str> = table().map(|v| v.name).collect();
        for (i, name) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(name), "{name} twice");
            assert!(!table().nth(i).unwrap().meaning.is_empty(), "{name}");
        }
        for g in Group::ALL {
            assert!(names.contains(&g.flag()), "{g:?}");
        }
        assert_eq!(names.len(), VARS.len() + Group::ALL.len());
        let unset = cfg(&[TOKEN]).unwrap();
        for var in table() {
            if let DefaultValue::Value(v) = var.default {
                assert_eq!(cfg(&[TOKEN, (var.name, v)]).unwrap(), unset, "{}", var.name);
            }
        }
        let socket = table().find(|v| v.name == SOCKET_PATH).unwrap().default;
        assert!(socket
            .readme()
            .ends_with(&format!("else `{DEFAULT_SOCKET_PATH}`")));
    }

    /// The README's configuration table, as the variable column and the
    /// default column of each row. A row may name several variables, and
    /// `_SUFFIX` stands for the first one's name with its last part(s)
    /// replaced (`HOLEPUNCH_ALLOW_AGENT_SELF`, `_AGENT_MEMBERS`).
    fn readme_rows() -> Vec<(Vec<String>, String, String)> {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .expect("a Configuration section");
        let section = section.split("\n#").next().unwrap_or_default();
        let mut rows = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let names: Vec<&str> = cells[0].split('`').skip(1).step_by(2).collect();
            let first = names[0];
            let expanded = names.iter().map(|name| match name.strip_prefix('_') {
                None => name.to_string(),
                Some(_) => (0..first.len())
                    .rev()
                    .filter(|&i| first.as_bytes()[i] == b'_')
                    .map(|i| format!("{}{name}", &first[..i]))
                    .find(|full| table().any(|v| v.name == full))
                    .unwrap_or_else(|| name.to_string()),
            });
            let meaning = cells.get(2).unwrap_or(&"").to_string();
            rows.push((expanded.collect(), cells[1].to_string(), meaning));
        }
        rows
    }

    /// Every variable has a row of the README's configuration table with
    /// its default as the table here writes it; the two that have no row
    /// of their own are named in the row that says how they are used.
    #[test]
    fn the_readme_lists_every_variable_with_its_default() {
        let rows = readme_rows();
        assert!(rows.len() > 20, "{rows:?}");
        let under = [
            (SOCKET_PATH_ALIAS, SOCKET_PATH),
            (NOMAD_SECRETS_DIR, SOCKET_PATH),
        ];
        for var in table() {
            let own = rows
                .iter()
                .find(|(names, ..)| names.iter().any(|n| n == var.name));
            match (own, under.iter().find(|(name, _)| *name == var.name)) {
                (Some((_, default, _)), None) => {
                    assert_eq!(*default, var.default.readme(), "{}", var.name)
                }
                (None, Some((_, row))) => {
                    let (_, default, meaning) = rows
                        .iter()
                        .find(|(names, ..)| names.iter().any(|n| n == row))
                        .unwrap_or_else(|| panic!("no README row for {row}"));
                    let text = format!("{default} {meaning}");
                    assert!(text.contains(var.name), "{} not in the {row} row", var.name);
                }
                _ => panic!("{} has no row of its own in the README's table", var.name),
            }
        }
    }

    #[test]
    fn every_problem_is_reported_and_nothing_falls_back() {
        let errs = errors_for(&[
            TOKEN,
            (PORT, "99999"),
            (BIND, "nowhere"),
            ("HOLEPUNCH_ALLOW_NODES", "yes"),
            ("HOLEPUNCH_ALLOW_METRICS", "nope"),
        ]);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        for var in [
            "HOLEPUNCH_PORT",
            "HOLEPUNCH_BIND",
            "HOLEPUNCH_ALLOW_NODES",
            "HOLEPUNCH_ALLOW_METRICS",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(var)),
                "{var} in {errs:#?}"
            );
        }
    }

    /// A path variable's value is shown only when it is plainly a path: a
    /// token put there by mistake (a JWT, a UUID, base64 with a `/` inside)
    /// is not, and neither is a path made from it.
    #[test]
    fn only_what_is_plainly_a_path_is_shown() {
        for path in ["/secrets/nomad_token", "./local/tokens", "../tokens", "/"] {
            assert_eq!(shown_path(Path::new(path)), Some(path));
        }
        for value in [
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            "0b6f1c4e-7d2a-4f35-9a0b-2f1c3d4e5f60",
            "dGhpcy9pcy9iYXNlNjQ=/more",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln/nomad_token",
            "local/tokens",
            "",
        ] {
            assert_eq!(shown_path(Path::new(value)), None, "{value}");
            assert_eq!(path_in_message(Path::new(value)), PATH_NOT_SHOWN);
        }
        let shown = ConfigError::with_path(TOKEN_FILE, Path::new("/s/t"), "gone".into());
        assert_eq!(shown.to_string(), "HOLEPUNCH_TOKEN_FILE=\"/s/t\": gone");
        let hidden = ConfigError::with_path(TOKEN_FILE, Path::new("s3cr3t.tok"), "gone".into());
        assert_eq!(
            hidden.to_string(),
            "HOLEPUNCH_TOKEN_FILE: its value is not shown, as it is not a path starting with \
             /, ./ or ../ (a token set here by mistake?); gone"
        );
        // The socket path made from NOMAD_SECRETS_DIR, too long here.
        let secret = "s3cr3t".repeat(20);
        let errs = errors_for(&[TOKEN, (NOMAD_SECRETS_DIR, &secret)]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("NOMAD_SECRETS_DIR: its value is not shown"),
            "{errs:?}"
        );
        assert!(!errs[0].contains("s3cr3t"), "{errs:?}");
    }

    #[test]
    fn unknown_holepunch_variables_are_errors() {
        let errs = errors_for(&[TOKEN, ("HOLEPUNCH_ALLOW_NODE", "true")]);
        assert_eq!(
            errs,
            vec!["HOLEPUNCH_ALLOW_NODE: unknown variable; did you mean HOLEPUNCH_ALLOW_NODES?"]
        );
        // Never its value: a misspelt variable may hold a token.
        let errs = errors_for(&[TOKEN, ("HOLEPUNCH_NOMAD_TOKEN", "s3cr3t\"tok\\en")]);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("HOLEPUNCH_NOMAD_TOKEN: unknown variable; "),
            "{errs:?}"
        );
        assert!(!errs[0].contains("s3cr3t"), "{errs:?}");
        let errs = errors_for(&[TOKEN, ("HOLEPUNCH_SOMETHING_ELSE", "1")]);
        assert!(
            errs[0].contains("the HOLEPUNCH_ variables are HOLEPUNCH_BIND"),
            "{errs:?}"
        );
        // Other variables are none of our business.
        assert!(cfg(&[TOKEN, ("NOMAD_ADDR", "x"), ("PATH", "/bin")]).is_ok());
    }

    /// What startup hands `Problems` (the configuration's errors, each
    /// file's load) is kept, in order, and a value that loaded is passed on.
    #[test]
    fn problems_keep_what_startup_hands_them() {
        let error = |var: &str| ConfigError {
            var: var.to_string(),
            value: None,
            problem: "bad".to_string(),
        };
        let mut problems = Problems::default();
        problems.extend([error("A")]);
        assert_eq!(problems.take(Err::<u8, _>(error("B"))), None);
        assert_eq!(problems.take(Ok::<u8, ConfigError>(7)), Some(7));
        let vars: Vec<String> = match problems.finish(Some(())) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.var).collect(),
        };
        assert_eq!(vars, ["A", "B"]);
    }

    /// Go's leadingInt refuses a number only past 1<<63: the largest
    /// whole number of nanoseconds, whose first 18 digits are exactly
    /// 1<<63 / 10, is read.
    #[test]
    fn the_largest_whole_number_of_nanoseconds() {
        assert_eq!(
            parse_duration("9223372036854775807ns"),
            Some(Duration::from_nanos(i64::MAX as u64))
        );
    }

    #[test]
    fn durations_as_go_writes_them() {
        let s = Duration::from_secs;
        assert_eq!(parse_duration("10s"), Some(s(10)));
        assert_eq!(parse_duration("5m40s"), Some(s(340)));
        assert_eq!(parse_duration("1h"), Some(s(3600)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        // Exactly as Go reads them (found by the config_values fuzz
        // target's check against a model of Go's ParseDuration): a
        // fraction cut to the nanosecond, not rounded; whole numbers
        // exact however large; Go's range and nothing past it; its sign
        // and its two spellings of micro.
        let ns = Duration::from_nanos;
        assert_eq!(parse_duration("0.9999999999s"), Some(ns(999_999_999)));
        assert_eq!(
            parse_duration("9223372035.999999999s"),
            Some(Duration::new(9_223_372_035, 999_999_999))
        );
        assert_eq!(
            parse_duration("2562047h47m16.854775807s"),
            Some(ns(i64::MAX as u64))
        );
        for past in [
            "2562047h47m16.854775808s",
            "2562048h",
            "9999999999999999999ns",
            // 2^64: one more digit after 1844674407370955161 wrapped a u64
            // (found by the config_values fuzz target, in this parser's
            // first version).
            "18446744073709551616ms",
            "1s18446744073709551616h",
        ] {
            assert_eq!(parse_duration(past), None, "{past}");
        }
        assert_eq!(
            parse_duration("1.0000000001h"),
            Some(Duration::new(3600, 360))
        );
        assert_eq!(parse_duration("+1s"), Some(s(1)));
        assert_eq!(parse_duration("1\u{3bc}s"), Some(ns(1000)));
        assert_eq!(parse_duration("1\u{b5}s"), Some(ns(1000)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        // What `--check` prints reads back as the same duration.
        for d in [ns(1), ns(1500), Duration::new(9_223_372_035, 999_999_999)] {
            assert_eq!(parse_duration(&format!("{d:?}")), Some(d), "{d:?}");
        }
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "-1s",
            "1s-",
            "ten seconds",
            ".s",
            ".",
            "1e3s",
            "+",
            "-0s",
            "1m-1s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        let c = cfg(&[TOKEN]).unwrap();
        assert_eq!(c.upstream.upstream_timeout, s(340));
        assert_eq!(c.listeners.client_header_timeout, s(10));
        let c = cfg(&[
            TOKEN,
            (UPSTREAM_TIMEOUT, "2s"),
            (CLIENT_HEADER_TIMEOUT, "250ms"),
        ])
        .unwrap();
        assert_eq!(c.upstream.upstream_timeout, s(2));
        assert_eq!(
            c.listeners.client_header_timeout,
            Duration::from_millis(250)
        );
        for bad in ["0s", "10", "soon"] {
            let errs = errors_for(&[TOKEN, (UPSTREAM_TIMEOUT, bad)]);
            assert_eq!(errs.len(), 1);
            assert!(
                errs[0].starts_with(&format!(
                    "HOLEPUNCH_UPSTREAM_TIMEOUT={bad:?}: expected a duration above zero"
                )),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn metrics_cache_ttl() {
        assert_eq!(cfg(&[TOKEN]).unwrap().upstream.metrics_cache_ttl, None);
        assert_eq!(
            cfg(&[TOKEN, (METRICS_CACHE_TTL, "")])
                .unwrap()
                .upstream
                .metrics_cache_ttl,
            None
        );
        let c = cfg(&[TOKEN, (METRICS_CACHE_TTL, "1s")]).unwrap();
        assert_eq!(c.upstream.metrics_cache_ttl, Some(Duration::from_secs(1)));
        let errs = errors_for(&[TOKEN, (METRICS_CACHE_TTL, "0s")]);
        assert!(errs[0]
            .starts_with("HOLEPUNCH_METRICS_CACHE_TTL=\"0s\": expected a duration above zero"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("2MB"), Some(2_000_000));
        assert_eq!(parse_size("3KB"), Some(3_000));
        assert_eq!(parse_size("3kB"), Some(3_000));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("7B"), Some(7));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "1.5MiB", "1 MiB", "MiB", "1mib", "-1", "99999999999GiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(cfg(&[TOKEN]).unwrap().limits.max_body, 1 << 20);
        assert_eq!(
            cfg(&[TOKEN, (MAX_BODY, "4KiB")]).unwrap().limits.max_body,
            4096
        );
        let errs = errors_for(&[TOKEN, (MAX_BODY, "lots")]);
        assert!(errs[0].starts_with("HOLEPUNCH_MAX_BODY=\"lots\": expected a size in bytes"));
    }

    #[test]
    fn tls_needs_both_files() {
        let c = cfg(&[TOKEN, (TLS_CERT_FILE, "/c.pem"), (TLS_KEY_FILE, "/k.pem")]).unwrap();
        assert_eq!(
            c.files.tls,
            Some(TlsFiles {
                cert: "/c.pem".into(),
                key: "/k.pem".into(),
                client_ca: None,
            })
        );
        assert_eq!(cfg(&[TOKEN]).unwrap().files.tls, None);
        let errs = errors_for(&[TOKEN, (TLS_CERT_FILE, "/c.pem")]);
        assert_eq!(
            errs,
            vec!["HOLEPUNCH_TLS_KEY_FILE: HOLEPUNCH_TLS_CERT_FILE is set, so TLS needs HOLEPUNCH_TLS_KEY_FILE too (both PEM files)"]
        );
        let errs = errors_for(&[TOKEN, (TLS_KEY_FILE, "/k.pem")]);
        assert!(errs[0].starts_with("HOLEPUNCH_TLS_CERT_FILE: HOLEPUNCH_TLS_KEY_FILE is set"));
        // An empty variable is unset: the certificate is the one missing,
        // whichever of the two is present in the environment.
        for (cert, key) in [("", "/k.pem"), ("/c.pem", "")] {
            let missing = if cert.is_empty() {
                TLS_CERT_FILE
            } else {
                TLS_KEY_FILE
            };
            let set = if cert.is_empty() {
                TLS_KEY_FILE
            } else {
                TLS_CERT_FILE
            };
            let errs = errors_for(&[TOKEN, (TLS_CERT_FILE, cert), (TLS_KEY_FILE, key)]);
            assert_eq!(
                errs,
                vec![format!(
                    "{missing}: {set} is set, so TLS needs {missing} too (both PEM files)"
                )]
            );
        }
        assert_eq!(
            cfg(&[TOKEN, (TLS_CERT_FILE, ""), (TLS_KEY_FILE, "")])
                .unwrap()
                .files
                .tls,
            None
        );
        let c = cfg(&[TOKEN, (CLIENT_TOKEN_FILE, "/run/clients")]).unwrap();
        assert_eq!(
            c.files.client_token_file,
            Some(PathBuf::from("/run/clients"))
        );
    }

    #[test]
    fn client_cas_need_the_tls_pair() {
        let pair = [TOKEN, (TLS_CERT_FILE, "/c.pem"), (TLS_KEY_FILE, "/k.pem")];
        let c = cfg(&[&pair[..], &[(TLS_CLIENT_CA_FILE, "/ca.pem")]].concat()).unwrap();
        let tls = c.files.tls.as_ref().unwrap();
        assert_eq!(tls.client_ca, Some(PathBuf::from("/ca.pem")));
        assert!(c
            .setting_lines()
            .contains(&"client certificates: required, from a CA in /ca.pem".to_string()));
        let c = cfg(&[&pair[..], &[(TLS_CLIENT_CA_FILE, "")]].concat()).unwrap();
        assert_eq!(c.files.tls.unwrap().client_ca, None, "empty is unset");
        // Without TLS: one problem, naming the variables to set.
        let errs = errors_for(&[TOKEN, (TLS_CLIENT_CA_FILE, "/ca.pem")]);
        assert_eq!(
            errs,
            vec![
                "HOLEPUNCH_TLS_CLIENT_CA_FILE=\"/ca.pem\": client certificates are checked in \
                  the TLS handshake, so they need TLS on the listener: set \
                  HOLEPUNCH_TLS_CERT_FILE and HOLEPUNCH_TLS_KEY_FILE too"
            ]
        );
        // Half a pair: the pair's own problem says what is missing, once.
        let errs = errors_for(&[
            TOKEN,
            (TLS_CERT_FILE, "/c.pem"),
            (TLS_CLIENT_CA_FILE, "/ca.pem"),
        ]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("HOLEPUNCH_TLS_KEY_FILE: "), "{errs:?}");
    }

    #[test]
    fn telemetry_bind_is_an_address_and_port_apart_from_the_proxy() {
        let c = cfg(&[TOKEN, (TELEMETRY_BIND, "127.0.0.1:6121")]).unwrap();
        assert_eq!(
            c.listeners.telemetry_listen,
            Some("127.0.0.1:6121".parse().unwrap())
        );
        assert_eq!(cfg(&[TOKEN]).unwrap().listeners.telemetry_listen, None);
        for (value, expected) in [
            (
                "6121",
                "expected an address and a port, such as 127.0.0.1:6121",
            ),
            ("localhost:6121", "expected an address and a port"),
            ("127.0.0.1:0", "expected a port from 1 to 65535"),
            ("127.0.0.1:6120", "the proxy itself listens on 0.0.0.0:6120"),
        ] {
            let errs = cfg(&[TOKEN, (TELEMETRY_BIND, value)]).unwrap_err();
            assert_eq!(errs.len(), 1, "{value}");
            assert_eq!(errs[0].var, TELEMETRY_BIND);
            assert!(
                errs[0].to_string().contains(expected),
                "{value}: {}",
                errs[0]
            );
        }
        // Another address on the same port is fine when the proxy binds one address.
        let c = cfg(&[
            TOKEN,
            (BIND, "10.0.0.1"),
            (TELEMETRY_BIND, "127.0.0.1:6120"),
        ])
        .unwrap();
        assert_eq!(c.listeners.telemetry_listen.map(|a| a.port()), Some(6120));
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(cfg(&[TOKEN]).unwrap().log_format, LogFormat::Text);
        let c = cfg(&[TOKEN, (LOG_FORMAT, "json")]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let errs = cfg(&[TOKEN, (LOG_FORMAT, "JSON")]).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "HOLEPUNCH_LOG_FORMAT=\"JSON\": expected text (the default) or json"
        );
    }

    #[test]
    fn all_off_loopback_needs_client_tokens_or_certificates() {
        for bind in ["0.0.0.0", "10.0.0.5", "::", "fd00::1"] {
            let errs = errors_for(&[TOKEN, (ALLOW_ALL, "true"), (BIND, bind)]);
            assert_eq!(errs.len(), 1, "{bind}: {errs:?}");
            assert!(errs[0].contains(CLIENT_TOKEN_FILE), "{}", errs[0]);
            assert!(errs[0].contains(TLS_CLIENT_CA_FILE), "{}", errs[0]);
            assert!(errs[0].contains(BIND), "{}", errs[0]);
        }
        // A client certificate is client authentication on its own.
        assert!(cfg(&[
            TOKEN,
            (ALLOW_ALL, "true"),
            (BIND, "0.0.0.0"),
            (TLS_CERT_FILE, "/c.pem"),
            (TLS_KEY_FILE, "/k.pem"),
            (TLS_CLIENT_CA_FILE, "/ca.pem"),
        ])
        .is_ok());
        // Default bind is 0.0.0.0.
        assert_eq!(errors_for(&[TOKEN, (ALLOW_ALL, "1")]).len(), 1);
        for bind in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"] {
            assert!(
                cfg(&[TOKEN, (ALLOW_ALL, "true"), (BIND, bind)]).is_ok(),
                "{bind}"
            );
        }
        assert!(cfg(&[
            TOKEN,
            (ALLOW_ALL, "true"),
            (BIND, "0.0.0.0"),
            (CLIENT_TOKEN_FILE, "/secrets/clients")
        ])
        .is_ok());
        assert!(cfg(&[TOKEN, (ALLOW_ALL, "false"), (BIND, "0.0.0.0")]).is_ok());
    }

    #[test]
    fn limits_and_access_variables() {
        let c = cfg(&[TOKEN]).unwrap();
        assert_eq!(c.limits.max_in_flight, 256);
        assert_eq!(c.limits.rate_limit, None);
        assert_eq!(c.listeners.client_write_timeout, Duration::from_secs(30));
        assert_eq!(c.listeners.client_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.listeners.max_connections, None);
        assert_eq!(
            (c.rules.allow_from, c.rules.allowed_hosts, c.rules.region),
            (None, None, None)
        );
        let c = cfg(&[
            TOKEN,
            (MAX_IN_FLIGHT, "8"),
            (RATE_LIMIT, "600/m"),
            (CLIENT_WRITE_TIMEOUT, "5s"),
            (CLIENT_IDLE_TIMEOUT, "1m30s"),
            (MAX_CONNECTIONS, "300"),
            (ALLOW_FROM, "10.0.0.0/8, ::1"),
            (ALLOWED_HOSTS, "*.example.com"),
            (NOMAD_REGION, "europe"),
        ])
        .unwrap();
        assert_eq!(c.limits.max_in_flight, 8);
        assert_eq!(
            c.limits.rate_limit,
            Some(RateLimit {
                requests: 600,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(c.listeners.client_write_timeout, Duration::from_secs(5));
        assert_eq!(c.listeners.client_idle_timeout, Duration::from_secs(90));
        assert_eq!(c.listeners.max_connections, Some(300));
        assert!(c
            .rules
            .allow_from
            .unwrap()
            .contains("10.1.1.1".parse().unwrap()));
        assert!(c.rules.allowed_hosts.unwrap().allows(b"a.example.com"));
        assert_eq!(c.rules.region.as_deref(), Some("europe"));
        assert_eq!(RateLimit::parse("20/s").unwrap().to_string(), "20/s");
        assert_eq!(
            RateLimit::parse("7/h").unwrap().per,
            Duration::from_secs(3600)
        );

        for (var, bad) in [
            (MAX_IN_FLIGHT, "0"),
            (MAX_IN_FLIGHT, "-1"),
            (MAX_IN_FLIGHT, "+5"),
            (MAX_IN_FLIGHT, "lots"),
            (MAX_IN_FLIGHT, "1000001"),
            (RATE_LIMIT, "20"),
            (RATE_LIMIT, "0/s"),
            (RATE_LIMIT, "20/d"),
            (RATE_LIMIT, "20 /s"),
            (RATE_LIMIT, "+20/s"),
            (RATE_LIMIT, "/s"),
            (CLIENT_WRITE_TIMEOUT, "30"),
            (CLIENT_IDLE_TIMEOUT, "60"),
            (CLIENT_IDLE_TIMEOUT, "0s"),
            (MAX_CONNECTIONS, "0"),
            (MAX_CONNECTIONS, "-1"),
            (MAX_CONNECTIONS, "+5"),
            (MAX_CONNECTIONS, "1k"),
            (MAX_CONNECTIONS, "1000001"),
            (ALLOW_FROM, "10.0.0.1/8"),
            (ALLOW_FROM, "10.0.0.0/8,"),
            (ALLOW_FROM, "everyone"),
            (ALLOWED_HOSTS, "example.com:6120"),
            (ALLOWED_HOSTS, "http://example.com"),
        ] {
            let errs = errors_for(&[TOKEN, (var, bad)]);
            assert_eq!(errs.len(), 1, "{var}={bad}: {errs:?}");
            assert!(
                errs[0].starts_with(&format!("{var}={bad:?}: ")),
                "{var}={bad}: {}",
                errs[0]
            );
        }
    }

    #[test]
    fn the_per_client_share_defaults_below_the_total_and_never_exceeds_it() {
        let share = |vars: &[(&str, &str)]| {
            let mut all = vec![TOKEN];
            all.extend_from_slice(vars);
            cfg(&all).map(|c| c.limits.max_in_flight_per_client)
        };
        assert_eq!(share(&[]).unwrap(), 64);
        assert_eq!(share(&[(MAX_IN_FLIGHT, "8")]).unwrap(), 4);
        assert_eq!(share(&[(MAX_IN_FLIGHT, "2")]).unwrap(), 1);
        assert_eq!(share(&[(MAX_IN_FLIGHT, "1")]).unwrap(), 1);
        assert_eq!(share(&[(MAX_IN_FLIGHT_PER_CLIENT, "3")]).unwrap(), 3);
        let equal = [(MAX_IN_FLIGHT, "8"), (MAX_IN_FLIGHT_PER_CLIENT, "8")];
        assert_eq!(share(&equal).unwrap(), 8);
        // Above the total: an error naming both variables and both values.
        let errs = errors_for(&[TOKEN, (MAX_IN_FLIGHT, "8"), (MAX_IN_FLIGHT_PER_CLIENT, "9")]);
        assert_eq!(
            errs,
            [
                "HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT=\"9\": one client cannot hold more places \
                 than HOLEPUNCH_MAX_IN_FLIGHT gives in all (8): set it from 1 to 8, or leave \
                 it unset for 4"
            ]
        );
        assert_eq!(
            errors_for(&[TOKEN, (MAX_IN_FLIGHT_PER_CLIENT, "257")]).len(),
            1
        );
        // A bad total is reported once, not again as a clash.
        let errs = errors_for(&[TOKEN, (MAX_IN_FLIGHT, "0"), (MAX_IN_FLIGHT_PER_CLIENT, "9")]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("HOLEPUNCH_MAX_IN_FLIGHT=\"0\""));
        for bad in ["0", "-1", "+2", "two", "1000001"] {
            let errs = errors_for(&[TOKEN, (MAX_IN_FLIGHT_PER_CLIENT, bad)]);
            assert_eq!(
                errs,
                [format!(
                    "HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT={bad:?}: expected a whole number of \
                     requests from 1 to HOLEPUNCH_MAX_IN_FLIGHT (unset: a quarter of \
                     HOLEPUNCH_MAX_IN_FLIGHT)"
                )]
            );
        }
    }

    #[test]
    fn the_per_client_connection_share_never_exceeds_a_cap_the_operator_set() {
        let share = |vars: &[(&str, &str)]| {
            let mut all = vec![TOKEN];
            all.extend_from_slice(vars);
            cfg(&all).map(|c| c.listeners.max_connections_per_client)
        };
        // Unset: a quarter of the cap in force, decided at startup.
        assert_eq!(share(&[]).unwrap(), None);
        assert_eq!(
            share(&[(MAX_CONNECTIONS_PER_CLIENT, "10")]).unwrap(),
            Some(10)
        );
        // Above a cap the operator set: an error naming both.
        let both = [(MAX_CONNECTIONS, "8"), (MAX_CONNECTIONS_PER_CLIENT, "8")];
        assert_eq!(share(&both).unwrap(), Some(8));
        let errs = errors_for(&[
            TOKEN,
            (MAX_CONNECTIONS, "8"),
            (MAX_CONNECTIONS_PER_CLIENT, "9"),
        ]);
        assert_eq!(
            errs,
            [
                "HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT=\"9\": one client cannot hold more \
                 connections than HOLEPUNCH_MAX_CONNECTIONS allows in all (8): set it from 1 \
                 to 8, or leave it unset for 4"
            ]
        );
        // Above the default cap it is lowered with it at startup, not refused.
        assert_eq!(
            share(&[(MAX_CONNECTIONS_PER_CLIENT, "5000")]).unwrap(),
            Some(5000)
        );
        for bad in ["0", "-1", "+2", "two", "1000001"] {
            let errs = errors_for(&[TOKEN, (MAX_CONNECTIONS_PER_CLIENT, bad)]);
            assert_eq!(
                errs,
                [format!(
                    "HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT={bad:?}: expected a whole number of \
                     connections from 1 to HOLEPUNCH_MAX_CONNECTIONS (unset: a quarter of \
                     HOLEPUNCH_MAX_CONNECTIONS)"
                )]
            );
        }
    }

    #[test]
    fn rate_limits_print_as_they_are_written() {
        for v in ["20/s", "600/m", "7/h", "1/s", "4294967295/h"] {
            assert_eq!(RateLimit::parse(v).unwrap().to_string(), v);
        }
        assert_eq!(RateLimit::parse("4294967296/s"), None);
    }

    #[test]
    fn token_sources_describe_themselves_without_the_token() {
        let env = TokenSource::Env(TOKEN.1.to_string());
        assert_eq!(format!("{env:?}"), "NOMAD_TOKEN (<redacted>)");
        let file = TokenSource::File {
            path: "/secrets/nomad_token".into(),
            var: NOMAD_SECRETS_DIR,
        };
        assert_eq!(
            format!("{file:?}"),
            "file /secrets/nomad_token (from NOMAD_SECRETS_DIR)"
        );
    }

    /// "Did you mean" rests on these distances.
    #[test]
    fn edit_distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("", "abc", 3),
            ("abc", "", 3),
            ("abc", "abc", 0),
            ("kitten", "sitting", 3),
            ("ab", "ba", 2),
            ("HOLEPUNCH_ALOW_NODES", "HOLEPUNCH_ALLOW_NODES", 1),
            ("HOLEPUNCH_PORTS", "HOLEPUNCH_PORT", 1),
            ("XHOLEPUNCH_PORT", "HOLEPUNCH_PORT", 1),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a:?} {b:?}");
            assert_eq!(edit_distance(b, a), d, "{b:?} {a:?}");
        }
    }

    #[test]
    fn describe_lists_every_setting() {
        let c = cfg(&[TOKEN, (BIND, "127.0.0.1")]).unwrap();
        let lines = c.setting_lines();
        assert_eq!(lines[0], "listen address: 127.0.0.1:6120");
        assert_eq!(
            lines[1],
            "Task API socket: /secrets/api.sock (from default)"
        );
        assert_eq!(lines[2], "workload token: NOMAD_TOKEN (<redacted>)");
        assert_eq!(lines.len(), 4 + Group::ALL.len() + 19);
        assert!(lines.contains(&"HOLEPUNCH_CLIENT_WRITE_TIMEOUT = 30s".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_CLIENT_IDLE_TIMEOUT = 60s".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_MAX_CONNECTIONS = default".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT = default".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_MAX_IN_FLIGHT = 256".to_string()));
        assert!(lines
            .contains(&"HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT = 64 per client address".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_RATE_LIMIT = off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOW_FROM = any address".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOWED_HOSTS = any host".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_METRICS_CACHE_TTL = off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_TELEMETRY_BIND = off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_LOG_FORMAT = text".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_UPSTREAM_TIMEOUT = 340s".to_string()));
        assert!(lines.contains(&"TLS: off".to_string()));
        assert!(lines.contains(&"client certificates: off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOW_METRICS = true".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOW_NODES = false".to_string()));
    }
}
