//! Files written safely: temporary name in the target directory, fsync, rename, fsync dir.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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
    let tmp = temp_path(path);
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = create_new(&tmp, mode)?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(Error::io(format!("cannot write {}", tmp.display())))?;
        fs::rename(&tmp, path)
            .map_err(Error::io(format!("cannot rename to {}", path.display())))?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
