//! The integration tests: one binary, one throwaway cluster, a module per command.

mod common;
mod connect;
mod health;
mod import;
mod migrate;
