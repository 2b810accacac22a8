//! Cache and vacuum health: cache hit ratio, dead-tuple backlog, transaction-ID
//! wraparound age (per database and worst table). Three queries.

use super::{unknown, Check, Ctx, Metric, State};

pub const IDS: &[&str] = &["cache_hit_ratio", "dead_tuples", "xid_wraparound"];

const SQL_CACHE: &str = "SELECT coalesce(sum(heap_blks_hit), 0)::float8, \
     coalesce(sum(heap_blks_read), 0)::float8 FROM pg_statio_user_tables";

/// Tables whose dead tuples are at least $1 and whose dead share is at least $2 percent.
const SQL_DEAD: &str = "\
SELECT schemaname::text, relname::text, n_dead_tup, n_live_tup, \
       (100.0 * n_dead_tup / greatest(n_live_tup + n_dead_tup, 1))::float8 AS pct, \
       extract(epoch FROM now() - greatest(last_vacuum, last_autovacuum))::float8, \
       count(*) OVER ()::int8 \
FROM pg_stat_user_tables \
WHERE n_dead_tup >= $1 AND 100.0 * n_dead_tup / greatest(n_live_tup + n_dead_tup, 1) >= $2::float8 \
ORDER BY pct DESC, n_dead_tup DESC LIMIT 5";

const SQL_XID: &str = "\
SELECT d.datname::text, age(d.datfrozenxid)::int8, t.nspname::text, t.relname::text, t.age \
FROM (SELECT datname, datfrozenxid FROM pg_database ORDER BY age(datfrozenxid) DESC LIMIT 1) d \
LEFT JOIN LATERAL ( \
  SELECT n.nspname, c.relname, age(c.relfrozenxid)::int8 AS age \
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
  WHERE c.relkind IN ('r', 'm', 't') AND c.relfrozenxid <> '0'::xid \
  ORDER BY age(c.relfrozenxid) DESC LIMIT 1) t ON true";

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    let t = ctx.t();
    let mut out = Vec::new();
    if wants("cache_hit_ratio") {
        out.push(match ctx.client.query_one(SQL_CACHE, &[]).await {
            Err(e) => unknown(
                "cache_hit_ratio",
                &e,
                "pg_statio_user_tables is not readable",
            ),
            Ok(r) => {
                let (hit, read): (f64, f64) = (r.get(0), r.get(1));
                cache_hit(hit, read, t)
            }
        });
    }
    if wants("dead_tuples") {
        let pct = t.dead_tuples_warn_percent;
        out.push(
            match ctx.client.query(SQL_DEAD, &[&t.dead_tuples_min, &pct]).await {
                Err(e) => unknown("dead_tuples", &e, "pg_stat_user_tables is not readable"),
                Ok(rows) => {
                    let worst = rows.first();
                    let n: i64 = worst.map(|r| r.get(6)).unwrap_or(0);
                    let wp: f64 = worst.map(|r| r.get(4)).unwrap_or(0.0);
                    let state = State::judge_high(
                        wp,
                        t.dead_tuples_warn_percent,
                        t.dead_tuples_crit_percent,
                    );
                    let value = match worst {
                        None => format!(
                            "no table with ≥{} dead tuples and ≥{}% dead",
                            t.dead_tuples_min, t.dead_tuples_warn_percent
                        ),
                        Some(r) => {
                            let since: Option<f64> = r.get(5);
                            format!(
                                "{n} tables need vacuum; worst {}.{}: {} dead tuples ({wp:.0}% dead), last vacuum {}",
                                r.get::<_, String>(0),
                                r.get::<_, String>(1),
                                r.get::<_, i64>(2),
                                since.map_or("never".to_string(), |s| format!(
                                    "{} ago",
                                    super::health::human_duration(s)
                                ))
                            )
                        }
                    };
                    Check::new(
                        "dead_tuples",
                        state,
                        value,
                        "autovacuum is falling behind: run opsctl vacuum, check for long transactions, tune autovacuum_vacuum_scale_factor",
                    )
                    .threshold(format!(
                        "{}% / {}% dead, tables with ≥{} dead tuples",
                        t.dead_tuples_warn_percent, t.dead_tuples_crit_percent, t.dead_tuples_min
                    ))
                    .metric(Metric::new(
                        "dead_tuples_tables",
                        "Tables over the dead-tuple warning threshold.",
                        n as f64,
                    ))
                    .metric(
                        Metric::new(
                            "dead_tuples_worst_ratio",
                            "Dead share of the worst table's tuples.",
                            wp / 100.0,
                        )
                        .thresholds(
                            t.dead_tuples_warn_percent / 100.0,
                            t.dead_tuples_crit_percent / 100.0,
                        ),
                    )
                }
            },
        );
    }
    if wants("xid_wraparound") {
        out.push(match ctx.client.query_one(SQL_XID, &[]).await {
            Err(e) => unknown("xid_wraparound", &e, "pg_database/pg_class are not readable"),
            Ok(r) => {
                let dbname: String = r.get(0);
                let dbage: i64 = r.get(1);
                let tage: Option<i64> = r.get(4);
                let worst = dbage.max(tage.unwrap_or(0)) as f64;
                let state = State::judge_high(worst, t.xid_age_warn as f64, t.xid_age_crit as f64);
                let mut value = format!("oldest database {dbname}: age {dbage}");
                let mut c = Check::new(
                    "xid_wraparound",
                    state,
                    String::new(),
                    "VACUUM (FREEZE) the oldest tables before PostgreSQL stops accepting writes at 2^31",
                )
                .threshold(format!("{} / {}", t.xid_age_warn, t.xid_age_crit))
                .metric(
                    Metric::new(
                        "xid_age_database",
                        "Transaction-ID age of the oldest database's datfrozenxid.",
                        dbage as f64,
                    )
                    .label("datname", dbname)
                    .thresholds(t.xid_age_warn as f64, t.xid_age_crit as f64),
                );
                if let Some(a) = tage {
                    let rel = format!("{}.{}", r.get::<_, String>(2), r.get::<_, String>(3));
                    value.push_str(&format!("; oldest table here {rel}: age {a}"));
                    c = c.metric(
                        Metric::new(
                            "xid_age_table",
                            "Transaction-ID age of this database's oldest table.",
                            a as f64,
                        )
                        .label("relname", rel)
                        .thresholds(t.xid_age_warn as f64, t.xid_age_crit as f64),
                    );
                }
                c.value = value;
                c
            }
        });
    }
    out
}

/// Cache hit ratio over user tables (PgHero's formula); too little data is not judged.
pub fn cache_hit(hit: f64, read: f64, t: &crate::policy::ReportPolicy) -> Check {
    let total = hit + read;
    let th = format!(
        "{}% / {}%, judged after {} block accesses",
        t.cache_hit_warn_percent, t.cache_hit_crit_percent, t.cache_hit_min_blocks
    );
    if total < t.cache_hit_min_blocks as f64 || total == 0.0 {
        return Check::new(
            "cache_hit_ratio",
            State::Ok,
            format!(
                "not enough reads to judge yet ({} block accesses)",
                total as i64
            ),
            "",
        )
        .threshold(th);
    }
    let pct = hit / total * 100.0;
    Check::new(
        "cache_hit_ratio",
        State::judge_low(pct, t.cache_hit_warn_percent, t.cache_hit_crit_percent),
        format!("{pct:.2}% of table block reads served from shared_buffers"),
        "the working set does not fit in memory: raise shared_buffers or add RAM",
    )
    .threshold(th)
    .metric(
        Metric::new(
            "cache_hit_ratio",
            "Share of user-table block reads served from shared buffers.",
            hit / total,
        )
        .thresholds(
            t.cache_hit_warn_percent / 100.0,
            t.cache_hit_crit_percent / 100.0,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_hit_is_judged_only_with_data() {
        let t = crate::policy::ReportPolicy::default();
        assert_eq!(cache_hit(10.0, 10.0, &t).state, State::Ok);
        assert_eq!(cache_hit(99_500.0, 500.0, &t).state, State::Ok);
        assert_eq!(cache_hit(98_000.0, 2_000.0, &t).state, State::Warning);
        assert_eq!(cache_hit(90_000.0, 10_000.0, &t).state, State::Critical);
    }
}
