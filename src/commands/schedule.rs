//! `opsctl schedule list|run|history`: the scheduler daemon with one active instance per
//! database (standbys take over when it dies), one job with `--once`, and what ran.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{conn_settings, load_policy, print, EXIT_FAILURE, EXIT_OK};
use crate::cli::{
    ConnectArgs, Format, PolicyArgs, ScheduleCommand, ScheduleHistoryArgs, ScheduleListArgs,
    ScheduleRunArgs,
};
use crate::db::{self, locks};
use crate::duration::parse_duration;
use crate::policy::Policy;
use crate::schedule::exec::{ChildSetup, ProcessExecutor};
use crate::schedule::history::{self, JobRun};
use crate::schedule::runner::{self, Executor, LoopConfig, Outcome, SystemClock};
use crate::schedule::{JobKind, Plan};
use crate::text;

pub async fn run(cmd: ScheduleCommand) -> u8 {
    let result = match cmd {
        ScheduleCommand::List(a) => list(a).await,
        ScheduleCommand::Run(a) => daemon(a).await,
        ScheduleCommand::History(a) => history_cmd(a).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            super::print_error(&e);
            EXIT_FAILURE
        }
    }
}

async fn list(args: ScheduleListArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&args.policy)?;
    let plan = Plan::from_policy(&policy)?;
    let settings = conn_settings(&args.connect)?;
    let now = Utc::now();
    let (last, last_error) = match db::connect(&settings).await {
        Ok(conn) => match history::last_runs(&conn).await {
            Ok(r) => (r, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        },
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut rows = Vec::new();
    let mut texts = Vec::new();
    for kind in JobKind::ALL {
        let job = plan.jobs.iter().find(|j| j.kind == kind);
        let next: Vec<DateTime<Utc>> = job.map(|j| plan.upcoming(j, now, 3)).unwrap_or_default();
        let last_run = last.iter().find(|r| r.job == kind.name());
        rows.push(serde_json::json!({
            "job": kind.name(),
            "policy_key": kind.schedule_key(),
            "expression": job.map(|j| j.expr.source().to_string()),
            "next": next.iter().map(text::ts_json).collect::<Vec<_>>(),
            "last_run": last_run.map(|r| serde_json::json!({
                "started_at": text::ts_json(&r.started_at),
                "finished_at": r.finished_at.as_ref().map(text::ts_json),
                "outcome": r.outcome,
                "attempt": r.attempt,
                "exit_code": r.exit_code,
                "error": r.error,
            })),
        }));
        texts.push((next, last_run));
    }
    match args.output.format {
        Format::Json => {
            let v = serde_json::json!({
                "timezone": plan.tz.name(),
                "jobs": rows,
                "last_runs_unavailable": last_error,
            });
            print(&format!("{}\n", serde_json::to_string_pretty(&v)?));
        }
        Format::Text => {
            let mut out = format!(
                "scheduled jobs (cron times in {}; shown in UTC)\n",
                plan.tz.name()
            );
            for (r, (next, last)) in rows.iter().zip(&texts) {
                let expr = r["expression"].as_str().unwrap_or("-");
                let next: Vec<String> = next.iter().map(text::ts).collect();
                let last = match last {
                    None => "never".to_string(),
                    Some(l) => {
                        let mut s = format!("{} at {}", l.outcome, text::ts(&l.started_at));
                        if let Some(c) = l.exit_code.filter(|c| *c != 0) {
                            s.push_str(&format!(" (exit code {c})"));
                        }
                        if l.outcome != "success" {
                            if let Some(e) = l.error.as_deref().and_then(|e| e.lines().next()) {
                                s.push_str(&format!(": {e}"));
                            }
                        }
                        s
                    }
                };
                out.push_str(&format!(
                    "  {:<14} {:<16} next: {}  last: {}\n",
                    r["job"].as_str().unwrap_or(""),
                    expr,
                    if next.is_empty() {
                        "not scheduled".to_string()
                    } else {
                        next.join(", ")
                    },
                    last
                ));
            }
            if let Some(e) = last_error {
                out.push_str(&format!("  (last runs unavailable: {e})\n"));
            }
            print(&out);
        }
    }
    Ok(EXIT_OK)
}

/// Lines of a job's output shown for a failed run without an error message.
const TEXT_OUTPUT_LINES: usize = 5;

async fn history_cmd(args: ScheduleHistoryArgs) -> anyhow::Result<u8> {
    if let Some(j) = &args.job {
        JobKind::from_name(j)?;
    }
    let since = chrono::Duration::from_std(args.since)
        .map_err(|_| anyhow::anyhow!("--since: {:?} is too long", args.since))?;
    let from = Utc::now() - since;
    let settings = conn_settings(&args.connect)?;
    let conn = db::connect(&settings).await?;
    let Some(runs) = history::runs(&conn, args.job.as_deref(), from, args.limit).await? else {
        anyhow::bail!(
            "this database has no opsctl.job_runs: the scheduler has not run here \
             (run `opsctl migrate up`, then `opsctl schedule run`)"
        );
    };
    match args.output.format {
        Format::Json => {
            let v = serde_json::json!({
                "since": text::ts_json(&from),
                "job": args.job,
                "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
            });
            print(&format!("{}\n", serde_json::to_string_pretty(&v)?));
        }
        Format::Text => print(&history_text(&runs, &from, args.job.as_deref())),
    }
    Ok(EXIT_OK)
}

fn run_json(r: &JobRun) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "job": r.job,
        "scheduled_for": r.scheduled_for.as_ref().map(text::ts_json),
        "started_at": text::ts_json(&r.started_at),
        "finished_at": r.finished_at.as_ref().map(text::ts_json),
        "duration_seconds": r.duration_seconds,
        "outcome": r.outcome,
        "exit_code": r.exit_code,
        "attempt": r.attempt,
        "error": r.error,
        "output": r.output,
        "host": r.host,
        "pid": r.pid,
        "runner": r.runner,
    })
}

fn history_text(runs: &[JobRun], from: &DateTime<Utc>, job: Option<&str>) -> String {
    let mut out = format!(
        "{} of {} since {} (newest first)\n",
        text::plural(runs.len(), "run"),
        job.map_or("scheduled jobs".to_string(), |j| format!("job {j}")),
        text::ts(from)
    );
    if runs.is_empty() {
        out.push_str("  none\n");
    }
    for r in runs {
        let duration = match r.duration_seconds {
            Some(s) => text::duration_short(s),
            None if r.outcome == "running" => "running".to_string(),
            None => "-".to_string(),
        };
        let exit = r
            .exit_code
            .map_or(String::new(), |c| format!("  exit code {c}"));
        out.push_str(&format!(
            "  {}  {:<14} {:<9} {:>8}  attempt {}{exit}\n",
            text::ts(&r.started_at),
            r.job,
            r.outcome,
            duration,
            r.attempt,
        ));
        if r.outcome == "success" || r.outcome == "running" {
            continue;
        }
        if let Some(e) = r.error.as_deref() {
            let mut lines = e.lines();
            let label = if r.outcome == "skipped" {
                "reason"
            } else {
                "error"
            };
            out.push_str(&format!("      {label}: {}\n", lines.next().unwrap_or("")));
            for l in lines {
                out.push_str(&format!("      {l}\n"));
            }
        }
        let tail = r.output_tail(TEXT_OUTPUT_LINES);
        let error_says_it = r
            .error
            .as_deref()
            .is_some_and(|e| !e.contains("without an error message") && !e.trim().is_empty());
        if !tail.is_empty() && !error_says_it {
            out.push_str("      last lines of output:\n");
            for l in tail {
                out.push_str(&format!("        | {l}\n"));
            }
        }
    }
    out
}

fn child_setup(
    connect: &ConnectArgs,
    policy: &PolicyArgs,
    p: &Policy,
) -> anyhow::Result<ChildSetup> {
    let mut env = Vec::new();
    if let Some(url) = connect
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok())
    {
        env.push(("OPSCTL_DATABASE_URL".to_string(), url));
    }
    if let Some(path) = &policy.policy {
        let abs = std::fs::canonicalize(path)?;
        env.push(("OPSCTL_POLICY".to_string(), abs.display().to_string()));
    }
    let mut extra_args = Vec::new();
    if let Some(m) = &connect.sslmode {
        extra_args.extend(["--sslmode".to_string(), m.clone()]);
    }
    if let Some(c) = &connect.sslrootcert {
        extra_args.extend(["--sslrootcert".to_string(), c.display().to_string()]);
    }
    Ok(ChildSetup {
        exe: std::env::current_exe()?,
        env,
        extra_args,
        stop_grace: parse_duration(&p.scheduler.stop_grace)?,
    })
}

/// A channel that turns true on SIGTERM or SIGINT.
fn shutdown_channel() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown requested: starting nothing new");
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn daemon(args: ScheduleRunArgs) -> anyhow::Result<u8> {
    let policy = load_policy(&args.policy)?;
    let plan = Plan::from_policy(&policy)?;
    let once = args.once.as_deref().map(JobKind::from_name).transpose()?;
    let settings = conn_settings(&args.connect)?;
    let setup = child_setup(&args.connect, &args.policy, &policy)?;
    let cfg = LoopConfig {
        max_wait: parse_duration(&policy.scheduler.max_wait)?,
        retries: policy.scheduler.retries,
        retry_backoff: parse_duration(&policy.scheduler.retry_backoff)?,
    };
    let standby_poll = parse_duration(&policy.scheduler.standby_poll)?;
    let mut shutdown = shutdown_channel()?;

    if let Some(job) = once {
        let conn = db::connect(&settings).await?;
        let mut exec = ProcessExecutor::new(&conn, &policy, setup, "once").await;
        let outcome = exec.run(job, Utc::now(), 1, &mut shutdown).await;
        return Ok(match outcome {
            Outcome::Success => {
                crate::logging::info(format_args!("job {} succeeded", job.name()));
                EXIT_OK
            }
            Outcome::Failure(e) | Outcome::LostLeadership(e) => {
                super::report_error(&format!("job {} failed: {e}", job.name()));
                EXIT_FAILURE
            }
            Outcome::Cancelled => {
                crate::logging::info(format_args!("job {} cancelled", job.name()));
                EXIT_FAILURE
            }
        });
    }

    tracing::info!(
        jobs = plan.jobs.len(),
        timezone = plan.tz.name(),
        "scheduler starting"
    );
    let mut reconnect_wait = Duration::from_secs(1);
    loop {
        if *shutdown.borrow() {
            return Ok(EXIT_OK);
        }
        let conn = match db::connect(&settings).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    "cannot connect, retrying in {}s: {e}",
                    reconnect_wait.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(reconnect_wait) => {}
                    _ = shutdown.wait_for(|s| *s) => return Ok(EXIT_OK),
                }
                reconnect_wait = (reconnect_wait * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        reconnect_wait = Duration::from_secs(1);
        // One active scheduler per database; others wait as standby.
        let mut announced = false;
        let leader = loop {
            match db::try_advisory_lock(&conn, locks::SCHEDULER).await {
                Ok(true) => break true,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!("standby lost its connection: {e}");
                    break false;
                }
            }
            if !announced {
                tracing::info!("standby: another scheduler is active on this database; taking over when it stops");
                announced = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(standby_poll) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(EXIT_OK),
            }
        };
        if !leader {
            continue;
        }
        tracing::info!("active scheduler for {}", settings);
        let mut exec = ProcessExecutor::new(&conn, &policy, setup.clone(), "daemon").await;
        let events = runner::run_loop(&plan, &cfg, &SystemClock, &mut exec, &mut shutdown).await;
        if *shutdown.borrow() {
            let _ = db::release_advisory_lock(&conn, locks::SCHEDULER).await;
            tracing::info!("scheduler stopped");
            return Ok(EXIT_OK);
        }
        if let Some(runner::Event::Ran {
            outcome: Outcome::LostLeadership(e),
            ..
        }) = events.last()
        {
            tracing::error!("{e}; reconnecting");
        }
    }
}
