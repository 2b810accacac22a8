//! The library's error type: what went wrong, said so an operator can act on it.

use crate::db::{self, ConnSettings, SslMode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad settings, arguments or configuration (exit 3 for health/report, 2/1 otherwise).
    #[error("{0}")]
    Config(String),
    /// Could not connect: network, TLS or authentication.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The server reported an error (message, detail, hint, SQLSTATE already formatted).
    #[error("{0}")]
    Db(String),
    /// Another run holds the lock.
    #[error("{0}")]
    Busy(String),
    /// What was verified is bad: corruption, drift, mismatch, tampering.
    #[error("{0}")]
    Verify(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
    /// Stopped by SIGINT or SIGTERM; `undone` says what was rolled back on the way out.
    #[error("interrupted by {}: {undone}", crate::interrupt::signal_name(*signal))]
    Interrupted { signal: i32, undone: String },
}

impl Error {
    /// Wraps a server or protocol error with its full description.
    pub fn db(e: tokio_postgres::Error) -> Self {
        Error::Db(db::describe(&e))
    }

    /// Wraps an error with a short context line in front.
    pub fn db_ctx(context: impl std::fmt::Display) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |e| Error::Db(format!("{context}: {}", db::describe(&e)))
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// Builds a connection error whose reason says what to do about it.
    pub fn connect(target: &str, s: &ConnSettings, e: &tokio_postgres::Error) -> Self {
        let raw = db::describe(e).replace("\n  ", "; ");
        let lower = raw.to_lowercase();
        let reason = if lower.contains("certificate verify failed")
            || lower.contains("certificate verification failed")
        {
            let what =
                if lower.contains("hostname mismatch") || lower.contains("ip address mismatch") {
                    format!(
                        "the server certificate does not match the host name {:?}",
                        s.host_or_default()
                    )
                } else {
                    "the server certificate is not signed by a trusted CA".to_string()
                };
            format!(
                "TLS certificate verification failed: {what} (sslmode={}). Set sslrootcert (or \
                 PGSSLROOTCERT) to the CA that signed the server certificate, and connect with \
                 the host name the certificate names. [{raw}]",
                s.sslmode()
            )
        } else if lower.contains("pg_hba.conf") && lower.contains("no encryption") {
            format!(
                "the server refuses unencrypted connections (sslmode={}); use sslmode=verify-full \
                 with sslrootcert. [{raw}]",
                s.sslmode()
            )
        } else if lower.contains("password authentication failed") {
            format!(
                "authentication failed for user {:?}: check the password (PGPASSWORD, the password file or the URL). [{raw}]",
                s.user_or_default()
            )
        } else if lower.contains("password missing") {
            format!(
                "the server asks for a password for user {:?} and no password was given: put it \
                 in PGPASSWORD, in a password file (PGPASSFILE, else ~/.pgpass; mode 0600; \
                 host:port:database:user:password lines) or in the URL. [{raw}]",
                s.user_or_default()
            )
        } else if lower.contains("connection refused") {
            format!(
                "connection refused: is the server running and listening on {}:{}? [{raw}]",
                s.host_or_default(),
                s.port_or_default()
            )
        } else if lower.contains("server does not support tls")
            || lower.contains("server does not support ssl")
        {
            format!(
                "the server does not accept TLS; enable ssl on the server (sslmode={} requires it). [{raw}]",
                s.sslmode()
            )
        } else if s.sslmode() == SslMode::Disable && lower.contains("pg_hba") {
            format!("{raw} (sslmode=disable: try sslmode=verify-full)")
        } else {
            raw
        };
        Error::Connect {
            target: target.to_string(),
            reason: redact_secret(&reason, s.password()),
        }
    }

    /// True when this error means the database could not be reached or authenticated.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect { .. })
    }
}

/// Removes a known secret from a message, wherever it appears.
pub fn redact_secret(msg: &str, secret: Option<&str>) -> String {
    match secret {
        Some(p) if !p.is_empty() => msg.replace(p, "****"),
        _ => msg.to_string(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
