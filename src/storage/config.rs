//! Repository settings of the policy: `[[repositories]]` entries (name, URL, S3 client
//! settings, an optional retention of their own) and their validation, shared by
//! `opsctl policy check` and by every command that opens a repository.

use serde::{Deserialize, Serialize};

use super::Location;
use crate::error::Error;
use crate::policy::Retention;

/// The smallest part S3 accepts (except the last part of an upload).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Default part size: 10,000 parts of 8 MiB cap an object at ~78 GiB.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Default number of parts uploaded at once: three in flight plus the one being filled
/// (32 MiB) keep a whole backup under the 64 MiB memory budget (measured: 4 × 8 MiB
/// parts peaked at 65 MiB in the test binary).
pub const DEFAULT_CONCURRENCY: usize = 3;
/// The most parts in flight a policy may ask for (each holds a part in memory).
pub const MAX_CONCURRENCY: u32 = 64;

/// A size given as a number of bytes or as text with a unit (`"16MiB"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            SizeValue::Bytes(n) => Ok(*n),
            SizeValue::Text(s) => crate::maintenance::parse_size(s),
        }
    }
}

/// One `[[repositories]]` entry of the policy.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepositoryEntry {
    /// What `--repo NAME` and every message call it (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// A path, `file:///path` or `s3://bucket/prefix`.
    pub url: String,
    /// S3: the endpoint of an S3-compatible server (MinIO, Ceph, …); unset = AWS.
    pub endpoint: Option<String>,
    /// S3: the region (else AWS_REGION / AWS_DEFAULT_REGION, else us-east-1).
    pub region: Option<String>,
    /// S3: path-style requests (`endpoint/bucket/key`), as MinIO-like servers want.
    pub path_style: Option<bool>,
    /// S3: allow a plain-HTTP endpoint (a loopback test server); default false.
    pub allow_http: Option<bool>,
    /// S3: multipart part size, at least 5 MiB (default 8 MiB).
    pub part_size: Option<SizeValue>,
    /// S3: parts uploaded at once (default 3).
    pub concurrency: Option<u32>,
    /// Retention of this repository (else `[backup.retention]`).
    pub retention: Option<Retention>,
}

/// The S3 client settings of a repository, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub allow_http: bool,
    pub part_size: u64,
    pub concurrency: usize,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: None,
            region: None,
            path_style: false,
            allow_http: false,
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// The keys that mean something only for an S3 repository.
pub const S3_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "path_style",
    "allow_http",
    "part_size",
    "concurrency",
];

impl RepositoryEntry {
    /// An entry with every key set, so `policy check` knows the valid keys of an entry.
    pub fn schema_example() -> RepositoryEntry {
        RepositoryEntry {
            name: String::new(),
            url: String::new(),
            endpoint: Some(String::new()),
            region: Some(String::new()),
            path_style: Some(false),
            allow_http: Some(false),
            part_size: Some(SizeValue::Bytes(DEFAULT_PART_SIZE)),
            concurrency: Some(DEFAULT_CONCURRENCY as u32),
            retention: Some(Retention::default()),
        }
    }

    /// The S3 keys this entry sets.
    fn s3_keys_set(&self) -> Vec<&'static str> {
        let set = [
            self.endpoint.is_some(),
            self.region.is_some(),
            self.path_style.is_some(),
            self.allow_http.is_some(),
            self.part_size.is_some(),
            self.concurrency.is_some(),
        ];
        S3_KEYS
            .iter()
            .zip(set)
            .filter(|(_, s)| *s)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Every problem of this entry alone, as (key, message); duplicate names are the
    /// caller's business.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(m) = check_name(&self.name) {
            out.push(("name", m));
        }
        let location = match Location::parse(&self.url) {
            Ok(l) => Some(l),
            Err(e) => {
                out.push(("url", e.to_string()));
                None
            }
        };
        if let Some(Location::Local(_)) = location {
            for k in self.s3_keys_set() {
                out.push((
                    k,
                    format!(
                        "`{k}` is an S3 setting and repository {:?} is a local directory ({}); remove it or use an s3:// URL",
                        self.name, self.url
                    ),
                ));
            }
            return out;
        }
        if let Some(ep) = &self.endpoint {
            if let Err(m) = check_endpoint(ep, self.allow_http.unwrap_or(false)) {
                out.push(("endpoint", m));
            }
        }
        if let Some(r) = &self.region {
            if r.trim().is_empty() || r.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '-')) {
                out.push((
                    "region",
                    format!("region {r:?} is not a region name (such as \"us-east-1\")"),
                ));
            }
        }
        if let Some(ps) = &self.part_size {
            match ps.bytes() {
                Err(m) => out.push(("part_size", m)),
                Ok(n) if n < MIN_PART_SIZE => out.push((
                    "part_size",
                    format!(
                        "part_size {} is below the 5 MiB S3 requires of every part but the last",
                        crate::units::human_bytes(n)
                    ),
                )),
                Ok(n) if n > MAX_PART_SIZE => out.push((
                    "part_size",
                    format!(
                        "part_size {} is above the 5 GiB S3 accepts for a part",
                        crate::units::human_bytes(n)
                    ),
                )),
                Ok(_) => {}
            }
        }
        match self.concurrency {
            Some(0) => out.push((
                "concurrency",
                "concurrency must be at least 1 (parts uploaded at once)".to_string(),
            )),
            Some(n) if n > MAX_CONCURRENCY => out.push((
                "concurrency",
                format!("concurrency {n} is above {MAX_CONCURRENCY} (each part in flight is held in memory)"),
            )),
            _ => {}
        }
        out
    }

    /// The checked location and S3 settings; the first problem is the error.
    pub fn resolve(&self) -> Result<(Location, S3Settings), Error> {
        if let Some((key, m)) = self.problems().into_iter().next() {
            let who = if self.name.is_empty() {
                "a [[repositories]] entry".to_string()
            } else {
                format!("repository {:?}", self.name)
            };
            return Err(Error::Config(format!("policy: {who}, key `{key}`: {m}")));
        }
        let location = Location::parse(&self.url)?;
        Ok((location, self.s3_settings()))
    }

    /// The S3 settings of an entry (defaults for what it leaves out); call after
    /// [`problems`](Self::problems) found none.
    pub fn s3_settings(&self) -> S3Settings {
        let d = S3Settings::default();
        S3Settings {
            endpoint: self
                .endpoint
                .as_ref()
                .map(|e| e.trim().trim_end_matches('/').to_string()),
            region: self.region.clone(),
            path_style: self.path_style.unwrap_or(d.path_style),
            allow_http: self.allow_http.unwrap_or(d.allow_http),
            part_size: self
                .part_size
                .as_ref()
                .and_then(|p| p.bytes().ok())
                .unwrap_or(d.part_size),
            concurrency: self
                .concurrency
                .map(|c| c as usize)
                .unwrap_or(d.concurrency),
        }
    }
}

/// Repository names: what `--repo NAME` matches, so never something that reads as a path
/// or a URL.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a repository needs a `name` (such as \"offsite\")".into());
    }
    if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(format!(
            "repository name {name:?}: use letters, digits, '-', '_' and '.' (at most 64, not starting with '.')"
        ));
    }
    Ok(())
}

/// An endpoint is an http(s) URL with a host; plain HTTP only when `allow_http` says so.
pub fn check_endpoint(ep: &str, allow_http: bool) -> Result<(), String> {
    let ep = ep.trim();
    let (scheme, rest) = ep.split_once("://").ok_or_else(|| {
        format!("endpoint {ep:?} is not a URL (such as \"https://minio.example.net:9000\")")
    })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(format!(
            "endpoint {ep:?} names no host (such as \"https://minio.example.net:9000\"; credentials never go in the URL)"
        ));
    }
    match scheme {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => Err(format!(
            "endpoint {ep:?} is plain HTTP: set allow_http = true (only for a loopback or test server) or use https"
        )),
        _ => Err(format!(
            "endpoint {ep:?}: scheme {scheme:?} is not http or https"
        )),
    }
}

/// Problems of a whole list of entries: each entry's own, then duplicate names (also
/// against "local", the name of `[backup] dir` when it is set). Each is (index, key,
/// message).
pub fn check_entries(
    entries: &[RepositoryEntry],
    backup_dir_set: bool,
) -> Vec<(usize, &'static str, String)> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    if backup_dir_set {
        seen.push("local");
    }
    for (i, e) in entries.iter().enumerate() {
        for (k, m) in e.problems() {
            out.push((i, k, m));
        }
        if e.name.is_empty() {
            continue;
        }
        if seen.contains(&e.name.as_str()) {
            let m = if e.name == "local" && backup_dir_set {
                "repository name \"local\" is taken by [backup] dir (the one-repository shorthand); choose another name".to_string()
            } else {
                format!(
                    "repository name {:?} is used twice; names must differ",
                    e.name
                )
            };
            out.push((i, "name", m));
        } else {
            seen.push(&e.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml_text: &str) -> RepositoryEntry {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn an_s3_entry_gives_its_settings_and_defaults() {
        let e = entry(
            "name = \"offsite\"\nurl = \"s3://bkt/opsctl\"\nendpoint = \"http://127.0.0.1:9000/\"\nallow_http = true\npath_style = true\npart_size = \"16MiB\"\n",
        );
        assert!(e.problems().is_empty(), "{:?}", e.problems());
        let (loc, s) = e.resolve().unwrap();
        assert_eq!(
            loc,
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "opsctl".into()
            }
        );
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.path_style && s.allow_http);
        assert_eq!(s.part_size, 16 << 20);
        assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
        let e = entry("name = \"a\"\nurl = \"s3://b\"\npart_size = 6291456\nconcurrency = 2\n");
        let (_, s) = e.resolve().unwrap();
        assert_eq!((s.part_size, s.concurrency), (6 << 20, 2));
        assert!(!s.allow_http);
    }

    #[test]
    fn bad_entries_say_which_key_and_why() {
        let keys = |t: &str| -> Vec<&'static str> {
            entry(t).problems().into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(keys("url = \"s3://b\""), vec!["name"]);
        assert_eq!(keys("name = \"a b\"\nurl = \"s3://b\""), vec!["name"]);
        assert_eq!(keys("name = \"a\"\nurl = \"gs://b\""), vec!["url"]);
        assert_eq!(keys("name = \"a\""), vec!["url"]);
        assert_eq!(
            keys("name = \"a\"\nurl = \"s3://b\"\npart_size = \"4MiB\""),
            vec!["part_size"]
        );
        assert_eq!(
            keys("name = \"a\"\nurl = \"s3://b\"\npart_size = \"6GiB\""),
            vec!["part_size"]
        );
        assert_eq!(
            keys("name = \"a\"\nurl = \"s3://b\"\npart_size = \"lots\""),
            vec!["part_size"]
        );
        assert_eq!(
            keys("name = \"a\"\nurl = \"s3://b\"\nconcurrency = 0"),
            vec!["concurrency"]
        );
        assert_eq!(
            keys("name = \"a\"\nurl = \"s3://b\"\nendpoint = \"http://127.0.0.1:9000\""),
            vec!["endpoint"]
        );
        assert_eq!(
            keys("name = \"a\"\nurl = \"s3://b\"\nendpoint = \"minio:9000\""),
            vec!["endpoint"]
        );
        assert_eq!(
            keys("name = \"a\"\nurl = \"/var/b\"\nendpoint = \"https://x\"\npart_size = 9999999"),
            vec!["endpoint", "part_size"]
        );
        let m = entry("name = \"a\"\nurl = \"file:///var/b\"\nregion = \"eu-west-1\"")
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(m.contains("`region` is an S3 setting"), "{m}");
        assert!(m.contains("repository \"a\""), "{m}");
    }

    #[test]
    fn duplicate_names_are_found_also_against_the_dir_shorthand() {
        let es = vec![
            entry("name = \"local\"\nurl = \"/a\""),
            entry("name = \"x\"\nurl = \"/b\""),
            entry("name = \"x\"\nurl = \"s3://c\""),
        ];
        let p = check_entries(&es, false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].0, p[0].1), (2, "name"));
        let p = check_entries(&es, true);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].2.contains("[backup] dir"), "{p:?}");
    }
}
