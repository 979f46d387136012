//! Logging: env_logger (`RUST_LOG`, default `info`) behind a filter that
//! removes secrets from every line, as text or as one JSON object per line
//! (`HOLEPUNCH_LOG_FORMAT=json`, for log shippers).
//!
//! No secret may reach a log, at any level. Our own code never logs one,
//! but Pingora logs upstream request headers at trace (pingora-core 0.9.1
//! `protocols/http/v1/client.rs`, `write_request_header`: the wire bytes as
//! `{:?}` of a `BytesMut`), and those carry `X-Nomad-Token`. So every value
//! holding secrets (the workload token, the client tokens) registers them
//! with the secret registry (`crate::secrets`, a leaf: `crate::files::reload`
//! registers each value's secrets there), and every log line goes through
//! its redaction before it is written, text or JSON.
//!
//! A line never shows more than [`LOGGED_TARGET_BYTES`] of a request target
//! ([`capped`]), and refusal lines, which a client can cause without limit,
//! are throttled ([`refusal_line`], [`Throttle`]).

use crate::secrets::{self, Redactor};
use crate::vars::LOG_FORMAT;
use log::{Log, Metadata, Record};
use std::sync::Mutex;
use std::time::Instant;

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

/// The most bytes of a request target (or of a refused request line) a log
/// line shows: as much as Pingora's own 400 logs. A target can be nearly
/// `MAX_HEADER_BYTES` (64 KiB), which is no use in a log.
pub const LOGGED_TARGET_BYTES: usize = 2048;

/// `shown` (a request target or line, escaped for the log) as a log line
/// shows it: its secrets redacted, then cut to [`LOGGED_TARGET_BYTES`] with
/// a note of its length. Redacted before it is cut, so that the cut never
/// leaves the start of a secret that the whole line's redaction would no
/// longer recognise.
pub fn capped(shown: impl std::fmt::Display) -> String {
    cap(&secrets::redactor(), &shown.to_string())
}

/// [`capped`] with a given redaction (pure, for tests).
fn cap(redactor: &Redactor, text: &str) -> String {
    let text = redactor.redact(text);
    if text.len() <= LOGGED_TARGET_BYTES {
        return text.into_owned();
    }
    let mut end = LOGGED_TARGET_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...(cut: {} bytes in all)", &text[..end], text.len())
}

/// Refusal lines logged per second at most: what the proxy answers itself
/// (403, 401, 400, 421, 429, 503 ...), the guard's 400, and the telemetry
/// listener's 403. A refusal counts against no limit, so a broken or
/// hostile client can send as many as it likes; past this, one line says
/// how many were not logged. Ten a second is more than any scraper that is
/// merely misconfigured makes, and with [`LOGGED_TARGET_BYTES`] caps a
/// flood at about 20 KB of log a second.
pub const REFUSAL_LINES_PER_SECOND: u32 = 10;

/// Lines not logged by a [`Throttle`], reported with the next one logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub lines: u64,
    /// From the first line not logged to the one that reports them.
    pub over: std::time::Duration,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} refusal lines not logged in the last {:.1}s (at most \
             {REFUSAL_LINES_PER_SECOND} a second are)",
            self.lines,
            self.over.as_secs_f64()
        )
    }
}

/// At most `per_second` lines in each second, in windows of one second
/// that start with the first line after the last one ended. Pure: the
/// caller gives the time.
#[derive(Debug)]
pub struct Throttle {
    per_second: u32,
    /// When the current window began, and the lines logged in it.
    window: Option<Instant>,
    logged: u32,
    /// Lines not logged since the last one logged, and when the first was.
    dropped: u64,
    dropped_since: Option<Instant>,
}

impl Throttle {
    pub const fn new(per_second: u32) -> Throttle {
        Throttle {
            per_second,
            window: None,
            logged: 0,
            dropped: 0,
            dropped_since: None,
        }
    }

    /// Whether a line may be logged at `now`.
    pub fn admit(&mut self, now: Instant) -> Verdict {
        let ended = self
            .window
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW);
        if ended {
            self.window = Some(now);
            self.logged = 0;
        }
        if self.logged >= self.per_second {
            self.dropped += 1;
            self.dropped_since.get_or_insert(now);
            return Verdict::Drop;
        }
        self.logged += 1;
        let since = self.dropped_since.take();
        let lines = std::mem::take(&mut self.dropped);
        Verdict::Log(since.map(|since| Dropped {
            lines,
            over: now.saturating_duration_since(since),
        }))
    }
}

/// What a [`Throttle`] says of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it, after a line saying how many were not logged, if any were.
    Log(Option<Dropped>),
    /// Drop it (it is counted, and reported with the next line logged).
    Drop,
}

/// A [`Throttle`]'s window.
const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// The one throttle of every refusal line.
static REFUSALS: Mutex<Throttle> = Mutex::new(Throttle::new(REFUSAL_LINES_PER_SECOND));

/// Whether a refusal line may be logged now ([`REFUSAL_LINES_PER_SECOND`]).
/// The caller logs the [`Dropped`] line first, if there is one, from its
/// own module as the line itself. Ask only when the line's level is
/// enabled, so that lines nobody would see use none of the allowance.
pub fn refusal_line() -> Verdict {
    REFUSALS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(Instant::now())
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
        let message = secrets::redactor().redact(&message).into_owned();
        // JSON escapes `message` after this, as `{:?}` escapes printable
        // ASCII (`\"`, `\\`): a form it makes of a secret is the escape of
        // a form redacted here. A control byte it escapes before a short
        // secret (`\n`, `\u0001`) counts as a boundary (`secrets::Redactor`).
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
    use crate::secrets::forms;

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
    fn refusal_lines_are_throttled_and_the_dropped_ones_reported() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        let mut throttle = Throttle::new(3);
        // Three in the first second, then drops.
        for ms in [0, 10, 20] {
            assert_eq!(throttle.admit(at(ms)), Verdict::Log(None), "{ms}");
        }
        for ms in [30, 500, 999] {
            assert_eq!(throttle.admit(at(ms)), Verdict::Drop, "{ms}");
        }
        // The next window's first line carries the count, from the first
        // line dropped; the window starts at that line.
        let dropped = Dropped {
            lines: 3,
            over: std::time::Duration::from_millis(1_470),
        };
        assert_eq!(throttle.admit(at(1_500)), Verdict::Log(Some(dropped)));
        assert_eq!(
            dropped.to_string(),
            "3 refusal lines not logged in the last 1.5s (at most 10 a second are)"
        );
        assert_eq!(throttle.admit(at(1_600)), Verdict::Log(None));
        assert_eq!(throttle.admit(at(2_499)), Verdict::Log(None));
        assert_eq!(throttle.admit(at(2_499)), Verdict::Drop);
        assert_eq!(
            throttle.admit(at(2_500)),
            Verdict::Log(Some(Dropped {
                lines: 1,
                over: std::time::Duration::from_millis(1),
            }))
        );
        // A flood of a million in one second: three logged.
        let mut logged = 0;
        for i in 0..1_000_000u64 {
            if let Verdict::Log(_) = throttle.admit(at(10_000) + std::time::Duration::from_nanos(i))
            {
                logged += 1;
            }
        }
        assert_eq!(logged, 3);
        // A clock that goes backwards (another thread's `now`) is the same window.
        assert_eq!(throttle.admit(at(9_000)), Verdict::Drop);
    }

    #[test]
    fn a_logged_target_is_cut_after_its_secrets_are_redacted() {
        let none = redactor(&[]);
        assert_eq!(cap(&none, "/v1/metrics"), "/v1/metrics");
        let exact = "a".repeat(LOGGED_TARGET_BYTES);
        assert_eq!(cap(&none, &exact), exact);
        let long = format!("/v1/agent/self?{}", "a".repeat(60_000));
        let shown = cap(&none, &long);
        assert_eq!(
            shown,
            format!(
                "{}...(cut: 60015 bytes in all)",
                &long[..LOGGED_TARGET_BYTES]
            )
        );
        // Never inside a character.
        let wide = "\u{e9}".repeat(LOGGED_TARGET_BYTES);
        let shown = cap(&none, &wide);
        assert!(shown.starts_with(&"\u{e9}".repeat(LOGGED_TARGET_BYTES / 2)));
        assert!(shown.ends_with(&format!("...(cut: {} bytes in all)", wide.len())));
        // A secret across the cut is redacted whole, not cut into a piece
        // the line's own redaction would not know.
        let secret = "s3cr3t-token-0123456789abcdef";
        let straddling = format!(
            "{}{secret}{}",
            "a".repeat(LOGGED_TARGET_BYTES - 10),
            "b".repeat(100)
        );
        let shown = cap(&redactor(&[secret]), &straddling);
        assert!(!shown.contains(&secret[..10]), "{shown}");
        assert!(
            shown.ends_with("a<redacted>...(cut: 2148 bytes in all)"),
            "{shown}"
        );
    }

    fn redactor(secrets: &[&str]) -> Redactor {
        Redactor::new(secrets.iter().copied())
    }

    /// A token with `"`, `\` and `'` (printable ASCII, accepted for
    /// `NOMAD_TOKEN`, in the token file and in the client token file).
    const NASTY: &str = r#"wl-tok"en\abc'def.0123456789"#;

    /// The forms written by the escapers themselves (std, bytes, http), not
    /// by [`forms`]: what Pingora's and our lines really contain.
    fn written_forms(secret: &str) -> Vec<String> {
        let mut header = http::HeaderValue::from_str(secret).unwrap();
        let debug_str = format!("{secret:?}");
        let mut json = String::new();
        json_escape(secret, &mut json);
        let mut forms = vec![
            secret.to_string(),
            debug_str.clone(),
            format!("{:?}", bytes::Bytes::copy_from_slice(secret.as_bytes())),
            format!("{:?}", bytes::BytesMut::from(secret.as_bytes())),
            format!("{header:?}"),
            secret.escape_debug().to_string(),
            secret.as_bytes().escape_ascii().to_string(),
            json.clone(),
            // A Debug form inside another Debug, and a Debug form in JSON.
            format!("{debug_str:?}"),
            {
                let mut twice = String::new();
                json_escape(&debug_str, &mut twice);
                twice
            },
            format!("{:?}", format!("{header:?}")),
        ];
        header.set_sensitive(true);
        assert_eq!(format!("{header:?}"), "Sensitive");
        // The quotes the Debug forms are written with (escaped too, in a
        // Debug of a Debug) are not the secret's.
        for form in &mut forms {
            for (open, close) in [("b\"", "\""), ("\"", "\""), ("\\\"", "\\\"")] {
                if let Some(inner) = form.strip_prefix(open).and_then(|f| f.strip_suffix(close)) {
                    *form = inner.to_string();
                }
            }
        }
        forms.sort();
        forms.dedup();
        forms
    }

    fn assert_clean(line: &str, secret: &str) {
        for form in written_forms(secret) {
            assert!(!line.contains(&form), "{form} is in {line}");
        }
    }

    #[test]
    fn every_written_form_of_a_token_is_a_form_the_redaction_knows() {
        let known = forms(NASTY.as_bytes());
        for form in written_forms(NASTY) {
            assert!(known.contains(&form.clone().into_bytes()), "{form}");
        }
        // A token with none of `"`, `\`, `'` has one form.
        assert_eq!(forms(b"abc.def-ghi_jkl"), vec![b"abc.def-ghi_jkl".to_vec()]);
        assert_eq!(
            forms(b"a'b"),
            [r"a'b", r"a\'b", r"a\\'b", r"a\\\'b"]
                .map(|f| f.as_bytes().to_vec())
                .to_vec()
        );
    }

    /// Each line as Pingora or our code writes it, with the token in it.
    #[test]
    fn a_token_is_redacted_in_every_form_a_line_shows_it() {
        let r = redactor(&[NASTY]);
        let mut header = http::HeaderMap::new();
        header.insert("x-nomad-token", http::HeaderValue::from_str(NASTY).unwrap());
        let wire = format!("GET /v1/metrics HTTP/1.1\r\nX-Nomad-Token: {NASTY}\r\n\r\n");
        let lines = [
            format!(
                "Writing request header: {:?}",
                bytes::BytesMut::from(wire.as_str())
            ),
            format!("Raw Response header: {:?}", wire),
            format!("Sending header to upstream {header:?}"),
            format!(
                "refused 127.0.0.1:5 {}: bad",
                wire.as_bytes().escape_ascii()
            ),
            format!("denied GET {}", format!("/v1/x?t={NASTY}").escape_debug()),
            format!("context: {:?}", format!("{header:?}")),
            NASTY.to_string(),
        ];
        for line in &lines {
            let redacted = r.redact(line);
            assert!(redacted.contains("<redacted>"), "{line}");
            assert_clean(&redacted, NASTY);
        }
        assert_eq!(
            r.redact(&lines[0]),
            r#"Writing request header: b"GET /v1/metrics HTTP/1.1\r\nX-Nomad-Token: <redacted>\r\n\r\n""#
        );
        assert_eq!(
            r.redact(&lines[2]),
            r#"Sending header to upstream {"x-nomad-token": "<redacted>"}"#
        );
    }

    #[test]
    fn json_output_shows_no_form_of_a_token() {
        let r = redactor(&[NASTY]);
        let message = format!("raw {NASTY} debug {NASTY:?} {:?}", format!("{NASTY:?}"));
        let line = json_line("t", "TRACE", "pingora_core", &r.redact(&message));
        assert_eq!(line.matches("<redacted>").count(), 3, "{line}");
        assert_clean(&line, NASTY);
    }
}
