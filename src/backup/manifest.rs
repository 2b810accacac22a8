//! The backup manifest, sealed inside the encrypted file: per-table row counts and
//! order-independent content checksums taken in the very snapshot pg_dump reads, the
//! applied migration version, the roles the objects reference, sizes and the SHA-256 of
//! the plaintext dump. Also the plaintext summary kept beside the file (no secrets).

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::db::{self, quote_qualified};
use crate::error::Error;

/// Session settings that make `row::text` identical on every server and session.
pub const STABLE_OUTPUT: &str = "SET datestyle = 'ISO, MDY'; SET intervalstyle = 'postgres'; \
     SET extra_float_digits = 3; SET bytea_output = 'hex'; SET TimeZone = 'UTC'; \
     SET standard_conforming_strings = on; SET statement_timeout = 0; SET row_security = off";

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

const HAS_HISTORY: &str = "SELECT EXISTS (SELECT 1 FROM information_schema.columns
  WHERE table_schema = 'opsctl' AND table_name = 'schema_history' AND column_name = 'version')";
const HISTORY_VERSION: &str = "SELECT max(version)::text FROM opsctl.schema_history";

/// The manifest version written by this build. Version 2 checksums rows with
/// `hashtextextended` (stable across PostgreSQL versions: hash partitioning relies on
/// it; 3.5x cheaper than md5 per row); version 1 used md5 and is still read.
pub const MANIFEST_VERSION: u32 = 2;

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

impl TableStat {
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
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
    pub roles: Vec<String>,
    pub migration_version: Option<String>,
}

/// Computes row counts and checksums (as manifest `version` defines them) of every table,
/// the referenced roles and the migration version, in the snapshot `client` is in.
pub async fn compute(client: &Client, version: u32) -> Result<Snapshot, Error> {
    let mut out = Snapshot::default();
    let rows = client
        .query(TABLES, &[])
        .await
        .map_err(Error::db_ctx("cannot list tables"))?;
    for r in rows {
        let (schema, table): (String, String) = (r.get(0), r.get(1));
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
    if expected.migration_version != actual.migration_version {
        diffs.push(format!(
            "migration version: {:?} restored, {:?} recorded at backup time",
            actual.migration_version, expected.migration_version
        ));
    }
    diffs
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
