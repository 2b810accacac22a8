//! Retention of base backups (`[basebackup] keep_last`, `keep_days`) and of archived WAL:
//! a WAL file is removed only when no kept base backup of its cluster needs it (it lies
//! before the start of the oldest kept one). Timeline history files are always kept.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::catalog::{self, parse_segment, wal_name_of};
use crate::error::Error;
use crate::policy::BasebackupPolicy;
use crate::storage::Repository;

#[derive(Debug, Clone, Serialize)]
pub struct BaseDecision {
    pub id: String,
    pub system_identifier: String,
    pub stopped_at: DateTime<Utc>,
    pub keep: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct BasePrune {
    pub decisions: Vec<BaseDecision>,
    /// Per cluster: the oldest WAL segment kept (what the oldest kept base backup needs).
    pub wal_kept_from: Vec<(String, String)>,
    /// WAL files removed (or that would be, on a dry run).
    pub wal_removed: Vec<String>,
}

/// Decides and (unless `dry_run`) removes.
pub fn prune(
    repo: &Repository,
    p: &BasebackupPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<BasePrune, Error> {
    let all = catalog::base_backups(repo)?;
    let mut out = BasePrune::default();
    let mut sysids: Vec<String> = all
        .iter()
        .map(|b| b.summary.system_identifier.clone())
        .collect();
    sysids.sort();
    sysids.dedup();
    let keep_last = p.keep_last.max(1) as usize;
    for sysid in sysids {
        let mut of: Vec<&catalog::BaseEntry> = all
            .iter()
            .filter(|b| b.summary.system_identifier == sysid)
            .collect();
        // Newest first.
        of.sort_by_key(|b| std::cmp::Reverse(b.summary.stopped_at));
        let mut oldest_kept_start: Option<u64> = None;
        for (i, b) in of.iter().enumerate() {
            let age_days = (now - b.summary.stopped_at).num_seconds() as f64 / 86400.0;
            let (keep, reason) = if i < keep_last {
                (true, format!("one of the newest {keep_last}"))
            } else if p.keep_days > 0 && age_days < p.keep_days as f64 {
                (true, format!("younger than {} days", p.keep_days))
            } else {
                (false, format!("older than the newest {keep_last}"))
            };
            if keep {
                let s = b.summary.start_lsn.segno();
                oldest_kept_start = Some(oldest_kept_start.map_or(s, |o| o.min(s)));
            }
            out.decisions.push(BaseDecision {
                id: b.summary.id.clone(),
                system_identifier: sysid.clone(),
                stopped_at: b.summary.stopped_at,
                keep,
                reason,
            });
            if !keep && !dry_run {
                // The summary first: from then on the backup is not listed, even if the
                // tar removal is interrupted.
                repo.delete(&b.summary_key())?;
                for o in repo.list(&b.prefix)? {
                    repo.delete(&o.key)?;
                }
            }
        }
        let Some(first) = oldest_kept_start else {
            continue;
        };
        out.wal_kept_from.push((
            sysid.clone(),
            catalog::segment_name(of[0].summary.timeline, first),
        ));
        for o in repo.list(&catalog::wal_prefix(&sysid))? {
            let Some(name) = wal_name_of(&o.key) else {
                continue;
            };
            if name.ends_with(".history") {
                continue;
            }
            let seg = name.get(0..24).and_then(parse_segment);
            if seg.is_some_and(|(_, s)| s < first) {
                if !dry_run {
                    repo.delete(&o.key)?;
                }
                out.wal_removed.push(name);
            }
        }
    }
    out.decisions.sort_by_key(|a| a.stopped_at);
    Ok(out)
}
