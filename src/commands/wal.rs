//! `opsctl wal push|fetch|status|setup|verify`: WAL archiving with the repository and key
//! of the policy. push and fetch are PostgreSQL's archive_command and restore_command and
//! never connect to the database; their exit codes are what PostgreSQL acts on.

use std::path::Path;

use serde_json::json;

use super::backup::load_keys;
use super::{conn_settings, load_policy, print, report_error, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::backup::keys::KeyMaterial;
use crate::cli::{
    Format, WalCommand, WalFetchArgs, WalPushArgs, WalRepoArgs, WalSetupArgs, WalStatusArgs,
    WalVerifyArgs,
};
use crate::error::Error;
use crate::storage::{self, Repository};
use crate::wal::{self, archive, status, verify, WalName};

/// `wal fetch`: the file is there but cannot be delivered intact, or opsctl cannot work
/// at all. Above 125, so PostgreSQL aborts recovery instead of ending it early.
pub const EXIT_RECOVERY_STOP: u8 = 200;

pub async fn run(cmd: WalCommand) -> u8 {
    match cmd {
        WalCommand::Push(a) => blocking(move || push_cmd(a), EXIT_FAILURE).await,
        WalCommand::Fetch(a) => blocking(move || fetch_cmd(a), EXIT_RECOVERY_STOP).await,
        WalCommand::Status(a) => status_cmd(a).await,
        WalCommand::Setup(a) => setup_cmd(a),
        WalCommand::Verify(a) => blocking(move || verify_cmd(a), EXIT_FAILURE).await,
    }
}

/// Repositories may drive a runtime of their own: run the file work off the async one.
async fn blocking(f: impl FnOnce() -> u8 + Send + 'static, on_panic: u8) -> u8 {
    match tokio::task::spawn_blocking(f).await {
        Ok(code) => code,
        Err(e) => {
            report_error(&format!("internal error: {e}"));
            on_panic
        }
    }
}

fn repo_and_keys(
    a: &WalRepoArgs,
) -> Result<(Repository, Vec<KeyMaterial>, crate::policy::Policy), anyhow::Error> {
    let policy = load_policy(&a.policy)?;
    let repo = storage::resolve(a.repo.as_deref(), &policy)?;
    let keys = load_keys(&a.keys, &policy)?;
    Ok((repo, keys, policy))
}

fn push_cmd(a: WalPushArgs) -> u8 {
    let r = (|| -> anyhow::Result<archive::Pushed> {
        let (repo, keys, policy) = repo_and_keys(&a.repo)?;
        let compression = policy.backup.compression()?;
        Ok(archive::push(&repo, &keys, compression, &a.path)?)
    })();
    match r {
        Ok(archive::Pushed::Archived { .. }) => EXIT_OK,
        Ok(archive::Pushed::AlreadyArchived { key }) => {
            crate::logging::note(format_args!(
                "{} is already archived with identical content ({key}); nothing to do",
                a.path.display()
            ));
            EXIT_OK
        }
        Err(e) => {
            report_error(&format!("wal push {}: {e:#}", a.path.display()));
            EXIT_FAILURE
        }
    }
}

fn fetch_cmd(a: WalFetchArgs) -> u8 {
    let r = (|| -> Result<u64, archive::FetchError> {
        let (repo, keys, _) = repo_and_keys(&a.repo)
            .map_err(|e| archive::FetchError::Fatal(Error::Other(format!("{e:#}"))))?;
        archive::fetch(&repo, &keys, &a.name, &a.path)
    })();
    match r {
        Ok(_) => EXIT_OK,
        Err(archive::FetchError::Missing) => EXIT_FAILURE,
        Err(archive::FetchError::Fatal(e)) => {
            report_error(&format!(
                "wal fetch {}: {e}; stopping recovery (exit {EXIT_RECOVERY_STOP}) rather than \
                 ending it early at a wrong point",
                a.name
            ));
            EXIT_RECOVERY_STOP
        }
    }
}

/// The newest archived segment of each timeline.
fn newest_per_timeline(
    files: &[wal::Archived],
) -> Vec<(u32, String, chrono::DateTime<chrono::Utc>)> {
    let mut out: std::collections::BTreeMap<u32, (String, chrono::DateTime<chrono::Utc>)> =
        Default::default();
    for f in files {
        if let WalName::Segment(s) = f.name {
            out.insert(s.tli, (s.name(), f.modified));
        }
    }
    out.into_iter().map(|(t, (n, m))| (t, n, m)).collect()
}

async fn status_cmd(a: WalStatusArgs) -> u8 {
    let json_out = a.output.format == Format::Json;
    let settings = match conn_settings(&a.connect) {
        Ok(s) => s,
        Err(e) => {
            report_error(&e.to_string());
            return EXIT_USAGE;
        }
    };
    let conn = match crate::db::connect(&settings).await {
        Ok(c) => c,
        Err(e) => {
            report_error(&e.to_string());
            return EXIT_FAILURE;
        }
    };
    let st = match status::server_status(&conn.client).await {
        Ok(s) => s,
        Err(e) => {
            report_error(&e.to_string());
            return EXIT_FAILURE;
        }
    };
    // The archive side: listing needs no key.
    let repo_arg = a.repo.clone();
    let policy = a.policy.clone();
    let archive = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let policy = crate::policy::Policy::load(policy.policy.as_deref())?;
        let repo = storage::resolve(repo_arg.as_deref(), &policy)?;
        let info = wal::load_info(&repo)?;
        let files = match &info {
            Some(i) => wal::list(&repo, i.system_id()?)?,
            None => Vec::new(),
        };
        Ok((repo.display(), info, newest_per_timeline(&files)))
    })
    .await
    .unwrap_or_else(|e| Err(Error::Other(format!("internal error: {e}"))));

    let mut notes = Vec::new();
    if let Some(n) = &st.ready_note {
        notes.push(n.clone());
    }
    let archive_json = match &archive {
        Ok((repo, info, newest)) => {
            if let Some(i) = info {
                if i.system_identifier != st.system_identifier {
                    notes.push(format!(
                        "the archive in {repo} belongs to cluster {}, this server is cluster {}",
                        i.system_identifier, st.system_identifier
                    ));
                }
            }
            json!({
                "repository": repo,
                "system_identifier": info.as_ref().map(|i| i.system_identifier.clone()),
                "newest_per_timeline": newest.iter().map(|(t, n, m)| json!({
                    "timeline": t, "segment": n, "archived_at": crate::text::ts_json(m)
                })).collect::<Vec<_>>(),
            })
        }
        Err(e) => {
            notes.push(format!("archive not read: {e}"));
            serde_json::Value::Null
        }
    };
    if !st.archiving() {
        notes.push(
            "archive_mode is off: nothing is archived (see `opsctl wal setup --print`)".into(),
        );
    } else if st.failing() {
        notes.push(format!(
            "archiving is failing: the last attempt ({}) failed; see the server log",
            st.last_failed_wal.as_deref().unwrap_or("?")
        ));
    }
    if json_out {
        let mut v = serde_json::to_value(&st).unwrap_or_default();
        v["archive"] = archive_json;
        v["notes"] = json!(notes);
        print(&(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"));
        return EXIT_OK;
    }
    let ts = |t: &Option<chrono::DateTime<chrono::Utc>>| {
        t.as_ref()
            .map(crate::text::ts)
            .unwrap_or_else(|| "never".into())
    };
    let mut out = String::new();
    out.push_str(&format!("wal_level        {}\n", st.wal_level));
    out.push_str(&format!("archive_mode     {}\n", st.archive_mode));
    out.push_str(&format!("archive_command  {}\n", st.archive_command));
    out.push_str(&format!("archive_timeout  {}\n", st.archive_timeout));
    if let Some(f) = &st.current_wal_file {
        out.push_str(&format!("writing          {f}\n"));
    }
    out.push_str(&format!(
        "last archived    {} at {} ({} archived since {})\n",
        st.last_archived_wal.as_deref().unwrap_or("-"),
        ts(&st.last_archived_time),
        st.archived_count,
        ts(&st.stats_reset)
    ));
    out.push_str(&format!(
        "last failed      {} at {} ({} failures)\n",
        st.last_failed_wal.as_deref().unwrap_or("-"),
        ts(&st.last_failed_time),
        st.failed_count
    ));
    match st.ready_count {
        Some(n) => out.push_str(&format!(
            "waiting          {n} segment(s){}\n",
            st.oldest_ready
                .as_ref()
                .map(|o| format!(", oldest {o}"))
                .unwrap_or_default()
        )),
        None => out.push_str("waiting          unknown\n"),
    }
    if let Ok((repo, _, newest)) = &archive {
        out.push_str(&format!("repository       {repo}\n"));
        if newest.is_empty() {
            out.push_str("archived         nothing yet\n");
        }
        for (t, n, m) in newest {
            out.push_str(&format!(
                "timeline {t:<7} newest archived {n} at {}\n",
                crate::text::ts(m)
            ));
        }
    }
    for n in &notes {
        out.push_str(&format!("note: {n}\n"));
    }
    print(&out);
    EXIT_OK
}

fn setup_cmd(a: WalSetupArgs) -> u8 {
    if !a.print {
        report_error(
            "opsctl does not change server settings itself: run `opsctl wal setup --print` and \
             apply the lines it prints with psql as a superuser",
        );
        return EXIT_USAGE;
    }
    let r = (|| -> anyhow::Result<String> {
        let timeout = crate::duration::parse_flag(&a.archive_timeout)?;
        if timeout.as_secs() == 0 {
            anyhow::bail!("--archive-timeout must be at least 1s (0 turns it off)");
        }
        let exe = std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(|e| anyhow::anyhow!("cannot tell where opsctl is installed: {e}"))?;
        let mut cmd = format!(
            "{} wal push %p",
            status::shell_quote(&exe.to_string_lossy())
        );
        let policy_path = match &a.policy.policy {
            Some(p) => Some(absolute(p)?),
            None => None,
        };
        let policy = load_policy(&a.policy)?;
        if policy_path.is_none() && a.repo.is_none() {
            anyhow::bail!(
                "name the policy with --policy FILE (or OPSCTL_POLICY): archive_command must find \
                 the repository and the key without the environment of this shell"
            );
        }
        // Fail now, not in the archiver: the repository must resolve.
        storage::resolve(a.repo.as_deref(), &policy)?;
        if let Some(r) = &a.repo {
            cmd.push_str(&format!(" --repo {}", status::shell_quote(r)));
        }
        if let Some(k) = &a.key_file {
            cmd.push_str(&format!(
                " --key-file {}",
                status::shell_quote(&absolute(k)?.to_string_lossy())
            ));
        } else if policy.backup.key_file.is_none() {
            anyhow::bail!(
                "the policy names no [backup] key_file: pass --key-file FILE (the server's \
                 archive_command does not see OPSCTL_KEY_FILE or OPSCTL_PASSPHRASE)"
            );
        }
        if let Some(p) = &policy_path {
            cmd.push_str(&format!(
                " --policy {}",
                status::shell_quote(&p.to_string_lossy())
            ));
        }
        let lines = status::setup_lines(&cmd, timeout.as_secs());
        let mut out = String::from(
            "-- Run as a superuser; the key file and repository must be readable and writable by\n\
             -- the server's OS user (postgres).\n",
        );
        for l in &lines {
            out.push_str(&format!(
                "{}{}\n",
                l.sql(),
                if l.restart {
                    "  -- needs a restart"
                } else {
                    "  -- takes effect on reload"
                }
            ));
        }
        out.push_str("SELECT pg_reload_conf();\n");
        out.push_str(
            "-- wal_level and archive_mode take effect after a restart (pg_ctl restart, or\n\
             -- systemctl restart postgresql); check with `opsctl wal status`.\n",
        );
        Ok(out)
    })();
    match r {
        Ok(out) => {
            print(&out);
            EXIT_OK
        }
        Err(e) => {
            report_error(&format!("{e:#}"));
            EXIT_FAILURE
        }
    }
}

fn absolute(p: &Path) -> anyhow::Result<std::path::PathBuf> {
    p.canonicalize()
        .map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", p.display()))
}

fn verify_cmd(a: WalVerifyArgs) -> u8 {
    let json_out = a.output.format == Format::Json;
    let r = (|| -> anyhow::Result<verify::Report> {
        let start = match &a.from {
            Some(s) => match WalName::parse(s) {
                Some(WalName::Segment(seg)) => Some(seg),
                _ => anyhow::bail!("--from {s:?} is not a WAL segment name (24 hex digits)"),
            },
            None => None,
        };
        let (repo, keys, _) = repo_and_keys(&a.repo)?;
        Ok(verify::verify(&repo, &keys, start)?)
    })();
    let rep = match r {
        Ok(r) => r,
        Err(e) => {
            report_error(&format!("{e:#}"));
            return EXIT_FAILURE;
        }
    };
    if json_out {
        let mut v = serde_json::to_value(&rep).unwrap_or_default();
        v["ok"] = json!(rep.ok());
        print(&(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"));
    } else {
        let mut out = format!(
            "archive of cluster {} (segments of {} MiB), newest timeline {}\n",
            rep.system_identifier,
            rep.wal_segment_size >> 20,
            rep.timeline
        );
        for (t, end) in &rep.history {
            out.push_str(&format!("  timeline {t} ended at {end}\n"));
        }
        match (&rep.from, &rep.to) {
            (Some(f), Some(t)) => out.push_str(&format!(
                "checked {} segment(s) from {f} to {t}\n",
                rep.checked
            )),
            _ => out.push_str("no segment archived\n"),
        }
        for g in &rep.gaps {
            out.push_str(&format!(
                "GAP on timeline {}: {} segment(s) missing, {} .. {}\n",
                g.timeline, g.segments, g.first, g.last
            ));
        }
        for p in &rep.problems {
            out.push_str(&format!("PROBLEM: {p}\n"));
        }
        out.push_str(if rep.ok() {
            "OK: no gap\n"
        } else {
            "FAILED: the archive cannot replay through the range above\n"
        });
        print(&out);
    }
    if rep.ok() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}
