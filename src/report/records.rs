//! Checks over what other opsctl capabilities record in the database: pending or failed
//! migrations (`opsctl.schema_history` and the migration files), the audit chain
//! (`audit.chain_summary()` and the last `opsctl audit verify` in `opsctl.operations`),
//! failed scheduled jobs (`opsctl.job_runs`). A table that does not exist yet makes its
//! check OK "not configured"; one this role cannot read makes it UNKNOWN.

use chrono::{DateTime, Utc};

use super::health::human_duration;
use super::{unknown, Check, Ctx, Metric, State};

pub const IDS: &[&str] = &["audit_chain", "migrations", "scheduled_jobs"];

/// Whether a table exists and this role may read it (USAGE on the schema, SELECT on it).
const SQL_ACCESS: &str = "\
SELECT c.oid IS NOT NULL, \
       coalesce(has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'), false) \
FROM (SELECT $1::text AS schema, $2::text AS name) w \
LEFT JOIN pg_namespace n ON n.nspname = w.schema \
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name";

/// Every recorded migration, in version order.
const SQL_HISTORY: &str =
    "SELECT version, state, error FROM opsctl.schema_history ORDER BY version";

/// The latest run of each job that was not skipped (the scheduler's own view).
const SQL_JOBS_LAST: &str = "\
SELECT DISTINCT ON (job) job, outcome, error, coalesce(finished_at, started_at) \
FROM opsctl.job_runs WHERE outcome <> 'skipped' \
ORDER BY job, started_at DESC, id DESC";

/// The newest finished `opsctl audit verify`.
const SQL_LAST_VERIFY: &str = "\
SELECT outcome, error, coalesce(finished_at, started_at) FROM opsctl.operations \
WHERE command = 'audit verify' AND outcome <> 'running' \
ORDER BY started_at DESC, id DESC LIMIT 1";

/// What this role can do with a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Absent,
    Unreadable,
    Readable,
}

/// Looks a table up in the catalog (never fails for lack of privilege on it).
pub async fn access(
    client: &tokio_postgres::Client,
    schema: &str,
    name: &str,
) -> Result<Access, tokio_postgres::Error> {
    let r = client.query_one(SQL_ACCESS, &[&schema, &name]).await?;
    Ok(match (r.get::<_, bool>(0), r.get::<_, bool>(1)) {
        (false, _) => Access::Absent,
        (true, false) => Access::Unreadable,
        (true, true) => Access::Readable,
    })
}

/// UNKNOWN: the table exists but this role cannot read it.
pub fn unreadable(id: &str, table: &str) -> Check {
    Check::new(
        id,
        State::Unknown,
        format!("{table} exists but this role cannot read it"),
        format!(
            "grant USAGE on its schema and SELECT on {table} to this role (or use opsctl_monitor)"
        ),
    )
}

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    let mut out = Vec::new();
    if wants("migrations") {
        out.push(migrations(ctx).await);
    }
    if wants("audit_chain") {
        out.push(audit(ctx).await);
    }
    if wants("scheduled_jobs") {
        out.push(jobs(ctx).await);
    }
    out
}

fn versions(v: &[i64]) -> String {
    v.iter()
        .map(|v| format!("V{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn migrations(ctx: &Ctx<'_>) -> Check {
    const ID: &str = "migrations";
    match access(ctx.client, "opsctl", "schema_history").await {
        Ok(Access::Absent) => {
            return Check::not_configured(
                ID,
                "no opsctl.schema_history: migrations are not managed by opsctl here",
            )
        }
        Ok(Access::Unreadable) => return unreadable(ID, "opsctl.schema_history"),
        Ok(Access::Readable) => {}
        Err(e) => return unknown(ID, &e, "pg_namespace/pg_class are not readable"),
    }
    let rows = match ctx.client.query(SQL_HISTORY, &[]).await {
        Ok(r) => r,
        Err(e) => return unknown(ID, &e, "cannot read opsctl.schema_history"),
    };
    let mut applied: Vec<i64> = Vec::new();
    let mut failed: Vec<(i64, Option<String>)> = Vec::new();
    let mut running: Vec<i64> = Vec::new();
    for r in &rows {
        let v: i64 = r.get(0);
        match r.get::<_, &str>(1) {
            "success" => applied.push(v),
            "failed" => failed.push((v, r.get(2))),
            _ => running.push(v),
        }
    }
    let recorded: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    // The migrations this binary carries (or [reports].migrations_dir when set).
    let pending: Vec<i64> = match crate::migrate::files::load(ctx.t().migrations_dir.as_deref())
    {
        Ok(files) => files
            .iter()
            .map(|m| m.version as i64)
            .filter(|v| !recorded.contains(v))
            .collect(),
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
    let (state, value) = if !failed.is_empty() {
        let what = failed
            .iter()
            .map(|(v, e)| match e {
                Some(e) => format!("V{v} failed: {}", super::shorten(e, 140)),
                None => format!("V{v} failed"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        (
            State::Critical,
            format!("migration {what}; later runs are blocked"),
        )
    } else if !running.is_empty() {
        (
            State::Warning,
            format!(
                "migration {} still marked running (in progress, or interrupted)",
                versions(&running)
            ),
        )
    } else if !pending.is_empty() {
        (
            State::Warning,
            format!(
                "{} pending: {} (applied up to V{applied_max})",
                pending.len(),
                versions(&pending)
            ),
        )
    } else {
        (
            State::Ok,
            format!(
                "{} applied, up to V{applied_max}, none pending",
                applied.len()
            ),
        )
    };
    Check::new(
        ID,
        state,
        value,
        if failed.is_empty() && running.is_empty() {
            "run opsctl migrate up"
        } else {
            "look at the failed version, then opsctl migrate resolve V --applied|--rolled-back"
        },
    )
    .threshold("any pending WARNING, any failed CRITICAL")
    .metric(Metric::new(
        "migrations_pending",
        "Migration files not yet applied.",
        pending.len() as f64,
    ))
    .metric(Metric::new(
        "migrations_failed",
        "Migrations recorded as failed.",
        failed.len() as f64,
    ))
}

/// The newest finished `audit verify`: (intact, error, when).
type Verification = (bool, Option<String>, DateTime<Utc>);

async fn last_verification(ctx: &Ctx<'_>) -> Result<Option<Verification>, Check> {
    const ID: &str = "audit_chain";
    match access(ctx.client, "opsctl", "operations").await {
        Ok(Access::Absent) => return Ok(None),
        Ok(Access::Unreadable) => return Err(unreadable(ID, "opsctl.operations")),
        Ok(Access::Readable) => {}
        Err(e) => return Err(unknown(ID, &e, "pg_namespace/pg_class are not readable")),
    }
    match ctx.client.query_opt(SQL_LAST_VERIFY, &[]).await {
        Ok(r) => Ok(r.map(|r| (r.get::<_, &str>(0) == "success", r.get(1), r.get(2)))),
        Err(e) => Err(unknown(ID, &e, "cannot read opsctl.operations")),
    }
}

async fn audit(ctx: &Ctx<'_>) -> Check {
    const ID: &str = "audit_chain";
    let chain = match crate::audit::chain_status(ctx.client).await {
        Ok(Some(c)) => c,
        Ok(None) => return Check::not_configured(ID, "no audit schema"),
        Err(e) => {
            return Check::new(
                ID,
                State::Unknown,
                super::shorten(&e.to_string(), 120),
                "grant USAGE on schema audit and EXECUTE on audit.chain_summary() (opsctl_monitor has both)",
            )
        }
    };
    let verification = match last_verification(ctx).await {
        Ok(v) => v,
        Err(c) => return c,
    };
    let t = ctx.t();
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
    let mut parts = Vec::new();
    let broken = matches!(verification, Some((false, _, _)));
    match &verification {
        Some((false, err, at)) => {
            c.state = State::Critical;
            parts.push(format!(
                "audit chain BROKEN at the verify of {}: {}",
                crate::text::ts(at),
                super::shorten(err.as_deref().unwrap_or("no detail recorded"), 160)
            ));
        }
        Some((true, _, at)) => parts.push(format!(
            "last verified intact {} ago",
            human_duration((Utc::now() - *at).num_seconds() as f64)
        )),
        None => parts.push("never verified (opsctl audit verify)".into()),
    }
    match chain.last_sealed_at {
        None => {
            parts.push("no seal yet".into());
            if chain.unsealed_rows > 0 {
                c.state = c.state.max_sev(State::Warning);
            }
        }
        Some(at) => {
            let age = (Utc::now() - at).num_seconds().max(0) as f64;
            parts.push(format!(
                "{}, newest {} ago",
                crate::text::plural(chain.seals, "seal"),
                human_duration(age)
            ));
            if age > t.audit_seal_max_age_hours * 3600.0 {
                c.state = c.state.max_sev(State::Warning);
            }
            c = c.metric(Metric::new(
                "audit_seal_age_seconds",
                "Age of the newest audit seal.",
                age,
            ));
        }
    }
    parts.push(format!("{} rows not sealed yet", chain.unsealed_rows));
    c.value = parts.join("; ");
    c.metric(Metric::new(
        "audit_unsealed_rows",
        "Audit rows not yet sealed.",
        chain.unsealed_rows as f64,
    ))
    .metric(Metric::new(
        "audit_chain_intact",
        "1 unless the last audit verify found the chain broken.",
        if broken { 0.0 } else { 1.0 },
    ))
}

async fn jobs(ctx: &Ctx<'_>) -> Check {
    const ID: &str = "scheduled_jobs";
    match access(ctx.client, "opsctl", "job_runs").await {
        Ok(Access::Absent) => {
            return Check::not_configured(ID, "no opsctl.job_runs: the scheduler has not run here")
        }
        Ok(Access::Unreadable) => return unreadable(ID, "opsctl.job_runs"),
        Ok(Access::Readable) => {}
        Err(e) => return unknown(ID, &e, "pg_namespace/pg_class are not readable"),
    }
    let rows = match ctx.client.query(SQL_JOBS_LAST, &[]).await {
        Ok(r) => r,
        Err(e) => return unknown(ID, &e, "cannot read opsctl.job_runs"),
    };
    let failed: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r.get::<_, &str>(1) == "failure")
        .map(|r| {
            let job: &str = r.get(0);
            let at: DateTime<Utc> = r.get(3);
            let when = crate::text::ts(&at);
            // The error's first line (the job's own message), not the command line.
            let what = match r.get::<_, Option<&str>>(2).and_then(|e| e.lines().next()) {
                Some(e) => format!("{job} at {when}: {}", super::shorten(e, 120)),
                None => format!("{job} at {when}"),
            };
            (job.to_string(), what)
        })
        .collect();
    let hint = match failed.as_slice() {
        [] => "see `opsctl schedule history` for each run's error and output".to_string(),
        [(job, _)] => format!(
            "see `opsctl schedule history --job {job}` for the error and the job's output; \
             fix it, then run it once by hand: `opsctl schedule run --once {job}`"
        ),
        _ => "see `opsctl schedule history --job NAME` for each error and the job's output; \
             fix it, then run the job once by hand: `opsctl schedule run --once NAME`"
            .to_string(),
    };
    Check::new(
        ID,
        if failed.is_empty() {
            State::Ok
        } else {
            State::Warning
        },
        if failed.is_empty() {
            format!("{} jobs, no last run failed", rows.len())
        } else {
            format!(
                "last run failed: {}",
                failed
                    .iter()
                    .map(|f| f.1.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
        hint,
    )
    .threshold("a failed last run")
    .metric(Metric::new(
        "scheduled_jobs_failed",
        "Scheduled jobs whose last run failed.",
        failed.len() as f64,
    ))
}
