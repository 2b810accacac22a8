//! Physical backups and point-in-time recovery: base backups (`basebackup`), restore to a
//! point in time (`restore`), and the catalog both share (`catalog`): LSNs, WAL file
//! names, what the archive holds, and the recovery window it opens.

pub mod basebackup;
pub mod catalog;
pub mod drill;
pub mod prune;
pub mod restore;
pub mod tarscan;
