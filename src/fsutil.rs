//! Files written safely: temporary name in the target directory, fsync, rename, fsync dir.
//! A temporary file is locked (flock) by its writer until it is renamed, so a cleaner can
//! tell a file being written from one whose writer is gone.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The temporary name used while `path` is being written (hidden, same directory).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// True for a name [`temp_path`] makes: `.<name>.tmp-<pid>`.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// A temporary file beside its target (named by [`temp_path`]), created with a mode and
/// held under an exclusive `flock` for as long as this value lives: the lock goes when the
/// writer ends, however it ends (even `kill -9`). Removed on drop unless
/// [`TempFile::persist`] renamed it over its target.
pub struct TempFile {
    pub path: PathBuf,
    target: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    pub fn create(target: &Path, mode: u32) -> Result<TempFile, Error> {
        let path = temp_path(target);
        // A file of that name is from an earlier process with our pid: it is gone.
        let _ = fs::remove_file(&path);
        for _ in 0..3 {
            let file = create_new(&path, mode)?;
            // Blocks only while a cleaner that found the new file unlocked holds it. Where
            // the file system has no locks the file stays unlocked, and cleaners, unable
            // to tell, leave it alone.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                tracing::debug!(
                    "cannot lock {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
            // A cleaner may have taken the file for abandoned between its creation and
            // the lock, and removed it: then make it again.
            let same = match (file.metadata(), fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if same {
                return Ok(TempFile {
                    path,
                    target: target.to_path_buf(),
                    file,
                    persisted: false,
                });
            }
        }
        Err(Error::Other(format!(
            "{} keeps disappearing while it is created; is another program removing files there?",
            path.display()
        )))
    }

    /// The open file (writes through `&File`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Another handle on the same open file, e.g. for a writer thread; the lock stays
    /// until every handle is closed.
    pub fn try_clone(&self) -> Result<File, Error> {
        self.file
            .try_clone()
            .map_err(Error::io(format!("cannot reopen {}", self.path.display())))
    }

    /// Renames the (written and fsynced) file over its target and fsyncs the directory;
    /// the lock is held until the rename is done.
    pub fn persist(mut self) -> Result<(), Error> {
        fs::rename(&self.path, &self.target).map_err(Error::io(format!(
            "cannot rename into {}",
            self.target.display()
        )))?;
        self.persisted = true;
        sync_dir(&self.target)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether the writer of a temporary file still holds it: `Some(true)` being written,
/// `Some(false)` its writer is gone (nobody holds the lock), `None` cannot tell (the file
/// vanished, or the file system has no locks).
pub fn temp_in_use(path: &Path) -> Option<bool> {
    let f = File::open(path).ok()?;
    probe_lock(&f)
}

fn probe_lock(f: &File) -> Option<bool> {
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Some(false);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EWOULDBLOCK) => Some(true),
        _ => None,
    }
}

/// Removes a temporary file whose writer is gone, holding its lock meanwhile so a writer
/// cannot take it over; returns false (and leaves it) when a writer holds it or when
/// that cannot be told.
pub fn remove_abandoned_temp(path: &Path) -> Result<bool, Error> {
    let Ok(f) = File::open(path) else {
        return Ok(false);
    };
    if probe_lock(&f) != Some(false) {
        return Ok(false);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("cannot remove {}", path.display()))(e)),
    }
}

/// Creates a new file with `mode` that must not exist yet.
pub fn create_new(path: &Path, mode: u32) -> Result<File, Error> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(Error::io(format!("cannot create {}", path.display())))
}

/// Fsyncs the directory holding `path`, so a rename survives a crash.
pub fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(format!(
            "cannot fsync directory {}",
            dir.display()
        )))
}

/// Writes `bytes` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = TempFile::create(path, mode)?;
    let mut f = tmp.file();
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(Error::io(format!("cannot write {}", tmp.path.display())))?;
    tmp.persist()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_file_is_in_use_until_renamed_and_an_abandoned_one_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        let t = TempFile::create(&target, 0o600).unwrap();
        assert!(is_temp_name(&t.path.file_name().unwrap().to_string_lossy()));
        assert_eq!(temp_in_use(&t.path), Some(true));
        assert!(!remove_abandoned_temp(&t.path).unwrap());
        assert!(t.path.exists());
        let tmp = t.path.clone();
        t.persist().unwrap();
        assert!(target.exists() && !tmp.exists());
        // Nobody holds this one: its writer is gone.
        let left = dir.path().join(".y.tmp-1");
        fs::write(&left, b"partial").unwrap();
        assert_eq!(temp_in_use(&left), Some(false));
        assert!(remove_abandoned_temp(&left).unwrap());
        assert!(!left.exists());
        // Dropped without persist: removed.
        let t = TempFile::create(&target, 0o600).unwrap();
        let tmp = t.path.clone();
        drop(t);
        assert!(!tmp.exists());
    }
}

/// Removes the directories `<dir>/<prefix><pid>-…` that a process which no longer runs
/// left behind (a `kill -9` skips every clean-up); a directory whose process still runs
/// (or whose pid was reused) is left alone, and so is one holding a PostgreSQL data
/// directory (`data/postmaster.pid`) whose server still runs. Returns what was removed.
pub fn remove_orphaned_dirs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let path = e.path();
        if pid == std::process::id()
            || Path::new(&format!("/proc/{pid}")).exists()
            || !path.is_dir()
            || path.is_symlink()
        {
            continue;
        }
        let server_runs = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
            .is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if server_runs {
            continue;
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod orphan_tests {
    use super::*;

    #[test]
    fn only_directories_of_processes_that_are_gone_are_removed() {
        let t = tempfile::tempdir().unwrap();
        // pid 1 runs; a pid above the kernel's maximum never does.
        let alive = t.path().join(".opsctl-fetch-1-aaaa");
        let gone = t.path().join(".opsctl-fetch-4194305-bbbb");
        let other = t.path().join("unrelated-4194305");
        let server = t.path().join(".opsctl-fetch-4194306-cccc");
        std::fs::create_dir_all(server.join("data")).unwrap();
        std::fs::write(server.join("data/postmaster.pid"), "1\n/x\n").unwrap();
        for d in [&alive, &gone, &other] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("f"), b"x").unwrap();
        }
        let removed = remove_orphaned_dirs(t.path(), ".opsctl-fetch-");
        assert_eq!(removed, vec![gone.clone()]);
        assert!(alive.exists() && other.exists() && server.exists() && !gone.exists());
    }
}
