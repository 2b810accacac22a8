//! Connection checks from one read of `pg_stat_activity`: saturation, idle in transaction,
//! long-running queries, sessions waiting on locks. Shared by `health` and `report pool`.

use serde::Serialize;

use super::health::human_duration;
use super::{shorten, Check, Metric, Privileges, State};
use crate::policy::ReportPolicy;

/// Every session of the cluster (all databases), with opsctl's own marked.
const SQL_SESSIONS: &str = "\
SELECT a.pid, a.usename::text, coalesce(a.application_name, ''), host(a.client_addr), a.state, \
       coalesce(a.backend_type, ''), \
       extract(epoch FROM now() - a.xact_start)::float8, \
       extract(epoch FROM now() - a.query_start)::float8, \
       extract(epoch FROM now() - a.state_change)::float8, \
       a.wait_event_type, left(a.query, 2000), \
       CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) ELSE '{}'::int[] END, \
       s.ssl, a.datname::text, a.pid = pg_backend_pid() \
FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s ON s.pid = a.pid \
ORDER BY a.pid";

const SQL_LIMITS: &str = "SELECT current_setting('max_connections')::int, \
     current_setting('superuser_reserved_connections')::int, current_database()::text";

/// One row of `pg_stat_activity`.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub pid: i32,
    pub user: Option<String>,
    pub application: String,
    pub client: Option<String>,
    /// NULL when the role may not see this session's details.
    pub state: Option<String>,
    pub backend_type: String,
    pub xact_seconds: Option<f64>,
    pub query_seconds: Option<f64>,
    pub state_seconds: Option<f64>,
    pub wait_event_type: Option<String>,
    pub query: Option<String>,
    pub blocked_by: Vec<i32>,
    pub ssl: Option<bool>,
    pub database: Option<String>,
    #[serde(skip)]
    pub own: bool,
}

impl Session {
    /// A client backend; a session hidden from this role (backend_type NULL) counts as
    /// one when it is attached to a database, since background processes mostly are not.
    pub fn is_client(&self) -> bool {
        self.backend_type == "client backend"
            || (self.backend_type.is_empty() && self.database.is_some())
    }
    pub fn idle_in_transaction(&self) -> bool {
        self.state
            .as_deref()
            .is_some_and(|s| s.starts_with("idle in transaction"))
    }
    pub fn active(&self) -> bool {
        self.state.as_deref() == Some("active")
    }
    pub fn waiting_on_lock(&self) -> bool {
        self.wait_event_type.as_deref() == Some("Lock")
    }
}

/// Sessions and connection limits, read once.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub max_connections: i32,
    pub reserved: i32,
    /// The database connected to: session-level checks look at its sessions only.
    pub database: String,
    pub sessions: Vec<Session>,
}

impl Activity {
    /// Client sessions of the whole cluster (they share max_connections).
    pub fn clients(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().filter(|s| s.is_client())
    }
    /// Client sessions of the connected database, opsctl's own excluded.
    pub fn here(&self) -> impl Iterator<Item = &Session> {
        self.clients()
            .filter(|s| !s.own && s.database.as_deref() == Some(self.database.as_str()))
    }
    /// Client sessions of this database whose state this role cannot see.
    pub fn hidden(&self) -> usize {
        self.here().filter(|s| s.state.is_none()).count()
    }
}

/// Two queries, however many sessions.
pub async fn load(client: &tokio_postgres::Client) -> Result<Activity, tokio_postgres::Error> {
    let lim = client.query_one(SQL_LIMITS, &[]).await?;
    let rows = client.query(SQL_SESSIONS, &[]).await?;
    let sessions = rows
        .iter()
        .map(|r| Session {
            pid: r.get(0),
            user: r.get(1),
            application: r.get(2),
            client: r.get(3),
            state: r.get(4),
            backend_type: r.get(5),
            xact_seconds: r.get(6),
            query_seconds: r.get(7),
            state_seconds: r.get(8),
            wait_event_type: r.get(9),
            query: r.get(10),
            blocked_by: r.get::<_, Option<Vec<i32>>>(11).unwrap_or_default(),
            ssl: r.get(12),
            database: r.get(13),
            own: r.get(14),
        })
        .collect();
    Ok(Activity {
        max_connections: lim.get(0),
        reserved: lim.get(1),
        database: lim.get(2),
        sessions,
    })
}

pub const IDS: &[&str] = &[
    "connections",
    "idle_in_transaction",
    "long_running_queries",
    "blocked_sessions",
];

fn hidden_check(id: &str, a: &Activity) -> Check {
    Check::new(
        id,
        State::Unknown,
        format!(
            "cannot see the state of {} other sessions",
            a.hidden()
        ),
        "grant pg_read_all_stats (or pg_monitor) to this role: other roles' session state is hidden",
    )
}

fn who(s: &Session) -> String {
    let mut w = format!("pid {}", s.pid);
    if let Some(u) = &s.user {
        w.push_str(&format!(" {u}"));
    }
    if !s.application.is_empty() {
        w.push_str(&format!(" app {}", s.application));
    }
    if let Some(d) = &s.database {
        w.push_str(&format!(" db {d}"));
    }
    w
}

/// Connection saturation: client sessions against max_connections minus reserved slots.
pub fn connections(a: &Activity, t: &ReportPolicy) -> Check {
    let used = a.clients().count() as f64;
    let avail = (a.max_connections - a.reserved).max(1) as f64;
    let pct = used / avail * 100.0;
    let state = State::judge_high(pct, t.connections_warn_percent, t.connections_crit_percent);
    Check::new(
        "connections",
        state,
        format!(
            "{} of {} usable connections ({pct:.0}%; max_connections {} minus {} reserved)",
            used as i64, avail as i64, a.max_connections, a.reserved
        ),
        "too many sessions: look for connection leaks or put PgBouncer in front (opsctl report pool)",
    )
    .threshold(format!(
        "{}% / {}%",
        t.connections_warn_percent, t.connections_crit_percent
    ))
    .metric(Metric::new(
        "connections",
        "Client connections to the cluster.",
        used,
    ))
    .metric(Metric::new(
        "connections_usable",
        "max_connections minus superuser_reserved_connections.",
        avail,
    ))
    .metric(
        Metric::new(
            "connections_used_ratio",
            "Client connections over usable connections.",
            used / avail,
        )
        .thresholds(
            t.connections_warn_percent / 100.0,
            t.connections_crit_percent / 100.0,
        ),
    )
}

/// Sessions idle in a transaction: they hold locks and stop vacuum.
pub fn idle_in_transaction(a: &Activity, t: &ReportPolicy, p: Privileges) -> Check {
    if !p.sees_all_stats() && a.hidden() > 0 {
        return hidden_check("idle_in_transaction", a);
    }
    let idle: Vec<&Session> = a.here().filter(|s| s.idle_in_transaction()).collect();
    let oldest = idle
        .iter()
        .max_by(|x, y| x.state_seconds.partial_cmp(&y.state_seconds).unwrap());
    let age = oldest.and_then(|s| s.state_seconds).unwrap_or(0.0);
    let state = State::judge_high(
        age,
        t.idle_in_transaction_warn_seconds,
        t.idle_in_transaction_crit_seconds,
    );
    let value = match oldest {
        None => "no session idle in transaction".to_string(),
        Some(s) => format!(
            "{} idle in transaction, oldest {} ({})",
            idle.len(),
            human_duration(age),
            who(s)
        ),
    };
    Check::new(
        "idle_in_transaction",
        state,
        value,
        "a session left a transaction open: it holds locks and blocks vacuum; fix the application or pg_terminate_backend(pid)",
    )
    .threshold(format!(
        "{}s / {}s",
        t.idle_in_transaction_warn_seconds, t.idle_in_transaction_crit_seconds
    ))
    .metric(Metric::new(
        "idle_in_transaction_sessions",
        "Sessions idle in a transaction.",
        idle.len() as f64,
    ))
    .metric(
        Metric::new(
            "idle_in_transaction_oldest_seconds",
            "Age of the oldest idle-in-transaction session's state.",
            age,
        )
        .thresholds(
            t.idle_in_transaction_warn_seconds,
            t.idle_in_transaction_crit_seconds,
        ),
    )
}

/// Active queries running longer than the threshold.
pub fn long_running(a: &Activity, t: &ReportPolicy, p: Privileges) -> Check {
    if !p.sees_all_stats() && a.hidden() > 0 {
        return hidden_check("long_running_queries", a);
    }
    let active: Vec<&Session> = a.clients().filter(|s| s.active() && !s.own).collect();
    let longest = active
        .iter()
        .max_by(|x, y| x.query_seconds.partial_cmp(&y.query_seconds).unwrap());
    let secs = longest.and_then(|s| s.query_seconds).unwrap_or(0.0);
    let over = active
        .iter()
        .filter(|s| s.query_seconds.unwrap_or(0.0) >= t.long_query_warn_seconds)
        .count();
    let state = State::judge_high(secs, t.long_query_warn_seconds, t.long_query_crit_seconds);
    let value = match longest {
        Some(s) if over > 0 => format!(
            "{over} queries over {}s, longest {} ({}): {}",
            t.long_query_warn_seconds,
            human_duration(secs),
            who(s),
            shorten(s.query.as_deref().unwrap_or(""), 80)
        ),
        Some(_) => format!(
            "no query over {}s (longest {:.1}s)",
            t.long_query_warn_seconds, secs
        ),
        None => "no active queries".to_string(),
    };
    Check::new(
        "long_running_queries",
        state,
        value,
        "see opsctl report pool; cancel with pg_cancel_backend(pid) if it must stop",
    )
    .threshold(format!(
        "{}s / {}s",
        t.long_query_warn_seconds, t.long_query_crit_seconds
    ))
    .metric(Metric::new(
        "long_running_queries",
        "Active queries running longer than the warning threshold.",
        over as f64,
    ))
    .metric(
        Metric::new(
            "longest_query_seconds",
            "Run time of the longest active query.",
            secs,
        )
        .thresholds(t.long_query_warn_seconds, t.long_query_crit_seconds),
    )
}

/// Sessions waiting on a lock, and who blocks them.
pub fn blocked(a: &Activity, t: &ReportPolicy, p: Privileges) -> Check {
    if !p.sees_all_stats() && a.hidden() > 0 {
        return hidden_check("blocked_sessions", a);
    }
    let waiting: Vec<&Session> = a.here().filter(|s| s.waiting_on_lock()).collect();
    let longest = waiting
        .iter()
        .max_by(|x, y| x.state_seconds.partial_cmp(&y.state_seconds).unwrap());
    let secs = longest.and_then(|s| s.state_seconds).unwrap_or(0.0);
    let state = State::judge_high(secs, t.lock_wait_warn_seconds, t.lock_wait_crit_seconds);
    let value = match longest {
        None => "no session waits on a lock".to_string(),
        Some(s) => format!(
            "{} waiting on locks, longest {} ({} blocked by {})",
            waiting.len(),
            human_duration(secs),
            who(s),
            s.blocked_by
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Check::new(
        "blocked_sessions",
        state,
        value,
        "find the blocker with opsctl report pool; end it with pg_terminate_backend(pid) if it must go",
    )
    .threshold(format!(
        "{}s / {}s",
        t.lock_wait_warn_seconds, t.lock_wait_crit_seconds
    ))
    .metric(Metric::new(
        "blocked_sessions",
        "Sessions waiting on a lock.",
        waiting.len() as f64,
    ))
    .metric(
        Metric::new(
            "lock_wait_longest_seconds",
            "Longest time a session has been waiting on a lock.",
            secs,
        )
        .thresholds(t.lock_wait_warn_seconds, t.lock_wait_crit_seconds),
    )
}

/// Share of TCP client connections that use TLS (Unix-socket sessions need none).
pub fn tls_share(a: &Activity, p: Privileges) -> Check {
    let tcp: Vec<&Session> = a.clients().filter(|s| s.client.is_some()).collect();
    let hidden = a.clients().filter(|s| s.ssl.is_none()).count();
    if !p.sees_all_stats() && hidden > 0 && tcp.is_empty() {
        return hidden_check("tls_connections", a);
    }
    let tls = tcp.iter().filter(|s| s.ssl == Some(true)).count();
    let share = if tcp.is_empty() {
        1.0
    } else {
        tls as f64 / tcp.len() as f64
    };
    let state = if tls < tcp.len() {
        State::Warning
    } else {
        State::Ok
    };
    Check::new(
        "tls_connections",
        state,
        format!(
            "{tls} of {} TCP client connections use TLS ({:.0}%)",
            tcp.len(),
            share * 100.0
        ),
        "some clients connect without TLS: require hostssl in pg_hba.conf",
    )
    .threshold("100%")
    .metric(Metric::new(
        "connections_tls_ratio",
        "Share of TCP client connections using TLS.",
        share,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(pid: i32, state: &str, secs: f64) -> Session {
        Session {
            pid,
            user: Some("app".into()),
            application: "svc".into(),
            client: Some("127.0.0.1".into()),
            state: Some(state.into()),
            backend_type: "client backend".into(),
            xact_seconds: Some(secs),
            query_seconds: Some(secs),
            state_seconds: Some(secs),
            wait_event_type: None,
            query: Some("SELECT 1".into()),
            blocked_by: vec![],
            ssl: Some(true),
            database: Some("db".into()),
            own: false,
        }
    }

    #[test]
    fn judges_saturation_and_idle() {
        let t = ReportPolicy::default();
        let mut a = Activity {
            max_connections: 13,
            reserved: 3,
            database: "db".into(),
            sessions: (0..9).map(|i| session(i, "idle", 1.0)).collect(),
        };
        assert_eq!(connections(&a, &t).state, State::Warning);
        a.sessions.push(session(99, "idle in transaction", 400.0));
        assert_eq!(connections(&a, &t).state, State::Critical);
        let p = Privileges {
            superuser: true,
            read_all_stats: true,
        };
        assert_eq!(idle_in_transaction(&a, &t, p).state, State::Critical);
        a.sessions[9].ssl = Some(false);
        assert_eq!(tls_share(&a, p).state, State::Warning);
        a.sessions[0].state = None;
        assert_eq!(
            idle_in_transaction(&a, &t, Privileges::default()).state,
            State::Unknown
        );
    }
}
