//! Logging: env_logger (`RUST_LOG`, default `info`) behind a filter that
//! removes secrets from every line, as text or as one JSON object per line
//! (`HOLEPUNCH_LOG_FORMAT=json`, for log shippers).
//!
//! The workload token must never reach a log, at any level. Our own code
//! never logs it, but Pingora's HTTP/1 client logs whole upstream request
//! headers at debug and trace, and those carry `X-Nomad-Token`. So every
//! token the process loads is registered here with [`add_secret`], and every
//! log line has each occurrence that stands as a whole token (a header value,
//! a quoted string) replaced with `<redacted>`.

use crate::config::LOG_FORMAT;
use log::{Log, Metadata, Record};
use once_cell::sync::Lazy;
use std::borrow::Cow;
use std::sync::RwLock;

/// How many secrets are remembered: the workload token, the client tokens,
/// and enough rotations that a replaced token stays redacted long after any
/// request that carried it has finished.
const MAX_SECRETS: usize = 64;

static SECRETS: Lazy<RwLock<Secrets>> = Lazy::new(|| RwLock::new(Secrets::default()));

/// How log lines are written (`HOLEPUNCH_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `[2026-11-25T10:00:00.000Z INFO  target] message`, env_logger's.
    #[default]
    Text,
    /// One JSON object per line: ts, level, target, msg.
    Json,
}

impl LogFormat {
    /// Parses a set `HOLEPUNCH_LOG_FORMAT`; empty is text. The error says
    /// what would be accepted.
    pub fn parse(v: &str) -> Result<LogFormat, String> {
        match v {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text (the default) or json".to_string()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The format the process environment asks for, for the logger, which
    /// starts before the configuration is checked (a bad value is reported
    /// with the other problems, and text is used meanwhile).
    pub fn from_env() -> LogFormat {
        std::env::var(LOG_FORMAT)
            .ok()
            .and_then(|v| LogFormat::parse(&v).ok())
            .unwrap_or_default()
    }
}

/// Installs the logger. `RUST_LOG` sets the level (default `info`).
/// Calling it twice is harmless: the second call does nothing.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format_timestamp_millis();
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            use std::io::Write;
            let line = json_line(
                &buf.timestamp_millis().to_string(),
                record.level().as_str(),
                record.target(),
                &record.args().to_string(),
            );
            writeln!(buf, "{line}")
        });
    }
    let inner = builder.build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Redacting(inner))).is_ok() {
        log::set_max_level(max);
    }
}

/// Registers a secret to be redacted from every later log line.
pub fn add_secret(secret: &str) {
    SECRETS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .add(secret);
}

/// The most recent secrets, oldest first.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    fn add(&mut self, secret: &str) {
        if secret.is_empty() || self.0.iter().any(|s| s == secret) {
            return;
        }
        if self.0.len() == MAX_SECRETS {
            self.0.remove(0);
        }
        self.0.push(secret.to_string());
    }

    /// `message` with every secret replaced by `<redacted>` wherever it
    /// stands as a whole token: not preceded or followed by a byte that a
    /// token can contain. A header line, a quoted value or a URL parameter
    /// is matched; the `x` inside "exiting" is not, so a short development
    /// token does not garble the log.
    fn redact<'a>(&self, message: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(message);
        for secret in &self.0 {
            if let Some(replaced) = replace_whole(&out, secret) {
                out = Cow::Owned(replaced);
            }
        }
        out
    }
}

/// Bytes that continue a token: base64 and base64url, JWT dots, UUID
/// dashes. (`=` can only end a base64 token, so it does not count: in
/// `token=x` the `x` stands alone.)
fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// `haystack` with each whole-token occurrence of `secret` replaced, or
/// `None` when there is none.
fn replace_whole(haystack: &str, secret: &str) -> Option<String> {
    let bytes = haystack.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = haystack[from..].find(secret) {
        let start = from + found;
        let end = start + secret.len();
        let before_ok = start == 0 || !token_byte(bytes[start - 1]);
        let after_ok = end == bytes.len() || !token_byte(bytes[end]);
        if before_ok && after_ok {
            out.push_str(&haystack[copied..start]);
            out.push_str("<redacted>");
            copied = end;
        }
        // Secrets are ASCII (checked when loaded), so `start + 1` is a char boundary.
        from = start + 1;
    }
    (copied > 0).then(|| {
        out.push_str(&haystack[copied..]);
        out
    })
}

/// One log line as a JSON object: `{"ts":..,"level":..,"target":..,"msg":..}`.
fn json_line(ts: &str, level: &str, target: &str, msg: &str) -> String {
    let mut out = String::with_capacity(48 + ts.len() + target.len() + msg.len());
    for (i, (key, value)) in [
        ("ts", ts),
        ("level", level),
        ("target", target),
        ("msg", msg),
    ]
    .iter()
    .enumerate()
    {
        out.push_str(if i == 0 { "{\"" } else { ",\"" });
        out.push_str(key);
        out.push_str("\":\"");
        json_escape(value, &mut out);
        out.push('"');
    }
    out.push('}');
    out
}

/// Appends `s` escaped for a JSON string (RFC 8259: quote, backslash and
/// control characters).
fn json_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

struct Redacting(env_logger::Logger);

impl Log for Redacting {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.0.matches(record) {
            return;
        }
        let message = record.args().to_string();
        let message = SECRETS
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .redact(&message)
            .into_owned();
        self.0.log(
            &Record::builder()
                .level(record.level())
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .args(format_args!("{message}"))
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The logger starts before the configuration is checked, from the
    /// process environment. Only "json" is set here: a value every other
    /// test reading the environment also accepts.
    #[test]
    fn log_format_from_the_process_environment() {
        std::env::set_var(LOG_FORMAT, "json");
        let format = LogFormat::from_env();
        std::env::remove_var(LOG_FORMAT);
        assert_eq!(format, LogFormat::Json);
        assert_eq!(LogFormat::Json.name(), "json");
        assert_eq!(LogFormat::Text.name(), "text");
    }

    #[test]
    fn secrets_are_replaced_everywhere_in_a_line() {
        let mut secrets = Secrets::default();
        secrets.add("s3cr3t-token-for-test");
        secrets.add("");
        let line =
            r#"RequestHeader { "x-nomad-token": "s3cr3t-token-for-test" } s3cr3t-token-for-test"#;
        assert_eq!(
            secrets.redact(line),
            r#"RequestHeader { "x-nomad-token": "<redacted>" } <redacted>"#
        );
        assert!(matches!(
            secrets.redact("nothing to hide"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn short_secrets_are_redacted_only_as_whole_tokens() {
        let mut secrets = Secrets::default();
        secrets.add("x");
        assert_eq!(
            secrets.redact("Server Test passed, exiting"),
            "Server Test passed, exiting"
        );
        assert_eq!(
            secrets.redact("b\"X-Nomad-Token: x\\r\\n\" \"x-nomad-token\": \"x\" token=x"),
            "b\"X-Nomad-Token: <redacted>\\r\\n\" \"x-nomad-token\": \"<redacted>\" token=<redacted>"
        );
        assert_eq!(secrets.redact("x"), "<redacted>");
        assert_eq!(secrets.redact("xx x.y"), "xx x.y");
    }

    #[test]
    fn json_lines_are_escaped_objects() {
        assert_eq!(
            json_line(
                "2026-11-25T10:00:00.000Z",
                "INFO",
                "holepunch::proxy",
                "denied 127.0.0.1:5 GET \"/v1/a\\b\"\n\u{1}"
            ),
            r#"{"ts":"2026-11-25T10:00:00.000Z","level":"INFO","target":"holepunch::proxy","msg":"denied 127.0.0.1:5 GET \"/v1/a\\b\"\n\u0001"}"#
        );
    }

    #[test]
    fn only_the_last_few_secrets_are_kept() {
        let mut secrets = Secrets::default();
        for i in 0..MAX_SECRETS + 2 {
            secrets.add(&format!("rotating-secret-{i:02}"));
        }
        assert_eq!(secrets.redact("rotating-secret-00"), "rotating-secret-00");
        assert_eq!(
            secrets.redact(&format!("rotating-secret-{:02}", MAX_SECRETS + 1)),
            "<redacted>"
        );
    }
}
