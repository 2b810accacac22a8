//! `restore`: authenticate the whole backup first (nothing touches the target before
//! every chunk tag, the chunk order and final chunk, the header and the sealed manifest
//! check out), then feed the dump to pg_restore — from a pipe in one transaction, or
//! with `--jobs N` from a private 0600 temporary file (free space checked first, removed
//! afterwards).
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
//! of partitions and fails on the trading schema.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use super::keys::KeyMaterial;
use super::manifest::Manifest;
use super::verify::{self, Opened};
use super::{pgdump, repo, Progress};
use crate::db::{self, quote_ident, ConnSettings};
use crate::error::Error;

#[derive(Debug, Clone)]
pub struct Options {
    pub target_db: String,
    pub create: bool,
    pub clean: bool,
    pub jobs: Option<u32>,
    pub force: bool,
    /// Where `--jobs` puts its temporary plaintext dump.
    pub tmp_dir: PathBuf,
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

struct TempFile(Option<PathBuf>);
impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Bytes of the dump held back from pg_restore until the whole plaintext matched the
/// manifest's SHA-256: without its last bytes pg_restore cannot finish, so it cannot
/// commit a dump that turns out not to be the one the manifest describes.
const HOLD_BACK: usize = 4096;

/// Second pass: decrypts and decompresses the authenticated file into pg_restore's stdin
/// (every tag checked again), and releases the held-back tail and closes the pipe only
/// after the plaintext hash and size matched the manifest of the first pass.
fn feed(
    file: &std::fs::File,
    path: &Path,
    file_bytes: u64,
    keys: &[KeyMaterial],
    stdin: std::process::ChildStdin,
    expected_sha256: &str,
    progress: &dyn Progress,
) -> Result<(), verify::Failure> {
    grow_pipe(&stdin);
    let mut out = HoldBack::new(stdin);
    let o = verify::stream_file(file, path, file_bytes, keys, &mut |b| out.push(b), progress)?;
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

/// Restores `path` into `opts.target_db` on the server `settings` points at.
pub async fn restore(
    settings: &ConnSettings,
    path: &Path,
    keys: Arc<Vec<KeyMaterial>>,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<Restored, Error> {
    let t0 = Instant::now();
    let conn = db::connect(settings).await?;
    let connected = conn
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(Error::db)?
        .get::<_, String>(0);
    if opts.target_db == connected && !opts.force {
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
    }
    let major = pgdump::server_major(&conn).await?;
    let tools = pgdump::find(major)?;
    let jobs = opts.jobs.unwrap_or(1).max(1);

    // 1. Authenticate everything before touching the target.
    let summary = repo::read_summary(path).ok();
    let mut temp = TempFile(None);
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
                "--jobs needs the plaintext dump on disk: {} needs {need} bytes plus a margin \
                 but only {free} are free in {}; free space, point TMPDIR elsewhere, or \
                 restore without --jobs (streams, needs no space)",
                path.display(),
                opts.tmp_dir.display()
            )));
        }
        let tmp = opts.tmp_dir.join(format!(
            ".opsctl-restore-{}-{}.dump",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut f = crate::fsutil::create_new(&tmp, 0o600)?;
        temp.0 = Some(tmp.clone());
        tokio::task::spawn_blocking(move || -> Result<Opened, Error> {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
            let o = verify::stream(&p, &k, &mut |b| w.write_all(b), &*pr)?;
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
    let result = if jobs > 1 {
        let tmp = temp.0.clone().expect("temp file");
        cmd.arg(format!("--jobs={jobs}")).arg(&tmp);
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            let out = cmd.output().map_err(Error::io("cannot run pg_restore"))?;
            if !out.status.success() {
                return Err(Error::Other(pgdump::explain_stderr(
                    "pg_restore",
                    &String::from_utf8_lossy(&out.stderr),
                )));
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Other(format!("restore failed: {e}")))?
    } else {
        cmd.arg("--single-transaction").stdin(Stdio::piped());
        let p = path.to_path_buf();
        let file = authenticated.take().expect("authenticated file");
        let file_bytes = opened.file_bytes;
        let expected = m.dump_sha256.clone();
        let pr = progress.clone();
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            let mut child = cmd.spawn().map_err(Error::io("cannot run pg_restore"))?;
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
            let fed = feed(&file, &p, file_bytes, &keys, stdin, &expected, &*pr);
            if fed.is_err() {
                // Abort the single transaction: nothing half-restored stays behind.
                let _ = child.kill();
            }
            let status = child
                .wait()
                .map_err(Error::io("cannot wait for pg_restore"))?;
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
        .await
        .map_err(|e| Error::Other(format!("restore failed: {e}")))?
    };
    drop(temp);
    if let Err(e) = result {
        if made_here {
            let _ = conn
                .batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&into)))
                .await;
        }
        return Err(e);
    }
    if swap {
        // From a maintenance connection, so that --force on the connected database works.
        let admin = db::connect(&settings.with_dbname("postgres")).await?;
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
