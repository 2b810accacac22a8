//! `backup create`: pg_dump (custom format, its compression off, in an exported
//! REPEATABLE READ snapshot) → zstd, gzip or nothing (`[backup] compression`) on its own
//! thread → chunked AES-256-GCM → the repository's sink (a locked 0600 temporary file
//! fsynced and renamed into place, or an upload completed at the end; see
//! [`crate::storage`]); the summary is written last, through the same repository. The manifest is computed in the same snapshot while pg_dump runs (the
//! sequences just before it starts; the tables' row counts and checksums from pg_dump's
//! stream itself, see [`super::dumpscan`]) and sealed as the container's trailer.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};

use super::compress::Compression;
use super::format::{self, Writer};
use super::keys::KeyMaterial;
use super::manifest::{self, Manifest, Summary};
use super::{bookkeeping, dumpscan, pgdump, repo, store, Progress};
use crate::db::{self, ConnSettings};
use crate::error::Error;
use crate::storage::{Repository, Sink};

const BUF: usize = 256 * 1024;

/// The outcome of a successful create.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    pub path: PathBuf,
    #[serde(flatten)]
    pub summary: Summary,
    /// Where the status was recorded besides the directory (or why not).
    pub bookkeeping: String,
}

/// Removes the temporary file of a local repository's sink when the create future is
/// dropped (a signal); after the commit there is none, and removing nothing is harmless.
struct Unfinished(Option<PathBuf>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Stops pg_dump unless disarmed (success, or the future was dropped on a signal); the
/// temporary file removes itself when dropped unrenamed.
struct Cleanup {
    pid: Option<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
}

struct Piped {
    /// Per-table rows and checksums read from the stream (or why they could not be).
    scanned: Result<Vec<dumpscan::ScannedTable>, String>,
    dump_bytes: u64,
    compressed_bytes: u64,
    sha256: String,
    writer: Writer<Box<dyn Sink>>,
}

/// Sends compressed bytes to the encrypting thread in ~256 KiB pieces.
struct ChannelWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BUF {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let b = std::mem::replace(&mut self.buf, Vec::with_capacity(BUF + 64 * 1024));
            self.tx
                .send(b)
                .map_err(|_| std::io::Error::other("the encrypting thread stopped"))?;
        }
        Ok(())
    }
}

/// pg_dump's stdout, with every byte read also fed to the table scanner (same thread,
/// same buffer: no copy of the stream).
struct Scanned<R> {
    inner: R,
    scan: dumpscan::DumpScan,
}

impl<R: Read> Read for Scanned<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan.feed(&buf[..n]);
        Ok(n)
    }
}

/// Thread 1: read pg_dump's stdout, hash it, compress it, hand it on.
fn compress(
    mut src: impl Read,
    tx: SyncSender<Vec<u8>>,
    progress: Arc<dyn Progress>,
    compression: Compression,
) -> std::io::Result<(u64, String)> {
    let mut enc = compression.encoder(ChannelWriter {
        tx,
        buf: Vec::with_capacity(BUF + 64 * 1024),
    })?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut n_total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        enc.write_all(&buf[..n])?;
        n_total += n as u64;
        progress.add(n as u64);
    }
    let mut w = enc.finish()?;
    w.flush()?;
    Ok((n_total, hex::encode(hash.finalize())))
}

/// Thread 2 (the caller): encrypt what arrives and write it.
fn encrypt(rx: Receiver<Vec<u8>>, writer: &mut Writer<Box<dyn Sink>>) -> std::io::Result<u64> {
    let mut n = 0u64;
    for b in rx {
        writer.write_all(&b)?;
        n += b.len() as u64;
    }
    Ok(n)
}

fn pipeline(
    stdout: std::process::ChildStdout,
    mut writer: Writer<Box<dyn Sink>>,
    progress: Arc<dyn Progress>,
    compression: Compression,
) -> Result<Piped, Error> {
    let (tx, rx) = sync_channel::<Vec<u8>>(4);
    let t = std::thread::Builder::new()
        .name("opsctl-compress".into())
        .spawn(move || {
            let mut src = Scanned {
                inner: stdout,
                scan: dumpscan::DumpScan::new(),
            };
            let r = compress(&mut src, tx, progress, compression);
            (r, src.scan.finish())
        })
        .map_err(Error::io("cannot start the compression thread"))?;
    let enc = encrypt(rx, &mut writer);
    let (comp, scanned) = t
        .join()
        .map_err(|_| Error::Other("the compression thread panicked".into()))?;
    let compressed_bytes = enc.map_err(Error::io("cannot write the backup file"))?;
    let (dump_bytes, sha256) = comp.map_err(Error::io("cannot read pg_dump's output"))?;
    Ok(Piped {
        scanned,
        dump_bytes,
        compressed_bytes,
        sha256,
        writer,
    })
}

fn collect_stderr(mut s: std::process::ChildStderr) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut s).take(64 * 1024).read_to_end(&mut out);
        let _ = std::io::copy(&mut s, &mut std::io::sink());
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// Runs a backup of the database `settings` points at into `<database>/` of `repository`. As soon as
/// the backup is complete and listed (file and summary in place), its id and path are put
/// in `written`, so a caller that drops this future (on a signal) can say what is on disk.
pub async fn create(
    settings: &ConnSettings,
    repository: &Repository,
    keys: Vec<KeyMaterial>,
    progress: Arc<dyn Progress>,
    lock_wait: Duration,
    written: &OnceLock<(String, PathBuf)>,
    compression: Compression,
) -> Result<Created, Error> {
    let conn = db::connect(settings).await?;
    let major = pgdump::server_major(&conn).await?;
    let tools = pgdump::find(major)?;
    db::acquire_advisory_lock(&conn, db::locks::MAINTENANCE, lock_wait, "maintenance job").await?;
    let result = create_locked(
        &conn,
        settings,
        repository,
        keys,
        progress,
        &tools,
        written,
        compression,
    )
    .await;
    let _ = db::release_advisory_lock(&conn, db::locks::MAINTENANCE).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn create_locked(
    conn: &db::Connection,
    settings: &ConnSettings,
    repository: &Repository,
    keys: Vec<KeyMaterial>,
    progress: Arc<dyn Progress>,
    tools: &pgdump::PgTools,
    written: &OnceLock<(String, PathBuf)>,
    compression: Compression,
) -> Result<Created, Error> {
    let started = Instant::now();
    let started_at = Utc::now();
    let row = conn
        .query_one(
            "SELECT current_database()::text, current_setting('server_version'), \
             current_setting('server_encoding')",
            &[],
        )
        .await
        .map_err(Error::db)?;
    let (database, server_version): (String, String) = (row.get(0), row.get(1));
    // Stream checksums compare pg_dump's text with the drill's UTF8 session's text.
    let mut version = if row.get::<_, String>(2) == "UTF8" {
        manifest::MANIFEST_VERSION
    } else {
        3
    };
    conn.batch_execute(manifest::STABLE_OUTPUT)
        .await
        .map_err(Error::db)?;
    conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(Error::db)?;
    let snapshot: String = conn
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(Error::db_ctx("cannot export a snapshot"))?
        .get(0);

    // Before pg_dump starts: sequences are not transactional, so pg_dump's values are
    // then the same or further on, and these are past every value the snapshot holds.
    let sequences = match manifest::sequences(conn).await {
        Ok(s) => s,
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };

    if let Some(dir) = store::local_dir(repository) {
        let dbdir = repo::db_dir(dir, &database);
        std::fs::create_dir_all(&dbdir)
            .map_err(Error::io(format!("cannot create {}", dbdir.display())))?;
        repo::remove_stale_temps(&dbdir);
    }
    let id = repo::new_id(started_at);
    let key = store::object_key(&database, &id);
    let path = store::display_path(repository, &key);
    // Locked while this run lives (`backup prune` leaves it alone until then); removed at
    // once if this future is dropped (a signal), not only when the writer thread ends.
    let sink = match repository.create(&key) {
        Ok(s) => s,
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    let _unfinished = Unfinished(
        repository
            .local_path(&key)
            .map(|p| crate::fsutil::temp_path(&p)),
    );
    let mut cleanup = Cleanup { pid: None };
    let writer = Writer::new(sink, &keys, compression.codec.backup_content())?;
    drop(keys);
    let key_ids = writer.header().key_ids();

    let mut child = pgdump::command(&tools.pg_dump, &settings.with_dbname(&database))
        .args(["--format=custom", "--compress=0", "--no-password"])
        .env("PGOPTIONS", manifest::DUMP_PGOPTIONS)
        .arg(format!("--snapshot={snapshot}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io(format!("cannot run {}", tools.pg_dump.display())))?;
    cleanup.pid = Some(child.id());
    let stdout = child.stdout.take().expect("piped");
    let stderr = collect_stderr(child.stderr.take().expect("piped"));
    let piped = tokio::task::spawn_blocking(move || {
        let r = pipeline(stdout, writer, progress, compression);
        let status = child.wait();
        (r, status)
    });
    // Meanwhile, in the same snapshot: counts, checksums, roles, migration version.
    let mut stats = match manifest::compute(conn, version, true).await {
        Ok(s) => s,
        Err(e) => {
            // The snapshot dies with this transaction: stop pg_dump (the guard does) and
            // report the first cause, not pg_dump's consequent failure.
            let _ = conn.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    // The audit chain head, in the same snapshot (kept outside the database from now on).
    let audit_seal = match crate::audit::latest_seal(conn).await {
        Ok(s) => s.map(|(seal_id, hash)| manifest::SealRef { seal_id, hash }),
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    let (piped, status) = piped
        .await
        .map_err(|e| Error::Other(format!("backup pipeline failed: {e}")))?;
    cleanup.pid = None;
    let status = status.map_err(Error::io("cannot wait for pg_dump"))?;
    let err_text = stderr.join().unwrap_or_default();
    if !status.success() {
        let _ = conn.batch_execute("ROLLBACK").await;
        return Err(Error::Other(pgdump::explain_stderr("pg_dump", &err_text)));
    }
    let piped = piped?;
    if version >= manifest::STREAM_SINCE {
        match &piped.scanned {
            Ok(t) => stats.tables = t.iter().map(manifest::TableStat::from).collect(),
            Err(e) => {
                // Still in the snapshot: fall back to version 3's second scan.
                tracing::warn!(
                    "cannot read table checksums from pg_dump's stream ({e}); computing \
                     them with queries (manifest version 3)"
                );
                version = 3;
                stats.tables = match manifest::compute(conn, version, false).await {
                    Ok(s) => s.tables,
                    Err(e) => {
                        let _ = conn.batch_execute("ROLLBACK").await;
                        return Err(e);
                    }
                };
            }
        }
    }
    conn.batch_execute("COMMIT").await.map_err(Error::db)?;
    let finished_at = Utc::now();

    let m = Manifest {
        manifest_version: version,
        id: id.clone(),
        database: database.clone(),
        server_version: server_version.clone(),
        pg_dump_version: tools.version.clone(),
        started_at,
        finished_at,
        migration_version: stats.migration_version,
        roles: stats.roles,
        tables: stats.tables,
        dump_bytes: piped.dump_bytes,
        compressed_bytes: piped.compressed_bytes,
        dump_sha256: piped.sha256,
        audit_seal,
        sequences,
        matviews: stats.matviews,
    };
    let trailer = serde_json::to_vec(&m).expect("manifest serialises");
    let writer = piped.writer;
    let file_bytes = tokio::task::spawn_blocking(move || -> Result<u64, Error> {
        let (sink, n) = writer.finish(&trailer)?;
        sink.commit()?;
        Ok(n)
    })
    .await
    .map_err(|e| Error::Other(format!("backup pipeline failed: {e}")))??;

    let summary = Summary {
        summary_version: 1,
        id: id.clone(),
        database: database.clone(),
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        started_at,
        finished_at,
        duration_secs: started.elapsed().as_secs_f64(),
        dump_bytes: m.dump_bytes,
        compressed_bytes: m.compressed_bytes,
        file_bytes,
        key_ids,
        format_version: format::VERSION,
        server_version,
        migration_version: m.migration_version.clone(),
        tables: m.tables.len(),
        rows: m.total_rows(),
        dump_sha256: m.dump_sha256.clone(),
        audit_seal: m.audit_seal.clone(),
        compression: compression.codec,
        compression_level: compression.recorded_level(),
    };
    let text = serde_json::to_string_pretty(&summary).expect("summary serialises") + "\n";
    if let Err(e) = repository.put(&store::summary_key(&key), text.as_bytes()) {
        // Without its summary the file is not a listed backup: remove it.
        let _ = repository.delete(&key);
        return Err(e);
    }
    let _ = written.set((id.clone(), path.clone()));
    // Test hook: a signal here arrives after the backup is complete and listed.
    #[cfg(feature = "test-hooks")]
    crate::partition::pause_at("backup-written").await;
    let bookkeeping =
        match bookkeeping::record_backup(conn, &summary, &path.display().to_string()).await {
            Ok(true) => "recorded in opsctl.backups".to_string(),
            Ok(false) => bookkeeping::NOT_INSTALLED.to_string(),
            Err(e) => format!("not recorded in opsctl.backups: {e}"),
        };
    Ok(Created {
        path,
        summary,
        bookkeeping,
    })
}
