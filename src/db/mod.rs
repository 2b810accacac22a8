//! Database access shared by every command: connecting over verified TLS, describing
//! server errors in full, quoting identifiers, and advisory locks.

pub mod conninfo;

use std::time::{Duration, Instant};

use native_tls::{Certificate, Identity, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::{Client, Config, NoTls};

pub use conninfo::{redact, ConnSettings, ConnSources, SslMode};

use crate::error::Error;

/// A live connection plus what a report needs to say about it.
pub struct Connection {
    pub client: Client,
    pub settings: ConnSettings,
    /// Handle of the task driving the socket; aborted when the connection is dropped.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::ops::Deref for Connection {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Builds the native-tls connector for the settings' sslmode.
pub fn tls_connector(s: &ConnSettings) -> Result<TlsConnector, Error> {
    let mut b = TlsConnector::builder();
    b.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    let rootcert = s.sslrootcert.clone().or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = std::path::Path::new(&home).join(".postgresql/root.crt");
        p.exists().then_some(p)
    });
    match s.sslmode() {
        SslMode::Require => {
            b.danger_accept_invalid_certs(true);
            b.danger_accept_invalid_hostnames(true);
        }
        SslMode::VerifyCa => {
            b.danger_accept_invalid_hostnames(true);
        }
        SslMode::VerifyFull | SslMode::Disable => {}
    }
    if let Some(path) = rootcert.filter(|_| s.sslmode() != SslMode::Require) {
        let pem = std::fs::read(&path).map_err(|e| {
            Error::Config(format!(
                "cannot read sslrootcert {}: {e}; point sslrootcert (or PGSSLROOTCERT) at the CA \
                 certificate that signed the server's certificate",
                path.display()
            ))
        })?;
        let certs = Certificate::stack_from_pem(&pem).map_err(|e| {
            Error::Config(format!(
                "sslrootcert {} holds no usable PEM certificate: {e}",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "sslrootcert {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
        // As libpq: an explicit root file is the only trust anchor.
        b.disable_built_in_roots(true);
        for c in certs {
            b.add_root_certificate(c);
        }
    }
    match (&s.sslcert, &s.sslkey) {
        (Some(cert), Some(key)) => {
            let cert_pem = std::fs::read(cert).map_err(|e| {
                Error::Config(format!("cannot read sslcert {}: {e}", cert.display()))
            })?;
            check_key_permissions(key)?;
            // Wiped from memory once the identity holds the key.
            let key_pem = zeroize::Zeroizing::new(std::fs::read(key).map_err(|e| {
                Error::Config(format!("cannot read sslkey {}: {e}", key.display()))
            })?);
            let id = Identity::from_pkcs8(&cert_pem, &key_pem).map_err(|e| {
                Error::Config(format!(
                    "client certificate {} / key {} unusable: {e}. The key must be an unencrypted \
                     PKCS#8 PEM (-----BEGIN PRIVATE KEY-----); convert an RSA or EC key with \
                     `openssl pkcs8 -topk8 -nocrypt -in old.key -out client.key`",
                    cert.display(),
                    key.display()
                ))
            })?;
            b.identity(id);
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::Config(
                "sslcert and sslkey must be given together".into(),
            ))
        }
        (None, None) => {}
    }
    b.build()
        .map_err(|e| Error::Config(format!("cannot set up TLS: {e}")))
}

/// libpq's rule for a client private key: a plain file, with no group or world access
/// when the current user owns it, or at most u=rw,g=r (0640) when root owns it.
fn check_key_permissions(key: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key)
        .map_err(|e| Error::Config(format!("cannot read sslkey {}: {e}", key.display())))?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    key_mode_refusal(meta.is_file(), meta.uid(), euid, meta.mode()).map_or(Ok(()), |why| {
        Err(Error::Config(format!(
            "private key file \"{}\" {why}",
            key.display()
        )))
    })
}

/// Why libpq would refuse a key file with this owner and mode, if it would.
fn key_mode_refusal(is_file: bool, owner: u32, euid: u32, mode: u32) -> Option<&'static str> {
    if !is_file {
        return Some("is not a regular file");
    }
    if (owner == euid && mode & 0o077 != 0) || (owner == 0 && mode & 0o037 != 0) {
        return Some(
            "has group or world access; file must have permissions u=rw (0600) or less if \
             owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root",
        );
    }
    None
}

fn pg_config(s: &ConnSettings) -> Config {
    let mut c = Config::new();
    c.host(s.host_or_default());
    if let Some(a) = s.hostaddr {
        c.hostaddr(a);
    }
    c.port(s.port_or_default());
    c.user(s.user_or_default());
    if let Some(p) = s.password() {
        c.password(p);
    }
    c.dbname(s.dbname_or_default());
    c.application_name(s.application_name.as_deref().unwrap_or("opsctl"));
    c.connect_timeout(s.connect_timeout.unwrap_or(Duration::from_secs(10)));
    if let Some(o) = &s.options {
        c.options(o);
    }
    c.keepalives(true);
    c
}

/// Prints the libpq-style warnings for weak sslmodes on stderr, once per process.
fn warn_weak_tls(s: &ConnSettings) {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    let msg = match s.sslmode() {
        _ if s.is_unix_socket() => return,
        SslMode::Disable => {
            "sslmode=disable: the connection is not encrypted; passwords and data cross the network in clear"
        }
        SslMode::Require => {
            "sslmode=require: the server certificate is not verified; anyone on the path can impersonate the server (use verify-full with sslrootcert)"
        }
        _ => return,
    };
    ONCE.call_once(|| crate::logging::warn(msg));
}

/// Connects with the settings: TLS per sslmode (none over a Unix socket).
pub async fn connect(s: &ConnSettings) -> Result<Connection, Error> {
    warn_weak_tls(s);
    let config = pg_config(s);
    let target = s.to_string();
    let use_tls = !s.is_unix_socket() && s.sslmode() != SslMode::Disable;
    let wrap = |e: tokio_postgres::Error| Error::connect(&target, s, &e);
    let (client, task) = if use_tls {
        let mut config = config;
        config.ssl_mode(PgSslMode::Require);
        let tls = MakeTlsConnector::new(tls_connector(s)?);
        let (client, conn) = config.connect(tls).await.map_err(wrap)?;
        (client, tokio::spawn(drive(conn)))
    } else {
        let mut config = config;
        config.ssl_mode(PgSslMode::Disable);
        let (client, conn) = config.connect(NoTls).await.map_err(wrap)?;
        (client, tokio::spawn(drive(conn)))
    };
    Ok(Connection {
        client,
        settings: s.clone(),
        task,
    })
}

async fn drive<F>(conn: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = conn.await {
        tracing::debug!("connection closed: {}", describe(&e));
    }
}

/// Describes a tokio-postgres error in full: message, detail, hint, SQLSTATE for
/// server errors; the whole source chain otherwise.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            out.push_str(&format!("\n  detail: {d}"));
        }
        if let Some(h) = db.hint() {
            out.push_str(&format!("\n  hint: {h}"));
        }
        if let Some(w) = db.where_() {
            out.push_str(&format!("\n  where: {w}"));
        }
        out.push_str(&format!("\n  sqlstate: {}", db.code().code()));
        return out;
    }
    let mut out = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

/// The SQLSTATE of a server error, if it is one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|d| d.code().code())
}

/// A lock not granted within `lock_timeout`, a deadlock or a serialization failure: the
/// work can be rolled back and tried again. The one test every retry loop uses.
pub fn is_lock_conflict(e: &tokio_postgres::Error) -> bool {
    matches!(sqlstate(e), Some("55P03" | "40P01" | "40001"))
}

/// The pause before retry `attempt` (1 = the first retry) after a lock conflict: `first`
/// doubled per attempt up to `cap`, plus up to half again at random, so that sessions
/// waiting on the same lock do not retry in lockstep. The one backoff every retry loop uses.
pub fn retry_pause(first: Duration, cap: Duration, attempt: u32) -> Duration {
    use rand::Rng;
    let base = first
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(cap);
    let jitter_ms = u64::try_from(base.as_millis() / 2).unwrap_or(u64::MAX);
    base + Duration::from_millis(rand::thread_rng().gen_range(0..=jitter_ms))
}

/// Quotes an identifier for SQL text: the one place identifiers are quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a possibly schema-qualified name given as (schema, name).
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Round-trip time of a trivial query.
pub async fn ping(client: &Client) -> Result<Duration, Error> {
    let t = Instant::now();
    client.simple_query("SELECT 1").await.map_err(Error::db)?;
    Ok(t.elapsed())
}

/// Advisory-lock keys, one per kind of exclusive work. Values are arbitrary but fixed.
pub mod locks {
    /// `opsctl migrate`.
    pub const MIGRATE: i64 = 0x6f70_7363_746c_0001;
    /// Maintenance jobs of a database: backup, vacuum, reindex, partitions, archive.
    pub const MAINTENANCE: i64 = 0x6f70_7363_746c_0002;
    /// The active scheduler of a database.
    pub const SCHEDULER: i64 = 0x6f70_7363_746c_0003;
}

/// The sessions holding an advisory lock (a bigint key is classid = high half, objid =
/// low half, objsubid 1), with what pg_stat_activity says about them.
const SQL_LOCK_HOLDER: &str = "SELECT a.pid, coalesce(a.application_name, ''), \
     coalesce(a.usename::text, ''), host(a.client_addr), a.backend_start \
     FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
     AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
     AND l.classid = (($1::bigint >> 32) & 4294967295)::oid \
     AND l.objid = ($1::bigint & 4294967295)::oid \
     ORDER BY a.backend_start LIMIT 1";

/// The running operation of an opsctl process, from the operations log.
const SQL_HOLDER_OPERATION: &str = "SELECT o.command_line, o.host, o.os_user, o.started_at \
     FROM opsctl.operations o WHERE o.outcome = 'running' AND o.pid = $1 \
     ORDER BY o.started_at DESC LIMIT 1";

const SQL_HAS_OPERATIONS: &str = "SELECT CASE WHEN to_regclass('opsctl.operations') IS NULL \
     THEN false ELSE has_table_privilege('opsctl.operations', 'SELECT') END";

const SQL_SET_LABEL: &str = "SELECT pg_catalog.set_config('application_name', $1, false)";

/// The application_name an opsctl session holding a lock shows in pg_stat_activity:
/// `opsctl[<pid>] <command>` (at most 63 bytes), so a waiter can name the holder.
pub fn session_label(command: &str) -> String {
    let mut label = format!("opsctl[{}] {command}", std::process::id());
    while label.len() > 63 {
        label.pop();
    }
    label
}

/// The operating-system pid and command in a [`session_label`].
fn parse_label(app: &str) -> Option<(i32, &str)> {
    let rest = app.strip_prefix("opsctl[")?;
    let (pid, command) = rest.split_once(']')?;
    Some((pid.parse().ok()?, command.trim()))
}

/// Who holds an advisory lock, said so an operator can find it: the opsctl command with
/// its pid, host, user and start (from the operations log), or the database session
/// (role, application, client, backend pid) when it is not an opsctl operation.
pub async fn lock_holder(client: &Client, key: i64) -> Option<String> {
    let row = match client.query_opt(SQL_LOCK_HOLDER, &[&key]).await {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!("cannot read pg_locks: {}", describe(&e));
            return None;
        }
    };
    let backend: i32 = row.get(0);
    let app: String = row.get(1);
    let role: String = row.get(2);
    let client_addr: Option<String> = row.get(3);
    let backend_start: Option<chrono::DateTime<chrono::Utc>> = row.get(4);
    if let Some((pid, command)) = parse_label(&app) {
        // Only when the log exists: a failed query would abort a surrounding transaction.
        let logged = matches!(
            client
                .query_one(SQL_HAS_OPERATIONS, &[])
                .await
                .map(|r| r.get::<_, bool>(0)),
            Ok(true)
        );
        let op = if logged {
            client
                .query_opt(SQL_HOLDER_OPERATION, &[&pid])
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        return Some(match op {
            Some(o) => {
                let line: String = o.get(0);
                // The program as people type it, not the path it was started from.
                let line = match line.split_once(' ') {
                    Some((prog, rest)) if prog.ends_with("/opsctl") => format!("opsctl {rest}"),
                    _ => line,
                };
                let host: Option<String> = o.get(1);
                let user: Option<String> = o.get(2);
                let since: chrono::DateTime<chrono::Utc> = o.get(3);
                format!(
                    "`{line}` (pid {pid} on {}, run by {}, since {})",
                    host.as_deref().unwrap_or("an unknown host"),
                    user.as_deref().unwrap_or("an unknown user"),
                    crate::text::ts(&since)
                )
            }
            None => format!(
                "`opsctl {command}` (pid {pid}, from {}, connected since {})",
                client_addr.as_deref().unwrap_or("a local socket"),
                backend_start.as_ref().map_or("?".into(), crate::text::ts)
            ),
        });
    }
    Some(format!(
        "a session of role {role} (application {}, from {}, connected since {}, server pid \
         {backend}; if it is stuck, `SELECT pg_terminate_backend({backend})` ends it)",
        if app.is_empty() {
            "unnamed".to_string()
        } else {
            format!("{app:?}")
        },
        client_addr.as_deref().unwrap_or("a local socket"),
        backend_start.as_ref().map_or("?".into(), crate::text::ts)
    ))
}

/// Polls `pg_try_advisory_lock` (session level) until it is granted or `wait` passes.
/// Polling, not blocking, so a waiter holds no snapshot that a concurrent
/// `CREATE INDEX CONCURRENTLY` would wait on. Returns how long it waited. Once granted,
/// the session is labelled with [`session_label`] so that others waiting can name it.
pub async fn acquire_advisory_lock(
    client: &Client,
    key: i64,
    wait: Duration,
    what: &str,
) -> Result<Duration, Error> {
    let start = Instant::now();
    let mut announced = false;
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(Error::db)?
            .get(0);
        if got {
            let argv: Vec<String> = std::env::args().collect();
            let label = session_label(&crate::oplog::command_name(&argv));
            if let Err(e) = client.execute(SQL_SET_LABEL, &[&label]).await {
                tracing::debug!("cannot label the session: {}", describe(&e));
            }
            return Ok(start.elapsed());
        }
        if start.elapsed() >= wait {
            let holder = lock_holder(client, key)
                .await
                .unwrap_or_else(|| "a session that has just ended".to_string());
            return Err(Error::Busy(format!(
                "another {what} is running and holds the lock: {holder}; waited {}s. Wait for \
                 it to finish or raise --lock-wait",
                wait.as_secs()
            )));
        }
        if !announced {
            let holder = lock_holder(client, key)
                .await
                .unwrap_or_else(|| "another session".to_string());
            tracing::info!("waiting for another {what} to finish: {holder}");
            crate::logging::info(format_args!(
                "waiting for another {what} to finish: {holder}…"
            ));
            announced = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One non-blocking attempt at a session advisory lock.
pub async fn try_advisory_lock(client: &Client, key: i64) -> Result<bool, Error> {
    Ok(client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(Error::db)?
        .get(0))
}

/// Releases a session advisory lock taken by [`acquire_advisory_lock`].
pub async fn release_advisory_lock(client: &Client, key: i64) -> Result<(), Error> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .map_err(Error::db)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_key_modes_follow_libpq() {
        let user = 1000;
        // Owned by the current user: 0600 or less.
        assert_eq!(key_mode_refusal(true, user, user, 0o100600), None);
        assert_eq!(key_mode_refusal(true, user, user, 0o100400), None);
        assert!(key_mode_refusal(true, user, user, 0o100640).is_some());
        assert!(key_mode_refusal(true, user, user, 0o100644).is_some());
        // Owned by root, used by another user: 0640 or less.
        assert_eq!(key_mode_refusal(true, 0, user, 0o100640), None);
        assert!(key_mode_refusal(true, 0, user, 0o100644).is_some());
        assert!(key_mode_refusal(true, 0, user, 0o100660).is_some());
        // Root itself follows the owner rule.
        assert!(key_mode_refusal(true, 0, 0, 0o100640).is_some());
        assert!(key_mode_refusal(false, user, user, 0o40700).is_some());
    }

    #[test]
    fn labels() {
        let l = session_label("vacuum");
        assert_eq!(parse_label(&l), Some((std::process::id() as i32, "vacuum")));
        assert!(session_label(&"x".repeat(100)).len() <= 63);
        assert_eq!(parse_label("psql"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("trades"), "\"trades\"");
        assert_eq!(quote_ident("My \"Table\""), "\"My \"\"Table\"\"\"");
        assert_eq!(quote_qualified("a b", "c"), "\"a b\".\"c\"");
    }
}
