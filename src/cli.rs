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
    /// On-call reports: connection pool, sizes and growth (exit codes as health).
    Report(ReportArgs),
    /// HTTP endpoint for load balancers and Prometheus: GET /db/health and /metrics.
    Serve(ServeArgs),
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

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub report: ReportKind,
}

#[derive(Debug, Subcommand)]
pub enum ReportKind {
    /// Connections by state, application, user and client; idle in transaction; long
    /// queries; lock waits and their blockers; the share using TLS.
    Pool(PoolArgs),
    /// Database size, largest tables and indexes, growth from snapshots, days until the
    /// policy's disk limit.
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
}
