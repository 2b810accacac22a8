//! Test harness: one throwaway PostgreSQL 15 cluster per test binary (TLS on, a CA and
//! server certificate made here, hostssl-only pg_hba, a password, a free port, a temp
//! dir), a fresh database per test, and an `opsctl()` command builder.
//!
//! libtest never drops statics, so a watchdog process stops the cluster and removes its
//! directory as soon as the test binary exits, however it exits.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub const PASSWORD: &str = "It-s3cret-Pw!7";

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub socket_dir: PathBuf,
    pub bindir: PathBuf,
    as_postgres: bool,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The shared cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

pub fn bindir() -> PathBuf {
    let std = PathBuf::from("/usr/lib/postgresql/15/bin");
    if std.join("initdb").exists() {
        return std;
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => panic!(
            "PostgreSQL 15 server binaries not found: install postgresql-15 (scripts/test.sh does)"
        ),
    }
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Makes a CA and a certificate signed by it for `sans`, with openssl.
pub fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "3",
                "-subj",
            ])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt),
        "openssl CA",
    );
    (crt, key)
}

pub fn make_cert(
    dir: &Path,
    name: &str,
    ca: &(PathBuf, PathBuf),
    cn: &str,
    sans: &str,
) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let crt = dir.join(format!("{name}.crt"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!("subjectAltName={sans}\nextendedKeyUsage=serverAuth,clientAuth\n"),
    )
    .unwrap();
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
            ])
            .arg(format!("/CN={cn}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        "openssl csr",
    );
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "3", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca.0)
            .arg("-CAkey")
            .arg(&ca.1)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&crt),
        "openssl sign",
    );
    (crt, key)
}

/// A new cluster directory under /tmp (kept until its owner removes it): the paths of
/// `data` (made by initdb later) and `sock` (made), a CA and a localhost server
/// certificate whose key is 0600, and `pwfile` holding [`PASSWORD`].
pub struct ClusterDir {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub sock: PathBuf,
    /// (certificate, key) of the CA.
    pub ca: (PathBuf, PathBuf),
    /// (certificate, key) of the server.
    pub server: (PathBuf, PathBuf),
    pub pwfile: PathBuf,
}

pub fn cluster_dir(prefix: &str) -> ClusterDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    let data = dir.join("data");
    let sock = dir.join("sock");
    std::fs::create_dir_all(&sock).unwrap();
    let ca = make_ca(&dir, "ca");
    let server = make_cert(
        &dir,
        "server",
        &ca,
        "localhost",
        "DNS:localhost,IP:127.0.0.1",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&server.1, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, PASSWORD).unwrap();
    ClusterDir {
        dir,
        data,
        sock,
        ca,
        server,
        pwfile,
    }
}

impl Cluster {
    fn start() -> Cluster {
        let bindir = bindir();
        let as_postgres = is_root();
        let ClusterDir {
            dir,
            data,
            sock: socket_dir,
            ca,
            server,
            pwfile,
        } = cluster_dir("opsctl-it-");
        let other = make_ca(&dir, "other-ca");
        if as_postgres {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown",
            );
        }
        let pg = |prog: &str| -> Command {
            if as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bindir.join(prog));
                c
            } else {
                Command::new(bindir.join(prog))
            }
        };
        run_ok(
            pg("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        let port = free_port();
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{sock}'\n\
             ssl = on\nssl_cert_file = '{crt}'\nssl_key_file = '{key}'\n\
             shared_preload_libraries = 'pg_stat_statements'\nmax_connections = 300\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             log_min_messages = warning\ntimezone = 'UTC'\n",
            sock = socket_dir.display(),
            crt = server.0.display(),
            key = server.1.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n\
             hostnossl all all all reject\n",
        )
        .unwrap();
        // The watchdog: stops and removes the cluster once this test process is gone.
        let pgctl = bindir.join("pg_ctl");
        let stop = if as_postgres {
            format!(
                "runuser -u postgres -- {} -D {} stop -m immediate",
                pgctl.display(),
                data.display()
            )
        } else {
            format!(
                "{} -D {} stop -m immediate",
                pgctl.display(),
                data.display()
            )
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = dir.display()
        );
        // Deliberately not waited for: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the cluster watchdog");
        run_ok(
            pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        Cluster {
            dir,
            port,
            ca: ca.0,
            other_ca: other.0,
            socket_dir,
            bindir,
            as_postgres,
        }
    }

    /// A verify-full URL for a database on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres:{}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
            urlencode(PASSWORD),
            self.port,
            self.ca.display()
        )
    }

    /// Runs SQL as the superuser through psql over verified TLS; returns unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_output(db, sql);
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    pub fn psql_output(&self, db: &str, sql: &str) -> Output {
        Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGHOST", "localhost")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", PASSWORD)
            .env("PGDATABASE", db)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &self.ca)
            .output()
            .expect("psql not found: install postgresql-client")
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A fresh database for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        let c = cluster();
        let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t_{}_{}_{}", tag, std::process::id(), n).to_lowercase();
        c.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        TestDb {
            url: c.url(&name),
            name,
        }
    }

    pub fn sql(&self, sql: &str) -> String {
        cluster().psql(&self.name, sql)
    }

    /// `opsctl` pointed at this database.
    pub fn opsctl(&self) -> Opsctl {
        let mut o = Opsctl::new();
        o.env("OPSCTL_DATABASE_URL", &self.url);
        o
    }
}

/// Builder around the opsctl binary with a clean environment.
pub struct Opsctl {
    cmd: Command,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Opsctl {
    pub fn new() -> Opsctl {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsctl"));
        for (k, _) in std::env::vars() {
            if k.starts_with("PG") || k.starts_with("OPSCTL_") || k == "DATABASE_URL" {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", "/nonexistent-home-for-tests");
        cmd.stdin(Stdio::null());
        Opsctl { cmd }
    }

    pub fn arg(&mut self, a: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(&mut self, a: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(a);
        self
    }

    pub fn env(&mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(&mut self, k: &str) -> &mut Self {
        self.cmd.env_remove(k);
        self
    }

    pub fn stdin_file(&mut self, path: &Path) -> &mut Self {
        self.cmd.stdin(std::fs::File::open(path).unwrap());
        self
    }

    pub fn run(&mut self) -> Run {
        let out = self.cmd.output().expect("cannot run opsctl");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs it in a process group of its own (as a shell job), so a test can signal the
    /// group as a terminal does without signalling itself.
    pub fn own_process_group(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        self.cmd.process_group(0);
        self
    }

    pub fn spawn(&mut self) -> std::process::Child {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.cmd.spawn().expect("cannot spawn opsctl")
    }
}

pub fn opsctl() -> Opsctl {
    Opsctl::new()
}

/// The migration files of the repository, ordered by version.
pub fn migration_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.to_string();
            let v = name.strip_prefix('V')?.split("__").next()?.parse().ok()?;
            Some((v, p))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

impl TestDb {
    /// A fresh database with the whole schema of `migrations/` applied by
    /// `opsctl migrate up` (the migrations embedded in the binary).
    pub fn with_schema(tag: &str) -> TestDb {
        let db = TestDb::new(tag);
        let r = db.opsctl().args(["migrate", "up"]).run();
        assert_eq!(
            r.code, 0,
            "opsctl migrate up failed on {}:\n{}{}",
            db.name, r.stdout, r.stderr
        );
        db
    }
}

/// A bin directory whose `pg_dump` sleeps `sleep_secs` before dumping (and whose
/// `pg_restore` is the real one), for `OPSCTL_PG_BINDIR`: lets a test signal or kill a
/// backup while it runs.
pub fn slow_pg_bindir(dir: &Path, sleep_secs: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("slowbin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = cluster().bindir.clone();
    std::fs::write(
        bin.join("pg_dump"),
        format!(
            "#!/bin/sh\ncase \"$1\" in --version) exec {0}/pg_dump --version;; esac\nsleep {sleep_secs}\nexec {0}/pg_dump \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("pg_dump"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(real.join("pg_restore"), bin.join("pg_restore")).unwrap();
    bin
}

/// The loopback S3 server (s3s-fs) for the S3 repository tests (which build repositories
/// with test credentials, a test hook).
#[cfg(feature = "test-hooks")]
pub mod s3;
/// Holds a `mode` lock on `table` in a session of its own until another session has
/// waited for a lock on that table, then `hold` longer, then commits: a lock conflict
/// that does not depend on how fast a loaded machine starts the process under test.
/// Returns once the lock is held; join the handle after the test's command ends.
pub fn hold_lock_until_waited(
    db: &str,
    table: &str,
    mode: &str,
    hold: std::time::Duration,
) -> std::thread::JoinHandle<String> {
    const APP: &str = "opsctl-test-lock-holder";
    let sql = format!(
        "SET application_name = '{APP}'; BEGIN; LOCK TABLE {table} IN {mode} MODE; \
         DO $$ BEGIN FOR i IN 1..12000 LOOP \
           EXIT WHEN EXISTS (SELECT 1 FROM pg_locks WHERE relation = '{table}'::regclass \
                             AND NOT granted); \
           PERFORM pg_sleep(0.01); END LOOP; END $$; \
         SELECT pg_sleep({}); COMMIT;",
        hold.as_secs_f64()
    );
    let name = db.to_string();
    let handle = std::thread::spawn(move || cluster().psql(&name, &sql));
    let started = std::time::Instant::now();
    let held = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE a.application_name = '{APP}' AND l.relation = '{table}'::regclass AND l.granted"
    );
    while cluster().psql(db, &held) == "0" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the lock holder never got its lock on {table}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    handle
}

/// A private cluster for a test that changes server-wide state (pg_hba.conf, roles,
/// settings) the shared cluster must not see: TLS on (its own CA), superuser `postgres`
/// with [`PASSWORD`], listening on 127.0.0.1. Stopped and removed on drop, and by a
/// watchdog if the test process dies first.
pub struct OwnCluster {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub ca: PathBuf,
    as_postgres: bool,
    bindir: PathBuf,
}

impl OwnCluster {
    /// Starts a cluster whose pg_hba.conf is `hba`.
    pub fn start(hba: &str) -> OwnCluster {
        let bindir = bindir();
        let as_postgres = is_root();
        let ClusterDir {
            dir,
            data,
            sock,
            ca,
            server,
            pwfile,
        } = cluster_dir("opsctl-own-");
        if as_postgres {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown",
            );
        }
        let c = OwnCluster {
            dir: dir.clone(),
            data: data.clone(),
            port: free_port(),
            ca: ca.0.clone(),
            as_postgres,
            bindir,
        };
        run_ok(
            c.pg("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync"])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        let conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n\
             log_min_messages = warning\ntimezone = 'UTC'\n",
            c.port,
            sock.display(),
            server.0.display(),
            server.1.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let stop = format!(
            "{} {} -D {} stop -m immediate",
            if as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            c.bindir.join("pg_ctl").display(),
            data.display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null && [ -d '{dir}' ]; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = dir.display()
        );
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the cluster watchdog");
        run_ok(
            c.pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        c
    }

    fn pg(&self, prog: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bindir.join(prog));
            c
        } else {
            Command::new(self.bindir.join(prog))
        }
    }

    /// A verify-full URL as `user` with `password`.
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgresql://{user}:{}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
            urlencode(password),
            self.port,
            self.ca.display()
        )
    }

    /// A verify-full URL as the superuser `postgres`.
    pub fn url(&self, db: &str) -> String {
        self.url_as("postgres", PASSWORD, db)
    }

    /// Runs SQL as the superuser through psql over verified TLS.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(self.url(db))
            .output()
            .expect("psql not found: install postgresql-client");
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// Replaces pg_hba.conf and reloads the server.
    pub fn set_hba(&self, hba: &str) {
        std::fs::write(self.data.join("pg_hba.conf"), hba).unwrap();
        self.psql("postgres", "SELECT pg_reload_conf()");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
