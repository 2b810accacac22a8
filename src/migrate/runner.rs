//! The migration runner: the `opsctl.schema_history` table, the session advisory lock on
//! a dedicated connection, applying files (one transaction each, or statement by
//! statement in autocommit for `-- opsctl:no-transaction`), and status, verify,
//! baseline and resolve.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::files::{line_of_position, Migration, Statement};
use crate::db::{self, locks, ConnSettings, Connection};
use crate::error::Error;

const CREATE_HISTORY: &str = include_str!("history.sql");
const HISTORY_EXISTS: &str = "SELECT to_regclass('opsctl.schema_history') IS NOT NULL";
const SELECT_HISTORY: &str = "SELECT version, name, checksum, kind, state, applied_at, \
     execution_ms, applied_by, error FROM opsctl.schema_history ORDER BY version";
const INSERT_HISTORY: &str = "INSERT INTO opsctl.schema_history \
     (version, name, checksum, kind, state, execution_ms) VALUES ($1, $2, $3, $4, $5, $6)";
const FINISH_HISTORY: &str = "UPDATE opsctl.schema_history SET state = $2, execution_ms = $3, \
     error = $4, applied_at = now() WHERE version = $1";
const RESOLVE_APPLIED: &str = "UPDATE opsctl.schema_history SET state = 'success', error = \
     coalesce(error, '') || ' [resolved as applied by ' || current_user || ' at ' || now() || ']' \
     WHERE version = $1";
const RESOLVE_ROLLED_BACK: &str = "DELETE FROM opsctl.schema_history WHERE version = $1";
const CURRENT_DATABASE: &str = "SELECT current_database()";

/// One row of the history table.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub version: u64,
    pub name: String,
    pub checksum: String,
    pub kind: String,
    pub state: String,
    pub applied_at: DateTime<Utc>,
    pub execution_ms: i64,
    pub applied_by: String,
    pub error: Option<String>,
}

/// Where a migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryState {
    /// Applied by opsctl; the file matches.
    Applied,
    /// Recorded by `migrate baseline`; the file matches.
    Baseline,
    /// Not applied yet.
    Pending,
    /// Not applied, and below the highest applied version.
    OutOfOrder,
    /// A no-transaction file that failed or was interrupted: needs `migrate resolve`.
    Failed,
    /// Applied, but the file changed since.
    Changed,
    /// Applied, but its file is gone.
    Missing,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Baseline => "baseline",
            Self::Pending => "pending",
            Self::OutOfOrder => "out-of-order",
            Self::Failed => "failed",
            Self::Changed => "changed",
            Self::Missing => "missing",
        }
    }

    /// True for states that stop `up` (or, for out-of-order, stop it by default).
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Changed | Self::Missing | Self::OutOfOrder
        )
    }
}

/// One migration as seen by `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub version: u64,
    pub name: String,
    pub file: Option<String>,
    pub state: EntryState,
    pub checksum: Option<String>,
    pub applied_checksum: Option<String>,
    pub no_transaction: bool,
    pub applied_at: Option<DateTime<Utc>>,
    pub execution_ms: Option<i64>,
    pub applied_by: Option<String>,
    pub error: Option<String>,
}

/// The whole picture: every file and every history row.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub database: String,
    pub current_version: Option<u64>,
    pub latest_version: Option<u64>,
    pub up_to_date: bool,
    pub pending: usize,
    pub problems: Vec<String>,
    pub migrations: Vec<Entry>,
}

impl Status {
    fn build(database: String, files: &[Migration], history: &[HistoryRow]) -> Status {
        let rows: BTreeMap<u64, &HistoryRow> = history.iter().map(|r| (r.version, r)).collect();
        let files_by: BTreeMap<u64, &Migration> = files.iter().map(|m| (m.version, m)).collect();
        let highest_applied = history.iter().map(|r| r.version).max();
        let mut versions: Vec<u64> = rows.keys().chain(files_by.keys()).copied().collect();
        versions.sort_unstable();
        versions.dedup();
        let mut migrations = Vec::new();
        let mut problems = Vec::new();
        for v in versions {
            let f = files_by.get(&v).copied();
            let r = rows.get(&v).copied();
            let state = match (f, r) {
                (Some(_), None) if highest_applied.is_some_and(|h| v < h) => EntryState::OutOfOrder,
                (Some(_), None) => EntryState::Pending,
                (_, Some(r)) if r.state != "success" => EntryState::Failed,
                (None, Some(_)) => EntryState::Missing,
                (Some(f), Some(r)) if f.checksum != r.checksum => EntryState::Changed,
                (Some(_), Some(r)) if r.kind == "baseline" => EntryState::Baseline,
                (Some(_), Some(_)) => EntryState::Applied,
                (None, None) => unreachable!(),
            };
            let name = f
                .map(|f| f.name.clone())
                .or_else(|| r.map(|r| r.name.clone()))
                .unwrap_or_default();
            match state {
                EntryState::Failed => problems.push(format!(
                    "V{v} ({name}) is marked {}: a no-transaction migration failed or was \
                     interrupted{}. Look at the database, finish or undo it by hand, then run \
                     `opsctl migrate resolve {v} --applied` or `opsctl migrate resolve {v} --rolled-back`",
                    r.map(|r| r.state.as_str()).unwrap_or("failed"),
                    r.and_then(|r| r.error.as_deref())
                        .map(|e| format!(" ({})", e.lines().next().unwrap_or("")))
                        .unwrap_or_default()
                )),
                EntryState::Changed => problems.push(format!(
                    "V{v} ({name}) was applied but its file {} has changed since (checksum {} \
                     applied, {} now). Restore the file as applied and put the change in a new \
                     migration with a higher version",
                    f.map(|f| f.file.as_str()).unwrap_or(""),
                    short(r.map(|r| r.checksum.as_str()).unwrap_or("")),
                    short(f.map(|f| f.checksum.as_str()).unwrap_or(""))
                )),
                EntryState::Missing => problems.push(format!(
                    "V{v} ({name}) was applied but its file is gone (V{v}__{name}.sql). Restore \
                     the file, or use the binary / --migrations-dir that has it"
                )),
                EntryState::OutOfOrder => problems.push(format!(
                    "V{v} ({name}) is not applied but V{} is: out of order. Renumber it above \
                     V{}, or run `opsctl migrate up --allow-out-of-order`",
                    highest_applied.unwrap_or(0),
                    highest_applied.unwrap_or(0)
                )),
                _ => {}
            }
            migrations.push(Entry {
                version: v,
                name,
                file: f.map(|f| f.file.clone()),
                state,
                checksum: f.map(|f| f.checksum.clone()),
                applied_checksum: r.map(|r| r.checksum.clone()),
                no_transaction: f.is_some_and(|f| f.no_transaction),
                applied_at: r.map(|r| r.applied_at),
                execution_ms: r.map(|r| r.execution_ms),
                applied_by: r.map(|r| r.applied_by.clone()),
                error: r.and_then(|r| r.error.clone()),
            });
        }
        let pending = migrations
            .iter()
            .filter(|e| matches!(e.state, EntryState::Pending | EntryState::OutOfOrder))
            .count();
        let current_version = history
            .iter()
            .filter(|r| r.state == "success")
            .map(|r| r.version)
            .max();
        Status {
            database,
            current_version,
            latest_version: files.iter().map(|m| m.version).max(),
            up_to_date: pending == 0 && problems.is_empty(),
            pending,
            problems,
            migrations,
        }
    }

    /// Problems that stop `up` (drift, missing files, failed no-transaction runs).
    fn blocking(&self) -> Vec<&str> {
        self.migrations
            .iter()
            .filter(|e| {
                matches!(
                    e.state,
                    EntryState::Failed | EntryState::Changed | EntryState::Missing
                )
            })
            .filter_map(|e| {
                self.problems
                    .iter()
                    .find(|p| p.starts_with(&format!("V{} ", e.version)))
                    .map(String::as_str)
            })
            .collect()
    }
}

fn short(sum: &str) -> &str {
    &sum[..sum.len().min(12)]
}

/// Options of `migrate up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub to: Option<u64>,
    pub dry_run: bool,
    pub allow_out_of_order: bool,
    pub lock_wait: Duration,
}

/// One migration applied (or planned, in a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub version: u64,
    pub name: String,
    pub file: String,
    pub no_transaction: bool,
    pub statements: usize,
    pub execution_ms: Option<u64>,
}

/// What `up` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub database: String,
    pub dry_run: bool,
    pub waited_ms: u64,
    pub applied: Vec<Step>,
    pub current_version: Option<u64>,
}

async fn read_history(client: &Client) -> Result<Vec<HistoryRow>, Error> {
    let exists: bool = client
        .query_one(HISTORY_EXISTS, &[])
        .await
        .map_err(Error::db_ctx("cannot look for opsctl.schema_history"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(SELECT_HISTORY, &[])
        .await
        .map_err(Error::db_ctx("cannot read opsctl.schema_history"))?;
    Ok(rows
        .iter()
        .map(|r| HistoryRow {
            version: r.get::<_, i64>(0) as u64,
            name: r.get(1),
            checksum: r.get(2),
            kind: r.get(3),
            state: r.get(4),
            applied_at: r.get(5),
            execution_ms: r.get(6),
            applied_by: r.get(7),
            error: r.get(8),
        })
        .collect())
}

async fn database_name(client: &Client) -> Result<String, Error> {
    Ok(client
        .query_one(CURRENT_DATABASE, &[])
        .await
        .map_err(Error::db)?
        .get(0))
}

/// Reads the history and compares it with the files.
pub async fn status(settings: &ConnSettings, files: &[Migration]) -> Result<Status, Error> {
    let conn = db::connect(settings).await?;
    let db = database_name(&conn).await?;
    let history = read_history(&conn).await?;
    Ok(Status::build(db, files, &history))
}

/// Compares applied checksums with the files: `Err(Error::Verify)` naming every drifted
/// or missing version, `Ok(status)` otherwise.
pub async fn verify(settings: &ConnSettings, files: &[Migration]) -> Result<Status, Error> {
    let st = status(settings, files).await?;
    let drift: Vec<&str> = st
        .migrations
        .iter()
        .filter(|e| matches!(e.state, EntryState::Changed | EntryState::Missing))
        .filter_map(|e| {
            st.problems
                .iter()
                .find(|p| p.starts_with(&format!("V{} ", e.version)))
                .map(String::as_str)
        })
        .collect();
    if !drift.is_empty() {
        return Err(Error::Verify(drift.join("\n")));
    }
    Ok(st)
}

/// The lock connection and the work connection of a writing command.
struct Locked {
    lock: Connection,
    work: Connection,
    waited: Duration,
}

impl Locked {
    async fn take(settings: &ConnSettings, wait: Duration) -> Result<Locked, Error> {
        let lock = db::connect(settings).await?;
        let waited =
            db::acquire_advisory_lock(&lock, locks::MIGRATE, wait, "opsctl migrate").await?;
        let work = db::connect(settings).await?;
        work.batch_execute(CREATE_HISTORY)
            .await
            .map_err(Error::db_ctx("cannot create opsctl.schema_history"))?;
        Ok(Locked { lock, work, waited })
    }

    async fn release(self) {
        if let Err(e) = db::release_advisory_lock(&self.lock, locks::MIGRATE).await {
            tracing::warn!("releasing the migration lock: {e} (it goes away with the session)");
        }
    }
}

/// Applies pending migrations in version order.
pub async fn up(
    settings: &ConnSettings,
    files: &[Migration],
    opts: &UpOptions,
) -> Result<UpReport, Error> {
    if opts.dry_run {
        let st = status(settings, files).await?;
        let plan = plan(&st, files, opts)?;
        return Ok(UpReport {
            database: st.database,
            dry_run: true,
            waited_ms: 0,
            applied: plan.iter().map(|m| step(m, None)).collect(),
            current_version: st.current_version,
        });
    }
    let locked = Locked::take(settings, opts.lock_wait).await?;
    let result = up_locked(&locked, files, opts).await;
    locked.release().await;
    result
}

async fn up_locked(
    locked: &Locked,
    files: &[Migration],
    opts: &UpOptions,
) -> Result<UpReport, Error> {
    let work = &locked.work;
    let database = database_name(work).await?;
    let history = read_history(work).await?;
    let st = Status::build(database.clone(), files, &history);
    let plan = plan(&st, files, opts)?;
    let mut applied = Vec::new();
    let mut current = st.current_version;
    for m in plan {
        let ms = if m.no_transaction {
            apply_autocommit(work, m).await?
        } else {
            apply_transaction(work, m).await?
        };
        // A file's session settings (SET search_path, …) must not leak into the next file.
        work.batch_execute("RESET ALL")
            .await
            .map_err(Error::db_ctx(
                "cannot reset session settings after a migration",
            ))?;
        tracing::info!(version = m.version, ms, "applied {}", m.file);
        applied.push(step(m, Some(ms)));
        current = current.max(Some(m.version));
    }
    Ok(UpReport {
        database,
        dry_run: false,
        waited_ms: locked.waited.as_millis() as u64,
        applied,
        current_version: current,
    })
}

fn step(m: &Migration, ms: Option<u64>) -> Step {
    Step {
        version: m.version,
        name: m.name.clone(),
        file: m.file.clone(),
        no_transaction: m.no_transaction,
        statements: m.statements().len(),
        execution_ms: ms,
    }
}

/// The migrations `up` would apply, or why it must not.
fn plan<'a>(
    st: &Status,
    files: &'a [Migration],
    opts: &UpOptions,
) -> Result<Vec<&'a Migration>, Error> {
    let blocking = st.blocking();
    if !blocking.is_empty() {
        return Err(Error::Verify(format!(
            "migrate up refused:\n{}",
            blocking.join("\n")
        )));
    }
    let states: BTreeMap<u64, EntryState> =
        st.migrations.iter().map(|e| (e.version, e.state)).collect();
    let mut out = Vec::new();
    for m in files {
        if opts.to.is_some_and(|to| m.version > to) {
            break;
        }
        match states.get(&m.version) {
            Some(EntryState::Pending) => out.push(m),
            Some(EntryState::OutOfOrder) if opts.allow_out_of_order => out.push(m),
            Some(EntryState::OutOfOrder) => {
                return Err(Error::Other(format!(
                    "migrate up refused: V{} ({}) is not applied but V{} is (out of order). \
                     Renumber the file above V{}, or apply it anyway with \
                     `opsctl migrate up --allow-out-of-order`",
                    m.version,
                    m.name,
                    st.current_version.unwrap_or(0),
                    st.current_version.unwrap_or(0)
                )))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Describes a failing statement: file, line, server message, detail, hint.
fn statement_error(m: &Migration, st: &Statement, e: &tokio_postgres::Error, tail: &str) -> Error {
    let line = match e.as_db_error().and_then(|d| d.position()) {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => {
            st.line + line_of_position(&st.sql, *p as usize) - 1
        }
        _ => st.line,
    };
    let advice = if db::sqlstate(e) == Some("25001") && !m.no_transaction {
        format!(
            "\nThis statement cannot run inside a transaction: make `{}` the first line of \
             {}, or move the statement to a file of its own that starts with it.",
            super::files::NO_TRANSACTION,
            m.file
        )
    } else {
        String::new()
    };
    Error::Db(format!(
        "migration {} failed at line {line}: {}{advice}\n{tail}",
        m.file,
        db::describe(e)
    ))
}

async fn apply_transaction(client: &Connection, m: &Migration) -> Result<u64, Error> {
    let start = Instant::now();
    // Connection derefs to Client; transaction() needs &mut, so drive BEGIN/COMMIT here.
    client
        .batch_execute("BEGIN")
        .await
        .map_err(Error::db_ctx(format!("migration {}: cannot begin", m.file)))?;
    let rollback_tail = format!(
        "Nothing of V{} was applied: its transaction was rolled back. Fix the file and run \
         `opsctl migrate up` again.",
        m.version
    );
    for st in m.statements() {
        if let Err(e) = client.batch_execute(&st.sql).await {
            let err = statement_error(m, &st, &e, &rollback_tail);
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(err);
        }
    }
    let ms = start.elapsed().as_millis() as u64;
    let record = client
        .execute(
            INSERT_HISTORY,
            &[
                &(m.version as i64),
                &m.name,
                &m.checksum,
                &"migration",
                &"success",
                &(ms as i64),
            ],
        )
        .await;
    if let Err(e) = record {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(Error::db_ctx(format!(
            "migration {}: cannot record it in opsctl.schema_history (rolled back)",
            m.file
        ))(e));
    }
    client.batch_execute("COMMIT").await.map_err(|e| {
        Error::Db(format!(
            "migration {} failed at COMMIT: {}\n{rollback_tail}",
            m.file,
            db::describe(&e)
        ))
    })?;
    Ok(ms)
}

async fn apply_autocommit(client: &Connection, m: &Migration) -> Result<u64, Error> {
    let start = Instant::now();
    client
        .execute(
            INSERT_HISTORY,
            &[
                &(m.version as i64),
                &m.name,
                &m.checksum,
                &"migration",
                &"running",
                &0i64,
            ],
        )
        .await
        .map_err(Error::db_ctx(format!(
            "migration {}: cannot record it in opsctl.schema_history",
            m.file
        )))?;
    for st in m.statements() {
        if let Err(e) = client.batch_execute(&st.sql).await {
            let tail = format!(
                "V{v} runs without a transaction (-- opsctl:no-transaction): the statements \
                 before line {line} took effect and stay; an interrupted CREATE INDEX \
                 CONCURRENTLY leaves an INVALID index to drop. V{v} is marked failed and blocks \
                 `migrate up` until a person has looked: finish it by hand and run `opsctl \
                 migrate resolve {v} --applied`, or undo it and run `opsctl migrate resolve {v} \
                 --rolled-back`.",
                v = m.version,
                line = st.line
            );
            let err = statement_error(m, &st, &e, &tail);
            let ms = start.elapsed().as_millis() as i64;
            let _ = client
                .execute(
                    FINISH_HISTORY,
                    &[&(m.version as i64), &"failed", &ms, &Some(err.to_string())],
                )
                .await;
            return Err(err);
        }
    }
    let ms = start.elapsed().as_millis() as u64;
    client
        .execute(
            FINISH_HISTORY,
            &[&(m.version as i64), &"success", &(ms as i64), &None::<String>],
        )
        .await
        .map_err(Error::db_ctx(format!(
            "migration {} ran, but recording its success failed; run `opsctl migrate resolve {} --applied`",
            m.file, m.version
        )))?;
    Ok(ms)
}

/// Records every file up to `version` as applied without running it (for a database
/// that already has that schema). Refused when the history is not empty.
pub async fn baseline(
    settings: &ConnSettings,
    files: &[Migration],
    version: u64,
    lock_wait: Duration,
) -> Result<Vec<u64>, Error> {
    let locked = Locked::take(settings, lock_wait).await?;
    let result = async {
        let history = read_history(&locked.work).await?;
        if !history.is_empty() {
            return Err(Error::Other(format!(
                "migrate baseline refused: opsctl.schema_history already has {} row(s) (up to \
                 V{}); baseline only adopts a database opsctl has never migrated",
                history.len(),
                history.iter().map(|r| r.version).max().unwrap_or(0)
            )));
        }
        let chosen: Vec<&Migration> = files.iter().filter(|m| m.version <= version).collect();
        if chosen.is_empty() {
            return Err(Error::Config(format!(
                "no migration file has a version ≤ {version}; nothing to baseline"
            )));
        }
        locked
            .work
            .batch_execute("BEGIN")
            .await
            .map_err(Error::db)?;
        for m in &chosen {
            if let Err(e) = locked
                .work
                .execute(
                    INSERT_HISTORY,
                    &[
                        &(m.version as i64),
                        &m.name,
                        &m.checksum,
                        &"baseline",
                        &"success",
                        &0i64,
                    ],
                )
                .await
            {
                let _ = locked.work.batch_execute("ROLLBACK").await;
                return Err(Error::db_ctx("cannot record the baseline")(e));
            }
        }
        locked
            .work
            .batch_execute("COMMIT")
            .await
            .map_err(Error::db)?;
        Ok(chosen.iter().map(|m| m.version).collect())
    }
    .await;
    locked.release().await;
    result
}

/// What a person found after a failed no-transaction migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    Applied,
    RolledBack,
}

/// Clears a failed (or interrupted) no-transaction migration.
pub async fn resolve(
    settings: &ConnSettings,
    files: &[Migration],
    version: u64,
    how: Resolution,
    lock_wait: Duration,
) -> Result<(), Error> {
    let locked = Locked::take(settings, lock_wait).await?;
    let result = async {
        let history = read_history(&locked.work).await?;
        let row = history.iter().find(|r| r.version == version);
        match row {
            None => {
                return Err(Error::Other(format!(
                "V{version} has no history row: nothing to resolve (see `opsctl migrate status`)"
            )))
            }
            Some(r) if r.state == "success" => {
                return Err(Error::Other(format!(
                    "V{version} ({}) is applied, not failed: nothing to resolve",
                    r.name
                )))
            }
            Some(_) => {}
        }
        if how == Resolution::Applied && !files.iter().any(|m| m.version == version) {
            return Err(Error::Other(format!(
                "V{version}: its file is not among the migrations; cannot mark it applied"
            )));
        }
        let sql = match how {
            Resolution::Applied => RESOLVE_APPLIED,
            Resolution::RolledBack => RESOLVE_ROLLED_BACK,
        };
        locked
            .work
            .execute(sql, &[&(version as i64)])
            .await
            .map_err(Error::db_ctx("cannot update opsctl.schema_history"))?;
        Ok(())
    }
    .await;
    locked.release().await;
    result
}
