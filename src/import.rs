//! Validated JSON import: a streaming reader (`json`), per-table column rules (required
//! fields, types, exact numeric(20,8), `side`, timestamps, lengths), then per batch either
//! (trades without --upsert) key and user probes and COPY straight into the table, or COPY
//! into a temporary staging table, checks against the database (referenced users, taken
//! emails, ids of other rows) and one merge; all in one transaction.

pub mod json;

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::SinkExt;
use serde::Serialize;

use crate::db::{self, quote_ident, ConnSettings, Connection};
use crate::error::Error;
use json::{Item, Reader, Value};

/// The values `trades.side` may take (compared case-insensitively, stored lower-case).
pub const SIDES: &[&str] = &["long", "short", "buy", "sell"];

/// Digits a numeric(20,8) holds before and after the point.
const NUMERIC_INT_DIGITS: usize = 12;
const NUMERIC_SCALE: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Users,
    Trades,
    Positions,
    AccountTotals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text(usize),
    Int,
    Numeric,
    /// A numeric(20,8) that must be greater than zero (trade quantity and entry price:
    /// the direction is `side`, never a sign).
    PositiveNumeric,
    Timestamp,
    Side,
}

#[derive(Debug)]
struct Col {
    name: &'static str,
    kind: Kind,
    required: bool,
    /// Filled with current_timestamp when absent (created_at, last_updated).
    default_now: bool,
}

const fn col(name: &'static str, kind: Kind, required: bool) -> Col {
    Col {
        name,
        kind,
        required,
        default_now: false,
    }
}

const fn now_col(name: &'static str) -> Col {
    Col {
        name,
        kind: Kind::Timestamp,
        required: false,
        default_now: true,
    }
}

struct Spec {
    name: &'static str,
    cols: &'static [Col],
    /// Columns identifying a row (all required).
    key: &'static [&'static str],
    /// An optional serial `id` column (kept when given; the sequence is moved past it).
    serial_id: bool,
}

use Kind::*;

const USERS: Spec = Spec {
    name: "users",
    cols: &[
        col("id", Int, false),
        col("username", Text(50), true),
        col("email", Text(100), true),
        now_col("created_at"),
    ],
    key: &["username"],
    serial_id: true,
};

const TRADES: Spec = Spec {
    name: "trades",
    cols: &[
        col("id", Text(100), true),
        col("user_id", Int, false),
        col("symbol", Text(10), true),
        col("side", Side, true),
        col("quantity", PositiveNumeric, true),
        col("entry_price", PositiveNumeric, true),
        col("exit_price", Numeric, false),
        col("entry_time", Timestamp, true),
        col("exit_time", Timestamp, false),
        col("realized_pnl", Numeric, false),
        col("commission", Numeric, false),
        col("model_id", Text(50), false),
        now_col("created_at"),
    ],
    key: &["id"],
    serial_id: false,
};

const POSITIONS: Spec = Spec {
    name: "positions",
    cols: &[
        col("id", Int, false),
        col("user_id", Int, true),
        col("symbol", Text(10), true),
        col("quantity", Numeric, true),
        col("entry_price", Numeric, true),
        col("current_price", Numeric, false),
        col("margin", Numeric, false),
        col("unrealized_pnl", Numeric, false),
        col("leverage", Int, false),
        now_col("last_updated"),
    ],
    key: &["user_id", "symbol"],
    serial_id: true,
};

const ACCOUNT_TOTALS: Spec = Spec {
    name: "account_totals",
    cols: &[
        col("id", Int, false),
        col("user_id", Int, true),
        col("timestamp", Timestamp, true),
        col("realized_pnl", Numeric, false),
        col("total_unrealized_pnl", Numeric, false),
        col("total_margin", Numeric, false),
        col("total_commission", Numeric, false),
        now_col("created_at"),
    ],
    key: &["user_id", "timestamp"],
    serial_id: true,
};

impl Table {
    fn spec(self) -> &'static Spec {
        match self {
            Table::Users => &USERS,
            Table::Trades => &TRADES,
            Table::Positions => &POSITIONS,
            Table::AccountTotals => &ACCOUNT_TOTALS,
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

/// What to import and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub table: Table,
    pub upsert: bool,
    pub batch_size: usize,
    pub reject_file: Option<PathBuf>,
    /// Replace an existing reject file (otherwise the import refuses to end by replacing it).
    pub overwrite_reject_file: bool,
}

/// The outcome: every row of the file lands in exactly one of the five counters
/// (inserted, duplicate, updated, unchanged, rejected).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub table: String,
    pub source: String,
    pub rows: u64,
    pub inserted: u64,
    pub duplicate: u64,
    pub updated: u64,
    /// `--upsert`: rows whose key exists with exactly these values (nothing written).
    pub unchanged: u64,
    pub rejected: u64,
    pub batches: u64,
    pub elapsed_ms: u64,
    pub rows_per_second: u64,
    pub reject_file: Option<String>,
}

/// Progress: bytes read and rows done so far.
pub type Progress = Box<dyn Fn(u64, u64) + Send + Sync>;

// ---------------------------------------------------------------------------------------
// Value rules

/// Checks a numeric(20,8) value given as JSON number text or a numeric string, exactly:
/// returns its plain decimal text, or why it does not fit (never rounds).
pub fn numeric_20_8(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let bad = || format!("{raw:?} is not a decimal number");
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => {
            let e: i64 = body[i + 1..].parse().map_err(|_| bad())?;
            (&body[..i], e)
        }
        None => (body, 0),
    };
    let (int, frac) = match mant.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mant, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // value = digits × 10^(exp - frac.len())
    let digits: String = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok("0".into());
    }
    if exp.abs() > 1000 {
        return Err(format!("{raw} is out of range for numeric(20,8)"));
    }
    let mut e = exp - frac.len() as i64;
    let mut d = digits.to_string();
    while e < 0 && d.ends_with('0') {
        d.pop();
        e += 1;
    }
    let scale = if e < 0 { (-e) as usize } else { 0 };
    if scale > NUMERIC_SCALE {
        return Err(format!(
            "{raw} has {scale} decimal places; numeric(20,8) holds at most {NUMERIC_SCALE} \
             (values are never rounded)"
        ));
    }
    let int_digits = d.len() as i64 + e;
    if int_digits > NUMERIC_INT_DIGITS as i64 {
        return Err(format!(
            "{raw} is out of range for numeric(20,8): at most {NUMERIC_INT_DIGITS} digits \
             before the decimal point"
        ));
    }
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if e >= 0 {
        out.push_str(&d);
        out.push_str(&"0".repeat(e as usize));
    } else if int_digits > 0 {
        out.push_str(&d[..int_digits as usize]);
        out.push('.');
        out.push_str(&d[int_digits as usize..]);
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat((-int_digits) as usize));
        out.push_str(&d);
    }
    Ok(out)
}

/// Parses RFC 3339 (offset converted to UTC) or `YYYY-MM-DD HH:MM:SS[.fff]` (taken as UTC).
pub fn timestamp(s: &str) -> Result<String, String> {
    let t = s.trim();
    // The common `YYYY-MM-DD HH:MM:SS` (or with `T`, or `Z`) without parsing a format.
    if let Some(plain) = plain_timestamp(t) {
        return Ok(plain);
    }
    let naive = if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        dt.with_timezone(&Utc).naive_utc()
    } else if let Some(n) = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    {
        n
    } else {
        return Err(format!(
            "{s:?} is not a timestamp (RFC 3339 like 2024-03-01T12:00:00Z, or \
             YYYY-MM-DD HH:MM:SS)"
        ));
    };
    // Display is `YYYY-MM-DD HH:MM:SS[.fraction]`, what PostgreSQL reads.
    Ok(naive.to_string())
}

/// `YYYY-MM-DD[ T]HH:MM:SS[Z]` checked by hand (a real date and time), as PostgreSQL reads it.
fn plain_timestamp(t: &str) -> Option<String> {
    let b = t.as_bytes();
    let body = match b.len() {
        19 => b,
        20 if b[19] == b'Z' => &b[..19],
        _ => return None,
    };
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if !digits.iter().all(|&i| body[i].is_ascii_digit())
        || body[4] != b'-'
        || body[7] != b'-'
        || !(body[10] == b' ' || body[10] == b'T')
        || body[13] != b':'
        || body[16] != b':'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t[r].parse::<u32>().ok();
    let date = chrono::NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)?;
    date.and_hms_opt(n(11..13)?, n(14..16)?, n(17..19)?)?;
    let mut out = t[..19].to_string();
    out.replace_range(10..11, " ");
    Some(out)
}

fn integer(raw: &str) -> Result<i32, String> {
    let t = raw.trim();
    let ok = !t.is_empty()
        && t.strip_prefix('-')
            .unwrap_or(t)
            .bytes()
            .all(|b| b.is_ascii_digit())
        && t != "-";
    if !ok {
        return Err(format!("{raw:?} is not an integer"));
    }
    t.parse::<i32>()
        .map_err(|_| format!("{raw} is out of range for integer"))
}

/// A validated row: COPY-ready values in the spec's column order.
#[derive(Debug, Clone)]
struct Row {
    line: usize,
    raw: String,
    values: Vec<Option<String>>,
    key: String,
    /// Fast path: the referenced user, and where the row's COPY text sits in `Batch::copy`.
    user_id: Option<i32>,
    copy: std::ops::Range<usize>,
}

/// Validates one object against the table's rules.
fn validate(spec: &Spec, fields: Vec<(String, Value)>) -> Result<Vec<Option<String>>, String> {
    let mut values: Vec<Option<String>> = vec![None; spec.cols.len()];
    let mut seen = vec![false; spec.cols.len()];
    for (k, v) in fields {
        let Some(i) = spec.cols.iter().position(|c| c.name == k) else {
            return Err(format!(
                "unknown field {k:?} for {}: expected {}",
                spec.name,
                spec.cols
                    .iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        if seen[i] {
            return Err(format!("field {k:?} is given twice"));
        }
        seen[i] = true;
        let c = &spec.cols[i];
        let text = match (v, c.kind) {
            (Value::Null, _) => None,
            (Value::String(s), Text(max)) => {
                let n = s.chars().count();
                if n > max {
                    return Err(format!("{k} is {n} characters long; at most {max} allowed"));
                }
                if s.contains('\0') {
                    return Err(format!("{k} contains a NUL character"));
                }
                if n == 0 && c.required {
                    return Err(format!("{k} is empty"));
                }
                Some(s)
            }
            (Value::String(s), Side) => {
                let l = s.to_ascii_lowercase();
                if !SIDES.contains(&l.as_str()) {
                    return Err(format!("side {s:?} is not one of {}", SIDES.join(", ")));
                }
                Some(l)
            }
            (Value::String(s) | Value::Number(s), Numeric) => {
                Some(numeric_20_8(&s).map_err(|e| format!("{k}: {e}"))?)
            }
            (Value::String(s) | Value::Number(s), PositiveNumeric) => {
                let v = numeric_20_8(&s).map_err(|e| format!("{k}: {e}"))?;
                if v == "0" || v.starts_with('-') {
                    return Err(format!(
                        "{k} must be greater than 0, not {s} (the trade's direction is its \
                         side: long/short, buy/sell)"
                    ));
                }
                Some(v)
            }
            (Value::String(s) | Value::Number(s), Int) => {
                Some(integer(&s).map_err(|e| format!("{k}: {e}"))?.to_string())
            }
            (Value::String(s), Timestamp) => Some(timestamp(&s).map_err(|e| format!("{k}: {e}"))?),
            (other, kind) => {
                let want = match kind {
                    Text(_) | Side => "a string",
                    Int => "an integer",
                    Numeric | PositiveNumeric => "a number or a numeric string",
                    Timestamp => "a timestamp string",
                };
                return Err(format!("{k} must be {want}, not {}", other.kind()));
            }
        };
        if text.is_none() && c.required {
            return Err(format!("{k} is required and may not be null"));
        }
        values[i] = text;
    }
    if let Some(c) = spec
        .cols
        .iter()
        .zip(&seen)
        .find(|(c, s)| c.required && !**s)
    {
        return Err(format!("required field {:?} is missing", c.0.name));
    }
    Ok(values)
}

fn key_of(spec: &Spec, values: &[Option<String>]) -> String {
    let mut k = String::new();
    for name in spec.key {
        let i = spec.cols.iter().position(|c| c.name == *name).unwrap();
        k.push_str(values[i].as_deref().unwrap_or(""));
        k.push('\u{1}');
    }
    k
}

fn copy_escape(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => out.extend_from_slice(b"\\N"),
        Some(s) => {
            for b in s.bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    _ => out.push(b),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading and validating (on a thread of its own)

struct Reject {
    line: usize,
    reason: String,
    raw: String,
}

struct Batch {
    rows: Vec<Row>,
    rejects: Vec<Reject>,
    /// Rows dropped inside the batch as repeats of a key (skip mode).
    duplicate: u64,
    /// Rows superseded inside the batch by a later one with the same key (upsert mode).
    superseded: u64,
    read: u64,
    /// Input bytes consumed up to the end of this batch (for progress).
    bytes_end: u64,
    /// Fast path: the rows as COPY text for the target table, in `rows` order.
    copy: Vec<u8>,
}

enum Msg {
    Batch(Batch),
    Fatal(Error),
    /// The whole input was read: only then may the import commit.
    End,
}

struct Parser {
    spec: &'static Spec,
    upsert: bool,
    batch_size: usize,
    keep_going: bool,
    source: String,
    /// Fast path: encode rows as COPY text for the target table; absent values of
    /// `default_now` columns take this time (the transaction's current_timestamp).
    fast_now: Option<String>,
}

impl Parser {
    fn run(self, input: Box<dyn Read + Send>, tx: tokio::sync::mpsc::Sender<Msg>) {
        let mut reader = Reader::new(input);
        reader.keep_raw(self.keep_going);
        let email_idx = self.spec.cols.iter().position(|c| c.name == "email");
        let username_idx = self.spec.cols.iter().position(|c| c.name == "username");
        let user_id_idx = self.spec.cols.iter().position(|c| c.name == "user_id");
        let fail_after = reader_fault_after();
        let mut items = 0u64;
        loop {
            let mut batch = Batch {
                rows: Vec::with_capacity(self.batch_size.min(100_000)),
                rejects: Vec::new(),
                duplicate: 0,
                superseded: 0,
                read: 0,
                bytes_end: 0,
                copy: Vec::new(),
            };
            let mut keys: HashMap<String, usize> = HashMap::new();
            let mut emails: HashMap<String, (String, usize)> = HashMap::new();
            let mut end = false;
            while batch.rows.len() < self.batch_size && batch.rejects.len() < self.batch_size {
                let item = match reader.next_item() {
                    Ok(Some(i)) => i,
                    Ok(None) => {
                        if let Some(e) = reader.take_io_error() {
                            let _ = tx.blocking_send(Msg::Fatal(Error::Io {
                                context: format!("cannot read {}", self.source),
                                source: e,
                            }));
                            return;
                        }
                        end = true;
                        break;
                    }
                    Err(e) => {
                        if let Some(io) = reader.take_io_error() {
                            let _ = tx.blocking_send(Msg::Fatal(Error::Io {
                                context: format!("cannot read {}", self.source),
                                source: io,
                            }));
                            return;
                        }
                        if self.keep_going && reader.is_lines() {
                            let raw = reader.skip_line();
                            batch.read += 1;
                            batch.rejects.push(Reject {
                                line: e.line,
                                reason: e.to_string(),
                                raw,
                            });
                            continue;
                        }
                        let _ = tx.blocking_send(Msg::Fatal(Error::Other(format!(
                            "{}: {e}; nothing was imported",
                            self.source
                        ))));
                        return;
                    }
                };
                batch.read += 1;
                items += 1;
                if fail_after == Some(items) {
                    panic!("test hook: the import reader fails after {items} item(s)");
                }
                let (line, result, raw) = match item {
                    Item::Object { line, fields, raw } => (line, validate(self.spec, fields), raw),
                    Item::NotObject { line, kind, raw } => {
                        (line, Err(format!("expected an object, found {kind}")), raw)
                    }
                };
                let values = match result {
                    Ok(v) => v,
                    Err(reason) => {
                        if !self.keep_going {
                            let _ =
                                tx.blocking_send(Msg::Fatal(invalid(&self.source, line, &reason)));
                            return;
                        }
                        batch.rejects.push(Reject { line, reason, raw });
                        continue;
                    }
                };
                if let (Some(ei), Some(ui)) = (email_idx, username_idx) {
                    let email = values[ei].clone().unwrap_or_default();
                    let user = values[ui].clone().unwrap_or_default();
                    if let Some((other, other_line)) = emails.get(&email) {
                        if *other != user {
                            let reason = format!(
                                "email {email:?} is also given for username {other:?} at line {other_line}"
                            );
                            if !self.keep_going {
                                let _ = tx.blocking_send(Msg::Fatal(invalid(
                                    &self.source,
                                    line,
                                    &reason,
                                )));
                                return;
                            }
                            batch.rejects.push(Reject { line, reason, raw });
                            continue;
                        }
                    } else {
                        emails.insert(email, (user, line));
                    }
                }
                let key = key_of(self.spec, &values);
                let mut row = Row {
                    line,
                    // Kept only for the reject file (rows the database checks reject).
                    raw: if self.keep_going { raw } else { String::new() },
                    values,
                    key,
                    user_id: None,
                    copy: 0..0,
                };
                match keys.get(&row.key) {
                    Some(&i) if self.upsert => {
                        batch.rows[i] = row;
                        batch.superseded += 1;
                    }
                    Some(_) => batch.duplicate += 1,
                    None => {
                        if let Some(now) = &self.fast_now {
                            row.user_id = user_id_idx
                                .and_then(|i| row.values[i].as_deref())
                                .and_then(|v| v.parse().ok());
                            let start = batch.copy.len();
                            encode_copy_row(&mut batch.copy, self.spec, &row.values, now);
                            row.copy = start..batch.copy.len();
                            row.values = Vec::new();
                        }
                        keys.insert(row.key.clone(), batch.rows.len());
                        batch.rows.push(row);
                    }
                }
            }
            batch.bytes_end = reader.bytes_read();
            if batch.read > 0 && tx.blocking_send(Msg::Batch(batch)).is_err() {
                return;
            }
            if end {
                let _ = tx.blocking_send(Msg::End);
                return;
            }
        }
    }
}

/// Test hook (only in builds with the `test-hooks` feature): `OPSCTL_TEST_IMPORT_READER_PANIC=N`
/// makes the reader thread panic after reading N items, after earlier batches loaded.
#[cfg(feature = "test-hooks")]
fn reader_fault_after() -> Option<u64> {
    std::env::var("OPSCTL_TEST_IMPORT_READER_PANIC")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(not(feature = "test-hooks"))]
fn reader_fault_after() -> Option<u64> {
    None
}

/// One COPY text line of the table's columns; absent `default_now` values become `now`.
fn encode_copy_row(out: &mut Vec<u8>, spec: &Spec, values: &[Option<String>], now: &str) {
    for (i, (c, v)) in spec.cols.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match v {
            None if c.default_now => copy_escape(out, Some(now)),
            v => copy_escape(out, v.as_deref()),
        }
    }
    out.push(b'\n');
}

fn invalid(source: &str, line: usize, reason: &str) -> Error {
    Error::Verify(format!(
        "{source}: line {line}: {reason}. Nothing was imported; fix the row, or pass \
         --reject-file PATH to set invalid rows aside and import the rest"
    ))
}

// ---------------------------------------------------------------------------------------
// Loading

const STAGE: &str = "opsctl_import_stage";

/// Every check and merge of a batch must probe the target's key indexes once per staged
/// row. With a freshly loaded table (stale statistics) the planner otherwise hashes the
/// whole target table on every batch, which makes an import O(table size) per batch.
const PROBE_BY_INDEX: &str = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// The SQL of one import, built once from the spec (identifiers quoted).
struct Sql {
    create_stage: String,
    truncate: String,
    copy: String,
    checks: Vec<String>,
    delete_rejected: String,
    update: Option<String>,
    matched: Option<String>,
    insert: String,
    bump_sequence: Option<String>,
}

impl Sql {
    fn new(spec: &Spec, upsert: bool) -> Sql {
        let t = quote_ident(spec.name);
        let st = quote_ident(STAGE);
        let cols: Vec<String> = spec.cols.iter().map(|c| quote_ident(c.name)).collect();
        let col_list = cols.join(", ");
        let key_match = spec
            .key
            .iter()
            .map(|k| format!("t.{q} = s.{q}", q = quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let mut checks = Vec::new();
        if spec.cols.iter().any(|c| c.name == "user_id") {
            checks.push(format!(
                "SELECT s.line, 'user_id ' || s.user_id || ' does not exist in users' FROM {st} s \
                 WHERE s.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {u} u WHERE u.id = s.user_id)",
                u = quote_ident("users")
            ));
        }
        if spec.name == "users" {
            checks.push(format!(
                "SELECT s.line, 'email ' || s.email || ' is already taken by user ' || t.username \
                 FROM {st} s JOIN {t} t ON t.email = s.email AND t.username <> s.username"
            ));
        }
        if spec.serial_id {
            checks.push(format!(
                "SELECT s.line, 'id ' || s.id || ' already belongs to another row of {name}' \
                 FROM {st} s JOIN {t} t ON t.id = s.id WHERE NOT ({key_match})",
                name = spec.name
            ));
        }
        let non_key: Vec<&Col> = spec
            .cols
            .iter()
            .filter(|c| !(spec.key.contains(&c.name) || (spec.serial_id && c.name == "id")))
            .collect();
        let update = upsert.then(|| {
            let sets = non_key
                .iter()
                .map(|c| {
                    let q = quote_ident(c.name);
                    if c.default_now && c.name == "created_at" {
                        format!("{q} = coalesce(s.{q}, t.{q})")
                    } else if c.default_now {
                        format!("{q} = coalesce(s.{q}, current_timestamp)")
                    } else {
                        format!("{q} = s.{q}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            // Only rows whose values change are written (and audited): an absent
            // created_at/last_updated counts as unchanged.
            let old_vals = non_key
                .iter()
                .map(|c| format!("t.{}", quote_ident(c.name)))
                .collect::<Vec<_>>()
                .join(", ");
            let new_vals = non_key
                .iter()
                .map(|c| {
                    let q = quote_ident(c.name);
                    if c.default_now {
                        format!("coalesce(s.{q}, t.{q})")
                    } else {
                        format!("s.{q}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "UPDATE {t} t SET {sets} FROM {st} s WHERE {key_match} \
                 AND ROW({old_vals}) IS DISTINCT FROM ROW({new_vals})"
            )
        });
        // Under --upsert: staged rows whose key exists (updated or not).
        let matched = upsert.then(|| {
            format!(
                "SELECT count(*) FROM {st} s WHERE EXISTS (SELECT 1 FROM {t} t WHERE {key_match})"
            )
        });
        let select = spec
            .cols
            .iter()
            .map(|c| {
                let q = quote_ident(c.name);
                if spec.serial_id && c.name == "id" {
                    format!(
                        "coalesce(s.{q}, nextval(pg_get_serial_sequence('{}', 'id')))",
                        spec.name
                    )
                } else if c.default_now {
                    format!("coalesce(s.{q}, current_timestamp)")
                } else {
                    format!("s.{q}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        // Serial ids are handed out in file order.
        let order = if spec.serial_id {
            " ORDER BY s.line"
        } else {
            ""
        };
        let insert = format!(
            "INSERT INTO {t} ({col_list}) SELECT {select} FROM {st} s \
             WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE {key_match}){order}"
        );
        let bump_sequence = spec.serial_id.then(|| {
            format!(
                "SELECT setval(x.seq, x.m) FROM (SELECT pg_get_serial_sequence('{name}', 'id')::regclass AS seq, \
                 (SELECT max(id) FROM {t}) AS m) x \
                 WHERE x.m IS NOT NULL AND x.m > coalesce(pg_sequence_last_value(x.seq), 0)",
                name = spec.name
            )
        });
        Sql {
            create_stage: format!(
                "CREATE TEMP TABLE {st} ON COMMIT DROP AS SELECT 0::bigint AS line, {col_list} FROM {t} WITH NO DATA"
            ),
            truncate: format!("TRUNCATE {st}"),
            copy: format!("COPY {st} (line, {col_list}) FROM STDIN"),
            checks,
            delete_rejected: format!("DELETE FROM {st} WHERE line = ANY($1)"),
            update,
            matched,
            insert,
            bump_sequence,
        }
    }
}

/// The reject file: written to a temporary name beside it and put in place only when the
/// import ends (`finish`), so an interrupted import (Ctrl-C) leaves no half-written file;
/// dropped unfinished, it removes the temporary file. An existing file is replaced only
/// when `overwrite` (`--force`).
struct RejectWriter {
    out: Option<(PathBuf, BufWriter<std::fs::File>)>,
    tmp: PathBuf,
    overwrite: bool,
}

/// Why an existing reject file is not replaced.
pub fn reject_file_exists(path: &std::path::Path) -> Error {
    Error::Config(format!(
        "reject file {} already exists; pass --force to replace it, or choose another \
         --reject-file",
        path.display()
    ))
}

impl RejectWriter {
    fn create(path: Option<&PathBuf>, overwrite: bool) -> Result<RejectWriter, Error> {
        let Some(p) = path else {
            return Ok(RejectWriter {
                out: None,
                tmp: PathBuf::new(),
                overwrite,
            });
        };
        if !overwrite && p.symlink_metadata().is_ok() {
            return Err(reject_file_exists(p));
        }
        let tmp = crate::fsutil::temp_path(p);
        let _ = std::fs::remove_file(&tmp);
        let f = crate::fsutil::create_new(&tmp, 0o644).map_err(|e| {
            Error::Other(format!(
                "cannot create the reject file {} (its directory must be writable): {e}",
                p.display()
            ))
        })?;
        Ok(RejectWriter {
            out: Some((p.clone(), BufWriter::new(f))),
            tmp,
            overwrite,
        })
    }

    fn write(&mut self, r: &Reject) -> Result<(), Error> {
        if let Some((path, w)) = self.out.as_mut() {
            let row: serde_json::Value = serde_json::from_str(&r.raw)
                .unwrap_or_else(|_| serde_json::Value::String(r.raw.clone()));
            let line = serde_json::json!({"line": r.line, "reason": r.reason, "row": row});
            writeln!(w, "{line}").map_err(Error::io(format!("cannot write {}", path.display())))?;
        }
        Ok(())
    }

    /// Flushes, fsyncs and puts the file in place (never over an existing file unless
    /// `overwrite`).
    fn finish(mut self) -> Result<(), Error> {
        let Some((path, w)) = self.out.take() else {
            return Ok(());
        };
        let tmp = std::mem::take(&mut self.tmp);
        let result = (|| {
            let f = w.into_inner().map_err(|e| Error::Io {
                context: format!("cannot write {}", tmp.display()),
                source: e.into_error(),
            })?;
            f.sync_all()
                .map_err(Error::io(format!("cannot sync {}", tmp.display())))?;
            if self.overwrite {
                std::fs::rename(&tmp, &path)
                    .map_err(Error::io(format!("cannot rename to {}", path.display())))?;
            } else {
                // A link fails if the name was taken meanwhile: never replaces a file.
                std::fs::hard_link(&tmp, &path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        reject_file_exists(&path)
                    } else {
                        Error::Io {
                            context: format!("cannot create {}", path.display()),
                            source: e,
                        }
                    }
                })?;
                let _ = std::fs::remove_file(&tmp);
            }
            crate::fsutil::sync_dir(&path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

impl Drop for RejectWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Imports `input` into the table; one transaction for the whole file.
pub async fn import(
    settings: &ConnSettings,
    input: Box<dyn Read + Send>,
    source: &str,
    opts: &Options,
    progress: Option<Progress>,
) -> Result<Summary, Error> {
    let start = Instant::now();
    let spec = opts.table.spec();
    let conn = db::connect(settings).await?;
    let mut rejects = RejectWriter::create(opts.reject_file.as_ref(), opts.overwrite_reject_file)?;
    conn.batch_execute("BEGIN").await.map_err(Error::db)?;
    // Trades without --upsert: no staging table, rows are COPYed straight into the table.
    let mut fast = if opts.table == Table::Trades && !opts.upsert {
        match Fast::prepare(&conn, spec).await {
            Ok(f) => f,
            Err(e) => {
                let _ = conn.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
    } else {
        None
    };
    // One batch queued while one loads and one is read: memory stays at ~3 batches.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let parser = Parser {
        spec,
        upsert: opts.upsert,
        batch_size: opts.batch_size.max(1),
        keep_going: opts.reject_file.is_some(),
        source: source.to_string(),
        fast_now: fast.as_ref().map(|f| f.now.clone()),
    };
    let handle = std::thread::spawn(move || parser.run(input, tx));
    let sql = Sql::new(spec, opts.upsert);
    let mut summary = Summary {
        table: spec.name.to_string(),
        source: source.to_string(),
        reject_file: opts.reject_file.as_ref().map(|p| p.display().to_string()),
        ..Summary::default()
    };
    let result = async {
        conn.batch_execute(PROBE_BY_INDEX)
            .await
            .map_err(Error::db)?;
        if fast.is_none() {
            conn.batch_execute(&sql.create_stage)
                .await
                .map_err(Error::db_ctx(format!(
                    "cannot create the staging table for {} (has `opsctl migrate up` run on this database?)",
                    spec.name
                )))?;
        }
        let mut complete = false;
        while let Some(msg) = rx.recv().await {
            let batch = match msg {
                Msg::Batch(b) => b,
                Msg::Fatal(e) => return Err(e),
                Msg::End => {
                    complete = true;
                    break;
                }
            };
            let bytes = batch.bytes_end;
            match fast.as_mut() {
                Some(f) => {
                    f.load_batch(&conn, batch, &mut summary, &mut rejects, source)
                        .await?
                }
                None => {
                    load_batch(&conn, &sql, batch, &mut summary, &mut rejects, source).await?
                }
            }
            if let Some(p) = &progress {
                p(bytes, summary.rows);
            }
        }
        if !complete {
            // The reader stopped without saying why (it panicked): never commit a part.
            return Err(Error::Other(format!(
                "the reader of {source} stopped before the end of the input; nothing was imported"
            )));
        }
        if let Some(q) = &sql.bump_sequence {
            conn.batch_execute(q).await.map_err(Error::db_ctx(
                "cannot move the id sequence past the imported ids",
            ))?;
        }
        Ok(())
    }
    .await;
    drop(rx);
    // A reader that panicked fails the import whatever the load loop saw.
    let result = match (handle.join(), result) {
        (Err(panic), Ok(())) => Err(Error::Other(format!(
            "the reader of {source} failed ({}); nothing was imported",
            panic_message(&panic)
        ))),
        (_, r) => r,
    };
    match result {
        Ok(()) => {
            conn.batch_execute("COMMIT").await.map_err(Error::db_ctx(
                "import failed at COMMIT; nothing was imported",
            ))?;
            rejects.finish()?;
        }
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK").await;
            let _ = rejects.finish();
            return Err(e);
        }
    }
    summary.elapsed_ms = start.elapsed().as_millis() as u64;
    summary.rows_per_second = (summary.rows * 1000)
        .checked_div(summary.elapsed_ms)
        .unwrap_or(summary.rows);
    Ok(summary)
}

/// The message of a panic payload, for the error that reports it.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// The direct path for a table whose key is a plain indexed lookup (trades by id): per
/// batch one query for unknown users (cached), one for ids already in the table (it also
/// sees the rows of earlier batches of this transaction), then COPY of the rest straight
/// into the table. The server touches each row once, as `psql \copy` does.
struct Fast {
    table: &'static str,
    /// The transaction's current_timestamp, for absent created_at values.
    now: String,
    copy: String,
    probe_keys: tokio_postgres::Statement,
    probe_users: tokio_postgres::Statement,
    known_users: HashSet<i32>,
}

/// Whether COPY may write the table directly (COPY FROM is refused under row-level
/// security), and the transaction's time as the staging path's `current_timestamp` gives it.
const FAST_SETUP: &str = "SELECT row_security_active($1::text), \
     to_char(current_timestamp::timestamp, 'YYYY-MM-DD HH24:MI:SS.US')";
const FAST_SEQSCAN_OFF: &str = "SET LOCAL enable_seqscan = off";
const FAST_PROBE_USERS: &str = "SELECT id FROM users WHERE id = ANY($1)";
/// Whether `opsctl archive` made archive.<table> (its keys count as taken).
const FAST_ARCHIVE_PRESENT: &str = "SELECT to_regclass(format('archive.%I', $1::text)) IS NOT NULL";

impl Fast {
    /// None when the table is under row-level security for this role (staging path then).
    async fn prepare(conn: &Connection, spec: &Spec) -> Result<Option<Fast>, Error> {
        let ctx = || {
            format!(
                "cannot prepare the import into {} (has `opsctl migrate up` run on this database?)",
                spec.name
            )
        };
        let row = conn
            .query_one(FAST_SETUP, &[&spec.name])
            .await
            .map_err(Error::db_ctx(ctx()))?;
        if row.get::<_, bool>(0) {
            return Ok(None);
        }
        let t = quote_ident(spec.name);
        let key = quote_ident(spec.key[0]);
        // A key that `opsctl archive` moved to archive.<table> is taken too: importing the
        // same file again must not bring archived rows back into the live table.
        let archived: bool = conn
            .query_one(FAST_ARCHIVE_PRESENT, &[&spec.name])
            .await
            .map_err(Error::db_ctx(ctx()))?
            .get(0);
        let mut probe = format!("SELECT {key} FROM {t} WHERE {key} = ANY($1)");
        if archived {
            let arch = db::quote_qualified("archive", spec.name);
            probe.push_str(&format!(
                " UNION ALL SELECT {key} FROM {arch} WHERE {key} = ANY($1)"
            ));
        }
        let probe_keys = conn.prepare(&probe).await.map_err(Error::db_ctx(ctx()))?;
        let probe_users = conn
            .prepare(FAST_PROBE_USERS)
            .await
            .map_err(Error::db_ctx(ctx()))?;
        // Every probe is a key lookup; never a scan of the growing table.
        conn.batch_execute(FAST_SEQSCAN_OFF)
            .await
            .map_err(Error::db)?;
        let cols: Vec<String> = spec.cols.iter().map(|c| quote_ident(c.name)).collect();
        Ok(Some(Fast {
            table: spec.name,
            now: row.get(1),
            copy: format!("COPY {t} ({}) FROM STDIN", cols.join(", ")),
            probe_keys,
            probe_users,
            known_users: HashSet::new(),
        }))
    }

    async fn load_batch(
        &mut self,
        conn: &Connection,
        batch: Batch,
        summary: &mut Summary,
        rejects: &mut RejectWriter,
        source: &str,
    ) -> Result<(), Error> {
        account_batch(&batch, summary, rejects)?;
        if batch.rows.is_empty() {
            return Ok(());
        }
        let mut keep = vec![true; batch.rows.len()];
        // Referenced users (rows are in file order, so the first bad one is the lowest line).
        let mut unknown: Vec<i32> = batch
            .rows
            .iter()
            .filter_map(|r| r.user_id)
            .filter(|u| !self.known_users.contains(u))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            unknown.dedup();
            for row in conn
                .query(&self.probe_users, &[&unknown])
                .await
                .map_err(Error::db)?
            {
                self.known_users.insert(row.get(0));
            }
            for (i, r) in batch.rows.iter().enumerate() {
                let Some(u) = r.user_id.filter(|u| !self.known_users.contains(u)) else {
                    continue;
                };
                let reason = format!("user_id {u} does not exist in users");
                if rejects.out.is_none() {
                    return Err(invalid(source, r.line, &reason));
                }
                rejects.write(&Reject {
                    line: r.line,
                    reason,
                    raw: r.raw.clone(),
                })?;
                summary.rejected += 1;
                keep[i] = false;
            }
        }
        // Keys already in the table (earlier imports, or earlier batches of this one).
        let ids: Vec<&str> = batch
            .rows
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| r.key.strip_suffix('\u{1}').unwrap_or(&r.key))
            .collect();
        if !ids.is_empty() {
            let taken: HashSet<String> = conn
                .query(&self.probe_keys, &[&ids])
                .await
                .map_err(Error::db)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if !taken.is_empty() {
                for (r, k) in batch.rows.iter().zip(keep.iter_mut()) {
                    if *k && taken.contains(r.key.strip_suffix('\u{1}').unwrap_or(&r.key)) {
                        *k = false;
                        summary.duplicate += 1;
                    }
                }
            }
        }
        let kept = keep.iter().filter(|k| **k).count();
        if kept == 0 {
            return Ok(());
        }
        let buf = if kept == batch.rows.len() {
            batch.copy
        } else {
            let mut b = Vec::with_capacity(batch.copy.len());
            for (r, _) in batch.rows.iter().zip(&keep).filter(|(_, k)| **k) {
                b.extend_from_slice(&batch.copy[r.copy.clone()]);
            }
            b
        };
        let sink = conn
            .copy_in::<_, Bytes>(self.copy.as_str())
            .await
            .map_err(Error::db_ctx(format!(
                "cannot start COPY into {}",
                self.table
            )))?;
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from(buf))
            .await
            .map_err(Error::db_ctx(format!("COPY into {} failed", self.table)))?;
        let n = sink
            .finish()
            .await
            .map_err(Error::db_ctx(format!("COPY into {} failed", self.table)))?;
        summary.inserted += n;
        Ok(())
    }
}

/// Counts what the reader decided about a batch (read, duplicate inside the file,
/// superseded under --upsert, rejected) and writes its rejects: the same for both paths.
fn account_batch(
    batch: &Batch,
    summary: &mut Summary,
    rejects: &mut RejectWriter,
) -> Result<(), Error> {
    summary.batches += 1;
    summary.rows += batch.read;
    summary.duplicate += batch.duplicate;
    summary.updated += batch.superseded;
    summary.rejected += batch.rejects.len() as u64;
    for r in &batch.rejects {
        rejects.write(r)?;
    }
    Ok(())
}

async fn load_batch(
    conn: &Connection,
    sql: &Sql,
    batch: Batch,
    summary: &mut Summary,
    rejects: &mut RejectWriter,
    source: &str,
) -> Result<(), Error> {
    account_batch(&batch, summary, rejects)?;
    if batch.rows.is_empty() {
        return Ok(());
    }
    conn.batch_execute(&sql.truncate).await.map_err(Error::db)?;
    let mut buf: Vec<u8> = Vec::with_capacity(batch.rows.len() * 160);
    for r in &batch.rows {
        buf.extend_from_slice(r.line.to_string().as_bytes());
        for v in &r.values {
            buf.push(b'\t');
            copy_escape(&mut buf, v.as_deref());
        }
        buf.push(b'\n');
    }
    let sink = conn
        .copy_in::<_, Bytes>(sql.copy.as_str())
        .await
        .map_err(Error::db_ctx("cannot start COPY into the staging table"))?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(buf))
        .await
        .map_err(Error::db_ctx("COPY into the staging table failed"))?;
    sink.finish()
        .await
        .map_err(Error::db_ctx("COPY into the staging table failed"))?;
    // Checks against the database.
    let mut bad: Vec<(i64, String)> = Vec::new();
    for q in &sql.checks {
        for row in conn.query(q.as_str(), &[]).await.map_err(Error::db)? {
            let line: i64 = row.get(0);
            if !bad.iter().any(|(l, _)| *l == line) {
                bad.push((line, row.get(1)));
            }
        }
    }
    let mut staged = batch.rows.len() as u64;
    if !bad.is_empty() {
        bad.sort();
        if rejects.out.is_none() {
            let (line, reason) = &bad[0];
            return Err(invalid(source, *line as usize, reason));
        }
        let lines: Vec<i64> = bad.iter().map(|(l, _)| *l).collect();
        conn.execute(sql.delete_rejected.as_str(), &[&lines])
            .await
            .map_err(Error::db)?;
        for (line, reason) in &bad {
            let raw = batch
                .rows
                .iter()
                .find(|r| r.line as i64 == *line)
                .map(|r| r.raw.clone())
                .unwrap_or_default();
            rejects.write(&Reject {
                line: *line as usize,
                reason: reason.clone(),
                raw,
            })?;
        }
        summary.rejected += bad.len() as u64;
        staged -= bad.len() as u64;
    }
    let mut updated = 0;
    let mut matched = 0;
    if let (Some(q), Some(m)) = (&sql.update, &sql.matched) {
        let n: i64 = conn
            .query_one(m.as_str(), &[])
            .await
            .map_err(Error::db)?
            .get(0);
        matched = n as u64;
        updated = conn
            .execute(q.as_str(), &[])
            .await
            .map_err(Error::db_ctx("updating existing rows failed"))?;
    }
    let inserted = conn
        .execute(sql.insert.as_str(), &[])
        .await
        .map_err(Error::db_ctx("inserting the batch failed"))?;
    summary.inserted += inserted;
    summary.updated += updated;
    // Under --upsert a staged row whose key exists is updated or unchanged; otherwise it
    // is a duplicate. Whatever was neither inserted nor matched (a concurrent writer took
    // the key) counts as a duplicate too.
    summary.unchanged += matched.saturating_sub(updated);
    summary.duplicate += staged.saturating_sub(inserted + matched.max(updated));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_exact() {
        assert_eq!(numeric_20_8("1.10").unwrap(), "1.1");
        assert_eq!(numeric_20_8("0.00000001").unwrap(), "0.00000001");
        assert_eq!(
            numeric_20_8("123456789012.12345678").unwrap(),
            "123456789012.12345678"
        );
        assert_eq!(numeric_20_8("-1.5e-3").unwrap(), "-0.0015");
        assert_eq!(numeric_20_8("2E3").unwrap(), "2000");
        assert_eq!(numeric_20_8("0.000000010").unwrap(), "0.00000001");
        assert_eq!(numeric_20_8("000").unwrap(), "0");
        assert_eq!(numeric_20_8(" 5 ").unwrap(), "5");
        assert!(numeric_20_8("0.000000001")
            .unwrap_err()
            .contains("9 decimal places"));
        assert!(numeric_20_8("1234567890123")
            .unwrap_err()
            .contains("out of range"));
        assert!(numeric_20_8("1e12").is_err());
        for bad in [
            "", "abc", "1.2.3", "NaN", "Infinity", "1,5", "--1", "1e", ".",
        ] {
            assert!(numeric_20_8(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            timestamp("2024-03-01T12:00:00Z").unwrap(),
            "2024-03-01 12:00:00"
        );
        assert_eq!(
            timestamp("2024-03-01T12:00:00+02:00").unwrap(),
            "2024-03-01 10:00:00"
        );
        assert_eq!(
            timestamp("2024-03-01 12:00:00").unwrap(),
            "2024-03-01 12:00:00"
        );
        assert_eq!(
            timestamp("2024-03-01 12:00:00.25").unwrap(),
            "2024-03-01 12:00:00.250"
        );
        assert_eq!(
            timestamp("2024-02-29T23:59:59").unwrap(),
            "2024-02-29 23:59:59"
        );
        assert!(timestamp("2023-02-29 12:00:00").is_err());
        assert!(timestamp("2024-03-01 24:00:00").is_err());
        assert!(timestamp("2024-13-01 12:00:00").is_err());
        assert!(timestamp("yesterday").is_err());
        assert!(timestamp("2024-03-01").is_err());
    }

    fn obj(s: &str) -> Vec<(String, Value)> {
        let mut r = Reader::new(s.as_bytes());
        match r.next_item().unwrap().unwrap() {
            Item::Object { fields, .. } => fields,
            _ => panic!(),
        }
    }

    #[test]
    fn trade_rules() {
        let ok = r#"{"id":"t1","user_id":1,"symbol":"BTCUSDT","side":"LONG","quantity":"0.5","entry_price":64000.12345678,"entry_time":"2024-01-01 00:00:00"}"#;
        let v = validate(&TRADES, obj(ok)).unwrap();
        assert_eq!(v[3].as_deref(), Some("long"));
        let cases = [
            (
                r#"{"id":"t1","symbol":"X","side":"up","quantity":1,"entry_price":1,"entry_time":"2024-01-01 00:00:00"}"#,
                "not one of",
            ),
            (
                r#"{"id":"t1","symbol":"X","side":"long","quantity":1,"entry_price":1}"#,
                "entry_time",
            ),
            (
                r#"{"id":"t1","symbol":"X","side":"long","quantity":true,"entry_price":1,"entry_time":"2024-01-01 00:00:00"}"#,
                "must be a number",
            ),
            (
                r#"{"id":"t1","symbol":"TOOLONGSYMBOL","side":"long","quantity":1,"entry_price":1,"entry_time":"2024-01-01 00:00:00"}"#,
                "at most 10",
            ),
            (
                r#"{"id":"t1","symbol":"X","side":"long","quantity":1,"entry_price":1,"entry_time":"2024-01-01 00:00:00","extra":1}"#,
                "unknown field",
            ),
            (
                r#"{"id":"t1","symbol":"X","side":"long","quantity":1,"entry_price":1,"entry_time":"2024-01-01 00:00:00","user_id":1.5}"#,
                "not an integer",
            ),
            (
                r#"{"id":null,"symbol":"X","side":"long","quantity":1,"entry_price":1,"entry_time":"2024-01-01 00:00:00"}"#,
                "may not be null",
            ),
        ];
        for (json, want) in cases {
            let e = validate(&TRADES, obj(json)).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
    }

    #[test]
    fn copy_escaping() {
        let mut b = Vec::new();
        copy_escape(&mut b, Some("a\tb\\c\nd"));
        copy_escape(&mut b, None);
        assert_eq!(b, b"a\\tb\\\\c\\nd\\N");
    }
}
