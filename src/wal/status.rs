//! The server's side of archiving: settings, `pg_stat_archiver`, the `.ready` files
//! waiting in `pg_wal/archive_status`, and the `ALTER SYSTEM` lines that turn archiving
//! on with opsctl.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::Error;

const SQL_SETTINGS: &str = "SELECT current_setting('wal_level'), current_setting('archive_mode'), \
     current_setting('archive_command'), current_setting('archive_timeout'), \
     (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout'), \
     (SELECT system_identifier::text FROM pg_control_system()), pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END";

const SQL_ARCHIVER: &str = "SELECT archived_count, last_archived_wal, last_archived_time, \
     failed_count, last_failed_wal, last_failed_time, stats_reset FROM pg_stat_archiver";

/// Needs superuser or membership in pg_monitor (PostgreSQL 12+ grants it there).
const SQL_READY: &str = "SELECT count(*), min(name) FROM pg_ls_archive_statusdir() \
     WHERE name LIKE '%.ready'";

/// What the server says about archiving.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerStatus {
    pub wal_level: String,
    pub archive_mode: String,
    pub archive_command: String,
    pub archive_timeout: String,
    pub archive_timeout_seconds: i32,
    pub system_identifier: String,
    pub in_recovery: bool,
    /// The segment being written now (not on a standby).
    pub current_wal_file: Option<String>,
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<DateTime<Utc>>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<DateTime<Utc>>,
    pub stats_reset: Option<DateTime<Utc>>,
    /// `.ready` files in archive_status: waiting to be archived (None: not allowed to look).
    pub ready_count: Option<i64>,
    pub oldest_ready: Option<String>,
    /// Why the waiting segments could not be counted.
    pub ready_note: Option<String>,
}

impl ServerStatus {
    /// Archiving is on (archive_mode on or always).
    pub fn archiving(&self) -> bool {
        self.archive_mode != "off"
    }

    /// The last failure is newer than the last success.
    pub fn failing(&self) -> bool {
        match (self.last_failed_time, self.last_archived_time) {
            (Some(f), Some(a)) => f > a,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// Reads the archiving settings and statistics.
pub async fn server_status(c: &Client) -> Result<ServerStatus, Error> {
    let s = c
        .query_one(SQL_SETTINGS, &[])
        .await
        .map_err(Error::db_ctx("cannot read the archiving settings"))?;
    let a = c
        .query_one(SQL_ARCHIVER, &[])
        .await
        .map_err(Error::db_ctx("cannot read pg_stat_archiver"))?;
    let (ready_count, oldest_ready, ready_note) = match c.query_one(SQL_READY, &[]).await {
        Ok(r) => (
            Some(r.get::<_, i64>(0)),
            r.get::<_, Option<String>>(1),
            None,
        ),
        Err(e) => (
            None,
            None,
            Some(format!(
                "cannot count the segments waiting in pg_wal/archive_status ({}); \
                 pg_ls_archive_statusdir() needs superuser or membership in pg_monitor \
                 (GRANT pg_monitor TO <role>)",
                crate::db::describe(&e)
            )),
        ),
    };
    Ok(ServerStatus {
        wal_level: s.get(0),
        archive_mode: s.get(1),
        archive_command: s.get(2),
        archive_timeout: s.get(3),
        archive_timeout_seconds: s.get::<_, Option<i32>>(4).unwrap_or(0),
        system_identifier: s.get::<_, Option<String>>(5).unwrap_or_default(),
        in_recovery: s.get(6),
        current_wal_file: s.get(7),
        archived_count: a.get(0),
        last_archived_wal: a.get(1),
        last_archived_time: a.get(2),
        failed_count: a.get(3),
        last_failed_wal: a.get(4),
        last_failed_time: a.get(5),
        stats_reset: a.get(6),
        ready_count,
        oldest_ready: oldest_ready.map(|n| n.trim_end_matches(".ready").to_string()),
        ready_note,
    })
}

/// One `ALTER SYSTEM` line of the setup, and whether it needs a restart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SetupLine {
    pub name: &'static str,
    pub value: String,
    pub restart: bool,
}

impl SetupLine {
    pub fn sql(&self) -> String {
        format!(
            "ALTER SYSTEM SET {} = {};",
            self.name,
            sql_literal(&self.value)
        )
    }
}

/// A SQL string literal (standard_conforming_strings, on since 9.1).
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quotes a word for `sh -c` (PostgreSQL runs archive_command through the shell).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@%,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The settings that archive with opsctl: `command` is the archive_command.
pub fn setup_lines(command: &str, archive_timeout_secs: u64) -> Vec<SetupLine> {
    vec![
        SetupLine {
            name: "wal_level",
            value: "replica".into(),
            restart: true,
        },
        SetupLine {
            name: "archive_mode",
            value: "on".into(),
            restart: true,
        },
        SetupLine {
            name: "archive_command",
            value: command.to_string(),
            restart: false,
        },
        SetupLine {
            name: "archive_timeout",
            value: format!("{archive_timeout_secs}s"),
            restart: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_plain_paths_and_quotes_the_rest() {
        assert_eq!(shell_quote("/usr/bin/opsctl"), "/usr/bin/opsctl");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        let l = &setup_lines("/x/opsctl wal push %p --policy '/p q'", 60)[2];
        assert_eq!(
            l.sql(),
            "ALTER SYSTEM SET archive_command = '/x/opsctl wal push %p --policy ''/p q''';"
        );
    }
}
