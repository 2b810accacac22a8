//! The scheduler's loop: one job at a time, each at its time; a run that overruns its
//! next fire skips that fire (never stacks); a job kept waiting by another longer than
//! `max_wait` is skipped with a log line; failures are retried with doubling backoff;
//! SIGTERM starts nothing new. The loop is generic over the clock and the executor so
//! its timing rules are tested on a fixed clock; the real executor runs opsctl itself.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{JobKind, Plan};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
    /// Stopped by SIGTERM/SIGINT.
    Cancelled,
    /// The leader's connection (and so its lock) is gone: stop scheduling.
    LostLeadership(String),
}

/// What the loop did, in order: for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Ran {
        job: JobKind,
        fire: DateTime<Utc>,
        attempt: u32,
        outcome: Outcome,
    },
    Skipped {
        job: JobKind,
        fire: DateTime<Utc>,
        reason: String,
    },
}

/// Time, as the loop sees it.
pub trait Clock {
    fn now(&self) -> DateTime<Utc>;
    /// Sleeps until `t`; false when shutdown was asked for first.
    fn sleep_until(
        &self,
        t: DateTime<Utc>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> impl Future<Output = bool>;
}

/// Runs one attempt of a job.
pub trait Executor {
    fn run(
        &mut self,
        job: JobKind,
        fire: DateTime<Utc>,
        attempt: u32,
        shutdown: &mut watch::Receiver<bool>,
    ) -> impl Future<Output = Outcome>;
    /// Records a skipped fire.
    fn skipped(
        &mut self,
        job: JobKind,
        fire: DateTime<Utc>,
        reason: &str,
    ) -> impl Future<Output = ()>;
}

/// Timing rules of the loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub max_wait: Duration,
    pub retries: u32,
    pub retry_backoff: Duration,
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, t: DateTime<Utc>, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            if *shutdown.borrow() {
                return false;
            }
            let left = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if left.is_zero() {
                return true;
            }
            // Wake at least every minute to follow wall-clock jumps.
            let step = left.min(Duration::from_secs(60));
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Runs the plan until shutdown (or lost leadership). Returns what happened.
pub async fn run_loop<C: Clock, E: Executor>(
    plan: &Plan,
    cfg: &LoopConfig,
    clock: &C,
    exec: &mut E,
    shutdown: &mut watch::Receiver<bool>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let start = clock.now();
    let mut next: Vec<Option<DateTime<Utc>>> =
        plan.jobs.iter().map(|j| plan.next_fire(j, start)).collect();
    loop {
        let Some((i, fire)) = next
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .min_by_key(|(_, t)| *t)
        else {
            // Nothing scheduled: wait for shutdown.
            let _ = shutdown.wait_for(|s| *s).await;
            return events;
        };
        let job = plan.jobs[i].kind;
        if !clock.sleep_until(fire, shutdown).await {
            return events;
        }
        let started = clock.now();
        if started - fire > to_chrono(cfg.max_wait) {
            let reason = format!(
                "waited {}s for another job, more than scheduler.max_wait ({}s)",
                (started - fire).num_seconds(),
                cfg.max_wait.as_secs()
            );
            tracing::warn!(job = job.name(), %fire, "skipped: {reason}");
            exec.skipped(job, fire, &reason).await;
            events.push(Event::Skipped { job, fire, reason });
            next[i] = plan.next_fire(&plan.jobs[i], started);
            continue;
        }
        let mut attempt = 1;
        loop {
            tracing::info!(job = job.name(), %fire, attempt, "job starting");
            let outcome = exec.run(job, fire, attempt, shutdown).await;
            tracing::info!(job = job.name(), ?outcome, "job finished");
            events.push(Event::Ran {
                job,
                fire,
                attempt,
                outcome: outcome.clone(),
            });
            match outcome {
                Outcome::Failure(_) if attempt <= cfg.retries && !*shutdown.borrow() => {
                    let wait = cfg.retry_backoff * 2u32.saturating_pow(attempt - 1);
                    let until = clock.now() + to_chrono(wait);
                    if !clock.sleep_until(until, shutdown).await {
                        return events;
                    }
                    attempt += 1;
                }
                Outcome::Cancelled | Outcome::LostLeadership(_) => return events,
                _ => break,
            }
        }
        let finished = clock.now();
        // Never stack: fires of this job that passed while it ran are skipped.
        let mut following = plan.next_fire(&plan.jobs[i], fire);
        while let Some(f) = following.filter(|f| *f <= finished) {
            let reason = "the previous run was still going (overran)".to_string();
            tracing::warn!(job = job.name(), fire = %f, "skipped: {reason}");
            exec.skipped(job, f, &reason).await;
            events.push(Event::Skipped {
                job,
                fire: f,
                reason,
            });
            following = plan.next_fire(&plan.jobs[i], f);
            if events.len() > 10_000 {
                break;
            }
        }
        next[i] = following;
        if *shutdown.borrow() {
            return events;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use std::cell::Cell;

    /// A clock that jumps instead of sleeping; jobs advance it by their duration.
    struct FakeClock(Cell<DateTime<Utc>>);

    impl Clock for FakeClock {
        fn now(&self) -> DateTime<Utc> {
            self.0.get()
        }
        async fn sleep_until(&self, t: DateTime<Utc>, _s: &mut watch::Receiver<bool>) -> bool {
            if t > self.0.get() {
                self.0.set(t);
            }
            true
        }
    }

    struct FakeExec<'a> {
        clock: &'a FakeClock,
        /// Duration of each run, by job.
        takes: fn(JobKind, u32) -> (i64, Outcome),
        runs: usize,
        stop_after: usize,
        tx: watch::Sender<bool>,
    }

    impl Executor for FakeExec<'_> {
        async fn run(
            &mut self,
            job: JobKind,
            _f: DateTime<Utc>,
            attempt: u32,
            _s: &mut watch::Receiver<bool>,
        ) -> Outcome {
            let (secs, outcome) = (self.takes)(job, attempt);
            self.clock
                .0
                .set(self.clock.0.get() + chrono::Duration::seconds(secs));
            self.runs += 1;
            if self.runs >= self.stop_after {
                let _ = self.tx.send(true);
            }
            outcome
        }
        async fn skipped(&mut self, _j: JobKind, _f: DateTime<Utc>, _r: &str) {}
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn plan(toml: &str) -> Plan {
        Plan::from_policy(&Policy::parse(toml, "p").unwrap()).unwrap()
    }

    fn cfg() -> LoopConfig {
        LoopConfig {
            max_wait: Duration::from_secs(600),
            retries: 2,
            retry_backoff: Duration::from_secs(60),
        }
    }

    fn simulate(
        p: &Plan,
        c: &LoopConfig,
        takes: fn(JobKind, u32) -> (i64, Outcome),
        runs: usize,
    ) -> Vec<Event> {
        let clock = FakeClock(Cell::new(t("2026-11-25T00:00:30Z")));
        let (tx, mut rx) = watch::channel(false);
        let mut exec = FakeExec {
            clock: &clock,
            takes,
            runs: 0,
            stop_after: runs,
            tx,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(run_loop(p, c, &clock, &mut exec, &mut rx))
    }

    #[test]
    fn an_overrunning_job_skips_rather_than_stacks() {
        // Every 5 minutes; each run takes 12 minutes: the fires at :05 and :10 are skipped.
        let p = plan("[maintenance]\nvacuum_schedule = \"*/5 * * * *\"\n");
        let ev = simulate(&p, &cfg(), |_, _| (720, Outcome::Success), 2);
        assert_eq!(
            ev[..4],
            [
                Event::Ran {
                    job: JobKind::Vacuum,
                    fire: t("2026-11-25T00:05:00Z"),
                    attempt: 1,
                    outcome: Outcome::Success
                },
                Event::Skipped {
                    job: JobKind::Vacuum,
                    fire: t("2026-11-25T00:10:00Z"),
                    reason: "the previous run was still going (overran)".into()
                },
                Event::Skipped {
                    job: JobKind::Vacuum,
                    fire: t("2026-11-25T00:15:00Z"),
                    reason: "the previous run was still going (overran)".into()
                },
                Event::Ran {
                    job: JobKind::Vacuum,
                    fire: t("2026-11-25T00:20:00Z"),
                    attempt: 1,
                    outcome: Outcome::Success
                },
            ]
        );
    }

    #[test]
    fn a_job_due_during_another_waits_then_runs_or_is_skipped_past_max_wait() {
        // backup at 01:00 takes 20 min; vacuum due 01:10 waits and runs at 01:20.
        let p = plan("[backup]\nschedule = \"0 1 * * *\"\ndir = \"/b\"\n[maintenance]\nvacuum_schedule = \"10 1 * * *\"\n");
        let ev = simulate(
            &p,
            &cfg(),
            |j, _| {
                (
                    if j == JobKind::Backup { 1200 } else { 1 },
                    Outcome::Success,
                )
            },
            2,
        );
        assert!(
            matches!(&ev[1], Event::Ran { job: JobKind::Vacuum, fire, .. } if *fire == t("2026-11-25T01:10:00Z")),
            "{ev:?}"
        );
        // With max_wait 5 min, the vacuum fire is skipped instead.
        let c = LoopConfig {
            max_wait: Duration::from_secs(300),
            ..cfg()
        };
        let ev = simulate(
            &p,
            &c,
            |j, _| {
                (
                    if j == JobKind::Backup { 1200 } else { 1 },
                    Outcome::Success,
                )
            },
            2,
        );
        assert!(
            matches!(&ev[1], Event::Skipped { job: JobKind::Vacuum, reason, .. } if reason.contains("max_wait")),
            "{ev:?}"
        );
    }

    #[test]
    fn failures_are_retried_with_backoff_then_given_up() {
        let p = plan("[maintenance]\nvacuum_schedule = \"0 * * * *\"\n");
        let ev = simulate(&p, &cfg(), |_, _| (1, Outcome::Failure("boom".into())), 3);
        let attempts: Vec<u32> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Ran { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect();
        assert_eq!(attempts, [1, 2, 3]);
    }

    #[test]
    fn cancellation_stops_the_loop() {
        let p = plan("[maintenance]\nvacuum_schedule = \"* * * * *\"\n");
        let ev = simulate(&p, &cfg(), |_, _| (1, Outcome::Cancelled), 100);
        assert_eq!(ev.len(), 1);
    }
}
