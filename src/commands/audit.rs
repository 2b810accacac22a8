//! `opsctl audit seal | verify | report`: plans the arguments, calls crate::audit and
//! renders the outcome (text or `--format json`).

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

use super::{conn_settings, load_policy, print, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::audit::{self, Report, ReportFilter, SealOutcome, VerifyOutcome};
use crate::cli::{AuditCommand, AuditReportArgs, AuditSealArgs, AuditVerifyArgs, Format};
use crate::db;
use crate::oplog;
use crate::text;

pub async fn run(cmd: AuditCommand) -> u8 {
    match cmd {
        AuditCommand::Seal(a) => seal(a).await,
        AuditCommand::Verify(a) => verify(a).await,
        AuditCommand::Report(a) => report(a).await,
    }
}

fn fail(e: impl std::fmt::Display) -> u8 {
    super::report_error(&e.to_string());
    EXIT_FAILURE
}

async fn seal(args: AuditSealArgs) -> u8 {
    let settings = match conn_settings(&args.connect) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let anchor_file = match load_policy(&args.policy) {
        Ok(p) => p.audit.anchor_file,
        Err(e) => return fail(e),
    };
    let mut conn = match db::connect(&settings).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let argv: Vec<String> = std::env::args().collect();
    let op = match oplog::start(&conn, &argv).await {
        Ok(op) => op,
        Err(e) => return fail(e),
    };
    let mut result = audit::seal(&mut conn, args.batch_size).await;
    if let (Ok(out), Some(path)) = (&result, &anchor_file) {
        if let Err(e) = audit::append_anchors(path, &out.seals, Utc::now()) {
            let ids = out.seals.iter().map(|s| s.seal_id);
            result = Err(crate::error::Error::Other(format!(
                "seals {}–{} are committed but not anchored: {e}; the next seal's line covers them \
                 (each hash chains over all before it) once the anchor file is writable",
                ids.clone().min().unwrap_or(0),
                ids.max().unwrap_or(0)
            )));
        }
    }
    let err = result.as_ref().err().map(|e| e as &dyn std::fmt::Display);
    if let Err(e) = op.finish(&conn, oplog::Outcome::of(&result), err).await {
        crate::logging::warn(e);
    }
    match result {
        Ok(out) => {
            match args.output.format {
                Format::Json => print(&(json(&out) + "\n")),
                Format::Text => print(&seal_text(&out)),
            }
            EXIT_OK
        }
        Err(e) => fail(e),
    }
}

fn seal_text(o: &SealOutcome) -> String {
    let mut t = String::new();
    if o.seals.is_empty() {
        let _ = writeln!(t, "audit seal: nothing new to seal");
    } else {
        let first = o.seals.iter().find_map(|s| s.first_row_id);
        let last = o.seals.iter().rev().find_map(|s| s.last_row_id);
        let (a, b) = (o.seals[0].seal_id, o.seals[o.seals.len() - 1].seal_id);
        let seals = if a == b {
            format!("seal {a}")
        } else {
            format!("seals {a}–{b}")
        };
        let _ = writeln!(
            t,
            "audit seal: sealed {} ({seals}, audit ids {}–{})",
            text::plural(o.rows_sealed, "row"),
            first.map_or("-".into(), |v| v.to_string()),
            last.map_or("-".into(), |v| v.to_string()),
        );
    }
    if let Some(h) = &o.head_hash {
        let _ = writeln!(t, "chain head: {h}");
    }
    if o.rows_waiting > 0 {
        let _ = writeln!(
            t,
            "{} wait for transactions still running (xid ≥ {}); the next seal takes them",
            text::plural(o.rows_waiting, "row"),
            o.xid_horizon
        );
    }
    t
}

async fn verify(args: AuditVerifyArgs) -> u8 {
    let settings = match conn_settings(&args.connect) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut conn = match db::connect(&settings).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // Recorded in opsctl.operations like `audit seal`: `opsctl health` reads the newest
    // `audit verify` there (failure = the chain is broken, with the first problem).
    let argv: Vec<String> = std::env::args().collect();
    // A role that may read the chain but not write the log still gets its answer.
    let op = match oplog::start(&conn, &argv).await {
        Ok(op) => Some(op),
        Err(e) => {
            crate::logging::warn(format_args!("{e} (this verification is not recorded)"));
            None
        }
    };
    let evidence = recorded_outside(&conn, &args).await;
    let (recorded, outside_problems) = match evidence {
        Ok(x) => x,
        Err(e) => {
            if let Some(op) = op {
                let _ = op.finish(&conn, oplog::Outcome::Failure, Some(&e)).await;
            }
            return fail(e);
        }
    };
    let result = audit::verify_with(
        &mut conn,
        audit::DEFAULT_BATCH,
        &args.expect_hash,
        &recorded,
    )
    .await
    .map(|mut o| {
        o.add_problems(outside_problems);
        o
    });
    if let Some(op) = op {
        let recorded = match &result {
            Ok(o) if o.intact => op.finish(&conn, oplog::Outcome::Success, None).await,
            Ok(o) => {
                let what = tampered_summary(o);
                op.finish(&conn, oplog::Outcome::Failure, Some(&what)).await
            }
            Err(e) => op.finish(&conn, oplog::Outcome::Failure, Some(e)).await,
        };
        if let Err(e) = recorded {
            crate::logging::warn(e);
        }
    }
    let out = match result {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    match args.output.format {
        Format::Json => print(&(json(&out) + "\n")),
        Format::Text => print(&verify_text(&out)),
    }
    if out.intact {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}

/// The seals recorded outside the database that `--backups` and `--anchors` ask to
/// check, and what is wrong with that evidence itself.
async fn recorded_outside(
    conn: &tokio_postgres::Client,
    args: &AuditVerifyArgs,
) -> Result<(Vec<audit::RecordedSeal>, Vec<audit::Problem>), crate::error::Error> {
    use crate::error::Error;
    let mut recorded = Vec::new();
    let mut problems = Vec::new();
    if let Some(dir) = &args.backups {
        let policy = load_policy(&args.policy)?;
        let keys = super::backup::load_keys(&args.keys, &policy)
            .map_err(|e| Error::Config(format!("{e:#} (--backups reads the sealed manifests)")))?;
        let repo = crate::storage::resolve(Some(dir), &policy)?;
        let ev = audit::recorded_by_backups(conn, &repo, &keys).await?;
        recorded.extend(ev.seals);
        problems.extend(ev.problems);
    }
    if let Some(file) = &args.anchors {
        let anchored = audit::read_anchors(file)?;
        if anchored.is_empty() {
            problems.push(audit::Problem::NothingRecorded {
                source: format!("the anchor file {}", file.display()),
            });
        }
        recorded.extend(anchored);
    }
    Ok((recorded, problems))
}

/// The one line recorded for a verification that found the chain broken.
fn tampered_summary(o: &VerifyOutcome) -> String {
    let first = o
        .first_problem
        .as_ref()
        .map_or_else(|| "the chain is broken".to_string(), |p| p.to_string());
    if o.problems.len() > 1 {
        format!("TAMPERED: {first} (and {} more)", o.problems.len() - 1)
    } else {
        format!("TAMPERED: {first}")
    }
}

fn verify_text(o: &VerifyOutcome) -> String {
    let mut t = String::new();
    if o.intact {
        let _ = writeln!(
            t,
            "audit verify: OK: {}, {} intact",
            text::plural(o.seals, "seal"),
            text::plural(o.rows_verified, "sealed row")
        );
    } else {
        let first = o.first_problem.as_ref().expect("not intact has a problem");
        let _ = writeln!(t, "audit verify: TAMPERED: {first}");
        if o.problems.len() > 1 {
            let more = if o.problems.len() >= audit::MAX_PROBLEMS {
                format!("at least {}", o.problems.len())
            } else {
                o.problems.len().to_string()
            };
            let _ = writeln!(t, "{more} problems in all:");
            for p in &o.problems {
                let _ = writeln!(t, "  - {p}");
            }
        }
    }
    if o.recorded_seals_checked > 0 && o.intact {
        let _ = writeln!(
            t,
            "{} recorded by backups {} in the chain unchanged",
            text::plural(o.recorded_seals_checked, "seal"),
            if o.recorded_seals_checked == 1 {
                "is"
            } else {
                "are"
            }
        );
    }
    if o.anchored_seals_checked > 0 && o.intact {
        let _ = writeln!(
            t,
            "{} seal(s) anchored in the anchor file are in the chain unchanged",
            o.anchored_seals_checked
        );
    }
    if let Some(h) = &o.head_hash {
        let _ = writeln!(
            t,
            "chain head: {h} (keep it outside the database, as backup manifests do; check it later with --expect-hash)"
        );
    } else {
        let _ = writeln!(t, "no seals yet: run `opsctl audit seal`");
    }
    if o.unsealed_rows > 0 {
        let _ = writeln!(
            t,
            "{} not yet sealed (not covered by this verification)",
            text::plural(o.unsealed_rows, "row")
        );
    }
    t
}

async fn report(args: AuditReportArgs) -> u8 {
    let filter = match plan_report(&args, Utc::now()) {
        Ok(f) => f,
        Err(e) => {
            super::report_error(&e);
            return EXIT_USAGE;
        }
    };
    let settings = match conn_settings(&args.connect) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let conn = match db::connect(&settings).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match audit::report(&conn, &filter).await {
        Ok(r) => {
            match args.output.format {
                Format::Json => print(&(json(&r) + "\n")),
                Format::Text => print(&report_text(&r)),
            }
            EXIT_OK
        }
        Err(e) => fail(e),
    }
}

const TABLES: &[&str] = &["users", "trades", "positions", "account_totals"];

/// Turns the report flags into a window and filters; errors are usage errors.
pub fn plan_report(a: &AuditReportArgs, now: DateTime<Utc>) -> Result<ReportFilter, String> {
    let (from, to) = match (&a.since, &a.from, &a.to) {
        (Some(s), _, _) => (now - parse_duration(s)?, now),
        (None, None, None) => (now - Duration::hours(24), now),
        (None, Some(f), t) => (
            parse_time(f, "--from")?,
            t.as_deref()
                .map(|t| parse_time(t, "--to"))
                .transpose()?
                .unwrap_or(now),
        ),
        (None, None, Some(_)) => {
            return Err("--to needs --from (or use --since DURATION)".into());
        }
    };
    if from >= to {
        return Err(format!(
            "the window is empty: --from {} is not before --to {}",
            from.to_rfc3339(),
            to.to_rfc3339()
        ));
    }
    if let Some(t) = &a.table {
        if !TABLES.contains(&t.as_str()) {
            return Err(format!(
                "--table {t:?} is not audited; audited tables: {}",
                TABLES.join(", ")
            ));
        }
    }
    if a.actor.as_deref() == Some("") {
        return Err("--actor must not be empty".into());
    }
    Ok(ReportFilter {
        from,
        to,
        table: a.table.clone(),
        actor: a.actor.clone(),
    })
}

/// Parses `90s`, `15m`, `24h`, `7d`, `2w` (also spelled out: `7 days`, `3 hours`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = crate::duration::parse_flag(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be positive"));
    }
    Duration::from_std(d).map_err(|_| format!("duration {s:?} is too long"))
}

/// Parses RFC 3339 (with or without a zone; none = UTC), or `YYYY-MM-DD[ HH:MM[:SS]]`
/// in UTC, through [`crate::datetime::parse_utc`].
pub fn parse_time(s: &str, flag: &str) -> Result<DateTime<Utc>, String> {
    crate::datetime::parse_utc(s).map_err(|why| format!("{flag} {s:?} is not a time: {why}"))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("report serialises")
}

fn ts(t: &DateTime<Utc>) -> String {
    text::ts(t)
}

fn report_text(r: &Report) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "opsctl audit report: {} – {}", ts(&r.from), ts(&r.to));
    if let Some(tb) = &r.table {
        let _ = writeln!(t, "table: {tb}");
    }
    if let Some(a) = &r.actor {
        let _ = writeln!(t, "actor: {a}");
    }
    let _ = writeln!(
        t,
        "\nchanges by table, operation and actor ({} in all)",
        r.total_changes
    );
    if r.changes.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for c in &r.changes {
        let _ = writeln!(
            t,
            "  {:<15} {:<9} {:<24} {:>10}",
            c.table, c.operation, c.actor, c.count
        );
    }
    let _ = writeln!(t, "\ndeletes of trades ({})", r.trade_deletes_total);
    if r.trade_deletes.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for d in &r.trade_deletes {
        let what = if d.operation == "TRUNCATE" {
            format!("TRUNCATE of {}", d.relation)
        } else {
            format!(
                "trade {} (user {}, {})",
                d.trade_id.as_deref().unwrap_or("?"),
                d.user_id.as_deref().unwrap_or("-"),
                d.symbol.as_deref().unwrap_or("?")
            )
        };
        let _ = writeln!(t, "  {}  {:<20} {what}", ts(&d.at), d.actor);
    }
    if (r.trade_deletes.len() as i64) < r.trade_deletes_total {
        let _ = writeln!(
            t,
            "  … {} more (narrow the window or use --format json)",
            r.trade_deletes_total - r.trade_deletes.len() as i64
        );
    }
    let _ = writeln!(
        t,
        "\nrow moves by opsctl ({} operation(s), {} row(s); not deletes)",
        r.moves_total, r.rows_moved
    );
    if r.moves.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for m in &r.moves {
        let _ = writeln!(
            t,
            "  {}  {:<24} {} → {}  {} row(s)  checksum {}",
            ts(&m.at),
            m.actor,
            m.from.as_deref().unwrap_or("?"),
            m.to.as_deref().unwrap_or("?"),
            m.rows,
            m.checksum.as_deref().unwrap_or("-")
        );
    }
    if (r.moves.len() as i64) < r.moves_total {
        let _ = writeln!(
            t,
            "  … {} more (narrow the window or use --format json)",
            r.moves_total - r.moves.len() as i64
        );
    }
    let _ = writeln!(t, "\nopsctl operations ({})", r.operations.len());
    if r.operations.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for o in &r.operations {
        let dur = o
            .finished_at
            .map(|f| text::duration_short((f - o.started_at).num_milliseconds() as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            t,
            "  {}  {:<8} {:>7}  {}@{} as {}: {}",
            ts(&o.started_at),
            o.outcome,
            dur,
            o.os_user.as_deref().unwrap_or("?"),
            o.host.as_deref().unwrap_or("?"),
            o.db_role,
            o.command_line
        );
        if let Some(res) = &o.result {
            let _ = writeln!(t, "      result: {res}");
        }
        if let Some(e) = &o.error {
            // Older rows may still carry a prefix or several lines in `error`.
            let (first, rest) = oplog::split_error(e);
            let _ = writeln!(t, "      error: {first}");
            for l in rest.iter().chain(&o.details).flat_map(|d| d.lines()) {
                let _ = writeln!(t, "        {}", l.trim_start());
            }
        }
    }
    let _ = writeln!(t, "\nlargest transactions");
    if r.largest_transactions.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for b in &r.largest_transactions {
        let _ = writeln!(
            t,
            "  xid {:<12} {:>10}  {}  {:<20} {}",
            b.transaction_id,
            text::plural(b.rows, "row"),
            ts(&b.started_at),
            b.actor,
            b.tables
        );
    }
    let _ = writeln!(t, "\nseal chain");
    match &r.chain {
        Some(c) => {
            let _ = writeln!(
                t,
                "  {} over {}; last sealed {}",
                text::plural(c.seals, "seal"),
                text::plural(c.sealed_rows, "row"),
                c.last_sealed_at.as_ref().map_or("never".into(), ts)
            );
            let _ = writeln!(
                t,
                "  unsealed rows: {}{}",
                c.unsealed_rows,
                c.oldest_unsealed
                    .as_ref()
                    .map_or(String::new(), |o| format!(" (oldest {})", ts(o)))
            );
            if let Some(h) = &c.head_hash {
                let _ = writeln!(t, "  chain head: {h}");
            }
        }
        None => {
            let _ = writeln!(t, "  no audit schema");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(since: Option<&str>, from: Option<&str>, to: Option<&str>) -> AuditReportArgs {
        AuditReportArgs {
            connect: crate::cli::ConnectArgs {
                database_url: None,
                sslmode: None,
                sslrootcert: None,
            },
            output: crate::cli::OutputArgs {
                format: Format::Text,
            },
            since: since.map(Into::into),
            from: from.map(Into::into),
            to: to.map(Into::into),
            table: None,
            actor: None,
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_duration("7 days").unwrap(), Duration::days(7));
        assert_eq!(parse_duration("90m").unwrap(), Duration::minutes(90));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn windows() {
        let now = parse_time("2026-02-01T00:00:00Z", "now").unwrap();
        let f = plan_report(&args(None, None, None), now).unwrap();
        assert_eq!(f.to - f.from, Duration::hours(24));
        let f = plan_report(
            &args(None, Some("2026-01-01"), Some("2026-01-02 12:00")),
            now,
        )
        .unwrap();
        assert_eq!(f.to - f.from, Duration::hours(36));
        assert!(plan_report(&args(None, Some("2026-01-02"), Some("2026-01-01")), now).is_err());
        assert!(plan_report(&args(None, None, Some("2026-01-01")), now).is_err());
        assert!(plan_report(&args(None, Some("yesterday"), None), now).is_err());
        let mut a = args(Some("1h"), None, None);
        a.table = Some("orders".into());
        assert!(plan_report(&a, now).unwrap_err().contains("not audited"));
    }
}
