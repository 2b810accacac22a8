//! Every command-line type of opsctl (clap derive). Doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps a PostgreSQL trading database healthy and recoverable.
#[derive(Debug, Parser)]
#[command(name = "opsctl", version, about, long_about = None, propagate_version = true)]
#[command(after_help = crate::help::TOP)]
pub struct Cli {
    /// Log format on stderr: text lines, or JSON lines (errors, warnings and `serve`
    /// messages included) for a log collector.
    #[arg(
        long,
        global = true,
        help_heading = "Output",
        value_enum,
        default_value = "text",
        env = "OPSCTL_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,

    /// The `--format` the command was given (`json`, `nagios`, …), so that errors can be
    /// printed in that form too. Filled by [`Cli::parse_anywhere`].
    #[arg(skip)]
    pub output_format: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// On-call health report (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    #[command(after_long_help = crate::help::HEALTH)]
    Health(HealthArgs),
    /// Schema migrations: up, status, verify, baseline, resolve (exit 0 ok, 1 failure or drift, 2 usage).
    #[command(after_long_help = crate::help::MIGRATE)]
    Migrate(MigrateArgs),
    /// Imports a JSON array or NDJSON file of rows into one table, validated, in batches.
    #[command(after_long_help = crate::help::IMPORT)]
    Import(ImportArgs),
    /// On-call reports: connection pool, sizes and growth (exit codes as health).
    #[command(after_long_help = crate::help::REPORT)]
    Report(ReportArgs),
    /// HTTP endpoint for load balancers and Prometheus: GET /db/health and /metrics.
    #[command(after_long_help = crate::help::SERVE)]
    Serve(ServeArgs),
    /// Encrypted, compressed backups: keygen, create, list, verify, prune, rekey.
    #[command(after_long_help = crate::help::BACKUP)]
    Backup(BackupArgs),
    /// Restores a backup into a database; the whole backup is authenticated first.
    #[command(after_long_help = crate::help::RESTORE)]
    Restore(RestoreArgs),
    /// Restore drill: restores into a scratch database and compares every table with the
    /// manifest sealed at backup time (exit 0 all matched, 1 otherwise).
    #[command(after_long_help = crate::help::DRILL)]
    Drill(DrillArgs),
    /// Vacuum and analyze the tables that need it (dead tuples, autovacuum behind,
    /// transaction-ID age, stale statistics), worst first, one at a time.
    #[command(after_long_help = crate::help::VACUUM)]
    Vacuum(VacuumArgs),
    /// Rebuild bloated and invalid indexes with REINDEX INDEX CONCURRENTLY, one at a time.
    #[command(after_long_help = crate::help::REINDEX)]
    Reindex(ReindexArgs),
    /// Monthly partitions of time-partitioned tables: create them ahead, list them.
    #[command(subcommand)]
    #[command(after_long_help = crate::help::PARTITION)]
    Partition(PartitionCommand),
    /// Moves rows older than a date out of a live table into archive.<table>, resumably.
    #[command(after_long_help = crate::help::ARCHIVE)]
    Archive(ArchiveArgs),
    /// Check the policy file.
    #[command(subcommand)]
    #[command(after_long_help = crate::help::POLICY)]
    Policy(PolicyCommand),
    /// Scheduled jobs from the policy: list them, or run the scheduler.
    #[command(subcommand)]
    #[command(after_long_help = crate::help::SCHEDULE)]
    Schedule(ScheduleCommand),
    /// Tamper-evident audit log: seal, verify, report.
    #[command(subcommand)]
    #[command(after_long_help = crate::help::AUDIT)]
    Audit(AuditCommand),
    /// Prints the shell completion script for bash, zsh or fish (see README "Shell completions").
    #[command(after_long_help = crate::help::COMPLETIONS)]
    Completions(CompletionsArgs),
    /// Prints the manual page opsctl(1), or writes one page per command into a directory.
    #[command(after_long_help = crate::help::MAN)]
    Man(ManArgs),
    /// Physical base backup (pg_basebackup) sealed into the repository; succeeds only once
    /// the WAL it needs is archived (exit 0 kept, 1 failed).
    #[command(after_long_help = crate::help::BASEBACKUP)]
    Basebackup(BasebackupArgs),
    /// Creates a named restore point (pg_create_restore_point) for restore --pitr --to-name.
    #[command(after_long_help = crate::help::RESTORE_POINT)]
    RestorePoint(RestorePointArgs),
    /// WAL archiving: push (archive_command), fetch (restore_command), status, setup, verify.
    #[command(subcommand)]
    #[command(after_long_help = crate::help::WAL)]
    Wal(WalCommand),
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
    #[arg(
        long,
        help_heading = "Connection and keys",
        env = "OPSCTL_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// disable | require | verify-ca | verify-full (default verify-full). Overrides the URL and PGSSLMODE.
    #[arg(long, help_heading = "Connection and keys")]
    pub sslmode: Option<String>,

    /// CA certificate (PEM, a bundle allowed) that signed the server certificate.
    /// Overrides the URL and PGSSLROOTCERT.
    #[arg(long, help_heading = "Connection and keys")]
    pub sslrootcert: Option<PathBuf>,
}

/// The policy file.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Policy file (TOML). Built-in defaults when not given.
    // After the command's own options (what to act on comes first).
    #[arg(long, env = "OPSCTL_POLICY", display_order = 900)]
    pub policy: Option<PathBuf>,
}

/// Output form of ordinary commands.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, help_heading = "Output", value_enum, default_value = "text")]
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
    #[arg(long, help_heading = "Output", value_enum, default_value = "text")]
    pub format: ReportFormat,

    /// With --format prometheus: write atomically to this file (node_exporter textfile collector).
    #[arg(long, help_heading = "Output")]
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

/// Where the migration files come from and how long to wait for the migration lock.
#[derive(Debug, Clone, Args)]
pub struct MigrationsArgs {
    /// Read migrations from this directory instead of the ones embedded in the binary.
    #[arg(long, value_name = "DIR", env = "OPSCTL_MIGRATIONS_DIR")]
    pub migrations_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Applies pending migrations in version order, one transaction each.
    #[command(after_long_help = crate::help::MIGRATE_UP)]
    Up(MigrateUpArgs),
    /// Lists applied, pending, failed and changed migrations (exit 0 up to date, 1 otherwise).
    #[command(after_long_help = crate::help::MIGRATE_STATUS)]
    Status(MigrateStatusArgs),
    /// Compares the checksums of applied migrations with the files (exit 1 on drift).
    #[command(after_long_help = crate::help::MIGRATE_VERIFY)]
    Verify(MigrateStatusArgs),
    /// Adopts a database that already has the schema: records versions up to V as applied.
    #[command(after_long_help = crate::help::MIGRATE_BASELINE)]
    Baseline(MigrateBaselineArgs),
    /// Clears a failed non-transactional migration after a person has looked at the database.
    #[command(after_long_help = crate::help::MIGRATE_RESOLVE)]
    Resolve(MigrateResolveArgs),
}

#[derive(Debug, Args)]
pub struct MigrateUpArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub migrations: MigrationsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Apply pending migrations up to and including this version only.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<u64>,
    /// Print what would be applied and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply pending migrations whose version is below the highest applied one.
    #[arg(long)]
    pub allow_out_of_order: bool,
    /// How long to wait for another `migrate` holding the lock (e.g. 60s, 5m, 90).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_arg)]
    pub lock_wait: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct MigrateStatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub migrations: MigrationsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct MigrateBaselineArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub migrations: MigrationsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The highest version the database already has.
    #[arg(long = "version", value_name = "V")]
    pub baseline_version: u64,
    /// How long to wait for another `migrate` holding the lock (e.g. 60s, 5m, 90).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_arg)]
    pub lock_wait: std::time::Duration,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("outcome").required(true).args(["applied", "rolled_back"])))]
pub struct MigrateResolveArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub migrations: MigrationsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The failed version.
    #[arg(value_name = "V")]
    pub target_version: u64,
    /// Everything in the file did take effect (finished by hand): mark it applied.
    #[arg(long)]
    pub applied: bool,
    /// Nothing of it remains (undone by hand): forget it so `up` runs it again.
    #[arg(long)]
    pub rolled_back: bool,
    /// How long to wait for another `migrate` holding the lock (e.g. 60s, 5m, 90).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_arg)]
    pub lock_wait: std::time::Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ImportTable {
    Users,
    Trades,
    Positions,
    #[value(name = "account_totals", alias = "account-totals")]
    AccountTotals,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Target table.
    #[arg(long, value_enum)]
    pub table: ImportTable,
    /// The JSON array or NDJSON file; `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Update rows whose key exists (in the table or earlier in the file) instead of skipping them.
    #[arg(long)]
    pub upsert: bool,
    /// Write rejected rows here (with line number and reason) and import the valid rest.
    /// Written to a temporary file and put in place when the import ends; an existing
    /// file is refused unless --force.
    #[arg(long, value_name = "PATH")]
    pub reject_file: Option<PathBuf>,
    /// Replace an existing --reject-file.
    #[arg(long, requires = "reject_file")]
    pub force: bool,
    /// Rows per staging batch.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: u64,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub report: ReportKind,
}

#[derive(Debug, Subcommand)]
pub enum ReportKind {
    /// Connections by state, application, user and client; idle in transaction; long
    /// queries; lock waits and their blockers; the share using TLS.
    #[command(after_long_help = crate::help::REPORT_POOL)]
    Pool(PoolArgs),
    /// Database size, largest tables and indexes, growth from snapshots, days until the
    /// policy's disk limit.
    #[command(after_long_help = crate::help::REPORT_SIZE)]
    Size(SizeArgs),
}

#[derive(Debug, Args)]
pub struct PoolArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: ReportOutputArgs,
}

#[derive(Debug, Args)]
pub struct SizeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: ReportOutputArgs,
    /// Record a size snapshot in opsctl.size_snapshots (and prune those past the retention).
    #[arg(long)]
    pub snapshot: bool,
    /// How many tables and indexes to list.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:8080", env = "OPSCTL_LISTEN")]
    pub listen: String,
    /// Seconds the health checks are cached between requests.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub cache_seconds: u64,
    /// Every client gets the full health report (sessions, query text) in /db/health.
    #[arg(long)]
    pub details: bool,
    /// File whose first line is a bearer token (mode 0600): a request with
    /// `Authorization: Bearer <token>` gets the full report in /db/health.
    #[arg(long, env = "OPSCTL_SERVE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Connections served at once; more are answered 503.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_connections: u64,
}

/// Backup key material. Never given as a command-line value.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Key file: 32 raw bytes, or 64 hex characters and a newline; mode 0600.
    #[arg(long, help_heading = "Connection and keys", env = "OPSCTL_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// File whose first line is a passphrase (mode 0600); or set OPSCTL_PASSPHRASE.
    #[arg(long, help_heading = "Connection and keys")]
    pub passphrase_file: Option<PathBuf>,
}

/// The backup repository directory.
#[derive(Debug, Clone, Args)]
pub struct BackupDirArgs {
    /// Backup directory (backups go to DIR/<database>/). Default: [backup] dir of the policy.
    #[arg(long, env = "OPSCTL_BACKUP_DIR")]
    pub dir: Option<PathBuf>,
    /// Repository: a policy [[repositories]] name, a path, file:///path or
    /// s3://bucket/prefix (instead of --dir). Default: every repository of the policy.
    #[arg(long, value_name = "URL|NAME", env = "OPSCTL_REPO")]
    pub repo: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Writes a new random 256-bit key file (mode 0600); never overwrites.
    #[command(after_long_help = crate::help::BACKUP_KEYGEN)]
    Keygen(BackupKeygenArgs),
    /// Backs up the database: pg_dump → zstd/gzip → AES-256-GCM into DIR/<database>/<id>.opsbak.
    #[command(after_long_help = crate::help::BACKUP_CREATE)]
    Create(BackupCreateArgs),
    /// Lists backups with sizes, key ids and verified/drilled status (no key needed).
    #[command(after_long_help = crate::help::BACKUP_LIST)]
    List(BackupListArgs),
    /// Decrypts and checks a whole backup (exit 0 good, 1 bad with the reason).
    #[command(after_long_help = crate::help::BACKUP_VERIFY)]
    Verify(BackupVerifyArgs),
    /// Deletes backups outside the retention policy ([backup.retention]).
    #[command(after_long_help = crate::help::BACKUP_PRUNE)]
    Prune(BackupPruneArgs),
    /// Adds (or with --replace, replaces) a key that opens a backup, without re-encrypting it.
    #[command(after_long_help = crate::help::BACKUP_REKEY)]
    Rekey(BackupRekeyArgs),
    /// Copies one backup (with its summary and status) to another repository, verified by
    /// reading the copy back (no key needed).
    #[command(after_long_help = crate::help::BACKUP_COPY)]
    Copy(BackupCopyArgs),
}

#[derive(Debug, Args)]
pub struct BackupCopyArgs {
    /// The backup id (found in --repo/--dir, else in the policy's repositories).
    #[arg(value_name = "ID")]
    pub backup: String,
    /// The repository to copy to: a [[repositories]] name or a URL (path, file:///path,
    /// s3://bucket/prefix).
    #[arg(long, value_name = "NAME|URL")]
    pub to: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    #[command(flatten)]
    pub output: OutputArgs,
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
    /// How long to wait for another maintenance job holding the lock (e.g. 600, 10m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration_arg)]
    pub lock_wait: std::time::Duration,
    /// Compression of this backup only, instead of `[backup] compression` (the level is
    /// then the codec's default unless --compression-level is given too).
    #[arg(long, value_name = "CODEC", value_parser = ["zstd", "gzip", "none"])]
    pub compression: Option<String>,
    /// Compression level of this backup only, instead of `[backup] compression_level`
    /// (zstd 1–19, gzip 1–9; none takes no level).
    #[arg(long, value_name = "N")]
    pub compression_level: Option<i32>,
}

#[derive(Debug, Args)]
pub struct BackupListArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Every column in full (end, duration, dump and compressed sizes, key ids, when
    /// verified and drilled); by default the table fits 120 columns.
    #[arg(long)]
    pub wide: bool,
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
    /// Remove every other key: afterwards only the new key opens this file. The data key
    /// stays, so this alone is not a revocation (see --reencrypt).
    #[arg(long)]
    pub replace: bool,
    /// With --replace: also re-encrypt the body under a fresh data key (streamed; the new
    /// file is read back before it replaces the old one), so the old keys open neither
    /// the result nor its body with an old header spliced on.
    #[arg(long, requires = "replace")]
    pub reencrypt: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub dir: BackupDirArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Where to record the operation (optional: rekey itself needs no database).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup file path, or backup id (looked up under --dir).
    #[arg(
        value_name = "FILE|ID",
        required_unless_present = "pitr",
        conflicts_with = "pitr"
    )]
    pub backup: Option<String>,
    /// Database to restore into.
    #[arg(long, required_unless_present = "pitr", conflicts_with = "pitr")]
    pub target_db: Option<String>,
    #[command(flatten)]
    pub pitr: PitrRestoreArgs,
    /// Create the target database when it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Replace a non-empty target database as a whole: restore into a staging database,
    /// then swap it in for the target once the restore succeeded (objects not in the
    /// backup are gone; a failure leaves the target untouched).
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
    /// PITR drill: the newest base backup plus archived WAL recovered on a throwaway
    /// server to a restore point made now, and every table compared with the source.
    #[arg(long, conflicts_with_all = ["backup", "latest"])]
    pub pitr: bool,
    /// With --pitr: recover to this time instead (no content comparison).
    #[arg(long, value_name = "T", requires = "pitr")]
    pub to_time: Option<String>,
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

/// Every duration flag: `90`, `60s`, `5m`, `1h30m` (the one parser, [`crate::duration::parse_flag`]).
fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse_flag(s).map_err(|e| e.to_string())
}

fn size_arg(s: &str) -> Result<u64, String> {
    crate::maintenance::parse_size(s)
}

#[derive(Debug, Args)]
pub struct VacuumArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only this table: name or schema.name, exactly as created (mixed case and spaces
    /// as they are; SQL quoting "Like"."This" also works). A partitioned table means its
    /// leaf partitions.
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
    /// Print the plan with the figures and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// VACUUM (FREEZE, ANALYZE) every table in scope, whether it needs it or not.
    #[arg(long)]
    pub freeze: bool,
    /// Start no new table after this long (e.g. 30m, 2h, 90s); what was left is reported.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub max_duration: Option<std::time::Duration>,
    /// Wait at most this long for another maintenance job to finish, then refuse
    /// (default: the policy's lock_wait, 60s).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub lock_wait: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only the indexes of this table (name or schema.name, exactly as created); for a
    /// partitioned table, the indexes of each leaf partition.
    #[arg(long, value_name = "T", conflicts_with = "index")]
    pub table: Option<String>,
    /// Only this index (name or schema.name); a partitioned index means its leaf indexes.
    #[arg(long, value_name = "I")]
    pub index: Option<String>,
    /// Print the plan with the figures and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Consider only indexes at least this big for bloat (default: the policy's
    /// reindex_min_size, 10MiB), e.g. 1MiB, 500kB, 0.
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    pub min_size: Option<u64>,
    /// Wait at most this long for another maintenance job to finish, then refuse
    /// (default: the policy's lock_wait, 60s).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub lock_wait: Option<std::time::Duration>,
}

#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Creates the monthly partitions from the oldest data month through now + premake
    /// months, moving rows out of the default partition into them. Idempotent.
    #[command(after_long_help = crate::help::PARTITION_ENSURE)]
    Ensure(PartitionEnsureArgs),
    /// Lists each partition with its range, estimated rows, size and state
    /// (live, archived, default), and the runway of future months.
    #[command(after_long_help = crate::help::PARTITION_LIST)]
    List(PartitionListArgs),
}

#[derive(Debug, Args)]
pub struct PartitionEnsureArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only this table (TABLE or SCHEMA.TABLE); default: every table of [[partitions.tables]].
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
    /// Future months to keep ready (default: [partitions].premake of the policy, 3).
    #[arg(long, value_name = "N")]
    pub premake: Option<u32>,
    /// Print what would be created and moved; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PartitionListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only this table (TABLE or SCHEMA.TABLE); default: every table of [[partitions.tables]].
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ArchiveArgs {
    #[command(subcommand)]
    pub command: Option<ArchiveCommand>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Rows whose time column is older than DATE move: YYYY-MM-DD (midnight) or an RFC 3339
    /// time with or without a zone (2026-01-15T12:00:00Z, 2026-01-15T14:00:00+02:00,
    /// 2026-01-15T12:00:00); a time without a zone is UTC.
    #[arg(long, value_name = "DATE", required = true)]
    pub before: Option<String>,
    /// The live table (TABLE or SCHEMA.TABLE).
    #[arg(long, value_name = "T", default_value = "trades")]
    pub table: String,
    /// Print the plan (partitions to move, rows to move in batches, sizes); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per batch for a partial month (default: [archive].batch_size of the policy, 10000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
    /// Accept a DATE in the future (archives current rows).
    #[arg(long)]
    pub force: bool,
    /// How long to wait for another maintenance job (archive, backup, vacuum…) to finish
    /// (e.g. 90, 60s, 5m, 1h30m); 0 refuses at once.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = duration_arg)]
    pub lock_wait: std::time::Duration,
    /// Also write each archived month as an encrypted, compressed file in DIR or a
    /// repository (a path, file:///path, s3://bucket/prefix or a [[repositories]] name; the
    /// backup container format), verified by reading it back from there. Default:
    /// [archive] export_repo, else [archive] export_dir.
    #[arg(long, value_name = "DIR|URL", env = "OPSCTL_ARCHIVE_EXPORT_DIR")]
    pub export_dir: Option<String>,
    /// Drop each exported month from the database, only after its file verified.
    #[arg(long)]
    pub drop_after_export: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Brings an exported month back into archive.<table> as its month partition,
    /// after checking the file's authentication, row count and checksum.
    #[command(after_long_help = crate::help::ARCHIVE_RESTORE)]
    Restore(ArchiveRestoreArgs),
}

#[derive(Debug, Args)]
pub struct ArchiveRestoreArgs {
    /// The export file (written by `opsctl archive --export-dir`); with --repo, its name
    /// in that repository (e.g. public.trades_2024_01.opsarc).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Read FILE from this repository (a URL or a [[repositories]] name) instead of a
    /// local path.
    #[arg(long, value_name = "URL|NAME")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file: every problem with file:line:col, then the effective policy (exit 1 on problems).
    #[command(after_long_help = crate::help::POLICY_CHECK)]
    Check(PolicyCheckArgs),
}

#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The policy file (default: --policy / OPSCTL_POLICY).
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Each job, its expression, its next three fire times, its last run and outcome.
    #[command(after_long_help = crate::help::SCHEDULE_LIST)]
    List(ScheduleListArgs),
    /// The scheduler daemon (foreground, for systemd or a container), or one job with --once.
    #[command(after_long_help = crate::help::SCHEDULE_RUN)]
    Run(ScheduleRunArgs),
    /// What ran while nobody watched: each run with start, duration, outcome, exit code,
    /// attempt, and the error or the last lines of the job's output (newest first).
    #[command(after_long_help = crate::help::SCHEDULE_HISTORY)]
    History(ScheduleHistoryArgs),
}

#[derive(Debug, Args)]
pub struct ScheduleListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ScheduleRunArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Run this one job now and exit with its outcome (backup, prune, drill, vacuum,
    /// reindex, partitions, archive, size-snapshot, audit-seal, basebackup).
    #[arg(long, value_name = "JOB")]
    pub once: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScheduleHistoryArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only this job (backup, prune, drill, vacuum, reindex, partitions, archive,
    /// size-snapshot, audit-seal, basebackup).
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// How far back: 90m, 24h, 7d, 2w.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration_arg)]
    pub since: std::time::Duration,
    /// Show at most this many runs.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub limit: i64,
}

/// `opsctl audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Chain the not-yet-sealed audit rows of finished transactions into the seal chain.
    #[command(after_long_help = crate::help::AUDIT_SEAL)]
    Seal(AuditSealArgs),
    /// Walk the seal chain: exit 0 intact, 1 naming the first changed, deleted or
    /// inserted-out-of-chain row.
    #[command(after_long_help = crate::help::AUDIT_VERIFY)]
    Verify(AuditVerifyArgs),
    /// Changes by table, operation and actor; deletes of trades; opsctl's operations;
    /// the largest transactions; rows not yet sealed.
    #[command(after_long_help = crate::help::AUDIT_REPORT)]
    Report(AuditReportArgs),
}

#[derive(Debug, Args)]
pub struct AuditSealArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    // Its `[audit] anchor_file` receives one line per new seal.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Audit rows per seal (bounds memory and the size of one seal).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub batch_size: i64,
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// A seal hash recorded outside the database (e.g. the chain head stored in a
    /// backup manifest) that must be part of the chain; repeatable.
    #[arg(long, value_name = "HASH", value_parser = parse_seal_hash)]
    pub expect_hash: Vec<String>,
    /// A backup directory (`backup create --dir`) or repository (URL or policy name):
    /// every audit seal recorded in the sealed manifests of this database's backups under
    /// <database>/ must still be in the chain, unchanged (needs the backup key; at least
    /// one backup must record a seal).
    #[arg(long, value_name = "DIR|URL|NAME")]
    pub backups: Option<String>,
    /// An anchor file (`[audit] anchor_file`, written by `audit seal`): every seal it
    /// records must still be in the chain, unchanged.
    #[arg(long, value_name = "FILE")]
    pub anchors: Option<std::path::PathBuf>,
    // The key that opens the backups of --backups.
    #[command(flatten)]
    pub keys: KeyArgs,
    // Its `[backup] key_file` is used when no key is given.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

fn parse_seal_hash(s: &str) -> Result<String, String> {
    let h = s.trim().to_ascii_lowercase();
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h)
    } else {
        Err("a seal hash is 64 hexadecimal digits (sha256)".into())
    }
}

#[derive(Debug, Args)]
pub struct AuditReportArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Report the last DURATION (e.g. 24h, 7d, 90m, 2w). Default: 24h.
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// Start of the window (RFC 3339, or YYYY-MM-DD[ HH:MM[:SS]] in UTC).
    #[arg(long, value_name = "T")]
    pub from: Option<String>,
    /// End of the window, exclusive (same forms as --from). Default: now.
    #[arg(long, value_name = "T")]
    pub to: Option<String>,
    /// Only changes of this table (users, trades, positions, account_totals).
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
    /// Only changes by this actor (app.actor or database session user) and operations
    /// by this OS user or database role.
    #[arg(long, value_name = "A")]
    pub actor: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write opsctl.1 and one page per command (opsctl-backup-create.1, …) into DIR
    /// instead of printing opsctl.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Where WAL is archived and the key that seals it (no database connection).
#[derive(Debug, Clone, Args)]
pub struct WalRepoArgs {
    /// Repository URL or name (default: the policy's first repository).
    #[arg(long, value_name = "URL|NAME")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// archive_command: seals one WAL file into the repository (exit 0 only once durable).
    #[command(after_long_help = crate::help::WAL_PUSH)]
    Push(WalPushArgs),
    /// restore_command: restores one archived WAL file (exit 1 not archived, 200 recovery must stop).
    #[command(after_long_help = crate::help::WAL_FETCH)]
    Fetch(WalFetchArgs),
    /// Archiving settings, pg_stat_archiver, segments waiting, newest archived per timeline.
    #[command(after_long_help = crate::help::WAL_STATUS)]
    Status(WalStatusArgs),
    /// Prints the ALTER SYSTEM lines that turn archiving on with opsctl.
    #[command(after_long_help = crate::help::WAL_SETUP)]
    Setup(WalSetupArgs),
    /// Checks that the archive has no gap, on every timeline of the history (exit 1 on a gap).
    #[command(after_long_help = crate::help::WAL_VERIFY)]
    Verify(WalVerifyArgs),
}

#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// The WAL file (%p: relative to the data directory).
    pub path: PathBuf,
    #[command(flatten)]
    pub repo: WalRepoArgs,
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    /// The archived file's name (%f).
    pub name: String,
    /// Where to write it (%p).
    pub path: PathBuf,
    #[command(flatten)]
    pub repo: WalRepoArgs,
}

#[derive(Debug, Args)]
pub struct WalStatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Repository URL or name (default: the policy's first repository).
    #[arg(long, value_name = "URL|NAME")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct WalSetupArgs {
    /// Print the lines (opsctl never changes server settings itself).
    #[arg(long)]
    pub print: bool,
    /// archive_timeout: the longest a finished transaction waits to be archived on an
    /// idle server (the RPO).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub archive_timeout: String,
    /// Key file to name in archive_command (otherwise the policy's [backup] key_file).
    #[arg(long, help_heading = "Connection and keys")]
    pub key_file: Option<PathBuf>,
    /// Repository to name in archive_command (otherwise the policy's first).
    #[arg(long, value_name = "URL|NAME")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
pub struct WalVerifyArgs {
    /// First segment that must be there (default: the oldest archived).
    #[arg(long, value_name = "SEGMENT")]
    pub from: Option<String>,
    #[command(flatten)]
    pub repo: WalRepoArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The flags shared by most commands that may also come before the command name
/// (`opsctl --database-url URL health`); all take a value.
pub const COMMON_FLAGS: &[&str] = &[
    "--database-url",
    "--sslmode",
    "--sslrootcert",
    "--policy",
    "--format",
    "--key-file",
    "--passphrase-file",
];

impl Cli {
    /// Parses a command line. The common flags ([`COMMON_FLAGS`]) are accepted before
    /// the command name as well as after it: they are moved behind the (sub)command
    /// they precede, where clap knows them with the command's own type and defaults.
    /// Also records the command's `--format` in [`Cli::output_format`].
    pub fn parse_anywhere(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let args = hoist_common_flags(args);
        let matches = Cli::command().try_get_matches_from(&args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let mut leaf = &matches;
        while let Some((_, sub)) = leaf.subcommand() {
            leaf = sub;
        }
        cli.output_format = leaf
            .try_get_raw("format")
            .ok()
            .flatten()
            .and_then(|mut v| v.next())
            .map(|v| v.to_string_lossy().into_owned());
        Ok(cli)
    }
}

/// `opsctl --format json backup list --dir D` → `opsctl backup list --format json --dir D`.
/// Only the words before the first other flag are looked at; the rest is left as is.
pub fn hoist_common_flags(args: &[std::ffi::OsString]) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let root = Cli::command();
    let mut cmd = &root;
    let mut head: Vec<std::ffi::OsString> = args.iter().take(1).cloned().collect();
    let mut moved = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let word = args[i].to_string_lossy();
        let flag = word.split('=').next().unwrap_or_default();
        if COMMON_FLAGS.contains(&flag) || flag == "--log-format" {
            let to = if flag == "--log-format" {
                &mut head
            } else {
                &mut moved
            };
            let n = if word.contains('=') { 1 } else { 2 };
            to.extend(args[i..(i + n).min(args.len())].iter().cloned());
            i += n;
            continue;
        }
        if word.starts_with('-') || !cmd.has_subcommands() {
            break;
        }
        match cmd.find_subcommand(word.as_ref()) {
            Some(sub) => {
                head.push(args[i].clone());
                cmd = sub;
                i += 1;
            }
            None => break,
        }
    }
    if moved.is_empty() {
        return args.to_vec();
    }
    head.extend(moved);
    head.extend(args[i.min(args.len())..].iter().cloned());
    head
}

/// `restore --pitr`: a physical restore to a point in time.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("pitr_target").args(["to_time", "to_lsn", "to_xid", "to_name", "latest"]).multiple(false)))]
pub struct PitrRestoreArgs {
    /// Point-in-time recovery: a base backup plus archived WAL into a new data directory.
    #[arg(long, help_heading = "Point-in-time recovery", requires_all = ["pgdata", "pitr_target"])]
    pub pitr: bool,
    /// The data directory to create (absent or empty; never one a server uses).
    #[arg(
        long,
        value_name = "DIR",
        help_heading = "Point-in-time recovery",
        requires = "pitr"
    )]
    pub pgdata: Option<PathBuf>,
    /// Recover up to this time (RFC 3339; no zone = UTC), stopping before the first
    /// transaction committed after it.
    #[arg(
        long,
        value_name = "T",
        help_heading = "Point-in-time recovery",
        requires = "pitr"
    )]
    pub to_time: Option<String>,
    /// Recover up to this WAL position (e.g. 0/3000060).
    #[arg(
        long,
        value_name = "L",
        help_heading = "Point-in-time recovery",
        requires = "pitr"
    )]
    pub to_lsn: Option<String>,
    /// Recover up to and including this transaction id.
    #[arg(
        long,
        value_name = "X",
        help_heading = "Point-in-time recovery",
        requires = "pitr"
    )]
    pub to_xid: Option<u64>,
    /// Recover up to a restore point made with opsctl restore-point NAME.
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "Point-in-time recovery",
        requires = "pitr"
    )]
    pub to_name: Option<String>,
    /// Recover everything the archive holds.
    #[arg(long, help_heading = "Point-in-time recovery", requires = "pitr")]
    pub latest: bool,
    /// The base backup to start from (default: the newest one before the target).
    #[arg(
        long = "backup",
        value_name = "ID",
        help_heading = "Point-in-time recovery",
        requires = "pitr"
    )]
    pub base_backup: Option<String>,
    /// What the server does at the target.
    #[arg(
        long,
        value_enum,
        default_value = "promote",
        help_heading = "Point-in-time recovery"
    )]
    pub target_action: TargetAction,
    /// Start the server (as the data directory's owner), wait until recovery reaches the
    /// target, and report the position and time reached.
    #[arg(long, help_heading = "Point-in-time recovery", requires = "pitr")]
    pub start: bool,
    /// Port for the restored server (written into postgresql.auto.conf; default: the
    /// source's port from the backup).
    #[arg(long, help_heading = "Point-in-time recovery", requires = "pitr")]
    pub port: Option<u16>,
    /// With --start: how long to wait for recovery to reach the target.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration_arg, help_heading = "Point-in-time recovery")]
    pub start_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TargetAction {
    Promote,
    Pause,
    Shutdown,
}

#[derive(Debug, Args)]
pub struct BasebackupArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Repository (a policy repository name or a URL; default: the policy's first).
    #[arg(long, value_name = "URL|NAME")]
    pub repo: Option<String>,
    /// How long to wait for the archive to receive the WAL the backup needs
    /// (default: [basebackup] archive_wait, 5m).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub archive_wait: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct RestorePointArgs {
    /// The restore point's name (use it with restore --pitr --to-name NAME).
    pub name: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}
