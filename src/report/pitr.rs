//! `pitr_window`: how far point-in-time recovery reaches and whether it is current. Reads
//! the base backups and archived WAL of the policy's first repository (no key needed):
//! the window runs from the oldest base backup's stop to the end of the unbroken WAL
//! after the newest; the newest base backup's age is judged against `[basebackup]
//! schedule`; the last PITR drill and its RTO are shown.
//!
//! CRITICAL: the WAL that makes the newest base backup consistent is not all archived
//! (it cannot be restored). WARNING: no base backup although `[basebackup] schedule` is
//! set; a scheduled base backup is missing (the schedule fired more than
//! [`SCHEDULE_GRACE_SECS`] ago and nothing newer exists); without a schedule, the newest
//! is older than [`UNSCHEDULED_WARN_DAYS`] days; the last PITR drill failed.

use chrono::{DateTime, Utc};

use super::health::human_duration;
use super::{Check, Ctx, Metric, State};
use crate::pitr::catalog;
use crate::storage::Repository;

pub const IDS: &[&str] = &["pitr_window"];

/// Time a scheduled base backup may take before its absence is a WARNING.
pub const SCHEDULE_GRACE_SECS: i64 = 2 * 3600;
/// Without `[basebackup] schedule`: the newest base backup older than this is a WARNING.
pub const UNSCHEDULED_WARN_DAYS: i64 = 8;

const ID: &str = "pitr_window";
const SQL_SYSID: &str = "SELECT system_identifier::text FROM pg_control_system()";

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    if !wants(ID) {
        return Vec::new();
    }
    // The connected cluster's base backups only (a repository may hold an old cluster's);
    // when the function is not readable, every base backup counts.
    let sysid: Option<String> = ctx
        .client
        .query_one(SQL_SYSID, &[])
        .await
        .ok()
        .and_then(|r| r.try_get(0).ok());
    let repo = match crate::storage::resolve(None, ctx.policy) {
        Ok(r) => r,
        Err(_) => {
            return vec![Check::not_configured(
                ID,
                "no repository in the policy ([backup] dir or [[repositories]])",
            )]
        }
    };
    vec![judge(&repo, ctx.policy, sysid.as_deref(), Utc::now())]
}

/// The check from the repository's catalog (no database needed: tests call it directly).
pub fn judge(
    repo: &Repository,
    policy: &crate::policy::Policy,
    sysid: Option<&str>,
    now: DateTime<Utc>,
) -> Check {
    let schedule = policy.basebackup.schedule.as_deref();
    let bases = match catalog::base_backups(repo) {
        Ok(b) => b,
        Err(e) => {
            return Check::new(
                ID,
                State::Unknown,
                format!("cannot read the base backups in {}", repo.display()),
                e.to_string(),
            )
        }
    };
    let bases: Vec<_> = bases
        .into_iter()
        .filter(|b| sysid.map_or(true, |s| b.summary.system_identifier == s))
        .collect();
    let (Some(oldest), Some(newest)) = (bases.first(), bases.last()) else {
        if schedule.is_some() {
            return Check::new(
                ID,
                State::Warning,
                format!(
                    "no base backup of this cluster in {}: point-in-time recovery has nothing \
                     to start from",
                    repo.display()
                ),
                "take one now (opsctl basebackup) and check the scheduler's basebackup job \
                 (opsctl schedule history)",
            );
        }
        return Check::not_configured(
            ID,
            "no base backup in the repository and no [basebackup] schedule",
        );
    };
    let archive = match catalog::archive(repo, &newest.summary.system_identifier) {
        Ok(a) => a,
        Err(e) => {
            return Check::new(
                ID,
                State::Unknown,
                format!("cannot list the archived WAL in {}", repo.display()),
                e.to_string(),
            )
        }
    };
    let newest_window = catalog::window(&newest.summary, &archive);
    let from = catalog::window(&oldest.summary, &archive).from_time;
    let age = (now - newest.summary.stopped_at).num_seconds().max(0);
    let status = catalog::read_status(repo, newest);
    let drill = match (status.drill_ok, status.drill_rto_secs) {
        (Some(true), Some(rto)) => format!("; PITR drill ok, RTO {}", human_duration(rto)),
        (Some(true), None) => "; PITR drill ok".to_string(),
        (Some(false), _) => "; last PITR drill FAILED".to_string(),
        _ => "; not drilled".to_string(),
    };
    let mut metrics = vec![Metric::new(
        "pitr_newest_base_backup_age_seconds",
        "Age of the newest base backup (its stop time)",
        age as f64,
    )];
    if let Some(rto) = status.drill_rto_secs {
        metrics.push(Metric::new(
            "pitr_drill_rto_seconds",
            "Restore + replay time of the newest base backup's last PITR drill",
            rto,
        ));
    }
    let Some(to) = newest_window.to_time else {
        let mut c = Check::new(
            ID,
            State::Critical,
            format!(
                "base backup {} cannot be restored: the WAL from its start ({}) to its stop \
                 ({}) is not all archived{drill}",
                newest.summary.id, newest.summary.start_wal, newest.summary.stop_wal
            ),
            "find the gap with opsctl wal verify, check archiving (opsctl wal status), then \
             take a new base backup (opsctl basebackup)",
        )
        .threshold("the newest base backup restorable");
        for m in metrics {
            c = c.metric(m);
        }
        return c;
    };
    metrics.push(Metric::new(
        "pitr_window_seconds",
        "Length of the point-in-time recovery window (oldest base backup to newest WAL)",
        (to - from).num_seconds().max(0) as f64,
    ));
    let value = format!(
        "window {} → {} ({}); newest base backup {} ago{drill}",
        crate::text::ts(&from),
        crate::text::ts(&to),
        crate::text::plural(bases.len() as u64, "base backup"),
        human_duration(age as f64),
    );
    let due = schedule.and_then(|_| {
        let plan = crate::schedule::Plan::from_policy(policy).ok()?;
        let job = plan
            .jobs
            .iter()
            .find(|j| j.kind == crate::schedule::JobKind::Basebackup)?;
        plan.next_fire(job, newest.summary.stopped_at)
    });
    let (state, threshold, hint) = match (schedule, due) {
        (Some(expr), Some(due)) => {
            let late = (now - due).num_seconds() > SCHEDULE_GRACE_SECS;
            (
                if late { State::Warning } else { State::Ok },
                format!(
                    "a base backup per [basebackup] schedule \"{expr}\" (+{}h to finish)",
                    SCHEDULE_GRACE_SECS / 3600
                ),
                if late {
                    format!(
                        "the scheduled base backup due {} is missing: see opsctl schedule \
                         history, then run opsctl basebackup",
                        crate::text::ts(&due)
                    )
                } else {
                    "restore with opsctl restore --pitr; prove it with opsctl drill --pitr"
                        .to_string()
                },
            )
        }
        _ => {
            let late = age > UNSCHEDULED_WARN_DAYS * 86_400;
            (
                if late { State::Warning } else { State::Ok },
                format!(
                    "newest base backup < {UNSCHEDULED_WARN_DAYS} days (no [basebackup] schedule)"
                ),
                if late {
                    "take a base backup (opsctl basebackup) and set [basebackup] schedule".into()
                } else {
                    "restore with opsctl restore --pitr; prove it with opsctl drill --pitr"
                        .to_string()
                },
            )
        }
    };
    let state = if status.drill_ok == Some(false) && state == State::Ok {
        State::Warning
    } else {
        state
    };
    let hint = if status.drill_ok == Some(false) {
        format!(
            "the last PITR drill failed ({}): run opsctl drill --pitr and read its error",
            status
                .drill_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        )
    } else {
        hint
    };
    let mut c = Check::new(ID, state, value, hint).threshold(threshold);
    for m in metrics {
        c = c.metric(m);
    }
    c
}
