//! `opsctl archive --before DATE`: validates the date before touching anything, prints the
//! plan on `--dry-run`, otherwise runs `partition::archive` with a progress bar on a
//! terminal and renders the summary (text or JSON). Exit 1 when verification fails.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::partition::{fail, fmt_bytes, fmt_ts, pretty};
use super::{conn_settings, load_policy, print, stderr_is_terminal, EXIT_FAILURE, EXIT_OK};
use crate::cli::{ArchiveArgs, Format};
use crate::db;
use crate::error::Error;
use crate::partition::archive::{self, Outcome, Plan, Request, Summary};
use crate::partition::{self, Observer};

/// Progress on stderr: a bar on a terminal, notices only otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Observer for Progress {
    fn notice(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
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
    // Everything about the arguments is checked before connecting.
    let cutoff = match archive::parse_cutoff(&args.before)
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
    let batch_size = args
        .batch_size
        .or(policy.archive.batch_size)
        .map_or(archive::DEFAULT_BATCH_SIZE, i64::from);
    let res: Result<u8, Error> = async {
        let conn = db::connect(&settings).await?;
        partition::prepare_session(&conn).await?;
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
            lock_wait: Duration::from_secs(args.lock_wait),
        };
        let outcome = archive::run(&conn, &table, &req, &progress).await;
        if let Some(b) = &progress.bar {
            b.finish_and_clear();
        }
        let outcome = outcome?;
        emit_outcome(&outcome, args.output.format);
        Ok(if outcome.verified() {
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
            u.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
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
            fmt_bytes(w.bytes)
        ));
    }
    out.push_str(&format!(
        "  rows in batches: {} in {} batch{} of up to {} ({})\n",
        p.batch_rows,
        p.batches,
        if p.batches == 1 { "" } else { "es" },
        p.batch_size,
        fmt_bytes(p.batch_bytes)
    ));
    out.push_str(&format!(
        "  total: {} rows, {}\n",
        p.rows,
        fmt_bytes(p.bytes)
    ));
    print(&out);
}

fn emit_outcome(o: &Outcome, format: Format) {
    if format == Format::Json {
        print(
            &(pretty(
                &json!({ "dry_run": false, "verified": o.verified(), "finished_first": o.finished_first, "summary": o.summary }),
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
    print(&out);
}

fn render_summary(s: &Summary) -> String {
    format!(
        "archive of {table} before {cutoff} UTC into {arch}{resumed}: {state}\n\
         \x20 partitions moved: {np}{names}\n\
         \x20 rows moved: {rows} ({byp} by partition moves, {byb} in {batches} batches)\n\
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
        batches = s.batches,
        bytes = fmt_bytes(s.bytes_moved),
        verification = s.verification,
        lock = s.max_live_lock_ms,
        dur = s.duration_ms as f64 / 1000.0,
        jid = s.journal_id,
    )
}
