//! Replication checks, when there is any replication: lag of standbys (on a primary) or
//! of this server (on a standby), and inactive replication slots holding WAL. Two queries.

use super::{unknown, Check, Ctx, Metric, State};
use crate::units::human_bytes;

pub const IDS: &[&str] = &["replication_lag", "replication_slots"];

/// On a primary: standbys' lag; on a standby: its own replay delay.
const SQL_LAG: &str = "\
SELECT pg_is_in_recovery(), \
       CASE WHEN pg_is_in_recovery() THEN \
         CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
              ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END END::float8, \
       (SELECT count(*) FROM pg_stat_replication)::int8, \
       (SELECT count(*) FROM pg_stat_replication WHERE state IS NULL)::int8, \
       (SELECT max(extract(epoch FROM coalesce(replay_lag, flush_lag, write_lag))) \
          FROM pg_stat_replication)::float8, \
       (SELECT string_agg(coalesce(application_name, '?'), ', ') FROM pg_stat_replication)";

const SQL_SLOTS: &str = "\
SELECT slot_name::text, slot_type, active, \
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
                            ELSE pg_current_wal_lsn() END, restart_lsn)::int8, \
       coalesce(wal_status, '') \
FROM pg_replication_slots ORDER BY slot_name";

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    let t = ctx.t();
    let mut out = Vec::new();
    if wants("replication_lag") {
        out.push(match ctx.client.query_one(SQL_LAG, &[]).await {
            Err(e) => unknown("replication_lag", &e, "pg_stat_replication is not readable"),
            Ok(r) => {
                let standby: bool = r.get(0);
                let own: Option<f64> = r.get(1);
                let n: i64 = r.get(2);
                let hidden: i64 = r.get(3);
                let lag: Option<f64> = r.get(4);
                let names: Option<String> = r.get(5);
                let th = format!(
                    "{}s / {}s",
                    t.replication_lag_warn_seconds, t.replication_lag_crit_seconds
                );
                if standby {
                    let l = own.unwrap_or(0.0);
                    judged_lag(
                        l,
                        t,
                        format!("standby replaying {l:.1}s behind the primary"),
                    )
                    .threshold(th)
                } else if n == 0 {
                    Check::not_configured("replication_lag", "no standby is connected")
                } else if hidden > 0 && !ctx.privs.sees_all_stats() {
                    Check::new(
                        "replication_lag",
                        State::Unknown,
                        format!("{n} standbys connected, their lag is hidden"),
                        "grant pg_read_all_stats (or pg_monitor) to this role",
                    )
                } else {
                    let l = lag.unwrap_or(0.0);
                    judged_lag(
                        l,
                        t,
                        format!(
                            "{n} standbys ({}), worst replay lag {l:.1}s",
                            names.unwrap_or_default()
                        ),
                    )
                    .threshold(th)
                }
            }
        });
    }
    if wants("replication_slots") {
        out.push(match ctx.client.query(SQL_SLOTS, &[]).await {
            Err(e) => unknown("replication_slots", &e, "pg_replication_slots is not readable"),
            Ok(rows) if rows.is_empty() => {
                Check::not_configured("replication_slots", "no replication slots")
            }
            Ok(rows) => {
                let mut inactive = Vec::new();
                let mut state = State::Ok;
                let mut c = Check::new(
                    "replication_slots",
                    State::Ok,
                    String::new(),
                    "an inactive slot keeps WAL forever and can fill the disk: reconnect its consumer or pg_drop_replication_slot(name)",
                )
                .threshold(format!(
                    "inactive / retains ≥{}",
                    human_bytes(t.slot_retained_crit_bytes as f64)
                ));
                for r in &rows {
                    let name: String = r.get(0);
                    let active: bool = r.get(2);
                    let retained: Option<i64> = r.get(3);
                    let wal_status: String = r.get(4);
                    let bytes = retained.unwrap_or(0);
                    if !active {
                        inactive.push(format!("{name} ({} retained)", human_bytes(bytes as f64)));
                        state = state.max_sev(State::Warning);
                    }
                    if bytes >= t.slot_retained_crit_bytes || wal_status == "lost" {
                        state = State::Critical;
                    }
                    c = c.metric(
                        Metric::new(
                            "replication_slot_retained_bytes",
                            "WAL kept by the replication slot.",
                            bytes as f64,
                        )
                        .label("slot", name.clone()),
                    );
                    c = c.metric(
                        Metric::new(
                            "replication_slot_active",
                            "1 when a consumer is connected to the slot.",
                            if active { 1.0 } else { 0.0 },
                        )
                        .label("slot", name),
                    );
                }
                c.state = state;
                c.value = if inactive.is_empty() {
                    format!("{} slots, all active", rows.len())
                } else {
                    format!(
                        "{} of {} slots inactive: {}",
                        inactive.len(),
                        rows.len(),
                        inactive.join(", ")
                    )
                };
                c
            }
        });
    }
    out
}

fn judged_lag(l: f64, t: &crate::policy::ReportPolicy, value: String) -> Check {
    Check::new(
        "replication_lag",
        State::judge_high(
            l,
            t.replication_lag_warn_seconds,
            t.replication_lag_crit_seconds,
        ),
        value,
        "the standby falls behind: check its network, disk and long queries on it",
    )
    .metric(
        Metric::new(
            "replication_lag_seconds",
            "Worst replay lag of the standbys (or of this standby).",
            l,
        )
        .thresholds(
            t.replication_lag_warn_seconds,
            t.replication_lag_crit_seconds,
        ),
    )
}
