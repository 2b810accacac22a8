//! Time-partitioned tables: monthly ranges and their names, the catalog view of a table and
//! its partitions, short-lock transactions with retries, and the library calls the health
//! report uses (`rows_in_default`, `runway`). `ensure` creates months, `archive` moves old
//! rows out.

pub mod archive;
pub mod ensure;
pub mod export;

use std::future::Future;
use std::time::Duration;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::db::{self, quote_qualified};
use crate::error::Error;
use crate::policy::PartitionPolicy;

/// `lock_timeout` of every statement that takes a strong lock on a live table.
pub const LOCK_TIMEOUT_MS: u64 = 100;
/// Attempts of one short-lock transaction before giving up.
pub const LOCK_ATTEMPTS: u32 = 25;

/// A table named on the command line or in the policy, not yet looked up.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub schema: String,
    pub table: String,
    /// The time column the policy names; `None` takes the partition key from the catalog.
    pub column: Option<String>,
}

impl TableSpec {
    /// Parses `table` or `schema.table`.
    pub fn parse(s: &str) -> Result<TableSpec, Error> {
        let s = s.trim();
        let (schema, table) = match s.split_once('.') {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => ("public".to_string(), s.to_string()),
        };
        if schema.is_empty() || table.is_empty() || table.contains('.') {
            return Err(Error::Config(format!(
                "invalid table name {s:?}: give TABLE or SCHEMA.TABLE"
            )));
        }
        Ok(TableSpec {
            schema,
            table,
            column: None,
        })
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// The tables to work on: the policy's `[[partitions.tables]]`, or only `only` (looked up in
/// the policy for its column; a table the policy does not name takes its partition key).
pub fn tables_from_policy(
    policy: &PartitionPolicy,
    only: Option<&str>,
) -> Result<Vec<TableSpec>, Error> {
    let mut out = Vec::new();
    for t in &policy.tables {
        if t.interval != "month" {
            return Err(Error::Config(format!(
                "policy [[partitions.tables]] {}.{}: interval {:?} is not supported; only \"month\" is",
                t.schema, t.table, t.interval
            )));
        }
        out.push(TableSpec {
            schema: t.schema.clone(),
            table: t.table.clone(),
            column: Some(t.column.clone()),
        });
    }
    match only {
        None => Ok(out),
        Some(name) => {
            let want = TableSpec::parse(name)?;
            let explicit_schema = name.contains('.');
            Ok(vec![out
                .into_iter()
                .find(|t| t.table == want.table && (!explicit_schema || t.schema == want.schema))
                .unwrap_or(want)])
        }
    }
}

/// A partitioned table as the catalog describes it.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// The range partition key (the time column).
    pub column: String,
    /// SQL type of the time column (`timestamp without time zone`, ...).
    pub column_type: String,
    #[serde(skip)]
    pub oid: u32,
    /// Every column, in table order.
    #[serde(skip)]
    pub columns: Vec<String>,
    /// Primary-key columns with their SQL types, time column first.
    #[serde(skip)]
    pub key: Vec<(String, String)>,
    pub default_partition: Option<String>,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
    pub fn sql_name(&self) -> String {
        quote_qualified(&self.schema, &self.name)
    }
    pub fn sql_column(&self) -> String {
        db::quote_ident(&self.column)
    }
    /// The column list, quoted, for INSERT … SELECT.
    pub fn sql_columns(&self) -> String {
        self.columns
            .iter()
            .map(|c| db::quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const SQL_TABLE: &str = "\
SELECT c.oid, c.relkind::text, pt.partstrat::text, pt.partnatts::int4,
       (SELECT a.attname::text FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum = pt.partattrs[0]),
       (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum = pt.partattrs[0])
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
 WHERE n.nspname = $1 AND c.relname = $2";

const SQL_COLUMNS: &str = "\
SELECT attname::text FROM pg_attribute
 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum";

const SQL_COLUMN_SHAPE: &str = "\
SELECT attname::text, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attname";

const SQL_PRIMARY_KEY: &str = "\
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = $1 AND i.indisprimary
 ORDER BY k.ord";

/// Looks a table up and checks it is range-partitioned on one time column.
pub async fn inspect(client: &Client, spec: &TableSpec) -> Result<Table, Error> {
    let row = client
        .query_opt(SQL_TABLE, &[&spec.schema, &spec.table])
        .await
        .map_err(Error::db_ctx(format!("cannot look up {}", spec.qualified())))?
        .ok_or_else(|| {
            Error::Config(format!(
                "table {} does not exist (check the name, or the [[partitions.tables]] entry of the policy)",
                spec.qualified()
            ))
        })?;
    let oid: u32 = row.get(0);
    let relkind: String = row.get(1);
    let strat: Option<String> = row.get(2);
    let natts: Option<i32> = row.get(3);
    if relkind != "p" {
        return Err(Error::Config(format!(
            "table {} is not partitioned: only range-partitioned tables can be ensured or \
             archived. Convert it first (create a table PARTITION BY RANGE on its time column \
             with a DEFAULT partition, copy the rows, swap names) or remove it from \
             [[partitions.tables]] in the policy",
            spec.qualified()
        )));
    }
    if strat.as_deref() != Some("r") || natts != Some(1) {
        return Err(Error::Config(format!(
            "table {} is partitioned, but not by RANGE on one column; opsctl manages monthly \
             range partitions only",
            spec.qualified()
        )));
    }
    let column: String = row.get(4);
    let column_type: String = row.get(5);
    if let Some(want) = &spec.column {
        if want != &column {
            return Err(Error::Config(format!(
                "the policy names column {want:?} for {}, but the table is partitioned by {column:?}: \
                 fix the policy",
                spec.qualified()
            )));
        }
    }
    if !column_type.starts_with("timestamp") && column_type != "date" {
        return Err(Error::Config(format!(
            "table {} is partitioned by {column:?} of type {column_type}; opsctl needs a timestamp column",
            spec.qualified()
        )));
    }
    let columns = client
        .query(SQL_COLUMNS, &[&oid])
        .await
        .map_err(Error::db)?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let mut key: Vec<(String, String)> = client
        .query(SQL_PRIMARY_KEY, &[&oid])
        .await
        .map_err(Error::db)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if key.is_empty() {
        key.push((column.clone(), column_type.clone()));
    }
    // Keyset order: the time column first.
    if let Some(pos) = key.iter().position(|(c, _)| c == &column) {
        let k = key.remove(pos);
        key.insert(0, k);
    } else {
        key.insert(0, (column.clone(), column_type.clone()));
    }
    let mut t = Table {
        schema: spec.schema.clone(),
        name: spec.table.clone(),
        column,
        column_type,
        oid,
        columns,
        key,
        default_partition: None,
    };
    t.default_partition = partitions(client, oid)
        .await?
        .into_iter()
        .find(|p| p.is_default)
        .map(|p| p.name);
    Ok(t)
}

/// Column name, type and NOT NULL of a relation, sorted by name (to compare two tables).
pub async fn column_shape(client: &Client, oid: u32) -> Result<Vec<(String, String, bool)>, Error> {
    Ok(client
        .query(SQL_COLUMN_SHAPE, &[&oid])
        .await
        .map_err(Error::db)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// One partition of a table.
#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    pub schema: String,
    pub name: String,
    #[serde(skip)]
    pub oid: u32,
    pub is_default: bool,
    /// Inclusive lower bound (UTC); `None` for MINVALUE or the default partition.
    pub from: Option<NaiveDateTime>,
    /// Exclusive upper bound (UTC); `None` for MAXVALUE or the default partition.
    pub to: Option<NaiveDateTime>,
    /// Planner estimate (`reltuples`); `None` when never analyzed.
    pub estimated_rows: Option<i64>,
    pub bytes: i64,
    /// A validated CHECK constraint `<name>_range` proves the range (attach without scan).
    #[serde(skip)]
    pub has_range_check: bool,
}

impl Partition {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
    pub fn sql_name(&self) -> String {
        quote_qualified(&self.schema, &self.name)
    }
    /// True when the partition's range overlaps `[from, to)`.
    pub fn overlaps(&self, from: NaiveDateTime, to: NaiveDateTime) -> bool {
        !self.is_default && self.from.map_or(true, |f| f < to) && self.to.map_or(true, |t| t > from)
    }
}

const SQL_PARTITIONS: &str = r#"
SELECT n.nspname::text, c.relname::text, c.oid, b.expr = 'DEFAULT',
       ((regexp_match(b.expr, 'FROM \(''([^'']+)''\)'))[1])::timestamptz AT TIME ZONE 'UTC',
       ((regexp_match(b.expr, 'TO \(''([^'']+)''\)'))[1])::timestamptz AT TIME ZONE 'UTC',
       CASE WHEN c.reltuples < 0 THEN pg_stat_get_live_tuples(c.oid) ELSE c.reltuples::int8 END,
       pg_total_relation_size(c.oid),
       EXISTS (SELECT 1 FROM pg_constraint k
                WHERE k.conrelid = c.oid AND k.contype = 'c'
                  AND k.conname = c.relname || '_range' AND k.convalidated)
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS expr) b
 WHERE i.inhparent = $1
 ORDER BY b.expr = 'DEFAULT', 5 NULLS FIRST, 2"#;

/// The partitions of a partitioned table, by range (the default partition last).
pub async fn partitions(client: &Client, parent: u32) -> Result<Vec<Partition>, Error> {
    let rows = client
        .query(SQL_PARTITIONS, &[&parent])
        .await
        .map_err(Error::db_ctx("cannot list partitions"))?;
    Ok(rows
        .iter()
        .map(|r| Partition {
            schema: r.get(0),
            name: r.get(1),
            oid: r.get(2),
            is_default: r.get(3),
            from: r.get(4),
            to: r.get(5),
            estimated_rows: r.get(6),
            bytes: r.get(7),
            has_range_check: r.get(8),
        })
        .collect())
}

/// Sets the session up for partition work: UTC (month boundaries), ISO dates.
pub async fn prepare_session(client: &Client) -> Result<(), Error> {
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'")
        .await
        .map_err(Error::db)
}

/// True when `schema` exists. A table the policy names in a schema that does not exist
/// (e.g. `audit.logged_actions` before the audit migration) is skipped as not configured.
pub async fn schema_exists(client: &Client, schema: &str) -> Result<bool, Error> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .map_err(Error::db)?
        .get(0))
}

/// Names the session's actor (`app.actor`) so the audit log attributes its row changes.
pub async fn set_actor(client: &Client, actor: &str) -> Result<(), Error> {
    client
        .execute("SELECT set_config('app.actor', $1, false)", &[&actor])
        .await
        .map(|_| ())
        .map_err(Error::db_ctx("cannot set app.actor"))
}

// ---------------------------------------------------------------------------------------
// Months

/// First day of the month of `t`.
pub fn month_of(t: NaiveDateTime) -> NaiveDate {
    NaiveDate::from_ymd_opt(t.year(), t.month(), 1).expect("valid month")
}

/// `m` (a first of month) plus `n` months.
pub fn add_months(m: NaiveDate, n: i32) -> NaiveDate {
    let idx = m.year() * 12 + m.month0() as i32 + n;
    NaiveDate::from_ymd_opt(idx.div_euclid(12), idx.rem_euclid(12) as u32 + 1, 1)
        .expect("valid month")
}

/// Midnight of a date.
pub fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_hms_opt(0, 0, 0).expect("midnight")
}

/// Name of a table's monthly partition: `trades_p2026_01`.
pub fn partition_name(table: &str, month: NaiveDate) -> String {
    format!("{table}_p{:04}_{:02}", month.year(), month.month())
}

/// Name of a table's default partition: `trades_default`.
pub fn default_name(table: &str) -> String {
    format!("{table}_default")
}

/// A timestamp as an SQL literal, for DDL (partition bounds and CHECK constraints cannot
/// take bind parameters). Only ever built from a typed value, never from user text.
pub fn ts_literal(t: NaiveDateTime) -> String {
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.f"))
}

/// Now, in UTC.
pub fn now_utc() -> NaiveDateTime {
    Utc::now().naive_utc()
}

// ---------------------------------------------------------------------------------------
// Short-lock transactions

/// Runs `f` in a transaction with a short `lock_timeout`; when a lock is not granted in
/// time (or a deadlock or serialization failure), rolls back and tries again with an
/// exponential backoff and jitter. `what` names the work in messages.
pub async fn in_tx<T, F, Fut>(client: &Client, what: &str, f: F) -> Result<T, Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let begin = format!("BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'");
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        client
            .batch_execute(&begin)
            .await
            .map_err(Error::db_ctx(format!("{what}: cannot begin")))?;
        let result = match f().await {
            Ok(v) => client.batch_execute("COMMIT").await.map(|_| v),
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if db::is_lock_conflict(&e) && attempt < LOCK_ATTEMPTS => {
                let pause =
                    db::retry_pause(Duration::from_millis(100), Duration::from_secs(3), attempt);
                let wait = pause.as_millis();
                if attempt < 5 {
                    tracing::info!(
                        "{what}: lock not granted within {LOCK_TIMEOUT_MS} ms (attempt {attempt}); retrying in {wait} ms"
                    );
                } else {
                    tracing::warn!(
                        "{what}: lock not granted within {LOCK_TIMEOUT_MS} ms (attempt {attempt} of {LOCK_ATTEMPTS}); retrying in {wait} ms"
                    );
                }
                tokio::time::sleep(pause).await;
            }
            Err(e) if db::is_lock_conflict(&e) => {
                return Err(Error::Busy(format!(
                    "{what}: the lock was not granted within {LOCK_TIMEOUT_MS} ms in {attempt} attempts \
                     (long-running transactions hold it; see pg_stat_activity). Nothing was left half \
                     done: run the command again later. [{}]",
                    db::describe(&e).replace("\n  ", "; ")
                )))
            }
            Err(e) => return Err(Error::Db(format!("{what}: {}", db::describe(&e)))),
        }
    }
}

/// Test hook (only in builds with the `test-hooks` feature, which `scripts/test.sh`
/// enables): when `OPSCTL_TEST_PAUSE_AT` names `point` (a comma-separated list is fine),
/// says so on stderr and sleeps for an hour, so a test can kill the process at exactly
/// that point. Release builds have no such hook.
#[cfg(feature = "test-hooks")]
pub async fn pause_at(point: &str) {
    if let Ok(v) = std::env::var("OPSCTL_TEST_PAUSE_AT") {
        if v.split(',').any(|p| p.trim() == point) {
            eprintln!("opsctl: test hook: paused at {point}");
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

/// Without the `test-hooks` feature: nothing.
#[cfg(not(feature = "test-hooks"))]
pub async fn pause_at(_point: &str) {}

/// Receives what long work wants to tell: notices and progress. Commands render it.
pub trait Observer: Send + Sync {
    /// Something the operator should read (printed on stderr).
    fn notice(&self, _msg: &str) {}
    /// Total rows the work will move.
    fn total(&self, _rows: u64) {}
    /// Rows moved since the last call.
    fn advance(&self, _rows: u64) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

// ---------------------------------------------------------------------------------------
// Library calls for reports

/// Rows sitting in the default partition of a table (0 when it has none).
pub async fn rows_in_default(client: &Client, table: &Table) -> Result<i64, Error> {
    let Some(def) = &table.default_partition else {
        return Ok(0);
    };
    let sql = format!(
        "SELECT count(*) FROM {}",
        quote_qualified(&table.schema, def)
    );
    Ok(client
        .query_one(&sql, &[])
        .await
        .map_err(Error::db_ctx(format!("cannot count rows of {def}")))?
        .get(0))
}

/// Rows in the default partition of every table the policy names.
pub async fn rows_in_default_all(
    client: &Client,
    policy: &PartitionPolicy,
) -> Result<Vec<(String, i64)>, Error> {
    let mut out = Vec::new();
    for spec in tables_from_policy(policy, None)? {
        let t = inspect(client, &spec).await?;
        out.push((t.qualified(), rows_in_default(client, &t).await?));
    }
    Ok(out)
}

/// How far ahead a table's months exist.
#[derive(Debug, Clone, Serialize)]
pub struct Runway {
    /// A partition covers the current month.
    pub current_month: bool,
    /// Consecutive months after the current one that have a partition.
    pub future_months: u32,
    /// The last month with a partition in that run, if any (first day, UTC).
    pub last_month: Option<NaiveDate>,
}

/// The runway of a table at `now`.
pub fn runway_at(parts: &[Partition], now: NaiveDateTime) -> Runway {
    let covered = |m: NaiveDate| {
        let (f, t) = (midnight(m), midnight(add_months(m, 1)));
        parts.iter().any(|p| {
            !p.is_default && p.from.map_or(true, |x| x <= f) && p.to.map_or(true, |x| x >= t)
        })
    };
    let cur = month_of(now);
    let mut r = Runway {
        current_month: covered(cur),
        future_months: 0,
        last_month: None,
    };
    if !r.current_month {
        return r;
    }
    r.last_month = Some(cur);
    let mut m = add_months(cur, 1);
    while covered(m) && r.future_months < 1200 {
        r.future_months += 1;
        r.last_month = Some(m);
        m = add_months(m, 1);
    }
    r
}

/// The runway of a table now.
pub async fn runway(client: &Client, table: &Table) -> Result<Runway, Error> {
    let parts = partitions(client, table.oid).await?;
    Ok(runway_at(&parts, now_utc()))
}

// ---------------------------------------------------------------------------------------
// Listing

/// State of a partition in a listing.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PartitionState {
    Live,
    Default,
    Archived,
    /// Detached from the live table by an interrupted archive and not yet attached to
    /// the archive table (the next `archive` run attaches it first).
    Detached,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListedPartition {
    #[serde(flatten)]
    pub partition: Partition,
    pub state: PartitionState,
    /// An exact count where it is cheap: the default partition (the same count as
    /// `rows_in_default`). Other partitions show `estimated_rows` only.
    pub exact_rows: Option<i64>,
}

/// What `partition list` shows for one table.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub table: String,
    pub column: String,
    pub partitions: Vec<ListedPartition>,
    pub rows_in_default: i64,
    pub runway: Runway,
}

const SQL_ARCHIVE_OID: &str = "\
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'archive' AND c.relname = $1 AND c.relkind = 'p'";

/// The oid of `archive.<table>` when it exists.
pub async fn archive_oid(client: &Client, table: &str) -> Result<Option<u32>, Error> {
    Ok(client
        .query_opt(SQL_ARCHIVE_OID, &[&table])
        .await
        .map_err(Error::db)?
        .map(|r| r.get(0)))
}

const SQL_PENDING_DETACHED: &str = r#"
SELECT n.nspname::text, c.relname::text, c.oid, jp.range_from, jp.range_to,
       CASE WHEN c.reltuples < 0 THEN pg_stat_get_live_tuples(c.oid) ELSE c.reltuples::int8 END,
       pg_total_relation_size(c.oid)
  FROM opsctl.archive_journal_partitions jp
  JOIN opsctl.archive_journal j ON j.id = jp.journal_id
  JOIN pg_namespace n ON n.nspname = 'archive'
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = jp.partition
 WHERE j.table_schema = $1 AND j.table_name = $2 AND jp.state = 'detached'
 ORDER BY jp.range_from"#;

/// Months an interrupted archive detached but did not attach to the archive yet.
pub async fn pending_detached(client: &Client, table: &Table) -> Result<Vec<Partition>, Error> {
    let journal: bool = client
        .query_one(
            "SELECT to_regclass('opsctl.archive_journal_partitions') IS NOT NULL",
            &[],
        )
        .await
        .map_err(Error::db)?
        .get(0);
    if !journal {
        return Ok(Vec::new());
    }
    let rows = client
        .query(SQL_PENDING_DETACHED, &[&table.schema, &table.name])
        .await
        .map_err(Error::db)?;
    Ok(rows
        .iter()
        .map(|r| Partition {
            schema: r.get(0),
            name: r.get(1),
            oid: r.get(2),
            is_default: false,
            from: r.get(3),
            to: r.get(4),
            estimated_rows: r.get(5),
            bytes: r.get(6),
            has_range_check: true,
        })
        .collect())
}

/// Lists a table's partitions (live, default, and those archived to `archive.<table>`).
/// The default partition is counted exactly (it should be small), once, for both its row
/// and `rows_in_default`; the others carry the planner's estimate.
pub async fn list(client: &Client, table: &Table) -> Result<Listing, Error> {
    let in_default = rows_in_default(client, table).await?;
    let live = partitions(client, table.oid).await?;
    let runway = runway_at(&live, now_utc());
    let mut out: Vec<ListedPartition> = Vec::new();
    if let Some(aoid) = archive_oid(client, &table.name).await? {
        for p in partitions(client, aoid).await? {
            out.push(ListedPartition {
                partition: p,
                state: PartitionState::Archived,
                exact_rows: None,
            });
        }
    }
    for p in pending_detached(client, table).await? {
        out.push(ListedPartition {
            partition: p,
            state: PartitionState::Detached,
            exact_rows: None,
        });
    }
    for p in live {
        let state = if p.is_default {
            PartitionState::Default
        } else {
            PartitionState::Live
        };
        let exact_rows = p.is_default.then_some(in_default);
        out.push(ListedPartition {
            partition: p,
            state,
            exact_rows,
        });
    }
    Ok(Listing {
        table: table.qualified(),
        column: table.column.clone(),
        rows_in_default: in_default,
        partitions: out,
        runway,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, 1).unwrap()
    }

    #[test]
    fn months_and_names() {
        assert_eq!(add_months(d(2026, 11), 3), d(2027, 2));
        assert_eq!(add_months(d(2026, 1), -1), d(2025, 12));
        assert_eq!(add_months(d(2026, 12), 1), d(2027, 1));
        assert_eq!(partition_name("trades", d(2026, 1)), "trades_p2026_01");
        let t = NaiveDate::from_ymd_opt(2026, 3, 15)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        assert_eq!(month_of(t), d(2026, 3));
        assert_eq!(ts_literal(midnight(d(2026, 3))), "'2026-03-01 00:00:00'");
    }

    fn part(from: NaiveDate, to: NaiveDate) -> Partition {
        Partition {
            schema: "public".into(),
            name: "x".into(),
            oid: 0,
            is_default: false,
            from: Some(midnight(from)),
            to: Some(midnight(to)),
            estimated_rows: None,
            bytes: 0,
            has_range_check: false,
        }
    }

    #[test]
    fn runway_counts_consecutive_future_months() {
        let now = midnight(NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
        let parts = vec![
            part(d(2026, 10), d(2026, 11)),
            part(d(2026, 11), d(2026, 12)),
            part(d(2026, 12), d(2027, 1)),
            part(d(2027, 1), d(2027, 2)),
            part(d(2027, 3), d(2027, 4)),
        ];
        let r = runway_at(&parts, now);
        assert!(r.current_month);
        assert_eq!(r.future_months, 2);
        assert_eq!(r.last_month, Some(d(2027, 1)));
        let r = runway_at(&parts[..1], now);
        assert!(!r.current_month);
        assert_eq!(r.future_months, 0);
    }

    #[test]
    fn overlap() {
        let p = part(d(2026, 1), d(2026, 4));
        assert!(p.overlaps(midnight(d(2026, 2)), midnight(d(2026, 3))));
        assert!(!p.overlaps(midnight(d(2026, 4)), midnight(d(2026, 5))));
    }

    #[test]
    fn table_specs() {
        let pol = PartitionPolicy::default();
        let t = tables_from_policy(&pol, Some("trades")).unwrap();
        assert_eq!(t[0].column.as_deref(), Some("entry_time"));
        let t = tables_from_policy(&pol, Some("audit.log")).unwrap();
        assert_eq!(t[0].schema, "audit");
        assert!(t[0].column.is_none());
        assert!(TableSpec::parse("a.b.c").is_err());
    }
}
