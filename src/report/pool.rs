//! `opsctl report pool`: connections by state, application, user and client; used versus
//! usable slots; idle-in-transaction sessions; long-running queries; lock waits and their
//! blockers; the TLS share. One read of `pg_stat_activity`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::connections::{self, Activity, Session};
use super::health::human_duration;
use super::{shorten, Check, Metric, State};
use crate::db::{self, ConnSettings};
use crate::error::Error;
use crate::policy::Policy;

pub const CHECK_IDS: &[&str] = &[
    "connections",
    "idle_in_transaction",
    "long_running_queries",
    "blocked_sessions",
    "tls_connections",
];

#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub key: String,
    pub count: i64,
}

/// A session as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Brief {
    pub pid: i32,
    pub user: Option<String>,
    pub application: String,
    pub client: Option<String>,
    pub database: Option<String>,
    pub state: Option<String>,
    pub seconds: f64,
    pub query: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolReport {
    pub state: State,
    pub database: String,
    pub max_connections: i32,
    pub reserved_connections: i32,
    pub usable_connections: i32,
    pub used_connections: i64,
    pub by_state: Vec<Count>,
    pub by_application: Vec<Count>,
    pub by_user: Vec<Count>,
    pub by_client: Vec<Count>,
    pub by_database: Vec<Count>,
    pub idle_in_transaction: Vec<Brief>,
    pub long_running: Vec<Brief>,
    pub waiting: Vec<Brief>,
    pub blockers: Vec<Brief>,
    pub tcp_connections: i64,
    pub tls_connections: i64,
    pub checks: Vec<Check>,
}

fn brief(s: &Session, seconds: Option<f64>, chars: usize) -> Brief {
    Brief {
        pid: s.pid,
        user: s.user.clone(),
        application: s.application.clone(),
        client: s.client.clone(),
        database: s.database.clone(),
        state: s.state.clone(),
        seconds: seconds.unwrap_or(0.0),
        query: shorten(s.query.as_deref().unwrap_or(""), chars),
        blocked_by: s.blocked_by.clone(),
    }
}

fn counts(it: impl Iterator<Item = String>) -> Vec<Count> {
    let mut m: BTreeMap<String, i64> = BTreeMap::new();
    for k in it {
        *m.entry(k).or_default() += 1;
    }
    let mut v: Vec<Count> = m
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
    v
}

/// Builds the report from one reading of the activity (pure: testable without a server).
pub fn build(
    a: &Activity,
    policy: &Policy,
    privs: super::Privileges,
    database: String,
) -> PoolReport {
    let t = &policy.reports;
    let clients: Vec<&Session> = a.here().collect();
    let by_state = counts(
        a.clients()
            .map(|s| s.state.clone().unwrap_or_else(|| "(hidden)".into())),
    );
    let by_application = counts(a.clients().map(|s| {
        if s.application.is_empty() {
            "(none)".to_string()
        } else {
            s.application.clone()
        }
    }));
    let by_user = counts(
        a.clients()
            .map(|s| s.user.clone().unwrap_or_else(|| "?".into())),
    );
    let by_database = counts(
        a.clients()
            .map(|s| s.database.clone().unwrap_or_else(|| "?".into())),
    );
    let by_client = counts(
        a.clients()
            .map(|s| s.client.clone().unwrap_or_else(|| "local socket".into())),
    );
    let mut idle: Vec<Brief> = clients
        .iter()
        .filter(|s| s.idle_in_transaction())
        .map(|s| brief(s, s.state_seconds, 120))
        .collect();
    idle.sort_by(|x, y| y.seconds.total_cmp(&x.seconds));
    let mut long: Vec<Brief> = clients
        .iter()
        .filter(|s| s.active() && s.query_seconds.unwrap_or(0.0) >= t.long_query_warn_seconds)
        .map(|s| brief(s, s.query_seconds, 120))
        .collect();
    long.sort_by(|x, y| y.seconds.total_cmp(&x.seconds));
    let waiting: Vec<Brief> = clients
        .iter()
        .filter(|s| s.waiting_on_lock())
        .map(|s| brief(s, s.state_seconds, 120))
        .collect();
    let blocker_pids: Vec<i32> = waiting.iter().flat_map(|w| w.blocked_by.clone()).collect();
    let blockers: Vec<Brief> = a
        .sessions
        .iter()
        .filter(|s| blocker_pids.contains(&s.pid))
        .map(|s| brief(s, s.xact_seconds.or(s.state_seconds), 120))
        .collect();
    let tcp = a.clients().filter(|s| s.client.is_some()).count() as i64;
    let tls = a
        .clients()
        .filter(|s| s.client.is_some() && s.ssl == Some(true))
        .count() as i64;
    let mut conn_check = connections::connections(a, t);
    for (label, list) in [
        ("state", &by_state),
        ("application", &by_application),
        ("user", &by_user),
    ] {
        for c in list.iter() {
            conn_check = conn_check.metric(
                Metric::new(
                    &format!("pool_connections_by_{label}"),
                    &format!("Client connections by {label}."),
                    c.count as f64,
                )
                .label(label, c.key.clone()),
            );
        }
    }
    let checks = vec![
        conn_check,
        connections::idle_in_transaction(a, t, privs),
        connections::long_running(a, t, privs),
        connections::blocked(a, t, privs),
        connections::tls_share(a, privs),
    ];
    PoolReport {
        state: super::worst(&checks),
        database,
        max_connections: a.max_connections,
        reserved_connections: a.reserved,
        usable_connections: a.max_connections - a.reserved,
        used_connections: a.clients().count() as i64,
        by_state,
        by_application,
        by_user,
        by_client,
        by_database,
        idle_in_transaction: idle,
        long_running: long,
        waiting,
        blockers,
        tcp_connections: tcp,
        tls_connections: tls,
        checks,
    }
}

/// Connects, reads the activity once, builds the report.
pub async fn run(settings: &ConnSettings, policy: &Policy) -> Result<PoolReport, Error> {
    let conn = db::connect(settings).await?;
    super::limit_session(&conn, policy.reports.statement_timeout_ms).await;
    let privs = super::privileges(&conn).await;
    let a = connections::load(&conn)
        .await
        .map_err(Error::db_ctx("cannot read pg_stat_activity"))?;
    let db = a.database.clone();
    Ok(build(&a, policy, privs, db))
}

fn counts_line(v: &[Count]) -> String {
    v.iter()
        .map(|c| format!("{} {}", c.key, c.count))
        .collect::<Vec<_>>()
        .join(", ")
}

fn brief_line(b: &Brief) -> String {
    let mut s = format!("pid {}", b.pid);
    if let Some(u) = &b.user {
        let _ = write!(s, " {u}");
    }
    if !b.application.is_empty() {
        let _ = write!(s, " [{}]", b.application);
    }
    if let Some(c) = &b.client {
        let _ = write!(s, " from {c}");
    }
    let _ = write!(s, " {}", human_duration(b.seconds));
    if !b.blocked_by.is_empty() {
        let _ = write!(
            s,
            " blocked by {}",
            b.blocked_by
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !b.query.is_empty() {
        let _ = write!(s, ": {}", b.query);
    }
    s
}

/// The sections under the check lines of the text form.
pub fn text_details(r: &PoolReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nConnections: {} of {} usable (max_connections {}, {} reserved for superusers)",
        r.used_connections, r.usable_connections, r.max_connections, r.reserved_connections
    );
    let _ = writeln!(o, "  by state:       {}", counts_line(&r.by_state));
    let _ = writeln!(o, "  by application: {}", counts_line(&r.by_application));
    let _ = writeln!(o, "  by user:        {}", counts_line(&r.by_user));
    let _ = writeln!(o, "  by client:      {}", counts_line(&r.by_client));
    let _ = writeln!(o, "  by database:    {}", counts_line(&r.by_database));
    let _ = writeln!(o, "Sessions of {} (opsctl's own excluded):", r.database);
    for (title, list) in [
        ("  Idle in transaction", &r.idle_in_transaction),
        ("  Long-running queries", &r.long_running),
        ("  Waiting on locks", &r.waiting),
        ("  Blocking others", &r.blockers),
    ] {
        let _ = writeln!(o, "{title}: {}", list.len());
        for b in list.iter().take(20) {
            let _ = writeln!(o, "    {}", brief_line(b));
        }
    }
    let share = if r.tcp_connections == 0 {
        100.0
    } else {
        r.tls_connections as f64 * 100.0 / r.tcp_connections as f64
    };
    let _ = writeln!(
        o,
        "TLS: {} of {} TCP client connections ({share:.0}%)",
        r.tls_connections, r.tcp_connections
    );
    o
}
