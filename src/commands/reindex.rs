//! `opsctl reindex`: plan (bloated and invalid indexes, leftovers of failed concurrent
//! rebuilds), print it, rebuild index by index under the maintenance lock, say what a
//! person must do about any index that still fails, and return the exit status.

use anyhow::Context;
use serde_json::json;

use super::vacuum::{fmt_dur, plural, LiveView};
use super::{
    conn_settings, load_policy, print, print_error, stderr_is_terminal, EXIT_FAILURE, EXIT_OK,
};
use crate::cli::{Format, ReindexArgs};
use crate::db;
use crate::maintenance::reindex::{self, IndexResult, ReindexOutcome, ReindexPlan};
use crate::maintenance::{self, Outcome, Settings, Want, Watcher};
use crate::units::human_bytes;

pub async fn run(args: ReindexArgs) -> u8 {
    match run_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            EXIT_FAILURE
        }
    }
}

async fn run_inner(args: ReindexArgs) -> anyhow::Result<u8> {
    let settings = conn_settings(&args.connect)?;
    let policy = load_policy(&args.policy)?;
    let mut ms = Settings::from_policy(&policy.maintenance)?;
    if let Some(w) = args.lock_wait {
        ms.lock_wait = w;
    }
    if let Some(m) = args.min_size {
        ms.reindex_min_size = m;
    }
    let json = args.output.format == Format::Json;
    let conn = db::connect(&settings).await?;
    let scope = match (&args.table, &args.index) {
        (Some(t), _) => {
            let rel = maintenance::resolve(&conn, t, Want::Table).await?;
            Some(reindex::scope_of(&conn, &rel).await?)
        }
        (None, Some(i)) => {
            let rel = maintenance::resolve(&conn, i, Want::Index).await?;
            Some(reindex::scope_of(&conn, &rel).await?)
        }
        (None, None) => None,
    };
    if !args.dry_run {
        maintenance::lock(&conn, ms.lock_wait).await?;
    }
    let pid = maintenance::prepare_session(&conn, "reindex", &ms.retry).await?;
    let plan = reindex::plan(&conn, scope.as_ref(), &ms)
        .await
        .context("planning the reindex")?;
    let dbname = settings.dbname_or_default();
    if !json {
        print(&plan_text(&dbname, &plan, &ms, args.dry_run));
    }
    if args.dry_run || plan.indexes.is_empty() {
        if json {
            print(&render_json(&dbname, &args, &plan, None)?);
        } else if args.dry_run {
            print("dry run: nothing was changed\n");
        }
        return Ok(EXIT_OK);
    }
    let progress_conn = if stderr_is_terminal() {
        db::connect(&settings).await.ok()
    } else {
        None
    };
    let watcher = progress_conn.as_ref().map(|c| Watcher {
        client: &c.client,
        pid,
    });
    let mut view = LiveView::new(!json, watcher.is_some(), index_line);
    let outcome = reindex::execute(&conn, watcher.as_ref(), &plan, &ms, &mut view).await;
    view.clear();
    let _ = maintenance::unlock(&conn).await;
    let outcome = outcome?;
    for w in &outcome.warnings {
        crate::logging::warn(w);
    }
    if json {
        print(&render_json(&dbname, &args, &plan, Some(&outcome))?);
    } else {
        print(&summary_text(&outcome));
    }
    let bad = outcome.results.iter().any(|r| r.outcome != Outcome::Ok);
    Ok(if bad { EXIT_FAILURE } else { EXIT_OK })
}

fn plan_text(db: &str, plan: &ReindexPlan, s: &Settings, dry_run: bool) -> String {
    let head = if dry_run {
        "reindex plan (dry run)"
    } else {
        "reindex plan"
    };
    let mut out = if plan.indexes.is_empty() {
        format!(
            "{head} for {db}: nothing to do ({} inspected; none invalid, none with \
             bloat >= {:.0}% of at least {})\n",
            plural(plan.inspected, "index"),
            s.reindex_bloat_ratio * 100.0,
            human_bytes(s.reindex_min_size as i64)
        )
    } else {
        format!(
            "{head} for {db}: {} of {} inspected (bloat threshold {:.0}% of at least {}; {})\n",
            plural(plan.indexes.len(), "index"),
            plan.inspected,
            s.reindex_bloat_ratio * 100.0,
            human_bytes(s.reindex_min_size as i64),
            if plan.pgstattuple {
                "estimates confirmed with pgstatindex"
            } else {
                "estimates only: install pgstattuple to confirm them"
            }
        )
    };
    for (i, n) in plan.indexes.iter().enumerate() {
        let denied = if n.index.permitted {
            String::new()
        } else {
            format!(" [this role may not rebuild it: owner {}]", n.index.owner)
        };
        out.push_str(&format!(
            "  {}. {}{denied} on {} ({}): {}\n     because: {}\n",
            i + 1,
            n.index.display(),
            maintenance::display_name(&n.index.schema, &n.index.table),
            human_bytes(n.index.size_bytes),
            n.action,
            n.reason_text
        ));
    }
    for k in &plan.not_needed {
        out.push_str(&format!(
            "  {}: {}\n",
            maintenance::display_name(&k.schema, &k.index),
            k.note
        ));
    }
    out
}

fn index_line(r: &IndexResult) -> String {
    let size = match r.size_after {
        Some(a) => format!(", {} -> {}", human_bytes(r.size_before), human_bytes(a)),
        None => String::new(),
    };
    let mut line = format!(
        "{:<7} {} {} in {}{size}\n",
        r.outcome.as_str(),
        r.action,
        r.display(),
        fmt_dur(r.duration_ms)
    );
    if !r.dropped_leftovers.is_empty() {
        line.push_str(&format!(
            "        dropped leftovers of the failed attempt: {}\n",
            r.dropped_leftovers.join(", ")
        ));
    }
    if let Some(e) = &r.error {
        line.push_str(&format!("        error: {e}\n"));
    }
    if let Some(a) = &r.advice {
        line.push_str(&format!("        what to do: {a}\n"));
    }
    line
}

fn summary_text(o: &ReindexOutcome) -> String {
    let count = |k: Outcome| o.results.iter().filter(|r| r.outcome == k).count();
    let mut out = format!(
        "reindex finished in {}: {} ok, {} failed, {} skipped\n",
        fmt_dur(o.elapsed_ms),
        count(Outcome::Ok),
        count(Outcome::Failed),
        count(Outcome::Skipped)
    );
    let failed: Vec<&IndexResult> = o
        .results
        .iter()
        .filter(|r| r.outcome != Outcome::Ok)
        .collect();
    if !failed.is_empty() {
        out.push_str("needs a person (left as it was):\n");
        for r in failed {
            out.push_str(&format!(
                "  {} on {}: {}\n",
                r.display(),
                maintenance::display_name(&r.schema, &r.table),
                r.advice.as_deref().unwrap_or("see the error above")
            ));
        }
    }
    out
}

fn render_json(
    db: &str,
    args: &ReindexArgs,
    plan: &ReindexPlan,
    outcome: Option<&ReindexOutcome>,
) -> anyhow::Result<String> {
    let status = match outcome {
        None if args.dry_run => "dry_run",
        None => "nothing_to_do",
        Some(o) if o.results.iter().any(|r| r.outcome != Outcome::Ok) => "failed",
        Some(_) => "ok",
    };
    let v = json!({
        "job": "reindex",
        "database": db,
        "dry_run": args.dry_run,
        "status": status,
        "plan": plan,
        "results": outcome.map(|o| &o.results),
        "elapsed_ms": outcome.map(|o| o.elapsed_ms),
        "recorded": outcome.map(|o| o.recorded),
        "warnings": outcome.map(|o| &o.warnings),
    });
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}
