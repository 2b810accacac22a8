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
    /// Vacuum and analyze the tables that need it (dead tuples, autovacuum behind,
    /// transaction-ID age, stale statistics), worst first, one at a time.
    Vacuum(VacuumArgs),
    /// Rebuild bloated and invalid indexes with REINDEX INDEX CONCURRENTLY, one at a time.
    Reindex(ReindexArgs),
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

fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::maintenance::parse_duration(s)
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
