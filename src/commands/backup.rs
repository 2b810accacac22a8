//! `opsctl backup keygen|create|list|verify|prune|rekey`, plus the helpers the restore
//! and drill commands share (keys, backup directory, progress bar).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use zeroize::Zeroizing;

use crate::units::human_bytes;

use super::{
    conn_settings, load_policy, print, print_error, stderr_is_terminal, EXIT_FAILURE, EXIT_OK,
};
use crate::backup::compress::{Codec, Compression};
use crate::backup::keys::{self, KeyMaterial, KeySources};
use crate::backup::{bookkeeping, create, repo, verify, Progress};
use crate::cli::{
    BackupArgs, BackupCommand, BackupCreateArgs, BackupDirArgs, BackupListArgs, BackupPruneArgs,
    BackupRekeyArgs, BackupVerifyArgs, ConnectArgs, Format, KeyArgs,
};
use crate::policy::Policy;
use crate::text;

pub async fn run(args: BackupArgs) -> u8 {
    let r = match args.command {
        BackupCommand::Keygen(a) => keygen(&a.out),
        BackupCommand::Create(a) => create_cmd(a).await,
        BackupCommand::List(a) => list(a),
        BackupCommand::Verify(a) => verify_cmd(a).await,
        BackupCommand::Prune(a) => prune(a).await,
        BackupCommand::Rekey(a) => rekey(a),
    };
    finish(r)
}

/// Prints an error and maps it to exit 1.
pub fn finish(r: anyhow::Result<u8>) -> u8 {
    match r {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            EXIT_FAILURE
        }
    }
}

/// Loads the key material from flags, environment and policy.
pub fn load_keys(args: &KeyArgs, policy: &Policy) -> anyhow::Result<Vec<KeyMaterial>> {
    let sources = KeySources {
        key_file: args.key_file.clone(),
        passphrase_file: args.passphrase_file.clone(),
        passphrase_env: std::env::var("OPSCTL_PASSPHRASE")
            .ok()
            .filter(|p| !p.is_empty())
            .map(Zeroizing::new),
        policy_key_file: policy.backup.key_file.clone(),
    };
    Ok(sources.load()?)
}

/// The backup directory: --dir / OPSCTL_BACKUP_DIR, else the policy's [backup] dir.
pub fn backup_dir(args: &BackupDirArgs, policy: &Policy) -> anyhow::Result<PathBuf> {
    args.dir
        .clone()
        .or_else(|| policy.backup.dir.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no backup directory: pass --dir DIR (or OPSCTL_BACKUP_DIR, or [backup] dir in the policy)"
            )
        })
}

/// Resolves FILE|ID; the directory is optional when FILE is a path.
pub fn resolve_backup(arg: &str, dir: &BackupDirArgs, policy: &Policy) -> anyhow::Result<PathBuf> {
    let d = dir.dir.clone().or_else(|| policy.backup.dir.clone());
    Ok(repo::resolve(arg, d.as_deref())?)
}

/// A byte progress bar on a terminal, nothing otherwise.
pub fn progress(what: &str) -> Arc<dyn Progress> {
    if !stderr_is_terminal() {
        return Arc::new(());
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg}: {binary_bytes} ({binary_bytes_per_sec}, {elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    Arc::new(pb)
}

/// True when a connection was configured explicitly (for optional bookkeeping).
fn connection_configured(args: &ConnectArgs) -> bool {
    args.database_url.is_some()
        || std::env::var_os("DATABASE_URL").is_some()
        || std::env::var_os("PGHOST").is_some()
        || std::env::var_os("PGDATABASE").is_some()
}

fn keygen(out: &Path) -> anyhow::Result<u8> {
    let id = keys::keygen(out)?;
    print(&format!(
        "wrote a new 256-bit key to {} (mode 0600, key id {id}); keep a copy somewhere safe: \
         backups cannot be opened without it\n",
        out.display()
    ));
    Ok(EXIT_OK)
}

/// The compression of one `backup create`: `--compression` and `--compression-level`
/// override the policy's `[backup]` setting for this run, checked by the same rules.
fn compression_for_run(
    policy: &crate::policy::BackupPolicy,
    codec: Option<&str>,
    level: Option<i32>,
) -> Result<Compression, crate::error::Error> {
    if codec.is_none() && level.is_none() {
        return policy.compression();
    }
    let codec = match codec {
        None => policy.compression,
        Some("zstd") => Codec::Zstd,
        Some("gzip") => Codec::Gzip,
        Some("none") => Codec::None,
        Some(other) => {
            return Err(crate::error::Error::Config(format!(
                "--compression {other}: use zstd, gzip or none"
            )))
        }
    };
    // A level without --compression applies to the policy's codec; --compression without
    // a level takes the codec's default (the policy's level belongs to the policy's codec).
    Compression::new(codec, level).map_err(|e| {
        crate::error::Error::Config(e.replacen("compression_level", "--compression-level", 1))
    })
}

async fn create_cmd(a: BackupCreateArgs) -> anyhow::Result<u8> {
    // A bad policy (a wrong compression value included) is a usage error: exit 2.
    let (policy, compression) = match load_policy(&a.policy).and_then(|p| {
        let c = compression_for_run(&p.backup, a.compression.as_deref(), a.compression_level)?;
        Ok((p, c))
    }) {
        Ok(x) => x,
        Err(e) => return Ok(super::partition::fail(e)),
    };
    let settings = conn_settings(&a.connect)?;
    let dir = backup_dir(&a.dir, &policy)?;
    let keys = load_keys(&a.keys, &policy)?;
    let pb = progress("dumping");
    let written = std::sync::OnceLock::new();
    let fut = create::create(
        &settings,
        &dir,
        keys,
        pb.clone(),
        a.lock_wait,
        &written,
        compression,
    );
    // On Ctrl-C/SIGTERM the create future is dropped: its guard kills pg_dump and removes
    // the temporary file. A signal after the backup is in place leaves it there.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let stopped = |how: &str| match written.get() {
        None => anyhow::anyhow!("{how}: no backup was written"),
        Some((id, path)) => anyhow::anyhow!(
            "{how} after backup {id} was written to {}: it is complete and listed, but was \
             not recorded in opsctl.backups",
            path.display()
        ),
    };
    let created = tokio::select! {
        r = fut => r?,
        _ = tokio::signal::ctrl_c() => return Err(stopped("interrupted")),
        _ = term.recv() => return Err(stopped("terminated")),
    };
    drop(pb);
    super::note_result(format!(
        "backup {} of {} ({}, {}) written to {}",
        created.summary.id,
        created.summary.database,
        crate::text::plural(created.summary.tables, "table"),
        crate::text::plural(created.summary.rows, "row"),
        created.path.display()
    ));
    if a.output.format == Format::Json {
        print(&(serde_json::to_string_pretty(&created)? + "\n"));
    } else {
        let s = &created.summary;
        print(&format!(
            "backup {} of {} written to {}\n  {}, {}; dump {} → compressed {} → file {} in {:.1}s; key id(s) {}\n  audit chain head: {}\n  {}\n",
            s.id,
            s.database,
            created.path.display(),
            text::plural(s.tables, "table"),
            text::plural(s.rows, "row"),
            human_bytes(s.dump_bytes),
            human_bytes(s.compressed_bytes),
            human_bytes(s.file_bytes),
            s.duration_secs,
            s.key_ids.join(", "),
            s.audit_seal
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "none (no audit seal yet)".into()),
            created.bookkeeping
        ));
    }
    Ok(EXIT_OK)
}

/// `#N` and the first 12 hex digits of the audit chain head a backup recorded, or `-`.
fn seal_short(s: Option<&crate::backup::manifest::SealRef>) -> String {
    match s {
        Some(s) => format!("#{} {}", s.seal_id, &s.hash[..s.hash.len().min(12)]),
        None => "-".into(),
    }
}

/// (verified, drilled) in full, with when: for `backup list --wide`.
fn status_word(s: &repo::Status) -> (String, String) {
    let verified = match (s.verify_ok, s.verified_at) {
        (Some(true), Some(t)) => format!("ok {}", text::ts(&t)),
        (Some(false), _) => "FAILED".into(),
        _ => "-".into(),
    };
    let drilled = match (s.drill_ok, s.drilled_at, s.drill_rto_secs) {
        (Some(true), Some(t), Some(r)) => {
            format!("ok {} rto {}", text::ts(&t), text::duration_short(r))
        }
        (Some(false), _, _) => format!(
            "FAILED ({})",
            text::plural(s.drill_mismatches.len(), "difference")
        ),
        _ => "-".into(),
    };
    (verified, drilled)
}

/// (verified, drilled) in short, for the default `backup list`.
fn status_short(s: &repo::Status) -> (String, String) {
    let verified = match s.verify_ok {
        Some(true) => "ok".into(),
        Some(false) => "FAILED".into(),
        None => "-".into(),
    };
    let drilled = match (s.drill_ok, s.drill_rto_secs) {
        (Some(true), Some(r)) => format!("ok, rto {}", text::duration_short(r)),
        (Some(true), None) => "ok".into(),
        (Some(false), _) => format!(
            "FAILED ({})",
            text::plural(s.drill_mismatches.len(), "difference")
        ),
        (None, _) => "-".into(),
    };
    (verified, drilled)
}

/// The width `backup list` fits by default (`--wide` shows every column in full).
const LIST_WIDTH: usize = 120;

/// Lays out a table with two spaces between columns. With `fit`, the columns named in
/// `shrink` (most expendable first) are cut with `…` until every line fits `fit`.
fn table(mut rows: Vec<Vec<String>>, fit: Option<(usize, &[usize])>) -> String {
    let ncols = rows.first().map_or(0, Vec::len);
    let width = |rows: &Vec<Vec<String>>, i: usize| {
        rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)
    };
    let mut widths: Vec<usize> = (0..ncols).map(|i| width(&rows, i)).collect();
    if let Some((max, shrink)) = fit {
        let total = |w: &Vec<usize>| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
        for &i in shrink {
            let over = total(&widths).saturating_sub(max);
            if over == 0 {
                break;
            }
            // Keep the header word and a few characters of the value.
            let floor = rows[0][i].chars().count().max(6);
            let new = widths[i].saturating_sub(over).max(floor);
            if new < widths[i] {
                for r in rows.iter_mut().skip(1) {
                    if r[i].chars().count() > new {
                        let cut: String = r[i].chars().take(new - 1).collect();
                        r[i] = cut + "…";
                    }
                }
                widths[i] = new;
            }
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn list(a: BackupListArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&a.policy)?;
    let dir = backup_dir(&a.dir, &policy)?;
    let entries = repo::list(&dir)?;
    let temps = temps_line(&repo::temp_files(&dir)?);
    if a.output.format == Format::Json {
        print(&(serde_json::to_string_pretty(&entries)? + "\n"));
        if let Some(t) = temps {
            eprintln!("note: {t}");
        }
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        print(&format!(
            "no backups under {}\n{}",
            dir.display(),
            temps.map(|t| t + "\n").unwrap_or_default()
        ));
        return Ok(EXIT_OK);
    }
    if a.wide {
        let mut rows = vec![[
            "id",
            "database",
            "start",
            "end",
            "duration",
            "dump",
            "compressed",
            "on disk",
            "key id",
            "audit seal",
            "verified",
            "drilled",
        ]
        .map(String::from)
        .to_vec()];
        for e in &entries {
            let s = &e.summary;
            let (v, d) = status_word(&e.status);
            rows.push(vec![
                s.id.clone(),
                s.database.clone(),
                text::ts(&s.started_at),
                text::ts(&s.finished_at),
                text::duration_short(s.duration_secs),
                human_bytes(s.dump_bytes),
                human_bytes(s.compressed_bytes),
                human_bytes(s.file_bytes),
                s.key_ids.join(","),
                seal_short(s.audit_seal.as_ref()),
                v,
                d,
            ]);
        }
        print(&with_temps(table(rows, None), temps));
        return Ok(EXIT_OK);
    }
    let mut rows = vec![[
        "id",
        "database",
        "start",
        "on disk",
        "audit seal",
        "verified",
        "drilled",
    ]
    .map(String::from)
    .to_vec()];
    for e in &entries {
        let s = &e.summary;
        let (v, d) = status_short(&e.status);
        rows.push(vec![
            s.id.clone(),
            s.database.clone(),
            text::ts(&s.started_at),
            human_bytes(s.file_bytes),
            seal_short(s.audit_seal.as_ref()),
            v,
            d,
        ]);
    }
    // Cut the database name first, then the drill, the seal and the start if need be.
    print(&with_temps(
        table(rows, Some((LIST_WIDTH, &[1, 6, 4, 2]))),
        temps,
    ));
    Ok(EXIT_OK)
}

/// The listing followed by the line about temporary files, when there are any.
fn with_temps(mut out: String, temps: Option<String>) -> String {
    if let Some(t) = temps {
        out.push_str(&t);
        out.push('\n');
    }
    out
}

/// "N temporary files: …", counted by whether their writer is still there; None if none.
fn temps_line(temps: &[repo::TempEntry]) -> Option<String> {
    if temps.is_empty() {
        return None;
    }
    let count = |v: Option<bool>| temps.iter().filter(|t| t.in_use == v).count();
    let (live, gone, unknown) = (count(Some(true)), count(Some(false)), count(None));
    let mut s = format!(
        "{} temporary file{} of unfinished writes: {live} being written, {gone} left by a \
         writer that is gone",
        temps.len(),
        if temps.len() == 1 { "" } else { "s" }
    );
    if unknown > 0 {
        s.push_str(&format!(
            ", {unknown} whose writer cannot be told (no file locks)"
        ));
    }
    if gone > 0 {
        s.push_str(" (`opsctl backup prune` removes those)");
    }
    Some(s)
}

async fn verify_cmd(a: BackupVerifyArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&a.policy)?;
    let path = resolve_backup(&a.backup, &a.dir, &policy)?;
    let keys = load_keys(&a.keys, &policy)?;
    let pb = progress("verifying");
    let p = path.clone();
    let pb2 = pb.clone();
    let report = tokio::task::spawn_blocking(move || verify::verify(&p, &keys, &*pb2)).await?;
    drop(pb);
    let now = chrono::Utc::now();
    let reason = report.failure.as_ref().map(|f| f.message.clone());
    // Only a verified defect of the file marks it bad: a key that does not open it, a
    // missing tool or an unreadable file say nothing about the backup's health.
    let record = report
        .failure
        .as_ref()
        .map_or(true, verify::Failure::is_defect);
    // Status beside the file only for a backup with a summary (a listed backup).
    if record && repo::summary_path(&path).exists() {
        if let Err(e) = repo::update_status(&path, |s| {
            s.verified_at = Some(now);
            s.verify_ok = Some(report.ok);
            s.verify_reason = reason.clone();
        }) {
            crate::logging::warn(format_args!(
                "cannot record the result beside the backup: {e}"
            ));
        }
    }
    if record && connection_configured(&a.connect) {
        if let Some(id) = &report.id {
            let rec = async {
                let s = conn_settings(&a.connect)?;
                let c = crate::db::connect(&s).await?;
                bookkeeping::record_verify(&c, id, now, report.ok, reason.as_deref()).await
            };
            match rec.await {
                Ok(true) => {}
                Ok(false) => crate::logging::note(bookkeeping::NOT_INSTALLED),
                Err(e) => crate::logging::warn(format_args!(
                    "verification not recorded in the opsctl schema: {e}"
                )),
            }
        }
    }
    if a.output.format == Format::Json {
        print(&(serde_json::to_string_pretty(&report)? + "\n"));
    } else if report.ok {
        print(&format!(
            "backup {} is good: every chunk authenticated, dump SHA-256 and sizes match the \
             sealed manifest, {}, pg_restore reads {} ({}, {})\n",
            path.display(),
            if report.summary_checked {
                "summary agrees"
            } else {
                "no summary beside the file (not compared)"
            },
            text::plural(report.archive_entries, "archive entry"),
            text::plural(report.tables, "table"),
            text::plural(report.rows, "row")
        ));
    } else if let Some(f) = report.failure.as_ref().filter(|f| !f.is_defect()) {
        let name = report
            .id
            .clone()
            .unwrap_or_else(|| path.display().to_string());
        if f.kind == "wrong_key" {
            eprintln!(
                "error: this key does not open backup {name} (its key ids: {}); nothing was \
                 recorded about the backup's health\n  {}",
                report.key_ids.join(", "),
                f.message
            );
        } else {
            eprintln!(
                "error: cannot check backup {name}: {}; nothing was recorded about the \
                 backup's health",
                f.message
            );
        }
    } else {
        crate::logging::error(format_args!(
            "backup {} is BAD: {}",
            path.display(),
            report
                .failure
                .as_ref()
                .map(|f| f.message.as_str())
                .unwrap_or("?")
        ));
    }
    Ok(if report.ok { EXIT_OK } else { EXIT_FAILURE })
}

#[derive(serde::Serialize)]
struct PruneOut {
    dry_run: bool,
    decisions: Vec<repo::Decision>,
    deleted: Vec<String>,
    temporary_files: Vec<TempOutcome>,
}

/// What prune did with one temporary file.
#[derive(serde::Serialize)]
struct TempOutcome {
    #[serde(flatten)]
    file: repo::TempEntry,
    /// removed, would_remove, being_written, unknown
    action: &'static str,
}

async fn prune(a: BackupPruneArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&a.policy)?;
    let dir = backup_dir(&a.dir, &policy)?;
    let entries = repo::list(&dir)?;
    let now = chrono::Utc::now();
    let mut by_db: std::collections::BTreeMap<String, Vec<&repo::Entry>> = Default::default();
    for e in &entries {
        by_db.entry(e.summary.database.clone()).or_default().push(e);
    }
    let mut decisions = Vec::new();
    for (db, es) in &by_db {
        let input: Vec<_> = es
            .iter()
            .map(|e| {
                (
                    e.summary.id.clone(),
                    e.summary.started_at,
                    e.status.is_verified(),
                )
            })
            .collect();
        for mut d in repo::prune_plan(&input, &policy.backup.retention, now) {
            d.database = db.clone();
            decisions.push(d);
        }
    }
    // Temporary files: removed when their writer is gone (checked again under its lock).
    let mut temps = Vec::new();
    for t in repo::temp_files(&dir)? {
        let action = match t.in_use {
            Some(true) => "being_written",
            None => "unknown",
            Some(false) if a.dry_run => "would_remove",
            Some(false) => {
                if repo::remove_temp(&t)? {
                    "removed"
                } else {
                    "being_written"
                }
            }
        };
        temps.push(TempOutcome { file: t, action });
    }
    let mut deleted = Vec::new();
    if !a.dry_run {
        let conn = if connection_configured(&a.connect) {
            match async { crate::db::connect(&conn_settings(&a.connect)?).await }.await {
                Ok(c) => Some(c),
                Err(e) => {
                    crate::logging::warn(format_args!(
                        "deletions not recorded in the opsctl schema: {e}"
                    ));
                    None
                }
            }
        } else {
            None
        };
        for d in decisions.iter().filter(|d| !d.keep) {
            let e = entries
                .iter()
                .find(|e| e.summary.id == d.id && e.summary.database == d.database)
                .expect("listed");
            repo::delete(&e.path)?;
            deleted.push(e.path.display().to_string());
            if let Some(c) = &conn {
                let _ = bookkeeping::record_deleted(c, &d.id).await;
            }
        }
    }
    if a.output.format == Format::Json {
        print(
            &(serde_json::to_string_pretty(&PruneOut {
                dry_run: a.dry_run,
                decisions,
                deleted,
                temporary_files: temps,
            })? + "\n"),
        );
        return Ok(EXIT_OK);
    }
    let r = &policy.backup.retention;
    let mut out =
        format!(
        "retention: keep_last={} daily={} weekly={} monthly={}, and the newest verified backup{}\n",
        r.keep_last,
        r.daily,
        r.weekly,
        r.monthly,
        if a.dry_run { " (dry run: nothing deleted)" } else { "" }
    );
    for d in &decisions {
        let verb = match (d.keep, a.dry_run) {
            (true, _) => "keep  ",
            (false, true) => "would delete",
            (false, false) => "delete",
        };
        out.push_str(&format!(
            "{verb} {}/{} ({}): {}\n",
            d.database,
            d.id,
            text::ts(&d.started_at),
            d.reasons.join("; ")
        ));
    }
    if decisions.is_empty() {
        out.push_str("no backups\n");
    }
    for t in &temps {
        let f = &t.file;
        let what = match t.action {
            "removed" | "would_remove" => format!(
                "{} {}/{}: temporary file ({} bytes) left by a writer that is gone",
                if t.action == "removed" {
                    "removed"
                } else {
                    "would remove"
                },
                f.database,
                f.name,
                f.bytes
            ),
            "being_written" => format!(
                "leave {}/{}: being written (its writer holds the lock)",
                f.database, f.name
            ),
            _ => format!(
                "leave {}/{}: cannot tell whether its writer is still there (no file locks \
                 here); remove it by hand once no backup runs",
                f.database, f.name
            ),
        };
        out.push_str(&what);
        out.push('\n');
    }
    print(&out);
    Ok(EXIT_OK)
}

fn rekey(a: BackupRekeyArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&a.policy)?;
    let path = resolve_backup(&a.backup, &a.dir, &policy)?;
    let keys = load_keys(&a.keys, &policy)?;
    let new_key = KeyMaterial::Key(keys::load_key_file(&a.new_key_file)?);
    let header = if a.reencrypt {
        repo::reencrypt(&path, &keys, &[new_key])?
    } else {
        repo::rekey(&path, &keys, &[new_key], a.replace)?
    };
    let ids = header.key_ids();
    if a.output.format == Format::Json {
        print(
            &(serde_json::to_string_pretty(&serde_json::json!({
                "file": path.display().to_string(),
                "key_ids": ids,
            }))? + "\n"),
        );
    } else {
        print(&format!(
            "{}: now opens with {} {} ({})\n",
            path.display(),
            if ids.len() == 1 { "key id" } else { "key ids" },
            ids.join(", "),
            if a.reencrypt {
                "fresh data key, body re-encrypted and read back before it replaced the old \
                 file: the old keys open neither this file nor its body under an old header"
            } else {
                "body unchanged"
            }
        ));
        if a.replace && !a.reencrypt {
            eprintln!(
                "note: --replace rewraps the same data key: an old key still opens any earlier \
                 copy of this file, and this body with the old header put back. To revoke a \
                 key, use --replace --reencrypt"
            );
        }
    }
    Ok(EXIT_OK)
}
