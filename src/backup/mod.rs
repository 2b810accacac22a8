//! Encrypted, compressed, verifiable backups of the database: the container format,
//! keys, pg_dump/pg_restore, the sealed manifest, the repository on disk, restore and
//! restore drills. See docs/backup-format.md.

pub mod bookkeeping;
pub mod compress;
pub mod create;
pub mod drill;
pub mod dumpscan;
pub mod format;
pub mod keys;
pub mod manifest;
pub mod pgdump;
pub mod repo;
pub mod restore;
pub mod store;
pub mod verify;

/// Progress reporting for long byte streams; a no-op unless the caller installs a bar.
pub trait Progress: Send + Sync {
    fn add(&self, bytes: u64);
}

impl Progress for () {
    fn add(&self, _: u64) {}
}

impl Progress for indicatif::ProgressBar {
    fn add(&self, bytes: u64) {
        self.inc(bytes);
    }
}

/// A reader that reports the bytes it passes through.
pub struct Counting<'a, R> {
    pub inner: R,
    pub count: u64,
    pub progress: &'a dyn Progress,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        self.progress.add(n as u64);
        Ok(n)
    }
}
