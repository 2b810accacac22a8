//! The integration tests: one binary, one throwaway cluster, a module per command.

mod archive_export;
mod audit;
mod backup;
mod bench;
mod cli;
mod common;
mod compression;
mod connect;
mod dashboard;
mod health;
mod import;
mod maintenance;
mod migrate;
mod oplog;
mod partition;
mod pitr;
mod reports;
mod repos;
mod restore_signals;
#[cfg(feature = "test-hooks")]
mod s3;
mod schedule;
mod secrets;
mod security;
mod wal;
