//! opsctl's own operations log (`opsctl.operations`): who ran which sensitive command
//! (OS user, database role, host), with the command line stripped of secrets, when it
//! started and ended, and how it ended.
//!
//! Usage from a command handler:
//! ```text
//! let argv: Vec<String> = std::env::args().collect();
//! let op = oplog::start(&client, &argv).await?;
//! let result = do_the_work(&client).await;
//! let err = result.as_ref().err().map(|e| e as &dyn std::fmt::Display);
//! op.finish(&client, oplog::Outcome::of(&result), err).await?;
//! ```

use std::fmt::Display;

use tokio_postgres::Client;

use crate::db;
use crate::error::Error;

const INSERT_OPERATION: &str = "INSERT INTO opsctl.operations \
     (command, command_line, os_user, host, pid) VALUES ($1, $2, $3, $4, $5) \
     RETURNING id, started_at";

/// Only our own row: after `restore --clean --force` replaced the database, the same id
/// may be another row of the restored copy (or none), and the end is inserted instead.
const FINISH_OPERATION: &str = "UPDATE opsctl.operations \
     SET finished_at = clock_timestamp(), outcome = $2, error = $3 \
     WHERE id = $1 AND started_at = $4 AND outcome = 'running'";

/// Operations of a command still `running` on a host, other than this process. (The
/// recorded name may carry a positional argument: `drill 20261202T101500Z-1a2b`.)
const RUNNING_ELSEWHERE: &str = "SELECT id, pid FROM opsctl.operations \
     WHERE (command = $1 OR command LIKE $1 || ' %') AND outcome = 'running' \
     AND host IS NOT DISTINCT FROM $2 \
     AND pid IS NOT NULL AND pid <> $3";

const CLOSE_VANISHED: &str = "UPDATE opsctl.operations \
     SET finished_at = clock_timestamp(), outcome = 'failure', error = $2 \
     WHERE id = $1 AND outcome = 'running'";

/// The newest run of a command for each of the given pids, when it has ended.
const ENDED_RUNS: &str = "SELECT pid FROM (SELECT DISTINCT ON (pid) pid, outcome \
     FROM opsctl.operations WHERE (command = $1 OR command LIKE $1 || ' %') \
     AND pid = ANY($2) \
     ORDER BY pid, started_at DESC, id DESC) newest WHERE outcome <> 'running'";

const INSERT_FINISHED: &str = "INSERT INTO opsctl.operations \
     (command, command_line, os_user, host, pid, started_at, finished_at, outcome, error) \
     VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), $7, $8)";

const FINISH_OPERATION_DETAILS: &str = "UPDATE opsctl.operations \
     SET finished_at = clock_timestamp(), outcome = $2, error = $3, details = $4, result = $5 \
     WHERE id = $1 AND started_at = $6 AND outcome = 'running'";

const INSERT_FINISHED_DETAILS: &str = "INSERT INTO opsctl.operations \
     (command, command_line, os_user, host, pid, started_at, finished_at, outcome, error, \
      details, result) \
     VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), $7, $8, $9, $10)";

/// Whether the table exists, and whether it has the `details`/`result` columns (V65).
const TABLE_PRESENT: &str = "SELECT to_regclass('opsctl.operations') IS NOT NULL, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('opsctl.operations') \
             AND attname = 'details' AND NOT attisdropped)";

/// How a recorded operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    /// Success for `Ok`, failure for `Err`.
    pub fn of<T, E>(r: &Result<T, E>) -> Outcome {
        if r.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

/// A started operation; call [`OpGuard::finish`] when it ends. An operation never
/// finished (the process was killed) stays `running` in the log, which the audit
/// report shows (a later drill closes earlier drills whose process is gone, see
/// [`close_vanished`]). When the database has no `opsctl.operations` yet (`migrate up` on a
/// fresh database, a restore into an empty one), nothing is written at the start and
/// `finish` records the whole operation if the table exists by then.
#[derive(Debug)]
#[must_use = "finish() the operation so its outcome is recorded"]
pub struct OpGuard {
    /// The row in opsctl.operations, when it was written at the start.
    pub id: Option<i64>,
    command: String,
    line: String,
    started_at: chrono::DateTime<chrono::Utc>,
}

/// Records the start of an operation; the command name is taken from `argv`
/// (e.g. `backup prune`).
pub async fn start(client: &Client, argv: &[String]) -> Result<OpGuard, Error> {
    start_named(client, &command_name(argv), argv).await
}

/// Records the start of an operation under an explicit command name.
pub async fn start_named(
    client: &Client,
    command: &str,
    argv: &[String],
) -> Result<OpGuard, Error> {
    let mut guard = OpGuard {
        id: None,
        command: command.to_string(),
        line: redact_argv(argv),
        started_at: chrono::Utc::now(),
    };
    if !table_present(client).await?.0 {
        return Ok(guard);
    }
    let row = client
        .query_one(
            INSERT_OPERATION,
            &[&guard.command, &guard.line, &os_user(), &hostname(), &pid()],
        )
        .await
        .map_err(Error::db_ctx(
            "cannot record the operation in opsctl.operations",
        ))?;
    guard.id = Some(row.get(0));
    guard.started_at = row.get(1);
    Ok(guard)
}

/// (the table exists, it has the `details` and `result` columns).
async fn table_present(client: &Client) -> Result<(bool, bool), Error> {
    let row = client
        .query_one(TABLE_PRESENT, &[])
        .await
        .map_err(Error::db)?;
    Ok((row.get(0), row.get(1)))
}

/// Splits an error for the log: the first line is the summary (without a leading
/// `error: `, which the renderers add), the other lines (detail, hint, causes) the details.
/// Secrets are removed.
pub fn split_error(e: &str) -> (String, Option<String>) {
    let e = db::redact(e);
    let mut t = e.trim();
    while let Some(rest) = t.strip_prefix("error:") {
        t = rest.trim_start();
    }
    match t.split_once('\n') {
        Some((first, rest)) if !rest.trim().is_empty() => (
            first.trim_end().to_string(),
            Some(rest.trim_end().to_string()),
        ),
        Some((first, _)) => (first.trim_end().to_string(), None),
        None => (t.to_string(), None),
    }
}

/// This machine's host name ("unknown" when the system cannot say): the one helper every
/// record of who ran what (operations, job runs) uses.
pub fn hostname() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn pid() -> i32 {
    std::process::id() as i32
}

impl OpGuard {
    /// Records the end of the operation: outcome and, for failures, the error (secrets
    /// removed).
    pub async fn finish(
        self,
        client: &Client,
        outcome: Outcome,
        error: Option<&dyn Display>,
    ) -> Result<(), Error> {
        self.finish_with(client, outcome, error, None).await
    }

    /// As [`OpGuard::finish`], with what the command did (`result`, e.g. the rows an
    /// import inserted). A multi-line error is kept whole: its first line in `error`, the
    /// rest in `details` (on a database without those columns, all of it in `error`).
    pub async fn finish_with(
        self,
        client: &Client,
        outcome: Outcome,
        error: Option<&dyn Display>,
        result: Option<&str>,
    ) -> Result<(), Error> {
        let (present, has_details) = table_present(client).await?;
        if !present {
            tracing::debug!("opsctl.operations does not exist: operation not recorded");
            return Ok(());
        }
        let (error, details) = match error.map(|e| split_error(&e.to_string())) {
            Some((first, details)) => (Some(first), details),
            None => (None, None),
        };
        let result = result.map(db::redact);
        let ctx = "cannot record the end of the operation in opsctl.operations";
        let state = outcome.as_str();
        let updated = match (self.id, has_details) {
            (Some(id), true) => client
                .execute(
                    FINISH_OPERATION_DETAILS,
                    &[&id, &state, &error, &details, &result, &self.started_at],
                )
                .await
                .map_err(Error::db_ctx(ctx))?,
            (Some(id), false) => client
                .execute(
                    FINISH_OPERATION,
                    &[
                        &id,
                        &state,
                        &join_error(error.clone(), details.clone()),
                        &self.started_at,
                    ],
                )
                .await
                .map_err(Error::db_ctx(ctx))?,
            (None, _) => 0,
        };
        if updated > 0 {
            return Ok(());
        }
        // No row of ours to finish (none was written at the start, or the database was
        // replaced by `restore --clean --force`): record the whole operation now.
        if has_details {
            client
                .execute(
                    INSERT_FINISHED_DETAILS,
                    &[
                        &self.command,
                        &self.line,
                        &os_user(),
                        &hostname(),
                        &pid(),
                        &self.started_at,
                        &state,
                        &error,
                        &details,
                        &result,
                    ],
                )
                .await
                .map_err(Error::db_ctx(ctx))?;
        } else {
            client
                .execute(
                    INSERT_FINISHED,
                    &[
                        &self.command,
                        &self.line,
                        &os_user(),
                        &hostname(),
                        &pid(),
                        &self.started_at,
                        &state,
                        &join_error(error, details),
                    ],
                )
                .await
                .map_err(Error::db_ctx(ctx))?;
        }
        Ok(())
    }
}

/// Closes as failures the operations of `command` still `running` on `host` whose
/// process (`alive(pid)` false) ended without recording an outcome, except this
/// process's. Returns how many. Nothing to do when the log does not exist.
pub async fn close_vanished(
    client: &Client,
    command: &str,
    host: Option<&str>,
    own_pid: i32,
    alive: impl Fn(i32) -> bool,
) -> Result<u64, Error> {
    if !table_present(client).await?.0 {
        return Ok(0);
    }
    let rows = client
        .query(RUNNING_ELSEWHERE, &[&command, &host, &own_pid])
        .await
        .map_err(Error::db_ctx("cannot read opsctl.operations"))?;
    let mut n = 0;
    for r in rows {
        let (id, pid): (i64, i32) = (r.get(0), r.get(1));
        if alive(pid) {
            continue;
        }
        let msg = format!(
            "interrupted: process {pid} ended without recording an outcome (found by a later \
             {command})"
        );
        n += client
            .execute(CLOSE_VANISHED, &[&id, &msg])
            .await
            .map_err(Error::db_ctx("cannot update opsctl.operations"))?;
    }
    Ok(n)
}

/// Of `pids`, those whose newest `command` operation in the log has ended (success or
/// failure). Empty when the log does not exist.
pub async fn ended_runs(client: &Client, command: &str, pids: &[i32]) -> Result<Vec<i32>, Error> {
    if !table_present(client).await?.0 {
        return Ok(Vec::new());
    }
    Ok(client
        .query(ENDED_RUNS, &[&command, &pids])
        .await
        .map_err(Error::db_ctx("cannot read opsctl.operations"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

fn join_error(error: Option<String>, details: Option<String>) -> Option<String> {
    match (error, details) {
        (Some(e), Some(d)) => Some(format!("{e}\n{d}")),
        (e, _) => e,
    }
}

/// The operating-system user running opsctl.
pub fn os_user() -> Option<String> {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return Some(u);
            }
        }
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; read at once.
    unsafe {
        let uid = libc::geteuid();
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return Some(format!("uid {uid}"));
        }
        Some(
            std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// The subcommand words of an argv (`opsctl backup prune --keep 3` → `backup prune`).
pub fn command_name(argv: &[String]) -> String {
    let mut words = Vec::new();
    let mut skip_value = false;
    for a in argv.iter().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        if a.starts_with('-') {
            if !words.is_empty() {
                break;
            }
            // Global flags before the subcommand take a value unless given as --k=v.
            skip_value = !a.contains('=');
            continue;
        }
        words.push(a.as_str());
        if words.len() == 2 {
            break;
        }
    }
    // A second word counts only when it is a subcommand (`backup create`), not a
    // positional argument (`restore 20260115T020000Z-3f2a`).
    if words.len() == 2 {
        use clap::CommandFactory;
        let cmd = crate::cli::Cli::command();
        let is_sub = cmd
            .find_subcommand(words[0])
            .is_some_and(|c| c.find_subcommand(words[1]).is_some());
        if !is_sub {
            words.truncate(1);
        }
    }
    if words.is_empty() {
        "opsctl".into()
    } else {
        words.join(" ")
    }
}

/// Flags whose value is a secret, or names one: the value is replaced by `****`.
fn is_secret_flag(name: &str) -> bool {
    let n = name.trim_start_matches('-').to_ascii_lowercase();
    n == "database-url"
        || n.ends_with("-url")
        || n == "url"
        || n.starts_with("passphrase")
        || n.contains("password")
        || n.contains("secret")
        || n.contains("token")
        || n == "key"
}

/// The command line with secrets removed: values of `--database-url`, `--passphrase*`,
/// `--*password*`, `--*secret*`, `--*token*`, `--key`; `password=` in conninfo strings;
/// the password of any URL. Arguments are shell-quoted where needed.
pub fn redact_argv(argv: &[String]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(argv.len());
    let mut redact_next = false;
    for a in argv {
        if redact_next {
            redact_next = false;
            out.push("****".into());
            continue;
        }
        if a.starts_with("--") {
            if let Some((name, _)) = a.split_once('=') {
                if is_secret_flag(name) {
                    out.push(format!("{name}=****"));
                    continue;
                }
            } else if is_secret_flag(a) {
                out.push(a.clone());
                redact_next = true;
                continue;
            }
        }
        out.push(shell_quote(&db::redact(a)));
    }
    out.join(" ")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%*".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn secrets_are_removed() {
        let line = redact_argv(&v(&[
            "opsctl",
            "restore",
            "--database-url",
            "postgresql://ops:hunter2@db/trading",
            "--passphrase-file=/etc/opsctl/pass",
            "--passphrase",
            "correct horse",
            "--target",
            "host=db password=s3cret user=ops",
            "postgres://u:pw@h/d",
        ]));
        assert!(!line.contains("hunter2"), "{line}");
        assert!(!line.contains("s3cret"), "{line}");
        assert!(!line.contains("correct horse"), "{line}");
        assert!(!line.contains(":pw@"), "{line}");
        assert!(!line.contains("/etc/opsctl/pass"), "{line}");
        assert!(line.starts_with("opsctl restore --database-url **** --passphrase-file=****"));
        assert!(line.contains("'host=db password=**** user=ops'"), "{line}");
        assert!(line.contains("postgres://u:****@h/d"), "{line}");
    }

    #[test]
    fn ordinary_arguments_are_kept() {
        let line = redact_argv(&v(&[
            "opsctl",
            "backup",
            "prune",
            "--keep",
            "3",
            "--format=json",
        ]));
        assert_eq!(line, "opsctl backup prune --keep 3 --format=json");
    }

    #[test]
    fn errors_split_into_summary_and_details() {
        assert_eq!(
            split_error("error: error: vacuum failed: ERROR: boom\n  detail: d\n  hint: h\n"),
            (
                "vacuum failed: ERROR: boom".to_string(),
                Some("  detail: d\n  hint: h".to_string())
            )
        );
        assert_eq!(split_error("one line"), ("one line".to_string(), None));
        assert!(!split_error("cannot connect to postgres://u:pw@h/d")
            .0
            .contains(":pw@"));
    }

    #[test]
    fn command_names() {
        assert_eq!(
            command_name(&v(&["opsctl", "audit", "seal", "--format", "json"])),
            "audit seal"
        );
        assert_eq!(
            command_name(&v(&[
                "opsctl",
                "--log-format",
                "json",
                "vacuum",
                "--dry-run"
            ])),
            "vacuum"
        );
        assert_eq!(
            command_name(&v(&["opsctl", "migrate", "up", "extra"])),
            "migrate up"
        );
        assert_eq!(command_name(&v(&["opsctl"])), "opsctl");
        // A positional argument is not part of the name.
        assert_eq!(
            command_name(&v(&[
                "opsctl",
                "restore",
                "20260115T020000Z-3f2a",
                "--create"
            ])),
            "restore"
        );
        assert_eq!(
            command_name(&v(&[
                "opsctl",
                "wal",
                "push",
                "pg_wal/000000010000000000000003"
            ])),
            "wal push"
        );
    }
}
