//! The one check model every report produces (id, value, threshold, state, hint), and
//! its renderers: text, JSON, Prometheus exposition format and Nagios plugin output.

pub mod backups;
pub mod connections;
pub mod dashboard;
pub mod health;
pub mod indexes;
pub mod partitions;
pub mod pitr;
pub mod pool;
pub mod records;
pub mod render;
pub mod replication;
pub mod security;
pub mod size;
pub mod statements;
pub mod vacuum;
pub mod wal;

use serde::Serialize;

/// A check's outcome, as monitoring plugins define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    /// Severity for "worst first": CRITICAL > WARNING > UNKNOWN > OK.
    pub fn severity(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Unknown => 1,
            State::Warning => 2,
            State::Critical => 3,
        }
    }

    /// The monitoring-plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Critical => 2,
            State::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }

    /// The worse of two states.
    pub fn max_sev(self, other: State) -> State {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// Judges `value` against warning and critical thresholds (higher is worse).
    pub fn judge_high(value: f64, warn: f64, crit: f64) -> State {
        if value >= crit {
            State::Critical
        } else if value >= warn {
            State::Warning
        } else {
            State::Ok
        }
    }

    /// Judges `value` against thresholds where lower is worse.
    pub fn judge_low(value: f64, warn: f64, crit: f64) -> State {
        if value <= crit {
            State::Critical
        } else if value <= warn {
            State::Warning
        } else {
            State::Ok
        }
    }
}

/// The worst state of a set of checks (OK when empty).
pub fn worst<'a>(checks: impl IntoIterator<Item = &'a Check>) -> State {
    checks
        .into_iter()
        .map(|c| c.state)
        .max_by_key(|s| s.severity())
        .unwrap_or(State::Ok)
}

/// One numeric sample behind a check, for Prometheus and Nagios perfdata.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Metric name without the `opsctl_` prefix, in base units (`_seconds`, `_bytes`, `_ratio`).
    pub name: String,
    pub help: String,
    pub value: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crit: Option<f64>,
}

impl Metric {
    pub fn new(name: &str, help: &str, value: f64) -> Self {
        Metric {
            name: name.to_string(),
            help: help.to_string(),
            value,
            labels: Vec::new(),
            warn: None,
            crit: None,
        }
    }

    pub fn label(mut self, k: &str, v: impl Into<String>) -> Self {
        self.labels.push((k.to_string(), v.into()));
        self
    }

    pub fn thresholds(mut self, warn: f64, crit: f64) -> Self {
        self.warn = Some(warn);
        self.crit = Some(crit);
        self
    }
}

/// One check: a stable id, what was measured, against what, the verdict and a hint.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: String,
    pub state: State,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    pub hint: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// Extra structured facts for `--format json` (e.g. the slowest statements).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl Check {
    pub fn new(id: &str, state: State, value: impl Into<String>, hint: impl Into<String>) -> Self {
        Check {
            id: id.to_string(),
            state,
            value: value.into(),
            threshold: None,
            hint: hint.into(),
            metrics: Vec::new(),
            details: None,
        }
    }

    pub fn threshold(mut self, t: impl Into<String>) -> Self {
        self.threshold = Some(t.into());
        self
    }

    pub fn metric(mut self, m: Metric) -> Self {
        self.metrics.push(m);
        self
    }

    /// A check for something not set up: OK, never a false alarm.
    pub fn not_configured(id: &str, what: &str) -> Self {
        Check::new(id, State::Ok, format!("not configured: {what}"), what)
    }
}

/// Sorts checks worst first, keeping the original order among equals.
pub fn sort_worst_first(checks: &mut [Check]) {
    checks.sort_by_key(|c| std::cmp::Reverse(c.state.severity()));
}

/// Refuses thresholds that cannot mean anything (a warning beyond its critical level,
/// percentages outside 0..=100), naming the `[reports]` keys.
pub fn validate_thresholds(t: &crate::policy::ReportPolicy) -> Result<(), crate::error::Error> {
    let mut bad = Vec::new();
    let higher = [
        (
            "connections_warn_percent",
            t.connections_warn_percent,
            "connections_crit_percent",
            t.connections_crit_percent,
        ),
        (
            "idle_in_transaction_warn_seconds",
            t.idle_in_transaction_warn_seconds,
            "idle_in_transaction_crit_seconds",
            t.idle_in_transaction_crit_seconds,
        ),
        (
            "long_query_warn_seconds",
            t.long_query_warn_seconds,
            "long_query_crit_seconds",
            t.long_query_crit_seconds,
        ),
        (
            "lock_wait_warn_seconds",
            t.lock_wait_warn_seconds,
            "lock_wait_crit_seconds",
            t.lock_wait_crit_seconds,
        ),
        (
            "dead_tuples_warn_percent",
            t.dead_tuples_warn_percent,
            "dead_tuples_crit_percent",
            t.dead_tuples_crit_percent,
        ),
        (
            "xid_age_warn",
            t.xid_age_warn as f64,
            "xid_age_crit",
            t.xid_age_crit as f64,
        ),
        (
            "sequence_warn_percent",
            t.sequence_warn_percent,
            "sequence_crit_percent",
            t.sequence_crit_percent,
        ),
        (
            "replication_lag_warn_seconds",
            t.replication_lag_warn_seconds,
            "replication_lag_crit_seconds",
            t.replication_lag_crit_seconds,
        ),
        (
            "default_rows_warn",
            t.default_rows_warn as f64,
            "default_rows_crit",
            t.default_rows_crit as f64,
        ),
        (
            "slow_query_mean_warn_ms",
            t.slow_query_mean_warn_ms,
            "slow_query_mean_crit_ms",
            t.slow_query_mean_crit_ms,
        ),
    ];
    for (wk, w, ck, c) in higher {
        if w.is_nan() || c.is_nan() || w < 0.0 || w > c {
            bad.push(format!("{wk} ({w}) must be between 0 and {ck} ({c})"));
        }
    }
    let lower = [
        (
            "cache_hit_warn_percent",
            t.cache_hit_warn_percent,
            "cache_hit_crit_percent",
            t.cache_hit_crit_percent,
        ),
        (
            "disk_runway_warn_days",
            t.disk_runway_warn_days,
            "disk_runway_crit_days",
            t.disk_runway_crit_days,
        ),
    ];
    for (wk, w, ck, c) in lower {
        if w.is_nan() || c.is_nan() || c < 0.0 || w < c {
            bad.push(format!(
                "{wk} ({w}) must be at least {ck} ({c}), which must be ≥ 0"
            ));
        }
    }
    for (k, v) in [
        ("connections_warn_percent", t.connections_warn_percent),
        ("connections_crit_percent", t.connections_crit_percent),
        ("cache_hit_warn_percent", t.cache_hit_warn_percent),
        ("dead_tuples_crit_percent", t.dead_tuples_crit_percent),
        ("sequence_crit_percent", t.sequence_crit_percent),
    ] {
        if !(0.0..=100.0).contains(&v) {
            bad.push(format!("{k} ({v}) is a percentage: 0 to 100"));
        }
    }
    if t.slow_query_top < 1 || t.slow_query_top > 100 {
        bad.push(format!(
            "slow_query_top ({}) must be 1 to 100",
            t.slow_query_top
        ));
    }
    if t.statement_timeout_ms < 100 {
        bad.push(format!(
            "statement_timeout_ms ({}) must be at least 100",
            t.statement_timeout_ms
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(crate::error::Error::Config(format!(
            "policy [reports]: {}",
            bad.join("; ")
        )))
    }
}

/// What every check module gets: the connection, the thresholds and what the role may see.
pub struct Ctx<'a> {
    pub client: &'a tokio_postgres::Client,
    pub policy: &'a crate::policy::Policy,
    pub privs: Privileges,
    pub dbname: String,
}

impl Ctx<'_> {
    pub fn t(&self) -> &crate::policy::ReportPolicy {
        &self.policy.reports
    }
}

/// What the connected role is allowed to see.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Privileges {
    pub superuser: bool,
    /// Member of pg_read_all_stats (directly or through pg_monitor).
    pub read_all_stats: bool,
}

impl Privileges {
    /// May see other roles' sessions, queries and statistics.
    pub fn sees_all_stats(&self) -> bool {
        self.superuser || self.read_all_stats
    }
}

const SQL_PRIVILEGES: &str =
    "SELECT r.rolsuper, pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') \
     FROM pg_roles r WHERE r.rolname = current_user";

/// Reads the role's privileges (one query). Unreadable means "sees nothing extra".
pub async fn privileges(client: &tokio_postgres::Client) -> Privileges {
    match client.query_opt(SQL_PRIVILEGES, &[]).await {
        Ok(Some(r)) => Privileges {
            superuser: r.get(0),
            read_all_stats: r.get(1),
        },
        _ => Privileges::default(),
    }
}

/// Sets the report's own short statement_timeout and lock_timeout on a session.
pub async fn limit_session(client: &tokio_postgres::Client, statement_timeout_ms: u64) {
    let sql = format!(
        "SET statement_timeout = {}; SET lock_timeout = '1s'; SET idle_in_transaction_session_timeout = '60s'",
        statement_timeout_ms.max(100)
    );
    let _ = client.batch_execute(&sql).await;
}

/// A check that could not read its data: UNKNOWN with the reason and what is missing.
pub fn unknown(id: &str, e: &tokio_postgres::Error, hint: &str) -> Check {
    let what = crate::db::describe(e)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let hint = match crate::db::sqlstate(e) {
        Some("42501") => format!("permission denied: {hint}"),
        Some("57014") => {
            "the query hit opsctl's statement_timeout ([reports].statement_timeout_ms)".to_string()
        }
        _ => hint.to_string(),
    };
    Check::new(id, State::Unknown, what, hint)
}

/// Shortens query text to one line of at most `n` characters.
pub fn shorten(text: &str, n: usize) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= n {
        one
    } else {
        let mut s: String = one.chars().take(n.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn documented_report_thresholds_are_the_defaults() {
        let p = crate::policy::Policy::parse(
            include_str!("../../policies/opsctl.toml"),
            "policies/opsctl.toml",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&p.reports).unwrap(),
            serde_json::to_value(crate::policy::ReportPolicy::default()).unwrap()
        );
    }
}
