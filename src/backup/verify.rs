//! Reading a backup end to end: decrypt every chunk, decompress, hash the plaintext dump,
//! open the sealed manifest and check it against the dump and the plaintext summary.
//! `verify` also hands the dump to `pg_restore --list`; restore hands it to `pg_restore`.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::compress::Codec;
use super::format::{FormatError, Header, Reader};
use super::keys::KeyMaterial;
use super::manifest::{Manifest, Summary};
use super::{pgdump, repo, Counting, Progress};
use crate::error::Error;

/// Why a backup is bad (or could not be checked). `kind`: wrong_key, header_corrupted,
/// chunk_auth, truncated, trailing_data, manifest_mismatch, unsupported, archive, io, error.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    /// True when the failure proves a defect of the file itself (damaged, truncated,
    /// tampered with, or not what its manifest says), so it may be recorded as a bad
    /// backup; false for a key that does not open it, a newer format, a missing tool or
    /// an unreadable file, which say nothing about the backup's health.
    pub fn is_defect(&self) -> bool {
        matches!(
            self.kind,
            "header_corrupted"
                | "chunk_auth"
                | "truncated"
                | "trailing_data"
                | "manifest_mismatch"
                | "archive"
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<FormatError> for Failure {
    fn from(e: FormatError) -> Self {
        Failure {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            kind: match e {
                Error::Io { .. } => "io",
                _ => "error",
            },
            message: e.to_string(),
        }
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f.kind {
            "io" | "error" => Error::Other(f.message),
            _ => Error::Verify(f.message),
        }
    }
}

fn mismatch(msg: String) -> Failure {
    Failure {
        kind: "manifest_mismatch",
        message: format!("manifest mismatch: {msg}"),
    }
}

/// An authenticated backup.
#[derive(Debug, Clone)]
pub struct Opened {
    pub manifest: Manifest,
    pub header: Header,
    /// The key slot that opened it.
    pub slot: usize,
    pub file_bytes: u64,
}

/// Opens the container on an already open file: header, key slot, content label.
fn open_reader<'a>(
    f: &File,
    path: &Path,
    keys: &[KeyMaterial],
    progress: &'a dyn Progress,
) -> Result<Reader<Counting<'a, BufReader<File>>>, Failure> {
    let f = f.try_clone().map_err(|e| Failure {
        kind: "io",
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    let counting = Counting {
        inner: BufReader::with_capacity(1 << 20, f),
        count: 0,
        progress,
    };
    let reader = Reader::open(counting, keys)?;
    if Codec::from_backup_content(&reader.header.content).is_none() {
        return Err(Failure {
            kind: "unsupported",
            message: format!(
                "{} holds {:?}, not an opsctl database backup ({:?}, {:?} or {:?})",
                path.display(),
                reader.header.content,
                Codec::Zstd.backup_content(),
                Codec::Gzip.backup_content(),
                Codec::None.backup_content(),
            ),
        });
    }
    Ok(reader)
}

fn open_file(path: &Path) -> Result<(File, u64), Failure> {
    let f = File::open(path).map_err(|e| Failure {
        kind: "io",
        message: format!("cannot open {}: {e}", path.display()),
    })?;
    let file_bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((f, file_bytes))
}

/// Rewinds a file shared by both passes of a restore.
fn rewind(f: &File, path: &Path) -> Result<(), Failure> {
    use std::io::{Seek, SeekFrom};
    let mut g: &File = f;
    g.seek(SeekFrom::Start(0)).map(|_| ()).map_err(|e| Failure {
        kind: "io",
        message: format!("cannot read {}: {e}", path.display()),
    })
}

/// Decrypts and decompresses the whole file, passing the plaintext dump to `sink`, and
/// checks every tag, the end of the file, and the manifest's sizes and SHA-256.
pub fn stream(
    path: &Path,
    keys: &[KeyMaterial],
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    progress: &dyn Progress,
) -> Result<Opened, Failure> {
    let (f, file_bytes) = open_file(path)?;
    stream_file(&f, path, file_bytes, keys, sink, progress)
}

/// [`stream`] over an already open file, read from its start.
pub fn stream_file(
    f: &File,
    path: &Path,
    file_bytes: u64,
    keys: &[KeyMaterial],
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    progress: &dyn Progress,
) -> Result<Opened, Failure> {
    rewind(f, path)?;
    let reader = open_reader(f, path, keys, progress)?;
    let header = reader.header.clone();
    let slot = reader.slot;
    let codec = Codec::from_backup_content(&header.content).unwrap_or(Codec::Gzip);
    // A larger input buffer than flate2's 32 KiB default: one decrypted chunk per fill.
    let mut gz = codec
        .decoder(BufReader::with_capacity(
            super::format::DEFAULT_CHUNK as usize,
            reader,
        ))
        .map_err(|e| Failure {
            kind: "error",
            message: format!("cannot start the {} decoder: {e}", codec.name()),
        })?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut dump_bytes = 0u64;
    loop {
        let n = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let fe = FormatError::from_io(e, "cannot decompress the backup");
                return Err(match fe {
                    FormatError::Io { source, .. } => mismatch(format!(
                        "the authenticated payload does not decompress: {source}"
                    )),
                    other => other.into(),
                });
            }
        };
        hash.update(&buf[..n]);
        dump_bytes += n as u64;
        sink(&buf[..n]).map_err(|e| Failure {
            kind: "io",
            message: format!("cannot pass the dump on: {e}"),
        })?;
    }
    let reader = gz.into_inner().into_inner();
    let trailer = reader.finish()?;
    let manifest: Manifest = serde_json::from_slice(&trailer)
        .map_err(|e| mismatch(format!("the sealed manifest is not valid: {e}")))?;
    let sha = hex::encode(hash.finalize());
    if sha != manifest.dump_sha256 {
        return Err(mismatch(format!(
            "SHA-256 of the dump is {sha}, the manifest recorded {}",
            manifest.dump_sha256
        )));
    }
    if dump_bytes != manifest.dump_bytes {
        return Err(mismatch(format!(
            "the dump has {dump_bytes} bytes, the manifest recorded {}",
            manifest.dump_bytes
        )));
    }
    Ok(Opened {
        manifest,
        header,
        slot,
        file_bytes,
    })
}

/// Authentication only, without decompressing: the header, the key slot, every chunk's
/// AES-GCM tag in STREAM order up to the chunk flagged final, nothing after it, the sealed
/// manifest, and the compressed size it records. The tags prove every byte is what the
/// writer wrote; the plaintext SHA-256 is then checked while the dump is used
/// ([`stream_file`]). Returns the open file so the second pass reads the same file.
pub fn authenticate(
    path: &Path,
    keys: &[KeyMaterial],
    progress: &dyn Progress,
) -> Result<(Opened, File), Failure> {
    let (f, file_bytes) = open_file(path)?;
    let mut reader = open_reader(&f, path, keys, progress)?;
    let header = reader.header.clone();
    let slot = reader.slot;
    let mut buf = vec![0u8; super::format::DEFAULT_CHUNK as usize];
    let mut payload = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => payload += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FormatError::from_io(e, "cannot read the backup").into()),
        }
    }
    let trailer = reader.finish()?;
    let manifest: Manifest = serde_json::from_slice(&trailer)
        .map_err(|e| mismatch(format!("the sealed manifest is not valid: {e}")))?;
    if payload != manifest.compressed_bytes {
        return Err(mismatch(format!(
            "the payload has {payload} bytes, the manifest recorded {}",
            manifest.compressed_bytes
        )));
    }
    Ok((
        Opened {
            manifest,
            header,
            slot,
            file_bytes,
        },
        f,
    ))
}

/// The result of `backup verify`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub id: Option<String>,
    pub database: Option<String>,
    pub ok: bool,
    pub failure: Option<Failure>,
    pub tables: usize,
    pub rows: i64,
    pub dump_bytes: u64,
    pub archive_entries: usize,
    pub opened_with_key_id: Option<String>,
    /// The key ids the file's header holds (when it could be read).
    pub key_ids: Vec<String>,
    /// False when no summary lies beside the file (a copied file): nothing to compare.
    pub summary_checked: bool,
}

/// Verifies a backup file: crypto, manifest, summary, and `pg_restore --list`.
pub fn verify(path: &Path, keys: &[KeyMaterial], progress: &dyn Progress) -> Report {
    let summary = repo::read_summary(path).ok();
    let mut report = Report {
        id: summary.as_ref().map(|s| s.id.clone()),
        database: summary.as_ref().map(|s| s.database.clone()),
        ok: false,
        failure: None,
        tables: 0,
        rows: 0,
        dump_bytes: 0,
        archive_entries: 0,
        opened_with_key_id: None,
        key_ids: Vec::new(),
        summary_checked: false,
    };
    match verify_inner(path, keys, summary.as_ref(), progress, &mut report) {
        Ok(()) => report.ok = true,
        Err(f) => {
            if f.kind == "wrong_key" {
                // No key opened it: its slots' ids tell which key would.
                report.key_ids = File::open(path)
                    .ok()
                    .and_then(|f| Header::read(&mut BufReader::new(f)).ok())
                    .map(|(h, _)| h.key_ids())
                    .unwrap_or_default();
            }
            report.failure = Some(f);
        }
    }
    report
}

fn server_major_of(s: &str) -> u32 {
    pgdump::parse_version(&format!("x {s}"))
        .map(|v| v.0)
        .unwrap_or(0)
}

fn verify_inner(
    path: &Path,
    keys: &[KeyMaterial],
    summary: Option<&Summary>,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<(), Failure> {
    let major = summary
        .map(|s| server_major_of(&s.server_version))
        .unwrap_or(0);
    let tools = pgdump::find(major)?;
    let mut child = crate::childenv::command(&tools.pg_restore)
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure {
            kind: "error",
            message: format!("cannot run {}: {e}", tools.pg_restore.display()),
        })?;
    let mut stdin = Some(child.stdin.take().expect("piped"));
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut n = 0usize;
        let mut s = String::new();
        let _ = BufReader::new(out).read_to_string(&mut s);
        for l in s.lines() {
            if !l.starts_with(';') && !l.trim().is_empty() {
                n += 1;
            }
        }
        n
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(err).take(64 * 1024).read_to_string(&mut s);
        s
    });
    let mut sink = |b: &[u8]| -> std::io::Result<()> {
        if let Some(w) = stdin.as_mut() {
            if w.write_all(b).is_err() {
                // pg_restore --list stops reading after the table of contents.
                stdin = None;
            }
        }
        Ok(())
    };
    let opened = stream(path, keys, &mut sink, progress);
    drop(stdin);
    let status = child.wait();
    let entries = out_t.join().unwrap_or(0);
    let err_text = err_t.join().unwrap_or_default();
    let opened = opened?;
    let m = &opened.manifest;
    report.id = Some(m.id.clone());
    report.database = Some(m.database.clone());
    report.tables = m.tables.len();
    report.rows = m.total_rows();
    report.dump_bytes = m.dump_bytes;
    report.archive_entries = entries;
    report.opened_with_key_id = opened.header.slots.get(opened.slot).map(|s| s.key_id_hex());
    report.key_ids = opened.header.key_ids();
    match status {
        Ok(s) if s.success() && entries > 0 => {}
        Ok(_) | Err(_) => {
            return Err(Failure {
                kind: "archive",
                message: format!(
                    "the payload is not a complete pg_dump archive: {}",
                    pgdump::explain_stderr("pg_restore --list", &err_text)
                ),
            })
        }
    }
    match summary {
        None => {
            report.summary_checked = false;
        }
        Some(s) => {
            let mut d = s.mismatches(m);
            if s.key_ids != opened.header.key_ids() {
                d.push(format!(
                    "key ids: summary says {:?}, the header holds {:?}",
                    s.key_ids,
                    opened.header.key_ids()
                ));
            }
            let codec = Codec::from_backup_content(&opened.header.content).unwrap_or(Codec::Gzip);
            if s.compression != codec {
                d.push(format!(
                    "compression: summary says {}, the header says {}",
                    s.compression.name(),
                    codec.name()
                ));
            }
            report.summary_checked = true;
            if !d.is_empty() {
                return Err(mismatch(format!(
                    "the plaintext summary disagrees with the sealed manifest: {}",
                    d.join("; ")
                )));
            }
        }
    }
    Ok(())
}
