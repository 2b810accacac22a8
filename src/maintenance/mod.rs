//! Vacuum and reindex by measured need, and what both share: thresholds from the policy,
//! naming a table or index, the maintenance session (timeouts, lock retries with
//! backoff), progress polling on a second connection, and the run bookkeeping.

pub mod reindex;
pub mod vacuum;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::db;
use crate::error::Error;
use crate::policy::MaintenancePolicy;

/// Thresholds and safety settings, validated from the policy's `[maintenance]` section.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub vacuum_min_dead_tuples: u64,
    pub vacuum_dead_ratio: f64,
    pub vacuum_freeze_age: u64,
    pub analyze_min_changes: u64,
    pub analyze_change_ratio: f64,
    pub reindex_bloat_ratio: f64,
    pub reindex_min_size: u64,
    pub retry: RetryPolicy,
    #[serde(skip)]
    pub lock_wait: Duration,
}

/// How lock timeouts are handled: every statement runs with `lock_timeout`; after a
/// timeout it is tried again up to `retries` times, pausing `backoff`, then twice that, ...
#[derive(Debug, Clone, Serialize)]
pub struct RetryPolicy {
    #[serde(serialize_with = "ser_ms")]
    pub lock_timeout: Duration,
    pub retries: u32,
    #[serde(serialize_with = "ser_ms")]
    pub backoff: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl RetryPolicy {
    /// The pause before attempt `n + 1` (n counts from 1): backoff × 2^(n-1), capped at
    /// 60 s, plus up to half again as jitter (`db::retry_pause`, as partition work uses).
    pub fn pause(&self, n: u32) -> Duration {
        db::retry_pause(self.backoff, Duration::from_secs(60), n)
    }
}

impl Settings {
    /// Validates the policy section; errors name the key.
    pub fn from_policy(p: &MaintenancePolicy) -> Result<Settings, Error> {
        let bad =
            |key: &str, msg: String| Error::Config(format!("policy [maintenance] {key}: {msg}"));
        let ratio = |key: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(bad(
                    key,
                    format!("{v} is not a fraction between 0 and 1 (e.g. 0.05 for 5%)"),
                ))
            }
        };
        let dur = |key: &str, v: &str| parse_duration(v).map_err(|e| bad(key, e));
        Ok(Settings {
            vacuum_min_dead_tuples: p.vacuum_min_dead_tuples,
            vacuum_dead_ratio: ratio("vacuum_dead_ratio", p.vacuum_dead_ratio)?,
            vacuum_freeze_age: p.vacuum_freeze_age,
            analyze_min_changes: p.analyze_min_changes,
            analyze_change_ratio: ratio("analyze_change_ratio", p.analyze_change_ratio)?,
            reindex_bloat_ratio: ratio("reindex_bloat_ratio", p.reindex_bloat_ratio)?,
            reindex_min_size: parse_size(&p.reindex_min_size)
                .map_err(|e| bad("reindex_min_size", e))?,
            retry: RetryPolicy {
                lock_timeout: {
                    let d = dur("lock_timeout", &p.lock_timeout)?;
                    if d < Duration::from_millis(1) {
                        return Err(bad(
                            "lock_timeout",
                            "must be at least 1ms (0 would wait for locks forever)".into(),
                        ));
                    }
                    d
                },
                retries: p.lock_retries,
                backoff: dur("retry_backoff", &p.retry_backoff)?,
            },
            lock_wait: dur("lock_wait", &p.lock_wait)?,
        })
    }
}

/// Parses a duration such as `90s`, `30m`, `2h`, `1h30m`, `500ms`, `1d` (a bare number is
/// seconds): [`crate::duration::parse_flag`], with its message as the error.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse_flag(s).map_err(|e| e.to_string())
}

/// Parses a size: bytes, or a number with kB/MB/GB/TB (powers of 1000) or
/// KiB/MiB/GiB/TiB (powers of 1024); `B` alone is bytes. Case-insensitive units.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..split]
        .parse()
        .map_err(|_| format!("invalid size {s:?} (examples: 10MiB, 512kB, 1048576)"))?;
    let unit = t[split..].trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024f64.powi(4),
        _ => {
            return Err(format!(
                "unknown unit in size {s:?} (use B, kB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    Ok((n * mult).round() as u64)
}

/// A relation found by name.
#[derive(Debug, Clone, Serialize)]
pub struct Relation {
    #[serde(skip)]
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// pg_class.relkind: r table, p partitioned table, m materialized view, i index,
    /// I partitioned index, ...
    pub kind: String,
}

impl Relation {
    /// `schema.name` quoted for SQL.
    pub fn quoted(&self) -> String {
        db::quote_qualified(&self.schema, &self.name)
    }

    /// `schema.name` as people read it (quoted only where SQL would need it).
    pub fn display(&self) -> String {
        display_name(&self.schema, &self.name)
    }
}

/// `schema.name` as people read it: parts quoted only when they need it.
pub fn display_name(schema: &str, name: &str) -> String {
    fn part(s: &str) -> String {
        let plain = !s.is_empty()
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
        if plain {
            s.to_string()
        } else {
            db::quote_ident(s)
        }
    }
    format!("{}.{}", part(schema), part(name))
}

/// What kind of relation a `--table` / `--index` argument must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Table,
    Index,
}

/// The ways a name given on the command line can be read, in order of preference:
/// SQL syntax when it has double quotes (`"Sales"."My Table"`); otherwise the whole text
/// as one name looked up on the search_path, then `schema.name` split at each dot.
pub fn name_candidates(input: &str) -> Result<Vec<(Option<String>, String)>, String> {
    let t = input.trim();
    if t.is_empty() {
        return Err("empty name".into());
    }
    if t.contains('"') {
        let parts = parse_sql_name(t)?;
        return match parts.as_slice() {
            [n] => Ok(vec![(None, n.clone())]),
            [s, n] => Ok(vec![(Some(s.clone()), n.clone())]),
            _ => Err(format!("{input:?}: give a name as name or schema.name")),
        };
    }
    let mut out = vec![(None, t.to_string())];
    for (i, c) in t.char_indices() {
        if c == '.' && i > 0 && i + 1 < t.len() {
            out.push((Some(t[..i].to_string()), t[i + 1..].to_string()));
        }
    }
    Ok(out)
}

/// Splits SQL-syntax `a."B c"` into parts; unquoted parts fold to lower case as in SQL.
fn parse_sql_name(s: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("unterminated quote in {s:?}")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c == '"' {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(format!("empty name part in {s:?}"));
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(c) => return Err(format!("unexpected {c:?} in {s:?}")),
        }
    }
}

const FIND_RELATION: &str = "\
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname = $2
   AND CASE WHEN $1::text IS NULL THEN pg_catalog.pg_table_is_visible(c.oid)
            ELSE n.nspname = $1::text END";

const SIMILAR_RELATIONS: &str = "\
SELECT n.nspname::text, c.relname::text
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE lower(c.relname) = lower($1) AND c.relkind::text = ANY($2::text[])
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY 1, 2 LIMIT 5";

fn kind_name(k: &str) -> &'static str {
    match k {
        "r" => "a table",
        "p" => "a partitioned table",
        "m" => "a materialized view",
        "i" => "an index",
        "I" => "a partitioned index",
        "v" => "a view",
        "S" => "a sequence",
        "f" => "a foreign table",
        "t" => "a TOAST table",
        "c" => "a composite type",
        _ => "not a table or index",
    }
}

/// Finds the table (r, p, m) or index (i, I) a command-line argument names; an unknown
/// name or the wrong kind is a clear error that says what to do.
pub async fn resolve(client: &Client, input: &str, want: Want) -> Result<Relation, Error> {
    let what = match want {
        Want::Table => "table",
        Want::Index => "index",
    };
    let cands = name_candidates(input).map_err(|e| Error::Config(format!("--{what} {e}")))?;
    for (schema, name) in &cands {
        let rows = client
            .query(FIND_RELATION, &[schema, name])
            .await
            .map_err(Error::db_ctx("looking up the name"))?;
        if let Some(r) = rows.first() {
            let rel = Relation {
                oid: r.get(0),
                schema: r.get(1),
                name: r.get(2),
                kind: r.get(3),
            };
            let ok = match want {
                Want::Table => matches!(rel.kind.as_str(), "r" | "p" | "m"),
                Want::Index => matches!(rel.kind.as_str(), "i" | "I"),
            };
            if !ok {
                let hint = match (want, rel.kind.as_str()) {
                    (Want::Table, "i" | "I") => " (use --index for an index)",
                    (Want::Index, "r" | "p" | "m") => " (use --table for a table)",
                    _ => "",
                };
                return Err(Error::Config(format!(
                    "{} is {}, not {}{hint}",
                    rel.display(),
                    kind_name(&rel.kind),
                    if want == Want::Table {
                        "a table"
                    } else {
                        "an index"
                    }
                )));
            }
            return Ok(rel);
        }
    }
    let kinds: Vec<String> = match want {
        Want::Table => vec!["r".into(), "p".into(), "m".into()],
        Want::Index => vec!["i".into(), "I".into()],
    };
    let last = &cands[0].1;
    let similar = client
        .query(SIMILAR_RELATIONS, &[last, &kinds])
        .await
        .map_err(Error::db_ctx("looking up similar names"))?;
    let mut msg = format!(
        "{what} {input:?} not found in this database (names are matched exactly, case and \
         spaces included; give schema.name when the schema is not on the search_path)"
    );
    if !similar.is_empty() {
        let names: Vec<String> = similar
            .iter()
            .map(|r| display_name(r.get(0), r.get(1)))
            .collect();
        msg.push_str(&format!("; did you mean {}?", names.join(", ")));
    }
    Err(Error::Config(msg))
}

/// Prepares the maintenance connection: no statement_timeout for the maintenance
/// statements themselves, a short lock_timeout so application queries never queue
/// behind us for long, and an application_name that shows in pg_stat_activity.
/// Returns the backend pid (for progress polling).
pub async fn prepare_session(
    client: &Client,
    job: &str,
    retry: &RetryPolicy,
) -> Result<i32, Error> {
    let sql = format!(
        "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; \
         SET lock_timeout = '{}ms'; SET application_name = '{}'",
        retry.lock_timeout.as_millis().max(1),
        db::session_label(job)
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(Error::db_ctx("preparing the maintenance session"))?;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(Error::db)?
        .get(0);
    Ok(pid)
}

/// True when the server error means "the lock could not be had in time" (lock_timeout)
/// or a deadlock: worth trying again after a pause.
/// Runs one statement, retrying lock conflicts as `s.retry` says (the observer hears of
/// each retry); returns the last result and the number of attempts.
pub async fn with_retry<R>(
    client: &Client,
    watcher: Option<&Watcher<'_>>,
    view: ProgressView,
    s: &Settings,
    label: &str,
    sql: &str,
    observer: &mut dyn Observer<R>,
) -> (Result<(), tokio_postgres::Error>, u32) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut on_progress = |p: &Progress| observer.progress(p);
        match run_watched(client, watcher, view, sql, &mut on_progress).await {
            Ok(()) => return (Ok(()), attempts),
            Err(e) if db::is_lock_conflict(&e) && attempts <= s.retry.retries => {
                let pause = s.retry.pause(attempts);
                observer.retrying(label, attempts, pause);
                tracing::info!(
                    "{label}: lock not available (attempt {attempts}); retrying in {pause:?}"
                );
                tokio::time::sleep(pause).await;
            }
            Err(e) => return (Err(e), attempts),
        }
    }
}

/// Live progress of a maintenance statement.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub phase: String,
    pub done: u64,
    pub total: u64,
}

/// Which progress view to poll.
#[derive(Debug, Clone, Copy)]
pub enum ProgressView {
    Vacuum,
    CreateIndex,
}

const PROGRESS_VACUUM: &str = "\
SELECT phase, heap_blks_scanned + heap_blks_vacuumed, heap_blks_total * 2
  FROM pg_catalog.pg_stat_progress_vacuum WHERE pid = $1";

const PROGRESS_CREATE_INDEX: &str = "\
SELECT phase,
       CASE WHEN blocks_total > 0 THEN blocks_done ELSE tuples_done END,
       CASE WHEN blocks_total > 0 THEN blocks_total ELSE tuples_total END
  FROM pg_catalog.pg_stat_progress_create_index WHERE pid = $1";

/// A second connection that watches the maintenance connection's progress.
pub struct Watcher<'a> {
    pub client: &'a Client,
    pub pid: i32,
}

async fn poll_progress(w: &Watcher<'_>, view: ProgressView) -> Option<Progress> {
    let sql = match view {
        ProgressView::Vacuum => PROGRESS_VACUUM,
        ProgressView::CreateIndex => PROGRESS_CREATE_INDEX,
    };
    let row = w.client.query_opt(sql, &[&w.pid]).await.ok()??;
    let done: i64 = row.try_get(1).unwrap_or(0);
    let total: i64 = row.try_get(2).unwrap_or(0);
    Some(Progress {
        phase: row.try_get::<_, String>(0).unwrap_or_default(),
        done: done.max(0) as u64,
        total: total.max(0) as u64,
    })
}

/// Sends one statement alone (outside any transaction block) and, with a watcher,
/// reports its progress every half second while it runs.
pub async fn run_watched(
    client: &Client,
    watcher: Option<&Watcher<'_>>,
    view: ProgressView,
    sql: &str,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<(), tokio_postgres::Error> {
    tracing::debug!("running: {sql}");
    let stmt = client.batch_execute(sql);
    tokio::pin!(stmt);
    let Some(w) = watcher else {
        return stmt.await;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            r = &mut stmt => return r,
            _ = tick.tick() => {
                if let Some(p) = poll_progress(w, view).await {
                    on_progress(&p);
                }
            }
        }
    }
}

/// Whoever shows the work as it happens (the command: progress bar or one line per item).
pub trait Observer<R> {
    /// Work on one item starts (`label` is e.g. `VACUUM (ANALYZE) public.orders`).
    fn started(&mut self, _label: &str) {}
    /// Progress of the running statement (only when a watcher connection is given).
    fn progress(&mut self, _p: &Progress) {}
    /// A lock timeout; the item will be tried again after `pause`.
    fn retrying(&mut self, _label: &str, _attempt: u32, _pause: Duration) {}
    /// The item is done (whatever the outcome).
    fn finished(&mut self, _result: &R) {}
}

/// An observer that shows nothing.
pub struct Quiet;
impl<R> Observer<R> for Quiet {}

/// Outcome of one table or index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One row of `opsctl.maintenance_runs`.
#[derive(Debug, Clone)]
pub struct RunRecord<'a> {
    pub job: &'a str,
    pub schema: &'a str,
    pub relation: &'a str,
    pub table_name: Option<&'a str>,
    pub action: &'a str,
    pub reason: &'a str,
    pub dead_before: Option<i64>,
    pub dead_after: Option<i64>,
    pub size_before: Option<i64>,
    pub size_after: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub attempts: u32,
    pub outcome: Outcome,
    pub error: Option<&'a str>,
}

/// Whether the bookkeeping table exists, and whether this role may write into it.
const RUNS_TABLE: &str = "\
SELECT pg_catalog.has_schema_privilege(n.oid, 'USAGE')
   AND pg_catalog.has_table_privilege(c.oid, 'INSERT')
   AND pg_catalog.has_sequence_privilege(
         pg_catalog.pg_get_serial_sequence('opsctl.maintenance_runs', 'id'), 'USAGE')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'opsctl' AND c.relname = 'maintenance_runs'";

const INSERT_RUN: &str = "\
INSERT INTO opsctl.maintenance_runs
  (job_started_at, job, schema_name, relation, table_name, action, reason,
   dead_tuples_before, dead_tuples_after, size_before_bytes, size_after_bytes,
   started_at, duration_ms, attempts, outcome, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Writes run records into `opsctl.maintenance_runs` when the table exists (migrations
/// applied); otherwise says once that runs are not recorded.
pub struct Recorder {
    pub enabled: bool,
    pub job_started_at: DateTime<Utc>,
    pub warnings: Vec<String>,
}

impl Recorder {
    pub async fn new(client: &Client) -> Result<Recorder, Error> {
        let found: Option<bool> = client
            .query_opt(RUNS_TABLE, &[])
            .await
            .map_err(Error::db_ctx("looking for opsctl.maintenance_runs"))?
            .map(|r| r.get(0));
        let mut warnings = Vec::new();
        let enabled = match found {
            None => {
                warnings.push(
                    "table opsctl.maintenance_runs does not exist: runs are not recorded \
                     (apply the migrations: opsctl migrate up)"
                        .to_string(),
                );
                false
            }
            Some(false) => {
                warnings.push(
                    "this role may not write to opsctl.maintenance_runs: runs are not \
                     recorded (GRANT USAGE ON SCHEMA opsctl, INSERT ON \
                     opsctl.maintenance_runs and USAGE ON its id sequence)"
                        .to_string(),
                );
                false
            }
            Some(true) => true,
        };
        Ok(Recorder {
            enabled,
            job_started_at: Utc::now(),
            warnings,
        })
    }

    /// Records one run; a failure to record is a warning, never the end of the job.
    pub async fn record(&mut self, client: &Client, r: &RunRecord<'_>) {
        if !self.enabled {
            return;
        }
        let ms = r.duration.as_millis() as i64;
        let attempts = r.attempts as i32;
        let outcome = r.outcome.as_str();
        let res = client
            .execute(
                INSERT_RUN,
                &[
                    &self.job_started_at,
                    &r.job,
                    &r.schema,
                    &r.relation,
                    &r.table_name,
                    &r.action,
                    &r.reason,
                    &r.dead_before,
                    &r.dead_after,
                    &r.size_before,
                    &r.size_after,
                    &r.started_at,
                    &ms,
                    &attempts,
                    &outcome,
                    &r.error,
                ],
            )
            .await;
        if let Err(e) = res {
            let msg = format!(
                "could not record the run of {} in opsctl.maintenance_runs: {}",
                r.relation,
                db::describe(&e)
            );
            tracing::warn!("{msg}");
            self.warnings.push(msg);
        }
    }
}

/// Takes the database's maintenance advisory lock (shared with backup, partition and
/// archive jobs), waiting at most `wait`. Refuses a standby:
/// VACUUM and REINDEX run on the primary only.
pub async fn lock(client: &Client, wait: Duration) -> Result<(), Error> {
    let standby: bool = client
        .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
        .await
        .map_err(Error::db)?
        .get(0);
    if standby {
        return Err(Error::Config(
            "this server is a standby (in recovery): VACUUM and REINDEX run on the primary; \
             point --database-url at the primary"
                .into(),
        ));
    }
    db::acquire_advisory_lock(
        client,
        db::locks::MAINTENANCE,
        wait,
        "maintenance job (backup, vacuum, reindex, partition or archive)",
    )
    .await
    .map(|_| ())
}

/// Releases the lock taken by [`lock`].
pub async fn unlock(client: &Client) -> Result<(), Error> {
    db::release_advisory_lock(client, db::locks::MAINTENANCE).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("2 hours").unwrap(),
            Duration::from_secs(7200)
        );
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        for bad in ["", "m", "10x", "ten minutes", "1h30", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("512kB").unwrap(), 512_000);
        assert_eq!(parse_size("1048576").unwrap(), 1_048_576);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 1_610_612_736);
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(
            name_candidates("My Table").unwrap(),
            vec![(None, "My Table".to_string())]
        );
        assert_eq!(
            name_candidates("public.orders").unwrap(),
            vec![
                (None, "public.orders".to_string()),
                (Some("public".into()), "orders".into())
            ]
        );
        assert_eq!(
            name_candidates("\"Sales\".\"My \"\"Big\"\" Table\"").unwrap(),
            vec![(Some("Sales".into()), "My \"Big\" Table".into())]
        );
        assert_eq!(
            name_candidates("Public.\"Mixed\"").unwrap(),
            vec![(Some("public".into()), "Mixed".into())]
        );
        assert!(name_candidates("\"open").is_err());
        assert!(name_candidates("a.\"b\".\"c\"").is_err());
        assert!(name_candidates("  ").is_err());
        assert_eq!(display_name("public", "My Table"), "public.\"My Table\"");
        assert_eq!(display_name("public", "orders_2024"), "public.orders_2024");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryPolicy {
            lock_timeout: Duration::from_secs(2),
            retries: 5,
            backoff: Duration::from_secs(1),
        };
        let within = |n: u32, base: u64| {
            let p = r.pause(n);
            assert!(
                p >= Duration::from_secs(base) && p <= Duration::from_millis(base * 1500),
                "pause({n}) = {p:?}, expected {base} s plus at most half again"
            );
            p
        };
        within(1, 1);
        within(2, 2);
        within(30, 60);
        // Jittered: sessions waiting on the same lock do not retry in lockstep.
        let pauses: std::collections::BTreeSet<Duration> = (0..50).map(|_| within(3, 4)).collect();
        assert!(pauses.len() > 1, "50 pauses were all {pauses:?}");
    }

    #[test]
    fn documented_defaults_are_the_built_in_ones() {
        let shipped = crate::policy::Policy::parse(
            include_str!("../../policies/opsctl.toml"),
            "policies/opsctl.toml",
        )
        .unwrap()
        .maintenance;
        let built_in = MaintenancePolicy::default();
        assert_eq!(
            serde_json::to_value(&shipped).unwrap(),
            serde_json::to_value(&built_in).unwrap()
        );
    }

    #[test]
    fn policy_defaults_validate() {
        let s = Settings::from_policy(&MaintenancePolicy::default()).unwrap();
        assert_eq!(s.reindex_min_size, 10 * 1024 * 1024);
        assert_eq!(s.retry.lock_timeout, Duration::from_secs(2));
        let p = MaintenancePolicy {
            vacuum_dead_ratio: 5.0,
            ..MaintenancePolicy::default()
        };
        let e = Settings::from_policy(&p).unwrap_err().to_string();
        assert!(e.contains("vacuum_dead_ratio"), "{e}");
        let p = MaintenancePolicy {
            lock_timeout: "0s".into(),
            ..MaintenancePolicy::default()
        };
        assert!(Settings::from_policy(&p).is_err());
    }
}
