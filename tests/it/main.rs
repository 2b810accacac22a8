//! The integration tests: one binary, one throwaway cluster, a module per command.

mod common;
mod audit;
mod connect;
mod health;
