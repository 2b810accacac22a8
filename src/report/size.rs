//! `opsctl report size [--snapshot]`: database size, the largest tables (heap, indexes,
//! TOAST separately) and indexes, growth per day and week from stored snapshots
//! (`opsctl.size_snapshots`, migration V50), and the days until the policy's disk limit.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Check, Metric, State};
use crate::db::{self, ConnSettings};
use crate::error::Error;
use crate::policy::Policy;
use crate::units::human_bytes;

pub const CHECK_IDS: &[&str] = &["database_size"];

const SQL_DB: &str = "SELECT current_database()::text, pg_database_size(current_database())";

const SQL_TABLES: &str = "\
SELECT n.nspname::text, c.relname::text, pg_relation_size(c.oid), pg_indexes_size(c.oid), \
       coalesce(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0), \
       pg_total_relation_size(c.oid) AS total \
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
  AND n.nspname NOT LIKE 'pg_toast%' \
ORDER BY total DESC, 1, 2 LIMIT $1";

const SQL_INDEXES: &str = "\
SELECT n.nspname::text, c.relname::text, t.relname::text, pg_relation_size(c.oid) AS bytes \
FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid \
JOIN pg_class t ON t.oid = i.indrelid \
JOIN pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind = 'i' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
  AND n.nspname NOT LIKE 'pg_toast%' \
ORDER BY bytes DESC, 1, 2 LIMIT $1";

const SQL_HAS_SNAPSHOTS: &str = "\
SELECT c.oid IS NOT NULL, \
       coalesce(has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'), false) \
FROM (SELECT 1) x LEFT JOIN pg_namespace n ON n.nspname = 'opsctl' \
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'size_snapshots'";

const SQL_SNAPSHOTS: &str = "\
SELECT taken_at, database_bytes FROM opsctl.size_snapshots \
WHERE database_name = current_database() AND taken_at > now() - make_interval(days => $1) \
ORDER BY taken_at";

const SQL_SNAPSHOT_INSERT: &str = "\
INSERT INTO opsctl.size_snapshots (database_name, database_bytes, tables) \
VALUES (current_database(), pg_database_size(current_database()), $1) RETURNING taken_at";

const SQL_SNAPSHOT_PRUNE: &str = "\
DELETE FROM opsctl.size_snapshots \
WHERE database_name = current_database() AND taken_at < now() - make_interval(days => $1)";

#[derive(Debug, Clone, Serialize)]
pub struct TableSize {
    pub schema: String,
    pub table: String,
    pub heap_bytes: i64,
    pub index_bytes: i64,
    pub toast_bytes: i64,
    pub total_bytes: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IndexSize {
    pub schema: String,
    pub index: String,
    pub table: String,
    pub bytes: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    /// Snapshots considered (within the retention window).
    pub snapshots: usize,
    pub oldest: DateTime<Utc>,
    pub bytes_per_day: Option<f64>,
    pub bytes_per_week: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    pub pruned: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    pub state: State,
    pub database: String,
    pub database_bytes: i64,
    pub tables: Vec<TableSize>,
    pub indexes: Vec<IndexSize>,
    /// None when the snapshot table does not exist or holds nothing yet.
    pub growth: Option<Growth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
    pub disk_limit_bytes: Option<i64>,
    pub days_until_limit: Option<f64>,
    pub checks: Vec<Check>,
}

/// Growth from (time, bytes) snapshots to the current size: per day from the newest
/// snapshot at least ~a day old (else the oldest one at least an hour old); per week
/// from the newest snapshot at least ~a week old.
pub fn growth(points: &[(DateTime<Utc>, i64)], now: DateTime<Utc>, current: i64) -> Option<Growth> {
    let oldest = points.first()?.0;
    let days = |t: DateTime<Utc>| (now - t).num_seconds() as f64 / 86400.0;
    let rate = |min_days: f64| -> Option<f64> {
        points
            .iter()
            .rev()
            .find(|(t, _)| days(*t) >= min_days)
            .map(|(t, b)| (current - b) as f64 / days(*t))
    };
    let per_day = rate(20.0 / 24.0).or_else(|| {
        points
            .first()
            .filter(|(t, _)| days(*t) >= 1.0 / 24.0)
            .map(|(t, b)| (current - b) as f64 / days(*t))
    });
    let per_week = rate(6.5).map(|r| r * 7.0);
    Some(Growth {
        snapshots: points.len(),
        oldest,
        bytes_per_day: per_day,
        bytes_per_week: per_week,
    })
}

/// Days until `limit` at the measured rate (the weekly rate when known: smoother).
pub fn days_until(current: i64, limit: i64, g: Option<&Growth>) -> Option<f64> {
    if current >= limit {
        return Some(0.0);
    }
    let g = g?;
    let per_day = g.bytes_per_week.map(|w| w / 7.0).or(g.bytes_per_day)?;
    (per_day > 0.0).then(|| (limit - current) as f64 / per_day)
}

/// Connects, measures, optionally records a snapshot (and prunes old ones).
pub async fn run(
    settings: &ConnSettings,
    policy: &Policy,
    limit: i64,
    take_snapshot: bool,
) -> Result<SizeReport, Error> {
    let t = &policy.reports;
    let mut conn = db::connect(settings).await?;
    super::limit_session(&conn, t.statement_timeout_ms.max(30_000)).await;
    let row = conn
        .query_one(SQL_DB, &[])
        .await
        .map_err(Error::db_ctx("cannot read the database size"))?;
    let database: String = row.get(0);
    let database_bytes: i64 = row.get(1);
    let tables: Vec<TableSize> = conn
        .query(SQL_TABLES, &[&limit])
        .await
        .map_err(Error::db_ctx("cannot read table sizes"))?
        .iter()
        .map(|r| TableSize {
            schema: r.get(0),
            table: r.get(1),
            heap_bytes: r.get(2),
            index_bytes: r.get(3),
            toast_bytes: r.get(4),
            total_bytes: r.get(5),
        })
        .collect();
    let indexes: Vec<IndexSize> = conn
        .query(SQL_INDEXES, &[&limit])
        .await
        .map_err(Error::db_ctx("cannot read index sizes"))?
        .iter()
        .map(|r| IndexSize {
            schema: r.get(0),
            index: r.get(1),
            table: r.get(2),
            bytes: r.get(3),
        })
        .collect();
    let probe = conn
        .query_one(SQL_HAS_SNAPSHOTS, &[])
        .await
        .map_err(Error::db_ctx("cannot look up opsctl.size_snapshots"))?;
    let (exists, readable): (bool, bool) = (probe.get(0), probe.get(1));
    let retention = t.snapshot_retention_days.clamp(1, 100_000) as i32;
    let mut points: Vec<(DateTime<Utc>, i64)> = Vec::new();
    if exists && readable {
        points = conn
            .query(SQL_SNAPSHOTS, &[&retention])
            .await
            .map_err(Error::db_ctx("cannot read opsctl.size_snapshots"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    }
    let mut snapshot = None;
    if take_snapshot {
        if !exists {
            return Err(Error::Config(
                "opsctl.size_snapshots does not exist: apply the migrations first (opsctl migrate up; V50__size_snapshots.sql)"
                    .into(),
            ));
        }
        let top = serde_json::to_value(&tables).unwrap_or_default();
        let tx = conn
            .transaction()
            .await
            .map_err(Error::db_ctx("cannot record a size snapshot"))?;
        let taken: DateTime<Utc> = tx
            .query_one(SQL_SNAPSHOT_INSERT, &[&top])
            .await
            .map_err(Error::db_ctx(
                "cannot record a size snapshot (needs INSERT on opsctl.size_snapshots)",
            ))?
            .get(0);
        let pruned = tx
            .execute(SQL_SNAPSHOT_PRUNE, &[&retention])
            .await
            .map_err(Error::db_ctx("cannot prune old size snapshots"))?;
        tx.commit()
            .await
            .map_err(Error::db_ctx("cannot record a size snapshot"))?;
        snapshot = Some(Snapshot {
            taken_at: taken,
            pruned,
        });
    }
    let g = growth(&points, Utc::now(), database_bytes);
    let days = t
        .disk_limit_bytes
        .and_then(|l| days_until(database_bytes, l, g.as_ref()));
    let check = size_check(database_bytes, &database, g.as_ref(), days, exists, policy);
    let checks = vec![check];
    Ok(SizeReport {
        state: super::worst(&checks),
        database,
        database_bytes,
        tables,
        indexes,
        growth: g,
        snapshot,
        disk_limit_bytes: t.disk_limit_bytes,
        days_until_limit: days,
        checks,
    })
}

fn size_check(
    bytes: i64,
    db: &str,
    g: Option<&Growth>,
    days: Option<f64>,
    table_exists: bool,
    policy: &Policy,
) -> Check {
    let t = &policy.reports;
    let mut value = format!("{db} is {}", human_bytes(bytes as f64));
    match g {
        Some(g) if g.bytes_per_day.is_some() || g.bytes_per_week.is_some() => {
            if let Some(d) = g.bytes_per_day {
                let _ = write!(value, ", {}{}/day", sign(d), human_bytes(d.abs()));
            }
            if let Some(w) = g.bytes_per_week {
                let _ = write!(value, ", {}{}/week", sign(w), human_bytes(w.abs()));
            }
        }
        _ if !table_exists => {
            value.push_str(", growth unknown (no opsctl.size_snapshots: apply migrations)")
        }
        _ => value.push_str(
            ", growth unknown until snapshots span an hour (opsctl report size --snapshot)",
        ),
    }
    let mut state = State::Ok;
    let mut threshold = "no disk limit: [reports].disk_limit_bytes unset".to_string();
    if let Some(limit) = t.disk_limit_bytes {
        threshold = format!(
            "limit {}: {} / {} days left",
            human_bytes(limit as f64),
            t.disk_runway_warn_days,
            t.disk_runway_crit_days
        );
        match days {
            Some(d) => {
                let _ = write!(
                    value,
                    "; limit {} reached in {d:.1} days",
                    human_bytes(limit as f64)
                );
                state = State::judge_low(d, t.disk_runway_warn_days, t.disk_runway_crit_days);
            }
            None => {
                let _ = write!(
                    value,
                    "; {:.0}% of the limit, not growing",
                    bytes as f64 * 100.0 / limit as f64
                );
            }
        }
    }
    let mut c = Check::new(
        "database_size",
        state,
        value,
        "the disk limit is near: archive old partitions (opsctl archive), drop unused indexes, or add disk",
    )
    .threshold(threshold)
    .metric(Metric::new("database_size_bytes", "Size of the database.", bytes as f64).label("datname", db));
    if let Some(g) = g {
        if let Some(d) = g.bytes_per_day {
            c = c.metric(Metric::new(
                "database_growth_bytes_per_day",
                "Growth of the database per day, from size snapshots.",
                d,
            ));
        }
        if let Some(w) = g.bytes_per_week {
            c = c.metric(Metric::new(
                "database_growth_bytes_per_week",
                "Growth of the database per week, from size snapshots.",
                w,
            ));
        }
    }
    if let Some(d) = days {
        c = c.metric(
            Metric::new(
                "database_disk_limit_runway_seconds",
                "Time until the database reaches [reports].disk_limit_bytes at the measured growth.",
                d * 86400.0,
            )
            .thresholds(t.disk_runway_warn_days * 86400.0, t.disk_runway_crit_days * 86400.0),
        );
    }
    c
}

fn sign(v: f64) -> &'static str {
    if v < 0.0 {
        "-"
    } else {
        "+"
    }
}

/// Per-table and per-index metrics for the Prometheus form.
pub fn metrics(r: &SizeReport) -> Vec<Metric> {
    let mut m = Vec::new();
    for t in &r.tables {
        let rel = format!("{}.{}", t.schema, t.table);
        for (part, v) in [
            ("heap", t.heap_bytes),
            ("indexes", t.index_bytes),
            ("toast", t.toast_bytes),
        ] {
            m.push(
                Metric::new(
                    "table_size_bytes",
                    "Size of one of the largest tables, by part.",
                    v as f64,
                )
                .label("relname", rel.clone())
                .label("part", part),
            );
        }
    }
    for i in &r.indexes {
        m.push(
            Metric::new(
                "index_size_bytes",
                "Size of one of the largest indexes.",
                i.bytes as f64,
            )
            .label("relname", format!("{}.{}", i.schema, i.index)),
        );
    }
    m
}

/// The sections under the check line of the text form.
pub fn text_details(r: &SizeReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nDatabase {}: {}",
        r.database,
        human_bytes(r.database_bytes as f64)
    );
    if let Some(s) = &r.snapshot {
        let _ = writeln!(
            o,
            "Snapshot recorded at {} ({} older than the retention pruned)",
            crate::text::ts(&s.taken_at),
            s.pruned
        );
    }
    match &r.growth {
        Some(g) => {
            let f = |v: Option<f64>| {
                v.map_or("n/a".to_string(), |v| {
                    format!("{}{}", sign(v), human_bytes(v.abs()))
                })
            };
            let _ = writeln!(
                o,
                "Growth: {} per day, {} per week ({} snapshots since {})",
                f(g.bytes_per_day),
                f(g.bytes_per_week),
                g.snapshots,
                g.oldest.format("%Y-%m-%d")
            );
        }
        None => {
            let _ = writeln!(o, "Growth: unknown until an earlier snapshot exists (opsctl report size --snapshot; the scheduler takes one daily)");
        }
    }
    if let (Some(l), d) = (r.disk_limit_bytes, r.days_until_limit) {
        let _ = writeln!(
            o,
            "Disk limit {}: {}",
            human_bytes(l as f64),
            d.map_or(
                "not approached at the current rate".to_string(),
                |d| format!("reached in {d:.1} days")
            )
        );
    }
    let _ = writeln!(o, "\nLargest tables:");
    let _ = writeln!(
        o,
        "  {:<40} {:>10} {:>10} {:>10} {:>10}",
        "table", "total", "heap", "indexes", "toast"
    );
    for t in &r.tables {
        let _ = writeln!(
            o,
            "  {:<40} {:>10} {:>10} {:>10} {:>10}",
            format!("{}.{}", t.schema, t.table),
            human_bytes(t.total_bytes as f64),
            human_bytes(t.heap_bytes as f64),
            human_bytes(t.index_bytes as f64),
            human_bytes(t.toast_bytes as f64)
        );
    }
    let _ = writeln!(o, "\nLargest indexes:");
    for i in &r.indexes {
        let _ = writeln!(
            o,
            "  {:<40} {:>10}  on {}",
            format!("{}.{}", i.schema, i.index),
            human_bytes(i.bytes as f64),
            i.table
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn growth_and_runway() {
        let now = Utc::now();
        let mb = 1024 * 1024;
        let pts = vec![
            (now - Duration::days(8), 100 * mb),
            (now - Duration::days(1), 107 * mb),
        ];
        let g = growth(&pts, now, 108 * mb).unwrap();
        let d = g.bytes_per_day.unwrap();
        assert!((d - mb as f64).abs() < 1000.0, "{d}");
        let w = g.bytes_per_week.unwrap();
        assert!((w - 7.0 * mb as f64).abs() < 10_000.0, "{w}");
        let days = days_until(108 * mb, 118 * mb, Some(&g)).unwrap();
        assert!((days - 10.0).abs() < 0.1, "{days}");
        assert_eq!(days_until(200, 100, None), Some(0.0));
        assert!(growth(&[], now, 1).is_none());
    }
}
