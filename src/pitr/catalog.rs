//! What a repository holds for point-in-time recovery: base backups under
//! `base/<sysid>/<id>/` (the sealed tar `base.tar.opsbak` whose trailer is the sealed
//! manifest, and `summary.json`, written last, which makes the backup complete and lists
//! it without a key) and archived WAL under `wal/<sysid>/<timeline>/<name>`; LSNs and WAL
//! file names; the recovery window (oldest base backup's stop → newest archived WAL).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::storage::Repository;

/// WAL segment size (the PostgreSQL default; `initdb --wal-segsize` other sizes are refused
/// by the base backup).
pub const SEG_SIZE: u64 = 16 * 1024 * 1024;

/// The name of the sealed tar of a base backup, and of its plain summary.
pub const TAR_OBJECT: &str = "base.tar.opsbak";
pub const SUMMARY_OBJECT: &str = "summary.json";

/// A write-ahead log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `X/Y` (hexadecimal halves), as PostgreSQL prints it.
    pub fn parse(s: &str) -> Result<Lsn, Error> {
        let bad = || Error::Config(format!("{s:?} is not an LSN (like 0/16B3748)"));
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
            return Err(bad());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((hi << 32) | lo))
    }

    /// The segment number holding this position.
    pub fn segno(self) -> u64 {
        self.0 / SEG_SIZE
    }

    /// The name of the WAL segment holding this position on `tli`.
    pub fn segment(self, tli: u32) -> String {
        segment_name(tli, self.segno())
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let s = String::deserialize(d)?;
        Lsn::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `TTTTTTTTXXXXXXXXYYYYYYYY` for a timeline and segment number (16 MiB segments).
pub fn segment_name(tli: u32, segno: u64) -> String {
    let per_id = 0x1_0000_0000 / SEG_SIZE;
    format!("{tli:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// (timeline, segment number) of a segment name.
pub fn parse_segment(name: &str) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&name[0..8], 16).ok()?;
    let hi = u64::from_str_radix(&name[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&name[16..24], 16).ok()?;
    let per_id = 0x1_0000_0000 / SEG_SIZE;
    (lo < per_id).then_some((tli, hi * per_id + lo))
}

/// The `.backup` history file the server archives at the end of a base backup.
pub fn backup_file_name(tli: u32, start: Lsn) -> String {
    format!("{}.{:08X}.backup", start.segment(tli), start.0 % SEG_SIZE)
}

/// The WAL file name (segment, `.backup`, `.history`, `.partial`) an archive key ends in,
/// whatever the archiver appends after it (an extension of its own).
pub fn wal_name_of(key: &str) -> Option<String> {
    let last = key.rsplit('/').next()?;
    let is_wal = |n: &str| {
        let hex = |s: &str, l: usize| s.len() == l && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(b) = n.strip_suffix(".backup") {
            return b
                .split_once('.')
                .is_some_and(|(s, o)| hex(s, 24) && hex(o, 8));
        }
        if let Some(h) = n.strip_suffix(".history") {
            return hex(h, 8);
        }
        if let Some(p) = n.strip_suffix(".partial") {
            return hex(p, 24);
        }
        hex(n, 24)
    };
    let mut n = last;
    for _ in 0..3 {
        if is_wal(n) {
            return Some(n.to_string());
        }
        match n.rsplit_once('.') {
            Some((head, _)) => n = head,
            None => break,
        }
    }
    None
}

/// What the archive of one cluster holds: WAL file names and when the newest arrived.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    pub names: BTreeSet<String>,
    /// (timeline, segment number) of every archived segment.
    pub segments: BTreeSet<(u32, u64)>,
    /// Newest archived segment and when it was stored.
    pub newest: Option<(String, DateTime<Utc>)>,
}

impl Archive {
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The end of the newest archived segment (the last position recovery can reach).
    pub fn end_lsn(&self) -> Option<Lsn> {
        self.segments
            .iter()
            .map(|(_, s)| s)
            .max()
            .map(|s| Lsn((s + 1) * SEG_SIZE))
    }

    /// The first segment missing after `from` (inclusive) up to the newest segment, on
    /// any timeline; None when the run is unbroken.
    pub fn first_gap_after(&self, from: u64) -> Option<u64> {
        let have: BTreeSet<u64> = self.segments.iter().map(|(_, s)| *s).collect();
        let newest = *have.iter().next_back()?;
        (from..=newest).find(|s| !have.contains(s))
    }

    /// The end of the unbroken WAL from segment `from`: the last position recovery started
    /// there can reach.
    pub fn reachable_end(&self, from: u64) -> Option<Lsn> {
        let have: BTreeSet<u64> = self.segments.iter().map(|(_, s)| *s).collect();
        if !have.contains(&from) {
            return None;
        }
        let mut s = from;
        while have.contains(&(s + 1)) {
            s += 1;
        }
        Some(Lsn((s + 1) * SEG_SIZE))
    }
}

/// The WAL prefix of a cluster in the repository.
pub fn wal_prefix(sysid: &str) -> String {
    format!("wal/{sysid}/")
}

/// Lists the archived WAL of `sysid`.
pub fn archive(repo: &Repository, sysid: &str) -> Result<Archive, Error> {
    let mut a = Archive::default();
    for o in repo.list(&wal_prefix(sysid))? {
        let Some(name) = wal_name_of(&o.key) else {
            continue;
        };
        if let Some(seg) = parse_segment(&name) {
            a.segments.insert(seg);
            let newer = match &a.newest {
                None => true,
                Some((n, _)) => !parse_segment(n).is_some_and(|(t, s)| (seg.1, seg.0) <= (s, t)),
            };
            if newer {
                a.newest = Some((name.clone(), o.modified));
            }
        }
        a.names.insert(name);
    }
    Ok(a)
}

/// One file of a base backup, with its checksum taken from the tar stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// What a base backup is; plain in `summary.json` (no file list), sealed with the file list
/// as the trailer of the tar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseSummary {
    pub kind: String,
    pub id: String,
    pub system_identifier: String,
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub started_at: DateTime<Utc>,
    pub stopped_at: DateTime<Utc>,
    pub pg_version: String,
    pub pg_major: u32,
    /// The first and last WAL segments needed to make the backup consistent.
    pub start_wal: String,
    pub stop_wal: String,
    /// The `.backup` history file the server archived.
    pub backup_file: String,
    pub files: u64,
    pub tar_bytes: u64,
    pub stored_bytes: u64,
    pub codec: crate::backup::compress::Codec,
    pub key_ids: Vec<String>,
    pub duration_secs: f64,
    /// sha256 of the whole tar stream.
    pub tar_sha256: String,
}

/// The sealed manifest: the summary and every file with its checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseManifest {
    pub format: u32,
    #[serde(flatten)]
    pub summary: BaseSummary,
    pub file_list: Vec<FileEntry>,
}

pub const KIND: &str = "base";

/// One listed base backup.
#[derive(Debug, Clone)]
pub struct BaseEntry {
    pub summary: BaseSummary,
    /// `base/<sysid>/<id>/`.
    pub prefix: String,
}

impl BaseEntry {
    pub fn tar_key(&self) -> String {
        format!("{}{TAR_OBJECT}", self.prefix)
    }
    pub fn summary_key(&self) -> String {
        format!("{}{SUMMARY_OBJECT}", self.prefix)
    }
}

pub fn base_prefix(sysid: &str, id: &str) -> String {
    format!("base/{sysid}/{id}/")
}

/// Every complete base backup in the repository (all clusters), oldest first. A
/// directory without its summary is an unfinished one and not listed.
pub fn base_backups(repo: &Repository) -> Result<Vec<BaseEntry>, Error> {
    let mut out = Vec::new();
    let objs = match repo.list("base/") {
        Ok(o) => o,
        Err(Error::Config(_)) => return Ok(out),
        Err(e) => return Err(e),
    };
    for o in objs {
        let Some(prefix) = o.key.strip_suffix(SUMMARY_OBJECT) else {
            continue;
        };
        let Some(bytes) = repo.get(&o.key)? else {
            continue;
        };
        match serde_json::from_slice::<BaseSummary>(&bytes) {
            Ok(summary) => out.push(BaseEntry {
                summary,
                prefix: prefix.to_string(),
            }),
            Err(e) => tracing::warn!("{}: unreadable base backup summary: {e}", o.key),
        }
    }
    out.sort_by(|a, b| {
        (a.summary.stopped_at, &a.summary.id).cmp(&(b.summary.stopped_at, &b.summary.id))
    });
    Ok(out)
}

/// Verify and drill results of a base backup (`status.json` beside it, plain).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BaseStatus {
    pub verified_at: Option<DateTime<Utc>>,
    pub verify_ok: Option<bool>,
    pub verify_reason: Option<String>,
    pub drilled_at: Option<DateTime<Utc>>,
    pub drill_ok: Option<bool>,
    pub drill_rto_secs: Option<f64>,
    pub drill_reason: Option<String>,
}

pub const STATUS_OBJECT: &str = "status.json";

pub fn read_status(repo: &Repository, b: &BaseEntry) -> BaseStatus {
    repo.get(&format!("{}{STATUS_OBJECT}", b.prefix))
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

pub fn update_status(
    repo: &Repository,
    b: &BaseEntry,
    f: impl FnOnce(&mut BaseStatus),
) -> Result<BaseStatus, Error> {
    let mut s = read_status(repo, b);
    f(&mut s);
    let text = serde_json::to_vec_pretty(&s).expect("status serialises");
    repo.put(&format!("{}{STATUS_OBJECT}", b.prefix), &text)?;
    Ok(s)
}

/// A base backup by id (or `base/<sysid>/<id>` prefix).
pub fn find_base(repo: &Repository, id: &str) -> Result<BaseEntry, Error> {
    let all = base_backups(repo)?;
    let id = id.trim_end_matches('/');
    all.into_iter()
        .find(|b| b.summary.id == id || b.prefix.trim_end_matches('/') == id)
        .ok_or_else(|| {
            Error::Config(format!(
                "no base backup {id:?} in repository {} (see opsctl backup list)",
                repo.display()
            ))
        })
}

/// The recovery window a base backup opens: from its stop to the newest archived WAL.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from_time: DateTime<Utc>,
    pub from_lsn: Lsn,
    /// When the newest archived segment was stored (the last time recovery can reach is
    /// at most this), and the end of the unbroken WAL after the backup.
    pub to_time: Option<DateTime<Utc>>,
    pub to_lsn: Option<Lsn>,
}

impl Window {
    pub fn describe(&self) -> String {
        match (self.to_time, self.to_lsn) {
            (Some(t), Some(l)) => format!(
                "{} ({}) to {} ({})",
                crate::text::ts(&self.from_time),
                self.from_lsn,
                crate::text::ts(&t),
                l
            ),
            _ => format!(
                "{} ({}) to — (the WAL it needs is not archived)",
                crate::text::ts(&self.from_time),
                self.from_lsn
            ),
        }
    }
}

/// The window `b` opens given what the archive holds.
pub fn window(b: &BaseSummary, a: &Archive) -> Window {
    let start_seg = b.start_lsn.segno();
    let end = a.reachable_end(start_seg).filter(|e| *e >= b.stop_lsn);
    // The newest segment time counts only when it lies on the unbroken run.
    let to_time = match (&a.newest, end) {
        (Some((n, t)), Some(e)) => {
            if parse_segment(n).is_some_and(|(_, s)| (s + 1) * SEG_SIZE <= e.0) {
                Some(*t)
            } else {
                Some(b.stopped_at)
            }
        }
        _ => None,
    };
    Window {
        from_time: b.stopped_at,
        from_lsn: b.stop_lsn,
        to_time: to_time.map(|t| t.max(b.stopped_at)),
        to_lsn: end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_and_names() {
        let l = Lsn::parse("0/2000028").unwrap();
        assert_eq!(l.to_string(), "0/2000028");
        assert_eq!(l.segment(1), "000000010000000000000002");
        assert_eq!(
            Lsn::parse("1/FF000000").unwrap().segment(3),
            "0000000300000001000000FF"
        );
        assert_eq!(
            backup_file_name(1, l),
            "000000010000000000000002.00000028.backup"
        );
        assert_eq!(parse_segment("0000000300000001000000FF"), Some((3, 511)));
        assert!(Lsn::parse("12").is_err());
        assert!(Lsn::parse("0/xyz").is_err());
    }

    #[test]
    fn wal_names_from_keys() {
        assert_eq!(
            wal_name_of("wal/1/00000001/000000010000000000000002").as_deref(),
            Some("000000010000000000000002")
        );
        assert_eq!(
            wal_name_of("wal/1/00000001/000000010000000000000002.opsbak").as_deref(),
            Some("000000010000000000000002")
        );
        assert_eq!(
            wal_name_of("wal/1/1/000000010000000000000002.00000028.backup.zst").as_deref(),
            Some("000000010000000000000002.00000028.backup")
        );
        assert_eq!(
            wal_name_of("wal/1/2/00000002.history").as_deref(),
            Some("00000002.history")
        );
        assert_eq!(wal_name_of("wal/1/2/readme.txt"), None);
    }

    #[test]
    fn reachable_end_stops_at_a_gap() {
        let mut a = Archive::default();
        for s in [2u64, 3, 4, 6] {
            a.segments.insert((1, s));
        }
        assert_eq!(a.reachable_end(2), Some(Lsn(5 * SEG_SIZE)));
        assert_eq!(a.first_gap_after(2), Some(5));
        assert_eq!(a.reachable_end(5), None);
    }
}

/// A base backup as `backup list` and the dashboard show it: the summary, the recovery
/// window it opens, its verify/drill status.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub kind: &'static str,
    #[serde(flatten)]
    pub summary: BaseSummary,
    pub window: Window,
    pub status: BaseStatus,
}

/// The base backups of a repository with their windows and status, oldest first (the
/// archive of each cluster listed once).
pub fn listed(repo: &Repository) -> Result<Vec<Listed>, Error> {
    let mut out = Vec::new();
    let mut archives: std::collections::BTreeMap<String, Archive> = Default::default();
    for b in base_backups(repo)? {
        let sysid = b.summary.system_identifier.clone();
        if !archives.contains_key(&sysid) {
            archives.insert(sysid.clone(), archive(repo, &sysid)?);
        }
        let window = window(&b.summary, &archives[&sysid]);
        let status = read_status(repo, &b);
        out.push(Listed {
            kind: "base",
            summary: b.summary,
            window,
            status,
        });
    }
    Ok(out)
}
