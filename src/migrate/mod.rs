//! Schema migrations: the files (`files`: naming, ordering, checksums, directives,
//! statement splitting) and the runner (`runner`: history table, advisory lock, apply,
//! status, verify, baseline, resolve).

pub mod files;
pub mod runner;

pub use files::{Migration, Statement};
pub use runner::{
    baseline, resolve, status, up, verify, Entry, EntryState, Resolution, Status, UpOptions,
    UpReport,
};
