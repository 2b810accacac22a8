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
    /// Monthly partitions of time-partitioned tables: create them ahead, list them.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Moves rows older than a date out of a live table into archive.<table>, resumably.
    Archive(ArchiveArgs),
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

#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Creates the monthly partitions from the oldest data month through now + premake
    /// months, moving rows out of the default partition into them. Idempotent.
    Ensure(PartitionEnsureArgs),
    /// Lists each partition with its range, estimated rows, size and state
    /// (live, archived, default), and the runway of future months.
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
pub struct ArchiveArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Rows whose time column is older than DATE move: YYYY-MM-DD (midnight) or RFC 3339
    /// (2026-01-15T12:00:00Z); UTC.
    #[arg(long, value_name = "DATE")]
    pub before: String,
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
    /// Seconds to wait for another maintenance job (archive, backup, vacuum…) to finish;
    /// 0 refuses at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub lock_wait: u64,
}
