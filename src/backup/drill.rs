//! The restore drill: restore a backup into a new scratch database, recompute every
//! table's row count and checksum there, compare exactly with the manifest sealed at
//! backup time, drop the scratch database, and record the result (RTO included) beside
//! the backup and in the opsctl schema.
//!
//! Fault injection for tests: when `OPSCTL_DRILL_FAULT_SQL` is set, that SQL runs in
//! the scratch database after the restore and before the comparison (to prove that a
//! changed value fails the drill). Never set it in production.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::keys::KeyMaterial;
use super::restore::{self, Options};
use super::{bookkeeping, manifest, repo, Progress};
use crate::db::{self, quote_ident, ConnSettings};
use crate::error::Error;

#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillResult {
    pub id: String,
    pub database: String,
    pub file: String,
    pub scratch_database: String,
    pub ok: bool,
    /// Restore time including authentication: the measured recovery time objective.
    pub rto_secs: f64,
    pub tables_compared: usize,
    pub rows_compared: i64,
    pub mismatches: Vec<String>,
    pub skipped_ownership: bool,
    pub bookkeeping: String,
}

fn scratch_name(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut n = format!("opsctl_drill_{clean}_{}", std::process::id());
    n.truncate(63);
    n
}

/// Runs a drill of the backup at `path` on the server `settings` points at.
pub async fn drill(
    settings: &ConnSettings,
    path: &Path,
    keys: Arc<Vec<KeyMaterial>>,
    progress: Arc<dyn Progress>,
) -> Result<DrillResult, Error> {
    let summary = repo::read_summary(path).ok();
    let id_hint = summary
        .as_ref()
        .map(|s| s.id.clone())
        .unwrap_or_else(|| "backup".into());
    let scratch = scratch_name(&id_hint);
    let conn = db::connect(settings).await?;
    let started_at = Utc::now();
    let t0 = Instant::now();
    let opts = Options {
        target_db: scratch.clone(),
        create: true,
        clean: false,
        jobs: None,
        force: false,
        tmp_dir: std::env::temp_dir(),
    };
    let drop_scratch = || async {
        conn.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&scratch)
        ))
        .await
        .map_err(Error::db_ctx(format!(
            "cannot drop the scratch database {scratch}; drop it by hand"
        )))
    };
    let restored = match restore::restore(settings, path, keys, &opts, progress).await {
        Ok(r) => r,
        Err(e) => {
            let _ = drop_scratch().await;
            return Err(e);
        }
    };
    let rto_secs = t0.elapsed().as_secs_f64();
    let m = restored.manifest.clone().expect("manifest");
    let compared = async {
        let sconn = db::connect(&settings.with_dbname(&scratch)).await?;
        sconn
            .batch_execute(manifest::STABLE_OUTPUT)
            .await
            .map_err(Error::db)?;
        if let Some(sql) = std::env::var("OPSCTL_DRILL_FAULT_SQL")
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            tracing::warn!("OPSCTL_DRILL_FAULT_SQL is set: altering the scratch database");
            sconn.batch_execute(&sql).await.map_err(Error::db)?;
        }
        manifest::compute(&sconn, m.manifest_version).await
    }
    .await;
    let dropped = drop_scratch().await;
    let actual = compared?;
    dropped?;
    let mismatches = manifest::compare(&m, &actual);
    let ok = mismatches.is_empty();
    let finished_at = Utc::now();
    repo::update_status(path, |s| {
        s.drilled_at = Some(finished_at);
        s.drill_ok = Some(ok);
        s.drill_rto_secs = Some(rto_secs);
        s.drill_tables = Some(m.tables.len());
        s.drill_rows = Some(m.total_rows());
        s.drill_mismatches = mismatches.clone();
    })?;
    let rec = bookkeeping::DrillRecord {
        backup_id: &m.id,
        database: &m.database,
        scratch: &scratch,
        started_at,
        finished_at,
        rto_secs,
        tables: m.tables.len(),
        rows: m.total_rows(),
        ok,
        mismatches: &mismatches,
    };
    let bookkeeping = match bookkeeping::record_drill(&conn, &rec).await {
        Ok(true) => "recorded in opsctl.backup_drills".to_string(),
        Ok(false) => bookkeeping::NOT_INSTALLED.to_string(),
        Err(e) => format!("not recorded in the opsctl schema: {e}"),
    };
    Ok(DrillResult {
        id: m.id.clone(),
        database: m.database.clone(),
        file: path.display().to_string(),
        scratch_database: scratch,
        ok,
        rto_secs,
        tables_compared: m.tables.len(),
        rows_compared: m.total_rows(),
        mismatches,
        skipped_ownership: restored.skipped_ownership,
        bookkeeping,
    })
}
