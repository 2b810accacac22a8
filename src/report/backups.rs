//! Backup freshness (age of the newest verified backup against the policy) and the last
//! restore drill's result, from what `opsctl backup create|verify` and `opsctl drill`
//! write: the repository listing (`<id>.json` summaries and `<id>.status.json` beside
//! each backup, read through crate::backup::repo, no key needed) when `[backup].dir` is
//! set, and the bookkeeping tables `opsctl.backups` / `opsctl.backup_drills` (V10).
//! Not configured when there is no backup directory and no backup recorded. Also the
//! scratch databases that interrupted drills of this database left on the cluster.

use chrono::{DateTime, Utc};

use super::health::human_duration;
use super::records::{access, unreadable, Access};
use super::{unknown, Check, Ctx, Metric, State};
use crate::backup::repo;

pub const IDS: &[&str] = &[
    "backup_freshness",
    "repository_freshness",
    "restore_drill",
    "drill_scratch_databases",
];

/// Scratch databases (`opsctl_drill_…_<pid>`) that drills of this database left: the
/// newest drill with that pid in `opsctl.operations` has ended, or is still `running`
/// while no session is on its scratch database (the drill was killed).
const SQL_LEFT_SCRATCH: &str = "\
SELECT d.datname::text FROM pg_database d \
CROSS JOIN LATERAL (SELECT o.outcome FROM opsctl.operations o \
  WHERE (o.command = 'drill' OR o.command LIKE 'drill %') AND o.pid::text = substring(d.datname from '_([0-9]+)$') \
  ORDER BY o.started_at DESC, o.id DESC LIMIT 1) o \
WHERE d.datname LIKE 'opsctl\\_drill\\_%' \
  AND (o.outcome <> 'running' \
       OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)) \
ORDER BY 1";

/// Backups of this database still on record: how many, and when the newest verified one
/// (its last verify or drill succeeded) finished.
const SQL_BACKUPS: &str = "\
SELECT count(*), max(finished_at) FILTER (WHERE verify_ok OR last_drill_ok) \
FROM opsctl.backups WHERE database = $1 AND deleted_at IS NULL";

/// The newest restore drill of this database.
const SQL_LAST_DRILL: &str = "\
SELECT ok, finished_at FROM opsctl.backup_drills WHERE database = $1 \
ORDER BY finished_at DESC, id DESC LIMIT 1";

/// What the sources say, merged.
#[derive(Debug, Default)]
struct Seen {
    /// Backups found (repository and table; one backup may count twice).
    backups: i64,
    newest_verified: Option<DateTime<Utc>>,
    /// The newest drill: (ok, finished at).
    drill: Option<(bool, DateTime<Utc>)>,
    /// The backup directory is set but cannot be listed.
    dir_problem: Option<String>,
    /// opsctl.backups / opsctl.backup_drills exist and this role cannot read them.
    unreadable: Option<&'static str>,
    /// The tables exist but reading them failed.
    error: Option<Check>,
}

impl Seen {
    fn verified(&mut self, t: DateTime<Utc>) {
        self.newest_verified = self.newest_verified.max(Some(t));
    }

    fn drilled(&mut self, ok: bool, at: DateTime<Utc>) {
        if self.drill.map_or(true, |(_, t)| at > t) {
            self.drill = Some((ok, at));
        }
    }
}

fn from_repo(dir: &std::path::Path, database: &str, seen: &mut Seen) {
    if !dir.is_dir() {
        seen.dir_problem = Some(format!("backup directory {} does not exist", dir.display()));
        return;
    }
    match repo::list_db_dir(&repo::db_dir(dir, database)) {
        Ok(entries) => {
            for e in entries.iter().filter(|e| e.summary.database == database) {
                seen.backups += 1;
                if e.status.is_verified() {
                    seen.verified(e.summary.finished_at);
                }
                if let (Some(ok), Some(at)) = (e.status.drill_ok, e.status.drilled_at) {
                    seen.drilled(ok, at);
                }
            }
        }
        Err(e) => seen.dir_problem = Some(e.to_string()),
    }
}

/// The same as [`from_repo`] for a repository of any kind.
fn from_repository(r: &crate::storage::Repository, database: &str, seen: &mut Seen) {
    if let Some(dir) = crate::backup::store::local_dir(r) {
        return from_repo(dir, database, seen);
    }
    match crate::backup::store::list_database(r, database) {
        Ok(entries) => {
            for e in &entries {
                seen.backups += 1;
                if e.status.is_verified() {
                    seen.verified(e.summary.finished_at);
                }
                if let (Some(ok), Some(at)) = (e.status.drill_ok, e.status.drilled_at) {
                    seen.drilled(ok, at);
                }
            }
        }
        Err(e) => seen.dir_problem = Some(format!("repository {}: {e}", r.display())),
    }
}

async fn from_tables(ctx: &Ctx<'_>, seen: &mut Seen) {
    let c = ctx.client;
    let tables = (
        access(c, "opsctl", "backups").await,
        access(c, "opsctl", "backup_drills").await,
    );
    let (backups, drills) = match tables {
        (Ok(b), Ok(d)) => (b, d),
        (Err(e), _) | (_, Err(e)) => {
            seen.error = Some(unknown("", &e, "pg_namespace/pg_class are not readable"));
            return;
        }
    };
    match backups {
        Access::Absent => {}
        Access::Unreadable => seen.unreadable = Some("opsctl.backups"),
        Access::Readable => match c.query_one(SQL_BACKUPS, &[&ctx.dbname]).await {
            Ok(r) => {
                seen.backups += r.get::<_, i64>(0);
                if let Some(t) = r.get::<_, Option<DateTime<Utc>>>(1) {
                    seen.verified(t);
                }
            }
            Err(e) => seen.error = Some(unknown("", &e, "cannot read opsctl.backups")),
        },
    }
    match drills {
        Access::Absent => {}
        Access::Unreadable => seen.unreadable = Some("opsctl.backup_drills"),
        Access::Readable => match c.query_opt(SQL_LAST_DRILL, &[&ctx.dbname]).await {
            Ok(Some(r)) => seen.drilled(r.get(0), r.get(1)),
            Ok(None) => {}
            Err(e) => seen.error = Some(unknown("", &e, "cannot read opsctl.backup_drills")),
        },
    }
}

/// A copy of a table-reading failure under another check id.
fn as_check(id: &str, c: &Check) -> Check {
    let mut c = c.clone();
    c.id = id.to_string();
    c
}

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    if !IDS.iter().any(|i| wants(i)) {
        return Vec::new();
    }
    let mut seen = Seen::default();
    if let Some(dir) = &ctx.policy.backup.dir {
        from_repo(dir, &ctx.dbname, &mut seen);
    } else if !ctx.policy.repositories.is_empty() {
        // No [backup] dir: the first [[repositories]] entry is where backups are made.
        match crate::storage::from_policy(ctx.policy) {
            Ok(repos) => {
                if let Some(first) = repos.first() {
                    from_repository(first, &ctx.dbname, &mut seen);
                }
            }
            Err(e) => seen.dir_problem = Some(e.to_string()),
        }
    }
    from_tables(ctx, &mut seen).await;
    let mut out = Vec::new();
    if wants("backup_freshness") {
        out.push(freshness(&seen, ctx));
    }
    if wants("repository_freshness") {
        out.extend(per_repository(ctx));
    }
    if wants("restore_drill") {
        out.push(drill(&seen, ctx));
    }
    if wants("drill_scratch_databases") {
        out.push(scratch_left(ctx).await);
    }
    out
}

async fn scratch_left(ctx: &Ctx<'_>) -> Check {
    const ID: &str = "drill_scratch_databases";
    let c = ctx.client;
    match access(c, "opsctl", "operations").await {
        Err(e) => unknown(ID, &e, "pg_namespace/pg_class are not readable"),
        Ok(Access::Absent) => Check::not_configured(
            ID,
            "no opsctl.operations (migration V41): drills cannot be told apart",
        ),
        Ok(Access::Unreadable) => unreadable(ID, "opsctl.operations"),
        Ok(Access::Readable) => match c.query(SQL_LEFT_SCRATCH, &[]).await {
            Err(e) => unknown(ID, &e, "cannot read pg_database and opsctl.operations"),
            Ok(rows) => {
                let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                let check = if names.is_empty() {
                    Check::new(ID, State::Ok, "none left by drills of this database", "")
                } else {
                    Check::new(
                        ID,
                        State::Warning,
                        format!(
                            "{} left by interrupted drills: {}",
                            names.len(),
                            names.join(", ")
                        ),
                        "the next opsctl drill drops them; or drop each by hand (DROP DATABASE \
                         name)",
                    )
                };
                check.threshold("any = WARNING").metric(Metric::new(
                    "drill_scratch_databases",
                    "Scratch databases left on the cluster by interrupted restore drills.",
                    names.len() as f64,
                ))
            }
        },
    }
}

fn freshness(seen: &Seen, ctx: &Ctx<'_>) -> Check {
    const ID: &str = "backup_freshness";
    let configured =
        ctx.policy.backup.dir.is_some() || !ctx.policy.repositories.is_empty() || seen.backups > 0;
    if !configured {
        if let Some(c) = &seen.error {
            return as_check(ID, c);
        }
        if let Some(t) = seen.unreadable {
            let mut c = unreadable(ID, t);
            c.hint = format!("grant SELECT on {t} (or set [backup].dir in the policy)");
            return c;
        }
        return Check::not_configured(ID, "no [backup].dir in the policy");
    }
    let warn_h = ctx.policy.backup.max_age_hours.unwrap_or(26.0);
    let crit_h = ctx.t().backup_crit_age_hours.max(warn_h);
    let th = format!("{warn_h}h / {crit_h}h");
    let hint = "take a backup now (opsctl backup create) and verify it; check the schedule";
    if let Some(pb) = &seen.dir_problem {
        if seen.backups == 0 {
            return Check::new(ID, State::Critical, pb.clone(), hint).threshold(th);
        }
    }
    match seen.newest_verified {
        None => Check::new(
            ID,
            State::Critical,
            format!(
                "no verified backup of {} ({} backups found, none verified)",
                ctx.dbname, seen.backups
            ),
            hint,
        )
        .threshold(th),
        Some(end) => {
            let age = (Utc::now() - end).num_seconds().max(0) as f64;
            Check::new(
                ID,
                State::judge_high(age, warn_h * 3600.0, crit_h * 3600.0),
                format!(
                    "newest verified backup {} ago ({})",
                    human_duration(age),
                    crate::text::ts(&end)
                ),
                hint,
            )
            .threshold(th)
            .metric(
                Metric::new(
                    "backup_age_seconds",
                    "Age of the newest verified backup.",
                    age,
                )
                .thresholds(warn_h * 3600.0, crit_h * 3600.0),
            )
        }
    }
}

/// With several repositories in the policy: one check per repository, the age of the
/// newest backup of this database it holds (a copy counts when it is listed, i.e. it read
/// back), WARNING past `[backup] max_age_hours` or when it holds none: an offsite copy
/// that falls behind is a warning of its own, whatever the first repository holds.
fn per_repository(ctx: &Ctx<'_>) -> Vec<Check> {
    const ID: &str = "repository_freshness";
    let repos = match crate::storage::from_policy(ctx.policy) {
        Ok(r) if r.len() > 1 => r,
        _ => return Vec::new(),
    };
    let warn_h = ctx.policy.backup.max_age_hours.unwrap_or(26.0);
    let th = format!("{warn_h}h or none = WARNING");
    let newest_of = |r: &crate::storage::Repository| {
        crate::backup::store::list_database(r, &ctx.dbname)
            .map(|es| es.iter().map(|e| e.summary.finished_at).max())
    };
    let newest: Vec<_> = repos.iter().map(newest_of).collect();
    let best = newest
        .iter()
        .filter_map(|n| n.as_ref().ok().copied().flatten())
        .max();
    let mut out = Vec::new();
    for (r, n) in repos.iter().zip(newest) {
        let hint = format!(
            "copy the missing backups: the next `opsctl backup create` retries failed copies, \
             or `opsctl backup copy ID --to {}`; check that {} is reachable",
            r.name,
            r.display()
        );
        let what = format!("repository {} ({})", r.name, r.display());
        let c = match n {
            Err(e) => Check::new(
                ID,
                State::Warning,
                format!("{what}: cannot be listed: {e}"),
                hint,
            ),
            Ok(None) => Check::new(
                ID,
                State::Warning,
                format!("{what}: holds no backup of {}", ctx.dbname),
                hint,
            ),
            Ok(Some(end)) => {
                let age = (Utc::now() - end).num_seconds().max(0) as f64;
                let behind = best
                    .map(|b| (b - end).num_seconds().max(0) as f64)
                    .unwrap_or(0.0);
                let state = if age > warn_h * 3600.0 {
                    State::Warning
                } else {
                    State::Ok
                };
                Check::new(
                    ID,
                    state,
                    format!(
                        "{what}: newest backup {} ago{}",
                        human_duration(age),
                        if behind > 0.0 {
                            format!(", {} behind the newest", human_duration(behind))
                        } else {
                            String::new()
                        }
                    ),
                    hint,
                )
                .metric({
                    let mut m = Metric::new(
                        "repository_backup_age_seconds",
                        "Age of the newest backup a repository holds.",
                        age,
                    )
                    .label("repository", r.name.clone());
                    m.warn = Some(warn_h * 3600.0);
                    m
                })
            }
        };
        out.push(c.threshold(th.clone()));
    }
    out
}

fn drill(seen: &Seen, ctx: &Ctx<'_>) -> Check {
    const ID: &str = "restore_drill";
    let max_days = ctx.t().drill_max_age_days;
    let th = format!("failed CRITICAL, older than {max_days} days WARNING");
    let hint = "run opsctl drill --latest and read its differences";
    let Some((ok, at)) = seen.drill else {
        if let Some(c) = &seen.error {
            return as_check(ID, c);
        }
        if let Some(t) = seen.unreadable {
            return unreadable(ID, t);
        }
        if ctx.policy.drills.schedule.is_some() {
            return Check::new(
                ID,
                State::Warning,
                "no restore drill recorded although [drills].schedule is set",
                hint,
            )
            .threshold(th);
        }
        return Check::not_configured(ID, "no restore drill recorded");
    };
    let age = (Utc::now() - at).num_seconds().max(0) as f64;
    let state = if !ok {
        State::Critical
    } else if age > max_days * 86400.0 {
        State::Warning
    } else {
        State::Ok
    };
    Check::new(
        ID,
        state,
        format!(
            "last drill {}, {} ago",
            if ok { "passed" } else { "FAILED" },
            human_duration(age)
        ),
        hint,
    )
    .threshold(th)
    .metric(Metric::new(
        "restore_drill_ok",
        "1 when the last restore drill matched.",
        if ok { 1.0 } else { 0.0 },
    ))
    .metric(Metric::new(
        "restore_drill_age_seconds",
        "Age of the last restore drill.",
        age,
    ))
}
