//! Backups in repositories (see [`crate::storage`]): keys `<database>/<id>.opsbak`,
//! `<id>.json` (summary, written last: a backup is listed only once it is there) and
//! `<id>.status.json`; listing one or several repositories; a local file for the readers
//! (a local repository's file in place, else the encrypted object spooled once to a 0600
//! file in a private 0700 directory); and copies between repositories verified by
//! reading them back (SHA-256 and size; no key needed).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::Summary;
use super::repo::{self, Entry, Status, EXT};
use crate::error::Error;
use crate::storage::{Location, Repository};

/// The key of a backup object.
pub fn object_key(database: &str, id: &str) -> String {
    format!("{}/{id}.{EXT}", repo::sanitize(database))
}

fn stem(key: &str) -> &str {
    key.strip_suffix(&format!(".{EXT}")).unwrap_or(key)
}

pub fn summary_key(key: &str) -> String {
    format!("{}.json", stem(key))
}

pub fn status_key(key: &str) -> String {
    format!("{}.status.json", stem(key))
}

/// The directory of a local repository.
pub fn local_dir(r: &Repository) -> Option<&Path> {
    match &r.location {
        Location::Local(p) => Some(p),
        _ => None,
    }
}

/// Where a backup is, as shown to a person: the file of a local repository, else the
/// repository URL and the key.
pub fn display_path(r: &Repository, key: &str) -> PathBuf {
    r.local_path(key)
        .unwrap_or_else(|| PathBuf::from(format!("{}/{key}", r.display())))
}

/// Every complete backup in `r` (all databases), oldest first.
pub fn list(r: &Repository) -> Result<Vec<Entry>, Error> {
    if let Some(dir) = local_dir(r) {
        return repo::list(dir);
    }
    let objects = r.list("")?;
    let mut out = Vec::new();
    for o in &objects {
        let parts: Vec<&str> = o.key.split('/').collect();
        if parts.len() != 2
            || parts.iter().any(|p| p.starts_with('.'))
            || !o.key.ends_with(&format!(".{EXT}"))
        {
            continue;
        }
        if let Some(e) = entry(r, &o.key)? {
            out.push(e);
        }
    }
    out.sort_by(|a, b| {
        (a.summary.started_at, &a.summary.id).cmp(&(b.summary.started_at, &b.summary.id))
    });
    Ok(out)
}

/// The listed backup under `key` (None when its summary is not there: not complete).
fn entry(r: &Repository, key: &str) -> Result<Option<Entry>, Error> {
    let Some(text) = r.get(&summary_key(key))? else {
        return Ok(None);
    };
    let Ok(summary) = serde_json::from_slice::<Summary>(&text) else {
        tracing::debug!("{key}: malformed summary, not listed");
        return Ok(None);
    };
    let status = read_status(r, key);
    Ok(Some(Entry {
        summary,
        path: display_path(r, key),
        status,
        repositories: Vec::new(),
        key: key.to_string(),
    }))
}

/// The complete backups of one database in `r`, oldest first.
pub fn list_database(r: &Repository, database: &str) -> Result<Vec<Entry>, Error> {
    if let Some(dir) = local_dir(r) {
        return repo::list_db_dir(&repo::db_dir(dir, database));
    }
    Ok(list(r)?
        .into_iter()
        .filter(|e| e.summary.database == database)
        .collect())
}

pub fn read_status(r: &Repository, key: &str) -> Status {
    r.get(&status_key(key))
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

/// The backups of several repositories merged: one entry per backup (the first
/// repository's copy), naming every repository that holds it. A repository that cannot
/// be listed is a problem line, unless it is the only one (then the error).
pub fn list_all(repos: &[Repository]) -> Result<(Vec<Entry>, Vec<String>), Error> {
    let mut merged: BTreeMap<(String, String), Entry> = BTreeMap::new();
    let mut problems = Vec::new();
    for r in repos {
        let entries = match list(r) {
            Ok(e) => e,
            Err(e) if repos.len() == 1 => return Err(e),
            Err(e) => {
                problems.push(format!("repository {} ({}): {e}", r.name, r.display()));
                continue;
            }
        };
        for e in entries {
            merged
                .entry((e.summary.database.clone(), e.summary.id.clone()))
                .or_insert_with(|| e.clone())
                .repositories
                .push(r.name.clone());
        }
    }
    let mut out: Vec<Entry> = merged.into_values().collect();
    out.sort_by(|a, b| {
        (a.summary.started_at, &a.summary.id).cmp(&(b.summary.started_at, &b.summary.id))
    });
    Ok((out, problems))
}

/// The copies of backup `id` (or of a backup file given by path): (repository index,
/// key), in repository order. An error when no repository holds it or when the id
/// names backups of several databases.
pub fn find(id: &str, repos: &[Repository]) -> Result<Vec<(usize, String)>, Error> {
    let mut hits: Vec<(usize, String, String)> = Vec::new();
    let mut problems = Vec::new();
    for (i, r) in repos.iter().enumerate() {
        match list(r) {
            Ok(es) => hits.extend(
                es.into_iter()
                    .filter(|e| e.summary.id == id)
                    .map(|e| (i, e.key, e.summary.database)),
            ),
            Err(e) if repos.len() == 1 => return Err(e),
            Err(e) => problems.push(format!("{}: {e}", r.name)),
        }
    }
    let mut dbs: Vec<&str> = hits.iter().map(|h| h.2.as_str()).collect();
    dbs.sort();
    dbs.dedup();
    let names = repos
        .iter()
        .map(|r| r.display())
        .collect::<Vec<_>>()
        .join(", ");
    if dbs.len() > 1 {
        return Err(Error::Config(format!(
            "backup id {id:?} exists for several databases under {names}; give the file path"
        )));
    }
    if hits.is_empty() {
        let first = repos.first().map(|r| r.display()).unwrap_or_default();
        let mut msg = if repos.len() == 1 {
            format!(
                "no backup file or backup id {id:?} under {first} (see `opsctl backup list \
                 --dir {first}`)"
            )
        } else {
            format!("no backup file or backup id {id:?} in repositories {names}")
        };
        if !problems.is_empty() {
            msg.push_str(&format!(" ({})", problems.join("; ")));
        }
        return Err(Error::Config(msg));
    }
    Ok(hits.into_iter().map(|(i, k, _)| (i, k)).collect())
}

/// A backup as a local file for the readers (verify, restore, drill, rekey): the file of
/// a local repository, or a private spooled copy (removed when dropped) holding the
/// object, its summary and its status under the same names.
pub struct Fetched {
    pub path: PathBuf,
    spool: Option<PathBuf>,
}

impl Fetched {
    /// A file given by path (no repository).
    pub fn file(path: &Path) -> Fetched {
        Fetched {
            path: path.to_path_buf(),
            spool: None,
        }
    }

    pub fn is_spooled(&self) -> bool {
        self.spool.is_some()
    }

    /// Puts what a reader wrote beside a spooled copy (its status) back in `r`.
    pub fn push_status(&self, r: &Repository, key: &str) -> Result<(), Error> {
        if self.spool.is_none() {
            return Ok(());
        }
        if let Ok(text) = std::fs::read(repo::status_path(&self.path)) {
            r.put(&status_key(key), &text)?;
        }
        Ok(())
    }

    /// Puts a rewritten spooled copy (object, then summary) back in `r`.
    pub fn push_all(&self, r: &Repository, key: &str) -> Result<(), Error> {
        if self.spool.is_none() {
            return Ok(());
        }
        let mut f = std::fs::File::open(&self.path)
            .map_err(Error::io(format!("cannot read {}", self.path.display())))?;
        let mut sink = r.create(key)?;
        if let Err(e) = std::io::copy(&mut f, &mut sink) {
            sink.abort();
            return Err(Error::io(format!("cannot write {key} in {}", r.display()))(
                e,
            ));
        }
        sink.commit()?;
        if let Ok(text) = std::fs::read(repo::summary_path(&self.path)) {
            r.put(&summary_key(key), &text)?;
        }
        Ok(())
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        if let Some(d) = self.spool.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A local file of backup `key` in `r`: in place for a local repository; otherwise the
/// encrypted object read once into a 0600 file in a new 0700 directory under the
/// temporary directory (when it fits the free space there, with a margin).
pub fn fetch(r: &Repository, key: &str) -> Result<Fetched, Error> {
    if let Some(p) = r.local_path(key) {
        return Ok(Fetched::file(&p));
    }
    use std::os::unix::fs::DirBuilderExt;
    let info = r.head(key)?.ok_or_else(|| {
        Error::Config(format!("backup {key} is not in repository {}", r.display()))
    })?;
    let tmp = std::env::temp_dir();
    for d in crate::fsutil::remove_orphaned_dirs(&tmp, ".opsctl-fetch-") {
        crate::logging::note(format_args!(
            "removed {}, the spool of an opsctl run that was killed",
            d.display()
        ));
    }
    let free = super::restore::free_space(&tmp)?;
    let need = info.size + info.size / 10 + (64 << 20);
    if free < need {
        return Err(Error::Config(format!(
            "backup {key} in {} ({}) does not fit the free space of {} ({} free): free \
             space or point TMPDIR elsewhere",
            r.display(),
            crate::units::human_bytes(info.size),
            tmp.display(),
            crate::units::human_bytes(free)
        )));
    }
    let dir = tmp.join(format!(
        ".opsctl-fetch-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(Error::io(format!("cannot create {}", dir.display())))?;
    let name = key.rsplit('/').next().unwrap_or(key);
    let fetched = Fetched {
        path: dir.join(name),
        spool: Some(dir),
    };
    let mut out = crate::fsutil::create_new(&fetched.path, 0o600)?;
    let mut inp = r.open(key)?;
    std::io::copy(&mut inp, &mut out).map_err(Error::io(format!(
        "cannot read {key} from repository {}",
        r.display()
    )))?;
    out.flush().map_err(Error::io(format!(
        "cannot write {}",
        fetched.path.display()
    )))?;
    for (k, p) in [
        (summary_key(key), repo::summary_path(&fetched.path)),
        (status_key(key), repo::status_path(&fetched.path)),
    ] {
        if let Some(b) = r.get(&k)? {
            let mut f = crate::fsutil::create_new(&p, 0o600)?;
            f.write_all(&b)
                .map_err(Error::io(format!("cannot write {}", p.display())))?;
        }
    }
    Ok(fetched)
}

/// SHA-256 and length of everything `r` yields.
fn hash_stream(mut r: impl Read) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// What a verified copy moved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Copies backup `key` (object, status, then summary last) from `from` to `to`, and reads
/// the copy back: its SHA-256 and size must be those of what was read from `from` (and
/// the size the summary records). A copy that does not read back is removed.
pub fn copy(from: &Repository, to: &Repository, key: &str) -> Result<Copied, Error> {
    let summary = from.get(&summary_key(key))?.ok_or_else(|| {
        Error::Config(format!(
            "backup {key} in {} has no summary: it is not complete",
            from.display()
        ))
    })?;
    let file_bytes = serde_json::from_slice::<Summary>(&summary)
        .map(|s| s.file_bytes)
        .ok();
    let status = from.get(&status_key(key))?;
    let src = from.open(key)?;
    let mut sink = to.create(key)?;
    // Hash what passes from the source into the sink.
    struct Tee<'a, R> {
        inner: R,
        sink: &'a mut dyn Write,
        hash: Sha256,
    }
    impl<R: Read> Read for Tee<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.hash.update(&buf[..n]);
            self.sink.write_all(&buf[..n])?;
            Ok(n)
        }
    }
    let written = {
        let mut tee = Tee {
            inner: src,
            sink: &mut sink,
            hash: Sha256::new(),
        };
        let r = std::io::copy(&mut tee, &mut std::io::sink());
        r.map(|n| (hex::encode(tee.hash.finalize()), n))
    };
    let (sha, n) = match written {
        Ok(x) => x,
        Err(e) => {
            sink.abort();
            return Err(Error::io(format!(
                "cannot copy {key} from {} to {}",
                from.display(),
                to.display()
            ))(e));
        }
    };
    sink.commit()?;
    let back = to.open(key).and_then(|r| {
        hash_stream(r).map_err(Error::io(format!(
            "cannot read back {key} in {}",
            to.display()
        )))
    });
    let bad = match &back {
        Ok((s, m)) if *s == sha && *m == n && file_bytes.map_or(true, |f| f == n) => None,
        Ok((s, m)) => Some(format!(
            "the copy of {key} in {} reads back as {m} bytes / SHA-256 {}, written as {n} \
             bytes / {}{}",
            to.display(),
            &s[..12],
            &sha[..12],
            match file_bytes {
                Some(f) if f != n => format!(" (the summary records {f} bytes)"),
                _ => String::new(),
            }
        )),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = bad {
        let _ = to.delete(key);
        return Err(Error::Verify(format!("{why}; the copy was removed")));
    }
    if let Some(st) = status {
        to.put(&status_key(key), &st)?;
    }
    to.put(&summary_key(key), &summary)?;
    Ok(Copied {
        key: key.to_string(),
        bytes: n,
        sha256: sha,
    })
}

/// Deletes a backup from `r`: summary first (gone from the listing at once), object,
/// status.
pub fn delete(r: &Repository, key: &str) -> Result<(), Error> {
    if let Some(p) = r.local_path(key) {
        return repo::delete(&p);
    }
    r.delete(&summary_key(key))?;
    r.delete(key)?;
    r.delete(&status_key(key))
}

/// The backups of `database` that `from` holds and `to` lacks, newer than the newest one
/// `to` holds (so backups pruned from `to` under its own retention are not brought back):
/// what the next run copies after a failed copy.
pub fn missing(from: &Repository, to: &Repository, database: &str) -> Result<Vec<String>, Error> {
    let src = list_database(from, database)?;
    // A repository not made yet (or unreadable: the copies then say why) holds nothing.
    let dst = list_database(to, database).unwrap_or_default();
    let newest = dst.iter().map(|e| e.summary.started_at).max();
    Ok(src
        .into_iter()
        .filter(|e| {
            newest.map_or(true, |t| e.summary.started_at > t)
                && !dst.iter().any(|d| d.summary.id == e.summary.id)
        })
        .map(|e| e.key)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_backup() {
        let k = object_key("trading", "20261202T101500Z-abcd");
        assert_eq!(k, "trading/20261202T101500Z-abcd.opsbak");
        assert_eq!(summary_key(&k), "trading/20261202T101500Z-abcd.json");
        assert_eq!(status_key(&k), "trading/20261202T101500Z-abcd.status.json");
        assert_eq!(object_key(".x", "i"), "_.x/i.opsbak");
    }

    #[test]
    fn a_copy_is_verified_and_listed_last() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ra = Repository::local("a", a.path());
        let rb = Repository::from_url("b", &format!("file://{}", b.path().display())).unwrap();
        ra.put("db/x.opsbak", b"sealed bytes").unwrap();
        assert!(
            copy(&ra, &rb, "db/x.opsbak").is_err(),
            "no summary: not complete"
        );
        assert!(!rb.exists("db/x.opsbak").unwrap());
        ra.put("db/x.json", b"{}").unwrap();
        let c = copy(&ra, &rb, "db/x.opsbak").unwrap();
        assert_eq!(c.bytes, 12);
        assert_eq!(rb.get("db/x.opsbak").unwrap().unwrap(), b"sealed bytes");
        assert_eq!(rb.get("db/x.json").unwrap().unwrap(), b"{}");
    }
}
