//! pg_dump and pg_restore as child processes: finding a version at least the server's,
//! and their environment (cleared, then connection and TLS settings via libpq variables;
//! the password in PGPASSWORD, never in argv).
//!
//! Search order: `OPSCTL_PG_BINDIR` when set (only there, for pinning a version and for
//! tests), else `/usr/lib/postgresql/*/bin` (newest first), `/usr/pgsql-*/bin`, then `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::db::ConnSettings;
use crate::error::Error;

/// The chosen client tools.
#[derive(Debug, Clone)]
pub struct PgTools {
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
    /// Major version of the tools.
    pub major: u32,
    /// `pg_dump --version` output.
    pub version: String,
}

/// Parses `pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)` → (15, "15.4").
pub fn parse_version(out: &str) -> Option<(u32, String)> {
    let v = out
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let major: u32 = v
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((major, v.to_string()))
}

fn tool_version(path: &Path) -> Option<(u32, String)> {
    let out = crate::childenv::command(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn candidate_dirs() -> Vec<PathBuf> {
    if let Some(d) = std::env::var_os("OPSCTL_PG_BINDIR").filter(|d| !d.is_empty()) {
        return vec![PathBuf::from(d)];
    }
    let mut versioned: Vec<(u32, PathBuf)> = Vec::new();
    for (root, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(v) = name.strip_prefix(prefix) {
                    if let Ok(n) = v.parse::<u32>() {
                        versioned.push((n, e.path().join("bin")));
                    }
                }
            }
        }
    }
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    let mut dirs: Vec<PathBuf> = versioned.into_iter().map(|(_, p)| p).collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// Finds pg_dump and pg_restore of a major version ≥ `server_major`.
pub fn find(server_major: u32) -> Result<PgTools, Error> {
    let dirs = candidate_dirs();
    let mut seen = Vec::new();
    for d in &dirs {
        let (dump, restore) = (d.join("pg_dump"), d.join("pg_restore"));
        if !dump.is_file() || !restore.is_file() {
            continue;
        }
        match tool_version(&dump) {
            Some((major, version)) if major >= server_major => {
                return Ok(PgTools {
                    pg_dump: dump,
                    pg_restore: restore,
                    major,
                    version,
                })
            }
            Some((_, version)) => seen.push(format!("{} ({version})", dump.display())),
            None => seen.push(format!("{} (does not run)", dump.display())),
        }
    }
    let where_ = if std::env::var_os("OPSCTL_PG_BINDIR").is_some_and(|d| !d.is_empty()) {
        "in OPSCTL_PG_BINDIR".to_string()
    } else {
        "in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or PATH".to_string()
    };
    let found = if seen.is_empty() {
        format!("no pg_dump/pg_restore found {where_}")
    } else {
        format!(
            "only older ones found {where_}: {} — pg_dump refuses a newer server",
            seen.join(", ")
        )
    };
    Err(Error::Config(format!(
        "need pg_dump and pg_restore of PostgreSQL {server_major} or newer (the server's \
         version); {found}. Install postgresql-client-{server_major} (apt-get install \
         postgresql-client-{server_major}) or point OPSCTL_PG_BINDIR at its bin directory"
    )))
}

/// A command for a libpq tool: a cleared environment (see [`crate::childenv`]) plus the
/// PG* settings taken from `settings`, the password in PGPASSWORD.
pub fn command(tool: &Path, settings: &ConnSettings) -> Command {
    let mut c = crate::childenv::command(tool);
    for (k, v) in settings.libpq_env() {
        c.env(k, v);
    }
    c.stdin(Stdio::null());
    c
}

/// The major version of the server from `server_version_num`.
pub async fn server_major(client: &tokio_postgres::Client) -> Result<u32, Error> {
    let v: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .map_err(Error::db)?
        .get(0);
    v.parse::<u32>()
        .map(|n| n / 10000)
        .map_err(|_| Error::Other(format!("unexpected server_version_num {v:?}")))
}

/// Adds a hint to pg_dump/pg_restore error output for well-known failures.
pub fn explain_stderr(tool: &str, stderr: &str) -> String {
    let s = stderr.trim();
    let lower = s.to_lowercase();
    let hint = if lower.contains("row-level security") || lower.contains("row level security") {
        "\n  hint: row-level security would hide rows from this role, so the backup would be \
         incomplete; run the backup as a role with BYPASSRLS (or the table owner/superuser)"
    } else if lower.contains("server version mismatch") {
        "\n  hint: install a pg_dump at least as new as the server, or set OPSCTL_PG_BINDIR"
    } else if lower.contains("permission denied") {
        "\n  hint: the backup role needs SELECT on every table (e.g. grant pg_read_all_data)"
    } else {
        ""
    };
    format!("{tool} failed: {s}{hint}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions() {
        assert_eq!(
            super::parse_version("pg_dump (PostgreSQL) 15.4 (Debian 15.4-1.pgdg120+1)\n"),
            Some((15, "15.4".into()))
        );
        assert_eq!(
            super::parse_version("pg_dump (PostgreSQL) 17devel"),
            Some((17, "17devel".into()))
        );
        assert_eq!(super::parse_version("nonsense"), None);
    }
}
