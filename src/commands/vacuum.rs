//! `opsctl vacuum`: plan by measured need, print the plan, vacuum table by table under
//! the maintenance lock, render the outcome (text or JSON) and the exit status.

use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::{
    conn_settings, load_policy, print, print_error, stderr_is_terminal, EXIT_FAILURE, EXIT_OK,
};
use crate::cli::{Format, VacuumArgs};
use crate::db;
use crate::maintenance::vacuum::{self, fmt_n, TableResult, VacuumOutcome, VacuumPlan};
use crate::maintenance::{self, Observer, Outcome, Progress, Settings, Want, Watcher};
use crate::units::human_bytes;

pub async fn run(args: VacuumArgs) -> u8 {
    match run_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            EXIT_FAILURE
        }
    }
}

async fn run_inner(args: VacuumArgs) -> anyhow::Result<u8> {
    let settings = conn_settings(&args.connect)?;
    let policy = load_policy(&args.policy)?;
    let mut ms = Settings::from_policy(&policy.maintenance)?;
    if let Some(w) = args.lock_wait {
        ms.lock_wait = w;
    }
    let json = args.output.format == Format::Json;
    let conn = db::connect(&settings).await?;
    let scope = match &args.table {
        Some(t) => {
            let rel = maintenance::resolve(&conn, t, Want::Table).await?;
            Some(vacuum::scope_of(&conn, &rel).await?)
        }
        None => None,
    };
    if !args.dry_run {
        maintenance::lock(&conn, ms.lock_wait).await?;
    }
    let pid = maintenance::prepare_session(&conn, "vacuum", &ms.retry).await?;
    let plan = vacuum::plan(&conn, scope.as_ref(), &ms, args.freeze)
        .await
        .context("planning the vacuum")?;
    let dbname = settings.dbname_or_default();
    if !json {
        print(&plan_text(&dbname, &plan, args.dry_run));
    }
    if args.dry_run || plan.tables.is_empty() {
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
    let mut view = LiveView::new(!json, watcher.is_some(), vacuum_line);
    let outcome = vacuum::execute(
        &conn,
        watcher.as_ref(),
        &plan,
        &ms,
        args.max_duration,
        &mut view,
    )
    .await;
    view.clear();
    let _ = maintenance::unlock(&conn).await;
    let outcome = outcome?;
    for w in &outcome.warnings {
        crate::logging::warn(w);
    }
    if json {
        print(&render_json(&dbname, &args, &plan, Some(&outcome))?);
    } else {
        print(&summary_text(&outcome, args.max_duration));
    }
    let bad = outcome.results.iter().any(|r| r.outcome != Outcome::Ok);
    Ok(if bad { EXIT_FAILURE } else { EXIT_OK })
}

fn plan_text(db: &str, plan: &VacuumPlan, dry_run: bool) -> String {
    let mut out = String::new();
    let head = if dry_run {
        "vacuum plan (dry run)"
    } else {
        "vacuum plan"
    };
    if plan.tables.is_empty() {
        out.push_str(&format!(
            "{head} for {db}: nothing to do ({} inspected, none needs vacuuming)\n",
            plural(plan.inspected, "table")
        ));
    } else {
        out.push_str(&format!(
            "{head} for {db}: {} of {} inspected, worst first\n",
            plural(plan.tables.len(), "table"),
            plan.inspected
        ));
    }
    if !plan.autovacuum.enabled {
        out.push_str("  note: autovacuum is off on this server\n");
    }
    for (i, n) in plan.tables.iter().enumerate() {
        let part = n
            .stats
            .partition_of
            .as_ref()
            .map(|p| format!(" (partition of {p})"))
            .unwrap_or_default();
        let part = if n.stats.permitted {
            part
        } else {
            format!(
                "{part} [this role may not vacuum it: owner {}]",
                n.stats.owner
            )
        };
        out.push_str(&format!(
            "  {}. {}{part}: {}\n     because: {}\n     figures: {} live, {} dead, autovacuum threshold {}, xid age {}, {} changed since analyze, {}\n",
            i + 1,
            n.display(),
            n.action,
            n.reason_text,
            fmt_n(n.stats.live_tuples),
            fmt_n(n.stats.dead_tuples),
            fmt_n(n.autovacuum_threshold.round() as i64),
            fmt_n(n.stats.xid_age),
            fmt_n(n.stats.mods_since_analyze),
            human_bytes(n.stats.total_bytes),
        ));
    }
    for t in &plan.not_needed {
        out.push_str(&format!(
            "  {}: healthy ({} live, {} dead, xid age {}, {} changed since analyze), not vacuumed\n",
            maintenance::display_name(&t.schema, &t.table),
            fmt_n(t.live_tuples),
            fmt_n(t.dead_tuples),
            fmt_n(t.xid_age),
            fmt_n(t.mods_since_analyze)
        ));
    }
    out
}

pub use crate::text::plural;

/// A duration for people: 850ms, 12.3s, 4m05s.
pub fn fmt_dur(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 120_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

fn vacuum_line(r: &TableResult) -> String {
    let dead = match (r.dead_tuples_before, r.dead_tuples_after) {
        (Some(b), Some(a)) => format!(", dead tuples {b} -> {a}"),
        _ => String::new(),
    };
    let retries = if r.attempts > 1 {
        format!(", {} attempts", r.attempts)
    } else {
        String::new()
    };
    let mut line = format!(
        "{:<7} {} {} in {}{dead}{retries}\n",
        r.outcome.as_str(),
        r.action,
        r.display(),
        fmt_dur(r.duration_ms)
    );
    if let Some(e) = &r.error {
        line.push_str(&format!("        error: {e}\n"));
    }
    line
}

fn summary_text(o: &VacuumOutcome, max: Option<Duration>) -> String {
    let count = |k: Outcome| o.results.iter().filter(|r| r.outcome == k).count();
    let mut out = format!(
        "vacuum finished in {}: {} ok, {} failed, {} skipped",
        fmt_dur(o.elapsed_ms),
        count(Outcome::Ok),
        count(Outcome::Failed),
        count(Outcome::Skipped)
    );
    if !o.not_started.is_empty() {
        out.push_str(&format!(", {} not started", o.not_started.len()));
    }
    out.push('\n');
    if !o.not_started.is_empty() {
        out.push_str(&format!(
            "the --max-duration window ({}) closed; left for the next run:\n",
            max.map(|d| fmt_dur(d.as_millis() as u64))
                .unwrap_or_default()
        ));
        for n in &o.not_started {
            out.push_str(&format!(
                "  {} ({}: {})\n",
                maintenance::display_name(&n.schema, &n.table),
                n.action,
                n.reason
            ));
        }
    }
    out
}

fn render_json(
    db: &str,
    args: &VacuumArgs,
    plan: &VacuumPlan,
    outcome: Option<&VacuumOutcome>,
) -> anyhow::Result<String> {
    let status = match outcome {
        None if args.dry_run => "dry_run",
        None => "nothing_to_do",
        Some(o) if o.results.iter().any(|r| r.outcome != Outcome::Ok) => "failed",
        Some(o) if !o.not_started.is_empty() => "partial",
        Some(_) => "ok",
    };
    let v = json!({
        "job": "vacuum",
        "database": db,
        "dry_run": args.dry_run,
        "freeze": args.freeze,
        "max_duration_seconds": args.max_duration.map(|d| d.as_secs_f64()),
        "status": status,
        "plan": plan,
        "results": outcome.map(|o| &o.results),
        "not_started": outcome.map(|o| &o.not_started),
        "elapsed_ms": outcome.map(|o| o.elapsed_ms),
        "recorded": outcome.map(|o| o.recorded),
        "warnings": outcome.map(|o| &o.warnings),
    });
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

/// Shows the work as it happens: a progress bar on a terminal (stderr), and one line
/// per finished item on stdout in text mode.
pub struct LiveView<R> {
    lines: bool,
    bars: bool,
    bar: Option<ProgressBar>,
    /// Whether the bar knows its total yet (a spinner until then).
    sized: bool,
    label: String,
    line: fn(&R) -> String,
}

impl<R> LiveView<R> {
    pub fn new(lines: bool, bars: bool, line: fn(&R) -> String) -> Self {
        LiveView {
            lines,
            bars,
            bar: None,
            sized: false,
            label: String::new(),
            line,
        }
    }

    pub fn clear(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl<R> Observer<R> for LiveView<R> {
    fn started(&mut self, label: &str) {
        self.clear();
        self.label = label.to_string();
        if self.bars {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {wide_msg} {elapsed}") {
                b.set_style(style);
            }
            self.sized = false;
            b.set_message(label.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(b);
        }
    }

    fn progress(&mut self, p: &Progress) {
        if let Some(b) = &self.bar {
            if p.total > 0 {
                if !self.sized {
                    if let Ok(style) = ProgressStyle::with_template(
                        "{spinner} {wide_msg} [{bar:30}] {percent:>3}% {elapsed}",
                    ) {
                        b.set_style(style.progress_chars("=> "));
                    }
                    self.sized = true;
                }
                b.set_length(p.total);
                b.set_position(p.done.min(p.total));
            }
            b.set_message(format!("{} ({})", self.label, p.phase));
        }
    }

    fn retrying(&mut self, label: &str, attempt: u32, pause: Duration) {
        let msg = format!(
            "lock not available for {label} (attempt {attempt}); trying again in {}",
            fmt_dur(pause.as_millis() as u64)
        );
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{msg}")),
            None => crate::logging::info(msg),
        }
    }

    fn finished(&mut self, r: &R) {
        self.clear();
        if self.lines {
            print(&(self.line)(r));
        }
    }
}
