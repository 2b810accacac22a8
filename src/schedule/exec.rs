//! The real executor: runs each job as a child `opsctl` process with the scheduler's
//! connection settings and policy, records every run in `opsctl.job_runs`, forwards
//! SIGTERM to a running job and gives it `stop_grace` to reach a safe point.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use super::runner::{Executor, Outcome};
use super::JobKind;
use crate::db::Connection;
use crate::error::Error;
use crate::policy::Policy;

const SQL_START: &str =
    "INSERT INTO opsctl.job_runs (job, scheduled_for, attempt, host, pid, runner) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
/// Runs a dead active scheduler left 'running': only the active scheduler runs jobs, so
/// at takeover any such row is an orphan.
const SQL_ORPHANS: &str = "UPDATE opsctl.job_runs SET outcome = 'failure', finished_at = now(), \
     error = format('the scheduler (pid %s on %s) stopped during this run; taken over by pid %s on %s', pid, host, $1::int, $2::text) \
     WHERE outcome = 'running' AND runner = 'daemon'";
const SQL_FINISH: &str =
    "UPDATE opsctl.job_runs SET finished_at = now(), outcome = $2, error = $3 WHERE id = $1";
const SQL_SKIP: &str =
    "INSERT INTO opsctl.job_runs (job, scheduled_for, finished_at, outcome, error, host, pid) \
     VALUES ($1, $2, now(), 'skipped', $3, $4, $5)";
const SQL_LAST: &str = "SELECT DISTINCT ON (job) job, started_at, finished_at, outcome, error \
     FROM opsctl.job_runs WHERE outcome <> 'skipped' ORDER BY job, started_at DESC";
const SQL_HAS_TABLE: &str = "SELECT to_regclass('opsctl.job_runs') IS NOT NULL";

/// How to start a child opsctl.
#[derive(Debug, Clone)]
pub struct ChildSetup {
    pub exe: PathBuf,
    /// Environment for the child (connection string, policy path).
    pub env: Vec<(String, String)>,
    /// Extra arguments every child gets (--sslmode, --sslrootcert).
    pub extra_args: Vec<String>,
    pub stop_grace: Duration,
}

pub struct ProcessExecutor<'a> {
    pub conn: &'a Connection,
    pub policy: &'a Policy,
    pub child: ChildSetup,
    /// 'daemon' or 'once'.
    pub runner: &'static str,
    recording: bool,
}

impl<'a> ProcessExecutor<'a> {
    pub async fn new(
        conn: &'a Connection,
        policy: &'a Policy,
        child: ChildSetup,
        runner: &'static str,
    ) -> Self {
        let recording = match conn.query_one(SQL_HAS_TABLE, &[]).await {
            Ok(r) => r.get(0),
            Err(_) => false,
        };
        if !recording {
            tracing::warn!(
                "opsctl.job_runs does not exist: runs are not recorded (run `opsctl migrate up`)"
            );
        }
        if recording && runner == "daemon" {
            let pid = std::process::id() as i32;
            match conn
                .execute(SQL_ORPHANS, &[&pid, &crate::oplog::hostname()])
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::warn!("marked {n} run(s) of a stopped scheduler as failed"),
                Err(e) => tracing::warn!("cannot close orphaned runs: {}", crate::db::describe(&e)),
            }
        }
        ProcessExecutor {
            conn,
            policy,
            child,
            runner,
            recording,
        }
    }

    async fn record_start(&self, job: JobKind, fire: DateTime<Utc>, attempt: u32) -> Option<i64> {
        if !self.recording {
            return None;
        }
        let host = crate::oplog::hostname();
        let pid = std::process::id() as i32;
        match self
            .conn
            .query_one(
                SQL_START,
                &[
                    &job.name(),
                    &fire,
                    &(attempt as i32),
                    &host,
                    &pid,
                    &self.runner,
                ],
            )
            .await
        {
            Ok(r) => Some(r.get(0)),
            Err(e) => {
                tracing::warn!(
                    "cannot record the run of {}: {}",
                    job.name(),
                    crate::db::describe(&e)
                );
                None
            }
        }
    }

    async fn record_finish(&self, id: Option<i64>, outcome: &Outcome) {
        let Some(id) = id else { return };
        let (state, error) = outcome_columns(outcome);
        if let Err(e) = self.conn.execute(SQL_FINISH, &[&id, &state, &error]).await {
            tracing::warn!(
                "cannot record the end of run {id}: {}",
                crate::db::describe(&e)
            );
        }
    }
}

fn outcome_columns(o: &Outcome) -> (&'static str, Option<String>) {
    match o {
        Outcome::Success => ("success", None),
        Outcome::Failure(e) => ("failure", Some(e.clone())),
        Outcome::Cancelled => ("cancelled", Some("stopped by SIGTERM/SIGINT".into())),
        Outcome::LostLeadership(e) => ("failure", Some(e.clone())),
    }
}

impl Executor for ProcessExecutor<'_> {
    async fn run(
        &mut self,
        job: JobKind,
        fire: DateTime<Utc>,
        attempt: u32,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        // The leader lock lives on this connection: if it is gone, so is leadership.
        if let Err(e) = self.conn.simple_query("SELECT 1").await {
            return Outcome::LostLeadership(format!(
                "lost the scheduler's connection: {}",
                crate::db::describe(&e)
            ));
        }
        let id = self.record_start(job, fire, attempt).await;
        let outcome = match job.commands(self.policy, Utc::now()) {
            Err(e) => Outcome::Failure(e.to_string()),
            Ok(cmds) => {
                let mut outcome = Outcome::Success;
                for args in cmds {
                    outcome = run_child(&self.child, job, &args, shutdown).await;
                    if outcome != Outcome::Success {
                        break;
                    }
                }
                outcome
            }
        };
        self.record_finish(id, &outcome).await;
        outcome
    }

    async fn skipped(&mut self, job: JobKind, fire: DateTime<Utc>, reason: &str) {
        if self.recording {
            let pid = std::process::id() as i32;
            if let Err(e) = self
                .conn
                .execute(
                    SQL_SKIP,
                    &[&job.name(), &fire, &reason, &crate::oplog::hostname(), &pid],
                )
                .await
            {
                tracing::warn!("cannot record a skipped run: {}", crate::db::describe(&e));
            }
        }
    }
}

/// Runs one child opsctl; its stdout and stderr are forwarded to ours, the last lines
/// of stderr become the recorded error.
pub async fn run_child(
    setup: &ChildSetup,
    job: JobKind,
    args: &[String],
    shutdown: &mut watch::Receiver<bool>,
) -> Outcome {
    let mut cmd = crate::childenv::opsctl_command(&setup.exe);
    cmd.args(args)
        .args(&setup.extra_args)
        .envs(setup.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("OPSCTL_SCHEDULED_JOB", job.name())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(format!("cannot start {}: {e}", setup.exe.display())),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let name = job.name();
    let out_task = tokio::spawn(async move {
        if let Some(s) = stdout {
            let mut lines = BufReader::new(s).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("[{name}] {l}");
            }
        }
    });
    let err_task = tokio::spawn(async move {
        let mut tail = VecDeque::new();
        if let Some(s) = stderr {
            let mut lines = BufReader::new(s).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("[{name}] {l}");
                tail.push_back(l);
                if tail.len() > 20 {
                    tail.pop_front();
                }
            }
        }
        tail.into_iter().collect::<Vec<_>>().join("\n")
    });
    let status = tokio::select! {
        s = child.wait() => Some(s),
        _ = shutdown.wait_for(|s| *s) => None,
    };
    let outcome = match status {
        Some(Ok(s)) if s.success() => Outcome::Success,
        Some(Ok(s)) => {
            let tail = err_task.await.unwrap_or_default();
            let _ = out_task.await;
            return Outcome::Failure(format!(
                "`opsctl {}` exited with {}{}",
                args.join(" "),
                s.code()
                    .map_or("a signal".to_string(), |c| format!("code {c}")),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            ));
        }
        Some(Err(e)) => Outcome::Failure(format!("waiting for the job failed: {e}")),
        None => {
            // Shutdown: ask the job to stop at a safe point, then insist.
            if let Some(pid) = child.id() {
                tracing::warn!(job = name, "stopping the running job (SIGTERM)");
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
            if tokio::time::timeout(setup.stop_grace, child.wait())
                .await
                .is_err()
            {
                tracing::warn!(job = name, "the job did not stop in time: killing it");
                let _ = child.kill().await;
            }
            Outcome::Cancelled
        }
    };
    let _ = out_task.await;
    let _ = err_task.await;
    outcome
}

/// The last recorded run of each job: (started, finished, outcome, error).
pub async fn last_runs(
    conn: &Connection,
) -> Result<
    Vec<(
        String,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        String,
        Option<String>,
    )>,
    Error,
> {
    let has: bool = conn
        .query_one(SQL_HAS_TABLE, &[])
        .await
        .map_err(Error::db)?
        .get(0);
    if !has {
        return Ok(Vec::new());
    }
    let rows = conn.query(SQL_LAST, &[]).await.map_err(Error::db)?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect())
}
