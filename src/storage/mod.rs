//! Repositories: where sealed files (backups, archive exports, WAL segments, base backups)
//! are kept — a local directory or an S3-compatible bucket prefix — behind one interface.
//!
//! Keys are relative, `/`-separated names (`trading/20261202T101500Z.opsbak`). A writer
//! ([`Sink`]) makes its object visible only on [`Sink::commit`]: a local temporary file
//! renamed into place, or a multipart upload completed at the end; dropped or aborted, it
//! leaves nothing listed. The interface is synchronous (the sealed-file pipeline runs on
//! blocking threads); the S3 kind drives its async client on a runtime of its own.

pub mod config;
pub mod local;
pub mod s3;
pub mod sealed;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::error::Error;

/// One stored object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    /// Relative key, `/`-separated.
    pub key: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
}

/// A writer of one object; nothing is visible under its key until [`Sink::commit`].
pub trait Sink: Write + Send {
    /// Makes the object durable and visible (fsync + rename, or upload completion).
    fn commit(self: Box<Self>) -> Result<(), Error>;
    /// Discards what was written (removes the temporary file, aborts the upload).
    fn abort(self: Box<Self>);
}

/// Where a repository is.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// A local directory (a plain path or `file:///path`).
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses a repository URL: a plain path, `file:///path` or `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<Location, Error> {
        let url = url.trim();
        if url.is_empty() {
            return Err(Error::Config("a repository URL is empty".into()));
        }
        if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(Error::Config(format!(
                    "repository URL {url:?}: a file URL needs an absolute path (file:///path)"
                )));
            }
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Config(format!(
                    "repository URL {url:?} names no bucket (s3://bucket/prefix)"
                )));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(Error::Config(format!(
                "repository URL {url:?}: scheme {scheme:?} is not supported (a path, file:///path or s3://bucket/prefix)"
            )));
        }
        Ok(Location::Local(PathBuf::from(url)))
    }

    pub fn display(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

/// A repository: a name, where it is, and the client that reaches it.
pub struct Repository {
    pub name: String,
    pub location: Location,
    /// The repository's own retention (`[repositories.retention]`); `None` = the policy's
    /// `[backup.retention]`.
    pub retention: Option<crate::policy::Retention>,
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Repository({} at {})",
            self.name,
            self.location.display()
        )
    }
}

/// What each kind of repository implements. Keys are already validated.
pub trait Backend: Send + Sync {
    fn create(&self, key: &str) -> Result<Box<dyn Sink>, Error>;
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, Error>;
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, Error>;
    /// Every object whose key starts with `prefix` (recursively), sorted by key; temporary
    /// files and incomplete uploads are not objects.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, Error>;
    fn delete(&self, key: &str) -> Result<(), Error>;
    /// The local file of a key, where the repository is a directory.
    fn local_path(&self, key: &str) -> Option<PathBuf>;
    /// Removes what killed writers left (abandoned temporary files, incomplete uploads)
    /// older than `older_than`; returns a line per thing removed.
    fn clean_incomplete(&self, older_than: std::time::Duration) -> Result<Vec<String>, Error>;
}

impl Repository {
    /// A repository from its URL (the name is what messages call it).
    /// An S3 URL gets default S3 settings: [`resolve`] gives it a policy entry's.
    pub fn from_url(name: &str, url: &str) -> Result<Repository, Error> {
        let location = Location::parse(url)?;
        Self::build(name, location, &config::S3Settings::default(), None)
    }

    /// A repository from a policy `[[repositories]]` entry (checked first).
    pub fn from_entry(entry: &config::RepositoryEntry) -> Result<Repository, Error> {
        let (location, settings) = entry.resolve()?;
        Self::build(&entry.name, location, &settings, entry.retention.clone())
    }

    fn build(
        name: &str,
        location: Location,
        settings: &config::S3Settings,
        retention: Option<crate::policy::Retention>,
    ) -> Result<Repository, Error> {
        let backend: Box<dyn Backend> = match &location {
            Location::Local(p) => Box::new(local::LocalBackend::new(p)),
            Location::S3 { bucket, prefix } => {
                Box::new(s3::S3Backend::new(bucket, prefix, settings))
            }
        };
        Ok(Repository {
            name: name.to_string(),
            location,
            retention,
            backend,
        })
    }

    /// A repository over a local directory.
    pub fn local(name: &str, dir: &Path) -> Repository {
        Repository {
            name: name.to_string(),
            location: Location::Local(dir.to_path_buf()),
            retention: None,
            backend: Box::new(local::LocalBackend::new(dir)),
        }
    }

    /// A repository from its parts (the S3 kind builds itself through this).
    pub fn from_backend(name: &str, location: Location, backend: Box<dyn Backend>) -> Self {
        Repository {
            name: name.to_string(),
            location,
            retention: None,
            backend,
        }
    }

    /// The URL as shown to a person (never a credential).
    pub fn display(&self) -> String {
        self.location.display()
    }

    pub fn is_local(&self) -> bool {
        matches!(self.location, Location::Local(_))
    }

    /// A writer for `key`; the object appears only when the sink is committed.
    pub fn create(&self, key: &str) -> Result<Box<dyn Sink>, Error> {
        self.backend.create(check_key(key)?)
    }

    /// Streams the object's bytes.
    pub fn open(&self, key: &str) -> Result<Box<dyn Read + Send>, Error> {
        self.backend.open(check_key(key)?)
    }

    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, Error> {
        self.backend.head(check_key(key)?)
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.head(key)?.is_some())
    }

    /// A small object read whole; `None` when it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        if self.head(key)?.is_none() {
            return Ok(None);
        }
        let mut r = self.open(key)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(Error::io(format!(
            "cannot read {key} in repository {}",
            self.display()
        )))?;
        Ok(Some(out))
    }

    /// A small object written whole, atomically (replacing one of the same key).
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        let mut sink = self.create(key)?;
        if let Err(e) = sink.write_all(bytes) {
            sink.abort();
            return Err(Error::io(format!(
                "cannot write {key} in repository {}",
                self.display()
            ))(e));
        }
        sink.commit()
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, Error> {
        if !prefix.is_empty() {
            check_key(prefix.trim_end_matches('/'))?;
        }
        self.backend.list(prefix)
    }

    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.backend.delete(check_key(key)?)
    }

    /// The local file of `key` when this repository is a directory.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.backend.local_path(check_key(key).ok()?)
    }

    pub fn clean_incomplete(&self, older_than: std::time::Duration) -> Result<Vec<String>, Error> {
        self.backend.clean_incomplete(older_than)
    }
}

/// The repositories a policy configures, in order (the first is where new objects are
/// written): today's `[backup] dir` first when set (the one-repository shorthand, named
/// "local"), then the `[[repositories]]` entries. Names must differ.
pub fn from_policy(policy: &crate::policy::Policy) -> Result<Vec<Repository>, Error> {
    let dir_set = policy.backup.dir.is_some();
    if let Some((i, key, m)) = config::check_entries(&policy.repositories, dir_set)
        .into_iter()
        .next()
    {
        let name = &policy.repositories[i].name;
        let who = if name.is_empty() {
            format!("[[repositories]] entry {}", i + 1)
        } else {
            format!("repository {name:?}")
        };
        return Err(Error::Config(format!(
            "policy: {who}, key `{key}`: {m} (opsctl policy check lists every problem)"
        )));
    }
    let mut out = Vec::new();
    if let Some(dir) = &policy.backup.dir {
        out.push(Repository::local("local", dir));
    }
    for e in &policy.repositories {
        out.push(Repository::from_entry(e)?);
    }
    Ok(out)
}

/// The repository a `--repo URL|NAME` argument names: a policy repository by name, else
/// a URL (an `s3://` URL takes its S3 settings from the first policy entry of the same
/// bucket, else the defaults); without the argument, the policy's first repository.
pub fn resolve(arg: Option<&str>, policy: &crate::policy::Policy) -> Result<Repository, Error> {
    let mut repos = from_policy(policy)?;
    match arg {
        Some(a) => match repos.iter().position(|r| r.name == a) {
            Some(i) => Ok(repos.swap_remove(i)),
            None => from_url_with_policy(a, policy),
        },
        None => repos.into_iter().next().ok_or_else(|| {
            Error::Config(
                "no repository: pass --repo URL|NAME (or [[repositories]] / [backup] dir in the policy)"
                    .into(),
            )
        }),
    }
}

/// A repository from a URL given on the command line, named by the URL.
fn from_url_with_policy(url: &str, policy: &crate::policy::Policy) -> Result<Repository, Error> {
    let location = Location::parse(url).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!(
            "--repo: no policy repository is named {url:?}, and {m}"
        )),
        e => e,
    })?;
    let settings = match &location {
        Location::S3 { bucket, .. } => s3_settings_for_bucket(bucket, policy),
        Location::Local(_) => config::S3Settings::default(),
    };
    Repository::build(url, location, &settings, None)
}

/// The S3 settings of the first policy entry on `bucket`, else the defaults.
pub fn s3_settings_for_bucket(bucket: &str, policy: &crate::policy::Policy) -> config::S3Settings {
    policy
        .repositories
        .iter()
        .find(|e| {
            matches!(Location::parse(&e.url), Ok(Location::S3 { bucket: b, .. }) if b == bucket)
                && e.problems().is_empty()
        })
        .map(config::RepositoryEntry::s3_settings)
        .unwrap_or_default()
}

/// Keys are relative and never climb out of the repository.
pub fn check_key(key: &str) -> Result<&str, Error> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\0')
        || key.contains('\\')
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::Other(format!("invalid repository key {key:?}")));
    }
    Ok(key)
}

/// Joins key components with `/`.
pub fn join(parts: &[&str]) -> String {
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_locations() {
        assert_eq!(
            Location::parse("/var/backups").unwrap(),
            Location::Local("/var/backups".into())
        );
        assert_eq!(
            Location::parse("file:///var/backups").unwrap(),
            Location::Local("/var/backups".into())
        );
        assert_eq!(
            Location::parse("s3://bkt/a/b/").unwrap(),
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "a/b".into()
            }
        );
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("file://rel").is_err());
        assert!(Location::parse("gs://b").is_err());
    }

    #[test]
    fn keys_stay_inside() {
        for bad in ["", "/a", "a/../b", "a//b", "..", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(check_key("db/x.opsbak").is_ok());
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn the_dir_shorthand_comes_first_then_the_entries_in_order() {
        let p = Policy::parse(
            "[backup]\ndir = \"/srv/b\"\n\n[[repositories]]\nname = \"two\"\nurl = \"file:///srv/two\"\n[repositories.retention]\nkeep_last = 9\n\n[[repositories]]\nname = \"three\"\nurl = \"/srv/three\"\n",
            "p.toml",
        )
        .unwrap();
        let repos = from_policy(&p).unwrap();
        let names: Vec<_> = repos.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["local", "two", "three"]);
        assert_eq!(repos[1].display(), "/srv/two");
        assert_eq!(repos[1].retention.as_ref().unwrap().keep_last, 9);
        assert!(repos[0].retention.is_none());
        assert_eq!(resolve(None, &p).unwrap().name, "local");
        assert_eq!(resolve(Some("three"), &p).unwrap().display(), "/srv/three");
        let by_url = resolve(Some("/srv/other"), &p).unwrap();
        assert_eq!(
            (by_url.name.as_str(), by_url.display()),
            ("/srv/other", "/srv/other".into())
        );
        let e = resolve(Some("nosuch://x"), &p).unwrap_err().to_string();
        assert!(
            e.contains("no policy repository is named \"nosuch://x\""),
            "{e}"
        );
    }

    #[test]
    fn a_bad_entry_or_a_duplicate_name_is_a_configuration_error() {
        let p = Policy::parse(
            "[[repositories]]\nname = \"a\"\nurl = \"/x\"\n[[repositories]]\nname = \"a\"\nurl = \"/y\"\n",
            "p.toml",
        )
        .unwrap();
        let e = from_policy(&p).unwrap_err().to_string();
        assert!(
            e.contains("repository \"a\", key `name`: repository name \"a\" is used twice"),
            "{e}"
        );
        let p = Policy::parse(
            "[[repositories]]\nname = \"a\"\nurl = \"s3://b\"\nconcurrency = 0\n",
            "p.toml",
        )
        .unwrap();
        assert!(matches!(from_policy(&p), Err(Error::Config(_))));
        let e = resolve(None, &Policy::default()).unwrap_err().to_string();
        assert!(e.contains("no repository"), "{e}");
    }

    #[test]
    fn an_s3_url_takes_the_settings_of_the_policy_entry_on_its_bucket() {
        let p = Policy::parse(
            "[[repositories]]\nname = \"off\"\nurl = \"s3://bkt/a\"\nendpoint = \"http://127.0.0.1:9\"\nallow_http = true\npart_size = \"6MiB\"\n",
            "p.toml",
        )
        .unwrap();
        let s = s3_settings_for_bucket("bkt", &p);
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(s.part_size, 6 << 20);
        assert!(s.allow_http);
        assert_eq!(
            s3_settings_for_bucket("other", &p),
            config::S3Settings::default()
        );
    }
}
