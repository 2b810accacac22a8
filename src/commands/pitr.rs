//! `opsctl basebackup`, `opsctl restore --pitr …` and `opsctl restore-point NAME`: the
//! physical side of backups (see [`crate::pitr`]). Exit codes: 0 done, 1 failed or
//! refused (a target outside the recovery window, a tampered backup, a non-empty data
//! directory), 2 usage (a malformed target or policy).

use std::path::{Path, PathBuf};

use super::backup::{load_keys, progress};
use super::{
    conn_settings, load_policy, note_result, print, print_error, EXIT_FAILURE, EXIT_OK, EXIT_USAGE,
};
use crate::cli::{BasebackupArgs, Format, RestoreArgs, RestorePointArgs, TargetAction};
use crate::error::Error;
use crate::pitr::basebackup::{self, Options};
use crate::pitr::catalog::Lsn;
use crate::pitr::restore::{self as prestore, Action, RecoveryConf, Target};
use crate::text;
use crate::units::human_bytes;

fn fail(code: u8, e: impl Into<anyhow::Error>) -> u8 {
    print_error(&e.into());
    code
}

/// Maps a library error: configuration → usage only when `usage` says the arguments were
/// at fault; everything else is a failure.
fn fail_err(e: Error) -> u8 {
    fail(EXIT_FAILURE, e)
}

pub async fn basebackup_cmd(a: BasebackupArgs) -> u8 {
    let (policy, compression) =
        match load_policy(&a.policy).and_then(|p| p.backup.compression().map(|c| (p, c))) {
            Ok(x) => x,
            Err(e) => return fail(EXIT_USAGE, e),
        };
    let archive_wait = match a.archive_wait {
        Some(w) => w,
        None => match crate::duration::parse_duration(&policy.basebackup.archive_wait) {
            Ok(w) => w,
            Err(e) => {
                return fail(
                    EXIT_USAGE,
                    anyhow::anyhow!("[basebackup] archive_wait: {e}"),
                )
            }
        },
    };
    let settings = match conn_settings(&a.connect) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let repo = match crate::storage::resolve(a.repo.as_deref(), &policy) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let keys = match load_keys(&a.keys, &policy) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let pb = progress("base backup");
    let opts = Options {
        compression,
        archive_wait,
    };
    let r = basebackup::basebackup(&settings, &repo, &keys, &opts, pb.clone()).await;
    drop(pb);
    let s = match r {
        Ok(s) => s,
        Err(e) => return fail_err(e),
    };
    note_result(format!(
        "base backup {} ({} files, {} → {}) in {}",
        s.id,
        s.files,
        human_bytes(s.tar_bytes),
        human_bytes(s.stored_bytes),
        repo.display()
    ));
    if a.output.format == Format::Json {
        print(&(serde_json::to_string_pretty(&s).expect("serialises") + "\n"));
    } else {
        print(&format!(
            "base backup {} of system {} written to {}\n  timeline {}, WAL {} → {} ({} … {}), \
             {}, {} → stored {} in {:.1}s; key id(s) {}\n  the WAL it needs is archived: \
             recovery to any time after {} is possible\n",
            s.id,
            s.system_identifier,
            repo.display(),
            s.timeline,
            s.start_lsn,
            s.stop_lsn,
            s.start_wal,
            s.stop_wal,
            text::plural(s.files, "file"),
            human_bytes(s.tar_bytes),
            human_bytes(s.stored_bytes),
            s.duration_secs,
            s.key_ids.join(", "),
            text::ts(&s.stopped_at)
        ));
    }
    EXIT_OK
}

/// The recovery target the flags name.
fn target_of(a: &crate::cli::PitrRestoreArgs) -> Result<Target, anyhow::Error> {
    if let Some(t) = &a.to_time {
        return crate::datetime::parse_utc(t)
            .map(Target::Time)
            .map_err(|e| anyhow::anyhow!("--to-time {t:?}: {e}"));
    }
    if let Some(l) = &a.to_lsn {
        return Ok(Target::Lsn(
            Lsn::parse(l).map_err(|e| anyhow::anyhow!("--to-lsn: {e}"))?,
        ));
    }
    if let Some(x) = a.to_xid {
        return Ok(Target::Xid(x));
    }
    if let Some(n) = &a.to_name {
        if n.is_empty() || n.len() > 63 {
            anyhow::bail!("--to-name: a restore point name is 1 to 63 bytes");
        }
        return Ok(Target::Name(n.clone()));
    }
    if a.latest {
        return Ok(Target::Latest);
    }
    anyhow::bail!(
        "restore --pitr needs a target: --to-time, --to-lsn, --to-xid, --to-name or --latest"
    )
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

#[derive(serde::Serialize)]
struct PitrOutcome {
    backup: String,
    system_identifier: String,
    pgdata: PathBuf,
    target: String,
    target_action: Action,
    window: crate::pitr::catalog::Window,
    files: u64,
    authenticate_secs: f64,
    unpack_secs: f64,
    started: bool,
    reached: Option<prestore::Reached>,
    start_command: String,
}

/// The repository of base backups and WAL for `restore --pitr` / `drill --pitr`: `--repo`,
/// else `--dir`, else the policy's first; and the `--repo` value the restored server's
/// `restore_command` passes to `opsctl wal fetch` (None: the policy's own default).
fn pitr_repo(
    d: &crate::cli::BackupDirArgs,
    policy: &crate::policy::Policy,
) -> anyhow::Result<(crate::storage::Repository, Option<String>)> {
    if let Some(r) = &d.repo {
        let repo = crate::storage::resolve(Some(r), policy)?;
        let arg = if repo.is_local() {
            repo.display()
        } else {
            r.clone()
        };
        return Ok((repo, Some(arg)));
    }
    if let Some(dir) = &d.dir {
        let dir = absolute(dir);
        let arg = dir.display().to_string();
        return Ok((crate::storage::Repository::local("local", &dir), Some(arg)));
    }
    Ok((crate::storage::resolve(None, policy)?, None))
}

/// `restore --pitr`.
pub async fn restore_pitr(a: RestoreArgs) -> u8 {
    let p = &a.pitr;
    let target = match target_of(p) {
        Ok(t) => t,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let policy = match load_policy(&a.policy) {
        Ok(x) => x,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let Some(policy_path) = a.policy.policy.as_deref().map(absolute) else {
        return fail(
            EXIT_USAGE,
            anyhow::anyhow!(
                "restore --pitr needs --policy FILE (or OPSCTL_POLICY): the restored server's \
                 restore_command runs opsctl wal fetch with it to find the repository and key"
            ),
        );
    };
    let (repo, repo_arg) = match pitr_repo(&a.dir, &policy) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let keys = match load_keys(&a.keys, &policy) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let dir = absolute(p.pgdata.as_deref().expect("clap requires --pgdata"));
    let action = match p.target_action {
        TargetAction::Promote => Action::Promote,
        TargetAction::Pause => Action::Pause,
        TargetAction::Shutdown => Action::Shutdown,
    };
    let choice = match prestore::choose(&repo, &target, p.base_backup.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail_err(e),
    };
    // Refuse a used or non-empty directory before reading anything.
    if dir.exists() {
        if let Err(e) = prestore::check_pgdata(&dir) {
            return fail_err(e);
        }
    }
    let b = &choice.base;
    let pb = progress("authenticating the base backup");
    let t0 = std::time::Instant::now();
    let manifest =
        match tokio::task::block_in_place(|| prestore::authenticate(&repo, b, &keys, &pb)) {
            Ok(m) => m,
            Err(e) => return fail_err(e),
        };
    drop(pb);
    let authenticate_secs = t0.elapsed().as_secs_f64();
    let existed = match prestore::check_pgdata(&dir) {
        Ok(x) => x,
        Err(e) => return fail_err(e),
    };
    let undo = |dir: &Path| {
        if existed {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let path = e.path();
                    let _ = if path.is_dir() && !path.is_symlink() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    };
    let pb = progress("unpacking");
    let t1 = std::time::Instant::now();
    let files = match tokio::task::block_in_place(|| {
        prestore::unpack(&repo, b, &keys, &manifest, &dir, &pb)
    }) {
        Ok(n) => n,
        Err(e) => {
            undo(&dir);
            return fail_err(e);
        }
    };
    drop(pb);
    let unpack_secs = t1.elapsed().as_secs_f64();
    let opsctl = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .unwrap_or_else(|_| PathBuf::from("opsctl"));
    let conf = RecoveryConf {
        opsctl,
        policy: policy_path,
        key_file: a.keys.key_file.as_deref().map(absolute),
        repo: repo_arg,
        target: target.clone(),
        action,
        port: p.port,
        archive_off: false,
        comment: format!(
            "opsctl restore --pitr: base backup {} to {} ({})",
            b.summary.id,
            target.describe(),
            text::ts(&chrono::Utc::now())
        ),
    };
    if let Err(e) = prestore::write_recovery(&dir, &conf) {
        undo(&dir);
        return fail_err(e);
    }
    // The server must run as a non-root user that owns the directory.
    let mut run_as: Option<String> = None;
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(&dir).map(|m| (m.uid(), m.gid())).ok();
        let target_owner = match owner {
            Some((uid, gid)) if existed && uid != 0 => {
                prestore::user_name(uid).map(|n| (uid, gid, n))
            }
            _ => prestore::postgres_user(),
        };
        match target_owner {
            Some((uid, gid, name)) => {
                if let Err(e) = prestore::chown_tree(&dir, uid, gid) {
                    return fail_err(e);
                }
                run_as = Some(name);
            }
            None => {
                crate::logging::note(format_args!(
                    "running as root and there is no postgres user: {} stays owned by root; \
                     give it to the server's user before starting it",
                    dir.display()
                ));
            }
        }
    }
    let bindir = prestore::server_bindir(b.summary.pg_major);
    let log = dir.join("opsctl-recovery.log");
    let start_command = match (&bindir, &run_as) {
        (Ok(bd), Some(u)) => format!(
            "runuser -u {u} -- {} -D {} -l {} start",
            bd.join("pg_ctl").display(),
            dir.display(),
            log.display()
        ),
        (Ok(bd), None) => format!(
            "{} -D {} -l {} start",
            bd.join("pg_ctl").display(),
            dir.display(),
            log.display()
        ),
        (Err(_), _) => format!("pg_ctl -D {} start", dir.display()),
    };
    let mut reached = None;
    if p.start {
        let bindir = match bindir {
            Ok(b) => b,
            Err(e) => return fail_err(e),
        };
        match tokio::task::block_in_place(|| {
            prestore::start_and_wait(
                &bindir,
                &dir,
                &log,
                run_as.as_deref(),
                action,
                p.start_timeout,
            )
        }) {
            Ok(r) => reached = Some(r),
            Err(e) => return fail_err(e),
        }
    }
    let out = PitrOutcome {
        backup: b.summary.id.clone(),
        system_identifier: b.summary.system_identifier.clone(),
        pgdata: dir.clone(),
        target: target.describe(),
        target_action: action,
        window: choice.window.clone(),
        files,
        authenticate_secs,
        unpack_secs,
        started: p.start,
        reached: reached.clone(),
        start_command: start_command.clone(),
    };
    note_result(format!(
        "restored base backup {} into {} for {}",
        out.backup,
        dir.display(),
        out.target
    ));
    if a.output.format == Format::Json {
        print(&(serde_json::to_string_pretty(&out).expect("serialises") + "\n"));
        return EXIT_OK;
    }
    let mut s = format!(
        "restored base backup {} (system {}) into {}: {}, authenticated in {:.1}s, unpacked in {:.1}s\n  \
         recovery target: {} (then {}); recovery window of this backup: {}\n",
        out.backup,
        out.system_identifier,
        dir.display(),
        text::plural(files, "file"),
        authenticate_secs,
        unpack_secs,
        out.target,
        action.name(),
        choice.window.describe()
    );
    match &reached {
        Some(r) => s.push_str(&format!(
            "  recovery {} after {:.1}s: {}{}{}\n",
            r.state,
            r.recovery_secs,
            r.stop_line
                .clone()
                .unwrap_or_else(|| "end of the archived WAL".into()),
            r.lsn
                .as_ref()
                .map(|l| format!("; redo done at {l}"))
                .unwrap_or_default(),
            r.time
                .as_ref()
                .map(|t| format!("; last transaction replayed at {t}"))
                .unwrap_or_default()
        )),
        None => s.push_str(&format!(
            "  start the server to recover: {start_command}\n  (restore_command fetches WAL \
             with this opsctl and policy; the server log says when recovery reaches the target)\n"
        )),
    }
    print(&s);
    EXIT_OK
}

/// `restore-point NAME`.
pub async fn restore_point(a: RestorePointArgs) -> u8 {
    const CREATE: &str = "SELECT pg_create_restore_point($1)::text";
    const SWITCH: &str = "SELECT pg_switch_wal()::text, pg_walfile_name(pg_current_wal_lsn())";
    if a.name.is_empty() || a.name.len() > 63 {
        return fail(
            EXIT_USAGE,
            anyhow::anyhow!("a restore point name is 1 to 63 bytes"),
        );
    }
    let settings = match conn_settings(&a.connect) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let conn = match crate::db::connect(&settings).await {
        Ok(c) => c,
        Err(e) => return fail_err(e),
    };
    let lsn: String = match conn.client.query_one(CREATE, &[&a.name]).await {
        Ok(r) => r.get(0),
        Err(e) => return fail_err(Error::db_ctx("cannot create the restore point")(e)),
    };
    // Switch the segment out so the archive holds the point without waiting for
    // archive_timeout.
    let switched = conn
        .client
        .query_one(SWITCH, &[])
        .await
        .ok()
        .map(|r| r.get::<_, String>(1));
    note_result(format!("restore point {:?} at {lsn}", a.name));
    if a.output.format == Format::Json {
        print(
            &(serde_json::json!({"name": a.name, "lsn": lsn, "switched_to": switched}).to_string()
                + "\n"),
        );
    } else {
        print(&format!(
            "restore point {:?} at {lsn}; recover to it with opsctl restore --pitr --to-name {:?}\n",
            a.name, a.name
        ));
    }
    EXIT_OK
}

/// The `backup list` table of base backups.
pub fn base_table(bases: &[crate::pitr::catalog::Listed]) -> String {
    let mut s = String::from(
        "\nbase backups (physical, for restore --pitr); recovery window = stop → newest archived WAL:\n",
    );
    let mut rows = vec![[
        "id",
        "kind",
        "system",
        "stop",
        "stored",
        "window to",
        "verified",
        "drilled",
    ]
    .map(String::from)
    .to_vec()];
    for b in bases {
        let st = &b.status;
        rows.push(vec![
            b.summary.id.clone(),
            "base".into(),
            b.summary.system_identifier.clone(),
            text::ts(&b.summary.stopped_at),
            human_bytes(b.summary.stored_bytes),
            match b.window.to_time {
                Some(t) => text::ts(&t),
                None => "WAL MISSING".into(),
            },
            match st.verify_ok {
                Some(true) => "ok".into(),
                Some(false) => "FAILED".into(),
                None => "-".into(),
            },
            match (st.drill_ok, st.drill_rto_secs) {
                (Some(true), Some(r)) => format!("ok, rto {}", text::duration_short(r)),
                (Some(false), _) => "FAILED".into(),
                _ => "-".into(),
            },
        ]);
    }
    s.push_str(&super::backup::table(rows, None));
    s
}

/// `backup prune`'s part for base backups and WAL (None when there are none).
pub fn prune_bases(
    repo: &crate::storage::Repository,
    policy: &crate::policy::Policy,
    dry_run: bool,
) -> anyhow::Result<Option<crate::pitr::prune::BasePrune>> {
    let r = crate::pitr::prune::prune(repo, &policy.basebackup, chrono::Utc::now(), dry_run)?;
    Ok((!r.decisions.is_empty()).then_some(r))
}

pub fn prune_text(
    r: &crate::pitr::prune::BasePrune,
    p: &crate::policy::BasebackupPolicy,
    dry_run: bool,
) -> String {
    let mut s = format!(
        "base backups: keep_last={} keep_days={}\n",
        p.keep_last.max(1),
        p.keep_days
    );
    for d in &r.decisions {
        let verb = match (d.keep, dry_run) {
            (true, _) => "keep  ",
            (false, true) => "would delete",
            (false, false) => "delete",
        };
        s.push_str(&format!(
            "{verb} base {} ({}): {}\n",
            d.id,
            text::ts(&d.stopped_at),
            d.reason
        ));
    }
    for (sysid, from) in &r.wal_kept_from {
        s.push_str(&format!(
            "WAL of system {sysid}: kept from {from} (what the oldest kept base backup needs); {} older file(s) {}\n",
            r.wal_removed.len(),
            if dry_run { "would be removed" } else { "removed" }
        ));
    }
    s
}

/// `backup verify ID` for base backup `b`: exit 0 good, 1 bad or not checked.
pub fn verify_base(
    repo: &crate::storage::Repository,
    b: crate::pitr::catalog::BaseEntry,
    keys: &[crate::backup::keys::KeyMaterial],
    format: Format,
) -> u8 {
    let pb = progress("verifying the base backup");
    let r = tokio::task::block_in_place(|| prestore::authenticate(repo, &b, keys, &pb));
    drop(pb);
    let now = chrono::Utc::now();
    let ok = r.is_ok();
    let reason = r.as_ref().err().map(|e| e.to_string());
    // A key that opens nothing says nothing about the backup's health.
    let defect = matches!(&r, Err(Error::Verify(_)));
    if ok || defect {
        let _ = crate::pitr::catalog::update_status(repo, &b, |s| {
            s.verified_at = Some(now);
            s.verify_ok = Some(ok);
            s.verify_reason = reason.clone();
        });
    }
    if format == Format::Json {
        print(
            &(serde_json::json!({
                "id": b.summary.id, "kind": "base", "ok": ok, "reason": reason,
                "files": r.as_ref().map(|m| m.file_list.len()).unwrap_or(0),
            })
            .to_string()
                + "\n"),
        );
    }
    match r {
        Ok(m) => {
            if format != Format::Json {
                print(&format!(
                    "base backup {} is good: every chunk authenticated, the sealed manifest \
                     matches the summary, {} match their sealed SHA-256\n",
                    b.summary.id,
                    text::plural(m.file_list.len() as u64, "file")
                ));
            }
            EXIT_OK
        }
        Err(e) => fail(EXIT_FAILURE, e),
    }
}

/// `drill --pitr`: exit 0 the content came back, 1 otherwise (or the drill could not run).
pub async fn drill_pitr(a: crate::cli::DrillArgs) -> u8 {
    let policy = match load_policy(&a.policy) {
        Ok(x) => x,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let Some(policy_path) = a.policy.policy.as_deref().map(absolute) else {
        return fail(
            EXIT_USAGE,
            anyhow::anyhow!("drill --pitr needs --policy FILE (or OPSCTL_POLICY): the scratch server's restore_command uses it"),
        );
    };
    let to_time = match &a.to_time {
        Some(t) => match crate::datetime::parse_utc(t) {
            Ok(t) => Some(t),
            Err(e) => return fail(EXIT_USAGE, anyhow::anyhow!("--to-time {t:?}: {e}")),
        },
        None => None,
    };
    let archive_wait = match crate::duration::parse_duration(&policy.basebackup.archive_wait) {
        Ok(w) => w,
        Err(e) => {
            return fail(
                EXIT_USAGE,
                anyhow::anyhow!("[basebackup] archive_wait: {e}"),
            )
        }
    };
    let settings = match conn_settings(&a.connect) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let (repo, repo_arg) = match pitr_repo(&a.dir, &policy) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let keys = match load_keys(&a.keys, &policy) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let opts = crate::pitr::drill::DrillOptions {
        opsctl: std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .unwrap_or_else(|_| PathBuf::from("opsctl")),
        policy: policy_path,
        key_file: a.keys.key_file.as_deref().map(absolute),
        repo_arg,
        archive_wait,
        recovery_timeout: std::time::Duration::from_secs(3600),
        to_time,
    };
    let pb = progress("PITR drill");
    let r = crate::pitr::drill::drill(&settings, &repo, &keys, &opts, pb.clone()).await;
    drop(pb);
    let now = chrono::Utc::now();
    let d = match r {
        Ok(d) => d,
        Err(e) => {
            // A drill that could not recover is a failed drill of the newest base backup.
            if let Ok(all) = crate::pitr::catalog::base_backups(&repo) {
                if let Some(b) = all.last() {
                    let msg = e.to_string();
                    let _ = crate::pitr::catalog::update_status(&repo, b, |s| {
                        s.drilled_at = Some(now);
                        s.drill_ok = Some(false);
                        s.drill_reason = Some(msg);
                    });
                }
            }
            return fail(EXIT_FAILURE, anyhow::anyhow!("PITR drill failed: {e}"));
        }
    };
    if let Ok(b) = crate::pitr::catalog::find_base(&repo, &d.backup) {
        let _ = crate::pitr::catalog::update_status(&repo, &b, |s| {
            s.drilled_at = Some(now);
            s.drill_ok = Some(d.ok);
            s.drill_rto_secs = Some(d.rto_secs);
            s.drill_reason = (!d.ok).then(|| d.mismatches.join("; "));
        });
    }
    note_result(format!(
        "PITR drill of base backup {}: {} (RTO {:.1}s)",
        d.backup,
        if d.ok { "ok" } else { "FAILED" },
        d.rto_secs
    ));
    if a.output.format == Format::Json {
        print(&(serde_json::to_string_pretty(&d).expect("serialises") + "\n"));
    } else {
        let mut s = format!(
            "PITR drill of base backup {} to {}: {}\n  restore {:.1}s (authenticate {:.1}s, unpack {:.1}s) + recovery {:.1}s = RTO {:.1}s; writers held off {:.0} ms at the source\n",
            d.backup,
            if d.restore_point.is_empty() {
                "the given time".to_string()
            } else {
                format!("restore point {} ({})", d.restore_point, d.restore_point_lsn)
            },
            if d.ok {
                format!(
                    "ok, {} and {} match the source",
                    text::plural(d.tables as u64, "table"),
                    text::plural(d.rows as u64, "row")
                )
            } else {
                format!("FAILED, {}", text::plural(d.mismatches.len() as u64, "difference"))
            },
            d.authenticate_secs + d.unpack_secs,
            d.authenticate_secs,
            d.unpack_secs,
            d.recovery_secs,
            d.rto_secs,
            d.writers_held_ms
        );
        for m in &d.mismatches {
            s.push_str(&format!("  {m}\n"));
        }
        print(&s);
    }
    if d.ok {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}
