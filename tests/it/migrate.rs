//! `opsctl migrate`: up, status, verify, baseline, resolve, locking, drift, failures.

use std::path::{Path, PathBuf};

use crate::common::{migration_files, TestDb};

/// A temp directory holding the repository's first migration (the trading schema) plus
/// `extra` (name, text) files: the runner's mechanics on a small, known set.
fn migrations_dir(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let first = migration_files().into_iter().next().unwrap();
    std::fs::copy(&first, dir.path().join(first.file_name().unwrap())).unwrap();
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn dir_arg(dir: &Path) -> [String; 2] {
    ["--migrations-dir".into(), dir.display().to_string()]
}

/// Versions of the repository's migrations, highest last.
fn repo_versions() -> Vec<u64> {
    migration_files()
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_str().unwrap();
            name[1..].split("__").next().unwrap().parse().unwrap()
        })
        .collect()
}

fn history_versions(db: &TestDb) -> String {
    db.sql("SELECT string_agg(version::text || ':' || state, ',' ORDER BY version) FROM opsctl.schema_history")
}

#[test]
fn fresh_up_then_status_clean_and_second_up_noop() {
    let db = TestDb::new("mig_fresh");
    let before = db.opsctl().args(["migrate", "status"]).run().code(1);
    assert!(before.stdout.contains("pending"), "{}", before.all());
    let r = db.opsctl().args(["migrate", "up"]).run().success();
    assert!(
        r.stdout.contains("applied V1 trading_schema"),
        "{}",
        r.all()
    );
    let j = db
        .opsctl()
        .args(["migrate", "status", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(j["up_to_date"], true);
    assert_eq!(j["pending"], 0);
    assert_eq!(j["migrations"][0]["state"], "applied");
    let text = db.opsctl().args(["migrate", "status"]).run().success();
    assert!(text.stdout.contains("up to date"), "{}", text.all());
    let r = db.opsctl().args(["migrate", "up"]).run().success();
    assert!(r.stdout.contains("nothing to apply"), "{}", r.all());
    let all: Vec<String> = repo_versions()
        .iter()
        .map(|v| format!("{v}:success"))
        .collect();
    assert_eq!(history_versions(&db), all.join(","));
    db.opsctl().args(["migrate", "verify"]).run().success();
    // The history row records who, when, how long.
    let row = db.sql(
        "SELECT name, length(checksum), applied_by, execution_ms >= 0, success FROM opsctl.schema_history WHERE version = 1",
    );
    assert_eq!(row, "trading_schema|64|postgres|t|t");
}

#[test]
fn schema_serves_the_orm_model() {
    let db = TestDb::with_schema("mig_orm");
    db.sql("INSERT INTO users (username, email) VALUES ('ann', 'ann@example.com')");
    db.sql(
        "INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time) \
         VALUES ('t-1', 1, 'BTCUSDT', 'long', 0.12345678, 64000.5, '2019-03-04 05:06:07')",
    );
    db.sql(
        "UPDATE trades SET exit_price = 65000, exit_time = '2019-03-05 00:00:00' WHERE id = 't-1'",
    );
    assert_eq!(
        db.sql("SELECT quantity, exit_price, created_at IS NOT NULL FROM trades WHERE id = 't-1'"),
        "0.12345678|65000.00000000|t"
    );
    db.sql("INSERT INTO positions (user_id, symbol, quantity, entry_price, leverage) VALUES (1, 'ETHUSDT', 2, 3000, 5)");
    db.sql("UPDATE positions SET current_price = 3100 WHERE id = 1");
    assert_eq!(
        db.sql("SELECT current_price, last_updated IS NOT NULL FROM positions WHERE id = 1"),
        "3100.00000000|t"
    );
    db.sql(
        "INSERT INTO account_totals (user_id, \"timestamp\", realized_pnl) VALUES (1, now(), 1.5)",
    );
    let idx = db.sql("SELECT count(*) FROM pg_indexes WHERE indexname IN ('idx_trades_user_id', 'idx_trades_symbol', 'idx_trades_entry_time', 'idx_positions_user_id', 'idx_positions_symbol', 'idx_account_totals_user_id', 'idx_account_totals_timestamp')");
    assert_eq!(idx, "7");
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'trades'::regclass"),
        "1"
    );
}

#[test]
fn two_concurrent_ups_apply_each_once() {
    let dir = migrations_dir(&[(
        "V2__slow.sql",
        "CREATE TABLE slow_marker (id int);\nSELECT pg_sleep(2);\nINSERT INTO slow_marker VALUES (1);\n",
    )]);
    let db = TestDb::new("mig_conc");
    let a = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .spawn();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let b = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .spawn();
    let oa = a.wait_with_output().unwrap();
    let ob = b.wait_with_output().unwrap();
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    assert!(
        ob.status.success(),
        "{}",
        String::from_utf8_lossy(&ob.stderr)
    );
    let both = format!(
        "{}{}{}{}",
        String::from_utf8_lossy(&oa.stdout),
        String::from_utf8_lossy(&oa.stderr),
        String::from_utf8_lossy(&ob.stdout),
        String::from_utf8_lossy(&ob.stderr)
    );
    assert_eq!(both.matches("applied V2 slow").count(), 1, "{both}");
    assert!(
        both.contains("waited"),
        "the waiting one says it waited: {both}"
    );
    assert_eq!(history_versions(&db), "1:success,2:success");
    assert_eq!(db.sql("SELECT count(*) FROM slow_marker"), "1");
}

#[test]
fn lock_wait_gives_up_with_busy_message() {
    let dir = migrations_dir(&[("V2__slow.sql", "SELECT pg_sleep(4);\n")]);
    let db = TestDb::new("mig_lockwait");
    let a = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .spawn();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let r = db
        .opsctl()
        .args(["migrate", "up", "--lock-wait", "1s"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    assert!(
        r.stderr.contains("another opsctl migrate is running"),
        "{}",
        r.all()
    );
    assert!(a.wait_with_output().unwrap().status.success());
}

#[test]
fn edited_applied_file_is_drift() {
    let dir = migrations_dir(&[("V2__extra.sql", "CREATE TABLE extra (id int);\n")]);
    let db = TestDb::new("mig_drift");
    db.opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    std::fs::write(
        dir.path().join("V2__extra.sql"),
        "CREATE TABLE extra (id bigint);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("V3__more.sql"),
        "CREATE TABLE more (id int);\n",
    )
    .unwrap();
    let v = db
        .opsctl()
        .args(["migrate", "verify"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    assert!(v.stderr.contains("V2 (extra)"), "{}", v.all());
    assert!(v.stderr.contains("changed"), "{}", v.all());
    let u = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    assert!(u.stderr.contains("V2 (extra)"), "{}", u.all());
    assert!(
        u.stderr.contains("new migration"),
        "says what to do: {}",
        u.all()
    );
    assert_eq!(db.sql("SELECT to_regclass('more') IS NULL"), "t");
    let j = db
        .opsctl()
        .args(["migrate", "status", "--format", "json"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1)
        .json();
    assert_eq!(j["migrations"][1]["state"], "changed");
    let vj = db
        .opsctl()
        .args(["migrate", "verify", "--format", "json"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1)
        .json();
    assert_eq!(vj["ok"], false);
}

#[test]
fn missing_applied_file_stops_up() {
    let dir = migrations_dir(&[("V2__gone.sql", "CREATE TABLE gone (id int);\n")]);
    let db = TestDb::new("mig_missing");
    db.opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    std::fs::remove_file(dir.path().join("V2__gone.sql")).unwrap();
    let u = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    assert!(
        u.stderr.contains("V2 (gone)") && u.stderr.contains("file is gone"),
        "{}",
        u.all()
    );
    db.opsctl()
        .args(["migrate", "verify"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
}

#[test]
fn crlf_and_bom_copy_is_not_drift() {
    let db = TestDb::with_schema("mig_crlf");
    let dir = tempfile::tempdir().unwrap();
    for f in migration_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        let crlf = format!("\u{feff}{}", text.replace('\n', "\r\n"));
        std::fs::write(dir.path().join(f.file_name().unwrap()), crlf).unwrap();
    }
    db.opsctl()
        .args(["migrate", "verify"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    db.opsctl()
        .args(["migrate", "status"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    let r = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    assert!(r.stdout.contains("nothing to apply"), "{}", r.all());
}

#[test]
fn failing_migration_leaves_nothing_behind() {
    let bad = "-- adds a table, then fails\nCREATE TABLE half_done (id int);\n\nINSERT INTO half_done\n  SELECT nope FROM half_done;\n";
    let dir = migrations_dir(&[("V2__bad.sql", bad)]);
    let db = TestDb::new("mig_fail");
    let r = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    assert!(r.stderr.contains("V2__bad.sql"), "{}", r.all());
    assert!(r.stderr.contains("line 5"), "names the line: {}", r.all());
    assert!(
        r.stderr.contains("column \"nope\" does not exist"),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("rolled back"), "{}", r.all());
    // V1 stays applied, nothing of V2 does.
    assert_eq!(history_versions(&db), "1:success");
    assert_eq!(db.sql("SELECT to_regclass('half_done') IS NULL"), "t");
    // Detail and hint of the server are passed on.
    let dir2 = migrations_dir(&[(
        "V2__dup.sql",
        "CREATE TABLE d (id int PRIMARY KEY);\nINSERT INTO d VALUES (1), (1);\n",
    )]);
    let r = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir2.path()))
        .run()
        .code(1);
    assert!(r.stderr.contains("line 2"), "{}", r.all());
    assert!(
        r.stderr.contains("detail: Key (id)=(1) already exists"),
        "{}",
        r.all()
    );
    let dir3 = migrations_dir(&[("V2__hint.sql", "SELECT lenght('x');\n")]);
    let r = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir3.path()))
        .run()
        .code(1);
    assert!(r.stderr.contains("hint:"), "{}", r.all());
}

#[test]
fn no_transaction_file_builds_index_concurrently() {
    let dir = migrations_dir(&[(
        "V2__positions_idx.sql",
        "-- opsctl:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_positions_user_symbol ON positions (user_id, symbol);\n",
    )]);
    let db = TestDb::new("mig_notx");
    let r = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    assert!(r.stdout.contains("no transaction"), "{}", r.all());
    assert_eq!(
        db.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_positions_user_symbol'::regclass"),
        "t"
    );
    assert_eq!(history_versions(&db), "1:success,2:success");
}

#[test]
fn failed_no_transaction_file_blocks_until_resolved() {
    let text = "-- opsctl:no-transaction\nCREATE TABLE nt_done (id int);\nCREATE INDEX CONCURRENTLY nt_idx ON no_such_table (id);\n";
    let dir = migrations_dir(&[
        ("V2__nt.sql", text),
        ("V3__after.sql", "CREATE TABLE after_nt (id int);\n"),
    ]);
    let db = TestDb::new("mig_ntfail");
    let r = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    assert!(
        r.stderr.contains("V2__nt.sql failed at line 3"),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("migrate resolve 2"), "{}", r.all());
    assert_eq!(history_versions(&db), "1:success,2:failed");
    let again = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    assert!(
        again.stderr.contains("opsctl migrate resolve 2 --applied"),
        "{}",
        again.all()
    );
    assert_eq!(db.sql("SELECT to_regclass('after_nt') IS NULL"), "t");
    let st = db
        .opsctl()
        .args(["migrate", "status", "--format", "json"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1)
        .json();
    assert_eq!(st["migrations"][1]["state"], "failed");
    // Someone looked, undid the first statement; the file is fixed; it runs again.
    db.sql("DROP TABLE nt_done");
    db.opsctl()
        .args(["migrate", "resolve", "2", "--rolled-back"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    std::fs::write(
        dir.path().join("V2__nt.sql"),
        "-- opsctl:no-transaction\nCREATE TABLE nt_done (id int);\nCREATE INDEX CONCURRENTLY nt_idx ON nt_done (id);\n",
    )
    .unwrap();
    db.opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    assert_eq!(history_versions(&db), "1:success,2:success,3:success");
    // resolve on an applied version is refused; a resolve without a choice is a usage error.
    db.opsctl()
        .args(["migrate", "resolve", "2", "--applied"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    db.opsctl().args(["migrate", "resolve", "2"]).run().code(2);
}

#[test]
fn resolve_applied_clears_failure() {
    let text = "-- opsctl:no-transaction\nCREATE TABLE ra (id int);\nSELECT 1/0;\n";
    let dir = migrations_dir(&[("V2__ra.sql", text)]);
    let db = TestDb::new("mig_resapplied");
    db.opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    db.opsctl()
        .args(["migrate", "resolve", "2", "--applied"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    db.opsctl()
        .args(["migrate", "status"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
}

#[test]
fn baseline_adopts_existing_schema() {
    let db = TestDb::new("mig_base");
    for f in migration_files() {
        db.sql(&std::fs::read_to_string(f).unwrap());
    }
    // Without a baseline, up would fail on the existing tables.
    let top = repo_versions().into_iter().max().unwrap().to_string();
    let r = db
        .opsctl()
        .args(["migrate", "baseline", "--version", &top])
        .run()
        .success();
    assert!(r.stdout.contains(&format!("V{top}")), "{}", r.all());
    db.opsctl().args(["migrate", "status"]).run().success();
    let j = db
        .opsctl()
        .args(["migrate", "status", "--format", "json"])
        .run()
        .json();
    assert_eq!(j["migrations"][0]["state"], "baseline");
    let r = db.opsctl().args(["migrate", "up"]).run().success();
    assert!(r.stdout.contains("nothing to apply"), "{}", r.all());
    db.opsctl().args(["migrate", "verify"]).run().success();
    let again = db
        .opsctl()
        .args(["migrate", "baseline", "--version", &top])
        .run()
        .code(1);
    assert!(again.stderr.contains("already"), "{}", again.all());
}

#[test]
fn out_of_order_refused_unless_allowed() {
    let dir = migrations_dir(&[("V3__c.sql", "CREATE TABLE c3 (id int);\n")]);
    let db = TestDb::new("mig_ooo");
    db.opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    std::fs::write(dir.path().join("V2__b.sql"), "CREATE TABLE b2 (id int);\n").unwrap();
    let r = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    assert!(
        r.stderr.contains("V2 (b)") && r.stderr.contains("--allow-out-of-order"),
        "{}",
        r.all()
    );
    assert_eq!(db.sql("SELECT to_regclass('b2') IS NULL"), "t");
    let st = db
        .opsctl()
        .args(["migrate", "status", "--format", "json"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1)
        .json();
    assert_eq!(st["migrations"][1]["state"], "out-of-order");
    db.opsctl()
        .args(["migrate", "up", "--allow-out-of-order"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    assert_eq!(history_versions(&db), "1:success,2:success,3:success");
}

#[test]
fn dry_run_and_to() {
    let dir = migrations_dir(&[
        ("V2__b.sql", "CREATE TABLE b2 (id int);\n"),
        ("V3__c.sql", "CREATE TABLE c3 (id int);\n"),
    ]);
    let db = TestDb::new("mig_dry");
    let r = db
        .opsctl()
        .args(["migrate", "up", "--dry-run"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    assert!(
        r.stdout.contains("would apply V1") && r.stdout.contains("would apply V3"),
        "{}",
        r.all()
    );
    assert_eq!(
        db.sql("SELECT to_regclass('opsctl.schema_history') IS NULL"),
        "t"
    );
    db.opsctl()
        .args(["migrate", "up", "--to", "2"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    assert_eq!(history_versions(&db), "1:success,2:success");
    let j = db
        .opsctl()
        .args(["migrate", "status", "--format", "json"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1)
        .json();
    assert_eq!(j["pending"], 1);
    assert_eq!(j["current_version"], 2);
}

#[test]
fn bad_migration_files_are_usage_errors() {
    let db = TestDb::new("mig_badfiles");
    let dir = migrations_dir(&[("V1__dup.sql", "SELECT 1;\n")]);
    let r = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(2);
    assert!(
        r.stderr.contains("two migration files have version 1"),
        "{}",
        r.all()
    );
    let dir = migrations_dir(&[("V2_nounderscores.sql", "SELECT 1;\n")]);
    db.opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(2);
    let missing: PathBuf = dir.path().join("nope");
    db.opsctl()
        .args(["migrate", "status"])
        .args(dir_arg(&missing))
        .run()
        .code(2);
    db.opsctl()
        .args(["migrate", "up", "--lock-wait", "soon"])
        .run()
        .code(2);
}

#[test]
fn concurrently_without_directive_says_what_to_do() {
    let dir = migrations_dir(&[(
        "V2__idx.sql",
        "CREATE INDEX CONCURRENTLY idx_x ON positions (symbol);\n",
    )]);
    let db = TestDb::new("mig_needsdirective");
    let r = db
        .opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .code(1);
    assert!(r.stderr.contains("-- opsctl:no-transaction"), "{}", r.all());
    assert_eq!(history_versions(&db), "1:success");
}

#[test]
fn session_settings_do_not_leak_between_files() {
    let dir = migrations_dir(&[
        (
            "V2__opsctl_tbl.sql",
            "SET search_path = opsctl;\nCREATE TABLE in_opsctl (id int);\n",
        ),
        ("V3__public_tbl.sql", "CREATE TABLE in_public (id int);\n"),
    ]);
    let db = TestDb::new("mig_reset");
    db.opsctl()
        .args(["migrate", "up"])
        .args(dir_arg(dir.path()))
        .run()
        .success();
    assert_eq!(
        db.sql("SELECT to_regclass('opsctl.in_opsctl') IS NOT NULL, to_regclass('public.in_public') IS NOT NULL"),
        "t|t"
    );
}
