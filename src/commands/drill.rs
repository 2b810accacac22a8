//! `opsctl drill [FILE|ID|--latest] --dir DIR`: restore into a scratch database and
//! compare with the sealed manifest; exit 0 when everything matched, 1 otherwise,
//! 130/143 when interrupted (the scratch database dropped, nothing recorded).

use super::backup::{finish, load_keys, locate, progress, repositories, Located};
use super::{conn_settings, load_policy, print, EXIT_FAILURE, EXIT_OK};
use crate::backup::{drill, store};
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
    let located = match &a.backup {
        Some(b) => locate(b, &a.dir, &policy)?,
        None => {
            let repos = repositories(&a.dir, &policy)?;
            let conn = crate::db::connect(&settings).await?;
            let db: String = conn
                .query_one("SELECT current_database()::text", &[])
                .await
                .map_err(crate::error::Error::db)?
                .get(0);
            // The newest backup of this database any repository holds.
            let mut newest: Option<(chrono::DateTime<chrono::Utc>, String)> = None;
            for r in &repos {
                let listed = match store::list_database(r, &db) {
                    Ok(l) => l,
                    Err(e) if repos.len() > 1 => {
                        crate::logging::warn(format_args!("cannot list {}: {e}", r.display()));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                if let Some(e) = listed.last() {
                    let c = (e.summary.started_at, e.summary.id.clone());
                    if newest.as_ref().map_or(true, |n| c > *n) {
                        newest = Some(c);
                    }
                }
            }
            let Some((_, id)) = newest else {
                let first = repos[0].display();
                anyhow::bail!(
                    "no backups of {db} under {first}; run `opsctl backup create --dir {first}` first"
                );
            };
            let copies = store::find(&id, &repos)?;
            Located {
                repos,
                file: None,
                copies,
            }
        }
    };
    let keys = std::sync::Arc::new(load_keys(&a.keys, &policy)?);
    let pb = progress("restoring");
    let stop = Stop::on_signals()?;
    let (r, used, _fetched) = super::restore::first_good(&located, |path| {
        let (keys, pb, stop) = (keys.clone(), pb.clone(), stop.clone());
        let settings = &settings;
        async move { drill::drill(settings, &path, keys, pb, stop).await }
    })
    .await?;
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
    if let (Some((name, url)), false) = (&used, a.output.format == Format::Json) {
        print(&format!("read from repository {name} ({url})\n"));
    }
    if a.output.format == Format::Json {
        let mut v = serde_json::to_value(&r)?;
        if let Some((name, url)) = &used {
            v["repository"] = name.clone().into();
            v["repository_url"] = url.clone().into();
        }
        print(&(serde_json::to_string_pretty(&v)? + "\n"));
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
