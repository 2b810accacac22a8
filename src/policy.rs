//! The policy file (`--policy FILE` / `OPSCTL_POLICY`): model, built-in defaults, and
//! validation that names file:line:col for every problem.
//!
//! Every section has defaults, so a missing file or section means "built-in policy".
//! Capability modules own their section's meaning; this module owns reading it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The whole policy. Unknown keys anywhere are rejected.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub backup: BackupPolicy,
    pub drills: DrillPolicy,
    pub partitions: PartitionPolicy,
    pub archive: ArchivePolicy,
    pub maintenance: MaintenancePolicy,
    pub reports: ReportPolicy,
    pub audit: AuditPolicy,
    pub scheduler: SchedulerPolicy,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupPolicy {
    /// Backup repository directory; unset means "backups not configured".
    pub dir: Option<PathBuf>,
    /// Key file (32 bytes, mode 0600).
    pub key_file: Option<PathBuf>,
    /// Cron expression for scheduled backups.
    pub schedule: Option<String>,
    /// Cron expression for scheduled pruning by the retention below.
    pub prune_schedule: Option<String>,
    pub retention: Retention,
    /// Warn when the newest verified backup is older than this many hours.
    pub max_age_hours: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Always keep the newest N backups.
    pub keep_last: u32,
    /// Keep one backup per day for this many days.
    pub daily: u32,
    /// Keep one backup per ISO week for this many weeks.
    pub weekly: u32,
    /// Keep one backup per month for this many months.
    pub monthly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 3,
            daily: 7,
            weekly: 4,
            monthly: 6,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrillPolicy {
    pub schedule: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartitionPolicy {
    /// Future months kept ready.
    pub premake: u32,
    pub schedule: Option<String>,
    pub tables: Vec<PartitionedTable>,
}

impl Default for PartitionPolicy {
    fn default() -> Self {
        PartitionPolicy {
            premake: 3,
            schedule: None,
            tables: vec![PartitionedTable {
                table: "trades".into(),
                schema: "public".into(),
                column: "entry_time".into(),
                interval: "month".into(),
            }],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionedTable {
    pub table: String,
    #[serde(default = "public")]
    pub schema: String,
    pub column: String,
    #[serde(default = "month")]
    pub interval: String,
}

fn public() -> String {
    "public".into()
}
fn month() -> String {
    "month".into()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchivePolicy {
    pub schedule: Option<String>,
    /// Tables archived by the scheduled job.
    pub tables: Vec<String>,
    /// Age such as "18 months": rows older than now minus this are archived.
    pub age: Option<String>,
    pub export_dir: Option<PathBuf>,
    pub batch_size: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenancePolicy {
    pub vacuum_schedule: Option<String>,
    pub reindex_schedule: Option<String>,
    /// Vacuum a table with at least this many dead tuples ...
    pub vacuum_min_dead_tuples: u64,
    /// ... that are also at least this fraction of its live tuples.
    pub vacuum_dead_ratio: f64,
    /// Vacuum with FREEZE when age(relfrozenxid) (table or its TOAST table) reaches this.
    pub vacuum_freeze_age: u64,
    /// Analyze (with the vacuum) after at least this many row changes ...
    pub analyze_min_changes: u64,
    /// ... that are also at least this fraction of the table's rows.
    pub analyze_change_ratio: f64,
    /// Rebuild a btree index whose estimated bloat reaches this fraction ...
    pub reindex_bloat_ratio: f64,
    /// ... when the index is at least this big ("10MiB", "512kB", bytes).
    pub reindex_min_size: String,
    /// lock_timeout for every maintenance statement ("2s").
    pub lock_timeout: String,
    /// Attempts after a lock timeout before a table or index is skipped.
    pub lock_retries: u32,
    /// First pause between attempts; doubles each time ("1s").
    pub retry_backoff: String,
    /// How long to wait for another maintenance job's advisory lock ("60s").
    pub lock_wait: String,
}

impl Default for MaintenancePolicy {
    fn default() -> Self {
        MaintenancePolicy {
            vacuum_schedule: None,
            reindex_schedule: None,
            vacuum_min_dead_tuples: 1000,
            vacuum_dead_ratio: 0.05,
            vacuum_freeze_age: 150_000_000,
            analyze_min_changes: 1000,
            analyze_change_ratio: 0.10,
            reindex_bloat_ratio: 0.30,
            reindex_min_size: "10MiB".into(),
            lock_timeout: "2s".into(),
            lock_retries: 5,
            retry_backoff: "1s".into(),
            lock_wait: "60s".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportPolicy {
    pub size_snapshot_schedule: Option<String>,
    /// node_exporter textfile path for `--format prometheus`.
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditPolicy {
    pub seal_schedule: Option<String>,
}

/// How `opsctl schedule run` behaves.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerPolicy {
    /// IANA time zone of the cron expressions (default UTC).
    pub timezone: String,
    /// Retries after a failed run.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: String,
    /// How long a job whose time came while another ran may wait before it is skipped.
    pub max_wait: String,
    /// How often a standby scheduler checks whether the active one is gone.
    pub standby_poll: String,
    /// How long a running job gets to stop after SIGTERM before it is killed.
    pub stop_grace: String,
}

impl Default for SchedulerPolicy {
    fn default() -> Self {
        SchedulerPolicy {
            timezone: "UTC".into(),
            retries: 2,
            retry_backoff: "1 minute".into(),
            max_wait: "30 minutes".into(),
            standby_poll: "5 seconds".into(),
            stop_grace: "60 seconds".into(),
        }
    }
}

impl Policy {
    /// Reads the policy from `path`, or the built-in defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Policy, Error> {
        match path {
            None => Ok(Policy::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    Error::Config(format!("cannot read policy file {}: {e}", p.display()))
                })?;
                Policy::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Parses policy text; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, Error> {
        toml::from_str(text).map_err(|e| Error::Config(locate(text, origin, &e)))
    }
}

/// Formats a TOML error as `file:line:col: message`.
pub fn locate(text: &str, origin: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("{origin}:{line}:{col}: {msg}")
        }
        None => format!("{origin}: {msg}"),
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let p = Policy::parse("", "x.toml").unwrap();
        assert_eq!(p.partitions.premake, 3);
        assert_eq!(p.partitions.tables[0].column, "entry_time");
    }

    #[test]
    fn unknown_key_has_location() {
        let e = Policy::parse("[backup]\ndir = \"/b\"\nretension = 3\n", "p.toml").unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("p.toml:3:1:"), "{m}");
        assert!(m.contains("retension"), "{m}");
    }
}

#[cfg(test)]
mod shipped {
    #[test]
    fn the_documented_default_policy_parses() {
        let p = super::Policy::parse(
            include_str!("../policies/opsctl.toml"),
            "policies/opsctl.toml",
        )
        .unwrap();
        assert_eq!(p.backup.retention.daily, 7);
    }
}
