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
    /// Schema migrations: up, status, verify, baseline, resolve (exit 0 ok, 1 failure or drift, 2 usage).
    Migrate(MigrateArgs),
    /// Imports a JSON array or NDJSON file of rows into one table, validated, in batches.
    Import(ImportArgs),
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
    Up(MigrateUpArgs),
    /// Lists applied, pending, failed and changed migrations (exit 0 up to date, 1 otherwise).
    Status(MigrateStatusArgs),
    /// Compares the checksums of applied migrations with the files (exit 1 on drift).
    Verify(MigrateStatusArgs),
    /// Adopts a database that already has the schema: records versions up to V as applied.
    Baseline(MigrateBaselineArgs),
    /// Clears a failed non-transactional migration after a person has looked at the database.
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
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub lock_wait: String,
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
    /// How long to wait for another `migrate` holding the lock.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub lock_wait: String,
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
    /// How long to wait for another `migrate` holding the lock.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub lock_wait: String,
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
    #[arg(long, value_name = "PATH")]
    pub reject_file: Option<PathBuf>,
    /// Rows per staging batch.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: u64,
}
