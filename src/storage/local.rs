//! The local-directory repository: a key is a file under the root; a writer is a locked
//! temporary file beside its target, fsynced and renamed into place on commit.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{Backend, ObjectInfo, Sink};
use crate::error::Error;
use crate::fsutil::{self, TempFile};

pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub fn new(root: &Path) -> LocalBackend {
        LocalBackend {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

struct LocalSink {
    out: BufWriter<File>,
    tmp: TempFile,
}

impl Write for LocalSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Sink for LocalSink {
    fn commit(self: Box<Self>) -> Result<(), Error> {
        let LocalSink { out, tmp } = *self;
        let path = tmp.path.clone();
        let f = out
            .into_inner()
            .map_err(|e| Error::io(format!("cannot write {}", path.display()))(e.into_error()))?;
        f.sync_all()
            .map_err(Error::io(format!("cannot fsync {}", path.display())))?;
        drop(f);
        tmp.persist()
    }

    fn abort(self: Box<Self>) {
        // Dropping the TempFile removes it.
    }
}

fn modified(meta: &fs::Metadata) -> DateTime<Utc> {
    meta.modified()
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now())
}

impl Backend for LocalBackend {
    fn create(&self, key: &str) -> Result<Box<dyn Sink>, Error> {
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(Error::io(format!("cannot create {}", parent.display())))?;
        }
        let tmp = TempFile::create(&path, 0o600)?;
        let out = BufWriter::with_capacity(1 << 20, tmp.try_clone()?);
        Ok(Box::new(LocalSink { out, tmp }))
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, Error> {
        let path = self.path(key);
        let f = File::open(&path).map_err(Error::io(format!("cannot open {}", path.display())))?;
        Ok(Box::new(f))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, Error> {
        let path = self.path(key);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: m.len(),
                modified: modified(&m),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("cannot read {}", path.display()))(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, Error> {
        // Walk the deepest directory the prefix names, then filter by the full prefix.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("cannot list {}", dir.display()))(e)),
            };
            for ent in rd {
                let ent = ent.map_err(Error::io(format!("cannot list {}", dir.display())))?;
                let path = ent.path();
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                let name = ent.file_name().to_string_lossy().into_owned();
                if fsutil::is_temp_name(&name) {
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                if key.starts_with(prefix) {
                    out.push(ObjectInfo {
                        key,
                        size: meta.len(),
                        modified: modified(&meta),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("cannot remove {}", path.display()))(e)),
        }
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        Some(self.path(key))
    }

    fn clean_incomplete(&self, _older_than: std::time::Duration) -> Result<Vec<String>, Error> {
        // Locally a temporary file is abandoned when its writer's lock is gone, whatever
        // its age.
        let mut removed = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else {
                continue;
            };
            for ent in rd.flatten() {
                let path = ent.path();
                if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(path);
                } else if fsutil::is_temp_name(&ent.file_name().to_string_lossy())
                    && fsutil::remove_abandoned_temp(&path)?
                {
                    removed.push(format!(
                        "removed abandoned temporary file {}",
                        path.display()
                    ));
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Repository;
    use std::io::{Read, Write};

    #[test]
    fn objects_appear_on_commit_only_and_list_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::local("local", dir.path());
        let mut s = repo.create("db/a.opsbak").unwrap();
        s.write_all(b"hello").unwrap();
        assert!(repo.list("db/").unwrap().is_empty());
        assert!(!repo.exists("db/a.opsbak").unwrap());
        s.commit().unwrap();
        repo.put("db/a.json", b"{}").unwrap();
        let mut s = repo.create("db/b.opsbak").unwrap();
        s.write_all(b"partial").unwrap();
        s.abort();
        let keys: Vec<_> = repo
            .list("db/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, vec!["db/a.json", "db/a.opsbak"]);
        assert_eq!(repo.list("db/a.o").unwrap().len(), 1);
        let mut body = String::new();
        repo.open("db/a.opsbak")
            .unwrap()
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "hello");
        assert_eq!(repo.get("db/none").unwrap(), None);
        repo.delete("db/a.json").unwrap();
        repo.delete("db/a.json").unwrap();
        assert_eq!(repo.list("").unwrap().len(), 1);
        assert!(repo.open("../x").is_err());
    }
}
