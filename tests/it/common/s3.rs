//! A loopback S3 server for the tests that need one: `s3s-fs` (crate s3s-fs, an S3 server
//! over a directory that checks SigV4 signatures) on a free port, in a temporary
//! directory, with test credentials; stopped and removed when the handle is dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opsctl::storage::config::S3Settings;
use opsctl::storage::s3::S3Backend;
use opsctl::storage::{Location, Repository};

/// The test server's credentials (nothing real).
pub const ACCESS_KEY: &str = "opsctl-test-access";
pub const SECRET_KEY: &str = "opsctl-test-secret-c0ffee5eed";

/// The s3s-fs binary: `S3S_FS`, else `~/.cargo/bin/s3s-fs`, else `s3s-fs` on PATH.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return p.into();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cargo/bin/s3s-fs");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("s3s-fs")
}

pub struct S3Server {
    pub port: u16,
    /// The server's root: one directory per bucket.
    pub root: tempfile::TempDir,
    child: Option<Child>,
}

impl S3Server {
    /// Starts the server with one bucket, `bucket`.
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("temp dir for the S3 server");
        let port = super::free_port();
        let mut s = S3Server {
            port,
            root,
            child: None,
        };
        s.spawn();
        std::fs::create_dir(s.root.path().join("bucket")).unwrap();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the S3 test server {} ({e}): run scripts/test.sh, or `cargo install --locked s3s-fs --version 0.14.1 --features binary`",
                    binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the S3 test server did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The client settings for this server (path style, plain HTTP).
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            path_style: true,
            allow_http: true,
            ..S3Settings::default()
        }
    }

    /// A repository on `s3://bucket/prefix` of this server with the given credentials.
    pub fn repo_with(
        &self,
        bucket: &str,
        prefix: &str,
        settings: &S3Settings,
        key: &str,
        secret: &str,
    ) -> Repository {
        Repository::from_backend(
            "s3",
            Location::S3 {
                bucket: bucket.into(),
                prefix: prefix.into(),
            },
            Box::new(S3Backend::with_test_credentials(
                bucket, prefix, settings, key, secret,
            )),
        )
    }

    /// A repository on `s3://bucket/prefix` with the right credentials.
    pub fn repo(&self, prefix: &str) -> Repository {
        self.repo_with("bucket", prefix, &self.settings(), ACCESS_KEY, SECRET_KEY)
    }

    /// A `[[repositories]]` entry for `s3://bucket/prefix` on this server.
    pub fn policy_entry(&self, name: &str, prefix: &str) -> String {
        format!(
            "[[repositories]]\nname = \"{name}\"\nurl = \"s3://bucket/{prefix}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\nallow_http = true\n",
            self.endpoint()
        )
    }

    /// The credential variables a child opsctl needs (and nothing else of AWS_*).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("OPSCTL_S3_RETRIES", "2".to_string()),
        ]
    }

    /// Multipart uploads the server holds that were neither completed nor aborted (its
    /// part files, `.upload_id-<id>.part-<n>`, and upload records, `.upload-<id>.json`).
    pub fn incomplete_uploads(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.root.path())
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let id = n
                    .strip_prefix(".upload_id-")
                    .map(|r| r.split(".part-").next().unwrap_or(r).to_string())
                    .or_else(|| {
                        n.strip_prefix(".upload-")
                            .and_then(|r| r.strip_suffix(".json"))
                            .map(str::to_string)
                    })?;
                Some(id)
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Stops the server (an endpoint that went away).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
