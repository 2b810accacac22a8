//! The slowest queries from pg_stat_statements: top by total time and by mean time,
//! with calls. "Not configured" (OK) with the way to enable it when the extension is not
//! installed; UNKNOWN when it is installed but cannot be read. Two queries.

use serde::Serialize;

use super::{shorten, unknown, Check, Ctx, Metric, State};
use crate::db::quote_ident;

pub const IDS: &[&str] = &["slow_queries"];

/// What `slow_queries` says when the extension is not installed.
const NOT_INSTALLED: &str = "pg_stat_statements is not installed in this database (add it to \
     shared_preload_libraries, restart, then CREATE EXTENSION pg_stat_statements)";

const SQL_EXT: &str =
    "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_stat_statements'";

/// Top $1 by total time, and top $1 by mean time among statements with ≥ $2 calls.
const SQL_TOP: &str = "\
(SELECT 'total', calls, total_exec_time, mean_exec_time, query FROM {S}.pg_stat_statements \
  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
  ORDER BY total_exec_time DESC LIMIT $1) \
UNION ALL \
(SELECT 'mean', calls, total_exec_time, mean_exec_time, query FROM {S}.pg_stat_statements \
  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls >= $2 \
  ORDER BY mean_exec_time DESC LIMIT $1)";

#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub query: String,
}

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    if !wants("slow_queries") {
        return Vec::new();
    }
    const ID: &str = "slow_queries";
    let t = ctx.t();
    let schema: Option<String> = match ctx.client.query_opt(SQL_EXT, &[]).await {
        Ok(r) => r.map(|r| r.get(0)),
        Err(e) => return vec![unknown(ID, &e, "pg_extension is not readable")],
    };
    // An optional extension that is not installed is not set up: OK, with the way to do it.
    let Some(schema) = schema else {
        return vec![Check::not_configured(ID, NOT_INSTALLED)];
    };
    if !ctx.privs.sees_all_stats() {
        return vec![Check::new(
            ID,
            State::Unknown,
            "cannot see other roles' statements",
            "grant pg_read_all_stats (or pg_monitor) to this role",
        )];
    }
    let sql = SQL_TOP.replace("{S}", &quote_ident(&schema));
    let rows = match ctx
        .client
        .query(&sql, &[&t.slow_query_top, &t.slow_query_min_calls])
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return vec![unknown(
                ID,
                &e,
                "pg_stat_statements must be in shared_preload_libraries (restart needed)",
            )]
        }
    };
    let mut by_total = Vec::new();
    let mut by_mean = Vec::new();
    for r in &rows {
        let s = Statement {
            calls: r.get(1),
            total_ms: r.get(2),
            mean_ms: r.get(3),
            query: shorten(r.get::<_, Option<&str>>(4).unwrap_or(""), 100),
        };
        if r.get::<_, &str>(0) == "total" {
            by_total.push(s);
        } else {
            by_mean.push(s);
        }
    }
    let worst = by_mean.first();
    let mean = worst.map_or(0.0, |s| s.mean_ms);
    let state = State::judge_high(mean, t.slow_query_mean_warn_ms, t.slow_query_mean_crit_ms);
    let value = match (worst, by_total.first()) {
        (None, None) => "no statements recorded yet".to_string(),
        (w, tot) => {
            let mut v = String::new();
            if let Some(w) = w {
                v.push_str(&format!(
                    "slowest mean {:.0} ms × {} calls: {}",
                    w.mean_ms, w.calls, w.query
                ));
            }
            if let Some(s) = tot {
                if !v.is_empty() {
                    v.push_str("; ");
                }
                v.push_str(&format!(
                    "most total {:.0} ms over {} calls: {}",
                    s.total_ms, s.calls, s.query
                ));
            }
            v
        }
    };
    let mut c = Check::new(
        ID,
        state,
        value,
        "EXPLAIN (ANALYZE, BUFFERS) the slowest statement; add an index or rewrite it",
    )
    .threshold(format!(
        "mean {} ms / {} ms, statements with ≥{} calls",
        t.slow_query_mean_warn_ms, t.slow_query_mean_crit_ms, t.slow_query_min_calls
    ))
    .metric(
        Metric::new(
            "slow_query_mean_seconds",
            "Mean execution time of the slowest statement with enough calls.",
            mean / 1000.0,
        )
        .thresholds(
            t.slow_query_mean_warn_ms / 1000.0,
            t.slow_query_mean_crit_ms / 1000.0,
        ),
    );
    c.details = Some(serde_json::json!({ "top_by_total": by_total, "top_by_mean": by_mean }));
    vec![c]
}
