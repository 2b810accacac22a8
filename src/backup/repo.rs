//! The backup repository on disk: `DIR/<database>/<id>.opsbak` (the encrypted backup),
//! `<id>.json` (plaintext summary) and `<id>.status.json` (verified/drilled status), the
//! listing, look-up by id, and the retention plan.
//!
//! A backup exists for `list` only when its summary and its file are both in place: the
//! file is renamed into place first, the summary written last, so a killed run leaves at
//! most a hidden temporary file or an orphan file without summary, never a listed backup.
//! Temporary files are locked by their writer ([`crate::fsutil::TempFile`]): `list` counts
//! them and `prune` removes those whose writer is gone.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use super::format::Header;
use super::keys::KeyMaterial;
use super::manifest::Summary;
use crate::error::Error;
use crate::policy::Retention;

pub const EXT: &str = "opsbak";

/// Verification and drill status of one backup (rewritten atomically).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub verified_at: Option<DateTime<Utc>>,
    pub verify_ok: Option<bool>,
    pub verify_reason: Option<String>,
    pub drilled_at: Option<DateTime<Utc>>,
    pub drill_ok: Option<bool>,
    pub drill_rto_secs: Option<f64>,
    pub drill_tables: Option<usize>,
    pub drill_rows: Option<i64>,
    #[serde(default)]
    pub drill_mismatches: Vec<String>,
}

impl Status {
    /// A backup counts as verified when its last verify or last drill succeeded.
    pub fn is_verified(&self) -> bool {
        self.verify_ok == Some(true) || self.drill_ok == Some(true)
    }
}

/// One listed backup.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub summary: Summary,
    pub path: PathBuf,
    pub status: Status,
    /// The repositories holding a copy (filled in when several are listed together).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// The object's key in its repository (`<database>/<id>.opsbak`).
    #[serde(skip)]
    pub key: String,
}

pub fn db_dir(dir: &Path, database: &str) -> PathBuf {
    dir.join(sanitize(database))
}

/// A database name as a directory name (no separators, no leading dot).
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        format!("_{s}")
    } else {
        s
    }
}

pub fn backup_path(dir: &Path, database: &str, id: &str) -> PathBuf {
    db_dir(dir, database).join(format!("{id}.{EXT}"))
}

pub fn summary_path(file: &Path) -> PathBuf {
    file.with_extension("json")
}

pub fn status_path(file: &Path) -> PathBuf {
    file.with_extension("status.json")
}

/// A new backup id: UTC start time, sortable, plus 4 random hex digits.
pub fn new_id(now: DateTime<Utc>) -> String {
    let r: u16 = rand::random();
    format!("{}-{r:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

pub fn read_summary(file: &Path) -> Result<Summary, Error> {
    let p = summary_path(file);
    let text = std::fs::read_to_string(&p).map_err(Error::io(format!(
        "cannot read backup summary {}",
        p.display()
    )))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Verify(format!("backup summary {} is malformed: {e}", p.display())))
}

pub fn read_status(file: &Path) -> Status {
    std::fs::read_to_string(status_path(file))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn write_summary(file: &Path, s: &Summary) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(s).expect("summary serialises") + "\n";
    crate::fsutil::write_atomic(&summary_path(file), text.as_bytes(), 0o600)
}

/// Updates the status file of a backup with `f`.
pub fn update_status(file: &Path, f: impl FnOnce(&mut Status)) -> Result<Status, Error> {
    let mut st = read_status(file);
    f(&mut st);
    let text = serde_json::to_string_pretty(&st).expect("status serialises") + "\n";
    crate::fsutil::write_atomic(&status_path(file), text.as_bytes(), 0o600)?;
    Ok(st)
}

/// Every complete backup under `dir` (all databases), oldest first.
pub fn list(dir: &Path) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Config(format!(
                "backup directory {} does not exist",
                dir.display()
            )))
        }
        Err(e) => return Err(Error::io(format!("cannot read {}", dir.display()))(e)),
    };
    for db in rd.flatten() {
        if !db.path().is_dir() || db.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        out.extend(list_db_dir(&db.path())?);
    }
    out.sort_by(|a, b| {
        (a.summary.started_at, &a.summary.id).cmp(&(b.summary.started_at, &b.summary.id))
    });
    Ok(out)
}

/// The complete backups of one database directory.
pub fn list_db_dir(dbdir: &Path) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dbdir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("cannot read {}", dbdir.display()))(e)),
    };
    for f in rd.flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(&format!(".{EXT}")) {
            continue;
        }
        let path = f.path();
        let Ok(summary) = read_summary(&path) else {
            tracing::debug!("{} has no summary: incomplete, not listed", path.display());
            continue;
        };
        let key = format!(
            "{}/{name}",
            dbdir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        out.push(Entry {
            status: read_status(&path),
            summary,
            path,
            repositories: Vec::new(),
            key,
        });
    }
    out.sort_by(|a, b| {
        (a.summary.started_at, &a.summary.id).cmp(&(b.summary.started_at, &b.summary.id))
    });
    Ok(out)
}

/// Resolves FILE|ID: an existing path is a file; otherwise an id under `dir`.
pub fn resolve(arg: &str, dir: Option<&Path>) -> Result<PathBuf, Error> {
    let p = Path::new(arg);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let Some(dir) = dir else {
        return Err(Error::Config(format!(
            "{arg} is not a file; to look up a backup id, give --dir DIR"
        )));
    };
    let hits: Vec<PathBuf> = list(dir)?
        .into_iter()
        .filter(|e| e.summary.id == arg)
        .map(|e| e.path)
        .collect();
    match hits.len() {
        1 => Ok(hits.into_iter().next().unwrap()),
        0 => Err(Error::Config(format!(
            "no backup file or backup id {arg:?} under {} (see `opsctl backup list --dir {}`)",
            dir.display(),
            dir.display()
        ))),
        _ => Err(Error::Config(format!(
            "backup id {arg:?} exists for several databases under {}; give the file path",
            dir.display()
        ))),
    }
}

/// A temporary file in a database directory: a backup, summary or status being written,
/// or left by a writer that is gone (a killed `create`).
#[derive(Debug, Clone, Serialize)]
pub struct TempEntry {
    pub path: PathBuf,
    /// The database directory's name.
    pub database: String,
    pub name: String,
    pub bytes: u64,
    /// true: its writer holds it; false: its writer is gone; null: cannot tell (no locks).
    pub in_use: Option<bool>,
}

/// The temporary files of one database directory.
fn temps_of(dbdir: &Path) -> Vec<TempEntry> {
    let Ok(rd) = std::fs::read_dir(dbdir) else {
        return Vec::new();
    };
    let database = dbdir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out: Vec<TempEntry> = rd
        .flatten()
        .filter_map(|f| {
            let name = f.file_name().to_string_lossy().into_owned();
            if !crate::fsutil::is_temp_name(&name) || !f.file_type().ok()?.is_file() {
                return None;
            }
            let path = f.path();
            Some(TempEntry {
                in_use: crate::fsutil::temp_in_use(&path),
                bytes: f.metadata().map(|m| m.len()).unwrap_or(0),
                database: database.clone(),
                name,
                path,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every temporary file under `dir` (all databases).
pub fn temp_files(dir: &Path) -> Result<Vec<TempEntry>, Error> {
    let rd = std::fs::read_dir(dir).map_err(Error::io(format!("cannot read {}", dir.display())))?;
    let mut dbdirs: Vec<PathBuf> = rd
        .flatten()
        .filter(|d| d.path().is_dir() && !d.file_name().to_string_lossy().starts_with('.'))
        .map(|d| d.path())
        .collect();
    dbdirs.sort();
    Ok(dbdirs.iter().flat_map(|d| temps_of(d)).collect())
}

/// Removes a temporary file if its writer is gone (checked again under its lock).
pub fn remove_temp(t: &TempEntry) -> Result<bool, Error> {
    crate::fsutil::remove_abandoned_temp(&t.path)
}

/// Removes the temporary files of one database directory whose writer is gone.
pub fn remove_stale_temps(dbdir: &Path) {
    for t in temps_of(dbdir) {
        if t.in_use == Some(false) && matches!(remove_temp(&t), Ok(true)) {
            tracing::info!("removed {}: its writer is gone", t.name);
        }
    }
}

/// The decision about one backup.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decision {
    pub id: String,
    pub database: String,
    pub started_at: DateTime<Utc>,
    pub keep: bool,
    /// Why kept (all reasons), or why deleted.
    pub reasons: Vec<String>,
}

/// Retention plan of the backups of ONE database, given `now` (an injectable clock):
/// keep the newest `keep_last`; the newest backup of each of the last `daily` days,
/// `weekly` ISO weeks and `monthly` months (UTC); and always the newest verified backup.
pub fn prune_plan(
    backups: &[(String, DateTime<Utc>, bool)],
    policy: &Retention,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut sorted: Vec<&(String, DateTime<Utc>, bool)> = backups.iter().collect();
    sorted.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, b) in sorted.iter().enumerate() {
        if i < policy.keep_last as usize {
            reasons
                .entry(&b.0)
                .or_default()
                .push(format!("one of the newest {}", policy.keep_last));
        }
    }
    let today = now.date_naive();
    let mut bucket = |label: &str, key: &dyn Fn(DateTime<Utc>) -> Option<String>| {
        let mut seen = std::collections::BTreeSet::new();
        for b in &sorted {
            if b.1 > now {
                continue;
            }
            if let Some(k) = key(b.1) {
                if seen.insert(k.clone()) {
                    reasons
                        .entry(&b.0)
                        .or_default()
                        .push(format!("newest of {label} {k}"));
                }
            }
        }
    };
    let daily = policy.daily as i64;
    bucket("day", &|t| {
        let age = (today - t.date_naive()).num_days();
        (age < daily).then(|| t.format("%Y-%m-%d").to_string())
    });
    let weekly = policy.weekly as i64;
    let this_week = now.iso_week();
    let week_start =
        |y: i32, w: u32| chrono::NaiveDate::from_isoywd_opt(y, w, chrono::Weekday::Mon);
    bucket("ISO week", &|t| {
        let w = t.iso_week();
        let a = week_start(this_week.year(), this_week.week())?;
        let b = week_start(w.year(), w.week())?;
        let age = (a - b).num_days() / 7;
        (age < weekly).then(|| format!("{}-W{:02}", w.year(), w.week()))
    });
    let monthly = policy.monthly as i64;
    bucket("month", &|t| {
        let age = (now.year() as i64 * 12 + now.month0() as i64)
            - (t.year() as i64 * 12 + t.month0() as i64);
        (age < monthly).then(|| t.format("%Y-%m").to_string())
    });
    if let Some(v) = sorted.iter().find(|b| b.2) {
        reasons
            .entry(&v.0)
            .or_default()
            .push("the newest verified backup".into());
    }
    let mut out: Vec<Decision> = sorted
        .iter()
        .map(|b| {
            let r = reasons.get(b.0.as_str()).cloned().unwrap_or_default();
            Decision {
                id: b.0.clone(),
                database: String::new(),
                started_at: b.1,
                keep: !r.is_empty(),
                reasons: if r.is_empty() {
                    vec!["outside every retention window".into()]
                } else {
                    r
                },
            }
        })
        .collect();
    out.reverse();
    out
}

/// Rewraps the data key of a backup for `new_keys` (added, or replacing all others):
/// a new header, the encrypted body copied byte for byte, written to a 0600 temporary
/// file, fsynced and renamed over the old file. The summary's key ids follow.
///
/// Not a revocation (see [`super::format::rekey_header`]): the data key and body stay, so
/// a removed key still opens earlier copies of the file. [`reencrypt`] revokes.
pub fn rekey(
    file: &Path,
    open_keys: &[KeyMaterial],
    new_keys: &[KeyMaterial],
    replace: bool,
) -> Result<Header, Error> {
    let mut f = File::open(file).map_err(Error::io(format!("cannot open {}", file.display())))?;
    let (bytes, old_len, header) = {
        let mut r = BufReader::new(&mut f);
        super::format::rekey_header(&mut r, open_keys, new_keys, replace)?
    };
    f.seek(SeekFrom::Start(old_len))
        .map_err(Error::io(format!("cannot read {}", file.display())))?;
    let tmp = crate::fsutil::TempFile::create(file, 0o600)?;
    let ctx = || format!("cannot write {}", tmp.path.display());
    let mut w = BufWriter::with_capacity(1 << 20, tmp.file());
    w.write_all(&bytes).map_err(Error::io(ctx()))?;
    let body = std::io::copy(&mut f, &mut w).map_err(Error::io(ctx()))?;
    w.flush().map_err(Error::io(ctx()))?;
    drop(w);
    install(tmp, file, &header, bytes.len() as u64 + body)?;
    Ok(header)
}

/// Re-encrypts a backup for `new_keys` only: a fresh data key, the body decrypted and
/// encrypted again as a stream (memory stays a few 64 KiB chunks) into a locked 0600
/// temporary file, which is then read back whole with `new_keys` and must hold the same
/// data (length and SHA-256) and manifest before it is fsynced and renamed over the old
/// one. The old keys then open neither the file nor its body under an old header.
pub fn reencrypt(
    file: &Path,
    open_keys: &[KeyMaterial],
    new_keys: &[KeyMaterial],
) -> Result<Header, Error> {
    let input = File::open(file).map_err(Error::io(format!("cannot open {}", file.display())))?;
    let tmp = crate::fsutil::TempFile::create(file, 0o600)?;
    let ctx = || format!("cannot write {}", tmp.path.display());
    let out = BufWriter::with_capacity(1 << 20, tmp.file());
    let (out, header, written) = super::format::reencrypt(
        BufReader::with_capacity(1 << 20, input),
        open_keys,
        out,
        new_keys,
    )?;
    out.into_inner()
        .map_err(|e| Error::io(ctx())(e.into_error()))?;
    let again = File::open(&tmp.path).map_err(Error::io(format!(
        "cannot read back {}",
        tmp.path.display()
    )))?;
    let (_, read_back) =
        super::format::contents(BufReader::with_capacity(1 << 20, again), new_keys).map_err(
            |e| {
                Error::Verify(format!(
                    "the re-encrypted file does not read back ({e}); {} was left as it was",
                    file.display()
                ))
            },
        )?;
    if read_back != written {
        return Err(Error::Verify(format!(
            "the re-encrypted file reads back different data than it was given; {} was left \
             as it was",
            file.display()
        )));
    }
    let total = tmp.file().metadata().map_err(Error::io(ctx()))?.len();
    install(tmp, file, &header, total)?;
    Ok(header)
}

/// Renames a written temporary file over a backup and updates its summary's key ids and
/// size.
fn install(
    tmp: crate::fsutil::TempFile,
    file: &Path,
    header: &Header,
    total: u64,
) -> Result<(), Error> {
    tmp.file()
        .sync_all()
        .map_err(Error::io(format!("cannot write {}", tmp.path.display())))?;
    tmp.persist()?;
    if let Ok(mut s) = read_summary(file) {
        s.key_ids = header.key_ids();
        s.file_bytes = total;
        write_summary(file, &s)?;
    }
    Ok(())
}

/// Deletes a backup: file, summary first (so it disappears from `list` at once), status.
pub fn delete(file: &Path) -> Result<(), Error> {
    for p in [summary_path(file), file.to_path_buf(), status_path(file)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("cannot delete {}", p.display()))(e)),
        }
    }
    crate::fsutil::sync_dir(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn kept(plan: &[Decision]) -> Vec<String> {
        plan.iter()
            .filter(|d| d.keep)
            .map(|d| d.id.clone())
            .collect()
    }

    #[test]
    fn prune_plan_on_a_fixed_clock() {
        // Two backups a day (02:00 and 14:00) for 90 days up to 2026-03-31.
        let now = t(2026, 3, 31, 20);
        let mut backups = Vec::new();
        let mut day = t(2026, 1, 1, 0);
        while day <= now {
            for h in [2, 14] {
                let at = day + chrono::Duration::hours(h);
                backups.push((at.format("%m%d-%H").to_string(), at, false));
            }
            day += chrono::Duration::days(1);
        }
        let policy = Retention {
            keep_last: 3,
            daily: 7,
            weekly: 4,
            monthly: 3,
        };
        let plan = prune_plan(&backups, &policy, now);
        let keep = kept(&plan);
        // Newest 3: 03-31 14h, 03-31 02h, 03-30 14h.
        for id in ["0331-14", "0331-02", "0330-14"] {
            assert!(keep.contains(&id.to_string()), "{id} kept: {keep:?}");
        }
        // Daily: the newest of each of the last 7 days (03-25 .. 03-31).
        for d in 25..=30 {
            assert!(keep.contains(&format!("03{d:02}-14")), "day {d}");
        }
        assert!(!keep.contains(&"0325-02".to_string()));
        assert!(!keep.contains(&"0324-14".to_string()) || keep.contains(&"0322-14".to_string()));
        // Weekly: ISO weeks 14 (03-30..), 13 (03-23..03-29: newest 03-29 14h), 12 (03-22), 11 (03-15).
        assert!(keep.contains(&"0322-14".to_string()));
        assert!(keep.contains(&"0315-14".to_string()));
        assert!(!keep.contains(&"0308-14".to_string()));
        // Monthly: 2026-03, 2026-02 (newest 02-28 14h), 2026-01 (01-31 14h).
        assert!(keep.contains(&"0228-14".to_string()));
        assert!(keep.contains(&"0131-14".to_string()));
        assert!(!keep.contains(&"0130-14".to_string()));
        let total = keep.len();
        // 3 newest overlap daily; 7 days + weeks 12, 11 + months 02, 01.
        assert_eq!(total, 7 + 1 + 2 + 2, "{keep:?}");
        // Every deleted one says why.
        assert!(plan
            .iter()
            .filter(|d| !d.keep)
            .all(|d| d.reasons == ["outside every retention window"]));
    }

    #[test]
    fn newest_verified_backup_is_never_deleted() {
        let now = t(2026, 6, 1, 0);
        let backups = vec![
            ("old-verified".to_string(), t(2025, 1, 1, 0), true),
            ("new1".to_string(), t(2026, 5, 31, 0), false),
            ("new2".to_string(), t(2026, 5, 31, 1), false),
        ];
        let none = Retention {
            keep_last: 1,
            daily: 0,
            weekly: 0,
            monthly: 0,
        };
        let plan = prune_plan(&backups, &none, now);
        let keep = kept(&plan);
        assert_eq!(keep, vec!["old-verified".to_string(), "new2".to_string()]);
        let d = plan.iter().find(|d| d.id == "old-verified").unwrap();
        assert_eq!(d.reasons, vec!["the newest verified backup".to_string()]);
    }
}
