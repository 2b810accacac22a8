//! Dates and times as people type them on the command line (`archive --before`,
//! `audit report --from/--to`): `YYYY-MM-DD` (midnight), or RFC 3339 with or without a
//! zone (no zone = UTC); a space may replace the `T`, seconds may be left out. An
//! impossible calendar date says why ("February 2020 has 29 days").

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Parses a date or time into UTC. The error says what is wrong and what to write; the
/// caller puts the flag and the text in front of it.
pub fn parse_utc(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    let shaped = t.len() >= 10
        && t.bytes().take(10).enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(format!("it does not start with YYYY-MM-DD; {FORMS}"));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    // RFC 3339 with a space instead of the `T`, or without seconds, with a zone.
    let zoned = t.replace(['Z', 'z'], "+00:00");
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(&zoned, fmt) {
            return Ok(d.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(n.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let why = calendar_problem(t).unwrap_or_else(|| "not a date or time".into());
    Err(format!("{why}; {FORMS}"))
}

/// What to write instead, at the end of every error.
const FORMS: &str = "give YYYY-MM-DD (midnight UTC) or an RFC 3339 time such as \
     2026-01-15T12:00:00Z, 2026-01-15T14:00:00+02:00 or 2026-01-15T12:00:00 (no zone = UTC)";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// For text that starts like `YYYY-MM-DD`, what is wrong with the date or the time of day.
fn calendar_problem(t: &str) -> Option<String> {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = t.get(r)?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if t.as_bytes().get(4) != Some(&b'-') || t.as_bytes().get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) {
        return Some(format!("there is no month {month} (months are 01 to 12)"));
    }
    let first = NaiveDate::from_ymd_opt(year as i32, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year as i32 + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year as i32, month + 1, 1)?
    };
    let days = (next - first).num_days();
    if day == 0 || i64::from(day) > days {
        return Some(format!(
            "{} {year} has {days} days",
            MONTHS[month as usize - 1]
        ));
    }
    if t.len() > 10 {
        return Some(
            "the time of day is not HH:MM or HH:MM:SS (00:00 to 23:59:59), or the zone is \
             not Z or ±HH:MM"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> String {
        parse_utc(s).unwrap().to_rfc3339()
    }

    #[test]
    fn dates_and_times_with_or_without_zone() {
        assert_eq!(at("2025-06-01"), "2025-06-01T00:00:00+00:00");
        assert_eq!(at("2025-06-01T00:00:00"), "2025-06-01T00:00:00+00:00");
        assert_eq!(at("2025-06-01 12:30"), "2025-06-01T12:30:00+00:00");
        assert_eq!(at("2025-06-01T12:30:00Z"), "2025-06-01T12:30:00+00:00");
        assert_eq!(at("2025-06-01T12:30:00+02:00"), "2025-06-01T10:30:00+00:00");
        assert_eq!(at("2025-06-01 12:30:00+02:00"), "2025-06-01T10:30:00+00:00");
        assert_eq!(at("2024-02-29"), "2024-02-29T00:00:00+00:00");
    }

    #[test]
    fn impossible_dates_say_why() {
        let e = parse_utc("2020-02-30").unwrap_err();
        assert!(e.contains("February 2020 has 29 days"), "{e}");
        let e = parse_utc("2021-02-29T00:00:00").unwrap_err();
        assert!(e.contains("February 2021 has 28 days"), "{e}");
        let e = parse_utc("2025-04-31").unwrap_err();
        assert!(e.contains("April 2025 has 30 days"), "{e}");
        let e = parse_utc("2025-13-01").unwrap_err();
        assert!(e.contains("no month 13"), "{e}");
        let e = parse_utc("2025-06-01T25:00:00").unwrap_err();
        assert!(e.contains("time of day"), "{e}");
        let e = parse_utc("next tuesday").unwrap_err();
        assert!(e.contains("does not start with YYYY-MM-DD"), "{e}");
        assert!(parse_utc("2026-1-5").is_err());
        assert!(parse_utc("2026-01-15Tnoon")
            .unwrap_err()
            .contains("time of day"));
    }
}
