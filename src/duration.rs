//! Durations and ages as people write them in policies and flags: "90 seconds",
//! "30 minutes", "2 hours", "7 days", "18 months", "1 year 6 months", "1h 30min".
//!
//! Every fixed duration, flag or policy key, goes through [`parse_flag`] (`90`, `60s`,
//! `5m`, `1h30m`, "2 hours"; `m` is minutes). Ages such as `[archive] age` are an [`Age`]:
//! months and years are calendar units there (an archive age of "18 months" on 31 August
//! means the last day of February a year and a half earlier), and a bare `m`/`M` is
//! refused (minutes or months?).

use std::time::Duration;

use chrono::{DateTime, Months, Utc};

use crate::error::Error;

/// A span of calendar months plus a fixed duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Age {
    pub months: u32,
    pub fixed: Duration,
}

impl Age {
    pub fn parse(text: &str) -> Result<Age, Error> {
        let bad = |why: &str| {
            Error::Config(format!(
                "invalid duration {text:?}: {why}; write e.g. \"90 seconds\", \"30 minutes\", \"2 hours\", \
                 \"7 days\", \"2 weeks\", \"18 months\", \"1 year\""
            ))
        };
        let mut age = Age::default();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad("it is empty"));
        }
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| bad("number too large"))?;
            rest = rest[digits..].trim_start();
            let unit_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = rest[unit_len..]
                .trim_start()
                .trim_start_matches(',')
                .trim_start();
            let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
            match unit {
                "s" | "sec" | "secs" | "second" | "seconds" => age.fixed += secs(1),
                "min" | "mins" | "minute" | "minutes" => age.fixed += secs(60),
                "h" | "hr" | "hrs" | "hour" | "hours" => age.fixed += secs(3600),
                "d" | "day" | "days" => age.fixed += secs(86_400),
                "w" | "week" | "weeks" => age.fixed += secs(604_800),
                "month" | "months" | "mon" => age.months += n as u32,
                "y" | "year" | "years" => age.months += (n as u32).saturating_mul(12),
                "m" | "M" => return Err(bad("\"m\" is ambiguous (minutes or months?)")),
                "" => return Err(bad("a unit is missing after the number")),
                other => return Err(bad(&format!("unknown unit {other:?}"))),
            }
        }
        Ok(age)
    }

    /// `now` minus this age.
    pub fn before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let t = now
            .checked_sub_months(Months::new(self.months))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        t - chrono::Duration::from_std(self.fixed).unwrap_or(chrono::Duration::zero())
    }

    /// A fixed duration; refuses calendar units where a fixed span is needed.
    pub fn as_duration(&self) -> Result<Duration, Error> {
        if self.months > 0 {
            return Err(Error::Config(
                "months and years are calendar units and cannot be used here; use days or weeks"
                    .into(),
            ));
        }
        Ok(self.fixed)
    }
}

/// Parses a fixed duration of a policy key: the same parser as the flags ([`parse_flag`]),
/// so `90`, `60s`, `5m`, `1h30m` and "30 minutes" mean the same in a file and on the
/// command line.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    parse_flag(text)
}

/// Parses a duration given as a command-line flag, where the short forms people type are
/// expected: `90s`, `30m` (minutes), `2h`, `1h30m`, `500ms`, `7d`, `2w`, `2 hours`, and a
/// bare number of seconds (`45`, `0.5`). Calendar units are not accepted here.
pub fn parse_flag(text: &str) -> Result<Duration, Error> {
    let bad = |why: String| {
        Error::Config(format!(
            "invalid duration {text:?}: {why} (examples: 90s, 30m, 2h, 1h30m, 7d)"
        ))
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if let Ok(n) = t.parse::<f64>() {
        return if n.is_finite() && n >= 0.0 {
            Ok(Duration::from_secs_f64(n))
        } else {
            Err(bad("not a number of seconds".into()))
        };
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad("expected a number".into()));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| bad("bad number".into()))?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].to_ascii_lowercase();
        let secs = match unit.as_str() {
            "ms" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "" => return Err(bad(format!("a unit is missing after {n}"))),
            other => return Err(bad(format!("unknown unit {other:?}"))),
        };
        total += n * secs;
        rest = rest[unit_len..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    if total > 100.0 * 365.0 * 86_400.0 {
        return Err(bad("longer than a century".into()));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spelled_and_short_units() {
        assert_eq!(
            parse_duration("90 seconds").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration("1h 30min").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_duration("2 days").unwrap(),
            Duration::from_secs(172_800)
        );
        assert_eq!(Age::parse("18 months").unwrap().months, 18);
        assert_eq!(Age::parse("1 year, 6 months").unwrap().months, 18);
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            "5",
            "m",
            "5m",
            "5 M",
            "five days",
            "3 fortnights",
            "-1 day",
        ] {
            assert!(Age::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("1 month").is_err());
    }

    #[test]
    fn flags_take_short_forms() {
        assert_eq!(parse_flag("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_flag("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_flag("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_flag("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_flag("2 hours").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_flag("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_flag("2w").unwrap(), Duration::from_secs(1_209_600));
        for bad in ["", "x", "5x", "h", "-1s", "3 fortnights", "1 month"] {
            assert!(parse_flag(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn policy_keys_and_flags_share_one_parser() {
        for (text, secs) in [
            ("90", 90),
            ("60s", 60),
            ("5m", 300),
            ("1h30m", 5400),
            ("30 minutes", 1800),
            ("60 seconds", 60),
            ("2 hours", 7200),
        ] {
            assert_eq!(
                parse_flag(text).unwrap(),
                Duration::from_secs(secs),
                "{text}"
            );
            assert_eq!(
                parse_duration(text).unwrap(),
                parse_flag(text).unwrap(),
                "{text}"
            );
        }
        for bad in ["", "5x", "1 month", "-1s"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("invalid duration") && e.contains("1h30m"), "{e}");
        }
    }

    #[test]
    fn calendar_months_before() {
        let now = DateTime::parse_from_rfc3339("2026-08-31T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = Age::parse("18 months").unwrap().before(now);
        assert_eq!(t.to_rfc3339(), "2025-02-28T12:00:00+00:00");
    }
}
