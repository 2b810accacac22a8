//! Exports of archived months (`archive --export-dir`) and their restore (`archive
//! restore FILE`).
//!
//! A month file is the backup container (`backup::format`, see docs/backup-format.md)
//! holding zstd/gzip of the month's rows as `COPY … TO STDOUT (FORMAT binary)`, sealed with a
//! JSON manifest in the authenticated trailer: table, range, columns, row count and an
//! order-independent checksum (the sum mod 2^128 of the first 16 bytes of SHA-256 of each
//! row's binary COPY tuple). Each file is written to a temporary name, fsynced, read back
//! in full (authentication, row count, checksum) and only then renamed into place and
//! recorded in `opsctl.archive_exports`; `--drop-after-export` drops a month only after
//! its file verified and, under lock, the month still holds exactly the exported rows
//! (count and checksum). An earlier export is reused only when its checksum matches. A
//! restore checks the whole file before touching the database, then loads the rows into
//! a new table with the month's CHECK constraint, compares count and checksum of what
//! landed, and attaches it to `archive.<table>`, all in one transaction.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::archive::{ensure_archive_table, ARCHIVE_SCHEMA};
use super::{archive_oid, inspect, partitions, ts_literal, Observer, Table, TableSpec};
use crate::backup::compress::{Codec, Compression};
use crate::backup::format::{FormatError, Reader};
use crate::backup::keys::KeyMaterial;
use crate::backup::store;
use crate::db::{self, quote_ident, quote_qualified};
use crate::error::Error;
use crate::storage::sealed::SealedWriter;
use crate::storage::Repository;

/// The container's content string for an exported month written with gzip (all exports
/// before the compression setting); see `Codec::export_content`.
pub const CONTENT: &str = "opsctl archive month";
/// The manifest's format tag.
pub const MANIFEST_FORMAT: &str = "opsctl-archive-export/1";
/// File name extension of an exported month.
pub const EXTENSION: &str = "opsarc";

/// One column as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
}

/// The sealed trailer of an exported month.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub database: String,
    pub table_schema: String,
    pub table_name: String,
    pub partition: String,
    pub column: String,
    pub range_from: NaiveDateTime,
    pub range_to: NaiveDateTime,
    pub columns: Vec<Column>,
    pub copy_format: String,
    pub rows: i64,
    pub checksum: String,
    pub server_version_num: i32,
    pub created_at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------
// Order-independent checksum over a binary COPY stream

/// Parses a `COPY … (FORMAT binary)` stream incrementally, counting its rows and summing a
/// 128-bit digest of each row, so the same rows in any order give the same checksum.
#[derive(Debug, Default)]
pub struct CopyDigest {
    buf: Vec<u8>,
    header_done: bool,
    ended: bool,
    rows: i64,
    sum: u128,
}

const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl CopyDigest {
    pub fn new() -> CopyDigest {
        CopyDigest::default()
    }

    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        let buf = &self.buf;
        let mut pos = 0usize;
        let be32 =
            |b: &[u8], at: usize| i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if !self.header_done {
            if buf.len() < 19 {
                return Ok(());
            }
            if &buf[..11] != COPY_SIGNATURE {
                return Err("not a binary COPY stream (bad signature)".into());
            }
            let ext = be32(buf, 15);
            if ext < 0 {
                return Err("bad binary COPY header".into());
            }
            if buf.len() < 19 + ext as usize {
                return Ok(());
            }
            pos = 19 + ext as usize;
            self.header_done = true;
        }
        loop {
            if self.ended {
                if pos < buf.len() {
                    return Err("data after the end of the binary COPY stream".into());
                }
                break;
            }
            if buf.len() - pos < 2 {
                break;
            }
            let n = i16::from_be_bytes([buf[pos], buf[pos + 1]]);
            if n == -1 {
                self.ended = true;
                pos += 2;
                continue;
            }
            if n < 0 {
                return Err(format!("bad field count {n} in the binary COPY stream"));
            }
            let mut p = pos + 2;
            let mut complete = true;
            for _ in 0..n {
                if buf.len() - p < 4 {
                    complete = false;
                    break;
                }
                let len = be32(buf, p);
                p += 4;
                if len >= 0 {
                    if buf.len() - p < len as usize {
                        complete = false;
                        break;
                    }
                    p += len as usize;
                } else if len != -1 {
                    return Err(format!("bad field length {len} in the binary COPY stream"));
                }
            }
            if !complete {
                break;
            }
            let h = Sha256::digest(&buf[pos..p]);
            let mut first = [0u8; 16];
            first.copy_from_slice(&h[..16]);
            self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
            self.rows += 1;
            pos = p;
        }
        self.buf.drain(..pos);
        Ok(())
    }

    /// Row count and checksum (hex) once the stream ended.
    pub fn finish(self) -> Result<(i64, String), String> {
        if !self.ended || !self.buf.is_empty() {
            return Err("the binary COPY stream ends early (no end marker)".into());
        }
        Ok((self.rows, format!("{:032x}", self.sum)))
    }
}

// ---------------------------------------------------------------------------------------
// Reading a file back

/// Why a month file was not accepted: a container error (wrong key, tampering,
/// truncation) or content that disagrees with its manifest.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("mismatch: {0}")]
    Mismatch(String),
}

impl ReadError {
    pub fn kind(&self) -> &'static str {
        match self {
            ReadError::Format(f) => f.kind(),
            ReadError::Mismatch(_) => "mismatch",
        }
    }
}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Format(f) => f.into(),
            ReadError::Mismatch(m) => Error::Verify(format!("mismatch: {m}")),
        }
    }
}

/// Decrypts and decompresses `path`, handing each block of the COPY stream to `sink`;
/// checks authentication, the manifest, the row count and the checksum. Blocking.
pub fn read_file(
    path: &Path,
    keys: &[KeyMaterial],
    sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Manifest, ReadError> {
    let f = File::open(path).map_err(|e| FormatError::Io {
        context: format!("cannot open {}", path.display()),
        source: e,
    })?;
    read_from(f, &path.display().to_string(), keys, sink)
}

/// The same as [`read_file`] over any stream (`name` is what messages call it).
pub fn read_from(
    inp: impl Read,
    name: &str,
    keys: &[KeyMaterial],
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Manifest, ReadError> {
    let reader = Reader::open(BufReader::with_capacity(256 * 1024, inp), keys)?;
    let Some(codec) = Codec::from_export_content(&reader.header.content) else {
        return Err(FormatError::Unsupported(format!(
            "{} holds {:?}, not an exported archive month ({:?}, {CONTENT:?} or {:?})",
            name,
            reader.header.content,
            Codec::Zstd.export_content(),
            Codec::None.export_content(),
        ))
        .into());
    };
    let mut gz = codec
        .decoder(BufReader::with_capacity(64 * 1024, reader))
        .map_err(|e| FormatError::Io {
            context: format!("cannot start the {} decoder", codec.name()),
            source: e,
        })?;
    let mut digest = CopyDigest::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match FormatError::from_io(e, "cannot decompress") {
                    FormatError::Io { source, .. } => ReadError::Mismatch(format!(
                        "the authenticated payload does not decompress: {source}"
                    )),
                    other => other.into(),
                })
            }
        };
        digest.feed(&buf[..n]).map_err(ReadError::Mismatch)?;
        sink(&buf[..n]).map_err(|e| FormatError::Io {
            context: "cannot pass the rows on".into(),
            source: e,
        })?;
    }
    let reader = gz.into_inner().into_inner();
    let trailer = reader.finish()?;
    let manifest: Manifest = serde_json::from_slice(&trailer)
        .map_err(|e| ReadError::Mismatch(format!("the sealed manifest is not valid: {e}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(FormatError::Unsupported(format!(
            "manifest format {:?}; this opsctl reads {MANIFEST_FORMAT:?}",
            manifest.format
        ))
        .into());
    }
    let (rows, checksum) = digest.finish().map_err(ReadError::Mismatch)?;
    if rows != manifest.rows || checksum != manifest.checksum {
        return Err(ReadError::Mismatch(format!(
            "the file holds {rows} rows with checksum {checksum}, its manifest says {} rows \
             with checksum {}",
            manifest.rows, manifest.checksum
        )));
    }
    Ok(manifest)
}

/// Reads a whole month file and checks it; nothing is written anywhere.
pub async fn verify_file(path: &Path, keys: &[KeyMaterial]) -> Result<Manifest, ReadError> {
    let path = path.to_path_buf();
    let keys = clone_keys(keys);
    tokio::task::spawn_blocking(move || read_file(&path, &keys, |_| Ok(())))
        .await
        .map_err(|e| ReadError::Mismatch(format!("the verifying thread failed: {e}")))?
}

/// Reads a whole month object back from its repository and checks it.
pub fn verify_object(
    repo: &Repository,
    key: &str,
    keys: &[KeyMaterial],
) -> Result<Manifest, ReadError> {
    let inp = repo.open(key).map_err(|e| FormatError::Io {
        context: format!("cannot read {key} in {}", repo.display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    let name = store::display_path(repo, key).display().to_string();
    tokio::task::block_in_place(|| read_from(inp, &name, keys, |_| Ok(())))
}

/// Copies key material for a worker thread (the copies zeroize on drop too).
fn clone_keys(keys: &[KeyMaterial]) -> Vec<KeyMaterial> {
    keys.iter()
        .map(|k| match k {
            KeyMaterial::Key(b) => KeyMaterial::Key(zeroize::Zeroizing::new(**b)),
            KeyMaterial::Passphrase(p) => {
                KeyMaterial::Passphrase(zeroize::Zeroizing::new(p.as_str().to_string()))
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Export

/// What happened to one archived month.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedMonth {
    pub partition: String,
    pub range_from: NaiveDateTime,
    pub range_to: NaiveDateTime,
    pub file: PathBuf,
    pub rows: i64,
    pub checksum: String,
    pub bytes: u64,
    /// Written in this run (false: an earlier verified export of the same rows was kept).
    pub written: bool,
    pub verified: bool,
    pub dropped: bool,
}

/// What `export_archived` did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub months: Vec<ExportedMonth>,
    pub failed: Option<String>,
}

const SQL_EXPORTS_EXISTS: &str = "SELECT to_regclass('opsctl.archive_exports') IS NOT NULL";
const SQL_LAST_EXPORT: &str = "\
SELECT file, rows, checksum, bytes FROM opsctl.archive_exports
 WHERE table_schema = $1 AND table_name = $2 AND range_from = $3 AND range_to = $4
   AND verified_at IS NOT NULL AND dropped_at IS NULL
 ORDER BY id DESC LIMIT 1";
const SQL_RECORD: &str = "\
INSERT INTO opsctl.archive_exports
    (table_schema, table_name, partition, range_from, range_to, file, file_id, bytes, rows,
     checksum, verified_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())";
const SQL_DROPPED: &str = "\
UPDATE opsctl.archive_exports SET dropped_at = now()
 WHERE table_schema = $1 AND table_name = $2 AND range_from = $3 AND range_to = $4
   AND file = $5 AND dropped_at IS NULL";
const SQL_RESTORED: &str = "\
UPDATE opsctl.archive_exports SET restored_at = now()
 WHERE table_schema = $1 AND table_name = $2 AND range_from = $3 AND range_to = $4
   AND checksum = $5 AND restored_at IS NULL";
const SQL_COLUMNS_TYPED: &str = "\
SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum";
const SQL_CONTEXT: &str =
    "SELECT current_database()::text, current_setting('server_version_num')::int4";

async fn require_exports_table(client: &Client) -> Result<(), Error> {
    let ok: bool = client
        .query_one(SQL_EXPORTS_EXISTS, &[])
        .await
        .map_err(Error::db)?
        .get(0);
    if !ok {
        return Err(Error::Config(
            "opsctl.archive_exports does not exist: apply the migrations first (opsctl migrate up)"
                .into(),
        ));
    }
    Ok(())
}

async fn typed_columns(client: &Client, oid: u32) -> Result<Vec<Column>, Error> {
    Ok(client
        .query(SQL_COLUMNS_TYPED, &[&oid])
        .await
        .map_err(Error::db)?
        .iter()
        .map(|r| Column {
            name: r.get(0),
            type_: r.get(1),
        })
        .collect())
}

fn column_list(cols: &[Column]) -> String {
    cols.iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file of one month: `DIR/<schema>.<partition>.opsarc`.
pub fn file_name(dir: &Path, schema: &str, partition: &str) -> PathBuf {
    dir.join(object_key(schema, partition))
}

/// The key of one month in its repository: `<schema>.<partition>.opsarc`.
pub fn object_key(schema: &str, partition: &str) -> String {
    format!("{schema}.{partition}.{EXTENSION}")
}

/// Test hook (only in builds with the `test-hooks` feature): `OPSCTL_TEST_CORRUPT_EXPORT=1`
/// flips a byte of every export file after it is written and before it is verified, so
/// tests can see that an unverified month is never dropped.
#[cfg(feature = "test-hooks")]
fn test_corrupt(path: &Path) {
    if std::env::var("OPSCTL_TEST_CORRUPT_EXPORT").as_deref() == Ok("1") {
        if let Ok(mut b) = std::fs::read(path) {
            let at = b.len() / 2;
            b[at] ^= 0x40;
            let _ = std::fs::write(path, b);
            eprintln!("opsctl: test hook: corrupted {}", path.display());
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
fn test_corrupt(_path: &Path) {}

/// Exports every whole month of `archive.<table>` into `dir` (skipping months whose
/// recorded, verified export still matches), and with `drop_after` drops each month whose
/// file verified. Stops at the first failure and reports it in `failed`. Holds the
/// maintenance advisory lock (waiting up to `lock_wait`), like the archive itself.
#[allow(clippy::too_many_arguments)]
pub async fn export_archived(
    client: &Client,
    t: &Table,
    repo: &Repository,
    keys: &[KeyMaterial],
    drop_after: bool,
    lock_wait: std::time::Duration,
    obs: &dyn Observer,
    compression: Compression,
) -> Result<ExportSummary, Error> {
    require_exports_table(client).await?;
    db::acquire_advisory_lock(
        client,
        db::locks::MAINTENANCE,
        lock_wait,
        "maintenance job (archive, backup, vacuum, reindex or partition work)",
    )
    .await?;
    let res = export_locked(client, t, repo, keys, drop_after, obs, compression).await;
    let _ = db::release_advisory_lock(client, db::locks::MAINTENANCE).await;
    res
}

async fn export_locked(
    client: &Client,
    t: &Table,
    repo: &Repository,
    keys: &[KeyMaterial],
    drop_after: bool,
    obs: &dyn Observer,
    compression: Compression,
) -> Result<ExportSummary, Error> {
    // A local directory is made and named by its absolute path (what the records keep).
    let canonical;
    let repo = match store::local_dir(repo) {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("cannot create {}", dir.display())))?;
            let dir = dir
                .canonicalize()
                .map_err(Error::io(format!("cannot resolve {}", dir.display())))?;
            canonical = Repository::local(&repo.name, &dir);
            &canonical
        }
        None => repo,
    };
    let mut summary = ExportSummary {
        dir: PathBuf::from(repo.display()),
        months: Vec::new(),
        failed: None,
    };
    let Some(aoid) = archive_oid(client, &t.name).await? else {
        return Ok(summary);
    };
    let (database, server_version_num): (String, i32) = {
        let r = client
            .query_one(SQL_CONTEXT, &[])
            .await
            .map_err(Error::db)?;
        (r.get(0), r.get(1))
    };
    let columns = typed_columns(client, aoid).await?;
    for p in partitions(client, aoid).await? {
        let (Some(from), Some(to)) = (p.from, p.to) else {
            continue;
        };
        if p.is_default {
            continue;
        }
        let res = export_month(
            client,
            t,
            &p.schema,
            &p.name,
            from,
            to,
            repo,
            keys,
            drop_after,
            &columns,
            &database,
            server_version_num,
            obs,
            compression,
        )
        .await;
        match res {
            Ok(m) => summary.months.push(m),
            Err(e) => {
                summary.failed = Some(format!("{}.{}: {e}", p.schema, p.name));
                break;
            }
        }
    }
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
async fn export_month(
    client: &Client,
    t: &Table,
    schema: &str,
    name: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    repo: &Repository,
    keys: &[KeyMaterial],
    drop_after: bool,
    columns: &[Column],
    database: &str,
    server_version_num: i32,
    obs: &dyn Observer,
    compression: Compression,
) -> Result<ExportedMonth, Error> {
    let part = quote_qualified(schema, name);
    let key = object_key(&t.schema, name);
    let path = store::display_path(repo, &key);
    let here = path.to_string_lossy().into_owned();
    let copy = format!(
        "COPY {part} ({}) TO STDOUT (FORMAT binary)",
        column_list(columns)
    );
    // An earlier verified export of the same month with the same content is kept: the
    // same row count is not enough (an UPDATE keeps it), the content checksum must match.
    let prior = client
        .query_opt(SQL_LAST_EXPORT, &[&t.schema, &t.name, &from, &to])
        .await
        .map_err(Error::db)?;
    if let Some(r) = prior {
        let (file, rows, checksum, bytes): (String, i64, String, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let now = content_digest(client, &copy)
            .await
            .map_err(Error::db_ctx(format!("cannot read {schema}.{name}")))?
            .map_err(Error::Verify)?;
        // The recorded file: this repository's object, or a file elsewhere on this host.
        let in_repo = file == here;
        let exists = if in_repo {
            repo.exists(&key)?
        } else {
            Path::new(&file).exists()
        };
        if now == (rows, checksum.clone()) && exists {
            let mut m = ExportedMonth {
                partition: format!("{schema}.{name}"),
                range_from: from,
                range_to: to,
                file: PathBuf::from(&file),
                rows,
                checksum,
                bytes: bytes as u64,
                written: false,
                verified: true,
                dropped: false,
            };
            if drop_after {
                // Read the kept file back right before dropping what it holds.
                let man = if in_repo {
                    verify_object(repo, &key, keys)?
                } else {
                    verify_file(Path::new(&file), keys).await?
                };
                if man.rows != m.rows || man.checksum != m.checksum {
                    return Err(Error::Verify(format!(
                        "{file} no longer holds the recorded rows; not dropping {schema}.{name}"
                    )));
                }
                drop_month(client, t, schema, name, from, to, &file, &copy, &man).await?;
                m.dropped = true;
                obs.notice(&format!(
                    "dropped {schema}.{name} ({} rows): {file} verified",
                    m.rows
                ));
            }
            return Ok(m);
        }
    }

    // 1. COPY out in one snapshot → digest, then the one sealed-file writer (compress,
    // encrypt, the repository's sink) on a thread.
    let sealed = SealedWriter::create(
        repo,
        &key,
        keys,
        compression.codec.export_content(),
        compression,
    )?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        database: database.into(),
        table_schema: t.schema.clone(),
        table_name: t.name.clone(),
        partition: name.into(),
        column: t.column.clone(),
        range_from: from,
        range_to: to,
        columns: columns.to_vec(),
        copy_format: "binary".into(),
        rows: 0,
        checksum: String::new(),
        server_version_num,
        created_at: Utc::now(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let writer = std::thread::Builder::new()
        .name("opsctl-export".into())
        .spawn(move || -> Result<(Manifest, u64, String), Error> {
            let mut manifest = manifest;
            let mut w = sealed;
            let file_id = w.file_id().to_string();
            let mut digest = CopyDigest::new();
            let fed = (|| -> Result<(), Error> {
                while let Some(b) = rx.blocking_recv() {
                    digest.feed(&b).map_err(Error::Other)?;
                    w.write_all(&b)
                        .map_err(Error::io("cannot write the export file"))?;
                }
                Ok(())
            })();
            let (rows, checksum) = match fed.and_then(|()| digest.finish().map_err(Error::Other)) {
                Ok(x) => x,
                Err(e) => {
                    w.abort();
                    return Err(e);
                }
            };
            manifest.rows = rows;
            manifest.checksum = checksum;
            let trailer = serde_json::to_vec(&manifest).expect("manifest serializes");
            // Committed here: the object is in the repository, read back below before
            // anything relies on it (and removed if it does not read back).
            let bytes = w.finish(&trailer)?;
            Ok((manifest, bytes, file_id))
        })
        .map_err(Error::io("cannot start the export thread"))?;
    let copied: Result<i64, Error> = async {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(Error::db)?;
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM {part}"), &[])
            .await
            .map_err(Error::db)?
            .get(0);
        let stream = client
            .copy_out(copy.as_str())
            .await
            .map_err(Error::db_ctx(format!("cannot read {schema}.{name}")))?;
        futures_util::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(Error::db_ctx(format!("cannot read {schema}.{name}")))?;
            if tx.send(chunk).await.is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        client.batch_execute("COMMIT").await.map_err(Error::db)?;
        Ok(count)
    }
    .await;
    drop(tx);
    let written = writer
        .join()
        .map_err(|_| Error::Other("the export thread panicked".into()));
    let written_ok = matches!(&written, Ok(Ok(_)));
    let cleanup = |e: Error| {
        if written_ok {
            let _ = repo.delete(&key);
        }
        e
    };
    let count = match copied {
        Ok(c) => c,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(cleanup(e));
        }
    };
    let (manifest, bytes, file_id) = written.and_then(|r| r).map_err(cleanup)?;
    if manifest.rows != count {
        return Err(cleanup(Error::Verify(format!(
            "COPY of {schema}.{name} gave {} rows, the table holds {count}",
            manifest.rows
        ))));
    }

    // 2. Read the whole object back from the repository before it is recorded.
    if let Some(p) = repo.local_path(&key) {
        test_corrupt(&p);
    }
    let back = verify_object(repo, &key, keys).map_err(|e| {
        cleanup(Error::Verify(format!(
            "the export of {schema}.{name} did not verify when read back ({}): {e}; the month \
             stays in the database",
            e.kind()
        )))
    })?;
    if back.rows != manifest.rows || back.checksum != manifest.checksum {
        return Err(cleanup(Error::Verify(format!(
            "the export of {schema}.{name} read back as {} rows / {}, written as {} rows / {}",
            back.rows, back.checksum, manifest.rows, manifest.checksum
        ))));
    }
    let file_s = here;
    client
        .execute(
            SQL_RECORD,
            &[
                &t.schema,
                &t.name,
                &name,
                &from,
                &to,
                &file_s,
                &file_id,
                &(bytes as i64),
                &manifest.rows,
                &manifest.checksum,
            ],
        )
        .await
        .map_err(Error::db_ctx("cannot record the export"))?;
    obs.notice(&format!(
        "exported {schema}.{name}: {} rows, {} → {} (verified)",
        manifest.rows,
        crate::units::human_bytes(bytes),
        path.display()
    ));
    let mut m = ExportedMonth {
        partition: format!("{schema}.{name}"),
        range_from: from,
        range_to: to,
        file: path,
        rows: manifest.rows,
        checksum: manifest.checksum,
        bytes,
        written: true,
        verified: true,
        dropped: false,
    };
    if drop_after {
        drop_month(client, t, schema, name, from, to, &file_s, &copy, &back).await?;
        m.dropped = true;
        obs.notice(&format!(
            "dropped {schema}.{name} ({} rows): its export verified",
            m.rows
        ));
    }
    Ok(m)
}

/// Row count and checksum (as the manifest defines them) of what `copy`, a `COPY … TO
/// STDOUT (FORMAT binary)`, reads now; the inner error: the stream is not binary COPY.
async fn content_digest(
    client: &Client,
    copy: &str,
) -> Result<Result<(i64, String), String>, tokio_postgres::Error> {
    let stream = client.copy_out(copy).await?;
    futures_util::pin_mut!(stream);
    let mut digest = CopyDigest::new();
    while let Some(chunk) = stream.next().await {
        if let Err(e) = digest.feed(&chunk?) {
            return Ok(Err(e));
        }
    }
    Ok(digest.finish())
}

/// Drops an exported month, after checking under lock that it still holds exactly the
/// exported rows (count and content checksum, read with `copy`); journals the drop in
/// the same transaction.
#[allow(clippy::too_many_arguments)]
async fn drop_month(
    client: &Client,
    t: &Table,
    schema: &str,
    name: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
    file: &str,
    copy: &str,
    exported: &Manifest,
) -> Result<(), Error> {
    let part = quote_qualified(schema, name);
    let lock = format!("LOCK TABLE {part} IN ACCESS EXCLUSIVE MODE");
    let drop = format!("DROP TABLE {part}");
    let want = (exported.rows, exported.checksum.clone());
    let changed = super::in_tx(client, &format!("dropping {schema}.{name}"), || async {
        client.batch_execute(&lock).await?;
        let now = content_digest(client, copy).await?;
        if now.as_ref() != Ok(&want) {
            return Ok(Some(now));
        }
        client.batch_execute(&drop).await?;
        client
            .execute(SQL_DROPPED, &[&t.schema, &t.name, &from, &to, &file])
            .await?;
        Ok(None)
    })
    .await?;
    match changed {
        None => Ok(()),
        Some(Ok((n, sum))) => Err(Error::Verify(format!(
            "{schema}.{name} changed since its export (it holds {n} rows with checksum {sum} \
             now, {file} {} rows with checksum {}): not dropped; run the export again",
            exported.rows, exported.checksum
        ))),
        Some(Err(e)) => Err(Error::Verify(format!(
            "cannot checksum {schema}.{name} before dropping it ({e}): not dropped"
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Restore

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub file: PathBuf,
    pub table: String,
    pub archive_table: String,
    pub partition: String,
    pub range_from: NaiveDateTime,
    pub range_to: NaiveDateTime,
    pub rows: i64,
    pub checksum: String,
    pub verified: bool,
}

/// Why a restore did not happen: the file (refused before the database is touched) or
/// the database.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    File(ReadError),
    #[error(transparent)]
    Other(#[from] Error),
}

/// Brings an exported month back into `archive.<table>`: checks the whole file first,
/// refuses when any row of the month is present (archive or live table), then loads,
/// re-checks and attaches in one transaction.
pub async fn restore(
    client: &Client,
    path: &Path,
    keys: &[KeyMaterial],
    obs: &dyn Observer,
) -> Result<Restored, RestoreError> {
    let man = verify_file(path, keys).await.map_err(RestoreError::File)?;
    obs.notice(&format!(
        "{}: authentic, {} rows, checksum {} (month {} of {}.{})",
        path.display(),
        man.rows,
        man.checksum,
        man.range_from.format("%Y-%m"),
        man.table_schema,
        man.table_name
    ));
    db::acquire_advisory_lock(
        client,
        db::locks::MAINTENANCE,
        RESTORE_LOCK_WAIT,
        "maintenance job (archive, backup, vacuum, reindex or partition work)",
    )
    .await?;
    let res = restore_verified(client, path, keys, &man).await;
    let _ = db::release_advisory_lock(client, db::locks::MAINTENANCE).await;
    Ok(res?)
}

/// How long a restore waits for another maintenance job to finish.
pub const RESTORE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

async fn restore_verified(
    client: &Client,
    path: &Path,
    keys: &[KeyMaterial],
    man: &Manifest,
) -> Result<Restored, Error> {
    require_exports_table(client).await?;
    let spec = TableSpec {
        schema: man.table_schema.clone(),
        table: man.table_name.clone(),
        column: Some(man.column.clone()),
    };
    let live = inspect(client, &spec).await?;
    let arch = ensure_archive_table(client, &live).await?;
    let columns = typed_columns(client, arch.oid).await?;
    if columns != man.columns {
        return Err(Error::Config(format!(
            "archive.{} no longer has the columns the export was made with ({}); alter it back \
             or restore into a database of that shape",
            man.table_name,
            man.columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.type_))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let (lo, hi) = (ts_literal(man.range_from), ts_literal(man.range_to));
    let present = |what: String| {
        Error::Other(format!(
            "refused: the month {} of {}.{} is present already ({what}); restoring it would \
             duplicate rows. Drop or move it first if you mean to replace it",
            man.range_from.format("%Y-%m"),
            man.table_schema,
            man.table_name
        ))
    };
    for p in partitions(client, arch.oid).await? {
        if p.overlaps(man.range_from, man.range_to) {
            return Err(present(format!("partition {} overlaps it", p.qualified())));
        }
    }
    let part = quote_qualified(ARCHIVE_SCHEMA, &man.partition);
    let taken: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&part])
        .await
        .map_err(Error::db)?
        .get(0);
    if taken {
        return Err(present(format!(
            "{ARCHIVE_SCHEMA}.{} exists",
            man.partition
        )));
    }
    let c = quote_ident(&man.column);
    for (what, table) in [
        (
            format!("{ARCHIVE_SCHEMA}.{}", man.table_name),
            quote_qualified(ARCHIVE_SCHEMA, &man.table_name),
        ),
        (live.qualified(), live.sql_name()),
    ] {
        let n: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {c} >= {lo} AND {c} < {hi}"),
                &[],
            )
            .await
            .map_err(Error::db)?
            .get(0);
        if n > 0 {
            return Err(present(format!("{n} rows of its range are in {what}")));
        }
    }

    let create = format!(
        "CREATE TABLE {part} (LIKE {archive} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
         INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMPRESSION); \
         ALTER TABLE {part} ADD CONSTRAINT {check} CHECK ({c} >= {lo} AND {c} < {hi})",
        archive = quote_qualified(ARCHIVE_SCHEMA, &man.table_name),
        check = quote_ident(&format!("{}_range", man.partition)),
    );
    let cols = column_list(&columns);
    let copy_in = format!("COPY {part} ({cols}) FROM STDIN (FORMAT binary)");
    let copy_out = format!("COPY {part} ({cols}) TO STDOUT (FORMAT binary)");
    let attach = format!(
        "SET LOCAL lock_timeout = '{}ms'; \
         ALTER TABLE {archive} ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi})",
        super::LOCK_TIMEOUT_MS,
        archive = quote_qualified(ARCHIVE_SCHEMA, &man.table_name),
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        client.batch_execute("BEGIN").await.map_err(Error::db)?;
        let res = restore_tx(
            client, path, keys, man, &create, &copy_in, &copy_out, &attach,
        )
        .await;
        match res {
            Ok(()) => {
                client.batch_execute("COMMIT").await.map_err(Error::db)?;
                break;
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                let busy = matches!(&e, TxError::Db(d) if matches!(db::sqlstate(d), Some("55P03" | "40P01")));
                if busy && attempt < super::LOCK_ATTEMPTS {
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt as u64))
                        .await;
                    continue;
                }
                return Err(match e {
                    TxError::Db(d) => {
                        Error::Db(format!("restoring {}: {}", man.partition, db::describe(&d)))
                    }
                    TxError::Other(e) => e,
                });
            }
        }
    }
    Ok(Restored {
        file: path.to_path_buf(),
        table: format!("{}.{}", man.table_schema, man.table_name),
        archive_table: format!("{ARCHIVE_SCHEMA}.{}", man.table_name),
        partition: format!("{ARCHIVE_SCHEMA}.{}", man.partition),
        range_from: man.range_from,
        range_to: man.range_to,
        rows: man.rows,
        checksum: man.checksum.clone(),
        verified: true,
    })
}

enum TxError {
    Db(tokio_postgres::Error),
    Other(Error),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Db(e)
    }
}

#[allow(clippy::too_many_arguments)]
async fn restore_tx(
    client: &Client,
    path: &Path,
    keys: &[KeyMaterial],
    man: &Manifest,
    create: &str,
    copy_in: &str,
    copy_out: &str,
    attach: &str,
) -> Result<(), TxError> {
    client.batch_execute(create).await?;
    // Decrypt on a thread, feed COPY here.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (p, k) = (path.to_path_buf(), clone_keys(keys));
    let reader = tokio::task::spawn_blocking(move || {
        read_file(&p, &k, |b| {
            tx.blocking_send(Bytes::copy_from_slice(b))
                .map_err(|_| std::io::Error::other("the database side stopped"))
        })
    });
    let sink = client.copy_in::<_, Bytes>(copy_in).await?;
    futures_util::pin_mut!(sink);
    let mut fed: Result<(), tokio_postgres::Error> = Ok(());
    while let Some(b) = rx.recv().await {
        if let Err(e) = sink.send(b).await {
            fed = Err(e);
            break;
        }
    }
    drop(rx);
    let read = reader
        .await
        .map_err(|e| TxError::Other(Error::Other(format!("the reading thread failed: {e}"))))?;
    // A database error stopped the reader: report the database's reason.
    fed?;
    if let Err(e) = read {
        return Err(TxError::Other(e.into()));
    }
    let loaded = sink.finish().await? as i64;
    // What landed, read back in the same transaction.
    let (rows, checksum) = content_digest(client, copy_out)
        .await?
        .map_err(|e| TxError::Other(Error::Verify(e)))?;
    if loaded != man.rows || rows != man.rows || checksum != man.checksum {
        return Err(TxError::Other(Error::Verify(format!(
            "mismatch: the restored table holds {rows} rows with checksum {checksum}, the \
             export {} rows with checksum {}; nothing was restored",
            man.rows, man.checksum
        ))));
    }
    client.batch_execute(attach).await?;
    client
        .execute(
            SQL_RESTORED,
            &[
                &man.table_schema,
                &man.table_name,
                &man.range_from,
                &man.range_to,
                &man.checksum,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut v = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                Some(b) => {
                    v.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    v.extend_from_slice(b);
                }
                None => v.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        v
    }

    fn stream(rows: &[Vec<u8>]) -> Vec<u8> {
        let mut v = COPY_SIGNATURE.to_vec();
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&0i32.to_be_bytes());
        for r in rows {
            v.extend_from_slice(r);
        }
        v.extend_from_slice(&(-1i16).to_be_bytes());
        v
    }

    fn digest_in_pieces(data: &[u8], piece: usize) -> (i64, String) {
        let mut d = CopyDigest::new();
        for c in data.chunks(piece) {
            d.feed(c).unwrap();
        }
        d.finish().unwrap()
    }

    #[test]
    fn checksum_ignores_order_and_chunking_but_not_content() {
        let a = tuple(&[Some(b"a1"), None, Some(b"xyz")]);
        let b = tuple(&[Some(b"b2"), Some(b""), Some(b"q")]);
        let c = tuple(&[Some(b"c3"), None, None]);
        let s1 = stream(&[a.clone(), b.clone(), c.clone()]);
        let s2 = stream(&[c.clone(), a.clone(), b.clone()]);
        let whole = digest_in_pieces(&s1, s1.len());
        assert_eq!(whole.0, 3);
        for piece in [1, 2, 3, 7, 64] {
            assert_eq!(digest_in_pieces(&s1, piece), whole);
            assert_eq!(digest_in_pieces(&s2, piece), whole);
        }
        let s3 = stream(&[a.clone(), b.clone(), tuple(&[Some(b"c4"), None, None])]);
        assert_ne!(digest_in_pieces(&s3, 5).1, whole.1);
        // A duplicated row changes the sum (XOR would cancel it).
        let s4 = stream(&[a.clone(), a.clone(), b.clone(), c.clone()]);
        assert_ne!(digest_in_pieces(&s4, 5).1, whole.1);
    }

    #[test]
    fn truncated_or_foreign_streams_are_errors() {
        let s = stream(&[tuple(&[Some(b"x")])]);
        let mut d = CopyDigest::new();
        d.feed(&s[..s.len() - 2]).unwrap();
        assert!(d.finish().is_err());
        let mut d = CopyDigest::new();
        assert!(d.feed(b"id,name\n1,ann\n2,bob\n").is_err());
        let mut d = CopyDigest::new();
        let mut extra = s.clone();
        extra.push(0);
        assert!(d.feed(&extra).is_err());
    }
}
