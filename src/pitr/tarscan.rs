//! Reads a tar stream as it passes (constant memory): the checksum and size of every
//! regular file, the `backup_label` whole, and the tail of `backup_manifest` (where
//! pg_basebackup's WAL range is). Also the tar reader that unpacks a base backup.

use sha2::{Digest, Sha256};

use super::catalog::FileEntry;

/// The tail of `backup_manifest` kept (its `WAL-Ranges` are in the last few hundred bytes).
const MANIFEST_TAIL: usize = 64 * 1024;
const LABEL_MAX: usize = 64 * 1024;

/// One parsed ustar header.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: String,
    pub size: u64,
    pub mode: u32,
    /// b'0' / 0 regular, b'5' directory, b'2' symlink, b'x'/b'g' pax, b'L' GNU long name.
    pub typeflag: u8,
    pub linkname: String,
}

fn octal(field: &[u8]) -> Option<u64> {
    // GNU base-256 for large sizes.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(*b as u64)?;
        }
        return Some(v);
    }
    let s: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Parses a 512-byte header block; `Ok(None)` for an all-zero block (end of archive).
pub fn parse_header(block: &[u8; 512]) -> Result<Option<Header>, String> {
    if block.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let stored = octal(&block[148..156]).ok_or("tar header checksum field unreadable")?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u64
            }
        })
        .sum();
    if sum != stored {
        return Err("tar header checksum mismatch (not a tar stream, or corrupted)".into());
    }
    let mut name = cstr(&block[0..100]);
    let prefix = cstr(&block[345..500]);
    if &block[257..262] == b"ustar" && !prefix.is_empty() {
        name = format!("{prefix}/{name}");
    }
    Ok(Some(Header {
        name,
        size: octal(&block[124..136]).ok_or("tar size field unreadable")?,
        mode: octal(&block[100..108]).unwrap_or(0o600) as u32,
        typeflag: block[156],
        linkname: cstr(&block[157..257]),
    }))
}

pub fn padded(size: u64) -> u64 {
    size.div_ceil(512) * 512
}

enum State {
    Header { have: usize },
    Body { left: u64, pad: u64 },
    Pad { left: u64 },
    End,
}

/// Feeds on the stream pg_basebackup writes; collects per-file checksums.
pub struct TarScan {
    block: Box<[u8; 512]>,
    state: State,
    current: Option<(Header, Sha256)>,
    pub files: Vec<FileEntry>,
    pub label: Vec<u8>,
    pub manifest_tail: Vec<u8>,
    /// Names of tablespace links (`pg_tblspc/<oid>`) seen.
    pub tablespaces: Vec<String>,
    pub error: Option<String>,
    long_name: Option<String>,
    long_buf: Option<Vec<u8>>,
}

impl Default for TarScan {
    fn default() -> Self {
        TarScan {
            block: Box::new([0u8; 512]),
            state: State::Header { have: 0 },
            current: None,
            files: Vec::new(),
            label: Vec::new(),
            manifest_tail: Vec::new(),
            tablespaces: Vec::new(),
            error: None,
            long_name: None,
            long_buf: None,
        }
    }
}

impl TarScan {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.error.is_none() {
            match &mut self.state {
                State::End => return,
                State::Header { have } => {
                    let n = (512 - *have).min(data.len());
                    self.block[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == 512 {
                        self.header_done();
                    }
                }
                State::Body { left, pad } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    let chunk = &data[..n];
                    *left -= n as u64;
                    let (l, p) = (*left, *pad);
                    data = &data[n..];
                    self.body(chunk);
                    if l == 0 {
                        self.file_done();
                        self.state = if p > 0 {
                            State::Pad { left: p }
                        } else {
                            State::Header { have: 0 }
                        };
                    }
                }
                State::Pad { left } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::Header { have: 0 };
                    }
                }
            }
        }
    }

    fn header_done(&mut self) {
        let h = match parse_header(&self.block) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.state = State::End;
                return;
            }
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        let mut h = h;
        if let Some(n) = self.long_name.take() {
            h.name = n;
        }
        let pad = padded(h.size) - h.size;
        match h.typeflag {
            b'L' => {
                self.long_buf = Some(Vec::new());
            }
            b'2' if h.name.trim_start_matches("./").starts_with("pg_tblspc/") => {
                self.tablespaces.push(h.name.clone());
            }
            _ => {}
        }
        let size = h.size;
        self.current = Some((h, Sha256::new()));
        if size == 0 {
            self.file_done();
            self.state = State::Header { have: 0 };
        } else {
            self.state = State::Body { left: size, pad };
        }
    }

    fn body(&mut self, chunk: &[u8]) {
        let Some((h, hash)) = &mut self.current else {
            return;
        };
        if let Some(b) = &mut self.long_buf {
            if b.len() < 64 * 1024 {
                b.extend_from_slice(chunk);
            }
            return;
        }
        hash.update(chunk);
        let name = h.name.trim_start_matches("./");
        if name == "backup_label" && self.label.len() < LABEL_MAX {
            self.label.extend_from_slice(chunk);
        } else if name == "backup_manifest" {
            self.manifest_tail.extend_from_slice(chunk);
            if self.manifest_tail.len() > 2 * MANIFEST_TAIL {
                let cut = self.manifest_tail.len() - MANIFEST_TAIL;
                self.manifest_tail.drain(..cut);
            }
        }
    }

    fn file_done(&mut self) {
        let Some((h, hash)) = self.current.take() else {
            return;
        };
        if let Some(b) = self.long_buf.take() {
            self.long_name = Some(cstr(&b));
            return;
        }
        if matches!(h.typeflag, b'0' | 0 | b'7') {
            self.files.push(FileEntry {
                path: h.name.trim_start_matches("./").to_string(),
                size: h.size,
                sha256: hex::encode(hash.finalize()),
            });
        }
    }

    /// True when the archive's end marker was seen.
    pub fn ended(&self) -> bool {
        matches!(self.state, State::End)
    }
}

/// `START WAL LOCATION`, `START TIMELINE` and `START TIME` of a backup_label.
pub fn label_field<'a>(label: &'a str, key: &str) -> Option<&'a str> {
    label
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// The (timeline, start, end) of the last WAL range in a backup_manifest tail.
pub fn manifest_wal_range(tail: &str) -> Option<(u32, String, String)> {
    let i = tail.rfind("\"Timeline\"")?;
    let rest = &tail[i..];
    let num = |k: &str| -> Option<String> {
        let j = rest.find(k)? + k.len();
        let r = rest[j..].trim_start_matches([':', ' ', '"']);
        let end = r.find(['"', ',', '}', ' ', '\n'])?;
        Some(r[..end].to_string())
    };
    Some((
        num("\"Timeline\"")?.parse().ok()?,
        num("\"Start-LSN\"")?,
        num("\"End-LSN\"")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, typeflag: u8) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..107].copy_from_slice(b"0000600");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[156] = typeflag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|x| *x as u64).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b
    }

    #[test]
    fn scans_files_in_any_split() {
        let mut t = Vec::new();
        t.extend_from_slice(&header("backup_label", 40, b'0'));
        let label = b"START WAL LOCATION: 0/2000028 (file 00)\n";
        t.extend_from_slice(label);
        t.resize(t.len() + 512 - 40, 0);
        t.extend_from_slice(&header("base/1", 0, b'5'));
        t.extend_from_slice(&header("base/1/123", 1000, b'0'));
        t.extend(std::iter::repeat_n(7u8, 1000));
        t.resize(t.len() + 24, 0);
        t.extend_from_slice(&[0u8; 1024]);
        for split in [1usize, 7, 512, 4096] {
            let mut s = TarScan::default();
            for c in t.chunks(split) {
                s.feed(c);
            }
            assert!(s.error.is_none());
            assert!(s.ended());
            assert_eq!(s.files.len(), 2);
            assert_eq!(s.files[1].path, "base/1/123");
            assert_eq!(s.files[1].size, 1000);
            assert_eq!(s.files[1].sha256, hex::encode(Sha256::digest([7u8; 1000])));
            let l = String::from_utf8(s.label.clone()).unwrap();
            assert_eq!(
                label_field(&l, "START WAL LOCATION"),
                Some("0/2000028 (file 00)")
            );
        }
        let mut bad = t.clone();
        bad[10] ^= 1;
        let mut s = TarScan::default();
        s.feed(&bad);
        assert!(s.error.is_some());
    }

    #[test]
    fn wal_range_from_manifest() {
        let tail = r#"..."WAL-Ranges": [
{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }
],
"Manifest-Checksum": "abc"}"#;
        assert_eq!(
            manifest_wal_range(tail),
            Some((1, "0/2000028".into(), "0/2000100".into()))
        );
    }
}
