//! `vacuum`: chooses tables by measured need (dead tuples, autovacuum behind, transaction
//! ID age incl. TOAST, changes since ANALYZE), worst first, and vacuums them one at a
//! time outside any transaction block: leaf partitions one by one, never a partitioned
//! parent (whose statistics are refreshed with ANALYZE instead).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::{Observer, Outcome, ProgressView, Recorder, Relation, RunRecord, Settings, Watcher};
use crate::db;
use crate::error::Error;

/// Candidate tables with their statistics. `$1` limits to these oids (NULL = all).
const TABLE_STATS: &str = "\
SELECT c.oid,
       n.nspname::text,
       c.relname::text,
       coalesce(s.n_live_tup, 0)::bigint,
       coalesce(s.n_dead_tup, 0)::bigint,
       coalesce(s.n_mod_since_analyze, 0)::bigint,
       c.reltuples::float8,
       age(c.relfrozenxid)::bigint,
       CASE WHEN t.oid IS NOT NULL THEN age(t.relfrozenxid)::bigint END,
       coalesce(c.reloptions, '{}'::text[]),
       pg_catalog.pg_total_relation_size(c.oid),
       greatest(s.last_vacuum, s.last_autovacuum),
       greatest(s.last_analyze, s.last_autoanalyze),
       rn.nspname::text,
       r.relname::text,
       pg_catalog.pg_get_userbyid(c.relowner)::text,
       coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), false)
         OR pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER')
         OR pg_catalog.pg_has_role(current_user,
              (SELECT datdba FROM pg_catalog.pg_database WHERE datname = current_database()),
              'MEMBER')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
  LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
  LEFT JOIN pg_catalog.pg_class r
         ON c.relispartition AND r.oid = pg_catalog.pg_partition_root(c.oid)
  LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
 WHERE c.relkind IN ('r', 'm')
   AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND ($1::oid[] IS NULL OR c.oid = ANY($1::oid[]))";

const AUTOVACUUM_SETTINGS: &str = "\
SELECT current_setting('autovacuum') = 'on' AND current_setting('track_counts') = 'on',
       current_setting('autovacuum_vacuum_threshold')::float8,
       current_setting('autovacuum_vacuum_scale_factor')::float8,
       current_setting('autovacuum_freeze_max_age')::bigint";

const LEAVES: &str = "\
SELECT relid::oid FROM pg_catalog.pg_partition_tree(($1::oid)::regclass) WHERE isleaf";

const DEAD_TUPLES: &str = "\
SELECT coalesce((SELECT n_dead_tup FROM pg_catalog.pg_stat_all_tables WHERE relid = $1), 0)::bigint";

/// One table's figures, as read from pg_class and pg_stat_all_tables.
#[derive(Debug, Clone, Serialize)]
pub struct TableStats {
    #[serde(skip)]
    pub oid: u32,
    pub schema: String,
    pub table: String,
    /// The partitioned table at the top of the tree this leaf partition belongs to.
    pub partition_of: Option<String>,
    pub live_tuples: i64,
    pub dead_tuples: i64,
    pub mods_since_analyze: i64,
    /// pg_class.reltuples (-1 when never vacuumed or analyzed).
    pub reltuples: f64,
    /// The older of age(relfrozenxid) of the table and of its TOAST table.
    pub xid_age: i64,
    pub toast_xid_age: Option<i64>,
    #[serde(skip)]
    pub reloptions: Vec<String>,
    pub total_bytes: i64,
    pub last_vacuum: Option<DateTime<Utc>>,
    pub last_analyze: Option<DateTime<Utc>>,
    pub owner: String,
    /// Whether this role may vacuum it (superuser, table owner or database owner).
    pub permitted: bool,
    #[serde(skip)]
    parent: Option<(String, String)>,
}

/// The server's autovacuum settings (per-table reloptions override them).
#[derive(Debug, Clone, Serialize)]
pub struct AutovacuumSettings {
    pub enabled: bool,
    pub threshold: f64,
    pub scale_factor: f64,
    pub freeze_max_age: i64,
}

/// Why a table was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// age(relfrozenxid) at or over the freeze threshold.
    XidAge,
    /// Dead tuples over the policy threshold.
    DeadTuples,
    /// Dead tuples over the table's own autovacuum threshold.
    AutovacuumBehind,
    /// Many rows changed since the last ANALYZE.
    StaleStatistics,
    /// `--freeze` asked for every table in scope.
    Requested,
}

/// A table that needs vacuuming, with the figures that say so.
#[derive(Debug, Clone, Serialize)]
pub struct Need {
    #[serde(flatten)]
    pub stats: TableStats,
    pub reasons: Vec<Reason>,
    /// The reasons with their figures, for people.
    pub reason_text: String,
    pub action: String,
    pub freeze: bool,
    pub dead_ratio: f64,
    /// The table's own autovacuum threshold (reloptions first, then server settings).
    pub autovacuum_threshold: f64,
    pub autovacuum_enabled: bool,
}

impl Need {
    pub fn display(&self) -> String {
        super::display_name(&self.stats.schema, &self.stats.table)
    }

    /// Worst first: wraparound danger by age, then dead tuples, then changes.
    fn severity(&self) -> (bool, i64, i64, i64) {
        let freeze_due = self.reasons.contains(&Reason::XidAge);
        (
            freeze_due,
            if freeze_due { self.stats.xid_age } else { 0 },
            self.stats.dead_tuples,
            self.stats.mods_since_analyze,
        )
    }
}

fn reloption<'a>(opts: &'a [String], key: &str) -> Option<&'a str> {
    opts.iter().find_map(|o| {
        let (k, v) = o.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// A count with thousands separators: 1,234,567.
pub use crate::text::count as fmt_n;

/// Decides whether a table needs vacuuming, and why.
pub fn assess(
    t: &TableStats,
    s: &Settings,
    av: &AutovacuumSettings,
    force_freeze: bool,
) -> Option<Need> {
    let live = t.live_tuples.max(0) as f64;
    let dead = t.dead_tuples.max(0);
    let rows = if t.reltuples >= 0.0 {
        t.reltuples
    } else {
        live
    };
    let threshold = reloption(&t.reloptions, "autovacuum_vacuum_threshold")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(av.threshold);
    let scale = reloption(&t.reloptions, "autovacuum_vacuum_scale_factor")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(av.scale_factor);
    let table_av_enabled = reloption(&t.reloptions, "autovacuum_enabled")
        .map(|v| !matches!(v, "false" | "off" | "0" | "no"))
        .unwrap_or(true);
    let av_threshold = threshold + scale * rows.max(0.0);
    let dead_ratio = if live > 0.0 {
        dead as f64 / live
    } else if dead > 0 {
        1.0
    } else {
        0.0
    };
    let mut reasons = Vec::new();
    let mut text = Vec::new();
    if t.xid_age >= s.vacuum_freeze_age as i64 {
        reasons.push(Reason::XidAge);
        let whose = match t.toast_xid_age {
            Some(a) if a >= t.xid_age => " (its TOAST table)",
            _ => "",
        };
        text.push(format!(
            "transaction ID age {}{whose} >= {}",
            fmt_n(t.xid_age),
            fmt_n(s.vacuum_freeze_age as i64)
        ));
    }
    let enough_dead = dead as u64 >= s.vacuum_min_dead_tuples && dead > 0;
    if enough_dead && dead_ratio >= s.vacuum_dead_ratio {
        reasons.push(Reason::DeadTuples);
        text.push(format!(
            "{} dead tuples ({:.1}% of {} live)",
            fmt_n(dead),
            dead_ratio * 100.0,
            fmt_n(t.live_tuples)
        ));
    }
    if enough_dead && dead as f64 > av_threshold {
        reasons.push(Reason::AutovacuumBehind);
        let off = if !av.enabled {
            ", autovacuum is off on the server"
        } else if !table_av_enabled {
            ", autovacuum_enabled=false on the table"
        } else {
            ""
        };
        text.push(format!(
            "autovacuum behind: {} dead > its threshold {}{off}",
            fmt_n(dead),
            fmt_n(av_threshold.round() as i64)
        ));
    }
    let mods = t.mods_since_analyze.max(0);
    let mods_ratio = if rows > 0.0 {
        mods as f64 / rows
    } else if mods > 0 {
        1.0
    } else {
        0.0
    };
    if mods as u64 >= s.analyze_min_changes && mods > 0 && mods_ratio >= s.analyze_change_ratio {
        reasons.push(Reason::StaleStatistics);
        text.push(format!(
            "{} rows changed since the last ANALYZE ({:.1}%)",
            fmt_n(mods),
            mods_ratio * 100.0
        ));
    }
    if reasons.is_empty() {
        if !force_freeze {
            return None;
        }
        reasons.push(Reason::Requested);
        text.push("requested (--freeze)".into());
    }
    let freeze = force_freeze || reasons.contains(&Reason::XidAge);
    Some(Need {
        stats: t.clone(),
        reason_text: text.join("; "),
        reasons,
        action: if freeze {
            "VACUUM (FREEZE, ANALYZE)"
        } else {
            "VACUUM (ANALYZE)"
        }
        .into(),
        freeze,
        dead_ratio,
        autovacuum_threshold: av_threshold,
        autovacuum_enabled: av.enabled && table_av_enabled,
    })
}

/// What the run will do.
#[derive(Debug, Clone, Serialize)]
pub struct VacuumPlan {
    /// Tables inspected (in scope).
    pub inspected: usize,
    /// Chosen tables, worst first.
    pub tables: Vec<Need>,
    /// With --table: the tables in scope that need nothing, with their figures.
    pub not_needed: Vec<TableStats>,
    pub autovacuum: AutovacuumSettings,
}

async fn read_stats(client: &Client, scope: Option<&Vec<u32>>) -> Result<Vec<TableStats>, Error> {
    let rows = client
        .query(TABLE_STATS, &[&scope])
        .await
        .map_err(Error::db_ctx("reading table statistics"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let toast: Option<i64> = r.get(8);
            let own: i64 = r.get(7);
            let parent = match (
                r.get::<_, Option<String>>(13),
                r.get::<_, Option<String>>(14),
            ) {
                (Some(s), Some(n)) => Some((s, n)),
                _ => None,
            };
            TableStats {
                oid: r.get(0),
                schema: r.get(1),
                table: r.get(2),
                partition_of: parent.as_ref().map(|(s, n)| super::display_name(s, n)),
                live_tuples: r.get(3),
                dead_tuples: r.get(4),
                mods_since_analyze: r.get(5),
                reltuples: r.get(6),
                xid_age: own.max(toast.unwrap_or(0)),
                toast_xid_age: toast,
                reloptions: r.get(9),
                total_bytes: r.get(10),
                last_vacuum: r.get(11),
                last_analyze: r.get(12),
                owner: r.get(15),
                permitted: r.get(16),
                parent,
            }
        })
        .collect())
}

/// The oids a `--table` covers: the table itself, or every leaf of a partitioned table.
pub async fn scope_of(client: &Client, table: &Relation) -> Result<Vec<u32>, Error> {
    if table.kind == "p" {
        let rows = client
            .query(LEAVES, &[&table.oid])
            .await
            .map_err(Error::db_ctx("listing partitions"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    } else {
        Ok(vec![table.oid])
    }
}

/// Reads the statistics and chooses the tables, worst first.
pub async fn plan(
    client: &Client,
    scope: Option<&Vec<u32>>,
    s: &Settings,
    force_freeze: bool,
) -> Result<VacuumPlan, Error> {
    let r = client
        .query_one(AUTOVACUUM_SETTINGS, &[])
        .await
        .map_err(Error::db_ctx("reading autovacuum settings"))?;
    let av = AutovacuumSettings {
        enabled: r.get(0),
        threshold: r.get(1),
        scale_factor: r.get(2),
        freeze_max_age: r.get(3),
    };
    let stats = read_stats(client, scope).await?;
    let inspected = stats.len();
    let mut tables = Vec::new();
    let mut not_needed = Vec::new();
    for t in stats {
        match assess(&t, s, &av, force_freeze) {
            Some(n) => tables.push(n),
            None if scope.is_some() => not_needed.push(t),
            None => {}
        }
    }
    tables.sort_by(|a, b| {
        b.severity()
            .cmp(&a.severity())
            .then_with(|| a.display().cmp(&b.display()))
    });
    Ok(VacuumPlan {
        inspected,
        tables,
        not_needed,
        autovacuum: av,
    })
}

/// The result of one table (or one partitioned parent's ANALYZE).
#[derive(Debug, Clone, Serialize)]
pub struct TableResult {
    pub schema: String,
    pub table: String,
    pub action: String,
    pub reason: String,
    pub dead_tuples_before: Option<i64>,
    pub dead_tuples_after: Option<i64>,
    pub duration_ms: u64,
    pub attempts: u32,
    pub outcome: Outcome,
    pub error: Option<String>,
}

impl TableResult {
    pub fn display(&self) -> String {
        super::display_name(&self.schema, &self.table)
    }
}

/// A chosen table not started because the --max-duration window closed.
#[derive(Debug, Clone, Serialize)]
pub struct NotStarted {
    pub schema: String,
    pub table: String,
    pub action: String,
    pub reason: String,
}

/// What the run did.
#[derive(Debug, Clone, Serialize)]
pub struct VacuumOutcome {
    pub results: Vec<TableResult>,
    pub not_started: Vec<NotStarted>,
    pub elapsed_ms: u64,
    pub recorded: bool,
    pub warnings: Vec<String>,
}

/// Runs the plan: one statement at a time, each alone, lock timeouts retried with backoff;
/// stops starting new tables once `max_duration` has passed.
pub async fn execute(
    client: &Client,
    watcher: Option<&Watcher<'_>>,
    plan: &VacuumPlan,
    s: &Settings,
    max_duration: Option<Duration>,
    observer: &mut dyn Observer<TableResult>,
) -> Result<VacuumOutcome, Error> {
    let start = Instant::now();
    let mut recorder = Recorder::new(client).await?;
    let mut results = Vec::new();
    let mut not_started = Vec::new();
    // Partitioned parents whose leaves had stale statistics: ANALYZE them at the end.
    let mut parents: BTreeMap<(String, String), ()> = BTreeMap::new();
    let window_closed = |start: &Instant| max_duration.is_some_and(|m| start.elapsed() >= m);
    for need in &plan.tables {
        if window_closed(&start) {
            not_started.push(NotStarted {
                schema: need.stats.schema.clone(),
                table: need.stats.table.clone(),
                action: need.action.clone(),
                reason: need.reason_text.clone(),
            });
            continue;
        }
        if !need.stats.permitted {
            let r = not_permitted(client, need, &mut recorder, observer).await;
            results.push(r);
            continue;
        }
        let quoted = db::quote_qualified(&need.stats.schema, &need.stats.table);
        let sql = format!("{} {quoted}", need.action);
        let r = run_one(
            client,
            watcher,
            s,
            &need.stats,
            &need.action,
            &sql,
            &need.reason_text,
            &mut recorder,
            observer,
        )
        .await?;
        if r.outcome == Outcome::Ok && need.reasons.contains(&Reason::StaleStatistics) {
            if let Some(p) = &need.stats.parent {
                parents.insert(p.clone(), ());
            }
        }
        results.push(r);
    }
    for (schema, table) in parents.keys() {
        let reason = "leaf partitions had stale statistics; autovacuum never analyzes a \
                      partitioned parent";
        if window_closed(&start) {
            not_started.push(NotStarted {
                schema: schema.clone(),
                table: table.clone(),
                action: "ANALYZE".into(),
                reason: reason.into(),
            });
            continue;
        }
        let stats = TableStats {
            oid: 0,
            schema: schema.clone(),
            table: table.clone(),
            partition_of: None,
            live_tuples: 0,
            dead_tuples: 0,
            mods_since_analyze: 0,
            reltuples: 0.0,
            xid_age: 0,
            toast_xid_age: None,
            reloptions: vec![],
            owner: String::new(),
            permitted: true,
            total_bytes: 0,
            last_vacuum: None,
            last_analyze: None,
            parent: None,
        };
        let sql = format!("ANALYZE {}", db::quote_qualified(schema, table));
        let r = run_one(
            client,
            watcher,
            s,
            &stats,
            "ANALYZE",
            &sql,
            reason,
            &mut recorder,
            observer,
        )
        .await?;
        results.push(r);
    }
    Ok(VacuumOutcome {
        results,
        not_started,
        elapsed_ms: start.elapsed().as_millis() as u64,
        recorded: recorder.enabled,
        warnings: recorder.warnings,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    client: &Client,
    watcher: Option<&Watcher<'_>>,
    s: &Settings,
    t: &TableStats,
    action: &str,
    sql: &str,
    reason: &str,
    recorder: &mut Recorder,
    observer: &mut dyn Observer<TableResult>,
) -> Result<TableResult, Error> {
    let is_vacuum = t.oid != 0;
    let dead_before = if is_vacuum {
        Some(dead(client, t.oid).await?)
    } else {
        None
    };
    let label = format!("{action} {}", super::display_name(&t.schema, &t.table));
    observer.started(&label);
    let started_at = Utc::now();
    let t0 = Instant::now();
    let (result, attempts) = super::with_retry(
        client,
        watcher,
        ProgressView::Vacuum,
        s,
        &label,
        sql,
        observer,
    )
    .await;
    let duration = t0.elapsed();
    let (outcome, error) = match &result {
        Ok(()) => (Outcome::Ok, None),
        Err(e) if db::is_lock_conflict(e) => (
            Outcome::Skipped,
            Some(format!(
                "lock not available after {attempts} attempts ({}); another session holds a \
                 conflicting lock (see pg_locks / pg_stat_activity); it will be tried again \
                 on the next run",
                db::describe(e).replace("\n  ", "; ")
            )),
        ),
        Err(e) if db::sqlstate(e) == Some("42P01") => (
            Outcome::Skipped,
            Some("the table was dropped since the plan was made".to_string()),
        ),
        Err(e) => (Outcome::Failed, Some(db::describe(e).replace("\n  ", "; "))),
    };
    let dead_after = if is_vacuum {
        dead(client, t.oid).await.ok()
    } else {
        None
    };
    recorder
        .record(
            client,
            &RunRecord {
                job: "vacuum",
                schema: &t.schema,
                relation: &t.table,
                table_name: None,
                action,
                reason,
                dead_before,
                dead_after,
                size_before: None,
                size_after: None,
                started_at,
                duration,
                attempts,
                outcome,
                error: error.as_deref(),
            },
        )
        .await;
    let r = TableResult {
        schema: t.schema.clone(),
        table: t.table.clone(),
        action: action.to_string(),
        reason: reason.to_string(),
        dead_tuples_before: dead_before,
        dead_tuples_after: dead_after,
        duration_ms: duration.as_millis() as u64,
        attempts,
        outcome,
        error,
    };
    observer.finished(&r);
    Ok(r)
}

/// A chosen table this role may not vacuum: skipped, recorded, and said what to do.
async fn not_permitted(
    client: &Client,
    need: &Need,
    recorder: &mut Recorder,
    observer: &mut dyn Observer<TableResult>,
) -> TableResult {
    let error = format!(
        "permission denied: only its owner ({}), the database owner or a superuser may vacuum \
         {}; run opsctl vacuum as one of them",
        need.stats.owner,
        need.display()
    );
    recorder
        .record(
            client,
            &RunRecord {
                job: "vacuum",
                schema: &need.stats.schema,
                relation: &need.stats.table,
                table_name: None,
                action: &need.action,
                reason: &need.reason_text,
                dead_before: Some(need.stats.dead_tuples),
                dead_after: None,
                size_before: None,
                size_after: None,
                started_at: Utc::now(),
                duration: Duration::ZERO,
                attempts: 0,
                outcome: Outcome::Skipped,
                error: Some(&error),
            },
        )
        .await;
    let r = TableResult {
        schema: need.stats.schema.clone(),
        table: need.stats.table.clone(),
        action: need.action.clone(),
        reason: need.reason_text.clone(),
        dead_tuples_before: Some(need.stats.dead_tuples),
        dead_tuples_after: None,
        duration_ms: 0,
        attempts: 0,
        outcome: Outcome::Skipped,
        error: Some(error),
    };
    observer.finished(&r);
    r
}

async fn dead(client: &Client, oid: u32) -> Result<i64, Error> {
    client
        .query_one(DEAD_TUPLES, &[&oid])
        .await
        .map(|r| r.get::<_, i64>(0))
        .map_err(Error::db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::MaintenancePolicy;

    fn settings() -> Settings {
        Settings::from_policy(&MaintenancePolicy::default()).unwrap()
    }

    fn av() -> AutovacuumSettings {
        AutovacuumSettings {
            enabled: true,
            threshold: 50.0,
            scale_factor: 0.2,
            freeze_max_age: 200_000_000,
        }
    }

    fn table(live: i64, dead: i64, mods: i64, age: i64) -> TableStats {
        TableStats {
            oid: 1,
            schema: "public".into(),
            table: "t".into(),
            partition_of: None,
            live_tuples: live,
            dead_tuples: dead,
            mods_since_analyze: mods,
            reltuples: live as f64,
            xid_age: age,
            toast_xid_age: None,
            reloptions: vec![],
            owner: String::new(),
            permitted: true,
            total_bytes: 0,
            last_vacuum: None,
            last_analyze: None,
            parent: None,
        }
    }

    #[test]
    fn healthy_table_is_not_chosen() {
        assert!(assess(&table(100_000, 500, 500, 1000), &settings(), &av(), false).is_none());
        // Many dead tuples but a small share of a big table.
        assert!(assess(
            &table(10_000_000, 100_000, 0, 1000),
            &settings(),
            &av(),
            false
        )
        .is_none());
    }

    #[test]
    fn dead_tuples_choose() {
        let n = assess(&table(50_000, 30_000, 0, 1000), &settings(), &av(), false).unwrap();
        assert!(n.reasons.contains(&Reason::DeadTuples));
        assert!(n.reasons.contains(&Reason::AutovacuumBehind));
        assert_eq!(n.action, "VACUUM (ANALYZE)");
        assert!(
            n.reason_text
                .contains("30,000 dead tuples (60.0% of 50,000 live)"),
            "{}",
            n.reason_text
        );
    }

    #[test]
    fn per_table_reloptions_count() {
        // 1% scale factor set on the table: 100k dead of 10M is behind for it.
        let mut t = table(10_000_000, 150_000, 0, 1000);
        t.reloptions = vec!["autovacuum_vacuum_scale_factor=0.01".into()];
        let n = assess(&t, &settings(), &av(), false).unwrap();
        assert_eq!(n.reasons, vec![Reason::AutovacuumBehind]);
        assert!((n.autovacuum_threshold - 100_050.0).abs() < 1.0);
        t.reloptions.push("autovacuum_enabled=false".into());
        let n = assess(&t, &settings(), &av(), false).unwrap();
        assert!(!n.autovacuum_enabled);
        assert!(n.reason_text.contains("autovacuum_enabled=false"));
    }

    #[test]
    fn xid_age_freezes_incl_toast() {
        let mut t = table(1000, 0, 0, 160_000_000);
        t.toast_xid_age = Some(160_000_000);
        let n = assess(&t, &settings(), &av(), false).unwrap();
        assert!(n.freeze);
        assert_eq!(n.action, "VACUUM (FREEZE, ANALYZE)");
        assert!(n.reason_text.contains("TOAST"), "{}", n.reason_text);
    }

    #[test]
    fn stale_statistics_and_forced_freeze() {
        let n = assess(&table(10_000, 0, 5_000, 10), &settings(), &av(), false).unwrap();
        assert_eq!(n.reasons, vec![Reason::StaleStatistics]);
        let n = assess(&table(10_000, 0, 0, 10), &settings(), &av(), true).unwrap();
        assert_eq!(n.reasons, vec![Reason::Requested]);
        assert!(n.freeze);
    }

    #[test]
    fn worst_first() {
        let s = settings();
        let mut v = [
            assess(&table(10_000, 2_000, 0, 10), &s, &av(), false).unwrap(),
            assess(&table(10_000, 8_000, 0, 10), &s, &av(), false).unwrap(),
            assess(&table(10_000, 0, 0, 900_000_000), &s, &av(), false).unwrap(),
        ];
        v.sort_by_key(|n| std::cmp::Reverse(n.severity()));
        assert!(v[0].freeze);
        assert_eq!(v[1].stats.dead_tuples, 8_000);
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_n(1234567), "1,234,567");
        assert_eq!(fmt_n(12), "12");
        assert_eq!(fmt_n(-1000), "-1,000");
    }
}
