//! `opsctl import`: valid files (array and NDJSON), duplicates, upsert, malformed JSON,
//! wrong types, bad side, too many decimals, unknown users, reject files.

use std::path::PathBuf;

use crate::common::{Run, TestDb};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn import(db: &TestDb, table: &str, file: &std::path::Path, extra: &[&str]) -> Run {
    db.opsctl()
        .args(["import", "--table", table, "--format", "json"])
        .args(extra)
        .arg(file)
        .run()
}

const USERS: &str = r#"[
  {"id": 1, "username": "ann", "email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"},
  {"id": 2, "username": "bob", "email": "bob@example.com"}
]"#;

fn db_with_users(tag: &str) -> (TestDb, tempfile::TempDir) {
    let db = TestDb::with_schema(tag);
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "users.json", USERS);
    import(&db, "users", &f, &[]).success();
    (db, dir)
}

/// A valid trade as one JSON line; `extra` is `, "key": raw` pairs that replace or add fields.
fn trade(id: &str, extra: &str) -> String {
    let mut fields: Vec<(String, String)> = [
        ("id", format!("\"{id}\"")),
        ("user_id", "1".into()),
        ("symbol", "\"BTCUSDT\"".into()),
        ("side", "\"long\"".into()),
        ("quantity", "\"0.12345678\"".into()),
        ("entry_price", "64000.5".into()),
        ("entry_time", "\"2024-03-01 10:00:00\"".into()),
        ("model_id", "\"gpt-4\"".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Split `, "k": v, "k2": v2` at top-level commas (values here hold no commas).
    for part in extra.split(", \"").filter(|p| !p.trim().is_empty()) {
        let part = part.trim_start_matches([',', ' ', '"']);
        let (k, v) = part.split_once("\":").unwrap();
        let v = v.trim().to_string();
        match fields.iter_mut().find(|(fk, _)| fk == k) {
            Some(f) => f.1 = v,
            None => fields.push((k.to_string(), v)),
        }
    }
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!("{{{}}}", body.join(", "))
}

#[test]
fn valid_files_array_and_ndjson() {
    let (db, dir) = db_with_users("imp_valid");
    assert_eq!(
        db.sql("SELECT id, username, created_at FROM users ORDER BY id"),
        format!(
            "1|ann|2024-01-01 00:00:00\n2|bob|{}",
            db.sql("SELECT created_at FROM users WHERE id = 2")
        )
    );
    // The id sequence moved past the imported ids.
    db.sql("INSERT INTO users (username, email) VALUES ('cat', 'cat@example.com')");
    assert_eq!(db.sql("SELECT id FROM users WHERE username = 'cat'"), "3");
    let nd = format!(
        "{}\n{}\n\n{}\n",
        trade("t1", ""),
        trade(
            "t2",
            r#", "side": "short", "quantity": 12345678901.12345678, "exit_price": "65000.00000001", "exit_time": "2024-03-02T10:00:00+01:00""#
        ),
        trade(
            "t3",
            r#", "user_id": null, "entry_time": "2019-07-04T00:00:00Z""#
        )
    );
    let f = write(&dir, "trades.ndjson", &nd);
    let j = import(&db, "trades", &f, &[]).success().json();
    assert_eq!(
        (
            j["inserted"].as_u64(),
            j["duplicate"].as_u64(),
            j["rejected"].as_u64(),
            j["rows"].as_u64()
        ),
        (Some(3), Some(0), Some(0), Some(3))
    );
    assert_eq!(
        db.sql("SELECT id, side, quantity, exit_price, exit_time, user_id IS NULL FROM trades ORDER BY id"),
        "t1|long|0.12345678|||f\n\
         t2|short|12345678901.12345678|65000.00000001|2024-03-02 09:00:00|f\n\
         t3|long|0.12345678|||t"
    );
    let pos = write(
        &dir,
        "positions.json",
        r#"[{"user_id": 1, "symbol": "ETHUSDT", "quantity": 2, "entry_price": "3000.5", "leverage": 5}]"#,
    );
    let j = import(&db, "positions", &pos, &[]).success().json();
    assert_eq!(j["inserted"], 1);
    let tot = write(
        &dir,
        "totals.json",
        r#"[{"user_id": 2, "timestamp": "2024-03-01 00:00:00", "realized_pnl": -12.5, "total_commission": "0.00000001"}]"#,
    );
    let j = import(&db, "account_totals", &tot, &[]).success().json();
    assert_eq!(j["inserted"], 1);
    assert_eq!(
        db.sql("SELECT realized_pnl, total_commission FROM account_totals"),
        "-12.50000000|0.00000001"
    );
    // Text summary and stdin.
    let r = db
        .opsctl()
        .args(["import", "--table", "trades", "-"])
        .stdin_file(&f)
        .run()
        .success();
    assert!(
        r.stdout
            .contains("0 inserted, 3 duplicate, 0 updated, 0 unchanged, 0 rejected"),
        "{}",
        r.all()
    );
}

#[test]
fn duplicates_skipped_or_upserted() {
    let (db, dir) = db_with_users("imp_dup");
    let first = write(&dir, "a.ndjson", &format!("{}\n", trade("t1", "")));
    import(&db, "trades", &first, &[]).success();
    // t1 is in the table; t2 twice in the file.
    let text = format!(
        "{}\n{}\n{}\n",
        trade("t1", r#", "quantity": 9"#),
        trade("t2", r#", "quantity": 1"#),
        trade("t2", r#", "quantity": 2"#)
    );
    let f = write(&dir, "b.ndjson", &text);
    let j = import(&db, "trades", &f, &[]).success().json();
    assert_eq!(
        (
            j["inserted"].as_u64(),
            j["duplicate"].as_u64(),
            j["updated"].as_u64()
        ),
        (Some(1), Some(2), Some(0))
    );
    assert_eq!(
        db.sql("SELECT id, quantity FROM trades ORDER BY id"),
        "t1|0.12345678\nt2|1.00000000"
    );
    // --upsert: the table row is updated, the last occurrence in the file wins.
    let text = format!(
        "{}\n{}\n{}\n",
        trade("t1", r#", "quantity": 9"#),
        trade("t3", r#", "quantity": 1"#),
        trade("t3", r#", "quantity": 3"#)
    );
    let f = write(&dir, "c.ndjson", &text);
    let j = import(&db, "trades", &f, &["--upsert"]).success().json();
    assert_eq!(
        (
            j["inserted"].as_u64(),
            j["duplicate"].as_u64(),
            j["updated"].as_u64()
        ),
        (Some(1), Some(0), Some(2))
    );
    assert_eq!(
        db.sql("SELECT id, quantity FROM trades ORDER BY id"),
        "t1|9.00000000\nt2|1.00000000\nt3|3.00000000"
    );
    // Duplicates across batches count too.
    let text = format!("{}\n{}\n", trade("t9", ""), trade("t9", ""));
    let f = write(&dir, "d.ndjson", &text);
    let j = import(&db, "trades", &f, &["--batch-size", "1"])
        .success()
        .json();
    assert_eq!(
        (j["inserted"].as_u64(), j["duplicate"].as_u64()),
        (Some(1), Some(1))
    );
    // Users by username; a new username with a taken email is rejected.
    let u = write(
        &dir,
        "u.json",
        r#"[{"username": "ann", "email": "ann@example.com"}, {"username": "dan", "email": "bob@example.com"}]"#,
    );
    let r = import(&db, "users", &u, &[]).code(1);
    assert!(
        r.stderr.contains("line 1")
            && r.stderr.contains("bob@example.com")
            && r.stderr.contains("already taken"),
        "{}",
        r.all()
    );
    let u = write(
        &dir,
        "u2.json",
        r#"[{"username": "ann", "email": "ann2@example.com"}]"#,
    );
    let j = import(&db, "users", &u, &["--upsert"]).success().json();
    assert_eq!(j["updated"], 1);
    assert_eq!(
        db.sql("SELECT email FROM users WHERE username = 'ann'"),
        "ann2@example.com"
    );
    // Positions by (user_id, symbol), account totals by (user_id, timestamp).
    let p = write(
        &dir,
        "p.json",
        r#"[{"user_id": 1, "symbol": "ETH", "quantity": 1, "entry_price": 1}, {"user_id": 1, "symbol": "ETH", "quantity": 2, "entry_price": 1}, {"user_id": 2, "symbol": "ETH", "quantity": 3, "entry_price": 1}]"#,
    );
    let j = import(&db, "positions", &p, &[]).success().json();
    assert_eq!(
        (j["inserted"].as_u64(), j["duplicate"].as_u64()),
        (Some(2), Some(1))
    );
    let a = write(
        &dir,
        "a.json",
        r#"[{"user_id": 1, "timestamp": "2024-01-01 00:00:00"}, {"user_id": 1, "timestamp": "2024-01-01T00:00:00Z"}]"#,
    );
    let j = import(&db, "account_totals", &a, &[]).success().json();
    assert_eq!(
        (j["inserted"].as_u64(), j["duplicate"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn malformed_json_names_line_and_column() {
    let (db, dir) = db_with_users("imp_malformed");
    let text = format!(
        "[\n{},\n{{\"id\": \"t2\" \"symbol\": \"X\"}}\n]\n",
        trade("t1", "")
    );
    let f = write(&dir, "bad.json", &text);
    let r = import(&db, "trades", &f, &[]).code(1);
    assert!(
        r.stderr.contains("malformed JSON at line 3 column 13"),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("nothing was imported"), "{}", r.all());
    assert_eq!(r.json()["ok"], false);
    assert_eq!(db.sql("SELECT count(*) FROM trades"), "0");
    // NDJSON with a reject file: the bad line is set aside, the rest imported.
    let text = format!("{}\n{{\"id\": \n{}\n", trade("t1", ""), trade("t3", ""));
    let f = write(&dir, "bad.ndjson", &text);
    let rej = dir.path().join("rejects.ndjson");
    let j = import(&db, "trades", &f, &["--reject-file", rej.to_str().unwrap()])
        .success()
        .json();
    assert_eq!(
        (j["inserted"].as_u64(), j["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    let rejected = std::fs::read_to_string(&rej).unwrap();
    assert!(
        rejected.contains("\"line\":2") && rejected.contains("malformed JSON"),
        "{rejected}"
    );
}

fn rejected_alone(tag: &str, row: &str, want: &[&str]) {
    let (db, dir) = db_with_users(tag);
    let text = format!("{}\n{}\n{}\n", trade("ok1", ""), row, trade("ok2", ""));
    let f = write(&dir, "t.ndjson", &text);
    // Without a reject file: the whole import aborts, nothing is written.
    let r = import(&db, "trades", &f, &[]).code(1);
    assert!(r.stderr.contains("line 2"), "{}", r.all());
    for w in want {
        assert!(r.stderr.contains(w), "want {w:?} in {}", r.all());
    }
    assert_eq!(db.sql("SELECT count(*) FROM trades"), "0");
    // With one: the bad row goes there, with line and reason; the rest is imported.
    let rej = dir.path().join("rej.ndjson");
    let j = import(&db, "trades", &f, &["--reject-file", rej.to_str().unwrap()])
        .success()
        .json();
    assert_eq!(
        (j["inserted"].as_u64(), j["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{j}"
    );
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&rej)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["line"], 2);
    assert!(line["row"].is_object(), "{line}");
    for w in want {
        assert!(line["reason"].as_str().unwrap().contains(w), "{line}");
    }
    assert_eq!(
        db.sql("SELECT string_agg(id, ',' ORDER BY id) FROM trades"),
        "ok1,ok2"
    );
}

#[test]
fn wrong_type_rejected() {
    rejected_alone(
        "imp_type",
        &trade("bad", r#", "quantity": true"#),
        &["quantity must be a number"],
    );
}

#[test]
fn bad_side_rejected() {
    rejected_alone(
        "imp_side",
        &trade("bad", r#", "side": "sideways""#),
        &["side \"sideways\"", "long, short"],
    );
}

#[test]
fn too_many_decimals_rejected() {
    rejected_alone(
        "imp_dec",
        &trade("bad", r#", "quantity": 0.123456789"#),
        &["9 decimal places", "never rounded"],
    );
}

#[test]
fn unknown_user_rejected() {
    rejected_alone(
        "imp_user",
        &trade("bad", r#", "user_id": 99"#),
        &["user_id 99 does not exist"],
    );
}

#[test]
fn other_bad_rows_rejected() {
    rejected_alone(
        "imp_missing",
        r#"{"id": "bad", "symbol": "X", "side": "long", "quantity": 1, "entry_price": 1}"#,
        &["entry_time"],
    );
    rejected_alone(
        "imp_ts",
        &trade("bad", r#", "entry_time": "yesterday""#),
        &["not a timestamp"],
    );
    rejected_alone(
        "imp_len",
        &trade("bad", r#", "symbol": "WAYTOOLONGSYMBOL""#),
        &["at most 10"],
    );
    rejected_alone(
        "imp_range",
        &trade("bad", r#", "entry_price": "1234567890123""#),
        &["out of range"],
    );
    rejected_alone(
        "imp_unknown",
        &trade("bad", r#", "colour": "red""#),
        &["unknown field \"colour\""],
    );
}

#[test]
fn usage_errors() {
    let db = TestDb::with_schema("imp_usage");
    db.opsctl()
        .args(["import", "--table", "nope", "-"])
        .run()
        .code(2);
    db.opsctl()
        .args(["import", "--table", "trades", "/nonexistent/file.json"])
        .run()
        .code(1);
    db.opsctl()
        .args(["import", "--table", "trades", "--batch-size", "0", "-"])
        .run()
        .code(2);
}

#[test]
fn sample_data_set_imports_cleanly() {
    let db = TestDb::with_schema("imp_sample");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sample");
    for (table, file, n) in [
        ("users", "users.json", 6),
        ("trades", "trades.ndjson", 3000),
        ("positions", "positions.json", 18),
        ("account_totals", "account_totals.json", 2190),
    ] {
        let j = import(&db, table, &dir.join(file), &[]).success().json();
        assert_eq!(j["inserted"], n, "{table}: {j}");
        assert_eq!(j["rejected"], 0, "{table}: {j}");
    }
    assert_eq!(
        db.sql("SELECT count(DISTINCT symbol), count(DISTINCT model_id), min(entry_time)::date, max(entry_time)::date FROM trades"),
        "5|5|2025-01-01|2025-12-31"
    );
    // A second import of the same files changes nothing.
    let j = import(&db, "trades", &dir.join("trades.ndjson"), &[])
        .success()
        .json();
    assert_eq!(
        (j["inserted"].as_u64(), j["duplicate"].as_u64()),
        (Some(0), Some(3000))
    );
}

#[test]
fn import_before_migrations_says_so() {
    let db = TestDb::new("imp_nomig");
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "u.json", USERS);
    let r = import(&db, "users", &f, &[]).code(1);
    assert!(r.stderr.contains("opsctl migrate up"), "{}", r.all());
}

#[test]
fn trades_fast_path_across_batches() {
    let (db, dir) = db_with_users("imp_fast");
    let first = write(&dir, "a.ndjson", &format!("{}\n", trade("t1", "")));
    import(&db, "trades", &first, &[]).success();
    // Batches of 2: t1 is in the table, t2 repeats in a later batch, t3 has an unknown
    // user, t4 needs COPY escaping, t5 has no user, t6 brings its own created_at.
    let text = [
        trade("t1", ""),
        trade("t2", r#", "quantity": 1"#),
        trade("t3", r#", "user_id": 99"#),
        trade("t4", r#", "model_id": "a\tb\\c\nd""#),
        trade("t2", r#", "quantity": 2"#),
        trade("t5", r#", "user_id": null"#),
        trade("t6", r#", "created_at": "2024-05-05T05:05:05Z""#),
    ]
    .join("\n");
    let f = write(&dir, "b.ndjson", &text);
    // Without a reject file the unknown user stops everything, with its line.
    let r = import(&db, "trades", &f, &["--batch-size", "2"]).code(1);
    assert!(
        r.stderr.contains("line 3") && r.stderr.contains("user_id 99 does not exist"),
        "{}",
        r.all()
    );
    assert_eq!(db.sql("SELECT count(*) FROM trades"), "1");
    let rej = dir.path().join("rej.ndjson");
    let j = import(
        &db,
        "trades",
        &f,
        &["--batch-size", "2", "--reject-file", rej.to_str().unwrap()],
    )
    .success()
    .json();
    assert_eq!(
        (
            j["inserted"].as_u64(),
            j["duplicate"].as_u64(),
            j["rejected"].as_u64(),
            j["rows"].as_u64()
        ),
        (Some(4), Some(2), Some(1), Some(7)),
        "{j}"
    );
    let rejected = std::fs::read_to_string(&rej).unwrap();
    assert!(
        rejected.contains("\"line\":3") && rejected.contains("user_id 99"),
        "{rejected}"
    );
    assert_eq!(
        db.sql("SELECT string_agg(id || ':' || quantity::float8, ',' ORDER BY id) FROM trades"),
        "t1:0.12345678,t2:1,t4:0.12345678,t5:0.12345678,t6:0.12345678"
    );
    assert_eq!(
        db.sql("SELECT model_id = E'a\\tb\\\\c\\nd', user_id IS NULL FROM trades WHERE id IN ('t4', 't5') ORDER BY id"),
        "t|f\nf|t"
    );
    assert_eq!(
        db.sql("SELECT count(*) FILTER (WHERE created_at IS NULL), max(created_at) FILTER (WHERE id = 't6') FROM trades"),
        "0|2024-05-05 05:05:05"
    );
    // The audit trigger saw every row COPY wrote.
    assert_eq!(
        db.sql("SELECT count(*) FROM audit.logged_actions WHERE table_name = 'trades' AND action = 'I'"),
        "5"
    );
}

#[test]
#[cfg(feature = "test-hooks")] // OPSCTL_TEST_IMPORT_READER_PANIC
fn a_failing_reader_aborts_the_import_and_writes_nothing() {
    let (db, dir) = db_with_users("imp_reader_fault");
    let lines: Vec<String> = (1..=10).map(|i| trade(&format!("t{i}"), "")).collect();
    let f = write(&dir, "t.ndjson", &lines.join("\n"));
    // Batches of 2: three batches are loaded before the reader dies at the 7th row, on
    // both load paths (COPY straight into trades, and the staging path of --upsert).
    for extra in [
        &["--batch-size", "2"][..],
        &["--batch-size", "2", "--upsert"],
    ] {
        let r = db
            .opsctl()
            .env("OPSCTL_TEST_IMPORT_READER_PANIC", "7")
            .args(["import", "--table", "trades"])
            .args(extra)
            .arg(&f)
            .run()
            .code(1);
        assert!(r.stderr.contains("nothing was imported"), "{}", r.all());
        assert_eq!(db.sql("SELECT count(*) FROM trades"), "0", "{extra:?}");
    }
    // Without the fault the same file imports whole.
    import(&db, "trades", &f, &["--batch-size", "2"]).success();
    assert_eq!(db.sql("SELECT count(*) FROM trades"), "10");
}

#[test]
fn the_text_summary_counts_in_words() {
    let db = TestDb::with_schema("imp_words");
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "one.json",
        r#"[{"id": 1, "username": "ann", "email": "ann@example.com"}]"#,
    );
    let r = db
        .opsctl()
        .args(["import", "--table", "users"])
        .arg(&f)
        .run()
        .success();
    // "1 row", not "1 rows"; a whole-number rate.
    assert!(r.stdout.contains("(1 row in "), "{}", r.stdout);
    let rate = r.stdout.split(", ").last().unwrap().trim();
    assert!(rate.ends_with(" rows/s)"), "{rate}");
    let n = rate.trim_end_matches(" rows/s)");
    assert!(
        !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == ','),
        "{rate}"
    );
}

// ---------------------------------------------------------------------------------------
// The sample-data generator (scripts/sample-data/generate.py)

fn generate(cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sample-data/generate.py");
    std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("python3 not found")
}

fn fixtures_fingerprint() -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sample");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let m = std::fs::metadata(&p).unwrap().modified().unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
                m,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn sample_data_generator_has_help_and_never_overwrites_unasked() {
    let cwd = tempfile::tempdir().unwrap();
    let listing = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // --help: usage on stdout, exit 0, and no directory called "--help".
    let out = generate(cwd.path(), &["--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("usage:") && stdout.contains("--trades") && stdout.contains("--force"),
        "{stdout}"
    );
    assert!(listing(cwd.path()).is_empty(), "{:?}", listing(cwd.path()));
    // A flag it does not know, or --trades without a number, is a usage error (exit 2), never a directory.
    for args in [
        &["--bogus"][..],
        &["--trades"],
        &["--trades", "0", "x"],
        &["-x"],
    ] {
        let out = generate(cwd.path(), args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("usage:"),
            "{args:?}"
        );
        assert!(
            listing(cwd.path()).is_empty(),
            "{args:?}: {:?}",
            listing(cwd.path())
        );
    }
    // Without OUT_DIR it would write the checked-in fixtures: refused, nothing touched.
    let before = fixtures_fingerprint();
    let out = generate(cwd.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tests/fixtures/sample") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        fixtures_fingerprint(),
        before,
        "the fixtures were rewritten"
    );
    // A fresh directory is written; a second run refuses; --force rewrites it.
    let out = generate(cwd.path(), &["data", "--trades", "20"]);
    assert_eq!(out.status.code(), Some(0));
    let data = cwd.path().join("data");
    assert_eq!(
        listing(&data),
        [
            "account_totals.json",
            "positions.json",
            "trades.ndjson",
            "users.json"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(data.join("trades.ndjson"))
            .unwrap()
            .lines()
            .count(),
        20
    );
    std::fs::write(data.join("trades.ndjson"), "mine\n").unwrap();
    let out = generate(cwd.path(), &["data", "--trades", "20"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(data.join("trades.ndjson")).unwrap(),
        "mine\n"
    );
    let out = generate(cwd.path(), &["data", "--trades", "20", "--force"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(data.join("trades.ndjson"))
            .unwrap()
            .lines()
            .count(),
        20
    );
}

// ---------------------------------------------------------------------------------------
// No-op updates, positive quantities and prices, the reject file

#[test]
fn upsert_of_an_identical_file_changes_and_audits_nothing() {
    let (db, dir) = db_with_users("imp_noop");
    let audit = |table: &str, action: &str| -> String {
        db.sql(&format!(
            "SELECT count(*) FROM audit.logged_actions WHERE table_name = '{table}' AND action = '{action}'"
        ))
    };
    let text = [
        trade("t1", ""),
        trade("t2", r#", "quantity": 2"#),
        trade("t3", r#", "exit_price": "70000.1""#),
    ]
    .join("\n");
    let f = write(&dir, "a.ndjson", &text);
    import(&db, "trades", &f, &[]).success();
    assert_eq!(audit("trades", "I"), "3");
    let rows = || db.sql("SELECT string_agg(id || ':' || xmin::text, ',' ORDER BY id) FROM trades");
    let before = rows();
    // The same file again with --upsert: nothing changes, nothing is written or audited.
    let j = import(&db, "trades", &f, &["--upsert"]).success().json();
    assert_eq!(
        (
            j["inserted"].as_u64(),
            j["updated"].as_u64(),
            j["unchanged"].as_u64(),
            j["duplicate"].as_u64()
        ),
        (Some(0), Some(0), Some(3), Some(0)),
        "{j}"
    );
    assert_eq!(rows(), before, "rows were rewritten");
    assert_eq!(audit("trades", "U"), "0");
    let r = db
        .opsctl()
        .args(["import", "--table", "trades", "--upsert"])
        .arg(&f)
        .run()
        .success();
    assert!(
        r.stdout.contains("0 updated") && r.stdout.contains("3 unchanged"),
        "{}",
        r.stdout
    );
    // One row really differs: one update, one audit row; the others stay unchanged.
    let text = [
        trade("t1", ""),
        trade("t2", r#", "quantity": 5"#),
        trade("t3", r#", "exit_price": "70000.1""#),
    ]
    .join("\n");
    let f = write(&dir, "b.ndjson", &text);
    let j = import(&db, "trades", &f, &["--upsert"]).success().json();
    assert_eq!(
        (j["updated"].as_u64(), j["unchanged"].as_u64()),
        (Some(1), Some(2)),
        "{j}"
    );
    assert_eq!(audit("trades", "U"), "1");
    assert_eq!(
        db.sql("SELECT row_old->>'quantity', row_new->>'quantity' FROM audit.logged_actions WHERE action = 'U'"),
        "2.00000000|5.00000000"
    );
    // Users through the staging path too.
    let u = write(&dir, "users.json", USERS);
    let j = import(&db, "users", &u, &["--upsert"]).success().json();
    assert_eq!(
        (j["updated"].as_u64(), j["unchanged"].as_u64()),
        (Some(0), Some(2)),
        "{j}"
    );
    assert_eq!(audit("users", "U"), "0");
    // The audit trigger itself ignores an UPDATE that changes no value, by anyone.
    db.sql("UPDATE trades SET symbol = symbol; UPDATE users SET email = email");
    assert_eq!(audit("trades", "U"), "1");
    assert_eq!(audit("users", "U"), "0");
    db.sql("UPDATE users SET email = 'ann3@example.com' WHERE username = 'ann'");
    assert_eq!(audit("users", "U"), "1");
}

#[test]
fn non_positive_quantity_or_entry_price_rejected() {
    rejected_alone(
        "imp_qty0",
        &trade("bad", r#", "quantity": 0"#),
        &["quantity must be greater than 0", "side"],
    );
    rejected_alone(
        "imp_price_neg",
        &trade("bad", r#", "entry_price": "-64000.5""#),
        &["entry_price must be greater than 0"],
    );
}

#[test]
fn an_existing_reject_file_is_kept_unless_forced() {
    let (db, dir) = db_with_users("imp_rejkeep");
    let text = format!(
        "{}\n{}\n",
        trade("ok1", ""),
        trade("bad", r#", "side": "up""#)
    );
    let f = write(&dir, "t.ndjson", &text);
    let rej = write(&dir, "rej.ndjson", "yesterday's rejects\n");
    let r = import(&db, "trades", &f, &["--reject-file", rej.to_str().unwrap()]).code(2);
    assert!(
        r.stderr.contains("already exists") && r.stderr.contains("--force"),
        "{}",
        r.all()
    );
    assert_eq!(
        std::fs::read_to_string(&rej).unwrap(),
        "yesterday's rejects\n"
    );
    assert_eq!(db.sql("SELECT count(*) FROM trades"), "0");
    let j = import(
        &db,
        "trades",
        &f,
        &["--reject-file", rej.to_str().unwrap(), "--force"],
    )
    .success()
    .json();
    assert_eq!(
        (j["inserted"].as_u64(), j["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    let text = std::fs::read_to_string(&rej).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"line\":2"), "{text}");
    // Nothing else is left in the directory (no temporary file).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["rej.ndjson", "t.ndjson", "users.json"]);
}

#[test]
fn ctrl_c_leaves_no_half_written_reject_file() {
    use std::io::Write;
    let (db, dir) = db_with_users("imp_sigint");
    let fifo = dir.path().join("in.ndjson");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let rej = dir.path().join("rej.ndjson");
    let mut child = db
        .opsctl()
        .args(["import", "--table", "trades", "--batch-size", "1"])
        .arg("--reject-file")
        .arg(&rej)
        .arg(&fifo)
        .spawn();
    // Opens once opsctl has opened the FIFO for reading.
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    for i in 0..200 {
        writeln!(w, "{}", trade(&format!("ok{i}"), "")).unwrap();
        writeln!(w, "{}", trade(&format!("bad{i}"), r#", "side": "up""#)).unwrap();
    }
    w.flush().unwrap();
    // Let it import (and reject) for a while, with the input still open, then Ctrl-C.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "opsctl ended before the signal"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    drop(w);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        !rej.exists(),
        "a reject file was left behind: {:?}",
        std::fs::read_to_string(&rej)
    );
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rej"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(db.sql("SELECT count(*) FROM trades"), "0");
}

#[test]
fn archived_trades_are_duplicates_when_the_same_file_is_imported_again() {
    let (db, dir) = db_with_users("imp_after_archive");
    let lines: Vec<String> = (1..=5).map(|i| trade(&format!("a{i}"), "")).collect();
    let f = write(&dir, "t.ndjson", &lines.join("\n"));
    import(&db, "trades", &f, &[]).success();
    db.opsctl()
        .args(["archive", "--before", "2024-06-01"])
        .run()
        .success();
    assert_eq!(db.sql("SELECT count(*) FROM archive.trades"), "5");
    // The same file again: every trade is already in the archive, none comes back.
    let r = import(&db, "trades", &f, &[]).success();
    let s = r.json();
    assert_eq!(s["inserted"], 0, "{s}");
    assert_eq!(s["duplicate"], 5, "{s}");
    assert_eq!(db.sql("SELECT count(*) FROM trades"), "0");
    // And the next archive run has nothing to move (it used to fail on the archive's key).
    db.opsctl()
        .args(["archive", "--before", "2024-06-01"])
        .run()
        .success();
}
