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
    /// `[[repositories]]`: where backups are kept, in order (see `storage::config`).
    pub repositories: Vec<crate::storage::config::RepositoryEntry>,
    pub basebackup: BasebackupPolicy,
    pub security: SecurityPolicy,
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
    /// Payload compression of backups and archive exports: "zstd" (default), "gzip", "none".
    pub compression: crate::backup::compress::Codec,
    /// zstd 1–19 (default 3), gzip 1–9 (default 3); not with "none".
    pub compression_level: Option<i32>,
}

impl BackupPolicy {
    /// The checked compression setting (a level out of range is a configuration error).
    pub fn compression(&self) -> Result<crate::backup::compress::Compression, Error> {
        crate::backup::compress::Compression::new(self.compression, self.compression_level)
            .map_err(|e| Error::Config(format!("[backup] {e}")))
    }
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

/// `[basebackup]`: physical base backups for point-in-time recovery (the repository and
/// key are `[backup]`'s).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BasebackupPolicy {
    /// Cron expression for scheduled base backups (scheduler job `basebackup`).
    pub schedule: Option<String>,
    /// Keep the newest N base backups (at least 1); older ones, and the WAL only they
    /// need, are removed by `backup prune`.
    pub keep_last: u32,
    /// Also keep every base backup younger than this many days.
    pub keep_days: u32,
    /// How long `basebackup` waits for the archive to receive the WAL it needs.
    pub archive_wait: String,
}

impl Default for BasebackupPolicy {
    fn default() -> Self {
        BasebackupPolicy {
            schedule: None,
            keep_last: 2,
            keep_days: 0,
            archive_wait: "5 minutes".into(),
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
    /// Where exports go as a repository (URL or [[repositories]] name); wins over
    /// export_dir.
    pub export_repo: Option<String>,
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

/// Thresholds of `opsctl health` / `report …` (defaults and their origins in the README).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportPolicy {
    pub size_snapshot_schedule: Option<String>,
    /// node_exporter textfile path for `--format prometheus`.
    pub textfile: Option<PathBuf>,
    /// statement_timeout of the report's own queries, milliseconds.
    pub statement_timeout_ms: u64,
    pub connections_warn_percent: f64,
    pub connections_crit_percent: f64,
    pub idle_in_transaction_warn_seconds: f64,
    pub idle_in_transaction_crit_seconds: f64,
    pub long_query_warn_seconds: f64,
    pub long_query_crit_seconds: f64,
    pub lock_wait_warn_seconds: f64,
    pub lock_wait_crit_seconds: f64,
    pub cache_hit_warn_percent: f64,
    pub cache_hit_crit_percent: f64,
    /// Blocks read+hit below which the cache hit ratio is not judged (too little data).
    pub cache_hit_min_blocks: i64,
    pub dead_tuples_warn_percent: f64,
    pub dead_tuples_crit_percent: f64,
    /// Tables with fewer dead tuples than this are not judged.
    pub dead_tuples_min: i64,
    pub xid_age_warn: i64,
    pub xid_age_crit: i64,
    /// Indexes smaller than this are not reported as unused.
    pub unused_index_min_bytes: i64,
    /// An index scanned at most this often since the statistics reset counts as unused.
    pub unused_index_max_scans: i64,
    pub sequence_warn_percent: f64,
    pub sequence_crit_percent: f64,
    pub replication_lag_warn_seconds: f64,
    pub replication_lag_crit_seconds: f64,
    /// WAL kept by an inactive replication slot that makes it CRITICAL.
    pub slot_retained_crit_bytes: i64,
    /// Fewer future months than this (after the current one) is a WARNING.
    pub partition_runway_warn_months: i64,
    pub default_rows_warn: i64,
    pub default_rows_crit: i64,
    /// CRITICAL age of the newest verified backup (WARNING is [backup].max_age_hours, default 26).
    pub backup_crit_age_hours: f64,
    /// WARNING when the last restore drill is older than this.
    pub drill_max_age_days: f64,
    /// WARNING when the newest audit seal is older than this.
    pub audit_seal_max_age_hours: f64,
    pub slow_query_mean_warn_ms: f64,
    pub slow_query_mean_crit_ms: f64,
    /// Statements with fewer calls are listed but not judged.
    pub slow_query_min_calls: i64,
    /// How many statements the slowest-queries lists show.
    pub slow_query_top: i64,
    /// Directory of migration files for the pending-migrations check (unset: failed only).
    pub migrations_dir: Option<PathBuf>,
    /// Size snapshots older than this are pruned by `report size --snapshot`.
    pub snapshot_retention_days: i64,
    /// Disk-size threshold for the database, bytes; unset = growth is not judged.
    pub disk_limit_bytes: Option<i64>,
    pub disk_runway_warn_days: f64,
    pub disk_runway_crit_days: f64,
    /// `opsctl serve`: `/db/health` answers 500 when the node is in recovery or read-only.
    pub serve_require_writable: bool,
    /// Oldest acceptable server version ("15.8"), set by the operator from the release
    /// notes; unset = not judged (`server_updates` says to set it).
    pub min_server_version: Option<String>,
    /// `server_updates` WARNING after this many days since the server's last restart (0: off).
    pub max_server_uptime_days: f64,
}

impl Default for ReportPolicy {
    fn default() -> Self {
        ReportPolicy {
            size_snapshot_schedule: None,
            textfile: None,
            statement_timeout_ms: 5000,
            connections_warn_percent: 90.0,
            connections_crit_percent: 95.0,
            idle_in_transaction_warn_seconds: 60.0,
            idle_in_transaction_crit_seconds: 300.0,
            long_query_warn_seconds: 60.0,
            long_query_crit_seconds: 300.0,
            lock_wait_warn_seconds: 5.0,
            lock_wait_crit_seconds: 60.0,
            cache_hit_warn_percent: 99.0,
            cache_hit_crit_percent: 95.0,
            cache_hit_min_blocks: 10_000,
            dead_tuples_warn_percent: 10.0,
            dead_tuples_crit_percent: 20.0,
            dead_tuples_min: 10_000,
            xid_age_warn: 1_300_000_000,
            xid_age_crit: 1_400_000_000,
            unused_index_min_bytes: 10 * 1024 * 1024,
            unused_index_max_scans: 50,
            sequence_warn_percent: 85.0,
            sequence_crit_percent: 95.0,
            replication_lag_warn_seconds: 30.0,
            replication_lag_crit_seconds: 300.0,
            slot_retained_crit_bytes: 10 * 1024 * 1024 * 1024,
            partition_runway_warn_months: 1,
            default_rows_warn: 1,
            default_rows_crit: 10_000,
            backup_crit_age_hours: 48.0,
            drill_max_age_days: 8.0,
            audit_seal_max_age_hours: 2.0,
            slow_query_mean_warn_ms: 1000.0,
            slow_query_mean_crit_ms: 10_000.0,
            slow_query_min_calls: 10,
            slow_query_top: 5,
            migrations_dir: None,
            snapshot_retention_days: 90,
            disk_limit_bytes: None,
            disk_runway_warn_days: 30.0,
            disk_runway_crit_days: 7.0,
            serve_require_writable: false,
            min_server_version: None,
            max_server_uptime_days: 90.0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditPolicy {
    pub seal_schedule: Option<String>,
    /// File to which `audit seal` appends one line per seal (time, seal id, hash),
    /// kept outside the database; `audit verify --anchors FILE` checks them.
    pub anchor_file: Option<PathBuf>,
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

/// Security posture checks of `opsctl health` (`security_settings`, `row_level_security`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityPolicy {
    /// Login superusers allowed besides the bootstrap superuser (the role initdb made).
    pub allowed_superusers: Vec<String>,
    /// Tables ("schema.table" or "table" in public) that must have row-level security enabled.
    pub rls_tables: Vec<String>,
    /// Tables whose row-level security must also be forced (applies to the owner too).
    pub rls_forced: Vec<String>,
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
