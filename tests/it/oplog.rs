//! opsctl's own sensitive operations are recorded in opsctl.operations, without secrets.

use crate::common::{TestDb, PASSWORD};

#[test]
fn sensitive_commands_are_recorded_without_secrets() {
    let db = TestDb::with_schema("oplog");
    // The migration that created the table is itself recorded (after the fact).
    assert_eq!(
        db.sql("SELECT outcome FROM opsctl.operations WHERE command = 'migrate up'"),
        "success"
    );
    // A success, with the password given on the command line.
    db.opsctl()
        .env_remove("OPSCTL_DATABASE_URL")
        .args(["vacuum", "--database-url", &db.url])
        .run()
        .success();
    let row = db.sql(
        "SELECT outcome || '|' || command_line || '|' || coalesce(os_user, '') || '|' || db_role \
         FROM opsctl.operations WHERE command = 'vacuum'",
    );
    assert!(row.starts_with("success|"), "{row}");
    assert!(row.contains("vacuum --database-url"), "{row}");
    assert!(
        !row.contains(PASSWORD) && !row.contains("s3cret"),
        "secret recorded: {row}"
    );
    assert!(row.ends_with("|postgres"), "{row}");
    // A failure is recorded with its error.
    db.opsctl()
        .args(["reindex", "--index", "no_such_index"])
        .run()
        .code(1);
    let row = db.sql(
        "SELECT outcome || '|' || coalesce(error, '') FROM opsctl.operations WHERE command = 'reindex'",
    );
    assert!(
        row.starts_with("failure|") && row.contains("no_such_index"),
        "{row}"
    );
    // Dry runs change nothing and are not recorded; reports are not sensitive.
    db.opsctl().args(["vacuum", "--dry-run"]).run().success();
    db.opsctl().args(["migrate", "status"]).run().success();
    assert_eq!(
        db.sql("SELECT count(*) FROM opsctl.operations WHERE command_line LIKE '%dry-run%' OR command LIKE 'migrate status%'"),
        "0"
    );
    // The audit report lists them.
    let r = db
        .opsctl()
        .args(["audit", "report", "--format", "json"])
        .run()
        .success();
    assert!(r.stdout.contains("vacuum"), "{}", r.stdout);
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The row of the newest operation of `command`, as `outcome|result|error|details`.
fn last_op(db: &TestDb, command: &str) -> String {
    db.sql(&format!(
        "SELECT outcome || '|' || coalesce(result, '') || '|' || coalesce(error, '') || '|' \
         || coalesce(details, '') FROM opsctl.operations WHERE command = '{command}' \
         ORDER BY id DESC LIMIT 1"
    ))
}

#[test]
fn every_changing_command_is_recorded_with_what_it_did() {
    let db = TestDb::with_schema("oplogall");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // import: the rows inserted, updated, duplicate and rejected.
    let users = write(
        d,
        "users.json",
        r#"[{"id": 1, "username": "ann", "email": "ann@example.com"},
            {"id": 2, "username": "bob", "email": "bob@example.com"}]"#,
    );
    db.opsctl()
        .args(["import", "--table", "users"])
        .arg(&users)
        .run()
        .success();
    let row = last_op(&db, "import");
    assert!(
        row.starts_with("success|")
            && row.contains("2 inserted, 0 updated, 0 duplicate, 0 rejected"),
        "{row}"
    );
    db.opsctl()
        .args(["import", "--table", "users"])
        .arg(&users)
        .run()
        .success();
    let row = last_op(&db, "import");
    assert!(
        row.contains("0 inserted, 0 updated, 2 duplicate, 0 rejected"),
        "{row}"
    );

    // partition ensure: the rows moved out of the default partition.
    db.sql(
        "INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time)
         VALUES ('old1', 1, 'ETH', 'sell', 2, 50, '2024-06-10 08:00'),
                ('old2', 1, 'ETH', 'sell', 2, 50, '2024-06-11 09:00')",
    );
    db.opsctl().args(["partition", "ensure"]).run().success();
    let row = last_op(&db, "partition ensure");
    assert!(
        row.starts_with("success|") && row.contains("moved 2 rows out of the default partition"),
        "{row}"
    );

    // backup create.
    let key = d.join("k.key");
    db.opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .run()
        .success();
    db.opsctl()
        .args(["backup", "create", "--dir"])
        .arg(d.join("repo"))
        .arg("--key-file")
        .arg(&key)
        .run()
        .success();
    let row = last_op(&db, "backup create");
    assert!(row.starts_with("success|backup "), "{row}");

    // schedule run, and the job it starts (here a size snapshot, not sensitive by hand).
    let policy = write(d, "policy.toml", "[reports]\n");
    db.opsctl()
        .args(["schedule", "run", "--once", "size-snapshot", "--policy"])
        .arg(&policy)
        .run()
        .success();
    assert!(last_op(&db, "schedule run").starts_with("success|"));
    assert!(last_op(&db, "report size").starts_with("success|"));
    db.opsctl()
        .args(["report", "size", "--snapshot"])
        .run()
        .success();
    assert_eq!(
        db.sql("SELECT count(*) FROM opsctl.operations WHERE command = 'report size'"),
        "1",
        "a report run by hand is not an operation"
    );

    // The audit report lists them, with what they did.
    let j = db
        .opsctl()
        .args(["audit", "report", "--format", "json"])
        .run()
        .success()
        .json();
    let ops = j["operations"].as_array().unwrap();
    for c in [
        "import",
        "partition ensure",
        "backup create",
        "schedule run",
        "report size",
    ] {
        assert!(ops.iter().any(|o| o["command"] == c), "{c} missing: {j}");
    }
    let import = ops.iter().find(|o| o["command"] == "import").unwrap();
    assert!(
        import["result"].as_str().unwrap().contains("2 inserted"),
        "{import}"
    );
    let t = db.opsctl().args(["audit", "report"]).run().success().stdout;
    assert!(t.contains("result: ") && t.contains("2 duplicate"), "{t}");
}

#[test]
fn failures_keep_the_whole_error_without_a_doubled_prefix() {
    let db = TestDb::with_schema("oplogerr");
    let dir = tempfile::tempdir().unwrap();
    // A server error has several lines (message, then sqlstate and more).
    db.sql("DROP TABLE account_totals");
    let f = write(
        dir.path(),
        "totals.json",
        r#"[{"user_id": 2, "timestamp": "2024-03-01 00:00:00", "realized_pnl": -12.5, "total_commission": "0"}]"#,
    );
    let r = db
        .opsctl()
        .args(["import", "--table", "account-totals"])
        .arg(&f)
        .run()
        .code(1);
    let row = last_op(&db, "import");
    let parts: Vec<&str> = row.splitn(4, '|').collect();
    assert_eq!(parts[0], "failure", "{row}");
    let (error, details) = (parts[2], parts[3]);
    assert!(!error.starts_with("error:"), "doubled prefix: {row}");
    assert!(!error.contains('\n'), "the summary is one line: {row}");
    assert!(error.contains("account_totals"), "{row}");
    assert!(details.contains("sqlstate: 42P01"), "{row}");
    // Everything the user saw is recorded.
    for l in r.stderr.lines().filter(|l| l.starts_with("  ")) {
        assert!(details.contains(l.trim()), "{l:?} missing from {row}");
    }
    // Errors printed through the common path lose their prefix too.
    db.opsctl()
        .args(["reindex", "--index", "no_such_index"])
        .run()
        .code(1);
    let row = last_op(&db, "reindex");
    assert!(
        row.starts_with("failure||") && row.contains("no_such_index"),
        "{row}"
    );
    assert!(!row.contains("error:"), "{row}");
    let t = db.opsctl().args(["audit", "report"]).run().success().stdout;
    assert!(!t.contains("error: error:"), "{t}");
    assert!(t.contains("sqlstate: 42P01"), "{t}");
}
