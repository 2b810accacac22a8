//! Cron expressions with crontab's meaning, on top of the `cron` crate.
//!
//! Accepted: standard 5-field crontab lines (minute hour day-of-month month day-of-week,
//! Sunday 0 or 7, names allowed, and crontab's rule that when both day fields are
//! restricted a match of *either* fires); `@yearly`-style shorthands; and the crate's own
//! 6/7-field forms (seconds first, optional year), passed through with the crate's meaning
//! (Sunday = 1 there). The crate differs from crontab in three ways, translated here:
//! it wants a seconds field, counts Sunday as 1, and requires both day fields to match.

use std::str::FromStr;

use chrono::{DateTime, TimeZone};

use crate::error::Error;

/// A parsed schedule. For a crontab line with both day fields restricted it holds two
/// crate schedules (day-of-month only, day-of-week only) and fires at the earlier.
#[derive(Debug, Clone)]
pub struct CronExpr {
    source: String,
    schedules: Vec<cron::Schedule>,
}

const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];

impl CronExpr {
    pub fn parse(expr: &str) -> Result<CronExpr, Error> {
        let source = expr.trim().to_string();
        let line = match source.as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => {
                return Err(Error::Config(format!(
                "unknown cron shorthand {s:?}: use @yearly, @monthly, @weekly, @daily or @hourly"
            )))
            }
            s => s,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let schedules = match fields.len() {
            5 => crontab_schedules(&fields)?,
            6 | 7 => vec![cron::Schedule::from_str(line)
                .map_err(|e| Error::Config(format!("invalid cron expression {source:?}: {e}")))?],
            n => {
                return Err(Error::Config(format!(
                "invalid cron expression {source:?}: {n} fields; expected 5 (crontab: minute hour \
                     day-of-month month day-of-week), 6 or 7 (seconds first), or @daily-style"
            )))
            }
        };
        Ok(CronExpr { source, schedules })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first fire time strictly after `after`.
    pub fn next_after<Z: TimeZone>(&self, after: &DateTime<Z>) -> Option<DateTime<Z>> {
        self.schedules
            .iter()
            .filter_map(|s| s.after(after).next())
            .min()
    }

    /// The next `n` fire times after `after`.
    pub fn upcoming<Z: TimeZone>(&self, after: &DateTime<Z>, n: usize) -> Vec<DateTime<Z>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after.clone();
        while out.len() < n {
            match self.next_after(&t) {
                Some(next) => {
                    t = next.clone();
                    out.push(next);
                }
                None => break,
            }
        }
        out
    }
}

fn crontab_schedules(f: &[&str]) -> Result<Vec<cron::Schedule>, Error> {
    // Validate each field on its own so the error names the field.
    for (i, name) in FIELD_NAMES.iter().enumerate() {
        let mut probe = ["0", "0", "*", "*", "*"];
        probe[i] = f[i];
        if i == 4 {
            translate_dow(f[4]).map_err(|e| field_error(name, f[4], &e))?;
            continue;
        }
        let line = format!("0 {}", probe.join(" "));
        cron::Schedule::from_str(&line).map_err(|e| field_error(name, f[i], &e.to_string()))?;
    }
    let dow = translate_dow(f[4]).map_err(|e| field_error("day-of-week", f[4], &e))?;
    let dom_restricted = !f[2].starts_with('*');
    let dow_restricted = !f[4].starts_with('*');
    let build = |dom: &str, dow: &str| {
        let line = format!("0 {} {} {} {} {}", f[0], f[1], dom, f[3], dow);
        cron::Schedule::from_str(&line)
            .map_err(|e| Error::Config(format!("invalid cron expression {:?}: {e}", f.join(" "))))
    };
    if dom_restricted && dow_restricted {
        // crontab: either day field matching fires.
        Ok(vec![build(f[2], "*")?, build("*", &dow)?])
    } else {
        Ok(vec![build(f[2], &dow)?])
    }
}

fn field_error(name: &str, value: &str, why: &str) -> Error {
    Error::Config(format!("invalid cron {name} field {value:?}: {why}"))
}

/// Translates a crontab day-of-week field (0-7, Sunday 0 or 7, names, lists, ranges,
/// steps) to the crate's numbering (1-7, Sunday 1) as an explicit list.
fn translate_dow(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let mut days = [false; 7]; // crontab numbering, 0 = Sunday
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step {s:?}"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (dow_value(a)?, dow_value(b)?)
        } else {
            let v = dow_value(range)?;
            (v, if part.contains('/') { 7 } else { v })
        };
        if lo > hi {
            return Err(format!("range {range:?} runs backwards"));
        }
        let mut d = lo;
        while d <= hi {
            days[(d % 7) as usize] = true;
            d += step;
        }
    }
    let list: Vec<String> = (0..7)
        .filter(|d| days[*d])
        .map(|d| (d + 1).to_string())
        .collect();
    Ok(list.join(","))
}

fn dow_value(s: &str) -> Result<u32, String> {
    let names = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    if let Some(i) = names.iter().position(|n| s.eq_ignore_ascii_case(n)) {
        return Ok(i as u32);
    }
    match s.parse::<u32>() {
        Ok(v) if v <= 7 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a day of the week (0-7, Sunday 0 or 7, or sun..sat)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, after: &str) -> String {
        CronExpr::parse(expr)
            .unwrap()
            .next_after(&at(after))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn five_fields_get_seconds() {
        assert_eq!(
            next("30 2 * * *", "2026-11-25T10:00:00Z"),
            "2026-11-26T02:30:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-25T10:07:00Z"),
            "2026-11-25T10:15:00+00:00"
        );
    }

    #[test]
    fn sunday_is_zero_or_seven() {
        // 2026-11-25 is a Wednesday; the next Sunday is the 29th.
        assert_eq!(
            next("0 3 * * 0", "2026-11-25T00:00:00Z"),
            "2026-11-29T03:00:00+00:00"
        );
        assert_eq!(
            next("0 3 * * 7", "2026-11-25T00:00:00Z"),
            "2026-11-29T03:00:00+00:00"
        );
        assert_eq!(
            next("0 3 * * sun", "2026-11-25T00:00:00Z"),
            "2026-11-29T03:00:00+00:00"
        );
        // Monday is 1 in crontab (2 in the crate).
        assert_eq!(
            next("0 3 * * 1", "2026-11-25T00:00:00Z"),
            "2026-11-30T03:00:00+00:00"
        );
        // 5-7 = Friday, Saturday, Sunday.
        assert_eq!(
            next("0 3 * * 5-7", "2026-11-25T00:00:00Z"),
            "2026-11-27T03:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 1-5", "2026-11-28T00:00:00Z"),
            "2026-11-30T00:00:00+00:00"
        );
    }

    #[test]
    fn either_day_field_fires_when_both_restricted() {
        // 1st of the month OR Friday: after Wed 25 Nov the next is Fri 27 Nov,
        // then Tue 1 Dec (a 1st, not a Friday).
        let e = CronExpr::parse("0 0 1 * 5").unwrap();
        let ts: Vec<String> = e
            .upcoming(&at("2026-11-25T00:00:00Z"), 3)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(
            ts,
            [
                "2026-11-27T00:00:00+00:00",
                "2026-12-01T00:00:00+00:00",
                "2026-12-04T00:00:00+00:00"
            ]
        );
        // With day-of-month unrestricted, only Fridays.
        assert_eq!(
            next("0 0 * * 5", "2026-11-28T00:00:00Z"),
            "2026-12-04T00:00:00+00:00"
        );
    }

    #[test]
    fn shorthands_and_crate_forms() {
        assert_eq!(
            next("@daily", "2026-11-25T10:00:00Z"),
            "2026-11-26T00:00:00+00:00"
        );
        assert_eq!(
            next("@weekly", "2026-11-25T10:00:00Z"),
            "2026-11-29T00:00:00+00:00"
        );
        assert_eq!(
            next("@monthly", "2026-11-25T10:00:00Z"),
            "2026-12-01T00:00:00+00:00"
        );
        // 6-field crate form keeps the crate's meaning (seconds first).
        assert_eq!(
            next("30 * * * * *", "2026-11-25T10:00:00Z"),
            "2026-11-25T10:00:30+00:00"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = CronExpr::parse("61 * * * *").unwrap_err().to_string();
        assert!(e.contains("minute field \"61\""), "{e}");
        let e = CronExpr::parse("0 25 * * *").unwrap_err().to_string();
        assert!(e.contains("hour field"), "{e}");
        let e = CronExpr::parse("0 0 32 * *").unwrap_err().to_string();
        assert!(e.contains("day-of-month field"), "{e}");
        let e = CronExpr::parse("0 0 * 13 *").unwrap_err().to_string();
        assert!(e.contains("month field"), "{e}");
        let e = CronExpr::parse("0 0 * * 8").unwrap_err().to_string();
        assert!(e.contains("day-of-week field"), "{e}");
        assert!(CronExpr::parse("0 0 * *")
            .unwrap_err()
            .to_string()
            .contains("4 fields"));
        assert!(CronExpr::parse("@sometimes").is_err());
    }
}
