//! Partition checks from pg_catalog alone (one query): runway of the time-range
//! partitioned tables the policy names (future months that exist) and rows that landed
//! in their default partitions.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Utc};

use super::{unknown, Check, Ctx, Metric, State};

pub const IDS: &[&str] = &["partition_runway", "default_partition_rows"];

/// One row per partition of every partitioned table (a table with none yields one row of NULLs).
const SQL_PARTITIONS: &str = "\
SELECT pn.nspname::text, pc.relname::text, pt.partstrat::text, pt.partnatts::int4, \
       format_type(a.atttypid, NULL), c.relname::text, \
       pg_get_expr(c.relpartbound, c.oid), coalesce(pg_stat_get_live_tuples(c.oid), 0)::int8, \
       c.relkind::text \
FROM pg_partitioned_table pt \
JOIN pg_class pc ON pc.oid = pt.partrelid \
JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
LEFT JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0] \
LEFT JOIN pg_inherits i ON i.inhparent = pt.partrelid \
LEFT JOIN pg_class c ON c.oid = i.inhrelid \
WHERE pn.nspname NOT IN ('pg_catalog', 'information_schema') \
ORDER BY 1, 2, 6";

#[derive(Debug, Default)]
struct Table {
    name: String,
    time_range: bool,
    /// [from, to) of each range partition; None for MINVALUE/MAXVALUE.
    ranges: Vec<(Option<NaiveDateTime>, Option<NaiveDateTime>)>,
    default: Option<(String, i64)>,
}

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    let t = ctx.t();
    if !IDS.iter().any(|i| wants(i)) {
        return Vec::new();
    }
    let rows = match ctx.client.query(SQL_PARTITIONS, &[]).await {
        Ok(r) => r,
        Err(e) => {
            return IDS
                .iter()
                .filter(|i| wants(i))
                .map(|i| unknown(i, &e, "pg_partitioned_table/pg_inherits are not readable"))
                .collect()
        }
    };
    let mut tables: Vec<Table> = Vec::new();
    for r in &rows {
        let name = format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1));
        if tables.last().map_or(true, |x| x.name != name) {
            let strat: String = r.get(2);
            let natts: i32 = r.get(3);
            let ty: Option<String> = r.get(4);
            tables.push(Table {
                name: name.clone(),
                time_range: strat == "r"
                    && natts == 1
                    && ty
                        .as_deref()
                        .is_some_and(|t| t == "date" || t.starts_with("timestamp")),
                ..Default::default()
            });
        }
        let tb = tables.last_mut().unwrap();
        let Some(part) = r.get::<_, Option<String>>(5) else {
            continue;
        };
        let bound: String = r.get::<_, Option<String>>(6).unwrap_or_default();
        if bound == "DEFAULT" {
            tb.default = Some((part, r.get(7)));
        } else if tb.time_range {
            if let Some(range) = parse_range(&bound) {
                tb.ranges.push(range);
            }
        }
    }
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
    let now = Utc::now().naive_utc();
    let mut out = Vec::new();
    if wants("partition_runway") {
        out.push(runway(&tables, now, t.partition_runway_warn_months));
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

fn runway(tables: &[Table], now: NaiveDateTime, warn_months: i64) -> Check {
    let ranged: Vec<&Table> = tables.iter().filter(|t| t.time_range).collect();
    if ranged.is_empty() {
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
    for t in ranged {
        if t.ranges.is_empty() {
            parts.push(format!("{}: no monthly partitions yet", t.name));
            continue;
        }
        configured += 1;
        let (covered, months) = future_months(&t.ranges, now);
        let s = if !covered {
            State::Critical
        } else if months < warn_months {
            State::Warning
        } else {
            State::Ok
        };
        state = state.max_sev(s);
        parts.push(if !covered {
            format!("{}: the current month has no partition", t.name)
        } else if months >= 1200 {
            format!("{}: unbounded", t.name)
        } else {
            format!("{}: {months} future months", t.name)
        });
        c = c.metric(
            Metric::new(
                "partition_future_months",
                "Whole months after the current one covered by partitions.",
                if covered { months as f64 } else { -1.0 },
            )
            .label("relname", t.name.clone())
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

/// Whether `now` is covered, and how many whole months after the current one are
/// covered without a gap (1200 for MAXVALUE).
fn future_months(
    ranges: &[(Option<NaiveDateTime>, Option<NaiveDateTime>)],
    now: NaiveDateTime,
) -> (bool, i64) {
    let covers = |t: NaiveDateTime| {
        ranges
            .iter()
            .find(|(f, to)| f.map_or(true, |f| f <= t) && to.map_or(true, |to| t < to))
    };
    // Walk forward from now through adjacent partitions.
    let mut t = now;
    let mut covered_now = false;
    for _ in 0..10_000 {
        match covers(t) {
            Some((_, None)) => return (true, 1200),
            Some((_, Some(to))) => {
                covered_now = true;
                t = *to;
            }
            None => break,
        }
    }
    if !covered_now {
        return (false, 0);
    }
    let mut month = next_month(now.date().with_day(1).unwrap());
    let mut n = 0;
    while n < 1200 {
        let end = next_month(month);
        if end.and_hms_opt(0, 0, 0).unwrap() <= t {
            n += 1;
            month = end;
        } else {
            break;
        }
    }
    (true, n)
}

fn next_month(d: NaiveDate) -> NaiveDate {
    if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1).unwrap()
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1).unwrap()
    }
}

/// Parses `FOR VALUES FROM ('2026-11-01 00:00:00') TO ('2026-12-01 00:00:00')`.
fn parse_range(bound: &str) -> Option<(Option<NaiveDateTime>, Option<NaiveDateTime>)> {
    let rest = bound.strip_prefix("FOR VALUES FROM (")?;
    let (from, rest) = rest.split_once(") TO (")?;
    let to = rest.strip_suffix(')')?;
    Some((parse_value(from)?, parse_value(to)?))
}

/// One bound value; Ok(None) for MINVALUE/MAXVALUE.
fn parse_value(v: &str) -> Option<Option<NaiveDateTime>> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("MINVALUE") || v.eq_ignore_ascii_case("MAXVALUE") {
        return Some(None);
    }
    let s = v.trim_matches('\'');
    // Timestamps with a zone: keep the wall-clock part in UTC terms.
    if let Ok(dt) = chrono::DateTime::parse_from_str(&format!("{s}00"), "%Y-%m-%d %H:%M:%S%z")
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%#z"))
    {
        return Some(Some(dt.naive_utc()));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Some(dt));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| Some(d.and_hms_opt(0, 0, 0).unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn parses_bounds() {
        let r = parse_range("FOR VALUES FROM ('2026-11-01 00:00:00') TO ('2026-12-01 00:00:00')")
            .unwrap();
        assert_eq!(r.1, Some(dt("2026-12-01 00:00:00")));
        let r = parse_range("FOR VALUES FROM ('2026-11-01') TO (MAXVALUE)").unwrap();
        assert_eq!(r.1, None);
        let r =
            parse_range("FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')")
                .unwrap();
        assert_eq!(r.0, Some(dt("2026-11-01 00:00:00")));
    }

    #[test]
    fn counts_future_months() {
        let now = dt("2026-11-25 10:00:00");
        let m = |a: &str, b: &str| (Some(dt(a)), Some(dt(b)));
        let only_now = vec![m("2026-11-01 00:00:00", "2026-12-01 00:00:00")];
        assert_eq!(future_months(&only_now, now), (true, 0));
        let three = vec![
            m("2026-11-01 00:00:00", "2026-12-01 00:00:00"),
            m("2026-12-01 00:00:00", "2027-01-01 00:00:00"),
            m("2027-01-01 00:00:00", "2027-02-01 00:00:00"),
            m("2027-03-01 00:00:00", "2027-04-01 00:00:00"),
        ];
        assert_eq!(future_months(&three, now), (true, 2));
        let past = vec![m("2026-09-01 00:00:00", "2026-10-01 00:00:00")];
        assert_eq!(future_months(&past, now), (false, 0));
    }
}
