//! Command handlers: each turns its arguments into a plan, calls the domain modules,
//! renders the outcome and returns an exit status. No SQL here.

pub mod archive;
pub mod audit;
pub mod backup;
pub mod completions;
pub mod drill;
pub mod health;
pub mod import;
pub mod man;
pub mod migrate;
pub mod partition;
pub mod pitr;
pub mod policy;
pub mod reindex;
pub mod report;
pub mod restore;
pub mod schedule;
pub mod serve;
pub mod vacuum;
pub mod wal;

use std::io::{IsTerminal, Write};

use crate::cli::{Cli, Command, ConnectArgs, PolicyArgs};
use crate::db::{ConnSettings, ConnSources};
use crate::error::Error;
use crate::policy::Policy;

/// Exit codes of ordinary commands: 0 success, 1 failure, 2 usage error.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Runs the parsed command line and returns the process exit code. Sensitive commands
/// are recorded in `opsctl.operations` (who, where, the command line without secrets,
/// start, end, outcome, error) over a connection of their own.
pub async fn run(cli: Cli) -> u8 {
    if let Ok(mut f) = OUTPUT_FORMAT.lock() {
        f.clone_from(&cli.output_format);
    }
    let op = match sensitive(&cli.command) {
        Some(connect) => oplog_begin(connect).await,
        None => None,
    };
    // A restore may replace the very database the log lives in (`--clean --force` on
    // the connected database): hold no session there while it runs; reconnect after.
    let op = match op {
        Some((conn, guard)) if matches!(cli.command, Command::Restore(_)) => {
            let settings = conn.settings.clone();
            drop(conn);
            Some((Err(settings), guard))
        }
        Some((conn, guard)) => Some((Ok(conn), guard)),
        None => None,
    };
    let code = dispatch(cli.command).await;
    if let Some((conn, guard)) = op {
        let conn = match conn {
            Ok(c) => c,
            Err(settings) => match crate::db::connect(&settings).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("cannot record the operation: {e}");
                    return code;
                }
            },
        };
        let outcome = if code == EXIT_OK {
            crate::oplog::Outcome::Success
        } else {
            crate::oplog::Outcome::Failure
        };
        let error = (code != EXIT_OK).then(|| {
            let last = LAST_ERROR.lock().ok().and_then(|e| e.clone());
            last.unwrap_or_else(|| format!("exit code {code}"))
        });
        let error = error.as_ref().map(|e| e as &dyn std::fmt::Display);
        let result = LAST_RESULT.lock().ok().and_then(|r| r.clone());
        if let Err(e) = guard
            .finish_with(&conn, outcome, error, result.as_deref())
            .await
        {
            tracing::warn!("cannot record the operation: {e}");
        }
    }
    code
}

/// The `--format` of the running command: errors are also printed in that form on stdout.
static OUTPUT_FORMAT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The `--format` of the running command (`text`, `json`, `nagios`, …), if it has one.
pub fn output_format() -> Option<String> {
    OUTPUT_FORMAT.lock().ok().and_then(|f| f.clone())
}

/// The last error a command printed, for the operations log.
static LAST_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// What the last command did, for the operations log (`result`).
static LAST_RESULT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Remembers an error message for the operations log (secrets are removed there; a
/// leading `error: ` is not part of the message).
pub fn note_error(msg: &str) {
    let mut m = msg.trim_start();
    while let Some(rest) = m.strip_prefix("error:") {
        m = rest.trim_start();
    }
    if let Ok(mut e) = LAST_ERROR.lock() {
        *e = Some(m.to_string());
    }
}

/// Remembers what the command did (e.g. rows inserted) for the operations log.
pub fn note_result(msg: impl Into<String>) {
    if let Ok(mut r) = LAST_RESULT.lock() {
        *r = Some(msg.into());
    }
}

/// The commands recorded in the operations log, and where they connect. Dry runs change
/// nothing and are not recorded. Every command a scheduled job runs is recorded (the
/// scheduler sets `OPSCTL_SCHEDULED_JOB` for its children), except `audit seal`, which
/// records itself.
fn sensitive(cmd: &Command) -> Option<&ConnectArgs> {
    use crate::cli::{BackupCommand, MigrateCommand, PartitionCommand, ScheduleCommand};
    let scheduled = std::env::var_os("OPSCTL_SCHEDULED_JOB").is_some();
    match cmd {
        Command::Backup(b) => {
            if let BackupCommand::Create(a) = &b.command {
                return Some(&a.connect);
            }
        }
        Command::Import(a) => return Some(&a.connect),
        Command::Partition(PartitionCommand::Ensure(a)) if !a.dry_run => return Some(&a.connect),
        Command::Schedule(ScheduleCommand::Run(a)) => return Some(&a.connect),
        Command::Report(r) if scheduled => {
            if let crate::cli::ReportKind::Size(a) = &r.report {
                return Some(&a.connect);
            }
        }
        _ => {}
    }
    match cmd {
        Command::Migrate(m) => match &m.command {
            MigrateCommand::Up(a) if !a.dry_run => Some(&a.connect),
            MigrateCommand::Baseline(a) => Some(&a.connect),
            MigrateCommand::Resolve(a) => Some(&a.connect),
            _ => None,
        },
        Command::Backup(b) => match &b.command {
            BackupCommand::Prune(a) if !a.dry_run => Some(&a.connect),
            BackupCommand::Rekey(a) => Some(&a.connect),
            _ => None,
        },
        Command::Restore(a) => Some(&a.connect),
        Command::Drill(a) => Some(&a.connect),
        Command::Archive(a) if !a.dry_run => Some(&a.connect),
        Command::Vacuum(a) if !a.dry_run => Some(&a.connect),
        Command::Reindex(a) if !a.dry_run => Some(&a.connect),
        Command::Basebackup(a) => Some(&a.connect),
        Command::RestorePoint(a) => Some(&a.connect),
        _ => None,
    }
}

/// Opens the operations-log connection and records the start; None when there is no
/// database to record in (the command then reports its own connection problem).
async fn oplog_begin(
    connect: &ConnectArgs,
) -> Option<(crate::db::Connection, crate::oplog::OpGuard)> {
    let configured = connect.database_url.is_some()
        || ["DATABASE_URL", "PGHOST", "PGDATABASE"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
    if !configured {
        return None;
    }
    let settings = conn_settings(connect).ok()?;
    let conn = crate::db::connect(&settings).await.ok()?;
    let argv: Vec<String> = std::env::args().collect();
    match crate::oplog::start(&conn, &argv).await {
        Ok(guard) => Some((conn, guard)),
        Err(e) => {
            tracing::warn!("cannot record the operation: {e}");
            None
        }
    }
}

async fn dispatch(command: Command) -> u8 {
    match command {
        Command::Health(args) => health::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Import(args) => import::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Restore(args) => restore::run(args).await,
        Command::Drill(args) => drill::run(args).await,
        Command::Vacuum(args) => vacuum::run(args).await,
        Command::Reindex(args) => reindex::run(args).await,
        Command::Partition(cmd) => partition::run(cmd).await,
        Command::Archive(args) => archive::run(args).await,
        Command::Policy(cmd) => policy::run(cmd),
        Command::Schedule(cmd) => schedule::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
        Command::Basebackup(args) => pitr::basebackup_cmd(args).await,
        Command::RestorePoint(args) => pitr::restore_point(args).await,
        Command::Wal(cmd) => wal::run(cmd).await,
    }
}

/// Resolves connection settings from flags and environment (see README "Connection settings").
pub fn conn_settings(args: &ConnectArgs) -> Result<ConnSettings, Error> {
    warn_password_in_argv(args);
    let url = args
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .filter(|s| !s.trim().is_empty());
    ConnSettings::resolve(
        &ConnSources {
            url,
            sslmode: args.sslmode.clone(),
            sslrootcert: args.sslrootcert.clone(),
        },
        |k| std::env::var(k).ok(),
    )
}

/// Warns once when `--database-url` on the command line carries a password: every local
/// user can read it in /proc/<pid>/cmdline (ps) while opsctl runs.
fn warn_password_in_argv(args: &ConnectArgs) {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    let on_command_line = std::env::args_os().any(|a| {
        let a = a.to_string_lossy();
        a == "--database-url" || a.starts_with("--database-url=")
    });
    let Some(url) = args.database_url.as_deref().filter(|_| on_command_line) else {
        return;
    };
    if crate::db::conninfo::parse_conninfo(url.trim())
        .is_ok_and(|p| p.get("password").is_some_and(|p| !p.is_empty()))
    {
        ONCE.call_once(|| {
            eprintln!(
                "warning: --database-url carries a password, which every local user can read in \
                 /proc/<pid>/cmdline (ps) while opsctl runs; leave it out of the URL and use \
                 PGPASSWORD, OPSCTL_DATABASE_URL or a password file (PGPASSFILE, ~/.pgpass)"
            )
        });
    }
}

pub fn load_policy(args: &PolicyArgs) -> Result<Policy, Error> {
    Policy::load(args.policy.as_deref())
}

/// Set by [`print`]: the command has written its output, so an error is not added to it.
static STDOUT_USED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes to stdout; a closed pipe (`opsctl … | head`) is not an error.
pub fn print(s: &str) {
    STDOUT_USED.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|_| out.flush());
}

/// Prints an error with its whole chain on stderr, any password in it removed (an
/// argument quoted back may be a connection string).
pub fn print_error(e: &anyhow::Error) {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        msg.push_str(&format!("\n  caused by: {cause}"));
    }
    report_error(&msg);
}

/// The one way a command reports its failure: `error: MSG` on stderr (a JSON line under
/// `--log-format json`), remembered for the operations log, and with `--format json`
/// also `{"error": MSG}` on stdout unless the command already wrote its JSON there, so a
/// script reading stdout sees why (the exit code is the command's own).
pub fn report_error(msg: &str) {
    let msg = &crate::db::redact(msg);
    note_error(&format!("error: {msg}"));
    crate::logging::error(msg);
    if output_format().as_deref() == Some("json")
        && !STDOUT_USED.load(std::sync::atomic::Ordering::Relaxed)
    {
        print(&(serde_json::json!({ "error": msg }).to_string() + "\n"));
    }
}

/// True when stdout is a terminal (colour, progress bars).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// True when stderr is a terminal (progress bars go there).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
