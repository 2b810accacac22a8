//! `opsctl restore FILE|ID --target-db NAME [--create] [--clean] [--jobs N] [--force]`.
//! Ctrl-C/SIGTERM undo what the run did and exit 130/143.

use super::backup::{finish, load_keys, locate, progress, Located};
use super::{conn_settings, load_policy, note_error, print, EXIT_OK};
use crate::backup::restore::{self, Options};
use crate::backup::store;
use crate::cli::{Format, RestoreArgs};
use crate::error::Error;
use crate::interrupt::{self, Stop};

pub async fn run(a: RestoreArgs) -> u8 {
    if a.pitr.pitr {
        return super::pitr::restore_pitr(a).await;
    }
    finish(run_inner(a).await)
}

async fn run_inner(a: RestoreArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&a.policy)?;
    let settings = conn_settings(&a.connect)?;
    let located = locate(a.backup.as_deref().unwrap_or_default(), &a.dir, &policy)?;
    let keys = std::sync::Arc::new(load_keys(&a.keys, &policy)?);
    let opts = Options {
        target_db: a.target_db.clone().unwrap_or_default(),
        create: a.create,
        clean: a.clean,
        jobs: a.jobs,
        force: a.force,
        tmp_dir: std::env::temp_dir(),
        stop: Stop::on_signals()?,
    };
    let pb = progress("authenticating, then restoring (file bytes read)");
    let (r, used, _fetched) = first_good(&located, |path| {
        let (keys, pb) = (keys.clone(), pb.clone());
        let (settings, opts) = (&settings, &opts);
        async move { restore::restore(settings, &path, keys, opts, pb).await }
    })
    .await?;
    drop(pb);
    let r = match r {
        Err(Error::Interrupted { signal, undone }) => {
            return Ok(interrupted("restore", signal, &undone))
        }
        r => r?,
    };
    if r.skipped_ownership {
        crate::logging::note(format_args!(
            "roles {} do not exist in the target cluster: restored with --no-owner \
             --no-privileges (objects are owned by the restoring user, grants skipped); create \
             the roles first to keep ownership and grants",
            r.missing_roles.join(", ")
        ));
    }
    if a.output.format == Format::Json {
        let mut v = serde_json::to_value(&r)?;
        if let Some((name, url)) = &used {
            v["repository"] = name.clone().into();
            v["repository_url"] = url.clone().into();
        }
        print(&(serde_json::to_string_pretty(&v)? + "\n"));
    } else {
        print(&format!(
            "restored backup {} of {} into {}{}: {} tables, {} rows; authenticated in {:.1}s, \
             restored in {:.1}s (total {:.1}s{})\n",
            r.id,
            r.source_database,
            r.target_database,
            if r.created { " (created)" } else { "" },
            r.tables,
            r.rows,
            r.authenticate_secs,
            r.restore_secs,
            r.total_secs,
            if r.jobs > 1 {
                format!(", {} jobs", r.jobs)
            } else {
                String::new()
            }
        ));
        if let Some((name, url)) = &used {
            print(&format!("  read from repository {name} ({url})\n"));
        }
    }
    Ok(EXIT_OK)
}

/// Runs a reader (restore, drill) on the copies of a located backup in repository order
/// until one authenticates: a copy that does not (or cannot be fetched) is reported and
/// the next repository's copy is tried. Returns the reader's result, the repository used
/// (name, URL) when the backup was looked up by id, and the fetched copy (a spooled copy
/// lives until it is dropped).
pub async fn first_good<T, F, Fut>(
    located: &Located,
    mut run: F,
) -> anyhow::Result<(Result<T, Error>, Option<(String, String)>, store::Fetched)>
where
    F: FnMut(std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    if let Some(f) = &located.file {
        let fetched = store::Fetched::file(f);
        return Ok((run(f.clone()).await, None, fetched));
    }
    let n = located.copies.len();
    for (k, (i, key)) in located.copies.iter().enumerate() {
        let repo = &located.repos[*i];
        let next = located
            .copies
            .get(k + 1)
            .map(|(j, _)| located.repos[*j].name.clone());
        let fetched = match tokio::task::block_in_place(|| store::fetch(repo, key)) {
            Ok(f) => f,
            Err(e) if k + 1 < n => {
                crate::logging::warn(format_args!(
                    "cannot read the copy in repository {} ({}): {e}; trying repository {}",
                    repo.name,
                    repo.display(),
                    next.unwrap_or_default()
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let r = run(fetched.path.clone()).await;
        if let (Err(Error::Verify(msg)), Some(next)) = (&r, &next) {
            crate::logging::warn(format_args!(
                "the copy in repository {} ({}) does not verify: {msg}; trying repository {next}",
                repo.name,
                repo.display()
            ));
            continue;
        }
        if r.is_ok() {
            if let Err(e) = fetched.push_status(repo, key) {
                crate::logging::warn(format_args!(
                    "cannot record the result in repository {}: {e}",
                    repo.display()
                ));
            }
        }
        if k > 0 || located.repos.len() > 1 {
            crate::logging::note(format_args!(
                "used the copy in repository {} ({})",
                repo.name,
                repo.display()
            ));
        }
        return Ok((r, Some((repo.name.clone(), repo.display())), fetched));
    }
    unreachable!("located backups have at least one copy")
}

/// Says on one line what an interrupted command undid (the operations log records the
/// same line) and returns the shell's status for the signal: 130 (SIGINT), 143 (SIGTERM).
pub fn interrupted(what: &str, signal: i32, undone: &str) -> u8 {
    let line = format!(
        "{what} interrupted by {}: {undone}",
        interrupt::signal_name(signal)
    );
    eprintln!("{line}");
    note_error(&line);
    interrupt::exit_code(signal)
}
