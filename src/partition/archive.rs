//! `archive --before DATE`: moves every row older than DATE from a live partitioned table
//! into `archive.<table>` (same columns, partitioned by the same key, with a default
//! partition), losing and duplicating nothing under any interruption.
//!
//! - Whole months (a partition whose upper bound is ≤ DATE) move by metadata: a plain
//!   DETACH (CONCURRENTLY is impossible beside a default partition) plus SET SCHEMA archive
//!   in one short-lock transaction that also journals the partition as `detached`; then an
//!   ATTACH to the archive table (no scan: each month carries its range as a CHECK
//!   constraint) in a second transaction that journals it as `attached`.
//! - Everything else older than DATE (the month DATE falls in, stray rows in the default
//!   partition) moves in keyset-paginated batches, each one `WITH moved AS (DELETE …
//!   RETURNING *) INSERT INTO archive… SELECT … FROM moved` statement in its own short
//!   transaction that also advances the journal's keyset position.
//! - The journal (`opsctl.archive_journal`) records the cutoff, the counts measured at the
//!   start and the progress; a rerun resumes, and a run with another DATE first finishes
//!   the recorded one. At the end: no live row older than DATE may remain, and the rows
//!   moved must equal the rows the source held and the rows the archive gained.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::{
    archive_oid, column_shape, default_name, in_tx, partitions, pause_at, ts_literal, Observer,
    Partition, Table,
};
use crate::backup::manifest::content_checksum_sql;
use crate::db::{self, quote_ident, quote_qualified};
use crate::error::Error;

/// Schema that receives archived rows.
pub const ARCHIVE_SCHEMA: &str = "archive";
/// Rows per batch unless told otherwise.
pub const DEFAULT_BATCH_SIZE: i64 = 10_000;

/// What to archive.
#[derive(Debug, Clone)]
pub struct Request {
    /// Rows whose time column is older than this (UTC) move.
    pub cutoff: NaiveDateTime,
    pub batch_size: i64,
    /// How long to wait for another maintenance job's advisory lock.
    pub lock_wait: Duration,
}

/// A partition that moves whole, by metadata.
#[derive(Debug, Clone, Serialize)]
pub struct WholeMove {
    pub partition: String,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    pub rows: Option<i64>,
    pub bytes: i64,
}

/// An unfinished run recorded in the journal.
#[derive(Debug, Clone, Serialize)]
pub struct Unfinished {
    pub journal_id: i64,
    pub cutoff: NaiveDateTime,
    pub started_at: DateTime<Utc>,
    pub rows_moved: i64,
    pub source_rows: i64,
}

/// The plan `--dry-run` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub table: String,
    pub archive_table: String,
    pub cutoff: NaiveDateTime,
    /// A recorded unfinished run that would be finished first.
    pub unfinished: Option<Unfinished>,
    pub partitions: Vec<WholeMove>,
    pub partition_rows: i64,
    pub partition_bytes: i64,
    pub batch_rows: i64,
    pub batch_bytes: i64,
    pub batch_size: i64,
    pub batches: i64,
    pub rows: i64,
    pub bytes: i64,
}

/// What one archive run did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub table: String,
    pub archive_table: String,
    pub cutoff: NaiveDateTime,
    pub journal_id: i64,
    /// This invocation resumed a run an earlier one started.
    pub resumed: bool,
    pub started_at: DateTime<Utc>,
    pub partitions_moved: Vec<String>,
    pub rows_moved: i64,
    pub rows_moved_by_partitions: i64,
    pub rows_moved_by_batches: i64,
    pub batches: i64,
    pub bytes_moved: i64,
    /// Rows older than the cutoff that the live table held when the run started.
    pub source_rows: i64,
    /// Rows older than the cutoff still in the live table (must be 0).
    pub live_rows_left: i64,
    /// Rows the archive gained in the run's range (must equal rows_moved).
    pub archive_rows_added: i64,
    pub verified: bool,
    pub verification: String,
    /// Longest time one whole-month move waited for and held the live table's ACCESS
    /// EXCLUSIVE lock (DETACH to COMMIT), in milliseconds.
    pub max_live_lock_ms: f64,
    pub duration_ms: u64,
}

/// What `run` did: possibly a recorded run finished first, then the asked-for one.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub finished_first: Option<Summary>,
    pub summary: Summary,
}

impl Outcome {
    pub fn verified(&self) -> bool {
        self.summary.verified && self.finished_first.as_ref().map_or(true, |s| s.verified)
    }
}

// ---------------------------------------------------------------------------------------
// Journal

#[derive(Debug, Clone)]
struct Journal {
    id: i64,
    cutoff: NaiveDateTime,
    source_rows: i64,
    range_start: Option<NaiveDateTime>,
    archive_rows_before: i64,
    moved_rows: i64,
    position: Option<Vec<String>>,
    started_at: DateTime<Utc>,
}

const J_COLUMNS: &str = "id, cutoff, source_rows, range_start, archive_rows_before, \
                         moved_rows, batch_position, started_at";

fn journal_from(r: &tokio_postgres::Row) -> Journal {
    Journal {
        id: r.get(0),
        cutoff: r.get(1),
        source_rows: r.get(2),
        range_start: r.get(3),
        archive_rows_before: r.get(4),
        moved_rows: r.get(5),
        position: r.get(6),
        started_at: r.get(7),
    }
}

const SQL_JOURNAL_EXISTS: &str = "SELECT to_regclass('opsctl.archive_journal') IS NOT NULL";
const SQL_J_INSERT: &str = "\
INSERT INTO opsctl.archive_journal
    (table_schema, table_name, time_column, cutoff, source_rows, range_start, archive_rows_before)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
const SQL_J_DETACHED: &str = "\
SELECT partition, range_from, range_to FROM opsctl.archive_journal_partitions
 WHERE journal_id = $1 AND state = 'detached' ORDER BY range_from";
const SQL_J_PART_DETACHED: &str = "\
INSERT INTO opsctl.archive_journal_partitions (journal_id, partition, range_from, range_to, state)
VALUES ($1, $2, $3, $4, 'detached')";
const SQL_J_PART_ATTACHED: &str = "\
UPDATE opsctl.archive_journal_partitions
   SET state = 'attached', rows = $3, bytes = $4, attached_at = now()
 WHERE journal_id = $1 AND partition = $2";
const SQL_J_ADD_PARTITION: &str = "\
UPDATE opsctl.archive_journal
   SET moved_partitions = moved_partitions + 1, moved_rows = moved_rows + $2,
       moved_bytes = moved_bytes + $3, updated_at = now()
 WHERE id = $1";
const SQL_J_ADD_BATCH: &str = "\
UPDATE opsctl.archive_journal
   SET moved_rows = moved_rows + $2, moved_bytes = moved_bytes + $3, batches = batches + 1,
       batch_position = $4, updated_at = now()
 WHERE id = $1";
const SQL_J_RESET_POSITION: &str = "\
UPDATE opsctl.archive_journal SET batch_position = NULL, updated_at = now() WHERE id = $1";
const SQL_J_DONE: &str = "\
UPDATE opsctl.archive_journal
   SET state = 'done', finished_at = now(), updated_at = now(), live_rows_left = $2,
       archive_rows_added = $3, verified = $4, message = $5
 WHERE id = $1";
const SQL_J_TOTALS: &str = "\
SELECT moved_rows, moved_bytes, batches FROM opsctl.archive_journal WHERE id = $1";
const SQL_J_ATTACHED: &str = "\
SELECT partition, coalesce(rows, 0) FROM opsctl.archive_journal_partitions
 WHERE journal_id = $1 AND state = 'attached' ORDER BY range_from";
const SQL_REL_SIZE: &str = "SELECT pg_total_relation_size($1::text::regclass)";
const SQL_REL_EXISTS: &str = "SELECT to_regclass($1) IS NOT NULL";

async fn require_journal(client: &Client) -> Result<bool, Error> {
    Ok(client
        .query_one(SQL_JOURNAL_EXISTS, &[])
        .await
        .map_err(Error::db)?
        .get(0))
}

async fn running_journal(client: &Client, t: &Table) -> Result<Option<Journal>, Error> {
    let sql = format!(
        "SELECT {J_COLUMNS} FROM opsctl.archive_journal \
         WHERE table_schema = $1 AND table_name = $2 AND state = 'running'"
    );
    Ok(client
        .query_opt(&sql, &[&t.schema, &t.name])
        .await
        .map_err(Error::db_ctx("cannot read the archive journal"))?
        .map(|r| journal_from(&r)))
}

// ---------------------------------------------------------------------------------------
// SQL built from the table's catalog description (identifiers quoted, values bound)

fn archive_name(t: &Table) -> String {
    quote_qualified(ARCHIVE_SCHEMA, &t.name)
}

fn sql_count_older(t: &Table) -> String {
    format!(
        "SELECT count(*), min({c})::timestamp FROM {live} WHERE {c} < $1::timestamp",
        c = t.sql_column(),
        live = t.sql_name()
    )
}

fn sql_count_archive(t: &Table) -> String {
    format!(
        "SELECT count(*) FROM {a} WHERE {c} >= $1::timestamp AND {c} < $2::timestamp",
        c = t.sql_column(),
        a = archive_name(t)
    )
}

/// One batch: the next `$2` rows in keyset order (time column, then the rest of the
/// primary key) after the position `$3..`, deleted by key range so each partition is read
/// by index, never scanned whole.
fn sql_batch(t: &Table, with_position: bool) -> String {
    let keys: Vec<String> = t.key.iter().map(|(c, _)| quote_ident(c)).collect();
    let join = |f: &dyn Fn(&String) -> String| keys.iter().map(f).collect::<Vec<_>>().join(", ");
    let klist = keys.join(", ");
    let tkeys = join(&|k| format!("t.{k}"));
    let desc = join(&|k| format!("{k} DESC"));
    let texts = join(&|k| format!("{k}::text"));
    let c = t.sql_column();
    let live = t.sql_name();
    let (after, tafter) = if with_position {
        let pos = t
            .key
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::text::{ty}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        (
            format!(" AND ({klist}) > ({pos})"),
            format!(" AND ({tkeys}) > ({pos})"),
        )
    } else {
        (String::new(), String::new())
    };
    let cols = t.sql_columns();
    format!(
        "WITH moved AS (\
           DELETE FROM {live} AS t \
            WHERE t.{c} < $1::timestamp{tafter} \
              AND ({tkeys}) <= (SELECT {klist} FROM (\
                    SELECT {klist} FROM {live} WHERE {c} < $1::timestamp{after} \
                     ORDER BY {klist} LIMIT $2) AS b ORDER BY {desc} LIMIT 1) \
           RETURNING t.*), \
         ins AS (INSERT INTO {arch} ({cols}) SELECT {cols} FROM moved) \
         SELECT (SELECT count(*) FROM moved), \
                (SELECT coalesce(sum(pg_column_size(m.*)), 0)::int8 FROM moved m), \
                (SELECT ARRAY[{texts}] FROM moved ORDER BY {desc} LIMIT 1), \
                (SELECT {sum} FROM moved m)",
        arch = archive_name(t),
        sum = content_checksum_sql("m"),
    )
}

// ---------------------------------------------------------------------------------------
// The archive table

/// `archive.<table>` as found (or created).
pub(crate) struct ArchiveTable {
    pub(crate) oid: u32,
    default_partition: Option<String>,
}

async fn find_archive_table(client: &Client, t: &Table) -> Result<Option<ArchiveTable>, Error> {
    let Some(oid) = archive_oid(client, &t.name).await? else {
        return Ok(None);
    };
    let def = partitions(client, oid)
        .await?
        .into_iter()
        .find(|p| p.is_default)
        .map(|p| p.name);
    Ok(Some(ArchiveTable {
        oid,
        default_partition: def,
    }))
}

/// Creates `archive.<table>` (columns, constraints and indexes of the live table,
/// partitioned the same way, with a default partition), or checks the existing one.
pub(crate) async fn ensure_archive_table(
    client: &Client,
    t: &Table,
) -> Result<ArchiveTable, Error> {
    let arch = archive_name(t);
    let def = quote_qualified(ARCHIVE_SCHEMA, &default_name(&t.name));
    match find_archive_table(client, t).await? {
        Some(a) => {
            let live = column_shape(client, t.oid).await?;
            let archived = column_shape(client, a.oid).await?;
            if live != archived {
                let diff: Vec<String> = live
                    .iter()
                    .filter(|c| !archived.contains(c))
                    .map(|(n, ty, nn)| format!("{n} {ty}{}", if *nn { " NOT NULL" } else { "" }))
                    .collect();
                return Err(Error::Config(format!(
                    "archive.{} no longer has the columns of {} (differs in: {}); apply the same \
                     ALTER TABLE to archive.{} first",
                    t.name,
                    t.qualified(),
                    if diff.is_empty() {
                        "columns only the archive has".to_string()
                    } else {
                        diff.join(", ")
                    },
                    t.name
                )));
            }
            if a.default_partition.is_some() {
                return Ok(a);
            }
            let sql = format!("CREATE TABLE {def} PARTITION OF {arch} DEFAULT");
            in_tx(client, "creating the archive's default partition", || {
                client.batch_execute(&sql)
            })
            .await?;
        }
        None => {
            let sql = format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; \
                 CREATE TABLE {arch} (LIKE {live} INCLUDING CONSTRAINTS INCLUDING INDEXES \
                   INCLUDING STORAGE INCLUDING COMPRESSION) PARTITION BY RANGE ({c}); \
                 CREATE TABLE {def} PARTITION OF {arch} DEFAULT",
                schema = quote_ident(ARCHIVE_SCHEMA),
                live = t.sql_name(),
                c = t.sql_column(),
            );
            in_tx(
                client,
                &format!("creating {}.{}", ARCHIVE_SCHEMA, t.name),
                || client.batch_execute(&sql),
            )
            .await?;
        }
    }
    find_archive_table(client, t)
        .await?
        .ok_or_else(|| Error::Other(format!("archive.{} vanished", t.name)))
}

/// True when a live partition can move whole into the archive.
fn whole_movable(p: &Partition, cutoff: NaiveDateTime, archived: &[Partition]) -> bool {
    match (p.is_default, p.from, p.to) {
        (false, Some(f), Some(to)) if to <= cutoff => !archived.iter().any(|a| a.overlaps(f, to)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Plan (dry run)

/// The plan for archiving `t` before `cutoff`. Reads only; changes nothing.
pub async fn plan(
    client: &Client,
    t: &Table,
    cutoff: NaiveDateTime,
    batch_size: i64,
) -> Result<Plan, Error> {
    let unfinished = if require_journal(client).await? {
        running_journal(client, t).await?.map(|j| Unfinished {
            journal_id: j.id,
            cutoff: j.cutoff,
            started_at: j.started_at,
            rows_moved: j.moved_rows,
            source_rows: j.source_rows,
        })
    } else {
        None
    };
    let archived = match archive_oid(client, &t.name).await? {
        Some(oid) => partitions(client, oid).await?,
        None => Vec::new(),
    };
    let mut whole = Vec::new();
    let mut oids: Vec<u32> = Vec::new();
    for p in partitions(client, t.oid).await? {
        if !whole_movable(&p, cutoff, &archived) || name_taken(client, &p).await? {
            continue;
        }
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {}", p.sql_name()), &[])
            .await
            .map_err(Error::db)?
            .get(0);
        oids.push(p.oid);
        whole.push(WholeMove {
            partition: p.qualified(),
            from: p.from,
            to: p.to,
            rows: Some(rows),
            bytes: p.bytes,
        });
    }
    let sql = format!(
        "SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0)::int8 FROM {live} t \
         WHERE {c} < $1::timestamp AND tableoid <> ALL($2::oid[])",
        live = t.sql_name(),
        c = t.sql_column()
    );
    let r = client
        .query_one(&sql, &[&cutoff, &oids])
        .await
        .map_err(Error::db)?;
    let (batch_rows, batch_bytes): (i64, i64) = (r.get(0), r.get(1));
    let partition_rows: i64 = whole.iter().filter_map(|w| w.rows).sum();
    let partition_bytes: i64 = whole.iter().map(|w| w.bytes).sum();
    let batch_size = batch_size.max(1);
    Ok(Plan {
        table: t.qualified(),
        archive_table: format!("{ARCHIVE_SCHEMA}.{}", t.name),
        cutoff,
        unfinished,
        partitions: whole,
        partition_rows,
        partition_bytes,
        batch_rows,
        batch_bytes,
        batch_size,
        batches: (batch_rows + batch_size - 1) / batch_size,
        rows: partition_rows + batch_rows,
        bytes: partition_bytes + batch_bytes,
    })
}

/// True when `archive.<partition name>` is already taken by some other relation.
async fn name_taken(client: &Client, p: &Partition) -> Result<bool, Error> {
    let q = quote_qualified(ARCHIVE_SCHEMA, &p.name);
    Ok(client
        .query_one(SQL_REL_EXISTS, &[&q])
        .await
        .map_err(Error::db)?
        .get(0))
}

// ---------------------------------------------------------------------------------------
// Run

/// Archives `t` before `req.cutoff`: takes the maintenance advisory lock, finishes a
/// recorded unfinished run first (whatever its cutoff), then runs this one.
pub async fn run(
    client: &Client,
    t: &Table,
    req: &Request,
    obs: &dyn Observer,
) -> Result<Outcome, Error> {
    if !require_journal(client).await? {
        return Err(Error::Config(
            "the archive journal opsctl.archive_journal does not exist: apply the migrations \
             first (opsctl migrate up)"
                .into(),
        ));
    }
    db::acquire_advisory_lock(
        client,
        db::locks::MAINTENANCE,
        req.lock_wait,
        "maintenance job (archive, backup, vacuum, reindex or partition work)",
    )
    .await?;
    let result = run_locked(client, t, req, obs).await;
    let _ = db::release_advisory_lock(client, db::locks::MAINTENANCE).await;
    result
}

async fn run_locked(
    client: &Client,
    t: &Table,
    req: &Request,
    obs: &dyn Observer,
) -> Result<Outcome, Error> {
    let arch = ensure_archive_table(client, t).await?;
    pause_at("archive-table").await;
    let mut finished_first = None;
    let (journal, resumed) = match running_journal(client, t).await? {
        Some(j) if j.cutoff == req.cutoff => {
            obs.notice(&format!(
                "resuming the unfinished archive of {} before {} (journal #{}, started {}): \
                 {} of {} rows already moved",
                t.qualified(),
                j.cutoff,
                j.id,
                crate::text::ts(&j.started_at),
                j.moved_rows,
                j.source_rows
            ));
            (j, true)
        }
        Some(j) => {
            obs.notice(&format!(
                "an unfinished archive of {} before {} is recorded (journal #{}, started {}): \
                 finishing it first, then archiving before {}",
                t.qualified(),
                j.cutoff,
                j.id,
                crate::text::ts(&j.started_at),
                req.cutoff
            ));
            finished_first = Some(execute(client, t, &arch, j, req.batch_size, true, obs).await?);
            (start_journal(client, t, req.cutoff).await?, false)
        }
        None => (start_journal(client, t, req.cutoff).await?, false),
    };
    let summary = execute(client, t, &arch, journal, req.batch_size, resumed, obs).await?;
    Ok(Outcome {
        finished_first,
        summary,
    })
}

/// Records a new run: counts the source rows and the archive's rows of the range in one
/// snapshot, in the transaction that inserts the journal row.
async fn start_journal(
    client: &Client,
    t: &Table,
    cutoff: NaiveDateTime,
) -> Result<Journal, Error> {
    let count_older = sql_count_older(t);
    let count_archive = sql_count_archive(t);
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(Error::db)?;
    let res: Result<Journal, tokio_postgres::Error> = async {
        let r = client.query_one(&count_older, &[&cutoff]).await?;
        let (source_rows, range_start): (i64, Option<NaiveDateTime>) = (r.get(0), r.get(1));
        let archive_rows_before: i64 = match range_start {
            Some(s) => client
                .query_one(&count_archive, &[&s, &cutoff])
                .await?
                .get(0),
            None => 0,
        };
        let id: i64 = client
            .query_one(
                SQL_J_INSERT,
                &[
                    &t.schema,
                    &t.name,
                    &t.column,
                    &cutoff,
                    &source_rows,
                    &range_start,
                    &archive_rows_before,
                ],
            )
            .await?
            .get(0);
        client.batch_execute("COMMIT").await?;
        Ok(Journal {
            id,
            cutoff,
            source_rows,
            range_start,
            archive_rows_before,
            moved_rows: 0,
            position: None,
            started_at: Utc::now(),
        })
    }
    .await;
    match res {
        Ok(j) => {
            pause_at("journal").await;
            Ok(j)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(Error::Db(format!(
                "cannot start the archive journal: {}",
                db::describe(&e)
            )))
        }
    }
}

/// Carries a journaled run to its end and verifies it.
async fn execute(
    client: &Client,
    t: &Table,
    arch: &ArchiveTable,
    j: Journal,
    batch_size: i64,
    resumed: bool,
    obs: &dyn Observer,
) -> Result<Summary, Error> {
    let started = Instant::now();
    obs.total((j.source_rows - j.moved_rows).max(0) as u64);
    let record = crate::audit::records_moves(client, t.oid).await?;

    // 1. Partitions a killed run detached but did not attach yet.
    let pending = client
        .query(SQL_J_DETACHED, &[&j.id])
        .await
        .map_err(Error::db)?;
    for r in pending {
        let (name, from, to): (String, NaiveDateTime, NaiveDateTime) =
            (r.get(0), r.get(1), r.get(2));
        obs.notice(&format!(
            "attaching archive.{name}, detached by the interrupted run, to archive.{}",
            t.name
        ));
        let rows = attach_moved(client, t, arch, j.id, &name, from, to, record).await?;
        obs.advance(rows.max(0) as u64);
    }

    // 2. Whole months, by metadata.
    let mut max_lock = Duration::ZERO;
    let archived = partitions(client, arch.oid).await?;
    for p in partitions(client, t.oid).await? {
        if !whole_movable(&p, j.cutoff, &archived) {
            continue;
        }
        if name_taken(client, &p).await? {
            obs.notice(&format!(
                "archive.{} already exists: moving the rows of {} in batches instead",
                p.name,
                p.qualified()
            ));
            continue;
        }
        let (from, to) = (p.from.expect("bounded"), p.to.expect("bounded"));
        if !p.has_range_check {
            add_range_check(client, t, &p, from, to).await?;
        }
        let held = detach(client, t, &p, j.id, from, to).await?;
        max_lock = max_lock.max(held);
        pause_at("detached").await;
        let rows = attach_moved(client, t, arch, j.id, &p.name, from, to, record).await?;
        obs.advance(rows.max(0) as u64);
        pause_at("attached").await;
    }

    // 3. The rest, in keyset-paginated batches.
    let first = sql_batch(t, false);
    let next = sql_batch(t, true);
    let mut position = j.position.clone();
    let mut sweeps = 0;
    let limit = batch_size.max(1);
    let mut batch_rows = 0i64;
    loop {
        let (moved, last) = batch(
            client, t, record, &first, &next, j.id, &j.cutoff, limit, &position,
        )
        .await?;
        if moved > 0 {
            batch_rows += moved;
            obs.advance(moved as u64);
            position = last;
            pause_at("batch").await;
            continue;
        }
        if position.is_none() || sweeps >= 3 {
            break;
        }
        // Reached the end of the keyset; sweep once more from the start for rows written
        // behind the position while the run went on.
        sweeps += 1;
        position = None;
        client
            .execute(SQL_J_RESET_POSITION, &[&j.id])
            .await
            .map_err(Error::db)?;
    }

    if batch_rows > 0 {
        analyze_touched(client, t, j.cutoff, obs).await;
    }

    // 4. Verification.
    pause_at("verify").await;
    let mut summary = verify_and_finish(client, t, j, resumed, started).await?;
    summary.max_live_lock_ms = max_lock.as_secs_f64() * 1000.0;
    Ok(summary)
}

/// After batches moved rows out of the live partitions older than the cutoff (the month
/// it falls in, the default partition), their planner estimates (what `partition list`
/// shows) are stale: ANALYZE them. Outside any transaction; does not block writers. A
/// failure is only a notice.
async fn analyze_touched(client: &Client, t: &Table, cutoff: NaiveDateTime, obs: &dyn Observer) {
    let touched: Vec<String> = match partitions(client, t.oid).await {
        Ok(parts) => parts
            .iter()
            .filter(|p| p.is_default || p.from.map_or(true, |f| f < cutoff))
            .map(|p| p.sql_name())
            .collect(),
        Err(_) => return,
    };
    if touched.is_empty() {
        return;
    }
    if let Err(e) = client
        .batch_execute(&format!("ANALYZE {}", touched.join(", ")))
        .await
    {
        obs.notice(&format!(
            "warning: the row estimates of {} stay stale until autovacuum analyzes it: {}",
            t.qualified(),
            db::describe(&e)
        ));
    }
}

/// Adds the `<partition>_range` CHECK constraint a partition made elsewhere lacks, so the
/// attach to the archive needs no scan: NOT VALID (brief lock), then VALIDATE (scans
/// under SHARE UPDATE EXCLUSIVE, which does not block reads or writes).
async fn add_range_check(
    client: &Client,
    t: &Table,
    p: &Partition,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Result<(), Error> {
    let name = quote_ident(&format!("{}_range", p.name));
    let c = t.sql_column();
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1 AND conname = $2)",
            &[&p.oid, &format!("{}_range", p.name)],
        )
        .await
        .map_err(Error::db)?
        .get(0);
    if !exists {
        let add = format!(
            "ALTER TABLE {part} ADD CONSTRAINT {name} CHECK ({c} >= {lo} AND {c} < {hi}) NOT VALID",
            part = p.sql_name(),
            lo = ts_literal(from),
            hi = ts_literal(to)
        );
        in_tx(
            client,
            &format!("adding the range CHECK to {}", p.qualified()),
            || client.batch_execute(&add),
        )
        .await?;
    }
    let validate = format!("ALTER TABLE {} VALIDATE CONSTRAINT {name}", p.sql_name());
    in_tx(
        client,
        &format!("validating the range CHECK of {}", p.qualified()),
        || client.batch_execute(&validate),
    )
    .await
}

/// DETACH from the live table + SET SCHEMA archive + journal, one short-lock transaction.
/// Returns how long the live table's lock was waited for and held.
async fn detach(
    client: &Client,
    t: &Table,
    p: &Partition,
    journal_id: i64,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Result<Duration, Error> {
    let ddl = format!(
        "ALTER TABLE {live} DETACH PARTITION {part}; ALTER TABLE {part} SET SCHEMA {schema}",
        live = t.sql_name(),
        part = p.sql_name(),
        schema = quote_ident(ARCHIVE_SCHEMA)
    );
    let last_start = std::sync::Mutex::new(Instant::now());
    in_tx(client, &format!("detaching {}", p.qualified()), || async {
        *last_start.lock().expect("not poisoned") = Instant::now();
        client.batch_execute(&ddl).await?;
        client
            .execute(SQL_J_PART_DETACHED, &[&journal_id, &p.name, &from, &to])
            .await?;
        Ok(())
    })
    .await?;
    // From the DETACH (lock wait included) to the commit that released the lock.
    let held = last_start.lock().expect("not poisoned").elapsed();
    Ok(held)
}

/// ATTACH a detached month (now in schema archive) to the archive table, after taking
/// over the archive default partition's rows of its range; journals it. Returns its rows.
/// For an audited table (`record`) the month's move is one MOVE row of the audit log
/// (its rows and content checksum), in the same transaction.
#[allow(clippy::too_many_arguments)]
async fn attach_moved(
    client: &Client,
    t: &Table,
    arch: &ArchiveTable,
    journal_id: i64,
    name: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    record: bool,
) -> Result<i64, Error> {
    let part = quote_qualified(ARCHIVE_SCHEMA, name);
    let c = t.sql_column();
    let (lo, hi) = (ts_literal(from), ts_literal(to));
    let count = format!(
        "SELECT count(*), {} FROM {part} m",
        content_checksum_sql("m")
    );
    let cols = t.sql_columns();
    let take_default = arch.default_partition.as_ref().map(|d| {
        format!(
            "WITH m AS (DELETE FROM {def} WHERE {c} >= {lo} AND {c} < {hi} RETURNING *) \
             INSERT INTO {part} ({cols}) SELECT {cols} FROM m",
            def = quote_qualified(ARCHIVE_SCHEMA, d)
        )
    });
    let attach = format!(
        "ALTER TABLE {arch} ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi})",
        arch = archive_name(t)
    );
    in_tx(
        client,
        &format!("attaching {part} to the archive"),
        || async {
            let r = client.query_one(&count, &[]).await?;
            let (rows, checksum): (i64, String) = (r.get(0), r.get(1));
            let bytes: i64 = client.query_one(SQL_REL_SIZE, &[&part]).await?.get(0);
            if record && rows > 0 {
                let mv = crate::audit::RowMove {
                    schema: &t.schema,
                    table: &t.name,
                    from: (&t.schema, name),
                    to: (ARCHIVE_SCHEMA, &t.name),
                    rows,
                    checksum: &checksum,
                };
                crate::audit::log_move(client, &mv).await?;
            }
            if let Some(sql) = &take_default {
                client.execute(sql.as_str(), &[]).await?;
            }
            client.batch_execute(&attach).await?;
            client
                .execute(SQL_J_PART_ATTACHED, &[&journal_id, &name, &rows, &bytes])
                .await?;
            client
                .execute(SQL_J_ADD_PARTITION, &[&journal_id, &rows, &bytes])
                .await?;
            Ok(rows)
        },
    )
    .await
}

/// One batch: the move statement and the journal update, one short transaction. For an
/// audited table (`record`) the batch is one MOVE row of the audit log (rows and content
/// checksum), not a DELETE row per row.
#[allow(clippy::too_many_arguments)]
async fn batch(
    client: &Client,
    t: &Table,
    record: bool,
    first: &str,
    next: &str,
    journal_id: i64,
    cutoff: &NaiveDateTime,
    limit: i64,
    position: &Option<Vec<String>>,
) -> Result<(i64, Option<Vec<String>>), Error> {
    in_tx(client, "moving a batch", || async {
        if record {
            crate::audit::begin_move(client, &t.schema, &t.name).await?;
        }
        let row = match position {
            None => client.query_one(first, &[cutoff, &limit]).await?,
            Some(pos) => {
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![cutoff, &limit];
                for p in pos {
                    params.push(p);
                }
                client.query_one(next, &params).await?
            }
        };
        let moved: i64 = row.get(0);
        let bytes: i64 = row.get(1);
        let last: Option<Vec<String>> = row.get(2);
        if record && moved > 0 {
            let checksum: String = row.get(3);
            let mv = crate::audit::RowMove {
                schema: &t.schema,
                table: &t.name,
                from: (&t.schema, &t.name),
                to: (ARCHIVE_SCHEMA, &t.name),
                rows: moved,
                checksum: &checksum,
            };
            crate::audit::log_move(client, &mv).await?;
        }
        if moved > 0 {
            client
                .execute(SQL_J_ADD_BATCH, &[&journal_id, &moved, &bytes, &last])
                .await?;
            pause_at("in-batch").await;
        }
        Ok((moved, last))
    })
    .await
}

async fn verify_and_finish(
    client: &Client,
    t: &Table,
    j: Journal,
    resumed: bool,
    started: Instant,
) -> Result<Summary, Error> {
    let live_left: i64 = client
        .query_one(&sql_count_older(t), &[&j.cutoff])
        .await
        .map_err(Error::db_ctx("verification: cannot count live rows"))?
        .get(0);
    let archive_now: i64 = match j.range_start {
        Some(s) => client
            .query_one(&sql_count_archive(t), &[&s, &j.cutoff])
            .await
            .map_err(Error::db_ctx("verification: cannot count archived rows"))?
            .get(0),
        None => 0,
    };
    let totals = client
        .query_one(SQL_J_TOTALS, &[&j.id])
        .await
        .map_err(Error::db)?;
    let (moved, bytes, batches): (i64, i64, i32) = (totals.get(0), totals.get(1), totals.get(2));
    let parts = client
        .query(SQL_J_ATTACHED, &[&j.id])
        .await
        .map_err(Error::db)?;
    let by_parts: i64 = parts.iter().map(|r| r.get::<_, i64>(1)).sum();
    let names: Vec<String> = parts
        .iter()
        .map(|r| format!("{ARCHIVE_SCHEMA}.{}", r.get::<_, String>(0)))
        .collect();
    let added = archive_now - j.archive_rows_before;
    let mut problems = Vec::new();
    if live_left != 0 {
        problems.push(format!(
            "{live_left} live rows older than the cutoff remain in {}",
            t.qualified()
        ));
    }
    if moved != j.source_rows {
        problems.push(format!(
            "moved {moved} rows but the source held {} when the run started",
            j.source_rows
        ));
    }
    if added != moved {
        problems.push(format!(
            "the archive gained {added} rows in the range but {moved} were moved"
        ));
    }
    let verified = problems.is_empty();
    let verification = if verified {
        format!(
            "no live row older than the cutoff remains; {moved} rows moved = {} rows the source \
             held = {added} rows the archive gained",
            j.source_rows
        )
    } else {
        problems.join("; ")
    };
    client
        .execute(
            SQL_J_DONE,
            &[&j.id, &live_left, &added, &verified, &verification],
        )
        .await
        .map_err(Error::db)?;
    Ok(Summary {
        table: t.qualified(),
        archive_table: format!("{ARCHIVE_SCHEMA}.{}", t.name),
        cutoff: j.cutoff,
        journal_id: j.id,
        resumed,
        started_at: j.started_at,
        partitions_moved: names,
        rows_moved: moved,
        rows_moved_by_partitions: by_parts,
        rows_moved_by_batches: moved - by_parts,
        batches: batches as i64,
        bytes_moved: bytes,
        source_rows: j.source_rows,
        live_rows_left: live_left,
        archive_rows_added: added,
        verified,
        verification,
        max_live_lock_ms: 0.0,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

// ---------------------------------------------------------------------------------------
// DATE

/// Parses `--before`: `YYYY-MM-DD` (midnight UTC) or RFC 3339 with or without a zone (no
/// zone = UTC; converted to UTC), through [`crate::datetime::parse_utc`].
pub fn parse_cutoff(s: &str) -> Result<NaiveDateTime, Error> {
    crate::datetime::parse_utc(s)
        .map(|t| t.naive_utc())
        .map_err(|why| Error::Config(format!("invalid date {:?}: {why}", s.trim())))
}

/// Refuses a cutoff in the future unless forced.
pub fn check_not_future(
    cutoff: NaiveDateTime,
    now: NaiveDateTime,
    force: bool,
) -> Result<(), Error> {
    if cutoff > now && !force {
        return Err(Error::Config(format!(
            "the date {cutoff} UTC is in the future (now {}): that would archive current rows. \
             Pass --force if you mean it",
            now.format("%Y-%m-%d %H:%M:%S")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            parse_cutoff("2026-01-15").unwrap().to_string(),
            "2026-01-15 00:00:00"
        );
        assert_eq!(
            parse_cutoff("2026-01-15T12:30:00+02:00")
                .unwrap()
                .to_string(),
            "2026-01-15 10:30:00"
        );
        assert_eq!(
            parse_cutoff("2026-01-15T12:30:00Z").unwrap().to_string(),
            "2026-01-15 12:30:00"
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "15/01/2026",
            "yesterday",
            "2026-1-5",
            "2026-01-15T25:00:00Z",
        ] {
            assert!(parse_cutoff(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_cutoff("2026-01-15T12:00:00").unwrap().to_string(),
            "2026-01-15 12:00:00"
        );
        let now = parse_cutoff("2026-01-15").unwrap();
        assert!(check_not_future(parse_cutoff("2026-01-16").unwrap(), now, false).is_err());
        assert!(check_not_future(parse_cutoff("2026-01-16").unwrap(), now, true).is_ok());
        assert!(check_not_future(parse_cutoff("2026-01-14").unwrap(), now, false).is_ok());
    }
}
