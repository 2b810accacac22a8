//! Logging setup: tracing to stderr, filtered by OPSCTL_LOG or RUST_LOG; and the one
//! printer of the messages a person reads on stderr (errors, warnings, notes, `serve`
//! messages), which writes them as JSON lines like tracing's under `--log-format json`.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Set once by [`init`]: messages are JSON lines.
static JSON: AtomicBool = AtomicBool::new(false);

/// `default` is the filter when neither variable is set (warn; info for the daemon).
pub fn init(format: LogFormat, default: &str) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let filter = std::env::var("OPSCTL_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// True under `--log-format json`.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// `error: …` on stderr (a JSON line with level ERROR under `--log-format json`).
pub fn error(msg: impl Display) {
    emit("ERROR", "error: ", &msg.to_string());
}

/// `warning: …` on stderr (level WARN).
pub fn warn(msg: impl Display) {
    emit("WARN", "warning: ", &msg.to_string());
}

/// `note: …` on stderr (level INFO).
pub fn note(msg: impl Display) {
    emit("INFO", "note: ", &msg.to_string());
}

/// A plain progress or status line on stderr (level INFO), e.g. `serve`'s "listening on".
pub fn info(msg: impl Display) {
    emit("INFO", "", &msg.to_string());
}

/// Text: `prefix` + message. JSON: the shape tracing-subscriber's JSON formatter writes
/// (`timestamp`, `level`, `fields.message`), so one log collector reads both.
fn emit(level: &str, prefix: &str, msg: &str) {
    if json() {
        eprintln!("{}", json_line(level, msg));
    } else {
        eprintln!("{prefix}{msg}");
    }
}

fn json_line(level: &str, msg: &str) -> String {
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": level,
        "fields": { "message": msg },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_tracings_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&json_line("ERROR", "it broke:\n\"here\"")).unwrap();
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["fields"]["message"], "it broke:\n\"here\"");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
