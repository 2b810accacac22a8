//! opsctl: keeps a PostgreSQL trading database healthy and recoverable.
//!
//! Layout: `cli` (clap types) → `commands` (one handler per subcommand) → domain modules
//! (`report`, `policy`, ...) → `db` (connections, TLS, quoting, locks).

pub mod audit;
pub mod backup;
pub mod childenv;
pub mod cli;
pub mod commands;
pub mod datetime;
pub mod db;
pub mod duration;
pub mod error;
pub mod fsutil;
pub mod help;
pub mod import;
pub mod interrupt;
pub mod logging;
pub mod maintenance;
pub mod migrate;
pub mod oplog;
pub mod partition;
pub mod pitr;
pub mod policy;
pub mod policy_check;
pub mod report;
pub mod schedule;
pub mod serve;
pub mod storage;
pub mod text;
pub mod units;
pub mod wal;

pub use error::{Error, Result};
