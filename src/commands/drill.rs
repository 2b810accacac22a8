//! `opsctl drill [FILE|ID|--latest] --dir DIR`: restore into a scratch database and
//! compare with the sealed manifest; exit 0 when everything matched, 1 otherwise,
//! 130/143 when interrupted (the scratch database dropped, nothing recorded).

use super::backup::{backup_dir, finish, load_keys, progress, resolve_backup};
use super::{conn_settings, load_policy, print, EXIT_FAILURE, EXIT_OK};
use crate::backup::{drill, repo};
use crate::cli::{DrillArgs, Format};
use crate::error::Error;
use crate::interrupt::Stop;

pub async fn run(a: DrillArgs) -> u8 {
    if a.pitr {
        return super::pitr::drill_pitr(a).await;
    }
    finish(run_inner(a).await)
}

async fn run_inner(a: DrillArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&a.policy)?;
    let settings = conn_settings(&a.connect)?;
    let path = match &a.backup {
        Some(b) => resolve_backup(b, &a.dir, &policy)?,
        None => {
            let dir = backup_dir(&a.dir, &policy)?;
            let conn = crate::db::connect(&settings).await?;
            let db: String = conn
                .query_one("SELECT current_database()::text", &[])
                .await
                .map_err(crate::error::Error::db)?
                .get(0);
            repo::list_db_dir(&repo::db_dir(&dir, &db))?
                .pop()
                .map(|e| e.path)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no backups of {db} under {}; run `opsctl backup create --dir {}` first",
                        dir.display(),
                        dir.display()
                    )
                })?
        }
    };
    let keys = load_keys(&a.keys, &policy)?;
    let pb = progress("restoring");
    let stop = Stop::on_signals()?;
    let r = drill::drill(
        &settings,
        &path,
        std::sync::Arc::new(keys),
        pb.clone(),
        stop,
    )
    .await;
    drop(pb);
    let r = match r {
        Err(Error::Interrupted { signal, undone }) => {
            return Ok(super::restore::interrupted("drill", signal, &undone))
        }
        r => r?,
    };
    if !r.removed_leftovers.is_empty() {
        eprintln!(
            "note: dropped {} scratch database(s) left by earlier interrupted drills: {}",
            r.removed_leftovers.len(),
            r.removed_leftovers.join(", ")
        );
    }
    if a.output.format == Format::Json {
        print(&(serde_json::to_string_pretty(&r)? + "\n"));
    } else if r.ok {
        print(&format!(
            "drill PASSED for backup {} of {}: restored into {} in {:.1}s (RTO), {} tables and \
             {} rows match the manifest exactly{}; scratch database dropped; {}\n",
            r.id,
            r.database,
            r.scratch_database,
            r.rto_secs,
            r.tables_compared,
            r.rows_compared,
            if r.sequences_compared + r.matviews_compared > 0 {
                format!(
                    ", {} sequences are where they were and {} materialized views have their \
                     row counts",
                    r.sequences_compared, r.matviews_compared
                )
            } else {
                String::new()
            },
            r.bookkeeping
        ));
    } else {
        let mut out = format!(
            "drill FAILED for backup {} of {}: {} after restoring in {:.1}s:\n",
            r.id,
            r.database,
            crate::text::plural(r.mismatches.len(), "difference"),
            r.rto_secs
        );
        for m in &r.mismatches {
            out.push_str(&format!("  - {m}\n"));
        }
        out.push_str(&format!("scratch database dropped; {}\n", r.bookkeeping));
        print(&out);
    }
    Ok(if r.ok { EXIT_OK } else { EXIT_FAILURE })
}
