//! `restore`: authenticate the whole backup first (nothing touches the target before
//! every chunk tag, the chunk order and final chunk, the header and the sealed manifest
//! check out), then feed the dump to pg_restore — from a pipe in one transaction, or
//! with `--jobs N` from a private 0600 temporary file in a 0700 directory (free space
//! checked first, removed on every way out).
//!
//! Without `--jobs` the first pass only authenticates (no decompression: the GCM tags
//! already prove every byte is what the writer wrote), and the second pass decrypts,
//! decompresses and hashes while pg_restore reads, on the same open file. The last bytes
//! of the dump are held back until the plaintext SHA-256 matched the manifest, so
//! pg_restore cannot commit a dump that fails it; a failure kills pg_restore (its single
//! transaction rolls back) and drops a database the restore created. With `--jobs` the
//! first pass decrypts into the temporary file and checks the hash before pg_restore
//! starts.
//!
//! `--clean` on an existing database restores into a new staging database and, once
//! pg_restore succeeded, drops the old database and renames the staging one in its place:
//! the target then holds exactly the backup's content, and a failure leaves the old
//! content untouched. (pg_restore's own `--clean` cannot drop the inherited constraints
//! of partitions and fails on the trading schema.) The swap runs from the maintenance
//! database with no session of opsctl on the target, so `--clean --force` can replace
//! the very database opsctl connected to; other sessions on the target are refused
//! before anything is restored.
//!
//! SIGINT or SIGTERM (see [`crate::interrupt`]): pg_restore is stopped, the spool
//! removed, a database this run created (the target, or the staging copy) dropped, and
//! [`Error::Interrupted`] says what was undone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::keys::KeyMaterial;
use super::manifest::Manifest;
use super::verify::{self, Opened};
use super::{pgdump, repo, Progress};
use crate::db::{self, quote_ident, ConnSettings};
use crate::error::Error;
use crate::interrupt::Stop;

#[derive(Debug, Clone)]
pub struct Options {
    pub target_db: String,
    pub create: bool,
    pub clean: bool,
    pub jobs: Option<u32>,
    pub force: bool,
    /// Where `--jobs` puts its temporary plaintext dump (in a private 0700 directory).
    pub tmp_dir: PathBuf,
    /// Tripped by SIGINT/SIGTERM: the restore undoes what it did and returns
    /// [`Error::Interrupted`].
    pub stop: Stop,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    pub id: String,
    pub source_database: String,
    pub target_database: String,
    pub created: bool,
    pub cleaned: bool,
    pub jobs: u32,
    pub tables: usize,
    pub rows: i64,
    /// Roles the backup references that the target cluster lacks.
    pub missing_roles: Vec<String>,
    /// True when ownership and grants were skipped (--no-owner --no-privileges).
    pub skipped_ownership: bool,
    pub authenticate_secs: f64,
    pub restore_secs: f64,
    pub total_secs: f64,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
}

const DB_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)";
const USER_RELATIONS: &str = "SELECT count(*) FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_%'";
const ROLES: &str = "SELECT rolname::text FROM pg_roles";
const BACKEND_PID: &str = "SELECT pg_backend_pid()";
/// Sessions on a database other than ours: how many, and who (application or user).
const OTHER_SESSIONS: &str = "SELECT count(*), coalesce(string_agg(DISTINCT \
     coalesce(nullif(application_name, ''), usename::text, 'unknown'), ', '), '') \
     FROM pg_stat_activity WHERE datname = $1 AND pid <> ALL($2)";

/// A libpq conninfo naming only the database (no secret); quoted for any name.
fn dbname_conninfo(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// The staging database of a --clean restore (at most 63 bytes).
fn staging_name(target: &str) -> String {
    let suffix = format!("_opsctl_new_{}", std::process::id());
    let mut base: String = target.to_string();
    while base.len() + suffix.len() > 63 {
        base.pop();
    }
    base + &suffix
}

/// Free bytes for unprivileged users on the filesystem of `dir`.
pub fn free_space(dir: &Path) -> Result<u64, Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::Config(format!("bad path {}", dir.display())))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::io(format!(
            "cannot stat filesystem of {}",
            dir.display()
        ))(std::io::Error::last_os_error()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The private spool of `--jobs`: a 0700 directory holding the 0600 plaintext dump,
/// removed with everything in it when dropped (every exit path, signals included).
struct Spool {
    dir: Option<PathBuf>,
    file: PathBuf,
}

impl Spool {
    fn create(parent: &Path) -> Result<(Spool, std::fs::File), Error> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = parent.join(format!(
            ".opsctl-restore-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(Error::io(format!("cannot create {}", dir.display())))?;
        let spool = Spool {
            dir: Some(dir.clone()),
            file: dir.join("dump"),
        };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(Error::io(format!("cannot restrict {}", dir.display())))?;
        let f = crate::fsutil::create_new(&spool.file, 0o600)?;
        Ok((spool, f))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Bytes of the dump held back from pg_restore until the whole plaintext matched the
/// manifest's SHA-256: without its last bytes pg_restore cannot finish, so it cannot
/// commit a dump that turns out not to be the one the manifest describes.
const HOLD_BACK: usize = 4096;

/// Second pass: decrypts and decompresses the authenticated file into pg_restore's stdin
/// (every tag checked again), and releases the held-back tail and closes the pipe only
/// after the plaintext hash and size matched the manifest of the first pass. Stops
/// (withholding the tail) as soon as `stop` trips.
#[allow(clippy::too_many_arguments)]
fn feed(
    file: &std::fs::File,
    path: &Path,
    file_bytes: u64,
    keys: &[KeyMaterial],
    stdin: std::process::ChildStdin,
    expected_sha256: &str,
    progress: &dyn Progress,
    stop: &Stop,
) -> Result<(), verify::Failure> {
    grow_pipe(&stdin);
    let mut out = HoldBack::new(stdin);
    let mut paused = false;
    let mut push = |b: &[u8]| {
        if stop.is_set() {
            return Err(std::io::Error::other("interrupted"));
        }
        out.push(b)?;
        if !paused {
            paused = true;
            crate::interrupt::pause_at_blocking("restore-streaming", stop);
        }
        Ok(())
    };
    let o = verify::stream_file(file, path, file_bytes, keys, &mut push, progress)?;
    if stop.is_set() {
        return Err(verify::Failure {
            kind: "io",
            message: "interrupted".into(),
        });
    }
    if o.manifest.dump_sha256 != expected_sha256 {
        return Err(verify::Failure {
            kind: "manifest_mismatch",
            message: "manifest mismatch: the backup file changed during the restore".into(),
        });
    }
    out.release().map_err(|e| verify::Failure {
        kind: "io",
        message: format!("cannot pass the dump on: {e}"),
    })?;
    Ok(())
}

/// Passes bytes on except the last [`HOLD_BACK`], which only [`HoldBack::release`]
/// writes (dropping it without release withholds them for good).
struct HoldBack<W: Write> {
    out: W,
    held: Vec<u8>,
}

impl<W: Write> HoldBack<W> {
    fn new(out: W) -> Self {
        HoldBack {
            out,
            held: Vec::with_capacity(2 * HOLD_BACK),
        }
    }

    fn push(&mut self, b: &[u8]) -> std::io::Result<()> {
        if b.len() >= HOLD_BACK {
            self.out.write_all(&self.held)?;
            self.held.clear();
            let (now, later) = b.split_at(b.len() - HOLD_BACK);
            self.out.write_all(now)?;
            self.held.extend_from_slice(later);
        } else {
            let release = (self.held.len() + b.len()).saturating_sub(HOLD_BACK);
            if release > 0 {
                self.out.write_all(&self.held[..release])?;
                self.held.drain(..release);
            }
            self.held.extend_from_slice(b);
        }
        Ok(())
    }

    /// Writes the held-back tail and returns the output (drop it to close a pipe).
    fn release(mut self) -> std::io::Result<W> {
        self.out.write_all(&self.held)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A 1 MiB pipe to pg_restore (Linux; the default 64 KiB means many more wake-ups).
fn grow_pipe(stdin: &std::process::ChildStdin) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        unsafe {
            libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stdin;
}

/// Restores `path` into `opts.target_db` on the server `settings` points at. When
/// `opts.stop` trips (SIGINT/SIGTERM), stops pg_restore, removes the spool, drops a
/// database this run created and returns [`Error::Interrupted`] saying what was undone.
pub async fn restore(
    settings: &ConnSettings,
    path: &Path,
    keys: Arc<Vec<KeyMaterial>>,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<Restored, Error> {
    let mut undone = Undone::default();
    let r = restore_inner(settings, path, keys, opts, progress, &mut undone).await;
    match (r, opts.stop.signal()) {
        (Err(_), Some(signal)) => Err(Error::Interrupted {
            signal,
            undone: undone.describe(),
        }),
        (r, _) => r,
    }
}

/// What an interrupted restore undid on its way out.
#[derive(Debug, Default)]
struct Undone {
    pg_restore_stopped: bool,
    spool_removed: bool,
    dropped: Option<String>,
    drop_failed: Option<String>,
    /// The existing target of a --clean restore, never touched before the swap.
    untouched: Option<String>,
}

impl Undone {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.pg_restore_stopped {
            parts.push("stopped pg_restore".to_string());
        }
        if self.spool_removed {
            parts.push("removed the temporary plaintext dump".to_string());
        }
        if let Some(d) = &self.dropped {
            parts.push(format!("dropped database {d}, which this run had created"));
        }
        if let Some(e) = &self.drop_failed {
            parts.push(format!("could not drop {e}: drop it by hand"));
        }
        let mut line = if parts.is_empty() {
            "nothing had been changed yet".to_string()
        } else {
            parts.join(", ")
        };
        if let Some(t) = &self.untouched {
            line.push_str(&format!("; {t} is as it was"));
        }
        line
    }
}

/// pg_restore while it runs: its pid (0 when not running), for a signal to stop it.
#[derive(Default)]
struct Running {
    pid: AtomicU32,
}

impl Running {
    fn started(&self, child: &std::process::Child, stop: &Stop) {
        self.pid.store(child.id(), Ordering::SeqCst);
        if stop.is_set() {
            self.terminate();
        }
    }

    fn ended(&self) {
        self.pid.store(0, Ordering::SeqCst);
    }

    /// SIGTERM: pg_restore cancels its queries and ends (with --jobs, stops its workers
    /// too); its transaction rolls back.
    fn terminate(&self) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid != 0 {
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
}

/// Waits for the blocking pg_restore job; if `stop` trips first, terminates pg_restore
/// and waits for the job to notice.
async fn run_stoppable(
    mut job: tokio::task::JoinHandle<Result<(), Error>>,
    running: &Running,
    stop: &Stop,
) -> Result<(), Error> {
    let r = tokio::select! {
        r = &mut job => r,
        _ = stop.wait() => {
            running.terminate();
            job.await
        }
    };
    r.map_err(|e| Error::Other(format!("restore failed: {e}")))?
}

/// Waits (up to 5 s, for sessions that are closing) until no session but `ours` is
/// connected to `db`; the swap at the end of --clean must drop it.
async fn ensure_alone(conn: &Client, db: &str, ours: &[i32], in_place: bool) -> Result<(), Error> {
    let t0 = Instant::now();
    loop {
        let row = conn
            .query_one(OTHER_SESSIONS, &[&db, &ours])
            .await
            .map_err(Error::db_ctx("cannot read pg_stat_activity"))?;
        let n: i64 = row.get(0);
        if n == 0 {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(5) {
            let who: String = row.get(1);
            return Err(Error::Config(format!(
                "cannot replace {db}: {n} other session(s) are connected to it ({who}; see \
                 pg_stat_activity), and --clean must drop it at the end to put the restored \
                 copy in its place; stop them first{}",
                if in_place {
                    ", or restore into another database (--target-db NAME --create)"
                } else {
                    ""
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn backend_pid(c: &Client) -> Result<i32, Error> {
    Ok(c.query_one(BACKEND_PID, &[])
        .await
        .map_err(Error::db)?
        .get(0))
}

async fn restore_inner(
    settings: &ConnSettings,
    path: &Path,
    keys: Arc<Vec<KeyMaterial>>,
    opts: &Options,
    progress: Arc<dyn Progress>,
    undone: &mut Undone,
) -> Result<Restored, Error> {
    let t0 = Instant::now();
    let stop = &opts.stop;
    let conn = db::connect(settings).await?;
    let connected = conn
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(Error::db)?
        .get::<_, String>(0);
    let in_place = opts.target_db == connected;
    if in_place && !opts.force {
        return Err(Error::Config(format!(
            "refusing to restore over {connected}, the database opsctl is connected to; \
             restore into another database (--target-db NAME --create), or pass --force"
        )));
    }
    let exists: bool = conn
        .query_one(DB_EXISTS, &[&opts.target_db])
        .await
        .map_err(Error::db)?
        .get(0);
    if !exists && !opts.create {
        return Err(Error::Config(format!(
            "target database {} does not exist; pass --create to create it",
            opts.target_db
        )));
    }
    if exists {
        let tconn = db::connect(&settings.with_dbname(&opts.target_db)).await?;
        let n: i64 = tconn
            .query_one(USER_RELATIONS, &[])
            .await
            .map_err(Error::db)?
            .get(0);
        if n > 0 && !opts.clean {
            return Err(Error::Config(format!(
                "target database {} is not empty ({n} relations); pass --clean to replace \
                 the target database as a whole (restored into a staging database, then \
                 swapped in for the target once the restore succeeded: objects not in the \
                 backup are gone; a failure leaves the target untouched), or restore into a \
                 new database with --create",
                opts.target_db
            )));
        }
        if opts.clean {
            // Refuse now rather than fail at the swap, after the whole restore.
            let ours = [backend_pid(&conn).await?, backend_pid(&tconn).await?];
            ensure_alone(&conn, &opts.target_db, &ours, in_place).await?;
        }
    }
    let major = pgdump::server_major(&conn).await?;
    let tools = pgdump::find(major)?;
    let jobs = opts.jobs.unwrap_or(1).max(1);

    // 1. Authenticate everything before touching the target.
    let summary = repo::read_summary(path).ok();
    let mut spool: Option<Spool> = None;
    let mut authenticated: Option<std::fs::File> = None;
    let p = path.to_path_buf();
    let (k, pr) = (keys.clone(), progress.clone());
    let opened: Opened = if jobs > 1 {
        let need = summary.as_ref().map(|s| s.dump_bytes).unwrap_or(0);
        std::fs::create_dir_all(&opts.tmp_dir).map_err(Error::io(format!(
            "cannot create {}",
            opts.tmp_dir.display()
        )))?;
        let free = free_space(&opts.tmp_dir)?;
        let margin = need / 10 + (64 << 20);
        if free < need + margin {
            return Err(Error::Config(format!(
                "--jobs needs the plaintext dump on disk: {} needs {} plus a margin \
                 but only {} are free in {}; free space, point TMPDIR elsewhere, or \
                 restore without --jobs (streams, needs no space)",
                path.display(),
                crate::units::human_bytes(need),
                crate::units::human_bytes(free),
                opts.tmp_dir.display()
            )));
        }
        let (s, mut f) = Spool::create(&opts.tmp_dir)?;
        spool = Some(s);
        undone.spool_removed = true;
        let st = stop.clone();
        tokio::task::spawn_blocking(move || -> Result<Opened, Error> {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
            let o = verify::stream(
                &p,
                &k,
                &mut |b| {
                    if st.is_set() {
                        return Err(std::io::Error::other("interrupted"));
                    }
                    w.write_all(b)
                },
                &*pr,
            )?;
            w.flush()
                .map_err(Error::io("cannot write the temporary dump"))?;
            drop(w);
            f.sync_all()
                .map_err(Error::io("cannot write the temporary dump"))?;
            Ok(o)
        })
        .await
        .map_err(|e| Error::Other(format!("restore failed: {e}")))??
    } else {
        // Authentication only (every tag, chunk order, final chunk, header, sealed
        // manifest); the plaintext hash is checked in the second pass, before pg_restore
        // may commit (see `feed`).
        let (o, f) =
            tokio::task::spawn_blocking(move || -> Result<(Opened, std::fs::File), Error> {
                Ok(verify::authenticate(&p, &k, &*pr)?)
            })
            .await
            .map_err(|e| Error::Other(format!("restore failed: {e}")))??;
        authenticated = Some(f);
        o
    };
    if spool.is_some() {
        crate::interrupt::pause_at("restore-spooled", stop).await;
    }
    stop.check()?;
    let authenticate_secs = t0.elapsed().as_secs_f64();
    let m = opened.manifest.clone();

    // 2. Roles the backup needs that this cluster lacks.
    let have: std::collections::BTreeSet<String> = conn
        .query(ROLES, &[])
        .await
        .map_err(Error::db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<String> = m
        .roles
        .iter()
        .filter(|r| !have.contains(*r))
        .cloned()
        .collect();
    let skip_owner = !missing.is_empty();

    // 3. Now touch the target. With --clean on an existing database, restore into a
    // staging database and swap it in at the end: the old content survives any failure.
    let t1 = Instant::now();
    let created = !exists;
    let swap = exists && opts.clean;
    let into = if swap {
        staging_name(&opts.target_db)
    } else {
        opts.target_db.clone()
    };
    let made_here = created || swap;
    if swap {
        undone.untouched = Some(opts.target_db.clone());
    }
    stop.check()?;
    if made_here {
        conn.batch_execute(&format!("CREATE DATABASE {}", quote_ident(&into)))
            .await
            .map_err(Error::db_ctx(format!("cannot create database {into}")))?;
    }
    let mut cmd = pgdump::command(&tools.pg_restore, &settings.with_dbname(&into));
    cmd.arg(format!("--dbname={}", dbname_conninfo(&into)))
        .args(["--exit-on-error", "--no-password"]);
    if skip_owner {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let running = Arc::new(Running::default());
    let job = if jobs > 1 {
        let tmp = spool.as_ref().expect("spool").file.clone();
        cmd.arg(format!("--jobs={jobs}")).arg(&tmp);
        let (run, st) = (running.clone(), stop.clone());
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            st.check()?;
            let child = cmd.spawn().map_err(Error::io("cannot run pg_restore"))?;
            run.started(&child, &st);
            let out = child.wait_with_output();
            run.ended();
            let out = out.map_err(Error::io("cannot wait for pg_restore"))?;
            if !out.status.success() {
                return Err(Error::Other(pgdump::explain_stderr(
                    "pg_restore",
                    &String::from_utf8_lossy(&out.stderr),
                )));
            }
            Ok(())
        })
    } else {
        cmd.arg("--single-transaction").stdin(Stdio::piped());
        let p = path.to_path_buf();
        let file = authenticated.take().expect("authenticated file");
        let file_bytes = opened.file_bytes;
        let expected = m.dump_sha256.clone();
        let pr = progress.clone();
        let (run, st) = (running.clone(), stop.clone());
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            st.check()?;
            let mut child = cmd.spawn().map_err(Error::io("cannot run pg_restore"))?;
            run.started(&child, &st);
            let stdin = child.stdin.take().expect("piped");
            let err = child.stderr.take().expect("piped");
            let err_t = std::thread::spawn(move || {
                use std::io::Read;
                let mut s = String::new();
                let _ = std::io::BufReader::new(err)
                    .take(64 * 1024)
                    .read_to_string(&mut s);
                s
            });
            let fed = feed(&file, &p, file_bytes, &keys, stdin, &expected, &*pr, &st);
            if fed.is_err() {
                // Abort the single transaction: nothing half-restored stays behind.
                let _ = child.kill();
            }
            let status = child.wait();
            run.ended();
            let status = status.map_err(Error::io("cannot wait for pg_restore"))?;
            let err_text = err_t.join().unwrap_or_default();
            match fed {
                // pg_restore stopped reading: its own error says why.
                Err(f) if f.kind == "io" && !status.success() => Err(Error::Other(
                    pgdump::explain_stderr("pg_restore", &err_text),
                )),
                Err(f) => Err(f.into()),
                Ok(()) if !status.success() => Err(Error::Other(pgdump::explain_stderr(
                    "pg_restore",
                    &err_text,
                ))),
                Ok(()) => Ok(()),
            }
        })
    };
    let mut result = run_stoppable(job, &running, stop).await;
    if result.is_err() && stop.is_set() {
        undone.pg_restore_stopped = true;
    }
    drop(spool);
    if result.is_ok() {
        crate::interrupt::pause_at("restore-restored", stop).await;
        result = stop.check();
    }
    if let Err(e) = result {
        if made_here {
            // WITH (FORCE): a stopped pg_restore's session may still be closing.
            match conn
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&into)
                ))
                .await
            {
                Ok(()) => undone.dropped = Some(into.clone()),
                Err(de) => undone.drop_failed = Some(format!("{into} ({})", db::describe(&de))),
            }
        }
        return Err(e);
    }
    if swap {
        // From the maintenance database, without any session of ours on the target: it
        // may be the database opsctl connected to (--force).
        drop(conn);
        let admin = match db::connect(&settings.with_dbname("postgres")).await {
            Ok(c) => c,
            Err(_) => db::connect(&settings.with_dbname("template1")).await?,
        };
        admin
            .batch_execute(&format!("DROP DATABASE {}", quote_ident(&opts.target_db)))
            .await
            .map_err(Error::db_ctx(format!(
                "restored into {into}, but cannot drop the old {} to put it in place (close \
                 its sessions, then run: DROP DATABASE {}; ALTER DATABASE {} RENAME TO {})",
                opts.target_db,
                quote_ident(&opts.target_db),
                quote_ident(&into),
                quote_ident(&opts.target_db)
            )))?;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(&into),
                quote_ident(&opts.target_db)
            ))
            .await
            .map_err(Error::db_ctx(format!(
                "cannot rename {into} to {}",
                opts.target_db
            )))?;
    }
    Ok(Restored {
        id: m.id.clone(),
        source_database: m.database.clone(),
        target_database: opts.target_db.clone(),
        created,
        cleaned: opts.clean,
        jobs,
        tables: m.tables.len(),
        rows: m.total_rows(),
        missing_roles: missing,
        skipped_ownership: skip_owner,
        authenticate_secs,
        restore_secs: t1.elapsed().as_secs_f64(),
        total_secs: t0.elapsed().as_secs_f64(),
        manifest: Some(m),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hold_back_withholds_the_tail_until_released() {
        use super::{HoldBack, HOLD_BACK};
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        for sizes in [
            &[1usize, 7, 4096, 5000, 100][..],
            &[3][..],
            &[65536][..],
            &[4095, 1, 2][..],
        ] {
            let mut h = HoldBack::new(Vec::new());
            let mut at = 0;
            let mut k = 0;
            while at < data.len() {
                let n = sizes[k % sizes.len()].min(data.len() - at);
                h.push(&data[at..at + n]).unwrap();
                at += n;
                k += 1;
                // Everything but the last HOLD_BACK bytes has gone out, in order.
                let want = at.saturating_sub(HOLD_BACK);
                assert_eq!(h.out.len(), want);
                assert_eq!(&h.out[..], &data[..want]);
            }
            assert_eq!(h.release().unwrap(), data);
        }
    }

    #[test]
    fn conninfo_quoting() {
        assert_eq!(super::dbname_conninfo("a'b\\c"), "dbname='a\\'b\\\\c'");
    }
}
