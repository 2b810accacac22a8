//! What the scheduler did: the recorded runs of its jobs (`opsctl.job_runs`) for
//! `schedule history`, `schedule list` and the health check, on old and new schemas.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::exec::SQL_HAS_TABLE;
use crate::db::Connection;
use crate::error::Error;

/// The columns every query reads; `$out` is the exit code and output columns, or NULLs
/// on a database without them (before V65).
macro_rules! runs_sql {
    ($out:literal, $tail:literal) => {
        concat!(
            "SELECT id, job, scheduled_for, started_at, finished_at, attempt, outcome, error, ",
            $out,
            ", host, pid, runner FROM opsctl.job_runs ",
            $tail
        )
    };
}

const SQL_RUNS: &str = runs_sql!(
    "exit_code, output",
    "WHERE ($1::text IS NULL OR job = $1) AND started_at >= $2 ORDER BY started_at DESC, id DESC LIMIT $3"
);
const SQL_RUNS_OLD: &str = runs_sql!(
    "NULL::integer, NULL::text",
    "WHERE ($1::text IS NULL OR job = $1) AND started_at >= $2 ORDER BY started_at DESC, id DESC LIMIT $3"
);
const SQL_LAST: &str = runs_sql!(
    "exit_code, output",
    "WHERE id IN (SELECT DISTINCT ON (job) id FROM opsctl.job_runs WHERE outcome <> 'skipped' \
     ORDER BY job, started_at DESC, id DESC)"
);
const SQL_LAST_OLD: &str = runs_sql!(
    "NULL::integer, NULL::text",
    "WHERE id IN (SELECT DISTINCT ON (job) id FROM opsctl.job_runs WHERE outcome <> 'skipped' \
     ORDER BY job, started_at DESC, id DESC)"
);

/// One recorded run (or skipped fire) of a scheduled job.
#[derive(Debug, Clone, Serialize)]
pub struct JobRun {
    pub id: i64,
    pub job: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds from start to end (None while running).
    pub duration_seconds: Option<f64>,
    pub attempt: i32,
    /// running, success, failure, cancelled or skipped.
    pub outcome: String,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// The exit code of the job's opsctl command (None: not started, killed, or recorded
    /// by an older opsctl).
    pub exit_code: Option<i32>,
    /// The last lines of the job's output.
    pub output: Option<String>,
    pub host: Option<String>,
    pub pid: Option<i32>,
    /// 'daemon' (schedule run) or 'once' (schedule run --once).
    pub runner: String,
}

impl JobRun {
    fn from_row(r: &tokio_postgres::Row) -> JobRun {
        let started_at: DateTime<Utc> = r.get(3);
        let finished_at: Option<DateTime<Utc>> = r.get(4);
        JobRun {
            id: r.get(0),
            job: r.get(1),
            scheduled_for: r.get(2),
            started_at,
            finished_at,
            duration_seconds: finished_at
                .map(|f| (f - started_at).num_milliseconds().max(0) as f64 / 1000.0),
            attempt: r.get(5),
            outcome: r.get(6),
            error: r.get(7),
            exit_code: r.get(8),
            output: r.get(9),
            host: r.get(10),
            pid: r.get(11),
            runner: r.get(12),
        }
    }

    /// The last `n` lines of the output.
    pub fn output_tail(&self, n: usize) -> Vec<&str> {
        let lines: Vec<&str> = self.output.as_deref().unwrap_or("").lines().collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

/// (the table exists, it has the exit_code/output columns).
async fn schema(conn: &Connection) -> Result<(bool, bool), Error> {
    let r = conn
        .query_one(SQL_HAS_TABLE, &[])
        .await
        .map_err(Error::db_ctx("cannot read opsctl.job_runs"))?;
    Ok((r.get(0), r.get(1)))
}

/// The runs since `since`, newest first, of one job or all; None when the database has
/// no opsctl.job_runs (the scheduler never ran there, or `migrate up` was not run).
pub async fn runs(
    conn: &Connection,
    job: Option<&str>,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Option<Vec<JobRun>>, Error> {
    let (present, new) = schema(conn).await?;
    if !present {
        return Ok(None);
    }
    let sql = if new { SQL_RUNS } else { SQL_RUNS_OLD };
    let rows = conn
        .query(sql, &[&job, &since, &limit])
        .await
        .map_err(Error::db_ctx("cannot read opsctl.job_runs"))?;
    Ok(Some(rows.iter().map(JobRun::from_row).collect()))
}

/// The last run (not skipped fire) of each job.
pub async fn last_runs(conn: &Connection) -> Result<Vec<JobRun>, Error> {
    let (present, new) = schema(conn).await?;
    if !present {
        return Ok(Vec::new());
    }
    let sql = if new { SQL_LAST } else { SQL_LAST_OLD };
    let rows = conn
        .query(sql, &[])
        .await
        .map_err(Error::db_ctx("cannot read opsctl.job_runs"))?;
    Ok(rows.iter().map(JobRun::from_row).collect())
}
