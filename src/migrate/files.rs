//! Migration files: `V{n}__{name}.sql` naming and ordering, CRLF/BOM-normalised SHA-256
//! checksums, the `-- opsctl:no-transaction` directive, and splitting a file into
//! statements with the line each one starts on.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::Error;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// The first-line directive that runs a file's statements one at a time in autocommit.
pub const NO_TRANSACTION: &str = "-- opsctl:no-transaction";

/// One migration file, its text normalised (no BOM, LF line ends).
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: u64,
    pub name: String,
    pub file: String,
    pub sql: String,
    pub checksum: String,
    pub no_transaction: bool,
}

/// One statement of a file and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub line: usize,
    pub sql: String,
}

impl Migration {
    /// Builds a migration from a file name and its raw contents.
    pub fn from_file(file: &str, raw: &str) -> Result<Migration, Error> {
        let (version, name) = parse_file_name(file)?;
        let sql = normalise(raw);
        let no_transaction = sql
            .lines()
            .next()
            .is_some_and(|l| l.trim().eq_ignore_ascii_case(NO_TRANSACTION));
        Ok(Migration {
            version,
            name,
            file: file.to_string(),
            checksum: checksum_normalised(&sql),
            sql,
            no_transaction,
        })
    }

    /// The file's statements in order.
    pub fn statements(&self) -> Vec<Statement> {
        split_statements(&self.sql)
    }
}

/// Parses `V{n}__{name}.sql` into (n, name).
pub fn parse_file_name(file: &str) -> Result<(u64, String), Error> {
    let bad = || {
        Error::Config(format!(
            "migration file {file:?} is not named V{{n}}__{{name}}.sql (e.g. V2__add_index.sql)"
        ))
    };
    let stem = file.strip_suffix(".sql").ok_or_else(bad)?;
    let rest = stem.strip_prefix('V').ok_or_else(bad)?;
    let (num, name) = rest.split_once("__").ok_or_else(bad)?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return Err(bad());
    }
    let version: u64 = num.parse().map_err(|_| bad())?;
    if version == 0 {
        return Err(Error::Config(format!(
            "migration file {file:?}: versions start at 1"
        )));
    }
    Ok((version, name.to_string()))
}

/// Removes a UTF-8 BOM and turns CRLF (and lone CR) line ends into LF.
pub fn normalise(raw: &str) -> String {
    let s = raw.strip_prefix('\u{feff}').unwrap_or(raw);
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// SHA-256 (hex) of the normalised text.
pub fn checksum(raw: &str) -> String {
    checksum_normalised(&normalise(raw))
}

fn checksum_normalised(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Builds and orders a set of migrations from (file name, contents) pairs; refuses
/// duplicate versions.
pub fn collect<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<Migration>, Error> {
    let mut by_version: BTreeMap<u64, Migration> = BTreeMap::new();
    for (file, raw) in files {
        let m = Migration::from_file(file, raw)?;
        if let Some(other) = by_version.get(&m.version) {
            return Err(Error::Config(format!(
                "two migration files have version {}: {} and {}; give one of them another number",
                m.version, other.file, m.file
            )));
        }
        by_version.insert(m.version, m);
    }
    Ok(by_version.into_values().collect())
}

/// The migrations embedded in the binary at build time.
pub fn embedded() -> Result<Vec<Migration>, Error> {
    collect(embedded::EMBEDDED.iter().copied())
}

/// The migrations of a directory (`*.sql` files; other files are ignored).
pub fn from_dir(dir: &Path) -> Result<Vec<Migration>, Error> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        Error::Config(format!(
            "cannot read migrations directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in rd {
        let entry = entry.map_err(Error::io(format!(
            "cannot list migrations in {}",
            dir.display()
        )))?;
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !name.ends_with(".sql") || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(Error::io(format!(
            "cannot read migration {}",
            path.display()
        )))?;
        files.push((name, text));
    }
    collect(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

/// Loads the migrations: from `dir` when given, else the embedded ones.
pub fn load(dir: Option<&Path>) -> Result<Vec<Migration>, Error> {
    match dir {
        Some(d) => from_dir(d),
        None => embedded(),
    }
}

/// Splits SQL text into statements at top-level semicolons, aware of quotes ('…', E'…',
/// "…"), dollar quoting ($tag$…$tag$), line and (nested) block comments, and
/// `BEGIN ATOMIC … END` bodies. Statements holding only comments are dropped.
pub fn split_statements(sql: &str) -> Vec<Statement> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut start = 0;
    let mut start_line: Option<usize> = None; // line of first significant char
    let mut atomic_depth = 0usize;
    let mut word = String::new();
    let mut prev_word = String::new();
    let push = |out: &mut Vec<Statement>, from: usize, to: usize, l: Option<usize>| {
        if let Some(l) = l {
            let text = sql[from..to].trim();
            if !text.is_empty() {
                out.push(Statement {
                    line: l,
                    sql: text.to_string(),
                });
            }
        }
    };
    while i < b.len() {
        let c = b[i];
        // Words, for BEGIN ATOMIC … END.
        if c.is_ascii_alphanumeric() || c == b'_' {
            word.push(c.to_ascii_lowercase() as char);
            start_line.get_or_insert(line);
            i += 1;
            continue;
        } else if !word.is_empty() {
            if prev_word == "begin" && word == "atomic" {
                atomic_depth += 1;
            } else if word == "end" && atomic_depth > 0 && prev_word != "begin" {
                // `END` closes the innermost BEGIN ATOMIC (CASE … END inside is rare in
                // SQL-standard bodies and also balanced by its own CASE).
                atomic_depth -= 1;
            } else if word == "case" && atomic_depth > 0 {
                atomic_depth += 1;
            }
            prev_word = std::mem::take(&mut word);
        }
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if b[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            b'\'' | b'"' => {
                start_line.get_or_insert(line);
                let escapes = c == b'\''
                    && i > 0
                    && matches!(b[i - 1], b'E' | b'e')
                    && (i < 2 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_'));
                i += 1;
                while i < b.len() {
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == c {
                        if b.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            b'$' => {
                start_line.get_or_insert(line);
                // $tag$ where tag is empty or an identifier not starting with a digit.
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let is_tag = j < b.len()
                    && b[j] == b'$'
                    && !b.get(i + 1).is_some_and(|d| d.is_ascii_digit())
                    && !(i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
                if is_tag {
                    let tag = &sql[i..=j];
                    let body_start = j + 1;
                    match sql[body_start..].find(tag) {
                        Some(off) => {
                            line += sql[i..body_start + off].matches('\n').count();
                            i = body_start + off + tag.len();
                        }
                        None => {
                            line += sql[i..].matches('\n').count();
                            i = b.len();
                        }
                    }
                } else {
                    i += 1;
                }
            }
            b';' if atomic_depth == 0 => {
                push(&mut out, start, i, start_line);
                i += 1;
                start = i;
                start_line = None;
                prev_word.clear();
            }
            _ => {
                if !c.is_ascii_whitespace() {
                    start_line.get_or_insert(line);
                }
                i += 1;
            }
        }
    }
    push(&mut out, start, b.len(), start_line);
    out
}

/// The 1-based line, within `sql`, of a 1-based character position (as the server
/// reports it for a statement).
pub fn line_of_position(sql: &str, position: usize) -> usize {
    let upto: String = sql.chars().take(position.saturating_sub(1)).collect();
    upto.matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            parse_file_name("V12__add_index.sql").unwrap(),
            (12, "add_index".into())
        );
        for bad in [
            "V1_x.sql",
            "v1__x.sql",
            "V__x.sql",
            "Vx__y.sql",
            "V1__.sql",
            "V0__a.sql",
            "V1__a.txt",
        ] {
            assert!(parse_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksum_ignores_crlf_and_bom() {
        let a = checksum("CREATE TABLE a();\nSELECT 1;\n");
        assert_eq!(a, checksum("\u{feff}CREATE TABLE a();\r\nSELECT 1;\r\n"));
        assert_ne!(a, checksum("CREATE TABLE a ();\nSELECT 1;\n"));
    }

    #[test]
    fn directive() {
        let m = Migration::from_file("V2__x.sql", "-- opsctl:no-transaction\r\nSELECT 1;").unwrap();
        assert!(m.no_transaction);
        let m = Migration::from_file("V2__x.sql", "SELECT 1;\n-- opsctl:no-transaction\n").unwrap();
        assert!(!m.no_transaction);
    }

    #[test]
    fn ordering_and_duplicates() {
        let ms = collect([("V10__b.sql", "x"), ("V2__a.sql", "y")]).unwrap();
        assert_eq!(
            ms.iter().map(|m| m.version).collect::<Vec<_>>(),
            vec![2, 10]
        );
        assert!(collect([("V2__b.sql", "x"), ("V2__a.sql", "y")]).is_err());
    }

    #[test]
    fn splitting() {
        let sql = "-- header; not a statement\nCREATE TABLE a (x text DEFAULT 'a;b');\n\n\
                   /* c; /* nested; */ */ INSERT INTO a VALUES (E'it\\'s;');\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                   CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n\
                   SELECT \"odd;name\" FROM a\n";
        let st = split_statements(sql);
        let lines: Vec<usize> = st.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![2, 4, 5, 6, 7], "{st:#?}");
        assert!(st[0].sql.ends_with("'a;b')"));
        assert!(st[2].sql.contains("$body$ SELECT 1; $body$"));
        assert!(st[3].sql.ends_with("SELECT 2; END"));
        assert_eq!(st[4].sql, "SELECT \"odd;name\" FROM a");
    }

    #[test]
    fn only_comments_is_empty() {
        assert!(split_statements("-- nothing\n/* here */\n").is_empty());
    }

    #[test]
    fn embedded_has_v1() {
        let ms = embedded().unwrap();
        assert_eq!(ms[0].version, 1);
        assert_eq!(ms[0].name, "trading_schema");
    }

    #[test]
    fn position_to_line() {
        assert_eq!(line_of_position("SELECT\n  x\nFROM y", 10), 2);
        assert_eq!(line_of_position("SELECT 1", 1), 1);
    }
}
