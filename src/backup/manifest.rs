//! The backup manifest, sealed inside the encrypted file: per-table row counts and
//! order-independent content checksums taken in the very snapshot pg_dump reads, the
//! materialized views' row counts, the sequences' positions, the applied migration
//! version, the roles the objects reference, sizes and the SHA-256 of the plaintext dump.
//! Also the plaintext summary kept beside the file (no secrets).

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::db::{self, quote_qualified};
use crate::error::Error;

/// Session settings that make `row::text` identical on every server and session.
pub const STABLE_OUTPUT: &str = "SET datestyle = 'ISO, MDY'; SET intervalstyle = 'postgres'; \
     SET extra_float_digits = 3; SET bytea_output = 'hex'; SET TimeZone = 'UTC'; \
     SET standard_conforming_strings = on; SET statement_timeout = 0; SET row_security = off";

/// Output settings of pg_dump's session for manifest v4 besides those pg_dump sets itself
/// (DateStyle ISO, IntervalStyle postgres, extra_float_digits 3; see `setup_connection`
/// in pg_dump.c): given to pg_dump through PGOPTIONS, and set by the drill before its
/// `COPY … TO STDOUT`, so both write the same text on any server default.
pub const DUMP_PGOPTIONS: &str = "-c TimeZone=UTC -c bytea_output=hex -c lc_monetary=C";
const DRILL_COPY_OUTPUT: &str = "SET lc_monetary = 'C'";

/// The columns pg_dump's COPY lists (not dropped, not generated), in order.
const COPY_COLUMNS: &str = "SELECT a.attname::text
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attgenerated = ''
ORDER BY a.attnum";

/// Ordinary tables whose data pg_dump writes (no temp tables, no extension members).
const TABLES: &str = "SELECT n.nspname::text, c.relname::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2";

/// Roles that own or were granted something in the database.
const ROLES: &str = "SELECT DISTINCT r.rolname::text FROM pg_roles r WHERE r.oid IN (
  SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  UNION SELECT nspowner FROM pg_namespace
   WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
  UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  UNION SELECT (aclexplode(c.relacl)).grantee FROM pg_class c
   JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relacl IS NOT NULL AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg\\_%'
) AND r.rolname <> 'pg_database_owner' ORDER BY 1";

/// Sequences whose values pg_dump writes, with their increment. One this role cannot
/// read is left out: pg_dump cannot read it either and fails the backup, with the reason.
const SEQUENCES: &str = "SELECT n.nspname::text, c.relname::text, s.seqincrement
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.relkind = 'S' AND c.relpersistence <> 't'
  AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') END
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2";

/// Materialized views (pg_dump refreshes the populated ones at the end of a restore).
const MATVIEWS: &str = "SELECT n.nspname::text, c.relname::text, c.relispopulated
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2";

const HAS_HISTORY: &str = "SELECT EXISTS (SELECT 1 FROM information_schema.columns
  WHERE table_schema = 'opsctl' AND table_name = 'schema_history' AND column_name = 'version')";
const HISTORY_VERSION: &str = "SELECT max(version)::text FROM opsctl.schema_history";

/// The manifest version written by this build. Version 3 adds the sequences' positions
/// and the materialized views' row counts (older manifests have neither, and drills of
/// them compare tables only). Version 2 checksums rows with `hashtextextended` (stable
/// across PostgreSQL versions: hash partitioning relies on it; 3.5x cheaper than md5 per
/// row), as version 3 does; version 1 used md5 and is still read.
///
/// Version 4 takes each table's row count and checksum from the COPY text in pg_dump's
/// own stream (see [`super::dumpscan`]: xxh3-64 of each line, summed modulo 2^64) instead
/// of a second scan; the drill runs `COPY … TO STDOUT` under the same output settings.
/// A database whose encoding is not UTF8 gets version 3 (the drill's session is UTF8).
pub const MANIFEST_VERSION: u32 = 4;

/// The first manifest version whose table checksums come from pg_dump's stream.
pub const STREAM_SINCE: u32 = 4;

/// The first manifest version recording sequences and materialized views.
pub const SEQUENCES_SINCE: u32 = 3;

/// Row count and content checksum of one table, as manifest `version` defines it: an
/// order-independent exact numeric sum of a 64-bit hash of each row's text (v2), or of
/// the two 64-bit halves of md5(row::text) (v1).
fn stats_sql(schema: &str, table: &str, version: u32) -> String {
    let t = quote_qualified(schema, table);
    if version <= 1 {
        format!(
            "SELECT count(*)::bigint, \
               coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text, \
               coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text \
             FROM (SELECT md5(t::text) AS h FROM ONLY {t} t) s"
        )
    } else {
        format!(
            "SELECT count(*)::bigint, {}, ''::text FROM ONLY {t} t",
            content_checksum_sql("t")
        )
    }
}

/// The order-independent content checksum of the rows `alias` ranges over, as SQL text:
/// the exact numeric sum of `hashtextextended(row::text, 0)` (manifest v2, and the MOVE
/// rows of the audit log).
pub fn content_checksum_sql(alias: &str) -> String {
    format!("coalesce(sum(hashtextextended({alias}::text, 0)::numeric), 0)::text")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStat {
    pub schema: String,
    pub table: String,
    pub rows: i64,
    pub checksum: String,
}

impl From<&super::dumpscan::ScannedTable> for TableStat {
    fn from(t: &super::dumpscan::ScannedTable) -> Self {
        TableStat {
            schema: t.schema.clone(),
            table: t.table.clone(),
            rows: t.rows,
            checksum: t.checksum.clone(),
        }
    }
}

impl TableStat {
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// Where a sequence stood: `last_value` and `is_called` as `SELECT … FROM seq` shows
/// them (what pg_dump's `setval` restores), and its increment (the direction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceStat {
    pub schema: String,
    pub sequence: String,
    pub last_value: i64,
    pub is_called: bool,
    pub increment: i64,
}

impl SequenceStat {
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.sequence)
    }

    /// The value the next `nextval` returns (before bounds and cycling).
    fn next(&self) -> i128 {
        self.last_value as i128
            + if self.is_called {
                self.increment as i128
            } else {
                0
            }
    }

    /// True when `self` would hand out a value that `recorded` had already reached.
    fn behind(&self, recorded: &SequenceStat) -> bool {
        if recorded.increment >= 0 {
            self.next() < recorded.next()
        } else {
            self.next() > recorded.next()
        }
    }
}

/// A materialized view: populated or not, and its row count when populated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatviewStat {
    pub schema: String,
    pub view: String,
    pub populated: bool,
    pub rows: i64,
}

impl MatviewStat {
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.view)
    }
}

/// The sealed manifest (JSON inside the encrypted trailer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub id: String,
    pub database: String,
    pub server_version: String,
    pub pg_dump_version: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub migration_version: Option<String>,
    pub roles: Vec<String>,
    pub tables: Vec<TableStat>,
    pub dump_bytes: u64,
    pub compressed_bytes: u64,
    pub dump_sha256: String,
    /// The audit chain head in the backup's snapshot (None: no seal yet, or no audit
    /// schema). `audit verify --backups DIR` checks it is still in the chain.
    #[serde(default)]
    pub audit_seal: Option<SealRef>,
    /// Sequences, read just before pg_dump starts (version 3; empty before).
    #[serde(default)]
    pub sequences: Vec<SequenceStat>,
    /// Materialized views in the snapshot (version 3; empty before).
    #[serde(default)]
    pub matviews: Vec<MatviewStat>,
}

/// One seal of the audit chain (`audit.seals`): its number and hash. Not a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealRef {
    pub seal_id: i64,
    pub hash: String,
}

impl std::fmt::Display for SealRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seal {} {}", self.seal_id, self.hash)
    }
}

impl Manifest {
    pub fn total_rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// What the database says about its content, in the current snapshot of `client`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub tables: Vec<TableStat>,
    /// Filled by [`sequences`], not by [`compute`].
    pub sequences: Vec<SequenceStat>,
    pub matviews: Vec<MatviewStat>,
    pub roles: Vec<String>,
    pub migration_version: Option<String>,
}

/// Computes row counts and checksums (as manifest `version` defines them) of every table,
/// the materialized views' row counts (version 3 on), the referenced roles and the
/// migration version, in the snapshot `client` is in.
///
/// From version 4 on, table statistics come from the COPY text: with `from_stream`
/// (`backup create`) they are left out here, to be read from pg_dump's stream; without
/// (the drill) each table is copied out and summed the same way.
pub async fn compute(client: &Client, version: u32, from_stream: bool) -> Result<Snapshot, Error> {
    let mut out = Snapshot::default();
    let rows = client
        .query(TABLES, &[])
        .await
        .map_err(Error::db_ctx("cannot list tables"))?;
    if version >= STREAM_SINCE && !from_stream {
        client
            .batch_execute(DRILL_COPY_OUTPUT)
            .await
            .map_err(Error::db)?;
    }
    for r in rows {
        let (schema, table): (String, String) = (r.get(0), r.get(1));
        if version >= STREAM_SINCE {
            if !from_stream {
                out.tables.push(copy_stats(client, schema, table).await?);
            }
            continue;
        }
        let row = client
            .query_one(&stats_sql(&schema, &table, version), &[])
            .await
            .map_err(|e| {
                let hint = if db::describe(&e).contains("row-level security") {
                    "; row-level security would hide rows from this role: run backups and \
                     drills as a role with BYPASSRLS (or the table owner)"
                } else {
                    ""
                };
                Error::Db(format!(
                    "cannot checksum {schema}.{table}: {}{hint}",
                    db::describe(&e)
                ))
            })?;
        let (a, b): (String, String) = (row.get(1), row.get(2));
        out.tables.push(TableStat {
            rows: row.get(0),
            checksum: checksum_digest(&a, &b),
            schema,
            table,
        });
    }
    if version >= SEQUENCES_SINCE {
        out.matviews = matviews(client).await?;
    }
    out.roles = client
        .query(ROLES, &[])
        .await
        .map_err(Error::db_ctx("cannot list roles"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let has: bool = client
        .query_one(HAS_HISTORY, &[])
        .await
        .map_err(Error::db)?
        .get(0);
    if has {
        out.migration_version = client
            .query_one(HISTORY_VERSION, &[])
            .await
            .map_err(Error::db_ctx("cannot read opsctl.schema_history"))?
            .get(0);
    }
    Ok(out)
}

/// Every sequence's `last_value` and `is_called`. Sequences are not transactional: this
/// reads their current values whatever the snapshot, so `backup create` reads them just
/// before pg_dump starts; pg_dump's values are then the same or further on.
pub async fn sequences(client: &Client) -> Result<Vec<SequenceStat>, Error> {
    let list = client
        .query(SEQUENCES, &[])
        .await
        .map_err(Error::db_ctx("cannot list sequences"))?;
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let (schema, sequence, increment): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        let sql = format!(
            "SELECT last_value, is_called FROM {}",
            quote_qualified(&schema, &sequence)
        );
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(Error::db_ctx(format!(
                "cannot read sequence {schema}.{sequence}"
            )))?;
        out.push(SequenceStat {
            last_value: row.get(0),
            is_called: row.get(1),
            increment,
            schema,
            sequence,
        });
    }
    Ok(out)
}

/// Row count and checksum of one table from `COPY table (columns) TO STDOUT`, the text
/// pg_dump writes for it (manifest v4).
async fn copy_stats(client: &Client, schema: String, table: String) -> Result<TableStat, Error> {
    use futures_util::StreamExt;
    let cols: Vec<String> = client
        .query(COPY_COLUMNS, &[&schema, &table])
        .await
        .map_err(Error::db_ctx(format!(
            "cannot list the columns of {schema}.{table}"
        )))?
        .iter()
        .map(|r| db::quote_ident(&r.get::<_, String>(0)))
        .collect();
    let list = if cols.is_empty() {
        String::new()
    } else {
        format!(" ({})", cols.join(", "))
    };
    let sql = format!("COPY {}{list} TO STDOUT", quote_qualified(&schema, &table));
    let ctx = || format!("cannot copy {schema}.{table} out");
    let stream = client.copy_out(&sql).await.map_err(Error::db_ctx(ctx()))?;
    futures_util::pin_mut!(stream);
    let mut sum = super::dumpscan::LineSum::new();
    while let Some(b) = stream.next().await {
        sum.feed(&b.map_err(Error::db_ctx(ctx()))?);
    }
    let (rows, checksum) = sum.finish();
    Ok(TableStat {
        schema,
        table,
        rows,
        checksum,
    })
}

async fn matviews(client: &Client) -> Result<Vec<MatviewStat>, Error> {
    let list = client
        .query(MATVIEWS, &[])
        .await
        .map_err(Error::db_ctx("cannot list materialized views"))?;
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let (schema, view, populated): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
        let rows = if populated {
            let sql = format!(
                "SELECT count(*)::bigint FROM {}",
                quote_qualified(&schema, &view)
            );
            client
                .query_one(&sql, &[])
                .await
                .map_err(Error::db_ctx(format!("cannot count {schema}.{view}")))?
                .get(0)
        } else {
            0
        };
        out.push(MatviewStat {
            schema,
            view,
            populated,
            rows,
        });
    }
    Ok(out)
}

fn checksum_digest(a: &str, b: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{a}/{b}"));
    hex::encode(&d[..16])
}

/// Differences between what a manifest recorded and what a database holds, each naming
/// the table. Empty when everything matches exactly.
pub fn compare(expected: &Manifest, actual: &Snapshot) -> Vec<String> {
    use std::collections::BTreeMap;
    let mut diffs = Vec::new();
    let have: BTreeMap<String, &TableStat> = actual.tables.iter().map(|t| (t.name(), t)).collect();
    let want: BTreeMap<String, &TableStat> =
        expected.tables.iter().map(|t| (t.name(), t)).collect();
    for (name, w) in &want {
        match have.get(name) {
            None => diffs.push(format!("table {name}: missing from the restored database")),
            Some(h) if h.rows != w.rows => diffs.push(format!(
                "table {name}: {} rows restored, {} recorded at backup time",
                h.rows, w.rows
            )),
            Some(h) if h.checksum != w.checksum => diffs.push(format!(
                "table {name}: content checksum {} differs from {} recorded at backup time \
                 ({} rows both)",
                h.checksum, w.checksum, w.rows
            )),
            Some(_) => {}
        }
    }
    for name in have.keys() {
        if !want.contains_key(name) {
            diffs.push(format!(
                "table {name}: present in the restored database but not in the manifest"
            ));
        }
    }
    if expected.manifest_version >= SEQUENCES_SINCE {
        compare_sequences(expected, actual, &mut diffs);
        compare_matviews(expected, actual, &mut diffs);
    }
    if expected.migration_version != actual.migration_version {
        diffs.push(format!(
            "migration version: {:?} restored, {:?} recorded at backup time",
            actual.migration_version, expected.migration_version
        ));
    }
    diffs
}

/// A restored sequence may be further on than recorded (pg_dump reads sequences after the
/// manifest does, and writers may call nextval in between), never behind: behind, the
/// next insert would reuse a value the tables already hold.
fn compare_sequences(expected: &Manifest, actual: &Snapshot, diffs: &mut Vec<String>) {
    use std::collections::BTreeMap;
    let have: BTreeMap<String, &SequenceStat> =
        actual.sequences.iter().map(|s| (s.name(), s)).collect();
    for w in &expected.sequences {
        let name = w.name();
        match have.get(&name) {
            None => diffs.push(format!(
                "sequence {name}: missing from the restored database"
            )),
            Some(h) if h.behind(w) => diffs.push(format!(
                "sequence {name}: behind its backup-time position: last_value {} (is_called \
                 {}) restored, last_value {} (is_called {}) recorded at backup time; the next \
                 insert would reuse a value",
                h.last_value, h.is_called, w.last_value, w.is_called
            )),
            Some(_) => {}
        }
    }
    let want: std::collections::BTreeSet<String> =
        expected.sequences.iter().map(|s| s.name()).collect();
    for name in have.keys().filter(|n| !want.contains(*n)) {
        diffs.push(format!(
            "sequence {name}: present in the restored database but not in the manifest"
        ));
    }
}

/// pg_dump restores a populated materialized view by refreshing it from the restored
/// tables: a view that was stale at backup time differs too (refresh it before backups).
fn compare_matviews(expected: &Manifest, actual: &Snapshot, diffs: &mut Vec<String>) {
    use std::collections::BTreeMap;
    let have: BTreeMap<String, &MatviewStat> =
        actual.matviews.iter().map(|v| (v.name(), v)).collect();
    for w in &expected.matviews {
        let name = w.name();
        match have.get(&name) {
            None => diffs.push(format!(
                "materialized view {name}: missing from the restored database"
            )),
            Some(h) if h.populated != w.populated => diffs.push(format!(
                "materialized view {name}: {} after the restore, {} at backup time",
                if h.populated {
                    "populated"
                } else {
                    "not populated"
                },
                if w.populated {
                    "populated"
                } else {
                    "not populated"
                }
            )),
            Some(h) if h.rows != w.rows => diffs.push(format!(
                "materialized view {name}: {} rows after the restore, {} recorded at backup \
                 time",
                h.rows, w.rows
            )),
            Some(_) => {}
        }
    }
    let want: std::collections::BTreeSet<String> =
        expected.matviews.iter().map(|v| v.name()).collect();
    for name in have.keys().filter(|n| !want.contains(*n)) {
        diffs.push(format!(
            "materialized view {name}: present in the restored database but not in the \
             manifest"
        ));
    }
}

/// The plaintext summary beside each backup file: enough for `list` without the key, and
/// checked by `verify` against the sealed manifest. Holds no secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub summary_version: u32,
    pub id: String,
    pub database: String,
    pub file: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub duration_secs: f64,
    pub dump_bytes: u64,
    pub compressed_bytes: u64,
    pub file_bytes: u64,
    pub key_ids: Vec<String>,
    pub format_version: u8,
    pub server_version: String,
    pub migration_version: Option<String>,
    pub tables: usize,
    pub rows: i64,
    pub dump_sha256: String,
    /// The audit chain head sealed in the manifest (copied here: a hash is not a secret).
    #[serde(default)]
    pub audit_seal: Option<SealRef>,
    /// How the payload is compressed (absent in summaries written before: gzip).
    #[serde(default = "gzip")]
    pub compression: super::compress::Codec,
    /// The level it was written with (absent before: gzip's then fixed 3; none: null).
    #[serde(default = "gzip_level")]
    pub compression_level: Option<i32>,
}

fn gzip() -> super::compress::Codec {
    super::compress::Codec::Gzip
}

fn gzip_level() -> Option<i32> {
    Some(3)
}

impl Summary {
    /// Differences between this summary and the sealed manifest.
    pub fn mismatches(&self, m: &Manifest) -> Vec<String> {
        let mut d = Vec::new();
        let mut check = |what: &str, a: String, b: String| {
            if a != b {
                d.push(format!(
                    "{what}: summary says {a}, sealed manifest says {b}"
                ));
            }
        };
        check("id", self.id.clone(), m.id.clone());
        check("database", self.database.clone(), m.database.clone());
        check(
            "started_at",
            self.started_at.to_rfc3339(),
            m.started_at.to_rfc3339(),
        );
        check(
            "finished_at",
            self.finished_at.to_rfc3339(),
            m.finished_at.to_rfc3339(),
        );
        check(
            "dump_bytes",
            self.dump_bytes.to_string(),
            m.dump_bytes.to_string(),
        );
        check(
            "compressed_bytes",
            self.compressed_bytes.to_string(),
            m.compressed_bytes.to_string(),
        );
        check(
            "dump_sha256",
            self.dump_sha256.clone(),
            m.dump_sha256.clone(),
        );
        check(
            "tables",
            self.tables.to_string(),
            m.tables.len().to_string(),
        );
        check("rows", self.rows.to_string(), m.total_rows().to_string());
        let seal = |s: &Option<SealRef>| s.as_ref().map(|x| x.to_string()).unwrap_or("none".into());
        check("audit_seal", seal(&self.audit_seal), seal(&m.audit_seal));
        check(
            "migration_version",
            format!("{:?}", self.migration_version),
            format!("{:?}", m.migration_version),
        );
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(last_value: i64, is_called: bool, increment: i64) -> SequenceStat {
        SequenceStat {
            schema: "public".into(),
            sequence: "s".into(),
            last_value,
            is_called,
            increment,
        }
    }

    fn manifest(json_extra: &str, version: u32) -> Manifest {
        serde_json::from_str(&format!(
            r#"{{"manifest_version": {version}, "id": "x", "database": "d",
                "server_version": "15", "pg_dump_version": "15",
                "started_at": "2026-12-01T00:00:00Z", "finished_at": "2026-12-01T00:00:01Z",
                "migration_version": null, "roles": [], "tables": [],
                "dump_bytes": 1, "compressed_bytes": 1, "dump_sha256": "00"{json_extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_sequence_behind_fails_and_one_further_on_passes() {
        assert!(seq(3, true, 1).behind(&seq(50, true, 1)));
        assert!(seq(50, false, 1).behind(&seq(50, true, 1)));
        assert!(!seq(51, false, 1).behind(&seq(50, true, 1)));
        assert!(!seq(60, true, 1).behind(&seq(50, true, 1)));
        assert!(!seq(50, true, 1).behind(&seq(50, true, 1)));
        // Descending sequences go the other way.
        assert!(seq(-3, true, -1).behind(&seq(-50, true, -1)));
        assert!(!seq(-60, true, -1).behind(&seq(-50, true, -1)));
    }

    #[test]
    fn older_manifests_without_sequences_still_read_and_compare_tables_only() {
        let m = manifest("", 2);
        assert!(m.sequences.is_empty() && m.matviews.is_empty());
        let actual = Snapshot {
            sequences: vec![seq(1, false, 1)],
            ..Snapshot::default()
        };
        assert!(compare(&m, &actual).is_empty());
        // Version 3 compares them: an unexpected sequence is reported.
        let m3 = manifest(r#", "sequences": [], "matviews": []"#, 3);
        assert_eq!(
            compare(&m3, &actual),
            vec!["sequence public.s: present in the restored database but not in the manifest"]
        );
    }
}
