//! The restore drill: restore a backup into a new scratch database, recompute every
//! table's row count and checksum, the materialized views' row counts and the sequences'
//! positions there, compare them with the manifest sealed at backup time, drop the
//! scratch database, and record the result (RTO included) beside the backup and in the
//! opsctl schema.
//!
//! SIGINT/SIGTERM stop the drill: pg_restore is stopped, the scratch database dropped,
//! nothing recorded, and [`Error::Interrupted`] says so. Before it starts, a drill
//! removes the scratch databases earlier drills left (killed before they could): only
//! those named `opsctl_drill_…_<pid>` whose drill the operations log shows ended, or
//! still `running` on this host although its process is gone (that row is then closed
//! as a failure).
//!
//! Fault injection for tests (only with the cargo feature `test-hooks`): when
//! `OPSCTL_DRILL_FAULT_SQL` is set, that SQL runs in the scratch database after the
//! restore and before the comparison (to prove that a changed value fails the drill).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::keys::KeyMaterial;
use super::restore::{self, Options};
use super::{bookkeeping, manifest, repo, Progress};
use crate::db::{self, quote_ident, ConnSettings};
use crate::error::Error;
use crate::interrupt::{self, Stop};
use crate::oplog;

/// The prefix of every scratch database; the drill's pid ends the name.
pub const SCRATCH_PREFIX: &str = "opsctl_drill_";

/// Scratch databases on the cluster, and whether any session is on each.
const SCRATCH_DATABASES: &str = "SELECT d.datname::text, EXISTS (SELECT 1 FROM \
     pg_stat_activity a WHERE a.datname = d.datname) FROM pg_database d \
     WHERE d.datname LIKE 'opsctl\\_drill\\_%' ORDER BY 1";

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
    /// Sequences and materialized views compared (0 for manifests before version 3).
    pub sequences_compared: usize,
    pub matviews_compared: usize,
    pub mismatches: Vec<String>,
    pub skipped_ownership: bool,
    pub bookkeeping: String,
    /// Scratch databases of earlier, interrupted drills that this drill dropped.
    pub removed_leftovers: Vec<String>,
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
    let pid = std::process::id().to_string();
    let mut n = format!("{SCRATCH_PREFIX}{clean}");
    n.truncate(63 - pid.len() - 1);
    format!("{n}_{pid}")
}

/// The pid at the end of a scratch database's name.
fn scratch_pid(name: &str) -> Option<i32> {
    name.strip_prefix(SCRATCH_PREFIX)?
        .rsplit('_')
        .next()?
        .parse()
        .ok()
}

fn process_alive(pid: i32) -> bool {
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Drops the scratch databases that earlier drills of this database left behind (see
/// the module doc); returns their names. Problems are logged, never fatal: the drill
/// itself does not depend on them, and `health` reports what remains.
async fn remove_leftovers(conn: &tokio_postgres::Client) -> Vec<String> {
    let own = std::process::id() as i32;
    let host = Some(oplog::hostname());
    match oplog::close_vanished(conn, "drill", host.as_deref(), own, process_alive).await {
        Ok(n) if n > 0 => tracing::warn!(
            "closed {n} drill(s) in opsctl.operations whose process ended without recording \
             an outcome"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot check earlier drills in opsctl.operations: {e}"),
    }
    let rows = match conn.query(SCRATCH_DATABASES, &[]).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot list scratch databases: {}", db::describe(&e));
            return Vec::new();
        }
    };
    let candidates: Vec<(String, i32)> = rows
        .iter()
        .filter(|r| !r.get::<_, bool>(1))
        .filter_map(|r| {
            let name: String = r.get(0);
            let pid = scratch_pid(&name)?;
            (pid != own).then_some((name, pid))
        })
        .collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    let pids: Vec<i32> = candidates.iter().map(|c| c.1).collect();
    let ended = match oplog::ended_runs(conn, "drill", &pids).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("cannot read earlier drills in opsctl.operations: {e}");
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for (name, pid) in candidates {
        if !ended.contains(&pid) {
            continue;
        }
        // Without FORCE: a database someone is using is never dropped from under them.
        match conn
            .batch_execute(&format!("DROP DATABASE {}", quote_ident(&name)))
            .await
        {
            Ok(()) => removed.push(name),
            Err(e) => tracing::warn!(
                "cannot drop {name}, left by an earlier drill: {}",
                db::describe(&e)
            ),
        }
    }
    removed
}

/// Runs a drill of the backup at `path` on the server `settings` points at.
pub async fn drill(
    settings: &ConnSettings,
    path: &Path,
    keys: Arc<Vec<KeyMaterial>>,
    progress: Arc<dyn Progress>,
    stop: Stop,
) -> Result<DrillResult, Error> {
    let summary = repo::read_summary(path).ok();
    let id_hint = summary
        .as_ref()
        .map(|s| s.id.clone())
        .unwrap_or_else(|| "backup".into());
    let scratch = scratch_name(&id_hint);
    let conn = db::connect(settings).await?;
    let removed_leftovers = remove_leftovers(&conn).await;
    let started_at = Utc::now();
    let t0 = Instant::now();
    let opts = Options {
        target_db: scratch.clone(),
        create: true,
        clean: false,
        jobs: None,
        force: false,
        tmp_dir: std::env::temp_dir(),
        stop: stop.clone(),
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
        #[cfg(feature = "test-hooks")]
        if let Some(sql) = std::env::var("OPSCTL_DRILL_FAULT_SQL")
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            tracing::warn!("OPSCTL_DRILL_FAULT_SQL is set: altering the scratch database");
            sconn.batch_execute(&sql).await.map_err(Error::db)?;
        }
        interrupt::pause_at("drill-comparing", &stop).await;
        let mut snap = manifest::compute(&sconn, m.manifest_version, false).await?;
        if m.manifest_version >= manifest::SEQUENCES_SINCE {
            snap.sequences = manifest::sequences(&sconn).await?;
        }
        Ok::<_, Error>(snap)
    };
    // On a signal the comparison (queries only) is abandoned and its session closed.
    let compared = tokio::select! {
        r = compared => r,
        signal = stop.wait() => Err(Error::Interrupted { signal, undone: String::new() }),
    };
    let dropped = drop_scratch().await;
    if let (Err(_), Some(signal)) = (&compared, stop.signal()) {
        return Err(Error::Interrupted {
            signal,
            undone: match dropped {
                Ok(()) => format!("dropped the scratch database {scratch}; nothing was recorded"),
                Err(e) => format!("{e}; nothing was recorded"),
            },
        });
    }
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
        sequences_compared: m.sequences.len(),
        matviews_compared: m.matviews.len(),
        mismatches,
        skipped_ownership: restored.skipped_ownership,
        bookkeeping,
        removed_leftovers,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn scratch_names_end_with_the_pid_and_fit() {
        let pid = std::process::id() as i32;
        let short = super::scratch_name("20261202T154713Z-ab12");
        assert_eq!(super::scratch_pid(&short), Some(pid));
        assert!(short.starts_with("opsctl_drill_20261202t154713z_ab12_"));
        let long = super::scratch_name(&"x".repeat(100));
        assert!(long.len() <= 63);
        assert_eq!(super::scratch_pid(&long), Some(pid));
        assert_eq!(super::scratch_pid("opsctl_drill_by_hand"), None);
        assert_eq!(super::scratch_pid("other_123"), None);
    }
}
