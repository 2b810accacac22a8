//! Every command-line type of opsctl (clap derive). Doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps a PostgreSQL trading database healthy and recoverable.
#[derive(Debug, Parser)]
#[command(name = "opsctl", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "OPSCTL_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// On-call health report (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Health(HealthArgs),
    /// Encrypted, compressed backups: keygen, create, list, verify, prune, rekey.
    Backup(BackupArgs),
    /// Restores a backup into a database; the whole backup is authenticated first.
    Restore(RestoreArgs),
    /// Restore drill: restores into a scratch database and compares every table with the
    /// manifest sealed at backup time (exit 0 all matched, 1 otherwise).
    Drill(DrillArgs),
}

impl Command {
    /// Names of the commands whose exit codes follow monitoring plugins (usage errors → 3).
    pub const MONITORING: &'static [&'static str] = &["health", "report"];
}

/// Where to connect. Every flag can come from the environment.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Connection string (URI or key=value). Falls back to OPSCTL_DATABASE_URL, then
    /// DATABASE_URL, then the PG* variables alone.
    #[arg(long, env = "OPSCTL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// disable | require | verify-ca | verify-full (default verify-full). Overrides the URL and PGSSLMODE.
    #[arg(long)]
    pub sslmode: Option<String>,

    /// CA certificate (PEM, a bundle allowed) that signed the server certificate.
    /// Overrides the URL and PGSSLROOTCERT.
    #[arg(long)]
    pub sslrootcert: Option<PathBuf>,
}

/// The policy file.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Policy file (TOML). Built-in defaults when not given.
    #[arg(long, env = "OPSCTL_POLICY")]
    pub policy: Option<PathBuf>,
}

/// Output form of ordinary commands.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Output form of reports.
#[derive(Debug, Clone, Args)]
pub struct ReportOutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,

    /// With --format prometheus: write atomically to this file (node_exporter textfile collector).
    #[arg(long)]
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
    Prometheus,
    Nagios,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: ReportOutputArgs,
    /// Run only these checks (by id; repeatable).
    #[arg(long = "check", value_name = "ID")]
    pub checks: Vec<String>,
    /// Skip these checks (by id; repeatable).
    #[arg(long = "skip", value_name = "ID")]
    pub skips: Vec<String>,
}

/// Backup key material. Never given as a command-line value.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Key file: 32 raw bytes, or 64 hex characters and a newline; mode 0600.
    #[arg(long, env = "OPSCTL_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// File whose first line is a passphrase (mode 0600); or set OPSCTL_PASSPHRASE.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

/// The backup repository directory.
#[derive(Debug, Clone, Args)]
pub struct BackupDirArgs {
    /// Backup directory (backups go to DIR/<database>/). Default: [backup] dir of the policy.
    #[arg(long, env = "OPSCTL_BACKUP_DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Writes a new random 256-bit key file (mode 0600); never overwrites.
    Keygen(BackupKeygenArgs),
    /// Backs up the database: pg_dump → gzip → AES-256-GCM into DIR/<database>/<id>.opsbak.
    Create(BackupCreateArgs),
    /// Lists backups with sizes, key ids and verified/drilled status (no key needed).
    List(BackupListArgs),
    /// Decrypts and checks a whole backup (exit 0 good, 1 bad with the reason).
    Verify(BackupVerifyArgs),
    /// Deletes backups outside the retention policy ([backup.retention]).
    Prune(BackupPruneArgs),
    /// Adds (or with --replace, replaces) a key that opens a backup, without re-encrypting it.
    Rekey(BackupRekeyArgs),
}

#[derive(Debug, Args)]
pub struct BackupKeygenArgs {
    /// Where to write the key (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupCreateArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Seconds to wait for another maintenance job holding the lock.
    #[arg(long, default_value_t = 600)]
    pub lock_wait: u64,
}

#[derive(Debug, Args)]
pub struct BackupListArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    /// Backup file path, or backup id (looked up under --dir).
    #[arg(value_name = "FILE|ID")]
    pub backup: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BackupPruneArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    /// Show the plan without deleting anything.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BackupRekeyArgs {
    /// Backup file path, or backup id (looked up under --dir).
    #[arg(value_name = "FILE|ID")]
    pub backup: String,
    /// The key file to add.
    #[arg(long)]
    pub new_key_file: PathBuf,
    /// Remove every other key: afterwards only the new key opens the backup.
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup file path, or backup id (looked up under --dir).
    #[arg(value_name = "FILE|ID")]
    pub backup: String,
    /// Database to restore into.
    #[arg(long)]
    pub target_db: String,
    /// Create the target database when it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Replace a non-empty target: restore into a staging database, then swap it in.
    #[arg(long)]
    pub clean: bool,
    /// Parallel pg_restore jobs (decrypts to a private temporary file first).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
    /// Allow restoring over the database opsctl is connected to.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Backup file path, or backup id (looked up under --dir). Default: --latest.
    #[arg(value_name = "FILE|ID", conflicts_with = "latest")]
    pub backup: Option<String>,
    /// Drill the newest backup of the connected database.
    #[arg(long)]
    pub latest: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}
