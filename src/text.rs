//! Words and numbers for text renderers, one helper each: timestamps
//! (`2026-12-02 13:41 UTC`; JSON uses RFC 3339), counts with thousands separators,
//! plurals ("1 batch", "2 batches"), rounded rates (`88,980 rows/s`) and durations.

use chrono::{DateTime, Utc};

/// A time as text output shows it: `2026-12-02 13:41 UTC`.
pub fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time as JSON output shows it: RFC 3339 (`2026-12-02T13:41:07.123456+00:00`).
pub fn ts_json(t: &DateTime<Utc>) -> String {
    t.to_rfc3339()
}

/// Any integer the helpers below take.
pub trait Int: Copy {
    fn wide(self) -> i128;
}

macro_rules! int {
    ($($t:ty),*) => {$(impl Int for $t { fn wide(self) -> i128 { self as i128 } })*};
}
int!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, usize);

/// `1234567` → `1,234,567`.
pub fn count(n: impl Int) -> String {
    let n = n.wide();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The plural of an English noun: `batch` → `batches`, `entry` → `entries`,
/// `index` → `indexes`, `row` → `rows`.
pub fn plural_of(noun: &str) -> String {
    let vowel_before_y = noun
        .chars()
        .rev()
        .nth(1)
        .is_some_and(|c| "aeiou".contains(c));
    if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| noun.ends_with(e))
    {
        format!("{noun}es")
    } else if noun.ends_with('y') && !vowel_before_y {
        format!("{}ies", &noun[..noun.len() - 1])
    } else {
        format!("{noun}s")
    }
}

/// `1 batch`, `2 batches`, `1,000 rows`.
pub fn plural(n: impl Int, noun: &str) -> String {
    let n = n.wide();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {}", count(n), plural_of(noun))
    }
}

/// A rate rounded to a whole number: `88,980 rows/s` (`unit` is plural already).
pub fn rate(done: f64, secs: f64, unit: &str) -> String {
    let per = if secs > 0.0 { done / secs } else { 0.0 };
    format!("{} {unit}/s", count(per.round() as i128))
}

/// "3d 4h", "2h 5m", "5m 2s", "12s": durations as on-call people read them.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

/// As [`duration`], with tenths under a minute: "0.4s", "12.3s", "2m 5s".
pub fn duration_short(secs: f64) -> String {
    if secs < 60.0 {
        format!("{:.1}s", secs.max(0.0))
    } else {
        duration(secs)
    }
}

/// Levenshtein distance, for "did you mean …?" suggestions (policy keys, connection options).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T13:41:07.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ts(&t), "2026-12-02 13:41 UTC");
        assert!(ts_json(&t).starts_with("2026-12-02T13:41:07.5"));
    }

    #[test]
    fn counts_plurals_rates() {
        assert_eq!(count(0u64), "0");
        assert_eq!(count(999i64), "999");
        assert_eq!(count(1_234_567u64), "1,234,567");
        assert_eq!(count(-1_000i64), "-1,000");
        assert_eq!(plural(1u32, "batch"), "1 batch");
        assert_eq!(plural(2u32, "batch"), "2 batches");
        assert_eq!(plural(0u32, "row"), "0 rows");
        assert_eq!(plural(1_000u32, "row"), "1,000 rows");
        assert_eq!(plural(3u32, "entry"), "3 entries");
        assert_eq!(plural(2u32, "day"), "2 days");
        assert_eq!(plural(2u32, "index"), "2 indexes");
        assert_eq!(rate(88_980.4 * 2.0, 2.0, "rows"), "88,980 rows/s");
        assert_eq!(rate(5.0, 0.0, "rows"), "0 rows/s");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(1.75), "1s");
        assert_eq!(duration(42.0), "42s");
        assert_eq!(duration(125.0), "2m 5s");
        assert_eq!(duration(7300.0), "2h 1m");
        assert_eq!(duration(90000.0), "1d 1h");
        assert_eq!(duration_short(0.43), "0.4s");
        assert_eq!(duration_short(125.0), "2m 5s");
    }
}
