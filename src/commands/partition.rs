//! `opsctl partition ensure|list`: plans from the policy and flags, calls
//! `partition::ensure` / `partition::list`, renders text or JSON.

use chrono::NaiveDateTime;
use serde_json::json;

use super::{conn_settings, load_policy, print, print_error, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::cli::{Format, PartitionCommand, PartitionEnsureArgs, PartitionListArgs};
use crate::db;
use crate::error::Error;
use crate::partition::{self, ensure, Listing, Observer, PartitionState, TableSpec};
use crate::units::human_bytes;

pub async fn run(cmd: PartitionCommand) -> u8 {
    match cmd {
        PartitionCommand::Ensure(args) => ensure_cmd(args).await,
        PartitionCommand::List(args) => list_cmd(args).await,
    }
}

/// Exit status for an error: 2 for bad arguments or configuration, 1 otherwise.
pub fn fail(e: Error) -> u8 {
    let code = match e {
        Error::Config(_) => EXIT_USAGE,
        _ => EXIT_FAILURE,
    };
    print_error(&anyhow::Error::new(e));
    code
}

/// Prints notices on stderr.
struct Stderr;
impl Observer for Stderr {
    fn notice(&self, msg: &str) {
        crate::logging::info(msg);
    }
}

async fn setup(
    connect: &crate::cli::ConnectArgs,
    policy: &crate::cli::PolicyArgs,
    table: Option<&str>,
) -> Result<(db::Connection, crate::policy::Policy, Vec<TableSpec>), Error> {
    let settings = conn_settings(connect)?;
    let policy = load_policy(policy)?;
    let specs = partition::tables_from_policy(&policy.partitions, table)?;
    let conn = db::connect(&settings).await?;
    partition::prepare_session(&conn).await?;
    Ok((conn, policy, specs))
}

/// `app.actor` of `partition ensure` sessions, so the audit log attributes the row moves.
pub const ENSURE_ACTOR: &str = "opsctl partition ensure";

/// A policy table whose schema does not exist (the audit log before its migration) is
/// not configured in this database: say so and skip it. Tables named with --table are
/// never skipped (a missing one is an error).
async fn skip_unconfigured(
    conn: &tokio_postgres::Client,
    spec: &TableSpec,
    from_policy: bool,
) -> Result<Option<String>, Error> {
    if !from_policy || partition::schema_exists(conn, &spec.schema).await? {
        return Ok(None);
    }
    Ok(Some(format!(
        "{}: not configured in this database (schema {} does not exist); skipped",
        spec.qualified(),
        spec.schema
    )))
}

async fn ensure_cmd(args: PartitionEnsureArgs) -> u8 {
    let (conn, policy, specs) =
        match setup(&args.connect, &args.policy, args.table.as_deref()).await {
            Ok(x) => x,
            Err(e) => return fail(e),
        };
    let premake = args.premake.unwrap_or(policy.partitions.premake);
    let now = partition::now_utc();
    if let Err(e) = partition::set_actor(&conn, ENSURE_ACTOR).await {
        return fail(e);
    }
    let mut outcomes = Vec::new();
    let mut skipped = Vec::new();
    for spec in &specs {
        match skip_unconfigured(&conn, spec, args.table.is_none()).await {
            Ok(Some(note)) => {
                crate::logging::note(&note);
                skipped.push(json!({ "table": spec.qualified(), "skipped": note }));
                continue;
            }
            Ok(None) => {}
            Err(e) => return fail(e),
        }
        let res = async {
            let table = partition::inspect(&conn, spec).await?;
            let plan = ensure::plan(&conn, &table, premake, now).await?;
            ensure::apply(&conn, &plan, args.dry_run, &Stderr).await
        }
        .await;
        match res {
            Ok(o) => outcomes.push(o),
            Err(e) => return fail(e),
        }
    }
    let done: Vec<String> = outcomes
        .iter()
        .map(|o| {
            format!(
                "{}: created {}{}, moved {} out of the default partition",
                o.table,
                crate::text::plural(o.created.len(), "partition"),
                if o.default_created {
                    " and the default partition"
                } else {
                    ""
                },
                crate::text::plural(o.rows_moved_from_default, "row")
            )
        })
        .collect();
    super::note_result(done.join("; "));
    if args.output.format == Format::Json {
        print(
            &(pretty(&json!({ "dry_run": args.dry_run, "tables": outcomes, "skipped": skipped }))
                + "\n"),
        );
        return EXIT_OK;
    }
    let mut out = String::new();
    for s in &skipped {
        out.push_str(&format!(
            "{}: {}\n",
            s["table"].as_str().unwrap_or_default(),
            s["skipped"].as_str().unwrap_or_default()
        ));
    }
    for o in &outcomes {
        let verb = if o.dry_run { "would create" } else { "created" };
        if o.created.is_empty() && !o.default_created {
            out.push_str(&format!(
                "{}: nothing to do, every month from {} through {} exists",
                o.table,
                o.first_month.format("%Y-%m"),
                o.last_month.format("%Y-%m")
            ));
        } else {
            let mut names: Vec<&str> = o.created.iter().map(|m| m.partition.as_str()).collect();
            let total = names.len();
            if total > 6 {
                names = vec![names[0], "…", names[total - 1]];
            }
            out.push_str(&format!(
                "{}: {verb} {}{}{}",
                o.table,
                crate::text::plural(total, "partition"),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                },
                if o.default_created {
                    format!(", {verb} the default partition")
                } else {
                    String::new()
                }
            ));
            if o.rows_moved_from_default > 0 {
                out.push_str(&format!(
                    "; {} {} from the default partition",
                    if o.dry_run { "would move" } else { "moved" },
                    crate::text::plural(o.rows_moved_from_default, "row")
                ));
            }
        }
        out.push_str(&format!(
            "\n  runway: {}{}\n",
            crate::text::plural(o.runway.future_months, "future month"),
            if o.runway.current_month {
                String::new()
            } else {
                " (the current month has no partition)".into()
            }
        ));
        if o.rows_left_in_default > 0 {
            out.push_str(&format!(
                "  warning: {} rows stay in the default partition (outside {} .. {}); \
                 raise --premake or correct those rows' times\n",
                o.rows_left_in_default,
                o.first_month.format("%Y-%m"),
                o.last_month.format("%Y-%m"),
            ));
        }
    }
    print(&out);
    EXIT_OK
}

async fn list_cmd(args: PartitionListArgs) -> u8 {
    let (conn, _policy, specs) =
        match setup(&args.connect, &args.policy, args.table.as_deref()).await {
            Ok(x) => x,
            Err(e) => return fail(e),
        };
    let mut listings = Vec::new();
    for spec in &specs {
        match skip_unconfigured(&conn, spec, args.table.is_none()).await {
            Ok(Some(note)) => {
                crate::logging::note(&note);
                continue;
            }
            Ok(None) => {}
            Err(e) => return fail(e),
        }
        let res = async {
            let t = partition::inspect(&conn, spec).await?;
            partition::list(&conn, &t).await
        }
        .await;
        match res {
            Ok(l) => listings.push(l),
            Err(e) => return fail(e),
        }
    }
    if args.output.format == Format::Json {
        print(&(pretty(&json!({ "tables": listings })) + "\n"));
    } else {
        print(&listings.iter().map(render_listing).collect::<String>());
    }
    EXIT_OK
}

fn render_listing(l: &Listing) -> String {
    let live = l
        .partitions
        .iter()
        .filter(|p| p.state == PartitionState::Live)
        .count();
    let archived = l
        .partitions
        .iter()
        .filter(|p| p.state == PartitionState::Archived)
        .count();
    let mut out = format!(
        "{} (by {}): {live} live partitions, {archived} archived; runway {} future month{}{}; \
         {} rows in the default partition (exact count)\n",
        l.table,
        l.column,
        l.runway.future_months,
        if l.runway.future_months == 1 { "" } else { "s" },
        match (l.runway.current_month, l.runway.last_month) {
            (false, _) => " (the current month has no partition!)".to_string(),
            (true, Some(m)) => format!(" (through {})", m.format("%Y-%m")),
            _ => String::new(),
        },
        l.rows_in_default
    );
    let rows: Vec<[String; 6]> = l
        .partitions
        .iter()
        .map(|p| {
            let q = &p.partition;
            [
                q.qualified(),
                q.from.map_or(
                    if q.is_default { "DEFAULT" } else { "MINVALUE" }.into(),
                    fmt_ts,
                ),
                q.to.map_or(if q.is_default { "" } else { "MAXVALUE" }.into(), fmt_ts),
                match (p.exact_rows, q.estimated_rows) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(n)) => format!("~{n}"),
                    (None, None) => "?".into(),
                },
                human_bytes(q.bytes),
                match p.state {
                    PartitionState::Live => "live",
                    PartitionState::Default => "default",
                    PartitionState::Archived => "archived",
                    PartitionState::Detached => "detached (pending attach to the archive)",
                }
                .into(),
            ]
        })
        .collect();
    let head = ["PARTITION", "FROM", "TO", "ROWS", "SIZE", "STATE"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |c: [&str; 6]| {
        format!(
            "  {:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {}\n",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )
    };
    out.push_str(&line(head));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    if rows.iter().any(|r| r[3].starts_with('~') || r[3] == "?") {
        out.push_str(
            "  (~ = estimate from the planner's statistics, refreshed by ANALYZE: partition \
             ensure analyzes what it fills; ? = never analyzed. The default partition is \
             counted exactly.)\n",
        );
    }
    out
}

/// A timestamp for people: the date alone at midnight.
pub fn fmt_ts(t: NaiveDateTime) -> String {
    if t.time() == chrono::NaiveTime::MIN {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

pub fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
