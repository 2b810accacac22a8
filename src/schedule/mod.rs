//! Scheduling from the policy: which jobs exist, when they fire, and which opsctl
//! command each one runs. The daemon loop lives in [`runner`].

pub mod cron;
pub mod exec;
pub mod history;
pub mod runner;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::duration::Age;
use crate::error::Error;
use crate::policy::Policy;
use cron::CronExpr;

/// Job names as used by the policy, `schedule list` and `--once`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    Backup,
    Prune,
    Drill,
    Vacuum,
    Reindex,
    Partitions,
    Archive,
    SizeSnapshot,
    AuditSeal,
    Basebackup,
}

impl JobKind {
    pub const ALL: [JobKind; 10] = [
        JobKind::Backup,
        JobKind::Prune,
        JobKind::Drill,
        JobKind::Vacuum,
        JobKind::Reindex,
        JobKind::Partitions,
        JobKind::Archive,
        JobKind::SizeSnapshot,
        JobKind::AuditSeal,
        JobKind::Basebackup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Prune => "prune",
            JobKind::Drill => "drill",
            JobKind::Vacuum => "vacuum",
            JobKind::Reindex => "reindex",
            JobKind::Partitions => "partitions",
            JobKind::Archive => "archive",
            JobKind::SizeSnapshot => "size-snapshot",
            JobKind::AuditSeal => "audit-seal",
            JobKind::Basebackup => "basebackup",
        }
    }

    pub fn from_name(name: &str) -> Result<JobKind, Error> {
        JobKind::ALL
            .into_iter()
            .find(|j| j.name() == name)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown job {name:?}; jobs: {}",
                    JobKind::ALL.map(JobKind::name).join(", ")
                ))
            })
    }

    /// The policy key holding this job's cron expression.
    pub fn schedule_key(self) -> &'static str {
        match self {
            JobKind::Backup => "backup.schedule",
            JobKind::Prune => "backup.prune_schedule",
            JobKind::Drill => "drills.schedule",
            JobKind::Vacuum => "maintenance.vacuum_schedule",
            JobKind::Reindex => "maintenance.reindex_schedule",
            JobKind::Partitions => "partitions.schedule",
            JobKind::Archive => "archive.schedule",
            JobKind::SizeSnapshot => "reports.size_snapshot_schedule",
            JobKind::AuditSeal => "audit.seal_schedule",
            JobKind::Basebackup => "basebackup.schedule",
        }
    }

    fn expression(self, p: &Policy) -> Option<&str> {
        match self {
            JobKind::Backup => p.backup.schedule.as_deref(),
            JobKind::Prune => p.backup.prune_schedule.as_deref(),
            JobKind::Drill => p.drills.schedule.as_deref(),
            JobKind::Vacuum => p.maintenance.vacuum_schedule.as_deref(),
            JobKind::Reindex => p.maintenance.reindex_schedule.as_deref(),
            JobKind::Partitions => p.partitions.schedule.as_deref(),
            JobKind::Archive => p.archive.schedule.as_deref(),
            JobKind::SizeSnapshot => p.reports.size_snapshot_schedule.as_deref(),
            JobKind::AuditSeal => p.audit.seal_schedule.as_deref(),
            JobKind::Basebackup => p.basebackup.schedule.as_deref(),
        }
    }

    /// The opsctl invocations (argument lists, without the program) this job runs now.
    pub fn commands(self, p: &Policy, now: DateTime<Utc>) -> Result<Vec<Vec<String>>, Error> {
        let backup_dir = || {
            p.backup
                .dir
                .as_ref()
                .map(|d| d.display().to_string())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "job {}: backup.dir is not set in the policy",
                        self.name()
                    ))
                })
        };
        let with_key = |mut args: Vec<String>| {
            if let Some(k) = &p.backup.key_file {
                args.push("--key-file".into());
                args.push(k.display().to_string());
            }
            args
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // With [[repositories]] the child works on every repository of the policy (the
        // first written, the others copied to, each pruned on its own); else on the dir.
        let repo_args = || -> Result<Vec<String>, Error> {
            if p.repositories.is_empty() {
                Ok(vec!["--dir".into(), backup_dir()?])
            } else {
                Ok(Vec::new())
            }
        };
        let with_repo = |mut v: Vec<String>| -> Result<Vec<String>, Error> {
            v.extend(repo_args()?);
            Ok(v)
        };
        Ok(match self {
            JobKind::Backup => vec![with_key(with_repo(s(&["backup", "create"]))?)],
            JobKind::Prune => vec![with_repo(s(&["backup", "prune"]))?],
            JobKind::Drill => vec![with_key(with_repo(s(&["drill", "--latest"]))?)],
            JobKind::Vacuum => vec![s(&["vacuum"])],
            JobKind::Reindex => vec![s(&["reindex"])],
            JobKind::Partitions => vec![s(&["partition", "ensure"])],
            JobKind::Archive => {
                let age = p.archive.age.as_deref().ok_or_else(|| {
                    Error::Config(
                        "job archive: archive.age is not set in the policy (e.g. \"18 months\")"
                            .into(),
                    )
                })?;
                let before = Age::parse(age)?.before(now).format("%Y-%m-%d").to_string();
                let tables = if p.archive.tables.is_empty() {
                    vec!["trades".to_string()]
                } else {
                    p.archive.tables.clone()
                };
                tables
                    .iter()
                    .map(|t| s(&["archive", "--before", &before, "--table", t]))
                    .collect()
            }
            JobKind::SizeSnapshot => vec![s(&["report", "size", "--snapshot", "--format", "json"])],
            JobKind::AuditSeal => vec![s(&["audit", "seal"])],
            JobKind::Basebackup => vec![with_key(s(&["basebackup"]))],
        })
    }
}

/// A job with its parsed schedule.
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    pub kind: JobKind,
    pub expr: CronExpr,
}

/// The scheduling plan of a policy.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tz: Tz,
    pub jobs: Vec<ScheduledJob>,
}

impl Plan {
    /// Reads every job's schedule from the policy; invalid expressions are errors that
    /// name the policy key.
    pub fn from_policy(p: &Policy) -> Result<Plan, Error> {
        let tz: Tz = p.scheduler.timezone.parse().map_err(|_| {
            Error::Config(format!(
                "scheduler.timezone {:?} is not an IANA time zone",
                p.scheduler.timezone
            ))
        })?;
        let mut jobs = Vec::new();
        for kind in JobKind::ALL {
            if let Some(expr) = kind.expression(p) {
                let expr = CronExpr::parse(expr)
                    .map_err(|e| Error::Config(format!("{}: {e}", kind.schedule_key())))?;
                jobs.push(ScheduledJob { kind, expr });
            }
        }
        Ok(Plan { tz, jobs })
    }

    /// The next fire time of a job strictly after `after`, in UTC.
    pub fn next_fire(&self, job: &ScheduledJob, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        job.expr
            .next_after(&after.with_timezone(&self.tz))
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn upcoming(
        &self,
        job: &ScheduledJob,
        after: DateTime<Utc>,
        n: usize,
    ) -> Vec<DateTime<Utc>> {
        job.expr
            .upcoming(&after.with_timezone(&self.tz), n)
            .into_iter()
            .map(|t| t.with_timezone(&Utc))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_reads_schedules_and_time_zone() {
        let p = Policy::parse(
            "[backup]\nschedule = \"0 2 * * *\"\n[scheduler]\ntimezone = \"Europe/Berlin\"\n",
            "p",
        )
        .unwrap();
        let plan = Plan::from_policy(&p).unwrap();
        assert_eq!(plan.jobs.len(), 1);
        let now = DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // 02:00 in Berlin (UTC+1 in winter) is 01:00 UTC.
        assert_eq!(
            plan.next_fire(&plan.jobs[0], now).unwrap().to_rfc3339(),
            "2026-11-26T01:00:00+00:00"
        );
    }

    #[test]
    fn invalid_expression_names_the_key() {
        let p = Policy::parse("[maintenance]\nvacuum_schedule = \"0 0 * * 9\"\n", "p").unwrap();
        let e = Plan::from_policy(&p).unwrap_err().to_string();
        assert!(
            e.starts_with("maintenance.vacuum_schedule: invalid cron day-of-week field"),
            "{e}"
        );
    }

    #[test]
    fn archive_command_uses_the_age() {
        let p = Policy::parse(
            "[archive]\nage = \"18 months\"\ntables = [\"trades\"]\n",
            "p",
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = JobKind::Archive.commands(&p, now).unwrap();
        assert_eq!(
            c,
            vec![vec![
                "archive",
                "--before",
                "2025-05-25",
                "--table",
                "trades"
            ]]
        );
        assert!(JobKind::Backup
            .commands(&p, now)
            .unwrap_err()
            .to_string()
            .contains("backup.dir"));
    }
}
