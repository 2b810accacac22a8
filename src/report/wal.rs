//! `wal_archiving`: is the server's WAL reaching the archive? From `pg_stat_archiver`,
//! the archiving settings and the `.ready` files in `pg_wal/archive_status`
//! (crate::wal::status). Not configured when archive_mode is off.
//!
//! CRITICAL: the archiver has been failing with no success for more than
//! [`FAILING_CRIT_SECS`], or segments wait while the newest archived one is older than
//! archive_timeout plus [`STALE_MARGIN_SECS`] (the recovery point is falling behind).
//! WARNING: the last attempt failed (a retry may still succeed), or more than
//! [`BACKLOG_WARN`] segments wait.

use chrono::Utc;

use super::health::human_duration;
use super::{Check, Ctx, Metric, State};
use crate::wal::status::{server_status, ServerStatus};

pub const IDS: &[&str] = &["wal_archiving"];

/// No successful archive for this long while failing: CRITICAL.
pub const FAILING_CRIT_SECS: i64 = 300;
/// Added to archive_timeout (or 60 s when it is off) before a stale archive is CRITICAL.
pub const STALE_MARGIN_SECS: i64 = 60;
/// Segments waiting beyond this: WARNING.
pub const BACKLOG_WARN: i64 = 10;

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    if !wants("wal_archiving") {
        return Vec::new();
    }
    let st = match server_status(ctx.client).await {
        Ok(s) => s,
        Err(e) => {
            return vec![Check::new(
                "wal_archiving",
                State::Unknown,
                "cannot read the archiving state",
                e.to_string(),
            )]
        }
    };
    vec![judge(&st, Utc::now())]
}

/// The check from what the server says (pure, for tests).
pub fn judge(st: &ServerStatus, now: chrono::DateTime<Utc>) -> Check {
    const ID: &str = "wal_archiving";
    if !st.archiving() {
        return Check::not_configured(ID, "archive_mode is off (see `opsctl wal setup --print`)");
    }
    if st.in_recovery && st.archive_mode != "always" {
        return Check::new(
            ID,
            State::Ok,
            "standby: the primary archives",
            "archive_mode = on archives on the primary only",
        );
    }
    let age = st
        .last_archived_time
        .map(|t| (now - t).num_seconds().max(0));
    let timeout = if st.archive_timeout_seconds > 0 {
        i64::from(st.archive_timeout_seconds)
    } else {
        60
    };
    let stale_after = timeout + STALE_MARGIN_SECS;
    let waiting = st.ready_count.unwrap_or(0);
    let mut metrics = vec![
        Metric::new(
            "wal_archive_failures",
            "WAL archive attempts that failed since the statistics were reset",
            st.failed_count as f64,
        ),
        Metric::new(
            "wal_archived_segments",
            "WAL files archived since the statistics were reset",
            st.archived_count as f64,
        ),
    ];
    if let Some(n) = st.ready_count {
        metrics.push(Metric::new(
            "wal_segments_waiting",
            "WAL files waiting to be archived (.ready in archive_status)",
            n as f64,
        ));
    }
    if let Some(a) = age {
        metrics.push(Metric::new(
            "wal_last_archived_age_seconds",
            "Age of the newest archived WAL file",
            a as f64,
        ));
    }
    let age_text = match age {
        Some(a) => format!(
            "last archived {} ago ({})",
            human_duration(a as f64),
            st.last_archived_wal.as_deref().unwrap_or("?")
        ),
        None => "nothing archived yet".to_string(),
    };
    let waiting_text = match st.ready_count {
        Some(n) => format!("{n} waiting"),
        None => "waiting unknown".to_string(),
    };
    let threshold = format!(
        "failing > {FAILING_CRIT_SECS}s, newest archived older than archive_timeout + {STALE_MARGIN_SECS}s \
         ({stale_after}s) with segments waiting, > {BACKLOG_WARN} waiting"
    );
    let value = format!("{age_text}, {waiting_text}");
    let (state, hint) = if st.failing() && age.map_or(true, |a| a > FAILING_CRIT_SECS) {
        (
            State::Critical,
            format!(
                "archive_command fails ({} failures, last {}): see the server log and \
                 `opsctl wal status`; WAL piles up in pg_wal until it succeeds",
                st.failed_count,
                st.last_failed_wal.as_deref().unwrap_or("?")
            ),
        )
    } else if waiting > 0 && age.map_or(true, |a| a > stale_after) {
        (
            State::Critical,
            format!(
                "segments wait and nothing was archived for longer than archive_timeout + \
                 {STALE_MARGIN_SECS}s: the recovery point falls behind (oldest waiting {})",
                st.oldest_ready.as_deref().unwrap_or("?")
            ),
        )
    } else if st.failing() {
        (
            State::Warning,
            format!(
                "the last archive attempt ({}) failed; PostgreSQL retries",
                st.last_failed_wal.as_deref().unwrap_or("?")
            ),
        )
    } else if waiting > BACKLOG_WARN {
        (
            State::Warning,
            "the archiver is behind: more segments wait than it usually has".to_string(),
        )
    } else {
        (State::Ok, String::new())
    };
    let mut c = Check::new(ID, state, value, hint).threshold(threshold);
    if let Some(note) = &st.ready_note {
        if state == State::Ok {
            c.hint = note.clone();
        }
    }
    for m in metrics {
        c = c.metric(m);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(now: chrono::DateTime<Utc>) -> ServerStatus {
        ServerStatus {
            wal_level: "replica".into(),
            archive_mode: "on".into(),
            archive_command: "opsctl wal push %p".into(),
            archive_timeout: "1min".into(),
            archive_timeout_seconds: 60,
            system_identifier: "1".into(),
            in_recovery: false,
            current_wal_file: None,
            archived_count: 10,
            last_archived_wal: Some("000000010000000000000009".into()),
            last_archived_time: Some(now - chrono::Duration::seconds(30)),
            failed_count: 0,
            last_failed_wal: None,
            last_failed_time: None,
            stats_reset: None,
            ready_count: Some(0),
            oldest_ready: None,
            ready_note: None,
        }
    }

    #[test]
    fn states_follow_failures_age_and_backlog() {
        let now = Utc::now();
        assert_eq!(judge(&base(now), now).state, State::Ok);
        let mut off = base(now);
        off.archive_mode = "off".into();
        assert!(judge(&off, now).value.starts_with("not configured"));
        // Failing, but archived 30 s ago: a warning.
        let mut f = base(now);
        f.failed_count = 1;
        f.last_failed_time = Some(now - chrono::Duration::seconds(5));
        f.last_failed_wal = Some("00000001000000000000000A".into());
        assert_eq!(judge(&f, now).state, State::Warning);
        // Failing with no success for 10 minutes: critical.
        f.last_archived_time = Some(now - chrono::Duration::seconds(600));
        assert_eq!(judge(&f, now).state, State::Critical);
        // Not failing, but waiting and stale (archiver stuck or slow).
        let mut s = base(now);
        s.ready_count = Some(3);
        s.last_archived_time = Some(now - chrono::Duration::seconds(121));
        assert_eq!(judge(&s, now).state, State::Critical);
        // Idle server: old last archive but nothing waiting is fine.
        s.ready_count = Some(0);
        assert_eq!(judge(&s, now).state, State::Ok);
        let mut b = base(now);
        b.ready_count = Some(11);
        assert_eq!(judge(&b, now).state, State::Warning);
    }
}
