//! Logging setup: tracing to stderr, filtered by OPSCTL_LOG or RUST_LOG.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// `default` is the filter when neither variable is set (warn; info for the daemon).
pub fn init(format: LogFormat, default: &str) {
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
