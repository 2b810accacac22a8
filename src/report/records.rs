//! Checks over what other opsctl capabilities record in the database: pending or failed
//! migrations (`opsctl.schema_history`), the audit chain (`audit.seals`), failed
//! scheduled jobs (`opsctl.job_runs`). Each table may not exist yet: then the check is
//! OK "not configured". Rows are read as JSON and interpreted tolerantly (column names
//! vary between versions), with one catalog probe plus one query per existing table.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use super::{unknown, Check, Ctx, Metric, State};
use crate::db::quote_qualified;

pub const IDS: &[&str] = &["audit_chain", "migrations", "scheduled_jobs"];

/// Bookkeeping tables opsctl knows how to read, as (schema, table).
pub const KNOWN_TABLES: &[(&str, &str)] = &[
    ("opsctl", "schema_history"),
    ("opsctl", "backups"),
    ("opsctl", "drills"),
    ("opsctl", "restore_drills"),
    ("opsctl", "drill_runs"),
    ("opsctl", "job_runs"),
    ("audit", "seals"),
    ("audit", "verifications"),
    ("audit", "logged_actions"),
];

/// Existence, readability and columns of each known table, in one catalog query.
const SQL_PROBE: &str = "\
SELECT w.schema, w.name, n.oid IS NOT NULL, c.oid IS NOT NULL, \
       coalesce(has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'), false), \
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a \
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}') \
FROM unnest($1::text[], $2::text[]) AS w(schema, name) \
LEFT JOIN pg_namespace n ON n.nspname = w.schema \
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name \
                     AND c.relkind IN ('r', 'p', 'v', 'm')";

/// Columns tried, in order, to find "the newest rows" of a table.
const TIME_COLUMNS: &[&str] = &[
    "finished_at",
    "ended_at",
    "end_time",
    "end",
    "completed_at",
    "sealed_at",
    "verified_at",
    "applied_at",
    "installed_on",
    "started_at",
    "start_time",
    "created_at",
    "at",
    "ts",
    "time",
];

/// What the catalog says about one bookkeeping table.
#[derive(Debug, Clone, Default)]
pub struct TableInfo {
    pub schema_exists: bool,
    pub exists: bool,
    pub readable: bool,
    pub columns: Vec<String>,
}

/// The catalog probe of every known table.
#[derive(Debug, Clone, Default)]
pub struct Probe(pub BTreeMap<String, TableInfo>);

impl Probe {
    pub async fn load(client: &tokio_postgres::Client) -> Result<Probe, tokio_postgres::Error> {
        let schemas: Vec<&str> = KNOWN_TABLES.iter().map(|t| t.0).collect();
        let names: Vec<&str> = KNOWN_TABLES.iter().map(|t| t.1).collect();
        let rows = client.query(SQL_PROBE, &[&schemas, &names]).await?;
        let mut m = BTreeMap::new();
        for r in rows {
            let key = format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1));
            m.insert(
                key,
                TableInfo {
                    schema_exists: r.get(2),
                    exists: r.get(3),
                    readable: r.get(4),
                    columns: r.get(5),
                },
            );
        }
        Ok(Probe(m))
    }

    pub fn get(&self, key: &str) -> TableInfo {
        self.0.get(key).cloned().unwrap_or_default()
    }
}

/// The newest rows (at most `limit`) of a bookkeeping table as JSON objects.
pub async fn read_rows(
    client: &tokio_postgres::Client,
    key: &str,
    info: &TableInfo,
    limit: i64,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let (schema, name) = key.split_once('.').unwrap_or(("opsctl", key));
    let order = TIME_COLUMNS
        .iter()
        .find(|c| info.columns.iter().any(|x| x == *c))
        .map(|c| format!(" ORDER BY x.{} DESC NULLS LAST", crate::db::quote_ident(c)))
        .unwrap_or_default();
    let sql = format!(
        "SELECT to_jsonb(x) FROM {} x{order} LIMIT $1",
        quote_qualified(schema, name)
    );
    let rows = client.query(&sql, &[&limit]).await?;
    Ok(rows.iter().map(|r| r.get::<_, Value>(0)).collect())
}

/// First present key among `keys`.
pub fn field<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| v.get(*k).filter(|x| !x.is_null()))
}

/// A time in any of the shapes opsctl and PostgreSQL write (RFC 3339, `to_jsonb` of
/// timestamp/timestamptz, epoch seconds).
pub fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => DateTime::from_timestamp(n.as_f64()? as i64, 0),
        Value::String(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&Utc));
            }
            for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
                if let Ok(t) = DateTime::parse_from_str(s, f) {
                    return Some(t.with_timezone(&Utc));
                }
            }
            for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
                    return Some(t.and_utc());
                }
            }
            None
        }
        _ => None,
    }
}

pub fn time_of(v: &Value, keys: &[&str]) -> Option<DateTime<Utc>> {
    keys.iter().find_map(|k| v.get(*k).and_then(parse_time))
}

/// A success flag: booleans, or words like ok/success/passed/verified vs failed/error.
pub fn outcome(v: &Value) -> Option<bool> {
    fn word(s: &str) -> Option<bool> {
        let s = s.to_ascii_lowercase();
        if [
            "ok",
            "success",
            "succeeded",
            "passed",
            "pass",
            "verified",
            "intact",
            "true",
            "done",
            "applied",
            "matched",
            "completed",
            "complete",
        ]
        .contains(&s.as_str())
        {
            Some(true)
        } else if [
            "failed", "failure", "fail", "error", "mismatch", "broken", "false", "tampered",
            "corrupt", "aborted",
        ]
        .contains(&s.as_str())
        {
            Some(false)
        } else {
            None
        }
    }
    for k in [
        "success",
        "ok",
        "passed",
        "succeeded",
        "intact",
        "valid",
        "result",
        "status",
        "outcome",
        "state",
    ] {
        match v.get(k) {
            Some(Value::Bool(b)) => return Some(*b),
            Some(Value::String(s)) => {
                if let Some(b) = word(s) {
                    return Some(b);
                }
            }
            _ => {}
        }
    }
    None
}

fn text_of(v: &Value, keys: &[&str]) -> Option<String> {
    field(v, keys).map(|x| match x {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

pub async fn checks(ctx: &Ctx<'_>, probe: &Probe, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    let mut out = Vec::new();
    if wants("migrations") {
        out.push(migrations(ctx, probe).await);
    }
    if wants("audit_chain") {
        out.push(audit(ctx, probe).await);
    }
    if wants("scheduled_jobs") {
        out.push(jobs(ctx, probe).await);
    }
    out
}

fn unreadable(id: &str, key: &str) -> Check {
    Check::new(
        id,
        State::Unknown,
        format!("{key} exists but this role cannot read it"),
        format!("grant USAGE on its schema and SELECT on {key} to this role (or use the monitoring role)"),
    )
}

/// Migration file versions in a directory (`V{n}__name.sql`).
pub fn file_versions(dir: &std::path::Path) -> std::io::Result<Vec<i64>> {
    let mut v: Vec<i64> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            if !n.ends_with(".sql") {
                return None;
            }
            n.strip_prefix('V')?.split("__").next()?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    Ok(v)
}

async fn migrations(ctx: &Ctx<'_>, probe: &Probe) -> Check {
    const ID: &str = "migrations";
    let key = "opsctl.schema_history";
    let info = probe.get(key);
    if !info.exists {
        return Check::not_configured(
            ID,
            "no opsctl.schema_history: migrations are not managed by opsctl here",
        );
    }
    if !info.readable {
        return unreadable(ID, key);
    }
    let rows = match read_rows(ctx.client, key, &info, 100_000).await {
        Ok(r) => r,
        Err(e) => return unknown(ID, &e, "cannot read opsctl.schema_history"),
    };
    let version = |r: &Value| -> Option<i64> {
        match field(r, &["version", "installed_rank"])? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim_start_matches('V').parse().ok(),
            _ => None,
        }
    };
    let mut failed: Vec<i64> = Vec::new();
    let mut applied: Vec<i64> = Vec::new();
    for r in &rows {
        let Some(v) = version(r) else { continue };
        match outcome(r) {
            Some(false) => failed.push(v),
            _ => applied.push(v),
        }
    }
    failed.retain(|v| !applied.contains(v));
    failed.sort_unstable();
    failed.dedup();
    // The migrations this binary carries (or [reports].migrations_dir when set).
    let pending: Option<Vec<i64>> =
        match crate::migrate::files::load(ctx.t().migrations_dir.as_deref()) {
            Ok(files) => Some(
                files
                    .iter()
                    .map(|m| m.version as i64)
                    .filter(|v| !applied.contains(v))
                    .collect(),
            ),
            Err(e) => {
                return Check::new(
                    ID,
                    State::Unknown,
                    format!("cannot read the migration files: {e}"),
                    "point [reports].migrations_dir at the migrations/ directory, or unset it to use the embedded files",
                )
            }
        };
    let applied_max = applied.iter().max().copied().unwrap_or(0);
    let npending = pending.as_ref().map_or(0, |p| p.len());
    let (state, value) = if !failed.is_empty() {
        (
            State::Critical,
            format!(
                "migration {} failed; later runs are blocked",
                failed
                    .iter()
                    .map(|v| format!("V{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else if npending > 0 {
        (
            State::Warning,
            format!(
                "{npending} pending: {} (applied up to V{applied_max})",
                pending
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|v| format!("V{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        (
            State::Ok,
            format!(
                "{} applied, up to V{applied_max}{}",
                applied.len(),
                ", none pending"
            ),
        )
    };
    Check::new(
        ID,
        state,
        value,
        if failed.is_empty() {
            "run opsctl migrate up"
        } else {
            "look at the failed version, then opsctl migrate resolve V --applied|--rolled-back"
        },
    )
    .threshold("any pending WARNING, any failed CRITICAL")
    .metric(Metric::new(
        "migrations_pending",
        "Migration files not yet applied.",
        npending as f64,
    ))
    .metric(Metric::new(
        "migrations_failed",
        "Migrations recorded as failed.",
        failed.len() as f64,
    ))
}

async fn audit(ctx: &Ctx<'_>, probe: &Probe) -> Check {
    const ID: &str = "audit_chain";
    let seals = probe.get("audit.seals");
    if !seals.schema_exists {
        return Check::not_configured(ID, "no audit schema");
    }
    if !seals.exists {
        return Check::not_configured(ID, "the audit schema has no seals table yet");
    }
    if !seals.readable {
        return unreadable(ID, "audit.seals");
    }
    let t = ctx.t();
    let rows = match read_rows(ctx.client, "audit.seals", &seals, 1).await {
        Ok(r) => r,
        Err(e) => return unknown(ID, &e, "cannot read audit.seals"),
    };
    // A recorded verification result, if the audit module keeps one.
    let ver = probe.get("audit.verifications");
    let last_verification = if ver.exists && ver.readable {
        read_rows(ctx.client, "audit.verifications", &ver, 1)
            .await
            .ok()
            .and_then(|r| r.into_iter().next())
    } else {
        None
    };
    // Unsealed rows: rows of audit.logged_actions after the last sealed id, when both say so.
    let actions = probe.get("audit.logged_actions");
    let last = rows.first();
    let through = last.and_then(|s| {
        field(
            s,
            &[
                "last_id",
                "through_id",
                "upto_id",
                "up_to_id",
                "max_id",
                "last_action_id",
                "to_id",
                "end_id",
            ],
        )
        .and_then(|v| v.as_i64())
    });
    let mut unsealed: Option<i64> = None;
    if actions.readable && actions.columns.iter().any(|c| c == "id") {
        let sql = "SELECT count(*) FROM audit.logged_actions WHERE id > $1";
        if let Ok(r) = ctx.client.query_one(sql, &[&through.unwrap_or(0)]).await {
            if through.is_some() {
                unsealed = Some(r.get(0));
            }
        }
    }
    let mut c = Check::new(
        ID,
        State::Ok,
        String::new(),
        "run opsctl audit verify to find the first changed row; seal with opsctl audit seal",
    )
    .threshold(format!(
        "broken CRITICAL, newest seal older than {}h WARNING",
        t.audit_seal_max_age_hours
    ));
    let broken = last_verification
        .as_ref()
        .and_then(outcome)
        .map(|ok| !ok)
        .unwrap_or(false)
        || last.and_then(|s| s.get("verified").and_then(|v| v.as_bool())) == Some(false)
        || last.and_then(|s| s.get("intact").and_then(|v| v.as_bool())) == Some(false)
        || last.and_then(outcome) == Some(false);
    let sealed_at =
        last.and_then(|s| time_of(s, &["sealed_at", "created_at", "at", "ts", "time", "end"]));
    let age = sealed_at.map(|t| (Utc::now() - t).num_seconds() as f64);
    let mut parts = Vec::new();
    if broken {
        c.state = State::Critical;
        parts.push("the audit chain is BROKEN".to_string());
    }
    match (last, age) {
        (None, _) => {
            parts.push("no seal yet".into());
            if unsealed.unwrap_or(0) > 0 {
                c.state = c.state.max_sev(State::Warning);
            }
        }
        (Some(_), Some(a)) => {
            parts.push(format!(
                "newest seal {} ago",
                super::health::human_duration(a)
            ));
            if a > t.audit_seal_max_age_hours * 3600.0 {
                c.state = c.state.max_sev(State::Warning);
            }
            c = c.metric(Metric::new(
                "audit_seal_age_seconds",
                "Age of the newest audit seal.",
                a,
            ));
        }
        (Some(_), None) => parts.push("newest seal has no time".into()),
    }
    match unsealed {
        Some(n) => {
            parts.push(format!("{n} rows not sealed yet"));
            c = c.metric(Metric::new(
                "audit_unsealed_rows",
                "Audit rows not yet sealed.",
                n as f64,
            ));
        }
        None => parts.push("unsealed rows not measurable".into()),
    }
    c.metric(Metric::new(
        "audit_chain_intact",
        "1 unless the audit chain is recorded as broken.",
        if broken { 0.0 } else { 1.0 },
    ))
    .value_set(parts.join("; "))
}

async fn jobs(ctx: &Ctx<'_>, probe: &Probe) -> Check {
    const ID: &str = "scheduled_jobs";
    let key = "opsctl.job_runs";
    let info = probe.get(key);
    if !info.exists {
        return Check::not_configured(ID, "no opsctl.job_runs: the scheduler has not run here");
    }
    if !info.readable {
        return unreadable(ID, key);
    }
    let rows = match read_rows(ctx.client, key, &info, 2000).await {
        Ok(r) => r,
        Err(e) => return unknown(ID, &e, "cannot read opsctl.job_runs"),
    };
    // Newest first: the first row seen per job is its last run.
    let mut last: BTreeMap<String, (Option<bool>, Option<String>)> = BTreeMap::new();
    for r in &rows {
        let job =
            text_of(r, &["job", "job_name", "name", "kind", "task"]).unwrap_or_else(|| "?".into());
        last.entry(job)
            .or_insert_with(|| (outcome(r), text_of(r, &["error", "message", "detail"])));
    }
    let failed: Vec<String> = last
        .iter()
        .filter(|(_, (ok, _))| *ok == Some(false))
        .map(|(j, (_, err))| match err {
            Some(e) => format!("{j} ({})", super::shorten(e, 60)),
            None => j.clone(),
        })
        .collect();
    Check::new(
        ID,
        if failed.is_empty() {
            State::Ok
        } else {
            State::Warning
        },
        if failed.is_empty() {
            format!("{} jobs, last runs all succeeded", last.len())
        } else {
            format!("last run failed: {}", failed.join(", "))
        },
        "see opsctl schedule status / the job's log, fix, and run it by hand once",
    )
    .threshold("a failed last run")
    .metric(Metric::new(
        "scheduled_jobs_failed",
        "Scheduled jobs whose last run failed.",
        failed.len() as f64,
    ))
}

impl Check {
    /// Sets the value (builder style).
    pub fn value_set(mut self, v: impl Into<String>) -> Self {
        self.value = v.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_fields() {
        let v: Value =
            serde_json::json!({"status": "FAILED", "finished_at": "2026-11-25T10:00:00.5+00:00"});
        assert_eq!(outcome(&v), Some(false));
        assert!(time_of(&v, &["finished_at"]).is_some());
        let v: Value =
            serde_json::json!({"success": true, "applied_at": "2026-11-25 10:00:00.123456"});
        assert_eq!(outcome(&v), Some(true));
        assert!(time_of(&v, &["applied_at"]).is_some());
    }
}
