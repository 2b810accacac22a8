//! `opsctl policy check`: every problem of a policy file at once, each with
//! file:line:col — unknown keys (with the nearest valid key), types, cron expressions,
//! durations, time zone, paths and key-file permissions.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value as Json;
use toml_edit::{ImDocument, Item, Table};

use crate::duration::{parse_duration, Age};
use crate::policy::{line_col, locate, Policy};
use crate::schedule::cron::CronExpr;

/// One problem found in a policy file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

/// The outcome of checking a policy.
#[derive(Debug)]
pub struct CheckOutcome {
    pub problems: Vec<Problem>,
    /// The effective policy, when the file could be read as one.
    pub policy: Option<Policy>,
}

/// Checks policy `text` read from `origin`.
pub fn check(text: &str, origin: &str) -> CheckOutcome {
    let doc = match ImDocument::parse(text.to_string()) {
        Ok(d) => d,
        Err(e) => {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            return CheckOutcome {
                problems: vec![Problem {
                    line,
                    column,
                    key: String::new(),
                    message: format!("TOML syntax error: {}", e.message().trim()),
                }],
                policy: None,
            };
        }
    };
    let mut problems = Vec::new();
    let mut schema = serde_json::to_value(Policy::default()).unwrap_or(Json::Null);
    // The keys of a [[repositories]] entry (the default policy has no entry to show them).
    if let Some(o) = schema.as_object_mut() {
        o.insert(
            "repositories".into(),
            serde_json::json!([crate::storage::config::RepositoryEntry::schema_example()]),
        );
    }
    walk_table(text, doc.as_table(), &schema, "", &mut problems);
    let policy = match toml::from_str::<Policy>(text) {
        Ok(p) => Some(p),
        Err(e) => {
            if !e.message().contains("unknown field") {
                let located = locate(text, origin, &e);
                let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
                let message = located
                    .splitn(4, ':')
                    .nth(3)
                    .map(|m| m.trim().to_string())
                    .unwrap_or(located);
                problems.push(Problem {
                    line,
                    column,
                    key: String::new(),
                    message,
                });
            }
            None
        }
    };
    semantic_checks(text, doc.as_table(), &mut problems);
    problems.sort_by_key(|p| (p.line, p.column));
    CheckOutcome { problems, policy }
}

fn span_of(text: &str, table: &Table, key: &str) -> (usize, usize) {
    table
        .key(key)
        .and_then(|k| k.span())
        .or_else(|| table.get(key).and_then(|i| i.span()))
        .map(|s| line_col(text, s.start))
        .unwrap_or((1, 1))
}

fn walk_table(text: &str, table: &Table, schema: &Json, path: &str, out: &mut Vec<Problem>) {
    let Some(known) = schema.as_object() else {
        return;
    };
    for (key, item) in table.iter() {
        let full = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        let Some(sub) = known.get(key) else {
            let (line, column) = span_of(text, table, key);
            let where_ = if path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in [{path}]")
            };
            let mut message = format!("unknown key `{key}` {where_}");
            if let Some(near) = nearest(key, known.keys().map(String::as_str)) {
                message.push_str(&format!(" (did you mean `{near}`?)"));
            } else {
                let valid: Vec<&str> = known.keys().map(String::as_str).collect();
                message.push_str(&format!("; valid keys: {}", valid.join(", ")));
            }
            out.push(Problem {
                line,
                column,
                key: full,
                message,
            });
            continue;
        };
        match item {
            Item::Table(t) => walk_table(text, t, sub, &full, out),
            Item::Value(toml_edit::Value::InlineTable(t)) => {
                let t = t.clone().into_table();
                walk_table(text, &t, sub, &full, out)
            }
            Item::ArrayOfTables(arr) => {
                if let Some(elem) = sub.as_array().and_then(|a| a.first()) {
                    for t in arr.iter() {
                        walk_table(text, t, elem, &full, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The closest key by edit distance, if close enough to be a likely typo.
fn nearest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (crate::text::edit_distance(key, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn str_at<'a>(table: &'a Table, path: &[&'a str]) -> Option<(&'a Table, &'a str, &'a str)> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get(p)?.as_table()?;
    }
    let v = t.get(last)?.as_str()?;
    Some((t, last, v))
}

fn semantic_checks(text: &str, root: &Table, out: &mut Vec<Problem>) {
    let mut push = |t: &Table, key: &str, path: &str, message: String| {
        let (line, column) = span_of(text, t, key);
        out.push(Problem {
            line,
            column,
            key: path.to_string(),
            message,
        });
    };
    // Every schedule is a cron expression.
    for (section, item) in root.iter() {
        let Some(t) = item.as_table() else { continue };
        for (key, v) in t.iter() {
            if key == "schedule" || key.ends_with("_schedule") {
                if let Some(expr) = v.as_str() {
                    if let Err(e) = CronExpr::parse(expr) {
                        push(t, key, &format!("{section}.{key}"), e.to_string());
                    }
                }
            }
        }
    }
    for path in [
        ["scheduler", "retry_backoff"],
        ["scheduler", "max_wait"],
        ["scheduler", "standby_poll"],
        ["scheduler", "stop_grace"],
        ["maintenance", "lock_timeout"],
        ["maintenance", "retry_backoff"],
        ["maintenance", "lock_wait"],
        ["basebackup", "archive_wait"],
    ] {
        if let Some((t, k, v)) = str_at(root, &path) {
            if let Err(e) = parse_duration(v) {
                push(t, k, &path.join("."), e.to_string());
            }
        }
    }
    if let Some((t, k, v)) = str_at(root, &["archive", "age"]) {
        if let Err(e) = Age::parse(v) {
            push(t, k, "archive.age", e.to_string());
        }
    }
    if let Some((t, k, v)) = str_at(root, &["scheduler", "timezone"]) {
        if v.parse::<chrono_tz::Tz>().is_err() {
            push(t, k, "scheduler.timezone", format!("unknown time zone {v:?}: use an IANA name such as \"UTC\" or \"Europe/Berlin\""));
        }
    }
    if let Some(b) = root.get("backup").and_then(Item::as_table) {
        if let Some(level) = b.get("compression_level").and_then(Item::as_integer) {
            let codec = b
                .get("compression")
                .and_then(Item::as_str)
                .and_then(|c| {
                    serde_json::from_value::<crate::backup::compress::Codec>(Json::from(c)).ok()
                })
                .unwrap_or_default();
            let level = i32::try_from(level).unwrap_or(i32::MAX);
            if let Err(e) = crate::backup::compress::Compression::new(codec, Some(level)) {
                push(b, "compression_level", "backup.compression_level", e);
            }
        }
    }
    if let Some((t, k, v)) = str_at(root, &["backup", "key_file"]) {
        match std::fs::metadata(v) {
            Err(e) => push(t, k, "backup.key_file", format!("key file {v}: {e}")),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => push(
                t,
                k,
                "backup.key_file",
                format!(
                    "key file {v} has mode {:o}: readable by group or others; run `chmod 600 {v}`",
                    m.permissions().mode() & 0o777
                ),
            ),
            Ok(_) => {}
        }
    }
    for path in [["backup", "dir"], ["archive", "export_dir"]] {
        if let Some((t, k, v)) = str_at(root, &path) {
            let p = Path::new(v);
            if p.exists() && !p.is_dir() {
                push(
                    t,
                    k,
                    &path.join("."),
                    format!("{v} exists and is not a directory"),
                );
            } else if !p.exists() && !p.parent().is_some_and(Path::is_dir) {
                push(
                    t,
                    k,
                    &path.join("."),
                    format!("neither {v} nor its parent directory exists"),
                );
            }
        }
    }
    if let Some((t, k, v)) = str_at(root, &["audit", "anchor_file"]) {
        let p = Path::new(v);
        let message = if p.is_dir() {
            Some(format!(
                "{v} is a directory; the anchor file is a file `audit seal` appends to"
            ))
        } else if !p.is_absolute() {
            Some(format!("{v} is a relative path; give an absolute one (audit seal runs from cron and the scheduler)"))
        } else if !p.parent().is_some_and(Path::is_dir) {
            Some(format!("the directory of {v} does not exist"))
        } else {
            None
        };
        if let Some(m) = message {
            push(t, k, "audit.anchor_file", m);
        }
    }
    repository_checks(root, &mut push);
    if let Some((t, k, v)) = str_at(root, &["reports", "textfile"]) {
        if !Path::new(v).parent().is_some_and(Path::is_dir) {
            push(
                t,
                k,
                "reports.textfile",
                format!("the directory of {v} does not exist"),
            );
        }
    }
    if let Some((t, k, v)) = str_at(root, &["reports", "min_server_version"]) {
        if crate::report::security::parse_version(v).is_none() {
            push(
                t,
                k,
                "reports.min_server_version",
                format!("min_server_version {v:?} is not a PostgreSQL version: write major.minor, e.g. \"15.10\""),
            );
        }
    }
}

/// `[[repositories]]`: each entry's problems (name, URL, S3 keys) and duplicate names,
/// each at its key (or at the entry's `name`/`url` when the key is absent).
fn repository_checks(root: &Table, push: &mut impl FnMut(&Table, &str, &str, String)) {
    use crate::storage::config::{check_entries, RepositoryEntry};
    let Some(arr) = root.get("repositories").and_then(Item::as_array_of_tables) else {
        return;
    };
    let tables: Vec<&Table> = arr.iter().collect();
    // Entries that do not even parse (types, unknown keys) are reported elsewhere; an
    // empty entry stands in for them so indexes stay aligned.
    let entries: Vec<RepositoryEntry> = tables
        .iter()
        .map(|t| {
            toml::from_str(&t.to_string()).unwrap_or_else(|_| RepositoryEntry {
                name: t
                    .get("name")
                    .and_then(Item::as_str)
                    .unwrap_or("")
                    .to_string(),
                url: "/".into(),
                ..Default::default()
            })
        })
        .collect();
    let dir_set = root
        .get("backup")
        .and_then(Item::as_table)
        .is_some_and(|b| b.contains_key("dir"));
    for (i, key, message) in check_entries(&entries, dir_set) {
        let t = tables[i];
        let at = [key, "name", "url"]
            .into_iter()
            .find(|k| t.contains_key(k))
            .unwrap_or(key);
        push(t, at, &format!("repositories[{i}].{key}"), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed_with_location() {
        let text = "[backup]\nretension = 3\nschedule = \"61 * * * *\"\n\n[archiv]\nage = 1\n\n[archive]\nage = \"5 m\"\n\n[scheduler]\ntimezone = \"Mars/Olympus\"\n";
        let out = check(text, "p.toml");
        let msgs: Vec<String> = out
            .problems
            .iter()
            .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
            .collect();
        let joined = msgs.join("\n");
        assert!(
            joined.contains("2:1 unknown key `retension` in [backup] (did you mean `retention`?)"),
            "{joined}"
        );
        assert!(joined.contains("3:1 invalid cron minute field"), "{joined}");
        assert!(
            joined.contains("5:2 unknown key `archiv` at the top level (did you mean `archive`?)"),
            "{joined}"
        );
        assert!(joined.contains("9:1 invalid duration \"5 m\""), "{joined}");
        assert!(joined.contains("12:1 unknown time zone"), "{joined}");
        assert!(out.policy.is_none());
    }

    #[test]
    fn the_shipped_policies_are_clean() {
        for (name, text) in [
            ("opsctl.toml", include_str!("../policies/opsctl.toml")),
            (
                "production.toml",
                include_str!("../policies/examples/production.toml"),
            ),
        ] {
            let out = check(text, name);
            let problems: Vec<_> = out
                .problems
                .iter()
                .filter(|p| {
                    !p.key.ends_with("dir")
                        && !p.key.ends_with("key_file")
                        && !p.key.ends_with("textfile")
                })
                .collect();
            assert!(problems.is_empty(), "{name}: {problems:?}");
        }
    }

    #[test]
    fn type_errors_are_located() {
        let out = check("[backup.retention]\ndaily = \"seven\"\n", "p.toml");
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert_eq!(out.problems[0].line, 2);
        assert!(
            out.problems[0].message.contains("invalid type"),
            "{:?}",
            out.problems
        );
    }
}

#[cfg(test)]
mod repository_tests {
    use super::check;

    fn problems(text: &str) -> Vec<String> {
        check(text, "p.toml")
            .problems
            .iter()
            .map(|p| format!("{}:{} {} {}", p.line, p.column, p.key, p.message))
            .collect()
    }

    #[test]
    fn a_good_set_of_repositories_is_clean() {
        let text = "[[repositories]]\nname = \"fast\"\nurl = \"/tmp\"\n\n[repositories.retention]\nkeep_last = 2\n\n[[repositories]]\nname = \"offsite\"\nurl = \"s3://bkt/opsctl\"\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\npath_style = true\nregion = \"us-east-1\"\npart_size = \"8MiB\"\nconcurrency = 4\n\n[repositories.retention]\ndaily = 30\n";
        let out = check(text, "p.toml");
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let p = out.policy.unwrap();
        assert_eq!(p.repositories.len(), 2);
        assert_eq!(p.repositories[0].retention.as_ref().unwrap().keep_last, 2);
        assert_eq!(p.repositories[1].retention.as_ref().unwrap().daily, 30);
    }

    #[test]
    fn every_repository_problem_is_listed_at_its_key() {
        let text = "[backup]\ndir = \"/tmp\"\n\n[[repositories]]\nname = \"local\"\nurl = \"s3://b\"\npart_size = \"1MiB\"\nconcurrency = 0\n\n[[repositories]]\nname = \"x\"\nurl = \"ftp://h/p\"\n\n[[repositories]]\nname = \"x\"\nurl = \"/var/tmp\"\nendpoint = \"https://minio:9000\"\n\n[[repositories]]\nname = \"y\"\nurl = \"s3://b\"\nendpont = \"https://minio:9000\"\n\n[[repositories]]\nname = \"z\"\nurl = \"s3://b\"\n[repositories.retention]\ndayly = 3\n";
        let all = problems(text);
        let joined = all.join("\n");
        for want in [
            "5:1 repositories[0].name repository name \"local\" is taken by [backup] dir",
            "7:1 repositories[0].part_size part_size 1.0 MiB is below the 5 MiB",
            "8:1 repositories[0].concurrency concurrency must be at least 1",
            "12:1 repositories[1].url repository URL \"ftp://h/p\": scheme \"ftp\" is not supported",
            "15:1 repositories[2].name repository name \"x\" is used twice",
            "17:1 repositories[2].endpoint `endpoint` is an S3 setting",
            "22:1 repositories.endpont unknown key `endpont` in [repositories] (did you mean `endpoint`?)",
            "28:1 repositories.retention.dayly unknown key `dayly` in [repositories.retention] (did you mean `daily`?)",
        ] {
            assert!(joined.contains(want), "missing {want:?} in\n{joined}");
        }
        assert_eq!(all.len(), 8, "{joined}");
    }

    #[test]
    fn plain_http_needs_allow_http_and_a_name_is_required() {
        let joined = problems(
            "[[repositories]]\nurl = \"s3://b/p\"\nendpoint = \"http://127.0.0.1:9000\"\n",
        )
        .join("\n");
        assert!(
            joined.contains("2:1 repositories[0].name a repository needs a `name`"),
            "{joined}"
        );
        assert!(joined.contains("3:1 repositories[0].endpoint endpoint \"http://127.0.0.1:9000\" is plain HTTP: set allow_http = true"), "{joined}");
    }
}
