//! `opsctl health`: the on-call entry point. Connects, measures, and turns what it sees
//! into checks; the checks themselves live by theme in the sibling modules. A constant
//! number of queries whatever the number of tables, each under a short statement_timeout.

use std::time::Instant;

use serde::Serialize;

use super::{
    backups, connections, indexes, partitions, records, replication, statements, vacuum, wal,
    Check, Ctx, Metric, State,
};
use crate::db::{self, ConnSettings, SslMode};
use crate::error::Error;
use crate::policy::Policy;

/// Every check id `health` knows, in report order. Stable: monitoring keys on them.
pub const CHECK_IDS: &[&str] = &[
    "connectivity",
    "tls",
    "server_version",
    "connections",
    "idle_in_transaction",
    "long_running_queries",
    "blocked_sessions",
    "cache_hit_ratio",
    "dead_tuples",
    "xid_wraparound",
    "invalid_indexes",
    "unused_indexes",
    "sequences",
    "replication_lag",
    "replication_slots",
    "partition_runway",
    "default_partition_rows",
    "backup_freshness",
    "repository_freshness",
    "restore_drill",
    "drill_scratch_databases",
    "audit_chain",
    "migrations",
    "scheduled_jobs",
    "slow_queries",
    "wal_archiving",
    "pitr_window",
    "security_settings",
    "row_level_security",
    "server_updates",
];

/// TLS facts of the session, from `pg_stat_ssl`.
#[derive(Debug, Clone, Serialize)]
pub struct TlsInfo {
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub bits: Option<i32>,
    pub sslmode: String,
}

/// What `health` found.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// "healthy" unless the worst state is CRITICAL.
    pub status: String,
    pub state: State,
    /// "connected", or the reason it could not connect.
    pub database: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    pub checks: Vec<Check>,
}

impl HealthReport {
    fn finish(mut self) -> Self {
        self.state = super::worst(&self.checks);
        self.status = if self.state == State::Critical {
            "unhealthy".into()
        } else {
            "healthy".into()
        };
        self
    }
}

/// Which checks to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
}

impl Selection {
    /// Refuses ids that no check has (a typo must not silently select nothing).
    pub fn validate(&self) -> Result<(), Error> {
        for id in self.only.iter().chain(&self.skip) {
            if !CHECK_IDS.contains(&id.as_str()) {
                return Err(Error::Config(format!(
                    "unknown check id {id:?}; known checks: {}",
                    CHECK_IDS.join(", ")
                )));
            }
        }
        Ok(())
    }

    pub fn wants(&self, id: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|o| o == id))
            && !self.skip.iter().any(|s| s == id)
    }
}

const SQL_TLS: &str =
    "SELECT ssl, version, cipher, bits FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
const SQL_SERVER: &str = "SELECT current_setting('server_version'), current_database(), \
     extract(epoch FROM now() - pg_postmaster_start_time())::float8";

/// Whether the node must accept writes: in recovery (a standby) or read-only by default
/// (`default_transaction_read_only`), the way libpq's `target_session_attrs=read-write` sees it.
const SQL_WRITABLE: &str =
    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'";

/// The answer to "can the application use the database": connect, `SELECT 1`, and, when
/// `require_writable`, neither in recovery nor read-only. `Err` carries a short reason.
/// Performance is not judged here: that is what the health checks are for.
pub async fn usable(
    settings: &ConnSettings,
    require_writable: bool,
    statement_timeout_ms: u64,
) -> Result<(), String> {
    let conn = db::connect(settings).await.map_err(|e| e.to_string())?;
    super::limit_session(&conn, statement_timeout_ms).await;
    db::ping(&conn).await.map_err(|e| e.to_string())?;
    if require_writable {
        let row = conn
            .query_one(SQL_WRITABLE, &[])
            .await
            .map_err(|e| db::describe(&e))?;
        if row.get::<_, bool>(0) {
            return Err("in recovery (a standby), not writable".into());
        }
        if row.get::<_, bool>(1) {
            return Err("read-only (default_transaction_read_only is on)".into());
        }
    }
    Ok(())
}

/// Runs the health checks. Never fails: an unreachable database is a CRITICAL report.
pub async fn run(settings: &ConnSettings, policy: &Policy, sel: &Selection) -> HealthReport {
    let mut report = HealthReport {
        status: String::new(),
        state: State::Ok,
        database: "connected".into(),
        database_name: Some(settings.dbname_or_default()),
        server_version: None,
        tls: None,
        rtt_ms: None,
        checks: Vec::new(),
    };
    let started = Instant::now();
    let conn = match db::connect(settings).await {
        Ok(c) => c,
        Err(e) => {
            let reason = e.to_string();
            report.database = reason.clone();
            report.checks.push(
                Check::new(
                    "connectivity",
                    State::Critical,
                    reason,
                    "the database cannot be used: fix the connection problem above first",
                )
                .metric(Metric::new(
                    "up",
                    "1 when opsctl could connect and run SELECT 1.",
                    0.0,
                )),
            );
            return report.finish();
        }
    };
    let connect_time = started.elapsed();
    // Our own queries never hang the report or block the application.
    super::limit_session(&conn, policy.reports.statement_timeout_ms).await;
    match db::ping(&conn).await {
        Ok(rtt) => {
            report.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
            if sel.wants("connectivity") {
                report.checks.push(
                    Check::new(
                        "connectivity",
                        State::Ok,
                        format!(
                            "connected in {} ms, SELECT 1 round trip {:.2} ms",
                            connect_time.as_millis(),
                            rtt.as_secs_f64() * 1000.0
                        ),
                        "",
                    )
                    .metric(Metric::new(
                        "up",
                        "1 when opsctl could connect and run SELECT 1.",
                        1.0,
                    ))
                    .metric(Metric::new(
                        "rtt_seconds",
                        "Round-trip time of SELECT 1.",
                        rtt.as_secs_f64(),
                    )),
                );
            }
        }
        Err(e) => {
            report.database = e.to_string();
            report.checks.push(Check::new(
                "connectivity",
                State::Critical,
                e.to_string(),
                "connected but SELECT 1 failed",
            ));
            return report.finish();
        }
    }
    let tls = tls_check(&conn, settings).await;
    report.tls = tls.0;
    if sel.wants("tls") {
        report.checks.push(tls.1);
    }
    let server = conn.query_one(SQL_SERVER, &[]).await;
    match server {
        Ok(row) => {
            let version: String = row.get(0);
            let dbname: String = row.get(1);
            let uptime: f64 = row.get(2);
            report.server_version = Some(version.clone());
            report.database_name = Some(dbname);
            if sel.wants("server_version") {
                report.checks.push(
                    Check::new(
                        "server_version",
                        State::Ok,
                        format!("PostgreSQL {version}, up {}", human_duration(uptime)),
                        "",
                    )
                    .metric(Metric::new(
                        "server_uptime_seconds",
                        "Seconds since the postmaster started.",
                        uptime,
                    )),
                );
            }
        }
        Err(e) => {
            if sel.wants("server_version") {
                report.checks.push(Check::new(
                    "server_version",
                    State::Unknown,
                    db::describe(&e),
                    "could not read server_version",
                ));
            }
        }
    }
    let ctx = Ctx {
        client: &conn,
        policy,
        privs: super::privileges(&conn).await,
        dbname: report
            .database_name
            .clone()
            .unwrap_or_else(|| settings.dbname_or_default()),
    };
    report.checks.extend(themed(&ctx, sel).await);
    report.finish()
}

/// Every check after connectivity, TLS and version, theme by theme.
async fn themed(ctx: &Ctx<'_>, sel: &Selection) -> Vec<Check> {
    let wants = |id: &str| sel.wants(id);
    let mut out = Vec::new();
    if connections::IDS.iter().any(|i| wants(i)) {
        match connections::load(ctx.client).await {
            Ok(a) => {
                let t = ctx.t();
                let p = ctx.privs;
                let all = [
                    connections::connections(&a, t),
                    connections::idle_in_transaction(&a, t, p),
                    connections::long_running(&a, t, p),
                    connections::blocked(&a, t, p),
                ];
                out.extend(all.into_iter().filter(|c| wants(&c.id)));
            }
            Err(e) => out.extend(
                connections::IDS
                    .iter()
                    .filter(|i| wants(i))
                    .map(|i| super::unknown(i, &e, "pg_stat_activity is not readable")),
            ),
        }
    }
    out.extend(vacuum::checks(ctx, wants).await);
    out.extend(indexes::checks(ctx, wants).await);
    out.extend(replication::checks(ctx, wants).await);
    out.extend(partitions::checks(ctx, wants).await);
    out.extend(backups::checks(ctx, wants).await);
    out.extend(records::checks(ctx, wants).await);
    out.extend(statements::checks(ctx, wants).await);
    out.extend(wal::checks(ctx, wants).await);
    out.extend(super::pitr::checks(ctx, wants).await);
    out.extend(super::security::checks(ctx, wants).await);
    // Report order: as CHECK_IDS lists them.
    out.sort_by_key(|c| CHECK_IDS.iter().position(|i| *i == c.id));
    out
}

async fn tls_check(conn: &db::Connection, settings: &ConnSettings) -> (Option<TlsInfo>, Check) {
    let row = match conn.query_one(SQL_TLS, &[]).await {
        Ok(r) => r,
        Err(e) => {
            return (
                None,
                Check::new(
                    "tls",
                    State::Unknown,
                    db::describe(&e),
                    "pg_stat_ssl is not readable by this role",
                ),
            )
        }
    };
    let ssl: bool = row.get(0);
    let info = TlsInfo {
        version: row.get(1),
        cipher: row.get(2),
        bits: row.get(3),
        sslmode: if settings.is_unix_socket() {
            "unix-socket".into()
        } else {
            settings.sslmode().to_string()
        },
    };
    let check = if !ssl {
        if settings.is_unix_socket() {
            Check::new("tls", State::Ok, "local Unix socket (no TLS needed)", "")
        } else {
            Check::new(
                "tls",
                State::Warning,
                "connection is NOT encrypted",
                "use sslmode=verify-full with sslrootcert",
            )
        }
    } else {
        let desc = format!(
            "{} {} ({} bits), sslmode={}",
            info.version.as_deref().unwrap_or("?"),
            info.cipher.as_deref().unwrap_or("?"),
            info.bits.unwrap_or(0),
            info.sslmode
        );
        match settings.sslmode() {
            SslMode::Require => Check::new(
                "tls",
                State::Warning,
                desc,
                "the server certificate is not verified: use sslmode=verify-full with sslrootcert",
            ),
            _ => Check::new("tls", State::Ok, desc, ""),
        }
    }
    .metric(Metric::new(
        "tls_enabled",
        "1 when opsctl's own connection uses TLS.",
        if ssl { 1.0 } else { 0.0 },
    ));
    (Some(info), check)
}

/// "3d 4h", "5m 2s": durations as on-call people read them (one helper: crate::text).
pub use crate::text::duration as human_duration;
