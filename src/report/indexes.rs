//! Index and sequence checks: invalid indexes, large unused indexes (with the statistics
//! reset time), sequences near the limit of their column's type. Three queries.

use super::{unknown, Check, Ctx, Metric, State};
use crate::units::human_bytes;

pub const IDS: &[&str] = &["invalid_indexes", "unused_indexes", "sequences"];

const SQL_INVALID: &str = "\
SELECT n.nspname::text, c.relname::text, t.relname::text \
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
JOIN pg_class t ON t.oid = i.indrelid \
JOIN pg_namespace n ON n.oid = c.relnamespace \
WHERE NOT i.indisvalid ORDER BY 1, 2";

/// Non-unique, non-constraint indexes scanned at most $1 times and at least $2 bytes.
/// The size filter uses pg_class.relpages (no lock); only the survivors are measured.
const SQL_UNUSED: &str = "\
SELECT * FROM ( \
  SELECT s.schemaname::text, s.indexrelname::text, s.relname::text, s.idx_scan, \
         pg_relation_size(s.indexrelid) AS bytes \
  FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid \
  JOIN pg_class c ON c.oid = s.indexrelid \
  WHERE s.idx_scan <= $1 AND NOT i.indisunique AND NOT i.indisprimary \
    AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = s.indexrelid) \
    AND c.relpages::int8 * current_setting('block_size')::int8 >= $2 \
  OFFSET 0) u \
WHERE bytes >= $2 ORDER BY bytes DESC";

const SQL_STATS_RESET: &str =
    "SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database()";

/// Every sequence with its last value (NULL when not readable) and the owning column's type.
const SQL_SEQUENCES: &str = "\
SELECT n.nspname::text, c.relname::text, s.seqmax, s.seqincrement, \
       has_sequence_privilege(c.oid, 'SELECT,USAGE') AS visible, \
       CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE') \
            THEN pg_sequence_last_value(c.oid::regclass) END, \
       (SELECT format_type(a.atttypid, NULL) FROM pg_depend d \
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) \
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid \
JOIN pg_namespace n ON n.oid = c.relnamespace";

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    let t = ctx.t();
    let mut out = Vec::new();
    if wants("invalid_indexes") {
        out.push(match ctx.client.query(SQL_INVALID, &[]).await {
            Err(e) => unknown("invalid_indexes", &e, "pg_index is not readable"),
            Ok(rows) => {
                let names: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{}.{} on {}",
                            r.get::<_, String>(0),
                            r.get::<_, String>(1),
                            r.get::<_, String>(2)
                        )
                    })
                    .collect();
                let state = if names.is_empty() {
                    State::Ok
                } else {
                    State::Warning
                };
                Check::new(
                    "invalid_indexes",
                    state,
                    if names.is_empty() {
                        "no invalid index".to_string()
                    } else {
                        format!("{} invalid: {}", names.len(), list(&names, 5))
                    },
                    "a failed CREATE INDEX CONCURRENTLY left it: DROP INDEX CONCURRENTLY it and build it again (opsctl reindex)",
                )
                .threshold("any")
                .metric(Metric {
                    warn: Some(1.0),
                    ..Metric::new(
                        "invalid_indexes",
                        "Indexes marked invalid.",
                        names.len() as f64,
                    )
                })
            }
        });
    }
    if wants("unused_indexes") {
        let res = ctx
            .client
            .query(
                SQL_UNUSED,
                &[&t.unused_index_max_scans, &t.unused_index_min_bytes],
            )
            .await;
        let reset = ctx
            .client
            .query_opt(SQL_STATS_RESET, &[])
            .await
            .ok()
            .flatten()
            .and_then(|r| r.get::<_, Option<String>>(0));
        out.push(match res {
            Err(e) => unknown("unused_indexes", &e, "pg_stat_user_indexes is not readable"),
            Ok(rows) => {
                let bytes: i64 = rows.iter().map(|r| r.get::<_, i64>(4)).sum();
                let names: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{}.{} ({}, {} scans)",
                            r.get::<_, String>(0),
                            r.get::<_, String>(1),
                            human_bytes(r.get::<_, i64>(4) as f64),
                            r.get::<_, i64>(3)
                        )
                    })
                    .collect();
                let since = match &reset {
                    Some(r) => format!("statistics since {r}"),
                    None => "statistics never reset".to_string(),
                };
                let state = if names.is_empty() {
                    State::Ok
                } else {
                    State::Warning
                };
                Check::new(
                    "unused_indexes",
                    state,
                    if names.is_empty() {
                        format!("no large unused index ({since})")
                    } else {
                        format!(
                            "{} unused, {} in all: {} ({since})",
                            names.len(),
                            human_bytes(bytes as f64),
                            list(&names, 3)
                        )
                    },
                    "unused indexes slow every write: check replicas too, then DROP INDEX CONCURRENTLY",
                )
                .threshold(format!(
                    "≤{} scans and ≥{}",
                    t.unused_index_max_scans,
                    human_bytes(t.unused_index_min_bytes as f64)
                ))
                .metric(Metric::new(
                    "unused_indexes",
                    "Large indexes scanned at most unused_index_max_scans times.",
                    names.len() as f64,
                ))
                .metric(Metric::new(
                    "unused_indexes_bytes",
                    "Size of those unused indexes.",
                    bytes as f64,
                ))
            }
        });
    }
    if wants("sequences") {
        out.push(match ctx.client.query(SQL_SEQUENCES, &[]).await {
            Err(e) => unknown("sequences", &e, "pg_sequence is not readable"),
            Ok(rows) => {
                let mut hidden = Vec::new();
                let mut worst: Option<(String, f64, i64, i64)> = None;
                for r in &rows {
                    let name = format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1));
                    let seqmax: i64 = r.get(2);
                    let inc: i64 = r.get(3);
                    let visible: bool = r.get(4);
                    let last: Option<i64> = r.get(5);
                    let coltype: Option<String> = r.get(6);
                    if !visible {
                        hidden.push(name);
                        continue;
                    }
                    if inc < 0 {
                        continue;
                    }
                    let limit = seqmax.min(type_max(coltype.as_deref()));
                    let used = last.unwrap_or(0).max(0);
                    let pct = used as f64 / limit.max(1) as f64 * 100.0;
                    if worst.as_ref().map_or(true, |w| pct > w.1) {
                        worst = Some((name, pct, used, limit));
                    }
                }
                if !hidden.is_empty() {
                    Check::new(
                        "sequences",
                        State::Unknown,
                        format!("cannot read {} sequences: {}", hidden.len(), list(&hidden, 3)),
                        "grant SELECT (or USAGE) on those sequences to this role",
                    )
                } else {
                    let pct = worst.as_ref().map_or(0.0, |w| w.1);
                    let state = State::judge_high(
                        pct,
                        t.sequence_warn_percent,
                        t.sequence_crit_percent,
                    );
                    let mut c = Check::new(
                        "sequences",
                        state,
                        match &worst {
                            None => "no sequences".to_string(),
                            Some((n, p, u, l)) => {
                                format!("fullest {n}: {u} of {l} ({p:.1}%)")
                            }
                        },
                        "the column will overflow: ALTER the column and sequence to bigint before it is full",
                    )
                    .threshold(format!(
                        "{}% / {}% of the column type's max",
                        t.sequence_warn_percent, t.sequence_crit_percent
                    ));
                    if let Some((n, p, _, _)) = worst {
                        c = c.metric(
                            Metric::new(
                                "sequence_used_ratio",
                                "Share of its limit used by the fullest sequence.",
                                p / 100.0,
                            )
                            .label("sequence", n)
                            .thresholds(
                                t.sequence_warn_percent / 100.0,
                                t.sequence_crit_percent / 100.0,
                            ),
                        );
                    }
                    c
                }
            }
        });
    }
    out
}

/// Largest value of an integer column type (bigint when unknown).
fn type_max(t: Option<&str>) -> i64 {
    match t {
        Some("smallint") => i16::MAX as i64,
        Some("integer") => i32::MAX as i64,
        _ => i64::MAX,
    }
}

fn list(names: &[String], n: usize) -> String {
    let mut s = names.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > n {
        s.push_str(&format!(" and {} more", names.len() - n));
    }
    s
}
