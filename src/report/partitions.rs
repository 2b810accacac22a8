//! Partition checks: runway of the time-range partitioned tables the policy names (the
//! future months that exist, from `partition::runway_at`, the one implementation that
//! `partition list` shows too) and rows that landed in their default partitions (live-tuple
//! statistics). One catalog query, plus `partition::partitions` per managed table.

use super::{unknown, Check, Ctx, Metric, State};
use crate::partition::{self, Runway};

pub const IDS: &[&str] = &["partition_runway", "default_partition_rows"];

/// One row per partitioned table: whether it is time-range partitioned on one column, and
/// its default partition with its live rows (statistics).
const SQL_TABLES: &str = "\
SELECT pn.nspname::text, pc.relname::text, pc.oid, pt.partstrat::text, pt.partnatts::int4, \
       format_type(a.atttypid, NULL), d.relname::text, \
       coalesce(pg_stat_get_live_tuples(d.oid), 0)::int8 \
FROM pg_partitioned_table pt \
JOIN pg_class pc ON pc.oid = pt.partrelid \
JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
LEFT JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0] \
LEFT JOIN pg_class d ON d.oid = pt.partdefid \
WHERE pn.nspname NOT IN ('pg_catalog', 'information_schema') \
ORDER BY 1, 2";

/// Puts back the session settings `partition::prepare_session` changed for the bounds.
const SQL_RESET_SESSION: &str = "RESET TimeZone; RESET DateStyle";

#[derive(Debug)]
struct Table {
    name: String,
    oid: u32,
    time_range: bool,
    default: Option<(String, i64)>,
}

/// A table's runway, or None when it has no range partition yet (only a default).
type TableRunway = (String, Option<Runway>);

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    let t = ctx.t();
    if !IDS.iter().any(|i| wants(i)) {
        return Vec::new();
    }
    let rows = match ctx.client.query(SQL_TABLES, &[]).await {
        Ok(r) => r,
        Err(e) => {
            return IDS
                .iter()
                .filter(|i| wants(i))
                .map(|i| unknown(i, &e, "pg_partitioned_table is not readable"))
                .collect()
        }
    };
    let mut tables: Vec<Table> = rows
        .iter()
        .map(|r| {
            let ty: Option<String> = r.get(5);
            Table {
                name: format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)),
                oid: r.get(2),
                time_range: r.get::<_, String>(3) == "r"
                    && r.get::<_, i32>(4) == 1
                    && ty
                        .as_deref()
                        .is_some_and(|t| t == "date" || t.starts_with("timestamp")),
                default: r
                    .get::<_, Option<String>>(6)
                    .map(|d| (d, r.get::<_, i64>(7))),
            }
        })
        .collect();
    // Judge the tables opsctl manages ([[partitions.tables]] of the policy); the archive
    // tables and partitioned tables of other tools are not ours to judge.
    let managed: Vec<String> = ctx
        .policy
        .partitions
        .tables
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.table))
        .collect();
    tables.retain(|t| managed.contains(&t.name));
    let mut out = Vec::new();
    if wants("partition_runway") {
        out.push(match runways(ctx, &tables).await {
            Ok(r) => runway(&r, t.partition_runway_warn_months),
            Err(e) => Check::new(
                "partition_runway",
                State::Unknown,
                e.to_string(),
                "the partitions (pg_inherits, pg_class) are not readable by this role",
            ),
        });
    }
    if wants("default_partition_rows") {
        let defaults: Vec<&(String, i64)> =
            tables.iter().filter_map(|t| t.default.as_ref()).collect();
        if defaults.is_empty() {
            out.push(Check::not_configured(
                "default_partition_rows",
                "no default partitions",
            ));
        } else {
            let total: i64 = defaults.iter().map(|d| d.1).sum();
            let mut c = Check::new(
                "default_partition_rows",
                State::judge_high(
                    total as f64,
                    t.default_rows_warn as f64,
                    t.default_rows_crit as f64,
                ),
                String::new(),
                "rows without a monthly partition block creating that month: run opsctl partition ensure, which moves them out",
            )
            .threshold(format!("{} / {} rows", t.default_rows_warn, t.default_rows_crit));
            let mut parts = Vec::new();
            for (name, n) in &defaults {
                parts.push(format!("{name}: ~{n}"));
                c = c.metric(
                    Metric::new(
                        "default_partition_rows",
                        "Estimated live rows in a default partition (statistics).",
                        *n as f64,
                    )
                    .label("relname", name.clone())
                    .thresholds(t.default_rows_warn as f64, t.default_rows_crit as f64),
                );
            }
            c.value = if total == 0 {
                format!("{} default partitions, all empty", defaults.len())
            } else {
                format!("~{total} rows in default partitions ({})", parts.join(", "))
            };
            out.push(c);
        }
    }
    out
}

/// The runway of every time-range table, the way `partition list` computes it.
async fn runways(ctx: &Ctx<'_>, tables: &[Table]) -> Result<Vec<TableRunway>, crate::Error> {
    let ranged: Vec<&Table> = tables.iter().filter(|t| t.time_range).collect();
    if ranged.is_empty() {
        return Ok(Vec::new());
    }
    // Bounds are read in UTC, as partition work does; the session is put back afterwards.
    partition::prepare_session(ctx.client).await?;
    let now = partition::now_utc();
    let mut out = Vec::new();
    let mut result = Ok(());
    for t in ranged {
        match partition::partitions(ctx.client, t.oid).await {
            Ok(parts) => {
                let any = parts.iter().any(|p| !p.is_default);
                out.push((
                    t.name.clone(),
                    any.then(|| partition::runway_at(&parts, now)),
                ));
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = ctx.client.batch_execute(SQL_RESET_SESSION).await;
    result.map(|()| out)
}

fn runway(tables: &[TableRunway], warn_months: i64) -> Check {
    if tables.is_empty() {
        return Check::not_configured("partition_runway", "no time-range partitioned tables");
    }
    let mut state = State::Ok;
    let mut parts = Vec::new();
    let mut c = Check::new(
        "partition_runway",
        State::Ok,
        String::new(),
        "future partitions are missing: run opsctl partition ensure (and schedule it)",
    )
    .threshold(format!(
        "< {warn_months} future months WARNING, current month missing CRITICAL"
    ));
    let mut configured = 0;
    for (name, r) in tables {
        let Some(r) = r else {
            parts.push(format!("{name}: no monthly partitions yet"));
            continue;
        };
        configured += 1;
        let months = i64::from(r.future_months);
        let s = if !r.current_month {
            State::Critical
        } else if months < warn_months {
            State::Warning
        } else {
            State::Ok
        };
        state = state.max_sev(s);
        parts.push(if !r.current_month {
            format!("{name}: the current month has no partition")
        } else if months >= 1200 {
            format!("{name}: unbounded")
        } else {
            format!("{name}: {months} future months")
        });
        c = c.metric(
            Metric::new(
                "partition_future_months",
                "Whole months after the current one covered by partitions.",
                if r.current_month { months as f64 } else { -1.0 },
            )
            .label("relname", name.clone())
            .thresholds(warn_months as f64, 0.0),
        );
    }
    if configured == 0 {
        let mut nc = Check::not_configured(
            "partition_runway",
            "no monthly partitions yet (only defaults): opsctl partition ensure creates them",
        );
        nc.value = format!(
            "not configured: {} (only a default partition)",
            parts.join("; ")
        );
        return nc;
    }
    c.state = state;
    c.value = parts.join("; ");
    c
}
