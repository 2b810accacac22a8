//! The real executor: runs each job as a child `opsctl` process with the scheduler's
//! connection settings and policy, records every run in `opsctl.job_runs`, forwards
//! SIGTERM to a running job and gives it `stop_grace` to reach a safe point.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use super::runner::{Executor, Outcome};
use super::JobKind;
use crate::db::Connection;
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
/// As SQL_FINISH, on a database with the exit_code and output columns (V65).
const SQL_FINISH_OUTPUT: &str = "UPDATE opsctl.job_runs SET finished_at = now(), outcome = $2, \
     error = $3, exit_code = $4, output = $5 WHERE id = $1";
const SQL_SKIP: &str =
    "INSERT INTO opsctl.job_runs (job, scheduled_for, finished_at, outcome, error, host, pid) \
     VALUES ($1, $2, now(), 'skipped', $3, $4, $5)";
/// Whether opsctl.job_runs exists, and whether it has the exit_code/output columns (V65).
pub(crate) const SQL_HAS_TABLE: &str = "SELECT to_regclass('opsctl.job_runs') IS NOT NULL, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('opsctl.job_runs') \
             AND attname = 'exit_code' AND NOT attisdropped)";

/// Lines of a job's output kept for `schedule history`.
pub const OUTPUT_LINES: usize = 20;

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
    /// The table has the exit_code and output columns.
    with_output: bool,
}

/// How one child opsctl ended: the outcome, its exit code and its last lines of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRun {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    /// The last [`OUTPUT_LINES`] lines of stdout and stderr, in the order they came.
    pub output: String,
}

impl<'a> ProcessExecutor<'a> {
    pub async fn new(
        conn: &'a Connection,
        policy: &'a Policy,
        child: ChildSetup,
        runner: &'static str,
    ) -> Self {
        let (recording, with_output) = match conn.query_one(SQL_HAS_TABLE, &[]).await {
            Ok(r) => (r.get(0), r.get(1)),
            Err(_) => (false, false),
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
            with_output,
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

    async fn record_finish(&self, id: Option<i64>, run: &ChildRun) {
        let Some(id) = id else { return };
        let (state, error) = outcome_columns(&run.outcome);
        let output = (!run.output.is_empty()).then(|| crate::db::redact(&run.output));
        let done = if self.with_output {
            self.conn
                .execute(
                    SQL_FINISH_OUTPUT,
                    &[&id, &state, &error, &run.exit_code, &output],
                )
                .await
        } else {
            self.conn.execute(SQL_FINISH, &[&id, &state, &error]).await
        };
        if let Err(e) = done {
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
        let run = match job.commands(self.policy, Utc::now()) {
            Err(e) => ChildRun {
                outcome: Outcome::Failure(e.to_string()),
                exit_code: None,
                output: String::new(),
            },
            Ok(cmds) => {
                let mut run = ChildRun {
                    outcome: Outcome::Success,
                    exit_code: Some(0),
                    output: String::new(),
                };
                for args in cmds {
                    run = run_child(&self.child, job, &args, shutdown).await;
                    if run.outcome != Outcome::Success {
                        break;
                    }
                }
                run
            }
        };
        self.record_finish(id, &run).await;
        run.outcome
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

/// Runs one child opsctl; its stdout and stderr are forwarded to ours. On failure the
/// child's `error: …` message (with its detail lines) becomes the error; the last lines
/// of its output and its exit code are kept for `schedule history`.
pub async fn run_child(
    setup: &ChildSetup,
    job: JobKind,
    args: &[String],
    shutdown: &mut watch::Receiver<bool>,
) -> ChildRun {
    let mut cmd = crate::childenv::opsctl_command(&setup.exe);
    cmd.args(args)
        .args(&setup.extra_args)
        .envs(setup.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("OPSCTL_SCHEDULED_JOB", job.name())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let failed = |msg: String| ChildRun {
        outcome: Outcome::Failure(msg),
        exit_code: None,
        output: String::new(),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {}: {e}", setup.exe.display())),
    };
    let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let keep = |tail: &Arc<Mutex<VecDeque<String>>>, l: &str| {
        if let Ok(mut t) = tail.lock() {
            t.push_back(l.to_string());
            if t.len() > OUTPUT_LINES {
                t.pop_front();
            }
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let name = job.name();
    let out_tail = tail.clone();
    let out_task = tokio::spawn(async move {
        if let Some(s) = stdout {
            let mut lines = BufReader::new(s).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("[{name}] {l}");
                keep(&out_tail, &l);
            }
        }
    });
    let err_tail = tail.clone();
    let err_task = tokio::spawn(async move {
        // The child's last `error: …` line and the lines after it (detail, hint, causes).
        let mut error: Vec<String> = Vec::new();
        if let Some(s) = stderr {
            let mut lines = BufReader::new(s).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("[{name}] {l}");
                keep(&err_tail, &l);
                if let Some(e) = l.strip_prefix("error: ") {
                    error = vec![e.to_string()];
                } else if !error.is_empty() && l.starts_with(' ') && error.len() < OUTPUT_LINES {
                    error.push(l);
                }
            }
        }
        error.join("\n")
    });
    let status = tokio::select! {
        s = child.wait() => Some(s),
        _ = shutdown.wait_for(|s| *s) => None,
    };
    let mut exit_code = None;
    let outcome = match status {
        Some(Ok(s)) if s.success() => {
            exit_code = Some(0);
            Outcome::Success
        }
        Some(Ok(s)) => {
            use std::os::unix::process::ExitStatusExt;
            exit_code = s.code();
            let error = err_task.await.unwrap_or_default();
            let _ = out_task.await;
            let how = match (s.code(), s.signal()) {
                (Some(c), _) => format!("exited with code {c}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                (None, None) => "failed".to_string(),
            };
            let outcome = Outcome::Failure(if error.is_empty() {
                format!(
                    "`opsctl {}` {how} without an error message (see its output)",
                    crate::oplog::command_name(
                        &[String::new()]
                            .iter()
                            .chain(args)
                            .cloned()
                            .collect::<Vec<_>>()
                    )
                )
            } else {
                error
            });
            return ChildRun {
                outcome,
                exit_code,
                output: take_tail(&tail),
            };
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
            match tokio::time::timeout(setup.stop_grace, child.wait()).await {
                Ok(Ok(s)) => exit_code = s.code(),
                _ => {
                    tracing::warn!(job = name, "the job did not stop in time: killing it");
                    let _ = child.kill().await;
                }
            }
            Outcome::Cancelled
        }
    };
    let _ = out_task.await;
    let _ = err_task.await;
    ChildRun {
        outcome,
        exit_code,
        output: take_tail(&tail),
    }
}

fn take_tail(tail: &Arc<Mutex<VecDeque<String>>>) -> String {
    tail.lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}
