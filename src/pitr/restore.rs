//! `opsctl restore --pitr`: picks a base backup for the target, refuses a target outside
//! the recovery window before anything is written, authenticates the whole base backup
//! (every chunk, the sealed manifest, every file's checksum), then unpacks it into an
//! empty or absent data directory (checking each file again as it is written), writes
//! `restore_command` (this binary, the policy), the recovery target and
//! `recovery.signal`; optionally starts the server as the directory's owner and waits for
//! recovery to reach the target.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::basebackup::codec_of;
use super::catalog::{self, Archive, BaseEntry, BaseManifest, Lsn, Window};
use super::tarscan::{self, TarScan};
use crate::backup::keys::KeyMaterial;
use crate::backup::Progress;
use crate::error::Error;
use crate::storage::{sealed, Repository};

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Time(DateTime<Utc>),
    Lsn(Lsn),
    Xid(u64),
    Name(String),
    Latest,
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Time(t) => format!("time {}", t.to_rfc3339()),
            Target::Lsn(l) => format!("LSN {l}"),
            Target::Xid(x) => format!("transaction {x}"),
            Target::Name(n) => format!("restore point {n:?}"),
            Target::Latest => "the end of the archived WAL".into(),
        }
    }
}

/// What the server does at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Promote,
    Pause,
    Shutdown,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Pause => "pause",
            Action::Shutdown => "shutdown",
        }
    }
}

/// The base backup chosen for a target and the window it opens.
#[derive(Debug, Clone)]
pub struct Choice {
    pub base: BaseEntry,
    pub archive: Archive,
    pub window: Window,
}

/// Chooses the newest base backup before the target (or `backup_id`), and refuses a
/// target outside the recovery window, naming it.
pub fn choose(
    repo: &Repository,
    target: &Target,
    backup_id: Option<&str>,
) -> Result<Choice, Error> {
    let all = catalog::base_backups(repo)?;
    if all.is_empty() {
        return Err(Error::Config(format!(
            "no base backup in repository {}: take one with opsctl basebackup",
            repo.display()
        )));
    }
    let newest_sysid = all
        .last()
        .expect("non-empty")
        .summary
        .system_identifier
        .clone();
    let base = match backup_id {
        Some(id) => catalog::find_base(repo, id)?,
        None => {
            let of_cluster: Vec<&BaseEntry> = all
                .iter()
                .filter(|b| b.summary.system_identifier == newest_sysid)
                .collect();
            let pick = match target {
                Target::Time(t) => of_cluster.iter().rev().find(|b| b.summary.stopped_at <= *t),
                Target::Lsn(l) => of_cluster.iter().rev().find(|b| b.summary.stop_lsn <= *l),
                _ => of_cluster.last(),
            };
            match pick {
                Some(b) => (*b).clone(),
                None => {
                    let oldest = of_cluster[0];
                    let a = catalog::archive(repo, &newest_sysid)?;
                    let w = catalog::window(&oldest.summary, &a);
                    return Err(Error::Config(format!(
                        "the target {} is before the oldest base backup ({}, which ends at {}): \
                         nothing can be recovered to it. The recovery window is {}",
                        target.describe(),
                        oldest.summary.id,
                        crate::text::ts(&oldest.summary.stopped_at),
                        w.describe()
                    )));
                }
            }
        }
    };
    let archive = catalog::archive(repo, &base.summary.system_identifier)?;
    let window = catalog::window(&base.summary, &archive);
    let Some(end_lsn) = window.to_lsn else {
        return Err(Error::Verify(format!(
            "base backup {} needs WAL from {} that is not in the archive ({}); it cannot be \
             made consistent",
            base.summary.id,
            base.summary.start_wal,
            repo.display()
        )));
    };
    let outside = |why: &str| {
        Err(Error::Config(format!(
            "the target {} is {why}; the recovery window of base backup {} is {}",
            target.describe(),
            base.summary.id,
            window.describe()
        )))
    };
    match target {
        Target::Time(t) if *t < base.summary.stopped_at => {
            return outside("before the end of the base backup")
        }
        Target::Time(t) if window.to_time.is_some_and(|e| *t > e) => {
            return outside("after the newest archived WAL")
        }
        Target::Lsn(l) if *l < base.summary.stop_lsn => {
            return outside("before the end of the base backup")
        }
        Target::Lsn(l) if *l > end_lsn => return outside("after the newest archived WAL"),
        _ => {}
    }
    Ok(Choice {
        base,
        archive,
        window,
    })
}

/// Refuses a data directory that is in use or not empty; creates an absent one (0700).
/// Returns whether it existed.
pub fn check_pgdata(dir: &Path) -> Result<bool, Error> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            if dir.join("postmaster.pid").exists() {
                return Err(Error::Config(format!(
                    "{} is the data directory of a running server (postmaster.pid is there): \
                     stop it or choose another directory",
                    dir.display()
                )));
            }
            let n = rd.count();
            if n > 0 {
                return Err(Error::Config(format!(
                    "{} is not empty ({}): restore --pitr writes only into an empty or absent \
                     directory",
                    dir.display(),
                    crate::text::plural(n as u64, "entry")
                )));
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)
                .map_err(Error::io(format!("cannot create {}", dir.display())))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(Error::io(
                format!("cannot set the mode of {}", dir.display()),
            ))?;
            Ok(false)
        }
        Err(e) => Err(Error::io(format!("cannot read {}", dir.display()))(e)),
    }
}

fn open_tar(
    repo: &Repository,
    b: &BaseEntry,
    keys: &[KeyMaterial],
) -> Result<impl Read + use<>, Error> {
    let s = sealed::open(repo, &b.tar_key(), keys)?;
    let codec = codec_of(&s.header.content)?;
    sealed::decompress(s, codec)
}

/// Reads the whole base backup: every chunk authenticated, the sealed manifest checked
/// against the summary, every file's checksum against the manifest. Writes nothing.
pub fn authenticate(
    repo: &Repository,
    b: &BaseEntry,
    keys: &[KeyMaterial],
    progress: &Arc<dyn Progress>,
) -> Result<BaseManifest, Error> {
    let s = sealed::open(repo, &b.tar_key(), keys)?;
    let codec = codec_of(&s.header.content)?;
    let mut dec = sealed::decompress(s, codec)?;
    let mut scan = TarScan::default();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = dec
            .read(&mut buf)
            .map_err(|e| Error::Verify(format!("base backup {}: {e}", b.summary.id)))?;
        if n == 0 {
            break;
        }
        scan.feed(&buf[..n]);
        hash.update(&buf[..n]);
        total += n as u64;
        progress.add(n as u64);
    }
    let trailer = sealed::finish(dec)
        .map_err(|e| Error::Verify(format!("base backup {}: {e}", b.summary.id)))?;
    let m: BaseManifest = serde_json::from_slice(&trailer).map_err(|e| {
        Error::Verify(format!(
            "base backup {}: the sealed manifest is unreadable: {e}",
            b.summary.id
        ))
    })?;
    let bad = |what: String| Error::Verify(format!("base backup {}: {what}", b.summary.id));
    let (ms, ps) = (&m.summary, &b.summary);
    if ms.id != ps.id
        || ms.system_identifier != ps.system_identifier
        || ms.start_lsn != ps.start_lsn
        || ms.stop_lsn != ps.stop_lsn
        || ms.timeline != ps.timeline
    {
        return Err(bad(
            "summary.json does not match the sealed manifest (it was altered, or belongs to another backup)".into(),
        ));
    }
    if let Some(e) = scan.error {
        return Err(bad(format!("the tar stream is damaged: {e}")));
    }
    if total != ms.tar_bytes || hex::encode(hash.finalize()) != ms.tar_sha256 {
        return Err(bad(
            "the tar stream does not match its sealed checksum".into()
        ));
    }
    if scan.files != m.file_list {
        return Err(bad("the files do not match the sealed manifest".into()));
    }
    Ok(m)
}

/// Unpacks the base backup into `dir`, checking each file against the manifest.
pub fn unpack(
    repo: &Repository,
    b: &BaseEntry,
    keys: &[KeyMaterial],
    manifest: &BaseManifest,
    dir: &Path,
    progress: &Arc<dyn Progress>,
) -> Result<u64, Error> {
    let mut r = open_tar(repo, b, keys)?;
    let mut expected = manifest.file_list.iter();
    let mut block = [0u8; 512];
    let mut buf = vec![0u8; 256 * 1024];
    let mut files = 0u64;
    let mut long_name: Option<String> = None;
    let tamper = |what: String| Error::Verify(format!("base backup {}: {what}", b.summary.id));
    loop {
        r.read_exact(&mut block)
            .map_err(|e| tamper(format!("tar stream ends early: {e}")))?;
        let Some(mut h) = tarscan::parse_header(&block).map_err(tamper)? else {
            break;
        };
        if let Some(n) = long_name.take() {
            h.name = n;
        }
        let name = h
            .name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let rel =
            safe_rel(&name).ok_or_else(|| tamper(format!("unsafe path {name:?} in the tar")))?;
        let path = dir.join(&rel);
        let pad = tarscan::padded(h.size) - h.size;
        match h.typeflag {
            b'L' => {
                let mut v = vec![0u8; h.size as usize];
                r.read_exact(&mut v).map_err(|e| tamper(e.to_string()))?;
                let end = v.iter().position(|x| *x == 0).unwrap_or(v.len());
                long_name = Some(String::from_utf8_lossy(&v[..end]).into_owned());
            }
            b'5' => {
                if !name.is_empty() {
                    fs::create_dir_all(&path)
                        .map_err(Error::io(format!("cannot create {}", path.display())))?;
                    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(h.mode & 0o7777));
                }
            }
            b'2' => {
                return Err(Error::Config(format!(
                    "the base backup has a symbolic link {name} → {}: tablespaces other than \
                     the default are not supported",
                    h.linkname
                )));
            }
            b'0' | 0 | b'7' => {
                let want = expected
                    .next()
                    .filter(|e| e.path == name && e.size == h.size)
                    .ok_or_else(|| {
                        tamper(format!(
                            "{name} is not the next file of the sealed manifest"
                        ))
                    })?;
                if let Some(p) = path.parent() {
                    fs::create_dir_all(p)
                        .map_err(Error::io(format!("cannot create {}", p.display())))?;
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(h.mode & 0o7777 | 0o600)
                    .open(&path)
                    .map_err(Error::io(format!("cannot create {}", path.display())))?;
                let mut left = h.size;
                let mut hash = Sha256::new();
                while left > 0 {
                    let n = (left as usize).min(buf.len());
                    r.read_exact(&mut buf[..n])
                        .map_err(|e| tamper(format!("{name}: {e}")))?;
                    hash.update(&buf[..n]);
                    f.write_all(&buf[..n])
                        .map_err(Error::io(format!("cannot write {}", path.display())))?;
                    left -= n as u64;
                    progress.add(n as u64);
                }
                if hex::encode(hash.finalize()) != want.sha256 {
                    return Err(tamper(format!("{name} does not match its sealed checksum")));
                }
                f.sync_all()
                    .map_err(Error::io(format!("cannot sync {}", path.display())))?;
                files += 1;
            }
            other => {
                return Err(tamper(format!(
                    "unexpected tar entry type {:?} for {name}",
                    other as char
                )))
            }
        }
        let mut skip = pad;
        while skip > 0 {
            let n = (skip as usize).min(buf.len());
            r.read_exact(&mut buf[..n])
                .map_err(|e| tamper(e.to_string()))?;
            skip -= n as u64;
        }
    }
    if expected.next().is_some() {
        return Err(tamper(
            "the tar holds fewer files than the sealed manifest".into(),
        ));
    }
    crate::fsutil::sync_dir(dir)?;
    Ok(files)
}

fn safe_rel(name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return Some(PathBuf::new());
    }
    if name.starts_with('/') || name.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    Some(PathBuf::from(name))
}

/// The recovery settings written into `postgresql.auto.conf`.
pub struct RecoveryConf {
    /// The absolute path of opsctl and of the policy (and key file when given).
    pub opsctl: PathBuf,
    pub policy: PathBuf,
    pub key_file: Option<PathBuf>,
    /// `--repo` for `wal fetch` when the repository is not the policy's first.
    pub repo: Option<String>,
    pub target: Target,
    pub action: Action,
    pub port: Option<u16>,
    /// Turn archiving off in the restored server (drills: never push into the source's archive).
    pub archive_off: bool,
    pub comment: String,
}

fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn shell_word(p: &Path) -> Result<String, Error> {
    let s = p.display().to_string();
    if s.contains(['"', '$', '`', '\\', '\'', '\n']) {
        return Err(Error::Config(format!(
            "{s:?}: paths with quotes, $, ` or backslashes cannot go into restore_command"
        )));
    }
    Ok(format!("\"{s}\""))
}

/// The lines added to postgresql.auto.conf.
pub fn recovery_lines(c: &RecoveryConf) -> Result<String, Error> {
    let mut cmd = format!(
        "{} wal fetch %f %p --policy {}",
        shell_word(&c.opsctl)?,
        shell_word(&c.policy)?
    );
    if let Some(k) = &c.key_file {
        cmd.push_str(&format!(" --key-file {}", shell_word(k)?));
    }
    if let Some(r) = &c.repo {
        cmd.push_str(&format!(" --repo {}", shell_word(Path::new(r))?));
    }
    let mut s = format!(
        "\n# {}\nrestore_command = {}\n",
        c.comment,
        conf_quote(&cmd)
    );
    match &c.target {
        Target::Time(t) => s.push_str(&format!(
            "recovery_target_time = {}\n",
            conf_quote(&t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        )),
        Target::Lsn(l) => s.push_str(&format!("recovery_target_lsn = '{l}'\n")),
        Target::Xid(x) => s.push_str(&format!("recovery_target_xid = '{x}'\n")),
        Target::Name(n) => s.push_str(&format!("recovery_target_name = {}\n", conf_quote(n))),
        Target::Latest => {}
    }
    if c.target != Target::Latest {
        s.push_str(&format!("recovery_target_action = '{}'\n", c.action.name()));
    }
    if let Some(p) = c.port {
        s.push_str(&format!("port = {p}\n"));
    }
    if c.archive_off {
        s.push_str("archive_mode = off\n");
    }
    Ok(s)
}

/// Writes the recovery settings and `recovery.signal`.
pub fn write_recovery(dir: &Path, c: &RecoveryConf) -> Result<(), Error> {
    let lines = recovery_lines(c)?;
    let auto = dir.join("postgresql.auto.conf");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&auto)
        .map_err(Error::io(format!("cannot open {}", auto.display())))?;
    f.write_all(lines.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(Error::io(format!("cannot write {}", auto.display())))?;
    let sig = dir.join("recovery.signal");
    fs::File::create(&sig)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(format!("cannot write {}", sig.display())))?;
    // The source's log files and pid are not the restored server's.
    for stale in ["postmaster.pid", "postmaster.opts"] {
        let _ = fs::remove_file(dir.join(stale));
    }
    crate::fsutil::sync_dir(dir)
}

/// Gives `dir` and everything in it to `uid:gid` (a root-run restore for a server that runs
/// as its own user).
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .map_err(Error::io(format!("cannot chown {}", p.display())))?;
        if p.is_dir() && !p.is_symlink() {
            for e in fs::read_dir(&p).map_err(Error::io(format!("cannot read {}", p.display())))? {
                stack.push(
                    e.map_err(Error::io("cannot read a directory entry"))?
                        .path(),
                );
            }
        }
    }
    Ok(())
}

/// (uid, gid, name) of the `postgres` user, if there is one.
pub fn postgres_user() -> Option<(u32, u32, String)> {
    let name = std::ffi::CString::new("postgres").ok()?;
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some((uid, gid, "postgres".into()))
}

/// The user name of a uid.
pub fn user_name(uid: u32) -> Option<String> {
    let pw = unsafe { libc::getpwuid(uid) };
    if pw.is_null() {
        return None;
    }
    let c = unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) };
    Some(c.to_string_lossy().into_owned())
}

/// What recovery reached, read from the server log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reached {
    /// `recovery stopping …` (the target reached), or the end of WAL for --latest.
    pub stop_line: Option<String>,
    pub lsn: Option<String>,
    pub time: Option<String>,
    /// promoted, paused or shut down.
    pub state: String,
    pub recovery_secs: f64,
}

/// Starts the server of `dir` (as `user` when running as root) with its log at `log`,
/// and waits up to `timeout` for recovery to reach the target.
pub fn start_and_wait(
    bindir: &Path,
    dir: &Path,
    log: &Path,
    run_as: Option<&str>,
    action: Action,
    timeout: Duration,
) -> Result<Reached, Error> {
    let pg_ctl = bindir.join("pg_ctl");
    let mut cmd = match run_as {
        Some(u) => {
            let mut c = crate::childenv::command("runuser");
            c.args(["-u", u, "--"]).arg(&pg_ctl);
            c
        }
        None => crate::childenv::command(&pg_ctl),
    };
    cmd.arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(log)
        .args(["-W", "start"])
        .stdin(std::process::Stdio::null());
    // Only what this start appends to the log counts: the log may already hold the lines
    // of an earlier recovery (a base backup of a cluster that was itself restored with
    // --start carries that data directory's opsctl-recovery.log), which would otherwise
    // read as this recovery having finished at once.
    let skip = fs::metadata(log).map(|m| m.len() as usize).unwrap_or(0);
    let t0 = Instant::now();
    let out = cmd
        .output()
        .map_err(Error::io(format!("cannot run {}", pg_ctl.display())))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    let deadline = t0 + timeout;
    let mut seen_pid = false;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let text = fs::read(log)
            .map(|b| String::from_utf8_lossy(b.get(skip..).unwrap_or_default()).into_owned())
            .unwrap_or_default();
        let pid_exists = dir.join("postmaster.pid").exists();
        seen_pid |= pid_exists;
        let stop_line = text
            .lines()
            .rev()
            .find(|l| l.contains("recovery stopping"))
            .map(|l| tail_after(l, "LOG:"));
        let done_state = if text.contains("database system is ready to accept connections")
            && text.contains("archive recovery complete")
        {
            Some("promoted")
        } else if action == Action::Pause
            && (text.contains("pausing at the end of recovery")
                || text.contains("recovery has paused"))
        {
            Some("paused")
        } else if action == Action::Shutdown && stop_line.is_some() && !pid_exists && seen_pid {
            Some("shut down")
        } else {
            None
        };
        if let Some(state) = done_state {
            let lsn = text
                .lines()
                .rev()
                .find_map(|l| l.split("redo done at ").nth(1))
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string);
            let time = text
                .lines()
                .rev()
                .find_map(|l| {
                    l.split("last completed transaction was at log time ")
                        .nth(1)
                })
                .map(|t| t.trim().to_string())
                .or_else(|| {
                    stop_line
                        .as_deref()
                        .and_then(|l| l.split(", time ").nth(1))
                        .map(|t| t.trim().to_string())
                });
            return Ok(Reached {
                stop_line,
                lsn,
                time,
                state: state.into(),
                recovery_secs: t0.elapsed().as_secs_f64(),
            });
        }
        let fatal: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("FATAL:") || l.contains("PANIC:"))
            .collect();
        if !fatal.is_empty() && !pid_exists {
            return Err(Error::Verify(format!(
                "recovery failed; the server stopped: {} (log: {})",
                fatal
                    .iter()
                    .map(|l| tail_after(l, ":  "))
                    .collect::<Vec<_>>()
                    .join("; "),
                log.display()
            )));
        }
        if seen_pid && !pid_exists && fatal.is_empty() {
            return Err(Error::Other(format!(
                "the server stopped during recovery without an error line (log: {})",
                log.display()
            )));
        }
        if Instant::now() >= deadline {
            return Err(Error::Other(format!(
                "recovery did not reach the target within {}s; the server is still running \
                 (log: {})",
                timeout.as_secs(),
                log.display()
            )));
        }
    }
}

fn tail_after(line: &str, marker: &str) -> String {
    match line.find(marker) {
        Some(i) => line[i + marker.len()..].trim().to_string(),
        None => line.trim().to_string(),
    }
}

/// Stops a server started by [`start_and_wait`] (immediate: a scratch server).
pub fn stop(bindir: &Path, dir: &Path, run_as: Option<&str>, mode: &str) {
    let pg_ctl = bindir.join("pg_ctl");
    let mut cmd = match run_as {
        Some(u) => {
            let mut c = crate::childenv::command("runuser");
            c.args(["-u", u, "--"]).arg(&pg_ctl);
            c
        }
        None => crate::childenv::command(&pg_ctl),
    };
    let _ = cmd
        .arg("-D")
        .arg(dir)
        .args(["-m", mode, "-w", "-t", "60", "stop"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The server binaries of a major version (OPSCTL_PG_BINDIR first).
pub fn server_bindir(major: u32) -> Result<PathBuf, Error> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("OPSCTL_PG_BINDIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
    dirs.push(PathBuf::from(format!("/usr/pgsql-{major}/bin")));
    dirs.into_iter()
        .find(|d| d.join("pg_ctl").is_file() && d.join("postgres").is_file())
        .ok_or_else(|| {
            Error::Config(format!(
                "the PostgreSQL {major} server (pg_ctl, postgres) is not installed: install \
                 postgresql-{major} or set OPSCTL_PG_BINDIR"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_settings() {
        let c = RecoveryConf {
            opsctl: "/usr/bin/opsctl".into(),
            policy: "/etc/opsctl/policy.toml".into(),
            key_file: None,
            repo: None,
            target: Target::Time("2026-12-02T14:16:26.760463Z".parse().unwrap()),
            action: Action::Promote,
            port: Some(5999),
            archive_off: false,
            comment: "x".into(),
        };
        let s = recovery_lines(&c).unwrap();
        assert!(s.contains(
            "restore_command = '\"/usr/bin/opsctl\" wal fetch %f %p --policy \"/etc/opsctl/policy.toml\"'"
        ));
        assert!(s.contains("recovery_target_time = '2026-12-02 14:16:26.760463+00'"));
        assert!(s.contains("recovery_target_action = 'promote'"));
        assert!(s.contains("port = 5999"));
        let n = RecoveryConf {
            target: Target::Name("before 'x'".into()),
            ..c
        };
        assert!(recovery_lines(&n)
            .unwrap()
            .contains("recovery_target_name = 'before ''x'''"));
    }

    #[test]
    fn unsafe_paths() {
        assert!(safe_rel("../etc").is_none());
        assert!(safe_rel("/etc").is_none());
        assert!(safe_rel("base/1/2").is_some());
    }
}
