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
use crate::backup::{bookkeeping, create, repo, store, verify, Progress};
use crate::cli::{
    BackupArgs, BackupCommand, BackupCopyArgs, BackupCreateArgs, BackupDirArgs, BackupListArgs,
    BackupPruneArgs, BackupRekeyArgs, BackupVerifyArgs, ConnectArgs, Format, KeyArgs,
};
use crate::policy::Policy;
use crate::storage::{self, Repository};
use crate::text;

pub async fn run(args: BackupArgs) -> u8 {
    let r = match args.command {
        BackupCommand::Keygen(a) => keygen(&a.out),
        BackupCommand::Create(a) => create_cmd(a).await,
        BackupCommand::List(a) => list(a),
        BackupCommand::Verify(a) => verify_cmd(a).await,
        BackupCommand::Prune(a) => prune(a).await,
        BackupCommand::Rekey(a) => rekey(a),
        BackupCommand::Copy(a) => copy_cmd(a),
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

/// The repositories a command works on: `--repo URL|NAME` (one), else `--dir` /
/// OPSCTL_BACKUP_DIR (one directory), else every repository of the policy (`[[repositories]]`
/// or `[backup] dir`), the first being where new backups are written.
pub fn repositories(args: &BackupDirArgs, policy: &Policy) -> anyhow::Result<Vec<Repository>> {
    if let Some(r) = &args.repo {
        return Ok(vec![storage::resolve(Some(r), policy)?]);
    }
    if let Some(d) = &args.dir {
        return Ok(vec![Repository::local("local", d)]);
    }
    let repos = storage::from_policy(policy)?;
    if repos.is_empty() {
        anyhow::bail!(
            "no backup directory: pass --dir DIR or --repo URL|NAME (or OPSCTL_BACKUP_DIR, or \
             [backup] dir / [[repositories]] in the policy)"
        );
    }
    Ok(repos)
}

/// A backup named on the command line: a file given by path, or the copies of an id in
/// the repositories (repository index, key), in repository order.
pub struct Located {
    pub repos: Vec<Repository>,
    pub file: Option<PathBuf>,
    pub copies: Vec<(usize, String)>,
}

impl Located {
    /// The file a reader works on: the given path, or the first copy fetched.
    pub fn fetch_first(&self) -> anyhow::Result<(store::Fetched, Option<(usize, String)>)> {
        if let Some(f) = &self.file {
            return Ok((store::Fetched::file(f), None));
        }
        let (i, key) = self.copies[0].clone();
        Ok((store::fetch(&self.repos[i], &key)?, Some((i, key))))
    }
}

/// Resolves FILE|ID: an existing path is a file; otherwise an id in the repositories.
pub fn locate(arg: &str, dir: &BackupDirArgs, policy: &Policy) -> anyhow::Result<Located> {
    let p = Path::new(arg);
    if p.is_file() {
        return Ok(Located {
            repos: Vec::new(),
            file: Some(p.to_path_buf()),
            copies: Vec::new(),
        });
    }
    let repos = match repositories(dir, policy) {
        Ok(r) => r,
        Err(_) => anyhow::bail!(
            "{arg} is not a file; to look up a backup id, give --dir DIR or --repo URL|NAME"
        ),
    };
    let copies = store::find(arg, &repos)?;
    Ok(Located {
        repos,
        file: None,
        copies,
    })
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
    let repos = repositories(&a.dir, &policy)?;
    let keys = load_keys(&a.keys, &policy)?;
    let pb = progress("dumping");
    let written = std::sync::OnceLock::new();
    let fut = create::create(
        &settings,
        &repos[0],
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
    // Each other repository gets a verified copy of this backup, and of any earlier one
    // whose copy failed before (newer than the newest it holds).
    let copies = tokio::task::block_in_place(|| copy_to_others(&repos, &created.summary.database));
    super::note_result(format!(
        "backup {} of {} ({}, {}) written to {}{}",
        created.summary.id,
        created.summary.database,
        crate::text::plural(created.summary.tables, "table"),
        crate::text::plural(created.summary.rows, "row"),
        created.path.display(),
        copies_note(&copies)
    ));
    if a.output.format == Format::Json {
        let mut v = serde_json::to_value(&created)?;
        if repos.len() > 1 {
            v["repository"] = repos[0].name.clone().into();
            v["copies"] = serde_json::to_value(&copies)?;
        }
        print(&(serde_json::to_string_pretty(&v)? + "\n"));
        warn_copies(&copies);
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
        for c in copies.iter().filter(|c| c.ok) {
            print(&format!(
                "  copied {} to repository {} ({}), verified by reading it back\n",
                c.id, c.repository, c.url
            ));
        }
        warn_copies(&copies);
    }
    Ok(EXIT_OK)
}

/// One copy to another repository made by `backup create` (or why it failed).
#[derive(Debug, serde::Serialize)]
pub struct CopyOutcome {
    pub repository: String,
    pub url: String,
    pub id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Copies the backups of `database` that the first repository holds and each other one
/// lacks (see [`store::missing`]), each verified by reading it back.
fn copy_to_others(repos: &[Repository], database: &str) -> Vec<CopyOutcome> {
    let mut out = Vec::new();
    let Some((first, others)) = repos.split_first() else {
        return out;
    };
    for to in others {
        let fail = |id: String, e: String| CopyOutcome {
            repository: to.name.clone(),
            url: to.display(),
            id,
            ok: false,
            bytes: None,
            error: Some(e),
        };
        let keys = match store::missing(first, to, database) {
            Ok(k) => k,
            Err(e) => {
                out.push(fail("-".into(), e.to_string()));
                continue;
            }
        };
        for key in keys {
            let id = key_id(&key);
            match store::copy(first, to, &key) {
                Ok(c) => out.push(CopyOutcome {
                    repository: to.name.clone(),
                    url: to.display(),
                    id,
                    ok: true,
                    bytes: Some(c.bytes),
                    error: None,
                }),
                Err(e) => {
                    out.push(fail(id, e.to_string()));
                    // The next ones would fail the same way; the next run retries all.
                    break;
                }
            }
        }
    }
    out
}

/// The backup id of a key `<database>/<id>.opsbak`.
fn key_id(key: &str) -> String {
    key.rsplit('/')
        .next()
        .unwrap_or(key)
        .trim_end_matches(&format!(".{}", repo::EXT))
        .to_string()
}

fn copies_note(copies: &[CopyOutcome]) -> String {
    let ok = copies.iter().filter(|c| c.ok).count();
    let failed = copies.len() - ok;
    match (ok, failed) {
        (0, 0) => String::new(),
        (n, 0) => format!("; {} to other repositories", text::plural(n, "copy")),
        (n, f) => format!(
            "; {} to other repositories, {} FAILED (retried by the next run)",
            text::plural(n, "copy"),
            f
        ),
    }
}

/// A warning per failed copy: the backup is made, the copy is retried by the next run.
fn warn_copies(copies: &[CopyOutcome]) {
    for c in copies.iter().filter(|c| !c.ok) {
        crate::logging::warn(format_args!(
            "the copy of backup {} to repository {} ({}) failed: {}; the backup itself is \
             made, and the next `opsctl backup create` retries the copy (or run `opsctl \
             backup copy {} --to {}`)",
            c.id,
            c.repository,
            c.url,
            c.error.as_deref().unwrap_or("?"),
            c.id,
            c.repository
        ));
    }
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
pub(super) fn table(mut rows: Vec<Vec<String>>, fit: Option<(usize, &[usize])>) -> String {
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
    let repos = repositories(&a.dir, &policy)?;
    let several = repos.len() > 1;
    let (entries, problems) = store::list_all(&repos)?;
    let mut all_temps = Vec::new();
    for r in &repos {
        if let Some(dir) = store::local_dir(r) {
            if let Ok(t) = repo::temp_files(dir) {
                all_temps.extend(t);
            } else if !several {
                all_temps.extend(repo::temp_files(dir)?);
            }
        }
    }
    let temps = temps_line(&all_temps);
    for p in &problems {
        crate::logging::warn(format_args!("cannot list {p}"));
    }
    let entries: Vec<repo::Entry> = if several {
        entries
    } else {
        // One repository: the listing is as it always was (no repositories field).
        entries
            .into_iter()
            .map(|mut e| {
                e.repositories.clear();
                e
            })
            .collect()
    };
    let bases = crate::pitr::catalog::listed(&repos[0])?;
    if a.output.format == Format::Json && !bases.is_empty() {
        let mut all: Vec<serde_json::Value> = entries
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        for b in &bases {
            all.push(serde_json::to_value(b)?);
        }
        print(&(serde_json::to_string_pretty(&all)? + "\n"));
        return Ok(EXIT_OK);
    }
    if a.output.format == Format::Json {
        print(&(serde_json::to_string_pretty(&entries)? + "\n"));
        if let Some(t) = temps {
            eprintln!("note: {t}");
        }
        return Ok(EXIT_OK);
    }
    if entries.is_empty() && !bases.is_empty() {
        print(&with_temps(super::pitr::base_table(&bases), temps));
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        print(&format!(
            "no backups under {}\n{}",
            repos
                .iter()
                .map(|r| r.display())
                .collect::<Vec<_>>()
                .join(", "),
            temps.map(|t| t + "\n").unwrap_or_default()
        ));
        return Ok(EXIT_OK);
    }
    let held_by = |e: &repo::Entry| {
        let mut v = e.repositories.join(",");
        let missing: Vec<&str> = repos
            .iter()
            .filter(|r| !e.repositories.contains(&r.name))
            .map(|r| r.name.as_str())
            .collect();
        if !missing.is_empty() {
            v.push_str(&format!(" (not in {})", missing.join(",")));
        }
        v
    };
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
        if several {
            rows[0].push("repositories".into());
        }
        for e in &entries {
            let s = &e.summary;
            let (v, d) = status_word(&e.status);
            let mut row = vec![
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
            ];
            if several {
                row.push(held_by(e));
            }
            rows.push(row);
        }
        let mut out = table(rows, None);
        if !bases.is_empty() {
            out.push_str(&super::pitr::base_table(&bases));
        }
        print(&with_temps(out, temps));
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
    if several {
        rows[0].push("repositories".into());
    }
    for e in &entries {
        let s = &e.summary;
        let (v, d) = status_short(&e.status);
        let mut row = vec![
            s.id.clone(),
            s.database.clone(),
            text::ts(&s.started_at),
            human_bytes(s.file_bytes),
            seal_short(s.audit_seal.as_ref()),
            v,
            d,
        ];
        if several {
            row.push(held_by(e));
        }
        rows.push(row);
    }
    // Cut the database name first, then the drill, the seal and the start if need be.
    let fit: &[usize] = if several {
        &[1, 6, 4, 2, 7]
    } else {
        &[1, 6, 4, 2]
    };
    let mut out = table(rows, Some((LIST_WIDTH, fit)));
    if !bases.is_empty() {
        out.push_str(&super::pitr::base_table(&bases));
    }
    print(&with_temps(out, temps));
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
    // An id of a base backup (found without a key): verified as one.
    if !Path::new(&a.backup).exists() {
        if let Ok(repos) = repositories(&a.dir, &policy) {
            if let Ok(b) = crate::pitr::catalog::find_base(&repos[0], &a.backup) {
                let keys = load_keys(&a.keys, &policy)?;
                return Ok(super::pitr::verify_base(
                    &repos[0],
                    b,
                    &keys,
                    a.output.format,
                ));
            }
        }
    }
    let located = locate(&a.backup, &a.dir, &policy)?;
    let keys = load_keys(&a.keys, &policy)?;
    let (fetched, copy) = tokio::task::block_in_place(|| located.fetch_first())?;
    let path = fetched.path.clone();
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
        } else if let Some((i, key)) = &copy {
            if let Err(e) = fetched.push_status(&located.repos[*i], key) {
                crate::logging::warn(format_args!(
                    "cannot record the result in repository {}: {e}",
                    located.repos[*i].display()
                ));
            }
        }
    }
    let shown = match &copy {
        Some((i, key)) => store::display_path(&located.repos[*i], key),
        None => path.clone(),
    };
    let path = shown;
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
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    dry_run: bool,
    decisions: Vec<repo::Decision>,
    deleted: Vec<String>,
    temporary_files: Vec<TempOutcome>,
    /// Incomplete uploads and orphans removed (object storage).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    incomplete: Vec<String>,
    #[serde(skip)]
    retention: crate::policy::Retention,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_backups: Option<crate::pitr::prune::BasePrune>,
}

/// What prune did with one temporary file.
#[derive(serde::Serialize)]
struct TempOutcome {
    #[serde(flatten)]
    file: repo::TempEntry,
    /// removed, would_remove, being_written, unknown
    action: &'static str,
}

/// The retention of repository `name`: its own `[repositories.retention]`, else
/// `[backup.retention]`.
fn retention_for(r: &Repository, policy: &Policy) -> crate::policy::Retention {
    r.retention
        .clone()
        .unwrap_or_else(|| policy.backup.retention.clone())
}

async fn prune(a: BackupPruneArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&a.policy)?;
    let repos = repositories(&a.dir, &policy)?;
    let several = repos.len() > 1;
    let conn = if !a.dry_run && connection_configured(&a.connect) {
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
    let mut outs = Vec::new();
    for r in &repos {
        let retention = retention_for(r, &policy);
        let mut out = prune_one(r, retention, &policy, a.dry_run, conn.as_ref()).await?;
        if several {
            out.repository = Some(r.name.clone());
            out.url = Some(r.display());
        }
        outs.push(out);
    }
    if a.output.format == Format::Json {
        let v = if several {
            serde_json::json!({ "dry_run": a.dry_run, "repositories": outs })
        } else {
            serde_json::to_value(&outs[0])?
        };
        print(&(serde_json::to_string_pretty(&v)? + "\n"));
        return Ok(EXIT_OK);
    }
    let mut text = String::new();
    for o in &outs {
        if let (Some(name), Some(url)) = (&o.repository, &o.url) {
            text.push_str(&format!("repository {name} ({url}):\n"));
        }
        text.push_str(&prune_text(o, &policy.basebackup, a.dry_run));
    }
    print(&text);
    Ok(EXIT_OK)
}

/// Applies `retention` to the backups of one repository (each database on its own).
async fn prune_one(
    r: &Repository,
    retention: crate::policy::Retention,
    policy: &Policy,
    dry_run: bool,
    conn: Option<&crate::db::Connection>,
) -> anyhow::Result<PruneOut> {
    let entries = store::list(r)?;
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
        for mut d in repo::prune_plan(&input, &retention, now) {
            d.database = db.clone();
            decisions.push(d);
        }
    }
    // Temporary files: removed when their writer is gone (checked again under its lock).
    let mut temps = Vec::new();
    if let Some(dir) = store::local_dir(r) {
        for t in repo::temp_files(dir)? {
            let action = match t.in_use {
                Some(true) => "being_written",
                None => "unknown",
                Some(false) if dry_run => "would_remove",
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
    }
    let mut incomplete = Vec::new();
    if !r.is_local() && !dry_run {
        incomplete = r.clean_incomplete(Duration::from_secs(24 * 3600))?;
    }
    let bases = super::pitr::prune_bases(r, policy, dry_run)?;
    let mut deleted = Vec::new();
    if !dry_run {
        for d in decisions.iter().filter(|d| !d.keep) {
            let e = entries
                .iter()
                .find(|e| e.summary.id == d.id && e.summary.database == d.database)
                .expect("listed");
            store::delete(r, &e.key)?;
            deleted.push(e.path.display().to_string());
            if let Some(c) = conn {
                let _ = bookkeeping::record_deleted(c, &d.id).await;
            }
        }
    }
    Ok(PruneOut {
        repository: None,
        url: None,
        dry_run,
        decisions,
        deleted,
        temporary_files: temps,
        incomplete,
        retention,
        base_backups: bases,
    })
}

fn prune_text(o: &PruneOut, basebackup: &crate::policy::BasebackupPolicy, dry_run: bool) -> String {
    let r = &o.retention;
    let mut out =
        format!(
        "retention: keep_last={} daily={} weekly={} monthly={}, and the newest verified backup{}\n",
        r.keep_last,
        r.daily,
        r.weekly,
        r.monthly,
        if dry_run { " (dry run: nothing deleted)" } else { "" }
    );
    for d in &o.decisions {
        let verb = match (d.keep, dry_run) {
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
    if o.decisions.is_empty() && o.base_backups.is_none() {
        out.push_str("no backups\n");
    }
    if let Some(b) = &o.base_backups {
        out.push_str(&super::pitr::prune_text(b, basebackup, dry_run));
    }
    for t in &o.temporary_files {
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
    for line in &o.incomplete {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn rekey(a: BackupRekeyArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&a.policy)?;
    let located = locate(&a.backup, &a.dir, &policy)?;
    let keys = load_keys(&a.keys, &policy)?;
    let new_key = || -> anyhow::Result<KeyMaterial> {
        Ok(KeyMaterial::Key(keys::load_key_file(&a.new_key_file)?))
    };
    new_key()?;
    // Every copy of the backup is rekeyed (a spooled copy is put back whole).
    let targets: Vec<Option<(usize, String)>> = if located.file.is_some() {
        vec![None]
    } else {
        located.copies.iter().cloned().map(Some).collect()
    };
    let mut header = None;
    let mut path = PathBuf::new();
    for t in targets {
        let fetched = match (&t, &located.file) {
            (None, Some(f)) => store::Fetched::file(f),
            (Some((i, key)), _) => store::fetch(&located.repos[*i], key)?,
            (None, None) => unreachable!("a file or copies"),
        };
        let h = if a.reencrypt {
            repo::reencrypt(&fetched.path, &keys, &[new_key()?])?
        } else {
            repo::rekey(&fetched.path, &keys, &[new_key()?], a.replace)?
        };
        match &t {
            Some((i, key)) => {
                let r = &located.repos[*i];
                fetched.push_all(r, key)?;
                if header.is_some() {
                    eprintln!(
                        "note: the copy in repository {} ({}) was rekeyed too",
                        r.name,
                        r.display()
                    );
                } else {
                    path = store::display_path(r, key);
                }
            }
            None => path = fetched.path.clone(),
        }
        header.get_or_insert(h);
    }
    let header = header.expect("at least one copy");
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

/// `backup copy ID --to NAME|URL`: the first copy found (repository order) is copied and
/// read back from the destination.
fn copy_cmd(a: BackupCopyArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&a.policy)?;
    let located = locate(&a.backup, &a.dir, &policy)?;
    if located.file.is_some() {
        anyhow::bail!(
            "{} is a file: `backup copy` takes a backup id from a repository (see `opsctl \
             backup list`)",
            a.backup
        );
    }
    let to = storage::resolve(Some(&a.to), &policy)?;
    let (i, key) = located.copies[0].clone();
    let from = &located.repos[i];
    if from.name == to.name && from.display() == to.display() {
        anyhow::bail!(
            "backup {} is read from repository {} itself: give another --to",
            a.backup,
            to.name
        );
    }
    if to.exists(&store::summary_key(&key))? {
        print(&format!(
            "repository {} ({}) already holds backup {}: nothing copied\n",
            to.name,
            to.display(),
            a.backup
        ));
        return Ok(EXIT_OK);
    }
    let t0 = std::time::Instant::now();
    let c = tokio::task::block_in_place(|| store::copy(from, &to, &key))?;
    let secs = t0.elapsed().as_secs_f64();
    super::note_result(format!(
        "copied backup {} from {} to {} ({})",
        a.backup,
        from.name,
        to.name,
        human_bytes(c.bytes)
    ));
    if a.output.format == Format::Json {
        print(
            &(serde_json::to_string_pretty(&serde_json::json!({
                "id": a.backup,
                "from": from.name,
                "from_url": from.display(),
                "to": to.name,
                "to_url": to.display(),
                "bytes": c.bytes,
                "sha256": c.sha256,
                "seconds": secs,
            }))? + "\n"),
        );
    } else {
        print(&format!(
            "copied backup {} from repository {} ({}) to {} ({}): {} in {:.1}s, read back \
             with the same SHA-256\n",
            a.backup,
            from.name,
            from.display(),
            to.name,
            to.display(),
            human_bytes(c.bytes),
            secs
        ));
    }
    Ok(EXIT_OK)
}
