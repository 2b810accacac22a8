//! Status of backups and drills in the `opsctl` schema (migration V10). Every function
//! is a no-op that says so when the schema is not installed.

use tokio_postgres::Client;

use super::manifest::Summary;
use crate::error::Error;

const INSTALLED: &str = "SELECT to_regclass('opsctl.backups') IS NOT NULL \
     AND to_regclass('opsctl.backup_drills') IS NOT NULL";

const INSERT_BACKUP: &str = "INSERT INTO opsctl.backups (id, database, file_path, started_at, \
     finished_at, dump_bytes, compressed_bytes, file_bytes, key_ids, dump_sha256, tables, rows, \
     migration_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (id) DO UPDATE SET file_path = EXCLUDED.file_path, \
     file_bytes = EXCLUDED.file_bytes, key_ids = EXCLUDED.key_ids";

const UPDATE_VERIFY: &str = "UPDATE opsctl.backups SET verified_at = $2, verify_ok = $3, \
     verify_reason = $4 WHERE id = $1";

const INSERT_DRILL: &str = "INSERT INTO opsctl.backup_drills (backup_id, database, \
     scratch_database, started_at, finished_at, rto_seconds, tables_compared, rows_compared, ok, \
     mismatches) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const UPDATE_DRILL: &str =
    "UPDATE opsctl.backups SET last_drill_at = $2, last_drill_ok = $3 WHERE id = $1";

const MARK_DELETED: &str =
    "UPDATE opsctl.backups SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL";

/// The message used when the schema is missing.
pub const NOT_INSTALLED: &str = "opsctl bookkeeping tables are not installed in this database \
     (migration V10); status is kept in the backup directory only — apply the migrations to \
     record it in the opsctl schema too";

pub async fn installed(client: &Client) -> Result<bool, Error> {
    Ok(client
        .query_one(INSTALLED, &[])
        .await
        .map_err(Error::db)?
        .get(0))
}

/// Records a new backup. Returns false when the schema is not installed.
pub async fn record_backup(client: &Client, s: &Summary, path: &str) -> Result<bool, Error> {
    if !installed(client).await? {
        return Ok(false);
    }
    client
        .execute(
            INSERT_BACKUP,
            &[
                &s.id,
                &s.database,
                &path,
                &s.started_at,
                &s.finished_at,
                &(s.dump_bytes as i64),
                &(s.compressed_bytes as i64),
                &(s.file_bytes as i64),
                &s.key_ids,
                &s.dump_sha256,
                &(s.tables as i32),
                &s.rows,
                &s.migration_version,
            ],
        )
        .await
        .map_err(Error::db_ctx("cannot record the backup in opsctl.backups"))?;
    Ok(true)
}

pub async fn record_verify(
    client: &Client,
    id: &str,
    at: chrono::DateTime<chrono::Utc>,
    ok: bool,
    reason: Option<&str>,
) -> Result<bool, Error> {
    if !installed(client).await? {
        return Ok(false);
    }
    client
        .execute(UPDATE_VERIFY, &[&id, &at, &ok, &reason])
        .await
        .map_err(Error::db_ctx("cannot record the verification"))?;
    Ok(true)
}

/// One drill result as stored.
pub struct DrillRecord<'a> {
    pub backup_id: &'a str,
    pub database: &'a str,
    pub scratch: &'a str,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub rto_secs: f64,
    pub tables: usize,
    pub rows: i64,
    pub ok: bool,
    pub mismatches: &'a [String],
}

pub async fn record_drill(client: &Client, d: &DrillRecord<'_>) -> Result<bool, Error> {
    if !installed(client).await? {
        return Ok(false);
    }
    let mism = serde_json::json!(d.mismatches);
    client
        .execute(
            INSERT_DRILL,
            &[
                &d.backup_id,
                &d.database,
                &d.scratch,
                &d.started_at,
                &d.finished_at,
                &d.rto_secs,
                &(d.tables as i32),
                &d.rows,
                &d.ok,
                &mism,
            ],
        )
        .await
        .map_err(Error::db_ctx(
            "cannot record the drill in opsctl.backup_drills",
        ))?;
    client
        .execute(UPDATE_DRILL, &[&d.backup_id, &d.finished_at, &d.ok])
        .await
        .map_err(Error::db_ctx("cannot record the drill in opsctl.backups"))?;
    Ok(true)
}

pub async fn record_deleted(client: &Client, id: &str) -> Result<bool, Error> {
    if !installed(client).await? {
        return Ok(false);
    }
    client
        .execute(MARK_DELETED, &[&id])
        .await
        .map_err(Error::db_ctx("cannot record the deletion"))?;
    Ok(true)
}
