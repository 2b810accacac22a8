//! opsctl: keeps a PostgreSQL trading database healthy and recoverable.
//!
//! Layout: `cli` (clap types) → `commands` (one handler per subcommand) → domain modules
//! (`report`, `policy`, ...) → `db` (connections, TLS, quoting, locks).

pub mod cli;
pub mod commands;
pub mod db;
pub mod error;
pub mod fsutil;
pub mod import;
pub mod logging;
pub mod migrate;
pub mod policy;
pub mod report;

pub use error::{Error, Result};
