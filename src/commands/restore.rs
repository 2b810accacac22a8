//! `opsctl restore FILE|ID --target-db NAME [--create] [--clean] [--jobs N] [--force]`.
//! Ctrl-C/SIGTERM undo what the run did and exit 130/143.

use super::backup::{finish, load_keys, progress, resolve_backup};
use super::{conn_settings, load_policy, note_error, print, EXIT_OK};
use crate::backup::restore::{self, Options};
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
    let path = resolve_backup(a.backup.as_deref().unwrap_or_default(), &a.dir, &policy)?;
    let keys = load_keys(&a.keys, &policy)?;
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
    let r = restore::restore(
        &settings,
        &path,
        std::sync::Arc::new(keys),
        &opts,
        pb.clone(),
    )
    .await;
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
        print(&(serde_json::to_string_pretty(&r)? + "\n"));
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
    }
    Ok(EXIT_OK)
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
