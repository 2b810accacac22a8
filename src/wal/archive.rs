//! `wal push` and `wal fetch`: one WAL file sealed into the repository (compressed,
//! encrypted, committed only when durable), and one sealed file authenticated and
//! written back where PostgreSQL asks for it. No database connection.

use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{check_segment, key, load_info, ArchiveInfo, WalName, INFO_KEY};
use crate::backup::compress::{Codec, Compression};
use crate::backup::keys::KeyMaterial;
use crate::error::Error;
use crate::storage::{sealed, Repository};

/// The content label of a sealed WAL file: this prefix, then the codec's name.
const CONTENT_PREFIX: &str = "opsctl-wal ";

/// What is sealed after a WAL file's bytes (authenticated with them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trailer {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub system_identifier: String,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// Sealed and committed: stored bytes.
    Archived { key: String, stored: u64, size: u64 },
    /// Already there with the same content (PostgreSQL re-archives after a crash).
    AlreadyArchived { key: String },
}

fn codec_of(label: &str) -> Option<Codec> {
    match label.strip_prefix(CONTENT_PREFIX)? {
        "zstd" => Some(Codec::Zstd),
        "gzip" => Some(Codec::Gzip),
        "none" => Some(Codec::None),
        _ => None,
    }
}

/// The system identifier and segment size of the first readable segment in a pg_wal
/// directory.
fn cluster_of_wal_dir(dir: &Path) -> Option<(u64, u32)> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| matches!(WalName::parse(n), Some(WalName::Segment(_))))
        .collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let mut head = [0u8; super::LONG_HEADER_LEN];
        let mut f = std::fs::File::open(dir.join(&n)).ok()?;
        f.read_exact(&mut head).ok()?;
        let h = super::read_header(&head).ok()?;
        Some((h.system_id, h.seg_size))
    })
}

/// Archives one WAL file (`archive_command = 'opsctl wal push %p'`).
pub fn push(
    repo: &Repository,
    keys: &[KeyMaterial],
    compression: Compression,
    path: &Path,
) -> Result<Pushed, Error> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = WalName::parse(&file_name).ok_or_else(|| {
        Error::Config(format!(
            "{} is not a WAL segment, .partial, .history or .backup file name; archive_command passes %p",
            path.display()
        ))
    })?;
    let bytes =
        std::fs::read(path).map_err(Error::io(format!("cannot read {}", path.display())))?;
    let info = load_info(repo)?;

    let (system_id, seg_size) = match &name {
        WalName::Segment(seg) | WalName::Partial(seg) => {
            let h = check_segment(seg, &bytes).map_err(|why| {
                Error::Verify(format!(
                    "{} is not a WAL segment that can be archived: {why}",
                    path.display()
                ))
            })?;
            (h.system_id, Some(h.seg_size))
        }
        // `.history` and `.backup` files have no page header: the archive's cluster, or
        // (PostgreSQL archives history files first, so one may open a new archive) the
        // cluster of the segments beside it in pg_wal.
        _ => match &info {
            Some(i) => (i.system_id()?, None),
            None => match cluster_of_wal_dir(path.parent().unwrap_or(Path::new("."))) {
                Some((id, size)) => (id, Some(size)),
                None => {
                    return Err(Error::Other(format!(
                        "the WAL archive in repository {} is empty and no WAL segment beside                          {file_name} tells which cluster it belongs to: archive a WAL segment first",
                        repo.display()
                    )))
                }
            },
        },
    };

    match &info {
        Some(info) => {
            let archived = info.system_id()?;
            if archived != system_id {
                return Err(Error::Verify(format!(
                    "{file_name} belongs to the cluster with system identifier {system_id}, but the WAL \
                     archive in repository {} belongs to cluster {archived}; refusing to mix two \
                     clusters' WAL: give this cluster a repository of its own (--repo or the policy)",
                    repo.display()
                )));
            }
        }
        None => {
            let seg_size = seg_size.expect("known when the archive is empty");
            let info = ArchiveInfo {
                format: 1,
                system_identifier: system_id.to_string(),
                wal_segment_size: seg_size,
                created: chrono::Utc::now(),
            };
            let text = serde_json::to_vec_pretty(&info).expect("archive info serialises");
            repo.put(INFO_KEY, &text)?;
        }
    }

    let key = key(system_id, &name);
    let digest = hex::encode(Sha256::digest(&bytes));
    if repo.exists(&key)? {
        return match archived_digest(repo, keys, &key) {
            Ok(d) if d == digest => Ok(Pushed::AlreadyArchived { key }),
            Ok(_) => Err(Error::Verify(format!(
                "{file_name} is already archived in repository {} with different content; the \
                 archived copy is kept (never overwritten). Find out why this server wrote a \
                 different {file_name} (two servers archiving to one repository? a restored \
                 cluster that did not switch timeline?)",
                repo.display()
            ))),
            Err(e) => Err(Error::Verify(format!(
                "{file_name} is already archived in repository {} but the archived copy cannot be \
                 read ({e}); it is kept (never overwritten)",
                repo.display()
            ))),
        };
    }

    let trailer = Trailer {
        name: file_name.clone(),
        size: bytes.len() as u64,
        sha256: digest,
        system_identifier: system_id.to_string(),
    };
    let label = format!("{CONTENT_PREFIX}{}", compression.codec.name());
    let mut w = sealed::SealedWriter::create(repo, &key, keys, &label, compression)?;
    if let Err(e) = w.write_all(&bytes) {
        w.abort();
        return Err(Error::io(format!("cannot seal {file_name}"))(e));
    }
    let stored = w.finish(&serde_json::to_vec(&trailer).expect("trailer serialises"))?;
    Ok(Pushed::Archived {
        key,
        stored,
        size: bytes.len() as u64,
    })
}

/// The SHA-256 of an archived file's content (the whole file authenticated).
fn archived_digest(repo: &Repository, keys: &[KeyMaterial], key: &str) -> Result<String, Error> {
    let mut h = Sha256::new();
    let trailer = read_sealed(repo, keys, key, |chunk| {
        h.update(chunk);
        Ok(())
    })?;
    let got = hex::encode(h.finalize());
    if got != trailer.sha256 {
        return Err(Error::Verify(format!(
            "{key}: the content does not match the checksum sealed with it"
        )));
    }
    Ok(got)
}

/// Streams an archived file's plaintext to `each` and returns its sealed trailer; every
/// byte is authenticated, and the size checked, before it returns Ok.
pub fn read_sealed(
    repo: &Repository,
    keys: &[KeyMaterial],
    key: &str,
    mut each: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<Trailer, Error> {
    let opened = sealed::open(repo, key, keys)?;
    let codec = codec_of(&opened.header.content).ok_or_else(|| {
        Error::Verify(format!(
            "{key} is not a WAL file sealed by opsctl (content {:?})",
            opened.header.content
        ))
    })?;
    let mut dec = sealed::decompress(opened, codec)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(key, e)),
        };
        total += n as u64;
        each(&buf[..n])?;
    }
    let raw = sealed::finish(dec).map_err(|e| match e {
        Error::Io { source, .. } => read_error(key, source),
        other => other,
    })?;
    let trailer: Trailer = serde_json::from_slice(&raw)
        .map_err(|e| Error::Verify(format!("{key}: the sealed trailer is not valid ({e})")))?;
    if trailer.size != total {
        return Err(Error::Verify(format!(
            "{key}: {total} bytes decrypted but {} were archived",
            trailer.size
        )));
    }
    Ok(trailer)
}

/// An error while reading a sealed stream: tampering (authentication) is a verify error,
/// whatever layer reports it.
fn read_error(key: &str, e: std::io::Error) -> Error {
    if let Some(f) = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<crate::backup::format::FormatError>())
    {
        if f.kind() != "io" {
            return Error::Verify(format!("{key}: {f}"));
        }
    }
    if matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    ) {
        return Error::Verify(format!("{key}: {e}"));
    }
    Error::io(format!("cannot read {key}"))(e)
}

/// Why a fetch did not deliver the file.
#[derive(Debug)]
pub enum FetchError {
    /// The archive does not have it (PostgreSQL probes for such files): exit 1 quietly.
    Missing,
    /// It is there but cannot be delivered intact, or opsctl cannot work at all (no key,
    /// unreadable repository): recovery must stop.
    Fatal(Error),
}

impl From<Error> for FetchError {
    fn from(e: Error) -> Self {
        FetchError::Fatal(e)
    }
}

/// Restores one archived file to `dest` (`restore_command = 'opsctl wal fetch %f %p'`):
/// written to a temporary file beside it, authenticated whole and checked against its
/// sealed checksum, then renamed into place.
pub fn fetch(
    repo: &Repository,
    keys: &[KeyMaterial],
    name: &str,
    dest: &Path,
) -> Result<u64, FetchError> {
    let Some(wal) = WalName::parse(name) else {
        return Err(FetchError::Missing);
    };
    let Some(info) = load_info(repo)? else {
        return Err(FetchError::Missing);
    };
    let system_id = info.system_id()?;
    let key = key(system_id, &wal);
    if !repo.exists(&key)? {
        return Err(FetchError::Missing);
    }
    let tmp = crate::fsutil::TempFile::create(dest, 0o600)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.try_clone()?);
    let mut h = Sha256::new();
    let mut head = Vec::with_capacity(super::LONG_HEADER_LEN);
    let trailer = read_sealed(repo, keys, &key, |chunk| {
        h.update(chunk);
        if head.len() < super::LONG_HEADER_LEN {
            let take = (super::LONG_HEADER_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        out.write_all(chunk)
            .map_err(Error::io(format!("cannot write {}", dest.display())))
    })?;
    let digest = hex::encode(h.finalize());
    if digest != trailer.sha256 || trailer.name != name {
        return Err(FetchError::Fatal(Error::Verify(format!(
            "{key}: the content does not match the name and checksum sealed with it"
        ))));
    }
    if wal.has_page_header() {
        let h = super::read_header(&head).map_err(|why| {
            Error::Verify(format!(
                "{key}: the decrypted file is not a WAL segment: {why}"
            ))
        })?;
        if h.system_id != system_id {
            return Err(FetchError::Fatal(Error::Verify(format!(
                "{key}: the segment belongs to cluster {}, not {system_id}",
                h.system_id
            ))));
        }
    }
    let f = out
        .into_inner()
        .map_err(|e| Error::io(format!("cannot write {}", dest.display()))(e.into_error()))?;
    drop(f);
    tmp.persist()?;
    Ok(trailer.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_file_opens_an_empty_archive_with_the_cluster_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::local("local", &dir.path().join("repo"));
        let keys = vec![KeyMaterial::Key(zeroize::Zeroizing::new([7u8; 32]))];
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir(&wal).unwrap();
        let hist = wal.join("00000002.history");
        std::fs::write(&hist, "1\t0/3000060\tno recovery target specified\n").unwrap();
        let e = push(&repo, &keys, Compression::default(), &hist).unwrap_err();
        assert!(e.to_string().contains("archive a WAL segment first"), "{e}");
        let mut seg = vec![0u8; 1 << 20];
        seg[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        seg[2..4].copy_from_slice(&2u16.to_le_bytes());
        seg[8..16].copy_from_slice(&(3u64 << 20).to_le_bytes());
        seg[24..32].copy_from_slice(&42u64.to_le_bytes());
        seg[32..36].copy_from_slice(&(1u32 << 20).to_le_bytes());
        std::fs::write(wal.join("000000020000000000000003"), &seg).unwrap();
        assert!(matches!(
            push(&repo, &keys, Compression::default(), &hist).unwrap(),
            Pushed::Archived { .. }
        ));
        assert!(repo.exists("wal/42/00000002/00000002.history").unwrap());
        let seg_path = wal.join("000000020000000000000003");
        push(&repo, &keys, Compression::default(), &seg_path).unwrap();
        let out = dir.path().join("back");
        fetch(&repo, &keys, "000000020000000000000003", &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), seg);
        assert!(matches!(
            fetch(&repo, &keys, "000000020000000000000004", &out),
            Err(FetchError::Missing)
        ));
    }

    #[test]
    fn codec_labels() {
        for c in [Codec::Zstd, Codec::Gzip, Codec::None] {
            assert_eq!(codec_of(&format!("{CONTENT_PREFIX}{}", c.name())), Some(c));
        }
        assert_eq!(codec_of("opsctl backup zstd"), None);
    }
}
