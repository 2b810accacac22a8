//! Backup freshness (age of the newest verified backup against the policy) and the last
//! restore drill's result. Reads the plaintext summaries `DIR/<database>/*.json` beside
//! the backups (no key needed) and, when present, opsctl's bookkeeping tables
//! (`opsctl.backups`, `opsctl.drills`…). Field names are read tolerantly.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::health::human_duration;
use super::records::{field, outcome, read_rows, time_of, Probe};
use super::{Check, Ctx, Metric, State};

pub const IDS: &[&str] = &["backup_freshness", "restore_drill"];

const END_KEYS: &[&str] = &[
    "end",
    "finished_at",
    "end_time",
    "ended_at",
    "completed_at",
    "finished",
    "created_at",
    "start",
];
const DRILL_TIME_KEYS: &[&str] = &[
    "drilled_at",
    "drill_at",
    "drill_finished_at",
    "finished_at",
    "end",
    "ended_at",
    "end_time",
    "completed_at",
    "created_at",
    "at",
];

/// One backup as a summary file or bookkeeping row describes it.
#[derive(Debug, Clone)]
pub struct BackupSeen {
    pub end: Option<DateTime<Utc>>,
    pub verified: bool,
    pub drill: Option<(bool, Option<DateTime<Utc>>)>,
}

fn interpret_backup(v: &Value) -> BackupSeen {
    let verified = match field(v, &["verified", "verify_ok", "verified_ok", "is_verified"]) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "ok" | "yes" | "verified"
        ),
        Some(Value::Object(o)) => o.get("ok").and_then(|x| x.as_bool()).unwrap_or(false),
        _ => {
            v.get("verified_at").is_some_and(|x| !x.is_null())
                || v.get("status").and_then(|s| s.as_str()) == Some("verified")
        }
    };
    // A drill recorded on the backup itself.
    let drill = match field(v, &["drill", "last_drill"]) {
        Some(d @ Value::Object(_)) => outcome(d).map(|ok| (ok, time_of(d, DRILL_TIME_KEYS))),
        _ => match field(v, &["drill_result", "drill_status", "drill_ok", "drilled"]) {
            Some(Value::Bool(b)) if v.get("drilled").is_none() || v.get("drill_ok").is_some() => {
                Some((
                    *b,
                    time_of(v, &["drilled_at", "drill_at", "drill_finished_at"]),
                ))
            }
            Some(Value::String(s)) => {
                let ok = outcome(&serde_json::json!({ "status": s }));
                ok.map(|ok| {
                    (
                        ok,
                        time_of(v, &["drilled_at", "drill_at", "drill_finished_at"]),
                    )
                })
            }
            _ => None,
        },
    };
    BackupSeen {
        end: time_of(v, END_KEYS),
        verified,
        drill,
    }
}

/// Summaries under `dir/<database>/` (and one directory level below it).
fn read_summaries(dir: &Path, database: &str) -> std::io::Result<Vec<Value>> {
    let base = dir.join(database);
    let mut out = Vec::new();
    if !base.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![(base, 0)];
    while let Some((d, depth)) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() && depth < 1 {
                stack.push((p, depth + 1));
            } else if p.extension().is_some_and(|x| x == "json") {
                // Tolerant: an unreadable or half-written summary is skipped.
                if let Ok(text) = std::fs::read_to_string(&p) {
                    if let Ok(v) = serde_json::from_str::<Value>(&text) {
                        match v {
                            Value::Array(a) => out.extend(a),
                            v => out.push(v),
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn same_db(v: &Value, db: &str) -> bool {
    match field(v, &["database", "dbname", "datname", "database_name"]) {
        Some(Value::String(s)) => s == db,
        _ => true,
    }
}

pub async fn checks(ctx: &Ctx<'_>, probe: &Probe, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    if !IDS.iter().any(|i| wants(i)) {
        return Vec::new();
    }
    let p = ctx.policy;
    let mut backups: Vec<BackupSeen> = Vec::new();
    let mut source_problem: Option<String> = None;
    if let Some(dir) = &p.backup.dir {
        if !dir.is_dir() {
            source_problem = Some(format!("backup directory {} does not exist", dir.display()));
        } else {
            match read_summaries(dir, &ctx.dbname) {
                Ok(v) => backups.extend(v.iter().map(interpret_backup)),
                Err(e) => source_problem = Some(format!("cannot read {}: {e}", dir.display())),
            }
        }
    }
    let table = probe.get("opsctl.backups");
    if table.exists && table.readable {
        if let Ok(rows) = read_rows(ctx.client, "opsctl.backups", &table, 1000).await {
            backups.extend(
                rows.iter()
                    .filter(|r| same_db(r, &ctx.dbname))
                    .map(interpret_backup),
            );
        }
    }
    let configured = p.backup.dir.is_some() || (table.exists && table.readable);
    let mut out = Vec::new();
    if wants("backup_freshness") {
        out.push(if !configured {
            if table.exists {
                Check::new(
                    "backup_freshness",
                    State::Unknown,
                    "opsctl.backups exists but this role cannot read it",
                    "grant SELECT on opsctl.backups (or set [backup].dir in the policy)",
                )
            } else {
                Check::not_configured("backup_freshness", "no [backup].dir in the policy")
            }
        } else {
            freshness(&backups, source_problem.as_deref(), ctx)
        });
    }
    if wants("restore_drill") {
        out.push(drill(ctx, probe, &backups).await);
    }
    out
}

fn freshness(backups: &[BackupSeen], problem: Option<&str>, ctx: &Ctx<'_>) -> Check {
    let warn_h = ctx.policy.backup.max_age_hours.unwrap_or(26.0);
    let crit_h = ctx.t().backup_crit_age_hours.max(warn_h);
    let th = format!("{warn_h}h / {crit_h}h");
    let hint = "take a backup now (opsctl backup create) and verify it; check the schedule";
    if let Some(pb) = problem {
        if backups.is_empty() {
            return Check::new("backup_freshness", State::Critical, pb.to_string(), hint)
                .threshold(th);
        }
    }
    let newest = backups
        .iter()
        .filter(|b| b.verified)
        .filter_map(|b| b.end)
        .max();
    match newest {
        None => Check::new(
            "backup_freshness",
            State::Critical,
            format!(
                "no verified backup of {} ({} backups found, none verified)",
                ctx.dbname,
                backups.len()
            ),
            hint,
        )
        .threshold(th),
        Some(end) => {
            let age = (Utc::now() - end).num_seconds().max(0) as f64;
            Check::new(
                "backup_freshness",
                State::judge_high(age, warn_h * 3600.0, crit_h * 3600.0),
                format!(
                    "newest verified backup {} ago ({})",
                    human_duration(age),
                    end.format("%Y-%m-%d %H:%M UTC")
                ),
                hint,
            )
            .threshold(th)
            .metric(
                Metric::new(
                    "backup_age_seconds",
                    "Age of the newest verified backup.",
                    age,
                )
                .thresholds(warn_h * 3600.0, crit_h * 3600.0),
            )
        }
    }
}

async fn drill(ctx: &Ctx<'_>, probe: &Probe, backups: &[BackupSeen]) -> Check {
    const ID: &str = "restore_drill";
    let mut drills: Vec<(bool, Option<DateTime<Utc>>)> =
        backups.iter().filter_map(|b| b.drill).collect();
    let mut unreadable = None;
    for key in [
        "opsctl.drills",
        "opsctl.restore_drills",
        "opsctl.drill_runs",
    ] {
        let info = probe.get(key);
        if info.exists && !info.readable {
            unreadable = Some(key);
        }
        if info.exists && info.readable {
            if let Ok(rows) = read_rows(ctx.client, key, &info, 50).await {
                drills.extend(
                    rows.iter()
                        .filter(|r| same_db(r, &ctx.dbname))
                        .filter_map(|r| outcome(r).map(|ok| (ok, time_of(r, DRILL_TIME_KEYS)))),
                );
            }
        }
    }
    let max_days = ctx.t().drill_max_age_days;
    let th = format!("failed CRITICAL, older than {max_days} days WARNING");
    let hint = "run opsctl drill --latest and read its differences";
    // The newest drill by time (undated ones count as oldest).
    drills.sort_by_key(|d| d.1);
    let Some(&(ok, at)) = drills.last() else {
        if let Some(k) = unreadable {
            return Check::new(
                ID,
                State::Unknown,
                format!("{k} exists but this role cannot read it"),
                format!("grant SELECT on {k}"),
            );
        }
        if ctx.policy.drills.schedule.is_some() {
            return Check::new(
                ID,
                State::Warning,
                "no restore drill recorded although [drills].schedule is set",
                hint,
            )
            .threshold(th);
        }
        return Check::not_configured(ID, "no restore drill recorded");
    };
    let age = at.map(|t| (Utc::now() - t).num_seconds().max(0) as f64);
    let state = if !ok {
        State::Critical
    } else if age.is_some_and(|a| a > max_days * 86400.0) {
        State::Warning
    } else {
        State::Ok
    };
    let mut c = Check::new(
        ID,
        state,
        format!(
            "last drill {}{}",
            if ok { "passed" } else { "FAILED" },
            age.map_or(String::new(), |a| format!(", {} ago", human_duration(a)))
        ),
        hint,
    )
    .threshold(th)
    .metric(Metric::new(
        "restore_drill_ok",
        "1 when the last restore drill matched.",
        if ok { 1.0 } else { 0.0 },
    ));
    if let Some(a) = age {
        c = c.metric(Metric::new(
            "restore_drill_age_seconds",
            "Age of the last restore drill.",
            a,
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_summaries_tolerantly() {
        let v = serde_json::json!({"id": "x", "end": "2026-11-25T01:00:00Z", "verified": true,
                                    "drill": {"result": "passed", "finished_at": "2026-11-25T02:00:00Z"}});
        let b = interpret_backup(&v);
        assert!(b.verified);
        assert!(b.end.is_some());
        assert_eq!(b.drill.map(|d| d.0), Some(true));
        let v = serde_json::json!({"finished_at": "2026-11-25 01:00:00+00", "verified": false});
        let b = interpret_backup(&v);
        assert!(!b.verified && b.end.is_some());
    }
}
