//! `reindex`: finds bloated btree indexes (estimated from pg_class + pg_stats, confirmed
//! with pgstatindex when pgstattuple is installed) and invalid ones, and rebuilds them with
//! `REINDEX INDEX CONCURRENTLY`, one (leaf) index at a time. Leftovers of failed
//! concurrent rebuilds (`*_ccnew*`, `*_ccold*`) are dropped concurrently; an index that
//! still cannot be rebuilt is reported by name with what a person should do.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use tokio_postgres::Client;

use super::{
    display_name, run_watched, Observer, Outcome, ProgressView, Recorder, Relation, RunRecord,
    Settings, Watcher,
};
use crate::db;
use crate::error::Error;
use crate::units::human_bytes;

/// Every (leaf) index in user schemas with what the bloat estimate needs. `$1` limits to
/// these index oids (NULL = all). Width and null fraction come from pg_stats: of the table
/// column for plain key columns, of the index itself for expressions.
const INDEXES: &str = "\
SELECT i.indexrelid,
       n.nspname::text,
       ic.relname::text,
       t.relname::text,
       am.amname::text,
       i.indisvalid,
       i.indisunique,
       pg_catalog.pg_relation_size(i.indexrelid),
       ic.relpages::bigint,
       ic.reltuples::float8,
       coalesce(substring(array_to_string(ic.reloptions, ' ') from 'fillfactor=([0-9]+)')::int, 90),
       st.ncols,
       st.nstats,
       st.width::float8,
       st.nullable,
       st.has_name,
       pg_catalog.pg_get_indexdef(i.indexrelid),
       i.indrelid,
       (SELECT pg_catalog.string_agg(p.pid::text, ', ')
          FROM pg_catalog.pg_stat_progress_create_index p WHERE p.relid = i.indrelid),
       pg_catalog.pg_get_userbyid(t.relowner)::text,
       coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), false)
         OR pg_catalog.pg_has_role(current_user, t.relowner, 'MEMBER')
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
  JOIN pg_catalog.pg_am am ON am.oid = ic.relam
  CROSS JOIN LATERAL (
        SELECT count(*)::bigint AS ncols,
               count(s.attname)::bigint AS nstats,
               sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 1024)) AS width,
               coalesce(bool_or(coalesce(s.null_frac, 0) > 0), false) AS nullable,
               coalesce(bool_or(a.atttypid = 'pg_catalog.name'::regtype), false) AS has_name
          FROM pg_catalog.pg_attribute a
          LEFT JOIN pg_catalog.pg_attribute ta
                 ON i.indkey[a.attnum - 1] <> 0
                AND ta.attrelid = i.indrelid AND ta.attnum = i.indkey[a.attnum - 1]
          LEFT JOIN pg_catalog.pg_stats s
                 ON s.schemaname = n.nspname AND NOT s.inherited
                AND ((ta.attname IS NOT NULL AND s.tablename = t.relname AND s.attname = ta.attname)
                  OR (ta.attname IS NULL AND s.tablename = ic.relname AND s.attname = a.attname))
         WHERE a.attrelid = i.indexrelid AND a.attnum > 0
       ) st
 WHERE ic.relkind = 'i' AND t.relkind IN ('r', 'm')
   AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND ($1::oid[] IS NULL OR i.indexrelid = ANY($1::oid[]))
 ORDER BY n.nspname, ic.relname";

const INDEXES_OF_TABLES: &str = "\
SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = ANY($1::oid[])";

const LEAF_INDEXES: &str = "\
SELECT relid::oid FROM pg_catalog.pg_partition_tree(($1::oid)::regclass) WHERE isleaf";

const LEAF_TABLES: &str = "\
SELECT relid::oid FROM pg_catalog.pg_partition_tree(($1::oid)::regclass) WHERE isleaf";

/// Partitioned indexes left invalid: some partition has no attached index.
const INVALID_PARTITIONED: &str = "\
SELECT n.nspname::text, ic.relname::text, t.relname::text
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
 WHERE ic.relkind = 'I' AND NOT i.indisvalid
   AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
 ORDER BY 1, 2";

const PGSTATTUPLE_SCHEMA: &str = "\
SELECT n.nspname::text FROM pg_catalog.pg_extension e
  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgstattuple'";

const INVALID_ON_TABLE: &str = "\
SELECT ic.relname::text FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = $1 AND NOT i.indisvalid";

const SIZE_BY_NAME: &str = "\
SELECT pg_catalog.pg_relation_size(c.oid), i.indisvalid
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
 WHERE n.nspname = $1 AND c.relname = $2";

/// One index as read from the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct IndexInfo {
    #[serde(skip)]
    pub oid: u32,
    pub schema: String,
    pub index: String,
    pub table: String,
    pub method: String,
    pub valid: bool,
    pub unique: bool,
    pub size_bytes: i64,
    #[serde(skip)]
    relpages: i64,
    #[serde(skip)]
    reltuples: f64,
    #[serde(skip)]
    fillfactor: i32,
    #[serde(skip)]
    ncols: i64,
    #[serde(skip)]
    nstats: i64,
    #[serde(skip)]
    width: Option<f64>,
    #[serde(skip)]
    nullable: bool,
    #[serde(skip)]
    has_name: bool,
    pub definition: String,
    #[serde(skip)]
    table_oid: u32,
    /// pids of CREATE INDEX / REINDEX running on the table right now.
    #[serde(skip)]
    building: Option<String>,
    pub owner: String,
    /// Whether this role may rebuild or drop it (superuser or table owner).
    pub permitted: bool,
}

impl IndexInfo {
    pub fn display(&self) -> String {
        display_name(&self.schema, &self.index)
    }
}

/// The btree bloat estimate (the ioguix / pgexperts method): the pages the live tuples
/// would fill at the index's fillfactor, against the pages it has. `None` when the
/// statistics are missing (never analyzed) or unreliable (columns of type `name`).
pub fn estimate_bloat(
    relpages: i64,
    reltuples: f64,
    fillfactor: i32,
    width: f64,
    nullable: bool,
) -> Option<f64> {
    const BLOCK: f64 = 8192.0;
    const PAGE_HEADER: f64 = 24.0;
    const BTREE_OPAQUE: f64 = 16.0;
    const MAXALIGN: f64 = 8.0;
    const ITEM_ID: f64 = 4.0;
    if relpages <= 1 || reltuples < 0.0 {
        return None;
    }
    let align = |x: f64| (x / MAXALIGN).ceil() * MAXALIGN;
    // IndexTupleData (8 bytes) plus the null bitmap when a column can be null, aligned.
    let header = align(if nullable { 8.0 + 4.0 } else { 8.0 });
    let tuple = header + align(width);
    let usable = (BLOCK - PAGE_HEADER - BTREE_OPAQUE) * f64::from(fillfactor) / 100.0;
    let per_page = (usable / (ITEM_ID + tuple)).floor().max(1.0);
    // One meta page plus the leaves.
    let expected = 1.0 + (reltuples / per_page).ceil();
    let pages = relpages as f64;
    Some(if pages > expected {
        (pages - expected) / pages
    } else {
        0.0
    })
}

/// Why an index is in the plan.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IndexReason {
    /// Left by a leftover `*_ccold*` of a concurrent reindex: dropped.
    LeftoverCcold,
    /// Left by a failed concurrent reindex of `original`: dropped, then `original` rebuilt.
    LeftoverCcnew { original: Option<String> },
    /// Invalid (a failed or cancelled CREATE INDEX CONCURRENTLY): rebuilt.
    Invalid,
    /// Bloated: rebuilt.
    Bloat {
        estimate: f64,
        /// 1 - avg_leaf_density / fillfactor from pgstatindex, when available.
        confirmed: Option<f64>,
    },
}

/// One planned action.
#[derive(Debug, Clone, Serialize)]
pub struct IndexNeed {
    #[serde(flatten)]
    pub index: IndexInfo,
    pub reason: IndexReason,
    pub reason_text: String,
    pub action: String,
}

/// An index in scope that is left alone, and why (with --table/--index, or unknowable).
#[derive(Debug, Clone, Serialize)]
pub struct IndexSkip {
    pub schema: String,
    pub index: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReindexPlan {
    pub inspected: usize,
    /// Whether pgstatindex confirmed the estimates.
    pub pgstattuple: bool,
    pub indexes: Vec<IndexNeed>,
    pub not_needed: Vec<IndexSkip>,
}

/// Suffix of a concurrent reindex leftover: `_ccnew`, `_ccnew1`, ... / `_ccold`, ...
fn leftover_kind(name: &str) -> Option<(&'static str, &str)> {
    for tag in ["_ccnew", "_ccold"] {
        if let Some(pos) = name.rfind(tag) {
            let rest = &name[pos + tag.len()..];
            if rest.chars().all(|c| c.is_ascii_digit()) {
                return Some((tag, &name[..pos]));
            }
        }
    }
    None
}

/// The index oids a `--table` or `--index` covers: leaf indexes only (per partition for
/// partitioned tables and indexes).
pub async fn scope_of(client: &Client, rel: &Relation) -> Result<Vec<u32>, Error> {
    let ctx = Error::db_ctx("listing indexes");
    match rel.kind.as_str() {
        "i" => Ok(vec![rel.oid]),
        "I" => Ok(client
            .query(LEAF_INDEXES, &[&rel.oid])
            .await
            .map_err(ctx)?
            .iter()
            .map(|r| r.get(0))
            .collect()),
        _ => {
            let tables: Vec<u32> = if rel.kind == "p" {
                client
                    .query(LEAF_TABLES, &[&rel.oid])
                    .await
                    .map_err(Error::db_ctx("listing partitions"))?
                    .iter()
                    .map(|r| r.get(0))
                    .collect()
            } else {
                vec![rel.oid]
            };
            Ok(client
                .query(INDEXES_OF_TABLES, &[&tables])
                .await
                .map_err(ctx)?
                .iter()
                .map(|r| r.get(0))
                .collect())
        }
    }
}

async fn read_indexes(client: &Client, scope: Option<&Vec<u32>>) -> Result<Vec<IndexInfo>, Error> {
    let rows = client
        .query(INDEXES, &[&scope])
        .await
        .map_err(Error::db_ctx("reading index statistics"))?;
    Ok(rows
        .iter()
        .map(|r| IndexInfo {
            oid: r.get(0),
            schema: r.get(1),
            index: r.get(2),
            table: r.get(3),
            method: r.get(4),
            valid: r.get(5),
            unique: r.get(6),
            size_bytes: r.get(7),
            relpages: r.get(8),
            reltuples: r.get(9),
            fillfactor: r.get(10),
            ncols: r.get(11),
            nstats: r.get(12),
            width: r.get(13),
            nullable: r.get(14),
            has_name: r.get(15),
            definition: r.get(16),
            table_oid: r.get(17),
            building: r.get(18),
            owner: r.get(19),
            permitted: r.get(20),
        })
        .collect())
}

/// pgstatindex's bloat: 1 - avg_leaf_density / fillfactor. None when it cannot tell.
async fn confirm(client: &Client, ext_schema: &str, ix: &IndexInfo) -> Result<Option<f64>, String> {
    let sql = format!(
        "SELECT avg_leaf_density FROM {}.pgstatindex(($1::oid)::regclass)",
        db::quote_ident(ext_schema)
    );
    let row = client
        .query_one(&sql, &[&ix.oid])
        .await
        .map_err(|e| db::describe(&e).replace("\n  ", "; "))?;
    let density: f64 = row.get(0);
    if !density.is_finite() {
        return Ok(None);
    }
    Ok(Some((1.0 - density / f64::from(ix.fillfactor)).max(0.0)))
}

/// Reads the catalog and chooses the indexes: leftovers first, then invalid ones, then
/// bloated ones by wasted bytes (worst first).
pub async fn plan(
    client: &Client,
    scope: Option<&Vec<u32>>,
    s: &Settings,
) -> Result<ReindexPlan, Error> {
    let all = read_indexes(client, scope).await?;
    let ext: Option<String> = client
        .query_opt(PGSTATTUPLE_SCHEMA, &[])
        .await
        .map_err(Error::db)?
        .map(|r| r.get(0));
    let names: BTreeSet<(String, String)> = all
        .iter()
        .map(|i| (i.schema.clone(), i.index.clone()))
        .collect();
    let mut ccold = Vec::new();
    let mut ccnew = Vec::new();
    let mut invalid = Vec::new();
    let mut bloated: Vec<(f64, IndexNeed)> = Vec::new();
    let mut not_needed = Vec::new();
    let mut rebuilt_by_ccnew: BTreeSet<(String, String)> = BTreeSet::new();
    for ix in &all {
        if !ix.valid {
            if let Some(pids) = &ix.building {
                not_needed.push(IndexSkip {
                    schema: ix.schema.clone(),
                    index: ix.index.clone(),
                    note: format!(
                        "invalid, but an index build is running on {} right now (pid {pids}); \
                         left alone",
                        ix.table
                    ),
                });
                continue;
            }
            match leftover_kind(&ix.index) {
                Some(("_ccold", _)) => ccold.push(IndexNeed {
                    index: ix.clone(),
                    reason: IndexReason::LeftoverCcold,
                    reason_text: "invalid leftover of a concurrent reindex (_ccold): the old \
                                  copy that was not dropped"
                        .into(),
                    action: "DROP INDEX CONCURRENTLY".into(),
                }),
                Some((_, base)) => {
                    let original = names
                        .contains(&(ix.schema.clone(), base.to_string()))
                        .then(|| base.to_string());
                    if let Some(o) = &original {
                        rebuilt_by_ccnew.insert((ix.schema.clone(), o.clone()));
                    }
                    ccnew.push(IndexNeed {
                        index: ix.clone(),
                        reason: IndexReason::LeftoverCcnew {
                            original: original.clone(),
                        },
                        reason_text: match &original {
                            Some(o) => format!(
                                "invalid leftover of a failed concurrent reindex of {}: \
                                 dropped, then the rebuild retried",
                                display_name(&ix.schema, o)
                            ),
                            None => {
                                "invalid leftover of a failed concurrent reindex (_ccnew)".into()
                            }
                        },
                        action: match &original {
                            Some(_) => "DROP INDEX CONCURRENTLY + REINDEX INDEX CONCURRENTLY",
                            None => "DROP INDEX CONCURRENTLY",
                        }
                        .into(),
                    });
                }
                None => invalid.push(IndexNeed {
                    index: ix.clone(),
                    reason: IndexReason::Invalid,
                    reason_text: "invalid (left by a failed or cancelled CREATE INDEX \
                                  CONCURRENTLY or REINDEX); not used by queries but still \
                                  maintained on every write"
                        .into(),
                    action: "REINDEX INDEX CONCURRENTLY".into(),
                }),
            }
            continue;
        }
        if ix.method != "btree" {
            if scope.is_some() {
                not_needed.push(IndexSkip {
                    schema: ix.schema.clone(),
                    index: ix.index.clone(),
                    note: format!("{} index: no bloat estimate (btree only)", ix.method),
                });
            }
            continue;
        }
        if ix.relpages <= 1 {
            // Only the meta page: an empty index has nothing to lose.
            continue;
        }
        if (ix.size_bytes as u64) < s.reindex_min_size {
            if scope.is_some() {
                not_needed.push(IndexSkip {
                    schema: ix.schema.clone(),
                    index: ix.index.clone(),
                    note: format!(
                        "{} is below the size threshold {}",
                        human_bytes(ix.size_bytes),
                        human_bytes(s.reindex_min_size as i64)
                    ),
                });
            }
            continue;
        }
        let estimate = match (ix.width, ix.has_name, ix.nstats == ix.ncols) {
            (Some(w), false, true) => {
                estimate_bloat(ix.relpages, ix.reltuples, ix.fillfactor, w, ix.nullable)
            }
            _ => None,
        };
        let Some(estimate) = estimate else {
            not_needed.push(IndexSkip {
                schema: ix.schema.clone(),
                index: ix.index.clone(),
                note: format!(
                    "no bloat estimate: statistics of {} are missing or not visible to this \
                     role (ANALYZE it; a role needs read access to the table for pg_stats)",
                    ix.table
                ),
            });
            continue;
        };
        if estimate < s.reindex_bloat_ratio {
            if scope.is_some() {
                not_needed.push(IndexSkip {
                    schema: ix.schema.clone(),
                    index: ix.index.clone(),
                    note: format!(
                        "estimated bloat {:.0}% is below {:.0}%",
                        estimate * 100.0,
                        s.reindex_bloat_ratio * 100.0
                    ),
                });
            }
            continue;
        }
        let mut confirmed = None;
        let mut note = String::new();
        if let Some(ext) = &ext {
            match confirm(client, ext, ix).await {
                Ok(Some(c)) => confirmed = Some(c),
                Ok(None) => {}
                Err(e) => note = format!(" (pgstatindex unavailable: {e})"),
            }
        }
        if let Some(c) = confirmed {
            if c < s.reindex_bloat_ratio {
                not_needed.push(IndexSkip {
                    schema: ix.schema.clone(),
                    index: ix.index.clone(),
                    note: format!(
                        "estimated bloat {:.0}% but pgstatindex measures {:.0}% (below {:.0}%)",
                        estimate * 100.0,
                        c * 100.0,
                        s.reindex_bloat_ratio * 100.0
                    ),
                });
                continue;
            }
        }
        let ratio = confirmed.unwrap_or(estimate);
        let wasted = ratio * ix.size_bytes as f64;
        let text = match confirmed {
            Some(c) => format!(
                "bloat {:.0}% of {} (estimate {:.0}%, pgstatindex {:.0}%), about {} wasted",
                c * 100.0,
                human_bytes(ix.size_bytes),
                estimate * 100.0,
                c * 100.0,
                human_bytes(wasted as i64)
            ),
            None => format!(
                "estimated bloat {:.0}% of {}, about {} wasted{note}",
                estimate * 100.0,
                human_bytes(ix.size_bytes),
                human_bytes(wasted as i64)
            ),
        };
        bloated.push((
            wasted,
            IndexNeed {
                index: ix.clone(),
                reason: IndexReason::Bloat {
                    estimate,
                    confirmed,
                },
                reason_text: text,
                action: "REINDEX INDEX CONCURRENTLY".into(),
            },
        ));
    }
    if scope.is_none() {
        let rows = client
            .query(INVALID_PARTITIONED, &[])
            .await
            .map_err(Error::db_ctx("looking for invalid partitioned indexes"))?;
        for r in rows {
            let (schema, index, table): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            not_needed.push(IndexSkip {
                note: format!(
                    "invalid partitioned index on {}: a partition has no index attached to it; \
                     a rebuild cannot fix that. Create the missing index on that partition \
                     (CREATE INDEX CONCURRENTLY), then ALTER INDEX {} ATTACH PARTITION <it>",
                    display_name(&schema, &table),
                    display_name(&schema, &index)
                ),
                schema,
                index,
            });
        }
    }
    bloated.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut indexes = ccold;
    indexes.extend(ccnew);
    indexes.extend(
        invalid.into_iter().filter(|n| {
            !rebuilt_by_ccnew.contains(&(n.index.schema.clone(), n.index.index.clone()))
        }),
    );
    indexes.extend(
        bloated.into_iter().map(|(_, n)| n).filter(|n| {
            !rebuilt_by_ccnew.contains(&(n.index.schema.clone(), n.index.index.clone()))
        }),
    );
    Ok(ReindexPlan {
        inspected: all.len(),
        pgstattuple: ext.is_some(),
        indexes,
        not_needed,
    })
}

/// The result of one planned action.
#[derive(Debug, Clone, Serialize)]
pub struct IndexResult {
    pub schema: String,
    pub index: String,
    pub table: String,
    pub action: String,
    pub reason: String,
    pub size_before: i64,
    pub size_after: Option<i64>,
    pub duration_ms: u64,
    pub attempts: u32,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// What a person should do when it failed.
    pub advice: Option<String>,
    /// Leftovers of our own failed attempts that were dropped.
    pub dropped_leftovers: Vec<String>,
}

impl IndexResult {
    pub fn display(&self) -> String {
        display_name(&self.schema, &self.index)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReindexOutcome {
    pub results: Vec<IndexResult>,
    pub elapsed_ms: u64,
    pub recorded: bool,
    pub warnings: Vec<String>,
}

/// Runs the plan, one index at a time.
pub async fn execute(
    client: &Client,
    watcher: Option<&Watcher<'_>>,
    plan: &ReindexPlan,
    s: &Settings,
    observer: &mut dyn Observer<IndexResult>,
) -> Result<ReindexOutcome, Error> {
    let start = Instant::now();
    let mut recorder = Recorder::new(client).await?;
    let mut results = Vec::new();
    for need in &plan.indexes {
        let ix = &need.index;
        let started_at = Utc::now();
        let t0 = Instant::now();
        let mut r = IndexResult {
            schema: ix.schema.clone(),
            index: ix.index.clone(),
            table: ix.table.clone(),
            action: need.action.clone(),
            reason: need.reason_text.clone(),
            size_before: ix.size_bytes,
            size_after: None,
            duration_ms: 0,
            attempts: 0,
            outcome: Outcome::Ok,
            error: None,
            advice: None,
            dropped_leftovers: vec![],
        };
        if !ix.permitted {
            r.outcome = Outcome::Skipped;
            r.error = Some(format!(
                "permission denied: only the owner of {} ({}) or a superuser may rebuild or \
                 drop its indexes",
                display_name(&ix.schema, &ix.table),
                ix.owner
            ));
            r.advice = Some(format!("run opsctl reindex as {} or a superuser", ix.owner));
        }
        let rebuild_target = match &need.reason {
            _ if !ix.permitted => None,
            IndexReason::LeftoverCcold | IndexReason::LeftoverCcnew { .. } => {
                let label = format!("DROP INDEX CONCURRENTLY {}", ix.display());
                observer.started(&label);
                let sql = format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    db::quote_qualified(&ix.schema, &ix.index)
                );
                match super::with_retry(
                    client,
                    watcher,
                    ProgressView::CreateIndex,
                    s,
                    &label,
                    &sql,
                    observer,
                )
                .await
                {
                    (Ok(()), n) => {
                        r.attempts += n;
                        r.size_after = Some(0);
                    }
                    (Err(e), n) => {
                        r.attempts += n;
                        fail(&mut r, ix, &e, true);
                    }
                }
                match &need.reason {
                    IndexReason::LeftoverCcnew { original: Some(o) }
                        if r.outcome == Outcome::Ok =>
                    {
                        Some(o.clone())
                    }
                    _ => None,
                }
            }
            IndexReason::Invalid | IndexReason::Bloat { .. } => Some(ix.index.clone()),
        };
        if let Some(name) = rebuild_target {
            if name != ix.index {
                // The original of a _ccnew leftover: report on it from here on.
                r.index = name.clone();
                r.size_before = size_of(client, &ix.schema, &name).await.unwrap_or(0);
            }
            rebuild(client, watcher, s, ix, &name, &mut r, observer).await;
        }
        r.duration_ms = t0.elapsed().as_millis() as u64;
        recorder
            .record(
                client,
                &RunRecord {
                    job: "reindex",
                    schema: &r.schema,
                    relation: &r.index,
                    table_name: Some(&r.table),
                    action: &r.action,
                    reason: &r.reason,
                    dead_before: None,
                    dead_after: None,
                    size_before: Some(r.size_before),
                    size_after: r.size_after,
                    started_at,
                    duration: t0.elapsed(),
                    attempts: r.attempts.max(1),
                    outcome: r.outcome,
                    error: r.error.as_deref(),
                },
            )
            .await;
        observer.finished(&r);
        results.push(r);
    }
    Ok(ReindexOutcome {
        results,
        elapsed_ms: start.elapsed().as_millis() as u64,
        recorded: recorder.enabled,
        warnings: recorder.warnings,
    })
}

async fn size_of(client: &Client, schema: &str, name: &str) -> Option<i64> {
    client
        .query_opt(SIZE_BY_NAME, &[&schema, &name])
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
}

async fn invalid_names(client: &Client, table_oid: u32) -> BTreeSet<String> {
    client
        .query(INVALID_ON_TABLE, &[&table_oid])
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .unwrap_or_default()
}

/// `REINDEX INDEX CONCURRENTLY`; after a failed attempt the `_ccnew` copy it left is
/// dropped concurrently, and a lock timeout is retried with backoff.
async fn rebuild(
    client: &Client,
    watcher: Option<&Watcher<'_>>,
    s: &Settings,
    ix: &IndexInfo,
    name: &str,
    r: &mut IndexResult,
    observer: &mut dyn Observer<IndexResult>,
) {
    let quoted = db::quote_qualified(&ix.schema, name);
    let label = format!(
        "REINDEX INDEX CONCURRENTLY {}",
        display_name(&ix.schema, name)
    );
    observer.started(&label);
    let sql = format!("REINDEX INDEX CONCURRENTLY {quoted}");
    let mut tries = 0;
    loop {
        tries += 1;
        r.attempts += 1;
        let before = invalid_names(client, ix.table_oid).await;
        let mut on_progress = |p: &super::Progress| observer.progress(p);
        let res = run_watched(
            client,
            watcher,
            ProgressView::CreateIndex,
            &sql,
            &mut on_progress,
        )
        .await;
        let err = match res {
            Ok(()) => {
                r.size_after = size_of(client, &ix.schema, name).await;
                r.outcome = Outcome::Ok;
                r.error = None;
                r.advice = None;
                return;
            }
            Err(e) => e,
        };
        // Drop what this attempt left behind: new invalid indexes named <name>_ccnew*.
        let after = invalid_names(client, ix.table_oid).await;
        for left in after.difference(&before) {
            if leftover_kind(left).is_some_and(|(tag, _)| tag == "_ccnew") {
                let drop = format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    db::quote_qualified(&ix.schema, left)
                );
                let dl = format!("DROP INDEX CONCURRENTLY {}", display_name(&ix.schema, left));
                match super::with_retry(
                    client,
                    None,
                    ProgressView::CreateIndex,
                    s,
                    &dl,
                    &drop,
                    observer,
                )
                .await
                {
                    (Ok(()), _) => r.dropped_leftovers.push(left.clone()),
                    (Err(e), _) => {
                        let msg = format!(
                            "could not drop the leftover {}: {}",
                            display_name(&ix.schema, left),
                            db::describe(&e).replace("\n  ", "; ")
                        );
                        tracing::warn!("{msg}");
                    }
                }
            }
        }
        if db::is_lock_conflict(&err) && tries <= s.retry.retries {
            let pause = s.retry.pause(tries);
            observer.retrying(&label, tries, pause);
            tokio::time::sleep(pause).await;
            continue;
        }
        fail(r, ix, &err, false);
        return;
    }
}

/// Marks the result failed (or skipped after lock timeouts) and says what to do.
fn fail(r: &mut IndexResult, ix: &IndexInfo, e: &tokio_postgres::Error, dropping: bool) {
    let name = display_name(&r.schema, &r.index);
    if db::sqlstate(e) == Some("42P01") {
        r.outcome = Outcome::Skipped;
        r.error = Some("the index was dropped since the plan was made".into());
        return;
    }
    let lock = db::is_lock_conflict(e);
    r.outcome = if lock {
        Outcome::Skipped
    } else {
        Outcome::Failed
    };
    r.error = Some(db::describe(e).replace("\n  ", "; "));
    let advice = if lock {
        format!(
            "a long-running transaction or a conflicting lock on {} kept the rebuild from its \
             locks; find it in pg_stat_activity / pg_locks, let it finish, then run \
             `opsctl reindex --index '{name}'` again",
            ix.table
        )
    } else if dropping {
        format!("drop it by hand: DROP INDEX CONCURRENTLY {name};")
    } else if db::sqlstate(e) == Some("23505") {
        format!(
            "{name} is UNIQUE and {} holds duplicate keys (see the detail above); remove the \
             duplicates, then run `opsctl reindex --index '{name}'` again. If the index is not \
             needed, drop it: DROP INDEX CONCURRENTLY {name};",
            ix.table
        )
    } else {
        format!(
            "rebuild it by hand: DROP INDEX CONCURRENTLY {name}; then recreate it with \
             CREATE INDEX CONCURRENTLY from its definition: {};",
            ix.definition
                .replacen("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1)
                .replacen("CREATE UNIQUE INDEX", "CREATE UNIQUE INDEX CONCURRENTLY", 1)
        )
    };
    r.advice = Some(advice);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_recognised() {
        assert_eq!(leftover_kind("t_k_idx_ccnew"), Some(("_ccnew", "t_k_idx")));
        assert_eq!(leftover_kind("t_k_idx_ccnew2"), Some(("_ccnew", "t_k_idx")));
        assert_eq!(leftover_kind("t_k_idx_ccold"), Some(("_ccold", "t_k_idx")));
        assert_eq!(leftover_kind("t_k_idx"), None);
        assert_eq!(leftover_kind("t_ccnew_thing"), None);
    }

    #[test]
    fn bloat_estimate() {
        // 100k int4 keys fill about 275 pages at fillfactor 90.
        let fresh = estimate_bloat(276, 100_000.0, 90, 4.0, false).unwrap();
        assert!(fresh < 0.05, "{fresh}");
        // Same pages after 70% of the rows went away.
        let bloated = estimate_bloat(276, 30_000.0, 90, 4.0, false).unwrap();
        assert!(bloated > 0.6 && bloated < 0.75, "{bloated}");
        assert!(estimate_bloat(1, 0.0, 90, 4.0, false).is_none());
        assert!(estimate_bloat(100, -1.0, 90, 4.0, false).is_none());
    }
}
