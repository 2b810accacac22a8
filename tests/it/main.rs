//! The integration tests: one binary, one throwaway cluster, a module per command.

mod archive_export;
mod audit;
mod backup;
mod bench;
mod cli;
mod common;
mod compression;
mod connect;
mod health;
mod import;
mod maintenance;
mod migrate;
mod oplog;
mod partition;
mod reports;
mod restore_signals;
mod schedule;
mod secrets;
mod security;
