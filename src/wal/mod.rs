//! WAL archiving: the names PostgreSQL gives WAL files, the segment page header (system
//! identifier, segment size), the archive's layout in a repository, and the archive info
//! object that ties a repository's archive to one cluster. `archive` pushes and fetches,
//! `verify` looks for gaps, `status` reads the server's archiving state.
//!
//! Layout in the repository (keys are plaintext, contents sealed):
//!
//! ```text
//! wal/archive.json                          which cluster this archive belongs to
//! wal/<system id>/<timeline>/<file name>    one sealed WAL segment, .partial, .history or .backup
//! ```
//!
//! `<timeline>` is 8 hex digits, the timeline of the file's name. A segment that was
//! archived is never replaced.

pub mod archive;
pub mod status;
pub mod verify;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::storage::Repository;

/// The top-level folder of the archive in a repository.
pub const PREFIX: &str = "wal";
/// The archive info object.
pub const INFO_KEY: &str = "wal/archive.json";

/// `XLOG_PAGE_MAGIC` of PostgreSQL 15 (src/include/access/xlog_internal.h).
pub const XLOG_PAGE_MAGIC_PG15: u16 = 0xD110;
/// `XLP_LONG_HEADER`: the first page of a segment carries the long header.
const XLP_LONG_HEADER: u16 = 0x0002;
/// `sizeof(XLogLongPageHeaderData)` on 64-bit builds: the short header (magic u16, info
/// u16, tli u32, pageaddr u64, rem_len u32, padded to 24) then sysid u64, seg_size u32,
/// xlog_blcksz u32.
pub const LONG_HEADER_LEN: usize = 40;

/// A WAL file name as PostgreSQL archives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalName {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`: timeline, log id, segment within the log id.
    Segment(Segment),
    /// The same name followed by `.partial` (the last, incomplete segment of a timeline
    /// written at promotion).
    Partial(Segment),
    /// `TTTTTTTT.history`.
    History(u32),
    /// `TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup`: a base backup's label.
    Backup(Segment, u32),
}

/// A segment on a timeline: `log` and `seg` as in the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub tli: u32,
    pub log: u32,
    pub seg: u32,
}

fn hex8(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

impl Segment {
    fn parse(s: &str) -> Option<Segment> {
        if s.len() != 24 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Segment {
            tli: hex8(&s[0..8])?,
            log: hex8(&s[8..16])?,
            seg: hex8(&s[16..24])?,
        })
    }

    /// The file name (upper-case hex, as PostgreSQL writes it).
    pub fn name(&self) -> String {
        format!("{:08X}{:08X}{:08X}", self.tli, self.log, self.seg)
    }

    /// The segment number (`XLogSegNo`) for a segment size.
    pub fn number(&self, seg_size: u32) -> u64 {
        u64::from(self.log) * segs_per_log(seg_size) + u64::from(self.seg)
    }

    /// The segment of a number on a timeline.
    pub fn from_number(tli: u32, number: u64, seg_size: u32) -> Segment {
        let per = segs_per_log(seg_size);
        Segment {
            tli,
            log: (number / per) as u32,
            seg: (number % per) as u32,
        }
    }
}

/// Segments per log id (`XLogSegmentsPerXLogId`).
pub fn segs_per_log(seg_size: u32) -> u64 {
    0x1_0000_0000u64 / u64::from(seg_size.max(1))
}

/// The segment number holding an LSN.
pub fn lsn_segment(lsn: u64, seg_size: u32) -> u64 {
    lsn / u64::from(seg_size.max(1))
}

/// Parses `X/Y` (an LSN as PostgreSQL prints it).
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
        return None;
    }
    Some((hi << 32) | lo)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

impl WalName {
    /// Parses an archived file name; `None` for anything else.
    pub fn parse(name: &str) -> Option<WalName> {
        if let Some(seg) = Segment::parse(name) {
            return Some(WalName::Segment(seg));
        }
        if let Some(base) = name.strip_suffix(".partial") {
            return Segment::parse(base).map(WalName::Partial);
        }
        if let Some(base) = name.strip_suffix(".history") {
            return hex8(base).map(WalName::History);
        }
        if let Some(base) = name.strip_suffix(".backup") {
            let (seg, off) = base.split_once('.')?;
            return Some(WalName::Backup(Segment::parse(seg)?, hex8(off)?));
        }
        None
    }

    /// The timeline of the name (the folder it is archived in).
    pub fn timeline(&self) -> u32 {
        match self {
            WalName::Segment(s) | WalName::Partial(s) | WalName::Backup(s, _) => s.tli,
            WalName::History(t) => *t,
        }
    }

    pub fn name(&self) -> String {
        match self {
            WalName::Segment(s) => s.name(),
            WalName::Partial(s) => format!("{}.partial", s.name()),
            WalName::History(t) => format!("{t:08X}.history"),
            WalName::Backup(s, off) => format!("{}.{off:08X}.backup", s.name()),
        }
    }

    /// True for files that start with a WAL page header (segments and partial segments).
    pub fn has_page_header(&self) -> bool {
        matches!(self, WalName::Segment(_) | WalName::Partial(_))
    }
}

/// What the long page header of a segment's first page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub magic: u16,
    pub tli: u32,
    pub pageaddr: u64,
    pub system_id: u64,
    pub seg_size: u32,
    pub block_size: u32,
}

/// Reads and checks the long page header at the start of a segment's bytes.
pub fn read_header(bytes: &[u8]) -> Result<SegmentHeader, String> {
    if bytes.len() < LONG_HEADER_LEN {
        return Err(format!(
            "it is {} bytes long, shorter than a WAL page header",
            bytes.len()
        ));
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let magic = u16_at(0);
    let info = u16_at(2);
    if magic & 0xFF00 != 0xD100 {
        return Err(format!(
            "its first page has magic {magic:#06x}, not a PostgreSQL WAL page"
        ));
    }
    if info & XLP_LONG_HEADER == 0 {
        return Err("its first page has no long header (not the start of a segment)".into());
    }
    let h = SegmentHeader {
        magic,
        tli: u32_at(4),
        pageaddr: u64_at(8),
        system_id: u64_at(24),
        seg_size: u32_at(32),
        block_size: u32_at(36),
    };
    if !h.seg_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&h.seg_size) {
        return Err(format!(
            "its header gives a segment size of {} bytes",
            h.seg_size
        ));
    }
    Ok(h)
}

/// Checks that a segment's bytes belong under its name: a long header, the whole
/// segment, and the page address of the segment the name says.
pub fn check_segment(seg: &Segment, bytes: &[u8]) -> Result<SegmentHeader, String> {
    let h = read_header(bytes)?;
    if bytes.len() as u64 != u64::from(h.seg_size) {
        return Err(format!(
            "it is {} bytes long but its header gives a segment size of {} bytes",
            bytes.len(),
            h.seg_size
        ));
    }
    let want = seg.number(h.seg_size) * u64::from(h.seg_size);
    if h.pageaddr != want {
        return Err(format!(
            "its first page is at {}, not at {} where segment {} starts (a recycled or renamed file?)",
            format_lsn(h.pageaddr),
            format_lsn(want),
            seg.name()
        ));
    }
    Ok(h)
}

/// Which cluster a repository's archive belongs to (`wal/archive.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchiveInfo {
    pub format: u32,
    /// The cluster's system identifier, as text (JSON numbers lose precision past 2^53).
    pub system_identifier: String,
    pub wal_segment_size: u32,
    pub created: chrono::DateTime<chrono::Utc>,
}

impl ArchiveInfo {
    pub fn system_id(&self) -> Result<u64, Error> {
        self.system_identifier.parse().map_err(|_| {
            Error::Verify(format!(
                "{INFO_KEY} names system identifier {:?}, which is not a number",
                self.system_identifier
            ))
        })
    }

    /// The folder of this cluster's WAL.
    pub fn cluster_prefix(&self) -> String {
        format!("{PREFIX}/{}/", self.system_identifier)
    }
}

/// Reads the archive info; `None` when nothing was archived to the repository yet.
pub fn load_info(repo: &Repository) -> Result<Option<ArchiveInfo>, Error> {
    let Some(bytes) = repo.get(INFO_KEY)? else {
        return Ok(None);
    };
    let info: ArchiveInfo = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Verify(format!(
            "{INFO_KEY} in repository {} is not valid: {e}",
            repo.display()
        ))
    })?;
    info.system_id()?;
    Ok(Some(info))
}

/// The key of an archived file.
pub fn key(system_id: u64, name: &WalName) -> String {
    format!(
        "{PREFIX}/{system_id}/{:08X}/{}",
        name.timeline(),
        name.name()
    )
}

/// One archived file as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Archived {
    pub name: WalName,
    pub key: String,
    pub size: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// Every file archived for a cluster, sorted by name.
pub fn list(repo: &Repository, system_id: u64) -> Result<Vec<Archived>, Error> {
    let prefix = format!("{PREFIX}/{system_id}/");
    let mut out: Vec<Archived> = repo
        .list(&prefix)?
        .into_iter()
        .filter_map(|o| {
            let file = o.key.rsplit('/').next()?;
            let name = WalName::parse(file)?;
            (o.key == key(system_id, &name)).then_some(Archived {
                name,
                key: o.key,
                size: o.size,
                modified: o.modified,
            })
        })
        .collect();
    out.sort_by_key(|a| a.name);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for n in [
            "000000010000000000000001",
            "0000000200000001000000FF",
            "00000002.history",
            "000000010000000000000002.00000028.backup",
            "000000010000000000000005.partial",
        ] {
            let w = WalName::parse(n).unwrap_or_else(|| panic!("{n}"));
            assert_eq!(w.name(), n);
        }
        assert_eq!(WalName::parse("00000002.history").unwrap().timeline(), 2);
        for bad in [
            "",
            "RECOVERYXLOG",
            "00000001000000000000001",
            "0000000100000000000000GG",
            "0000001.history",
            "000000010000000000000002.backup",
            "x000000010000000000000001",
        ] {
            assert_eq!(WalName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn segment_numbers_follow_the_segment_size() {
        let s = WalName::parse("0000000100000001000000FF").unwrap();
        let WalName::Segment(s) = s else { panic!() };
        assert_eq!(s.number(16 << 20), 256 + 255);
        assert_eq!(Segment::from_number(1, 511, 16 << 20), s);
        assert_eq!(parse_lsn("1/FF000028"), Some(0x1_FF00_0028));
        assert_eq!(lsn_segment(0x1_FF00_0028, 16 << 20), 511);
        assert_eq!(format_lsn(0x1_FF00_0028), "1/FF000028");
    }

    fn fake_segment(sysid: u64, pageaddr: u64, size: usize) -> Vec<u8> {
        let mut b = vec![0u8; size];
        b[0..2].copy_from_slice(&XLOG_PAGE_MAGIC_PG15.to_le_bytes());
        b[2..4].copy_from_slice(&XLP_LONG_HEADER.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&pageaddr.to_le_bytes());
        b[24..32].copy_from_slice(&sysid.to_le_bytes());
        b[32..36].copy_from_slice(&(size as u32).to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        b
    }

    #[test]
    fn the_header_gives_the_system_id_and_must_match_the_name() {
        let seg = Segment {
            tli: 1,
            log: 0,
            seg: 3,
        };
        let size = 1 << 20;
        let b = fake_segment(7714924883478766105, 3 << 20, size);
        let h = check_segment(&seg, &b).unwrap();
        assert_eq!(h.system_id, 7714924883478766105);
        assert_eq!(h.seg_size, 1 << 20);
        let e = check_segment(&seg, &fake_segment(1, 4 << 20, size)).unwrap_err();
        assert!(e.contains("recycled"), "{e}");
        assert!(check_segment(&seg, &b[..size - 1]).is_err());
        assert!(check_segment(&seg, &vec![0u8; size]).is_err());
    }
}
