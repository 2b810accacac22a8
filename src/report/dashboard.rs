//! The data behind the dashboard pages of `opsctl serve` (and their `/api/` JSON): each
//! page's struct is gathered from the modules that already answer the same question on
//! the command line (health checks, `backup list` and its retention plan, `partition
//! list`, `report size`, the activity snapshot, `audit report`, `schedule history`). The
//! few figures nothing else reads yet (uptime, the size snapshots as a series, the
//! archive journal, the export records) are read here, each with one query.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::backup::repo::{self, Entry};
use crate::db::{self, ConnSettings};
use crate::error::Error;
use crate::partition::{self, Listing, PartitionState};
use crate::policy::Policy;
use crate::report::connections;
use crate::schedule::{self, history::JobRun};

/// The windows the audit page offers: (name in `?window=`, days).
pub const AUDIT_WINDOWS: [(&str, i64); 3] = [("24h", 1), ("7d", 7), ("30d", 30)];

/// Days of backups the backups page shows.
pub const BACKUP_DAYS: i64 = 90;

const SQL_UPTIME: &str = "SELECT pg_postmaster_start_time(), \
     extract(epoch FROM now() - pg_postmaster_start_time())::float8";

const SQL_HAS: &str = "SELECT to_regclass($1) IS NOT NULL";

const SQL_SNAPSHOT_SERIES: &str = "SELECT taken_at, database_bytes FROM opsctl.size_snapshots \
     WHERE database_name = current_database() AND taken_at > now() - interval '400 days' \
     ORDER BY taken_at";

const SQL_ARCHIVE_RUNS: &str = "SELECT id, table_schema, table_name, cutoff::text, state, \
     moved_partitions, moved_rows, moved_bytes, batches, started_at, finished_at \
     FROM opsctl.archive_journal ORDER BY started_at DESC, id DESC LIMIT 20";

const SQL_EXPORTS: &str = "SELECT table_schema, table_name, range_from, \
     dropped_at IS NOT NULL AND restored_at IS NULL, rows, bytes \
     FROM opsctl.archive_exports ORDER BY range_from, id";

/// Backups of one database as the retention plan takes them: (id, started, verified).
type PruneInput = Vec<(String, DateTime<Utc>, bool)>;

/// Export records of one table by month: (dropped, rows, bytes).
type ExportedMonths = BTreeMap<String, (bool, i64, i64)>;

async fn connect(settings: &ConnSettings, policy: &Policy) -> Result<db::Connection, Error> {
    let conn = db::connect(settings).await?;
    super::limit_session(&conn, policy.reports.statement_timeout_ms.max(5_000)).await;
    Ok(conn)
}

async fn has_table(client: &tokio_postgres::Client, name: &str) -> Result<bool, Error> {
    Ok(client
        .query_one(SQL_HAS, &[&name])
        .await
        .map_err(Error::db)?
        .get(0))
}

// ----------------------------------------------------------------------------- overview

/// What the overview adds to the health report.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub server_started_at: Option<DateTime<Utc>>,
    pub uptime_seconds: Option<f64>,
}

pub async fn overview(settings: &ConnSettings, policy: &Policy) -> Result<Overview, Error> {
    let conn = connect(settings, policy).await?;
    let r = conn.query_one(SQL_UPTIME, &[]).await.map_err(Error::db)?;
    Ok(Overview {
        server_started_at: r.get(0),
        uptime_seconds: r.get(1),
    })
}

// ------------------------------------------------------------------------------ backups

#[derive(Debug, Clone, Serialize)]
pub struct Backups {
    pub now: DateTime<Utc>,
    pub days: i64,
    pub retention: String,
    pub repositories: Vec<RepoBackups>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepoBackups {
    pub name: String,
    pub location: String,
    /// Why the repository could not be listed.
    pub error: Option<String>,
    /// Backups started within the last [`BACKUP_DAYS`], oldest first.
    pub backups: Vec<Entry>,
    /// Backups of any age in the repository.
    pub total: usize,
    /// What the next `backup prune` would delete: (database, id, why).
    pub next_prune: Vec<(String, String, String)>,
    /// Base backups (point-in-time recovery), oldest first, with the window each opens.
    pub base_backups: Vec<crate::pitr::catalog::Listed>,
}

/// Every backup of every repository the policy configures (the same listing as `backup
/// list`), with the retention plan of `backup prune`. Reads files only: no connection.
pub fn backups(policy: &Policy, now: DateTime<Utc>) -> Backups {
    let r = &policy.backup.retention;
    let mut out = Backups {
        now,
        days: BACKUP_DAYS,
        retention: format!(
            "keep the newest {}, daily {}, weekly {}, monthly {}, and the newest verified",
            r.keep_last, r.daily, r.weekly, r.monthly
        ),
        repositories: Vec::new(),
    };
    let repos = match crate::storage::from_policy(policy) {
        Ok(r) => r,
        Err(e) => {
            out.repositories.push(RepoBackups {
                name: "policy".into(),
                location: String::new(),
                error: Some(e.to_string()),
                backups: Vec::new(),
                total: 0,
                next_prune: Vec::new(),
                base_backups: Vec::new(),
            });
            return out;
        }
    };
    for repo in repos {
        let listed = crate::backup::store::list(&repo);
        // A repository's own `[repositories.retention]`, else the policy's.
        let r = repo.retention.as_ref().unwrap_or(r);
        let mut rb = RepoBackups {
            name: repo.name.clone(),
            location: repo.display(),
            error: None,
            backups: Vec::new(),
            total: 0,
            next_prune: Vec::new(),
            base_backups: Vec::new(),
        };
        match crate::pitr::catalog::listed(&repo) {
            Ok(b) => rb.base_backups = b,
            Err(e) => rb.error = Some(format!("cannot list the base backups: {e}")),
        }
        match listed {
            Err(e) => rb.error = Some(e.to_string()),
            Ok(entries) => {
                rb.total = entries.len();
                let mut by_db: BTreeMap<&str, PruneInput> = BTreeMap::new();
                for e in &entries {
                    by_db.entry(&e.summary.database).or_default().push((
                        e.summary.id.clone(),
                        e.summary.started_at,
                        e.status.is_verified(),
                    ));
                }
                for (db, input) in by_db {
                    for d in repo::prune_plan(&input, r, now) {
                        if !d.keep {
                            rb.next_prune.push((
                                db.to_string(),
                                d.id.clone(),
                                d.reasons.join("; "),
                            ));
                        }
                    }
                }
                let since = now - Duration::days(BACKUP_DAYS);
                rb.backups = entries
                    .into_iter()
                    .filter(|e| e.summary.started_at >= since)
                    .collect();
            }
        }
        out.repositories.push(rb);
    }
    out
}

// --------------------------------------------------------------------------- partitions

#[derive(Debug, Clone, Serialize)]
pub struct Partitions {
    pub tables: Vec<PartitionedTable>,
    /// The newest archive runs from `opsctl.archive_journal` (none before migration V20).
    pub archive_runs: Vec<ArchiveRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionedTable {
    pub table: String,
    pub error: Option<String>,
    pub listing: Option<Listing>,
    /// One cell per month, oldest first.
    pub months: Vec<Month>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Month {
    /// `YYYY-MM`.
    pub month: String,
    /// live, archived, exported (archived and written to an export file), dropped
    /// (exported, then removed from the database), detached.
    pub state: &'static str,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveRun {
    pub id: i64,
    pub table: String,
    pub cutoff: String,
    pub state: String,
    pub moved_partitions: i32,
    pub moved_rows: i64,
    pub moved_bytes: i64,
    pub batches: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn partitions(settings: &ConnSettings, policy: &Policy) -> Result<Partitions, Error> {
    let conn = connect(settings, policy).await?;
    let specs = partition::tables_from_policy(&policy.partitions, None)?;
    // (schema, table) → month → (dropped, rows, bytes)
    let mut exports: BTreeMap<(String, String), ExportedMonths> = BTreeMap::new();
    if has_table(&conn, "opsctl.archive_exports").await? {
        for r in conn.query(SQL_EXPORTS, &[]).await.map_err(Error::db)? {
            let from: chrono::NaiveDateTime = r.get(2);
            exports.entry((r.get(0), r.get(1))).or_default().insert(
                from.format("%Y-%m").to_string(),
                (r.get(3), r.get(4), r.get(5)),
            );
        }
    }
    let mut tables = Vec::new();
    for spec in &specs {
        let mut t = PartitionedTable {
            table: spec.qualified(),
            error: None,
            listing: None,
            months: Vec::new(),
        };
        let listing = match partition::inspect(&conn, spec).await {
            Ok(table) => partition::list(&conn, &table).await,
            Err(e) => Err(e),
        };
        match listing {
            Err(e) => t.error = Some(e.to_string()),
            Ok(l) => {
                let ex = exports
                    .get(&(spec.schema.clone(), spec.table.clone()))
                    .cloned()
                    .unwrap_or_default();
                let mut months: BTreeMap<String, Month> = BTreeMap::new();
                for lp in &l.partitions {
                    let p = &lp.partition;
                    let Some(from) = p.from else { continue };
                    let key = from.format("%Y-%m").to_string();
                    let state = match lp.state {
                        PartitionState::Live => "live",
                        PartitionState::Archived if ex.contains_key(&key) => "exported",
                        PartitionState::Archived => "archived",
                        PartitionState::Detached => "detached",
                        PartitionState::Default => continue,
                    };
                    months.insert(
                        key.clone(),
                        Month {
                            month: key,
                            state,
                            rows: lp.exact_rows.or(p.estimated_rows),
                            bytes: Some(p.bytes),
                        },
                    );
                }
                for (key, (dropped, rows, bytes)) in ex {
                    if dropped && !months.contains_key(&key) {
                        months.insert(
                            key.clone(),
                            Month {
                                month: key,
                                state: "dropped",
                                rows: Some(rows),
                                bytes: Some(bytes),
                            },
                        );
                    }
                }
                t.months = months.into_values().collect();
                t.listing = Some(l);
            }
        }
        tables.push(t);
    }
    let mut archive_runs = Vec::new();
    if has_table(&conn, "opsctl.archive_journal").await? {
        for r in conn.query(SQL_ARCHIVE_RUNS, &[]).await.map_err(Error::db)? {
            archive_runs.push(ArchiveRun {
                id: r.get(0),
                table: format!("{}.{}", r.get::<_, String>(1), r.get::<_, String>(2)),
                cutoff: r.get(3),
                state: r.get(4),
                moved_partitions: r.get(5),
                moved_rows: r.get(6),
                moved_bytes: r.get(7),
                batches: r.get(8),
                started_at: r.get(9),
                finished_at: r.get(10),
            });
        }
    }
    Ok(Partitions {
        tables,
        archive_runs,
    })
}

// --------------------------------------------------------------------------------- size

#[derive(Debug, Clone, Serialize)]
pub struct Size {
    #[serde(flatten)]
    pub report: super::size::SizeReport,
    /// The stored snapshots (`report size --snapshot`), oldest first.
    pub series: Vec<(DateTime<Utc>, i64)>,
}

pub async fn size(settings: &ConnSettings, policy: &Policy) -> Result<Size, Error> {
    let report = super::size::run(settings, policy, 20, false).await?;
    let conn = connect(settings, policy).await?;
    let mut series = Vec::new();
    if has_table(&conn, "opsctl.size_snapshots").await? {
        for r in conn
            .query(SQL_SNAPSHOT_SERIES, &[])
            .await
            .map_err(Error::db)?
        {
            series.push((r.get(0), r.get(1)));
        }
    }
    Ok(Size { report, series })
}

// ----------------------------------------------------------------------------- activity

#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub max_connections: i32,
    pub database: String,
    pub sessions: Vec<connections::Session>,
    /// Sessions of other roles this role cannot see the details of.
    pub hidden: usize,
    /// (what, key, count): by state, application, user and client.
    pub groups: Vec<(&'static str, String, usize)>,
}

pub async fn activity(settings: &ConnSettings, policy: &Policy) -> Result<Activity, Error> {
    let conn = connect(settings, policy).await?;
    let a = connections::load(&conn).await.map_err(Error::db)?;
    let mut groups: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
    for s in a.clients() {
        let none = || "-".to_string();
        *groups
            .entry(("state", s.state.clone().unwrap_or_else(none)))
            .or_default() += 1;
        *groups
            .entry(("application", s.application.clone()))
            .or_default() += 1;
        *groups
            .entry(("user", s.user.clone().unwrap_or_else(none)))
            .or_default() += 1;
        *groups
            .entry(("client", s.client.clone().unwrap_or_else(|| "local".into())))
            .or_default() += 1;
    }
    Ok(Activity {
        max_connections: a.max_connections,
        database: a.database.clone(),
        hidden: a.hidden(),
        sessions: a.clients().cloned().collect(),
        groups: groups.into_iter().map(|((w, k), n)| (w, k, n)).collect(),
    })
}

// -------------------------------------------------------------------------------- audit

/// Commands whose runs the audit page lists as sensitive.
pub const SENSITIVE: &[&str] = &[
    "restore",
    "backup prune",
    "backup rekey",
    "backup keygen",
    "archive",
    "archive restore",
    "migrate",
    "audit seal",
];

#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub window: &'static str,
    pub report: Option<crate::audit::Report>,
    /// Why there is no report (no audit schema, ...).
    pub error: Option<String>,
}

pub async fn audit(
    settings: &ConnSettings,
    policy: &Policy,
    window: usize,
) -> Result<Audit, Error> {
    let conn = connect(settings, policy).await?;
    let (name, days) = AUDIT_WINDOWS[window.min(AUDIT_WINDOWS.len() - 1)];
    let to = Utc::now();
    let f = crate::audit::ReportFilter {
        from: to - Duration::days(days),
        to: to + Duration::seconds(1),
        table: None,
        actor: None,
    };
    Ok(match crate::audit::report(&conn, &f).await {
        Ok(r) => Audit {
            window: name,
            report: Some(r),
            error: None,
        },
        Err(e) => Audit {
            window: name,
            report: None,
            error: Some(e.to_string()),
        },
    })
}

// --------------------------------------------------------------------------------- jobs

#[derive(Debug, Clone, Serialize)]
pub struct Jobs {
    pub timezone: String,
    pub jobs: Vec<Job>,
    /// The last runs of the last 7 days, newest first (`schedule history`).
    pub runs: Vec<JobRun>,
    /// Why the run history is missing.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub job: String,
    pub schedule: String,
    pub next: Vec<DateTime<Utc>>,
    pub last: Option<JobRun>,
}

pub async fn jobs(settings: &ConnSettings, policy: &Policy) -> Result<Jobs, Error> {
    let plan = schedule::Plan::from_policy(policy)?;
    let conn = connect(settings, policy).await?;
    let now = Utc::now();
    let (last, runs, error) = match schedule::history::last_runs(&conn).await {
        Ok(last) => {
            let runs = schedule::history::runs(&conn, None, now - Duration::days(7), 50)
                .await?
                .unwrap_or_default();
            (last, runs, None)
        }
        Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
    };
    let jobs = plan
        .jobs
        .iter()
        .map(|j| Job {
            job: j.kind.name().to_string(),
            schedule: j.expr.source().to_string(),
            next: plan.upcoming(j, now, 3),
            last: last.iter().find(|r| r.job == j.kind.name()).cloned(),
        })
        .collect();
    Ok(Jobs {
        timezone: policy.scheduler.timezone.clone(),
        jobs,
        runs,
        error,
    })
}
