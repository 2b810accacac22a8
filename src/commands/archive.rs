//! `opsctl archive --before DATE`: validates the date before touching anything, prints the
//! plan on `--dry-run`, otherwise runs `partition::archive` with a progress bar on a
//! terminal and renders the summary (text or JSON). Exit 1 when verification fails.
//! With `--export-dir` each archived month is also written and verified by
//! `partition::export` (and dropped with `--drop-after-export`); `archive restore FILE`
//! brings one back.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::partition::{fail, fmt_ts, pretty};
use super::{conn_settings, load_policy, print, stderr_is_terminal, EXIT_FAILURE, EXIT_OK};
use crate::cli::{ArchiveArgs, ArchiveCommand, ArchiveRestoreArgs, Format};
use crate::db;
use crate::error::Error;
use crate::partition::archive::{self, Outcome, Plan, Request, Summary};
use crate::partition::export::{self, ExportSummary, RestoreError};
use crate::partition::{self, Observer};
use crate::units::human_bytes;

/// `app.actor` of archive sessions, so the audit log attributes the row moves.
pub const ACTOR: &str = "opsctl archive";
/// `app.actor` of restore sessions.
pub const RESTORE_ACTOR: &str = "opsctl archive restore";

/// Progress on stderr: a bar on a terminal, notices only otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Observer for Progress {
    fn notice(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => crate::logging::info(msg),
        }
    }
    fn total(&self, rows: u64) {
        if let Some(b) = &self.bar {
            b.set_length(rows);
            b.set_position(0);
        }
    }
    fn advance(&self, rows: u64) {
        if let Some(b) = &self.bar {
            b.inc(rows);
        }
    }
}

pub async fn run(args: ArchiveArgs) -> u8 {
    if let Some(ArchiveCommand::Restore(a)) = args.command {
        return restore_cmd(a).await;
    }
    // Everything about the arguments is checked before connecting.
    let before = args.before.clone().unwrap_or_default();
    let cutoff = match archive::parse_cutoff(&before)
        .and_then(|c| archive::check_not_future(c, partition::now_utc(), args.force).map(|_| c))
    {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let setup = conn_settings(&args.connect)
        .and_then(|s| load_policy(&args.policy).map(|p| (s, p)))
        .and_then(|(s, p)| partition::TableSpec::parse(&args.table).map(|t| (s, p, t)));
    let (settings, policy, _) = match setup {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let spec = match partition::tables_from_policy(&policy.partitions, Some(&args.table)) {
        Ok(mut v) => v.remove(0),
        Err(e) => return fail(e),
    };
    let export_target = args
        .export_dir
        .clone()
        .or_else(|| policy.archive.export_repo.clone())
        .or_else(|| {
            policy
                .archive
                .export_dir
                .as_ref()
                .map(|d| d.display().to_string())
        });
    let export_dir = match export_target
        .as_deref()
        .map(|t| crate::storage::resolve(Some(t), &policy))
        .transpose()
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if args.drop_after_export && export_dir.is_none() {
        return fail(Error::Config(
            "--drop-after-export needs --export-dir DIR|URL (or [archive] export_repo / export_dir in the policy): \
             a month is only dropped after its export verified"
                .into(),
        ));
    }
    let keys = match &export_dir {
        Some(_) if !args.dry_run => match super::backup::load_keys(&args.keys, &policy) {
            Ok(k) => k,
            Err(e) => return fail_any(e),
        },
        _ => Vec::new(),
    };
    // Exports use the backups' compression setting.
    let compression = match policy.backup.compression() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let batch_size = args
        .batch_size
        .or(policy.archive.batch_size)
        .map_or(archive::DEFAULT_BATCH_SIZE, i64::from);
    let res: Result<u8, Error> = async {
        let conn = db::connect(&settings).await?;
        partition::prepare_session(&conn).await?;
        partition::set_actor(&conn, ACTOR).await?;
        let table = partition::inspect(&conn, &spec).await?;
        if args.dry_run {
            let plan = archive::plan(&conn, &table, cutoff, batch_size).await?;
            emit_plan(&plan, args.output.format);
            return Ok(EXIT_OK);
        }
        let bar = stderr_is_terminal().then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} archiving [{bar:30}] {pos}/{len} rows {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let progress = Progress { bar };
        let req = Request {
            cutoff,
            batch_size,
            lock_wait: args.lock_wait,
        };
        let outcome = archive::run(&conn, &table, &req, &progress).await;
        if let Some(b) = &progress.bar {
            b.finish_and_clear();
        }
        let outcome = outcome?;
        let exported = match &export_dir {
            Some(dir) if outcome.verified() => Some(
                export::export_archived(
                    &conn,
                    &table,
                    dir,
                    &keys,
                    args.drop_after_export,
                    args.lock_wait,
                    &progress,
                    compression,
                )
                .await?,
            ),
            Some(_) => {
                progress.notice("the archive did not verify: nothing is exported or dropped");
                None
            }
            None => None,
        };
        emit_outcome(&outcome, exported.as_ref(), args.output.format);
        let export_ok = exported.as_ref().map_or(true, |e| e.failed.is_none());
        Ok(if outcome.verified() && export_ok {
            EXIT_OK
        } else {
            EXIT_FAILURE
        })
    }
    .await;
    match res {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn emit_plan(p: &Plan, format: Format) {
    if format == Format::Json {
        print(&(pretty(&json!({ "dry_run": true, "plan": p })) + "\n"));
        return;
    }
    let mut out = format!(
        "dry run: archive of {} before {} UTC into {} (nothing is changed)\n",
        p.table,
        fmt_ts(p.cutoff),
        p.archive_table
    );
    if let Some(u) = &p.unfinished {
        out.push_str(&format!(
            "  first: finish the unfinished archive before {} UTC (journal #{}, started {}, \
             {} of {} rows moved)\n",
            fmt_ts(u.cutoff),
            u.journal_id,
            crate::text::ts(&u.started_at),
            u.rows_moved,
            u.source_rows
        ));
    }
    out.push_str(&format!(
        "  whole partitions (DETACH + ATTACH, no copy): {}\n",
        p.partitions.len()
    ));
    for w in &p.partitions {
        out.push_str(&format!(
            "    {}  [{} .. {})  {} rows  {}\n",
            w.partition,
            w.from.map_or("MINVALUE".into(), fmt_ts),
            w.to.map_or("MAXVALUE".into(), fmt_ts),
            w.rows.unwrap_or(0),
            human_bytes(w.bytes)
        ));
    }
    out.push_str(&format!(
        "  rows in batches: {} in {} of up to {} ({})\n",
        p.batch_rows,
        crate::text::plural(p.batches, "batch"),
        p.batch_size,
        human_bytes(p.batch_bytes)
    ));
    out.push_str(&format!(
        "  total: {} rows, {}\n",
        p.rows,
        human_bytes(p.bytes)
    ));
    print(&out);
}

fn emit_outcome(o: &Outcome, exported: Option<&ExportSummary>, format: Format) {
    if format == Format::Json {
        print(
            &(pretty(
                &json!({ "dry_run": false, "verified": o.verified(), "finished_first": o.finished_first, "summary": o.summary, "export": exported }),
            ) + "\n"),
        );
        return;
    }
    let mut out = String::new();
    if let Some(s) = &o.finished_first {
        out.push_str("finished the unfinished archive first:\n");
        out.push_str(&render_summary(s));
    }
    out.push_str(&render_summary(&o.summary));
    if let Some(e) = exported {
        out.push_str(&format!(
            "  export to {}: {} month{}\n",
            e.dir.display(),
            e.months.len(),
            if e.months.len() == 1 { "" } else { "s" }
        ));
        for m in &e.months {
            out.push_str(&format!(
                "    {}  {} rows  checksum {}  {}  {}{}\n",
                m.partition,
                m.rows,
                m.checksum,
                human_bytes(m.bytes as i64),
                if m.written {
                    "written, verified"
                } else {
                    "kept (already exported, verified)"
                },
                if m.dropped {
                    ", dropped from the database"
                } else {
                    ""
                }
            ));
        }
        if let Some(f) = &e.failed {
            out.push_str(&format!("  EXPORT FAILED: {f}\n"));
        }
    }
    print(&out);
}

/// Exit status for a command error carried by anyhow (key loading).
fn fail_any(e: anyhow::Error) -> u8 {
    let usage = matches!(e.downcast_ref::<Error>(), Some(Error::Config(_)));
    super::print_error(&e);
    if usage {
        super::EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// Notices on stderr.
struct Notices;
impl Observer for Notices {
    fn notice(&self, msg: &str) {
        crate::logging::info(msg);
    }
}

async fn restore_cmd(args: ArchiveRestoreArgs) -> u8 {
    let setup =
        conn_settings(&args.connect).and_then(|s| load_policy(&args.policy).map(|p| (s, p)));
    let (settings, policy) = match setup {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    // From a repository: the object is read once into a private 0600 file, then restored
    // from there exactly as a local file.
    let fetched = match &args.repo {
        Some(r) => {
            let key = args.file.to_string_lossy().into_owned();
            match crate::storage::resolve(Some(r), &policy)
                .and_then(|repo| crate::backup::store::fetch(&repo, &key))
            {
                Ok(f) => Some(f),
                Err(e) => return fail(e),
            }
        }
        None => None,
    };
    let file = fetched
        .as_ref()
        .map_or_else(|| args.file.clone(), |f| f.path.clone());
    if !file.is_file() {
        return fail(Error::Config(format!(
            "{} is not a file: give the path of an exported month (*.{})",
            args.file.display(),
            export::EXTENSION
        )));
    }
    let keys = match super::backup::load_keys(&args.keys, &policy) {
        Ok(k) => k,
        Err(e) => return fail_any(e),
    };
    let res: Result<export::Restored, RestoreError> = async {
        let conn = db::connect(&settings).await?;
        partition::prepare_session(&conn).await?;
        partition::set_actor(&conn, RESTORE_ACTOR).await?;
        export::restore(&conn, &file, &keys, &Notices).await
    }
    .await;
    match res {
        Ok(r) => {
            if args.output.format == Format::Json {
                print(&(pretty(&json!({ "restored": true, "result": r })) + "\n"));
            } else {
                print(&format!(
                    "restored {} [{} .. {}) into {}: {} rows, checksum {} (verified)\n",
                    r.partition,
                    fmt_ts(r.range_from),
                    fmt_ts(r.range_to),
                    r.archive_table,
                    r.rows,
                    r.checksum
                ));
            }
            EXIT_OK
        }
        Err(RestoreError::File(e)) => {
            let kind = e.kind();
            if args.output.format == Format::Json {
                print(
                    &(pretty(
                        &json!({ "restored": false, "error": kind, "message": e.to_string() }),
                    ) + "\n"),
                );
            }
            print_error_msg(&format!(
                "{}: refused, the file did not verify ({kind}): {e}; nothing was restored",
                args.file.display()
            ));
            EXIT_FAILURE
        }
        Err(RestoreError::Other(e)) => {
            if args.output.format == Format::Json {
                print(
                    &(pretty(
                        &json!({ "restored": false, "error": "refused", "message": e.to_string() }),
                    ) + "\n"),
                );
            }
            fail(e)
        }
    }
}

fn print_error_msg(msg: &str) {
    super::print_error(&anyhow::anyhow!("{msg}"));
}

fn render_summary(s: &Summary) -> String {
    format!(
        "archive of {table} before {cutoff} UTC into {arch}{resumed}: {state}\n\
         \x20 partitions moved: {np}{names}\n\
         \x20 rows moved: {rows} ({byp} by partition moves, {byb} in {batches})\n\
         \x20 bytes moved: {bytes}\n\
         \x20 verification: {verification}\n\
         \x20 live table lock per month moved: at most {lock:.1} ms (wait + hold)\n\
         \x20 duration: {dur:.2} s (journal #{jid})\n",
        table = s.table,
        cutoff = fmt_ts(s.cutoff),
        arch = s.archive_table,
        resumed = if s.resumed { " (resumed)" } else { "" },
        state = if s.verified {
            "done, verified"
        } else {
            "VERIFICATION FAILED"
        },
        np = s.partitions_moved.len(),
        names = match s.partitions_moved.as_slice() {
            [] => String::new(),
            [first, .., last] if s.partitions_moved.len() > 6 => format!(" ({first} … {last})"),
            all => format!(" ({})", all.join(", ")),
        },
        rows = s.rows_moved,
        byp = s.rows_moved_by_partitions,
        byb = s.rows_moved_by_batches,
        batches = crate::text::plural(s.batches, "batch"),
        bytes = human_bytes(s.bytes_moved),
        verification = s.verification,
        lock = s.max_live_lock_ms,
        dur = s.duration_ms as f64 / 1000.0,
        jid = s.journal_id,
    )
}
