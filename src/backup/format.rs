//! The encrypted container (see docs/backup-format.md): a versioned header, a random data
//! key wrapped (AES-256-GCM) by one or more key-encryption keys, then the body as chunked
//! AES-256-GCM in the STREAM construction, ending with an authenticated trailer.
//!
//! Pure code over `Read`/`Write`, reusable for any byte stream:
//! `Writer::new(out, &keys, "content")` → `write_all(..)` → `finish(trailer)`, and
//! `Reader::open(input, &keys)` → `read(..)` until 0 → `finish()` → trailer.

use std::io::{self, Read, Write};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keys::{key_id, key_id_hex, KeyMaterial, KEY_LEN};

pub const MAGIC: &[u8; 8] = b"OPSCTLBK";
pub const VERSION: u8 = 1;
/// Plaintext bytes per chunk.
pub const DEFAULT_CHUNK: u32 = 64 * 1024;
const TAG_LEN: usize = 16;
const MAX_SLOTS: usize = 32;
const KIND_DATA: u8 = b'D';
const KIND_TRAILER: u8 = b'T';
const SLOT_KEY: u8 = 1;
const SLOT_PASSPHRASE: u8 = 2;

/// Argon2id parameters written for new passphrase slots: 64 MiB, 3 passes, 1 lane (above
/// OWASP's minimum of 19 MiB, t=2, which files written before still use).
pub const ARGON_M_KIB: u32 = 64 * 1024;
pub const ARGON_T: u32 = 3;
pub const ARGON_P: u32 = 1;
/// The most a header may ask for (1 GiB, t=16, p=16): more is refused as corrupt while
/// the header is read, before any memory is allocated or any key is derived.
pub const ARGON_MAX_M_KIB: u32 = 1024 * 1024;
pub const ARGON_MAX_T: u32 = 16;
pub const ARGON_MAX_P: u32 = 16;

/// Why a container could not be opened or read. The first words name the class.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("wrong key: {0}")]
    WrongKey(String),
    #[error("header corrupted: {0}")]
    HeaderCorrupted(String),
    #[error("unsupported format: {0}")]
    Unsupported(String),
    #[error("chunk {index} failed authentication{what} (at byte {offset}): the backup is corrupted or was tampered with")]
    ChunkAuth {
        index: u32,
        offset: u64,
        what: &'static str,
    },
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("trailing data: {bytes} unexpected byte(s) after the final chunk at byte {offset}")]
    TrailingData { offset: u64, bytes: u64 },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl FormatError {
    /// A short machine-readable class: wrong_key, header_corrupted, chunk_auth, truncated, ...
    pub fn kind(&self) -> &'static str {
        match self {
            FormatError::WrongKey(_) => "wrong_key",
            FormatError::HeaderCorrupted(_) => "header_corrupted",
            FormatError::Unsupported(_) => "unsupported",
            FormatError::ChunkAuth { .. } => "chunk_auth",
            FormatError::Truncated(_) => "truncated",
            FormatError::TrailingData { .. } => "trailing_data",
            FormatError::Io { .. } => "io",
        }
    }

    /// Wraps into an `io::Error` to travel through `Read` adapters (gzip).
    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// Recovers a `FormatError` that travelled through an `io::Error`.
    pub fn from_io(e: io::Error, context: &str) -> FormatError {
        if e.get_ref().is_some_and(|r| r.is::<FormatError>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(f) = inner.downcast::<FormatError>() {
                    return *f;
                }
            }
            unreachable!()
        }
        FormatError::Io {
            context: context.to_string(),
            source: e,
        }
    }
}

impl From<FormatError> for crate::error::Error {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Io { context, source } => crate::error::Error::Io { context, source },
            other => crate::error::Error::Verify(other.to_string()),
        }
    }
}

/// Argon2id parameters and salt of a passphrase slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgonParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    pub salt: [u8; 16],
}

/// One wrapped copy of the data key.
#[derive(Debug, Clone)]
pub struct Slot {
    pub key_id: [u8; 8],
    pub argon: Option<ArgonParams>,
    nonce: [u8; 12],
    wrapped: [u8; KEY_LEN + TAG_LEN],
}

impl Slot {
    pub fn key_id_hex(&self) -> String {
        key_id_hex(&self.key_id)
    }
    /// "key" or "passphrase".
    pub fn kind(&self) -> &'static str {
        if self.argon.is_some() {
            "passphrase"
        } else {
            "key"
        }
    }
    /// The bytes authenticated with the wrapped key (besides the fixed header).
    fn descriptor(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(40);
        match &self.argon {
            None => {
                d.push(SLOT_KEY);
                d.extend_from_slice(&self.key_id);
            }
            Some(a) => {
                d.push(SLOT_PASSPHRASE);
                d.extend_from_slice(&self.key_id);
                d.extend_from_slice(&a.m_kib.to_be_bytes());
                d.extend_from_slice(&a.t.to_be_bytes());
                d.extend_from_slice(&a.p.to_be_bytes());
                d.extend_from_slice(&a.salt);
            }
        }
        d
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.descriptor());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.wrapped);
    }
}

/// The parsed header.
#[derive(Debug, Clone)]
pub struct Header {
    pub version: u8,
    pub chunk_size: u32,
    pub nonce_prefix: [u8; 7],
    pub file_id: [u8; 16],
    /// What the body holds, e.g. "pg_dump-custom+zstd".
    pub content: String,
    pub slots: Vec<Slot>,
}

impl Header {
    /// The fixed part: authenticated as associated data of every chunk and every slot.
    fn fixed(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64);
        f.extend_from_slice(MAGIC);
        f.push(self.version);
        f.extend_from_slice(&self.chunk_size.to_be_bytes());
        f.extend_from_slice(&self.nonce_prefix);
        f.extend_from_slice(&self.file_id);
        f.push(self.content.len() as u8);
        f.extend_from_slice(self.content.as_bytes());
        f
    }

    /// The whole header as written: fixed part, slots, SHA-256 of everything before.
    pub fn encode(&self) -> Vec<u8> {
        let mut h = self.fixed();
        h.push(self.slots.len() as u8);
        for s in &self.slots {
            s.encode(&mut h);
        }
        let sum = Sha256::digest(&h);
        h.extend_from_slice(&sum);
        h
    }

    pub fn key_ids(&self) -> Vec<String> {
        self.slots.iter().map(Slot::key_id_hex).collect()
    }

    pub fn file_id_hex(&self) -> String {
        hex::encode(self.file_id)
    }

    /// Reads and checks a header (structure and checksum; not the key slots' tags).
    pub fn read(inp: &mut impl Read) -> Result<(Header, u64), FormatError> {
        let mut raw = Vec::with_capacity(256);
        let mut take = |n: usize, raw: &mut Vec<u8>| -> Result<(), FormatError> {
            let start = raw.len();
            raw.resize(start + n, 0);
            read_exact_or(inp, &mut raw[start..], || {
                FormatError::Truncated(format!(
                    "the file ends inside the header (after {start} bytes)"
                ))
            })
        };
        take(8, &mut raw)?;
        if &raw[..8] != MAGIC {
            return Err(FormatError::HeaderCorrupted(
                "bad magic bytes: this is not an opsctl backup file, or its first bytes are damaged"
                    .into(),
            ));
        }
        take(1 + 4 + 7 + 16 + 1, &mut raw)?;
        let version = raw[8];
        let chunk_size = u32::from_be_bytes(raw[9..13].try_into().unwrap());
        let mut nonce_prefix = [0u8; 7];
        nonce_prefix.copy_from_slice(&raw[13..20]);
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&raw[20..36]);
        let clen = raw[36] as usize;
        take(clen + 1, &mut raw)?;
        let content_bytes = raw[37..37 + clen].to_vec();
        let nslots = raw[37 + clen] as usize;
        let mut slots = Vec::new();
        let mut bad_struct: Option<String> = None;
        if nslots > MAX_SLOTS {
            bad_struct = Some(format!("{nslots} key slots (at most {MAX_SLOTS})"));
        } else {
            for _ in 0..nslots {
                take(1 + 8, &mut raw)?;
                let at = raw.len() - 9;
                let kind = raw[at];
                let mut key_id = [0u8; 8];
                key_id.copy_from_slice(&raw[at + 1..at + 9]);
                let argon = match kind {
                    SLOT_KEY => None,
                    SLOT_PASSPHRASE => {
                        take(12 + 16, &mut raw)?;
                        let b = &raw[raw.len() - 28..];
                        let mut salt = [0u8; 16];
                        salt.copy_from_slice(&b[12..28]);
                        Some(ArgonParams {
                            m_kib: u32::from_be_bytes(b[0..4].try_into().unwrap()),
                            t: u32::from_be_bytes(b[4..8].try_into().unwrap()),
                            p: u32::from_be_bytes(b[8..12].try_into().unwrap()),
                            salt,
                        })
                    }
                    other => {
                        bad_struct = Some(format!("unknown key slot kind {other}"));
                        break;
                    }
                };
                take(12 + KEY_LEN + TAG_LEN, &mut raw)?;
                let b = &raw[raw.len() - (12 + KEY_LEN + TAG_LEN)..];
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(&b[..12]);
                let mut wrapped = [0u8; KEY_LEN + TAG_LEN];
                wrapped.copy_from_slice(&b[12..]);
                slots.push(Slot {
                    key_id,
                    argon,
                    nonce,
                    wrapped,
                });
            }
        }
        if let Some(why) = bad_struct {
            return Err(FormatError::HeaderCorrupted(why));
        }
        let body_len = raw.len();
        take(32, &mut raw)?;
        let (body, sum) = raw.split_at(body_len);
        if Sha256::digest(body).as_slice() != sum {
            return Err(FormatError::HeaderCorrupted(
                "header checksum mismatch: the header was damaged".into(),
            ));
        }
        if version != VERSION {
            return Err(FormatError::Unsupported(format!(
                "container version {version}; this opsctl reads version {VERSION}: use a newer opsctl"
            )));
        }
        if chunk_size == 0 || chunk_size > 16 * 1024 * 1024 {
            return Err(FormatError::HeaderCorrupted(format!(
                "impossible chunk size {chunk_size}"
            )));
        }
        let content = String::from_utf8(content_bytes)
            .map_err(|_| FormatError::HeaderCorrupted("content label is not UTF-8".into()))?;
        if slots.is_empty() {
            return Err(FormatError::HeaderCorrupted("no key slots".into()));
        }
        for (i, a) in slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.argon?)))
        {
            argon_params(&a)
                .map_err(|why| FormatError::HeaderCorrupted(format!("key slot {i}: {why}")))?;
        }
        Ok((
            Header {
                version,
                chunk_size,
                nonce_prefix,
                file_id,
                content,
                slots,
            },
            raw.len() as u64,
        ))
    }
}

fn read_exact_or(
    inp: &mut impl Read,
    buf: &mut [u8],
    eof: impl FnOnce() -> FormatError,
) -> Result<(), FormatError> {
    let mut filled = 0;
    while filled < buf.len() {
        match inp.read(&mut buf[filled..]) {
            Ok(0) => return Err(eof()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FormatError::from_io(e, "cannot read the backup")),
        }
    }
    Ok(())
}

/// Reads as many bytes as available up to `buf.len()`; returns the count (0 = EOF).
fn read_full(inp: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match inp.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Checks a slot's Argon2id parameters against the bounds (and Argon2's own rules)
/// without doing any work.
fn argon_params(a: &ArgonParams) -> Result<argon2::Params, String> {
    if a.m_kib > ARGON_MAX_M_KIB || a.t > ARGON_MAX_T || a.p > ARGON_MAX_P {
        return Err(format!(
            "implausible Argon2id parameters m={} KiB t={} p={} (at most {} KiB, t={}, p={}): \
             the header is damaged or crafted",
            a.m_kib, a.t, a.p, ARGON_MAX_M_KIB, ARGON_MAX_T, ARGON_MAX_P
        ));
    }
    argon2::Params::new(a.m_kib, a.t, a.p, Some(KEY_LEN)).map_err(|e| {
        format!(
            "bad Argon2id parameters m={} KiB t={} p={}: {e}",
            a.m_kib, a.t, a.p
        )
    })
}

fn derive_passphrase(pass: &str, a: &ArgonParams) -> Result<Zeroizing<[u8; KEY_LEN]>, FormatError> {
    let params = argon_params(a).map_err(FormatError::HeaderCorrupted)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(pass.as_bytes(), &a.salt, out.as_mut())
        .map_err(|e| FormatError::HeaderCorrupted(format!("Argon2id failed: {e}")))?;
    Ok(out)
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn wrap_aad(fixed: &[u8], descriptor: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(fixed.len() + descriptor.len() + 16);
    aad.extend_from_slice(b"opsctl key slot\0");
    aad.extend_from_slice(fixed);
    aad.extend_from_slice(descriptor);
    aad
}

/// Argon2id cost of new passphrase slots: memory (KiB), passes, lanes.
type ArgonCost = (u32, u32, u32);
const NEW_SLOT_COST: ArgonCost = (ARGON_M_KIB, ARGON_T, ARGON_P);

/// Wraps `dek` for one key-encryption key source, bound to the fixed header.
fn make_slot(
    fixed: &[u8],
    dek: &[u8; KEY_LEN],
    km: &KeyMaterial,
    (m_kib, t, p): ArgonCost,
) -> Result<Slot, FormatError> {
    let (kek, argon) = match km {
        KeyMaterial::Key(k) => (Zeroizing::new(**k), None),
        KeyMaterial::Passphrase(pass) => {
            let a = ArgonParams {
                m_kib,
                t,
                p,
                salt: random(),
            };
            (derive_passphrase(pass, &a)?, Some(a))
        }
    };
    let mut slot = Slot {
        key_id: key_id(&kek),
        argon,
        nonce: random(),
        wrapped: [0u8; KEY_LEN + TAG_LEN],
    };
    let cipher = Aes256Gcm::new_from_slice(kek.as_ref()).expect("32-byte key");
    let mut buf = Zeroizing::new(*dek);
    let tag = cipher
        .encrypt_in_place_detached(
            Nonce::from_slice(&slot.nonce),
            &wrap_aad(fixed, &slot.descriptor()),
            buf.as_mut(),
        )
        .map_err(|_| FormatError::HeaderCorrupted("cannot wrap the data key".into()))?;
    slot.wrapped[..KEY_LEN].copy_from_slice(buf.as_ref());
    slot.wrapped[KEY_LEN..].copy_from_slice(&tag);
    Ok(slot)
}

/// Unwraps the data key with the first key source that has a slot.
fn unwrap_dek(
    header: &Header,
    keys: &[KeyMaterial],
) -> Result<(Zeroizing<[u8; KEY_LEN]>, usize), FormatError> {
    let fixed = header.fixed();
    let mut tried = Vec::new();
    for km in keys {
        for (i, slot) in header.slots.iter().enumerate() {
            let kek = match (km, &slot.argon) {
                (KeyMaterial::Key(k), None) => {
                    if key_id(k) != slot.key_id {
                        continue;
                    }
                    Zeroizing::new(**k)
                }
                (KeyMaterial::Passphrase(p), Some(a)) => {
                    let kek = derive_passphrase(p, a)?;
                    if key_id(&kek) != slot.key_id {
                        continue;
                    }
                    kek
                }
                _ => continue,
            };
            let cipher = Aes256Gcm::new_from_slice(kek.as_ref()).expect("32-byte key");
            let mut dek = Zeroizing::new([0u8; KEY_LEN]);
            dek.copy_from_slice(&slot.wrapped[..KEY_LEN]);
            cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(&slot.nonce),
                    &wrap_aad(&fixed, &slot.descriptor()),
                    dek.as_mut(),
                    Tag::from_slice(&slot.wrapped[KEY_LEN..]),
                )
                .map_err(|_| {
                    FormatError::HeaderCorrupted(format!(
                        "key slot {i} (key id {}) failed authentication although the key id \
                         matches",
                        slot.key_id_hex()
                    ))
                })?;
            return Ok((dek, i));
        }
        tried.push(match km {
            KeyMaterial::Key(k) => format!("key file with key id {}", key_id_hex(&key_id(k))),
            KeyMaterial::Passphrase(_) => "the passphrase".to_string(),
        });
    }
    let have: Vec<String> = header
        .slots
        .iter()
        .map(|s| format!("{} {}", s.kind(), s.key_id_hex()))
        .collect();
    Err(FormatError::WrongKey(format!(
        "this backup opens with {}; you gave {}",
        have.join(", "),
        tried.join(" and ")
    )))
}

fn nonce_for(prefix: &[u8; 7], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = last as u8;
    n
}

fn chunk_aad(fixed: &[u8], kind: u8) -> Vec<u8> {
    let mut a = fixed.to_vec();
    a.push(kind);
    a
}

/// Encrypts a byte stream into the container. Call [`Writer::finish`]: dropping a
/// writer leaves an incomplete file that every reader rejects as truncated.
pub struct Writer<W: Write> {
    out: W,
    header: Header,
    cipher: Aes256Gcm,
    fixed: Vec<u8>,
    counter: u32,
    buf: Vec<u8>,
    chunk: usize,
    written: u64,
    plaintext: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the header for a fresh random data key wrapped by each of `keys`.
    pub fn new(out: W, keys: &[KeyMaterial], content: &str) -> Result<Self, FormatError> {
        Self::with_chunk_size(out, keys, content, DEFAULT_CHUNK)
    }

    pub fn with_chunk_size(
        out: W,
        keys: &[KeyMaterial],
        content: &str,
        chunk_size: u32,
    ) -> Result<Self, FormatError> {
        Self::start(out, keys, content, chunk_size, NEW_SLOT_COST)
    }

    fn start(
        mut out: W,
        keys: &[KeyMaterial],
        content: &str,
        chunk_size: u32,
        cost: ArgonCost,
    ) -> Result<Self, FormatError> {
        assert!(!keys.is_empty(), "at least one key");
        assert!(content.len() < 256 && chunk_size > 0 && chunk_size <= 16 << 20);
        let mut header = Header {
            version: VERSION,
            chunk_size,
            nonce_prefix: random(),
            file_id: random(),
            content: content.to_string(),
            slots: Vec::new(),
        };
        let fixed = header.fixed();
        let dek: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(random());
        for km in keys {
            header.slots.push(make_slot(&fixed, &dek, km, cost)?);
        }
        let bytes = header.encode();
        out.write_all(&bytes).map_err(|e| FormatError::Io {
            context: "cannot write the backup header".into(),
            source: e,
        })?;
        let cipher = Aes256Gcm::new_from_slice(dek.as_ref()).expect("32-byte key");
        Ok(Writer {
            out,
            cipher,
            fixed,
            counter: 0,
            buf: Vec::with_capacity(chunk_size as usize + TAG_LEN),
            chunk: chunk_size as usize,
            written: bytes.len() as u64,
            plaintext: 0,
            header,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written to `out` so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    fn emit(&mut self, kind: u8, last: bool) -> io::Result<()> {
        let nonce = nonce_for(&self.header.nonce_prefix, self.counter, last);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &chunk_aad(&self.fixed, kind),
                &mut self.buf,
            )
            .map_err(|_| io::Error::other("encryption failed"))?;
        let len = (self.buf.len() + TAG_LEN) as u32;
        let mut rec = [0u8; 6];
        rec[0] = kind;
        rec[1] = last as u8;
        rec[2..6].copy_from_slice(&len.to_be_bytes());
        self.out.write_all(&rec)?;
        self.out.write_all(&self.buf)?;
        self.out.write_all(&tag)?;
        self.written += 6 + len as u64;
        self.buf.clear();
        self.counter = self.counter.checked_add(1).ok_or_else(|| {
            io::Error::other("too many chunks for one container (2^32); split the stream")
        })?;
        Ok(())
    }

    /// Seals the data stream, writes `trailer` (authenticated, e.g. a manifest) as the
    /// final chunk(s), flushes, and returns the output and the total bytes written.
    pub fn finish(mut self, trailer: &[u8]) -> Result<(W, u64), FormatError> {
        let wrap = |e| FormatError::Io {
            context: "cannot write the backup".into(),
            source: e,
        };
        if !self.buf.is_empty() {
            self.emit(KIND_DATA, false).map_err(wrap)?;
        }
        let mut parts: Vec<&[u8]> = trailer.chunks(self.chunk).collect();
        if parts.is_empty() {
            parts.push(&[]);
        }
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            self.buf.extend_from_slice(p);
            self.emit(KIND_TRAILER, i + 1 == n).map_err(wrap)?;
        }
        self.out.flush().map_err(wrap)?;
        Ok((self.out, self.written))
    }

    /// Plaintext bytes accepted so far.
    pub fn plaintext_bytes(&self) -> u64 {
        self.plaintext
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.plaintext += n as u64;
        if self.buf.len() == self.chunk {
            self.emit(KIND_DATA, false)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

enum Phase {
    Data,
    Trailer { last_seen: bool },
}

/// Decrypts a container. `Read` yields the data stream; [`Reader::finish`] then reads
/// the trailer and checks that nothing follows the final chunk.
pub struct Reader<R: Read> {
    inp: R,
    pub header: Header,
    /// Index of the key slot that opened the file.
    pub slot: usize,
    cipher: Aes256Gcm,
    fixed: Vec<u8>,
    counter: u32,
    buf: Vec<u8>,
    pos: usize,
    phase: Phase,
    trailer: Vec<u8>,
    offset: u64,
}

impl<R: Read> Reader<R> {
    /// Reads the header and unwraps the data key with one of `keys`.
    pub fn open(mut inp: R, keys: &[KeyMaterial]) -> Result<Self, FormatError> {
        let (header, len) = Header::read(&mut inp)?;
        let (dek, slot) = unwrap_dek(&header, keys)?;
        let cipher = Aes256Gcm::new_from_slice(dek.as_ref()).expect("32-byte key");
        Ok(Reader {
            inp,
            fixed: header.fixed(),
            header,
            slot,
            cipher,
            counter: 0,
            buf: Vec::new(),
            pos: 0,
            phase: Phase::Data,
            trailer: Vec::new(),
            offset: len,
        })
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads and authenticates the next chunk into `buf`; returns its kind and last flag.
    fn next_chunk(&mut self) -> Result<(u8, bool), FormatError> {
        let index = self.counter;
        let at = self.offset;
        let mut rec = [0u8; 6];
        let got = read_full(&mut self.inp, &mut rec)
            .map_err(|e| FormatError::from_io(e, "cannot read the backup"))?;
        if got == 0 {
            return Err(FormatError::Truncated(format!(
                "the file ends after chunk {} (byte {at}) without a final chunk",
                index as i64 - 1
            )));
        }
        if got < rec.len() {
            return Err(FormatError::Truncated(format!(
                "the file ends inside chunk {index} (byte {})",
                at + got as u64
            )));
        }
        let kind = rec[0];
        let last = rec[1];
        let len = u32::from_be_bytes(rec[2..6].try_into().unwrap()) as usize;
        let max = self.header.chunk_size as usize + TAG_LEN;
        if !(kind == KIND_DATA || kind == KIND_TRAILER)
            || last > 1
            || !(TAG_LEN..=max).contains(&len)
        {
            return Err(FormatError::ChunkAuth {
                index,
                offset: at,
                what: " (invalid chunk framing)",
            });
        }
        self.buf.resize(len, 0);
        let got = read_full(&mut self.inp, &mut self.buf)
            .map_err(|e| FormatError::from_io(e, "cannot read the backup"))?;
        if got < len {
            return Err(FormatError::Truncated(format!(
                "the file ends inside chunk {index} (byte {}, {} of {len} bytes present)",
                at + 6 + got as u64,
                got
            )));
        }
        let tag_at = len - TAG_LEN;
        let tag = *Tag::from_slice(&self.buf[tag_at..]);
        self.buf.truncate(tag_at);
        let nonce = nonce_for(&self.header.nonce_prefix, index, last == 1);
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &chunk_aad(&self.fixed, kind),
                &mut self.buf,
                &tag,
            )
            .map_err(|_| FormatError::ChunkAuth {
                index,
                offset: at,
                what: if kind == KIND_TRAILER {
                    " (manifest/trailer)"
                } else {
                    ""
                },
            })?;
        self.offset += 6 + len as u64;
        self.counter = index.wrapping_add(1);
        self.pos = 0;
        Ok((kind, last == 1))
    }

    /// Reads the rest (draining unread data), returns the trailer, and fails on any
    /// byte after the final chunk.
    pub fn finish(mut self) -> Result<Vec<u8>, FormatError> {
        let mut sink = [0u8; 8192];
        loop {
            match self.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(FormatError::from_io(e, "cannot read the backup")),
            }
        }
        while let Phase::Trailer { last_seen: false } = self.phase {
            let (kind, last) = self.next_chunk()?;
            if kind != KIND_TRAILER {
                return Err(FormatError::ChunkAuth {
                    index: self.counter - 1,
                    offset: self.offset,
                    what: " (data after the trailer)",
                });
            }
            self.trailer.extend_from_slice(&self.buf);
            self.phase = Phase::Trailer { last_seen: last };
        }
        let mut probe = [0u8; 4096];
        let mut extra = 0u64;
        loop {
            let n = read_full(&mut self.inp, &mut probe)
                .map_err(|e| FormatError::from_io(e, "cannot read the backup"))?;
            extra += n as u64;
            if n < probe.len() {
                break;
            }
        }
        if extra > 0 {
            return Err(FormatError::TrailingData {
                offset: self.offset,
                bytes: extra,
            });
        }
        Ok(std::mem::take(&mut self.trailer))
    }
}

impl<R: Read> Read for Reader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.len() && matches!(self.phase, Phase::Data) {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if !matches!(self.phase, Phase::Data) {
                return Ok(0);
            }
            let (kind, last) = self.next_chunk().map_err(FormatError::into_io)?;
            if kind == KIND_TRAILER {
                self.trailer.extend_from_slice(&self.buf);
                self.buf.clear();
                self.phase = Phase::Trailer { last_seen: last };
                return Ok(0);
            }
            if last {
                // A data chunk flagged final: the writer always ends with a trailer.
                return Err(FormatError::ChunkAuth {
                    index: self.counter - 1,
                    offset: self.offset,
                    what: " (final data chunk without trailer)",
                }
                .into_io());
            }
        }
    }
}

/// Replaces the key slots of a container's header: the data key is unwrapped with one of
/// `open_keys` and wrapped for each of `new_keys` (plus the existing slots unless
/// `replace`). Returns the new header bytes and the length of the old header; the body
/// after the old header is unchanged and is copied as is.
///
/// Not a revocation: the data key stays, so a removed key still opens any earlier copy of
/// the file, and this body with the old header put back. [`reencrypt`] revokes.
pub fn rekey_header(
    inp: &mut impl Read,
    open_keys: &[KeyMaterial],
    new_keys: &[KeyMaterial],
    replace: bool,
) -> Result<(Vec<u8>, u64, Header), FormatError> {
    let (mut header, old_len) = Header::read(inp)?;
    let (dek, _) = unwrap_dek(&header, open_keys)?;
    let fixed = header.fixed();
    let mut fresh = Vec::new();
    for km in new_keys {
        fresh.push(make_slot(&fixed, &dek, km, NEW_SLOT_COST)?);
    }
    if replace {
        header.slots.clear();
    }
    for s in fresh {
        header.slots.retain(|o| o.key_id != s.key_id);
        header.slots.push(s);
    }
    if header.slots.len() > MAX_SLOTS {
        return Err(FormatError::Unsupported(format!(
            "at most {MAX_SLOTS} keys per backup"
        )));
    }
    Ok((header.encode(), old_len, header))
}

/// What reading a whole container proved: its data stream's length and SHA-256, and its
/// trailer (every chunk authenticated on the way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub data_bytes: u64,
    pub data_sha256: [u8; 32],
    pub trailer: Vec<u8>,
}

/// Copies a reader's data stream to `out`, hashing it.
fn copy_hashing(r: &mut impl Read, out: &mut impl Write) -> Result<(u64, [u8; 32]), FormatError> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; DEFAULT_CHUNK as usize];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FormatError::from_io(e, "cannot read the container")),
        };
        hash.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| FormatError::Io {
            context: "cannot write the new container".into(),
            source: e,
        })?;
        total += n as u64;
    }
    Ok((total, hash.finalize().into()))
}

/// Reads a whole container with `keys`: every chunk, the trailer, nothing after it.
pub fn contents(inp: impl Read, keys: &[KeyMaterial]) -> Result<(Header, Contents), FormatError> {
    let mut r = Reader::open(inp, keys)?;
    let (data_bytes, data_sha256) = copy_hashing(&mut r, &mut io::sink())?;
    let header = r.header.clone();
    let trailer = r.finish()?;
    Ok((
        header,
        Contents {
            data_bytes,
            data_sha256,
            trailer,
        },
    ))
}

/// Decrypts `inp` (opened with one of `open_keys`) and writes the same data stream and
/// trailer to `out` as a new container for `new_keys` only: a fresh data key, file id and
/// nonce prefix, the same content label and chunk size. Streams chunk by chunk, so memory
/// stays a few chunks whatever the size. No byte of the result decrypts under the old
/// data key, so the old keys open it neither as it is nor with the old header spliced on.
pub fn reencrypt<W: Write>(
    inp: impl Read,
    open_keys: &[KeyMaterial],
    out: W,
    new_keys: &[KeyMaterial],
) -> Result<(W, Header, Contents), FormatError> {
    let mut r = Reader::open(inp, open_keys)?;
    let mut w = Writer::with_chunk_size(out, new_keys, &r.header.content, r.header.chunk_size)?;
    let (data_bytes, data_sha256) = copy_hashing(&mut r, &mut w)?;
    let trailer = r.finish()?;
    let header = w.header().clone();
    let (out, _) = w.finish(&trailer)?;
    Ok((
        out,
        header,
        Contents {
            data_bytes,
            data_sha256,
            trailer,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> KeyMaterial {
        KeyMaterial::Key(Zeroizing::new([b; 32]))
    }

    fn seal(data: &[u8], trailer: &[u8], chunk: u32) -> Vec<u8> {
        let mut w = Writer::with_chunk_size(Vec::new(), &[key(1)], "test", chunk).unwrap();
        w.write_all(data).unwrap();
        w.finish(trailer).unwrap().0
    }

    fn open(file: &[u8], keys: &[KeyMaterial]) -> Result<(Vec<u8>, Vec<u8>), FormatError> {
        let mut r = Reader::open(file, keys)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map_err(|e| FormatError::from_io(e, "read"))?;
        let t = r.finish()?;
        Ok((out, t))
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn header_len(file: &[u8]) -> usize {
        Header::read(&mut &file[..]).unwrap().1 as usize
    }

    #[test]
    fn round_trip_various_sizes() {
        for n in [0, 1, 99, 100, 101, 1000] {
            let d = data(n);
            let f = seal(&d, b"manifest", 100);
            let (out, t) = open(&f, &[key(1)]).unwrap();
            assert_eq!(out, d);
            assert_eq!(t, b"manifest");
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let f = seal(&data(350), b"the manifest", 100);
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x01;
            let e = open(&g, &[key(1)]);
            assert!(e.is_err(), "flip at byte {i} went unnoticed");
            let e = e.unwrap_err();
            // A flipped byte is corruption, never "wrong key" (key ids are covered by the checksum).
            assert_ne!(e.kind(), "wrong_key", "byte {i}: {e}");
        }
    }

    #[test]
    fn truncation_anywhere_is_detected() {
        let f = seal(&data(350), b"m", 100);
        let h = header_len(&f);
        for cut in 0..f.len() {
            let e = open(&f[..cut], &[key(1)]).unwrap_err();
            if cut >= h {
                assert_eq!(e.kind(), "truncated", "cut {cut}: {e}");
            }
        }
        // Exactly at a chunk boundary.
        let boundary = h + 6 + 100 + TAG_LEN;
        let e = open(&f[..boundary], &[key(1)]).unwrap_err();
        assert!(e.to_string().contains("without a final chunk"), "{e}");
    }

    #[test]
    fn appended_bytes_are_detected() {
        let mut f = seal(&data(50), b"m", 100);
        f.extend_from_slice(b"x");
        let e = open(&f, &[key(1)]).unwrap_err();
        assert_eq!(e.kind(), "trailing_data", "{e}");
    }

    #[test]
    fn swapped_chunks_are_detected() {
        let f = seal(&data(300), b"m", 100);
        let h = header_len(&f);
        let rec = 6 + 100 + TAG_LEN;
        let mut g = f.clone();
        let (a, b) = (h, h + rec);
        let first = f[a..a + rec].to_vec();
        g[a..a + rec].copy_from_slice(&f[b..b + rec]);
        g[b..b + rec].copy_from_slice(&first);
        let e = open(&g, &[key(1)]).unwrap_err();
        assert!(
            e.to_string().starts_with("chunk 0 failed authentication"),
            "{e}"
        );
    }

    #[test]
    fn wrong_key_is_reported_as_wrong_key() {
        let f = seal(&data(10), b"m", 100);
        let e = open(&f, &[key(2)]).unwrap_err();
        assert_eq!(e.kind(), "wrong_key", "{e}");
        assert!(e.to_string().starts_with("wrong key"));
    }

    #[test]
    fn passphrase_and_multiple_keys() {
        let pass = || KeyMaterial::Passphrase(Zeroizing::new("correct horse battery".into()));
        let mut w = Writer::new(Vec::new(), &[pass(), key(3)], "t").unwrap();
        w.write_all(b"hello").unwrap();
        let f = w.finish(b"").unwrap().0;
        assert_eq!(open(&f, &[pass()]).unwrap().0, b"hello");
        assert_eq!(open(&f, &[key(3)]).unwrap().0, b"hello");
        let wrong = KeyMaterial::Passphrase(Zeroizing::new("wrong horse battery".into()));
        assert_eq!(open(&f, &[wrong]).unwrap_err().kind(), "wrong_key");
    }

    #[test]
    fn rekey_keeps_the_body_and_opens_with_the_new_key_only() {
        let f = seal(&data(500), b"m", 100);
        let (hdr, old_len, _) = rekey_header(&mut &f[..], &[key(1)], &[key(9)], true).unwrap();
        let mut g = hdr;
        g.extend_from_slice(&f[old_len as usize..]);
        assert_eq!(open(&g, &[key(9)]).unwrap().0, data(500));
        assert_eq!(open(&g, &[key(1)]).unwrap_err().kind(), "wrong_key");
    }

    fn pass() -> KeyMaterial {
        KeyMaterial::Passphrase(Zeroizing::new("correct horse battery".into()))
    }

    /// Rewrites the Argon2id parameters of the first key slot (a passphrase slot) and
    /// recomputes the header checksum, as a crafted file would.
    fn craft_argon(file: &[u8], m_kib: u32, t: u32, p: u32) -> Vec<u8> {
        let (h, len) = Header::read(&mut &file[..]).unwrap();
        assert!(h.slots[0].argon.is_some());
        let at = h.fixed().len() + 1 + 1 + 8;
        let mut g = file.to_vec();
        g[at..at + 4].copy_from_slice(&m_kib.to_be_bytes());
        g[at + 4..at + 8].copy_from_slice(&t.to_be_bytes());
        g[at + 8..at + 12].copy_from_slice(&p.to_be_bytes());
        let len = len as usize;
        let sum = Sha256::digest(&g[..len - 32]);
        g[len - 32..len].copy_from_slice(&sum);
        g
    }

    #[test]
    fn new_passphrase_slots_use_at_least_64_mib_and_three_passes() {
        let w = Writer::new(Vec::new(), &[pass()], "t").unwrap();
        let f = w.finish(b"").unwrap().0;
        let a = Header::read(&mut &f[..]).unwrap().0.slots[0].argon.unwrap();
        assert!(a.m_kib >= 64 * 1024 && a.t >= 3 && a.p >= 1, "{a:?}");
        assert_eq!(open(&f, &[pass()]).unwrap().1, b"");
    }

    #[test]
    fn argon2_parameters_beyond_the_bounds_are_refused_before_any_work() {
        let mut w = Writer::new(Vec::new(), &[pass(), key(3)], "t").unwrap();
        w.write_all(b"hello").unwrap();
        let f = w.finish(b"").unwrap().0;
        for (m, t, p) in [
            (4 * 1024 * 1024, 3, 1),
            (1024 * 1024 + 1, 3, 1),
            (64 * 1024, 17, 1),
            (64 * 1024, 3, 17),
            (u32::MAX, u32::MAX, u32::MAX),
        ] {
            let g = craft_argon(&f, m, t, p);
            let e = Header::read(&mut &g[..]).unwrap_err();
            assert_eq!(e.kind(), "header_corrupted", "m={m} t={t} p={p}: {e}");
            assert!(e.to_string().contains("Argon2id"), "{e}");
            // Refused as a whole, whichever key is given: no memory is allocated for it.
            let started = std::time::Instant::now();
            for k in [pass(), key(3)] {
                assert_eq!(open(&g, &[k]).unwrap_err().kind(), "header_corrupted");
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
        // At the bounds the header is accepted (and the key slot opens it).
        let g = craft_argon(&f, 1024 * 1024, 16, 16);
        Header::read(&mut &g[..]).unwrap();
        assert_eq!(open(&g, &[key(3)]).unwrap().0, b"hello");
    }

    #[test]
    fn files_with_the_old_argon2_parameters_still_open() {
        let mut w = Writer::start(Vec::new(), &[pass()], "t", 100, (19 * 1024, 2, 1)).unwrap();
        w.write_all(b"old").unwrap();
        let f = w.finish(b"m").unwrap().0;
        let a = Header::read(&mut &f[..]).unwrap().0.slots[0].argon.unwrap();
        assert_eq!((a.m_kib, a.t, a.p), (19 * 1024, 2, 1));
        assert_eq!(
            open(&f, &[pass()]).unwrap(),
            (b"old".to_vec(), b"m".to_vec())
        );
    }

    #[test]
    fn reencrypt_changes_the_data_key_so_the_old_header_no_longer_helps() {
        let f = seal(&data(500), b"manifest", 100);
        let (g, header, c) = reencrypt(&f[..], &[key(1)], Vec::new(), &[key(9)]).unwrap();
        assert_eq!(header.chunk_size, 100);
        assert_eq!(header.key_ids(), vec![key_id_hex(&key_id(&[9; 32]))]);
        assert_eq!(contents(&g[..], &[key(9)]).unwrap().1, c);
        assert_eq!(c.data_bytes, 500);
        assert_eq!(c.trailer, b"manifest");
        assert_eq!(open(&g, &[key(9)]).unwrap().0, data(500));
        assert_eq!(open(&g, &[key(1)]).unwrap_err().kind(), "wrong_key");
        // The old header spliced onto the new body: the old key unwraps the old data key,
        // which opens no chunk of the new body.
        let (hf, hg) = (header_len(&f), header_len(&g));
        let mut spliced = f[..hf].to_vec();
        spliced.extend_from_slice(&g[hg..]);
        assert_eq!(open(&spliced, &[key(1)]).unwrap_err().kind(), "chunk_auth");
        // A damaged source is refused.
        let mut bad = f.clone();
        bad[hf + 10] ^= 1;
        let e = reencrypt(&bad[..], &[key(1)], Vec::new(), &[key(9)]).unwrap_err();
        assert_eq!(e.kind(), "chunk_auth", "{e}");
    }
}
