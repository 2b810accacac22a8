//! `opsctl vacuum` and `opsctl reindex`: need-based choice, dry runs, invalid indexes and
//! leftovers, writers under load, names with mixed case and spaces, the maintenance lock.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{cluster, TestDb, PASSWORD};

/// Creates `name` (a quoted SQL name) with `rows` rows, autovacuum off so nothing cleans
/// up behind the test, statistics fresh; then updates every row and deletes half of them.
fn bloated_table(db: &TestDb, name: &str, rows: u32) {
    db.sql(&format!(
        "CREATE TABLE {name} (id bigint PRIMARY KEY, v int NOT NULL, note text) \
         WITH (autovacuum_enabled = false);
         INSERT INTO {name} SELECT g, g % 100, 'n' || g FROM generate_series(1, {rows}) g;
         ANALYZE {name};"
    ));
    db.sql(&format!(
        "UPDATE {name} SET v = v + 1; DELETE FROM {name} WHERE id % 2 = 0;"
    ));
}

fn healthy_table(db: &TestDb, name: &str, rows: u32) {
    db.sql(&format!(
        "CREATE TABLE {name} (id bigint PRIMARY KEY, v int NOT NULL);
         INSERT INTO {name} SELECT g, g FROM generate_series(1, {rows}) g;"
    ));
    db.sql(&format!("VACUUM ANALYZE {name}"));
}

fn dead_tuples(db: &TestDb, table: &str) -> i64 {
    db.sql(&format!(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = '{table}'"
    ))
    .parse()
    .unwrap()
}

fn planned_tables(j: &serde_json::Value) -> Vec<String> {
    j["plan"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn vacuum_chooses_the_bloated_table_and_dead_tuples_drop() {
    let db = TestDb::with_schema("vac");
    bloated_table(&db, "orders", 20_000);
    healthy_table(&db, "quiet", 20_000);
    let before = dead_tuples(&db, "orders");
    assert!(before >= 20_000, "{before}");

    // Dry run: the plan, with reasons and figures, and nothing changed.
    let r = db
        .opsctl()
        .args(["vacuum", "--dry-run", "--format", "json"])
        .run()
        .success();
    let j = r.json();
    assert_eq!(j["status"], "dry_run");
    assert_eq!(planned_tables(&j), vec!["orders"], "{j}");
    let t = &j["plan"]["tables"][0];
    let reasons: Vec<&str> = t["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"dead_tuples"), "{t}");
    assert!(reasons.contains(&"autovacuum_behind"), "{t}");
    assert_eq!(t["autovacuum_enabled"], false);
    assert_eq!(t["action"], "VACUUM (ANALYZE)");
    assert_eq!(dead_tuples(&db, "orders"), before);
    assert_eq!(db.sql("SELECT count(*) FROM opsctl.maintenance_runs"), "0");
    let text = db.opsctl().args(["vacuum", "--dry-run"]).run().success();
    assert!(text.stdout.contains("public.orders"), "{}", text.stdout);
    assert!(text.stdout.contains("dead tuples"), "{}", text.stdout);
    assert!(
        text.stdout.contains("nothing was changed"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("quiet"), "{}", text.stdout);

    // The real run.
    let r = db
        .opsctl()
        .args(["vacuum", "--format", "json"])
        .run()
        .success();
    let j = r.json();
    assert_eq!(j["status"], "ok", "{j}");
    let res = &j["results"][0];
    assert_eq!(res["table"], "orders");
    assert_eq!(res["outcome"], "ok");
    assert!(
        res["dead_tuples_before"].as_i64().unwrap() >= 20_000,
        "{res}"
    );
    assert!(res["dead_tuples_after"].as_i64().unwrap() < 100, "{res}");
    assert!(dead_tuples(&db, "orders") < 100);
    let row = db.sql(
        "SELECT job, relation, action, outcome, dead_tuples_before > dead_tuples_after, \
         reason <> '' FROM opsctl.maintenance_runs",
    );
    assert_eq!(row, "vacuum|orders|VACUUM (ANALYZE)|ok|t|t");

    // Healthy now: a second run has nothing to do.
    let r = db.opsctl().args(["vacuum"]).run().success();
    assert!(r.stdout.contains("nothing to do"), "{}", r.stdout);
}

#[test]
fn vacuum_freeze_max_duration_and_text_lines() {
    let db = TestDb::with_schema("vacfrz");
    bloated_table(&db, "a", 10_000);
    bloated_table(&db, "b", 10_000);
    // The window is closed before the first table: both are reported as left.
    let r = db
        .opsctl()
        .args(["vacuum", "--max-duration", "0s", "--format", "json"])
        .run()
        .success();
    let j = r.json();
    assert_eq!(j["status"], "partial", "{j}");
    assert_eq!(j["not_started"].as_array().unwrap().len(), 2, "{j}");
    let r = db
        .opsctl()
        .args(["vacuum", "--max-duration", "0s"])
        .run()
        .success();
    assert!(r.stdout.contains("left for the next run"), "{}", r.stdout);

    // --freeze: every table in scope, FREEZE, one line per table.
    let r = db
        .opsctl()
        .args(["vacuum", "--freeze", "--table", "a", "--max-duration", "1h"])
        .run()
        .success();
    assert!(
        r.stdout
            .contains("ok      VACUUM (FREEZE, ANALYZE) public.a"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("public.b"), "{}", r.stdout);
    // Bad durations are usage errors.
    db.opsctl()
        .args(["vacuum", "--max-duration", "soon"])
        .run()
        .code(2);
}

#[test]
fn vacuum_handles_leaf_partitions_one_by_one() {
    let db = TestDb::with_schema("vacpart");
    db.sql(
        "ALTER TABLE trades_default SET (autovacuum_enabled = false);
         INSERT INTO trades (id, symbol, side, quantity, entry_price, entry_time)
         SELECT 't' || g, 'BTC', 'buy', 1, 100, timestamp '2020-01-01' + g * interval '1 minute'
           FROM generate_series(1, 20000) g;",
    );
    db.sql("UPDATE trades SET exit_price = 101");
    let j = db
        .opsctl()
        .args([
            "vacuum",
            "--table",
            "trades",
            "--dry-run",
            "--format",
            "json",
        ])
        .run()
        .success()
        .json();
    assert_eq!(planned_tables(&j), vec!["trades_default"], "{j}");
    assert_eq!(j["plan"]["tables"][0]["partition_of"], "public.trades");
    let j = db
        .opsctl()
        .args(["vacuum", "--table", "public.trades", "--format", "json"])
        .run()
        .success()
        .json();
    let results = j["results"].as_array().unwrap();
    for r in results {
        assert_eq!(r["outcome"], "ok", "{r}");
        if r["table"] == "trades" {
            assert_eq!(r["action"], "ANALYZE", "never VACUUM the parent: {r}");
        }
    }
    assert!(results
        .iter()
        .any(|r| r["table"] == "trades_default" && r["action"] == "VACUUM (ANALYZE)"));
}

#[test]
fn mixed_case_names_with_spaces_work() {
    let db = TestDb::with_schema("vacmixed");
    bloated_table(&db, "\"Order Book\"", 10_000);
    for name in ["Order Book", "public.Order Book", "\"Order Book\""] {
        let j = db
            .opsctl()
            .args(["vacuum", "--dry-run", "--format", "json", "--table", name])
            .run()
            .success()
            .json();
        assert_eq!(planned_tables(&j), vec!["Order Book"], "{name}: {j}");
    }
    let r = db
        .opsctl()
        .args(["vacuum", "--table", "Order Book"])
        .run()
        .success();
    assert!(
        r.stdout
            .contains("ok      VACUUM (ANALYZE) public.\"Order Book\""),
        "{}",
        r.stdout
    );
    assert!(dead_tuples(&db, "Order Book") < 100);
    // Its primary key is bloated by the updates and deletes: rebuilt, quoted.
    let r = db
        .opsctl()
        .args(["reindex", "--table", "public.Order Book", "--min-size", "0"])
        .run()
        .success();
    assert!(
        r.stdout
            .contains("ok      REINDEX INDEX CONCURRENTLY public.\"Order Book_pkey\""),
        "{}",
        r.stdout
    );
    db.sql("CREATE INDEX \"Book Idx\" ON \"Order Book\" (v)");
    let r = db
        .opsctl()
        .args(["reindex", "--index", "Book Idx", "--min-size", "0"])
        .run()
        .success();
    assert!(
        r.stdout.contains("public.\"Book Idx\": estimated bloat"),
        "{}",
        r.stdout
    );
}

#[test]
fn unknown_names_fail_clearly() {
    let db = TestDb::with_schema("vacunknown");
    healthy_table(&db, "\"Ledger\"", 100);
    let r = db
        .opsctl()
        .args(["vacuum", "--table", "nosuch"])
        .run()
        .code(1);
    assert!(
        r.stderr.contains("table \"nosuch\" not found"),
        "{}",
        r.stderr
    );
    let r = db
        .opsctl()
        .args(["vacuum", "--table", "ledger"])
        .run()
        .code(1);
    assert!(
        r.stderr.contains("did you mean public.\"Ledger\""),
        "{}",
        r.stderr
    );
    let r = db
        .opsctl()
        .args(["reindex", "--index", "nosuch_idx"])
        .run()
        .code(1);
    assert!(
        r.stderr.contains("index \"nosuch_idx\" not found"),
        "{}",
        r.stderr
    );
    let r = db
        .opsctl()
        .args(["reindex", "--index", "Ledger"])
        .run()
        .code(1);
    assert!(r.stderr.contains("use --table"), "{}", r.stderr);
    let r = db
        .opsctl()
        .args(["reindex", "--table", "Ledger_pkey"])
        .run()
        .code(1);
    assert!(r.stderr.contains("use --index"), "{}", r.stderr);
    db.opsctl()
        .args(["reindex", "--table", "Ledger", "--index", "Ledger_pkey"])
        .run()
        .code(2);
}

fn index_state(db: &TestDb, name: &str) -> String {
    db.sql(&format!(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname = '{name}'"
    ))
}

fn leftovers(db: &TestDb) -> String {
    db.sql(
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class \
         WHERE relkind = 'i' AND (relname LIKE '%ccnew%' OR relname LIKE '%ccold%')",
    )
}

#[test]
fn invalid_index_is_found_reported_then_repaired() {
    let db = TestDb::with_schema("reinv");
    db.sql(
        "CREATE TABLE accounts (id int PRIMARY KEY, code int);
         INSERT INTO accounts SELECT g, g FROM generate_series(1, 10000) g;
         UPDATE accounts SET code = 1 WHERE id IN (1, 2);",
    );
    // A failed CREATE UNIQUE INDEX CONCURRENTLY leaves an INVALID index behind.
    let out = cluster().psql_output(
        &db.name,
        "CREATE UNIQUE INDEX CONCURRENTLY accounts_code_key ON accounts (code)",
    );
    assert!(!out.status.success());
    assert_eq!(index_state(&db, "accounts_code_key"), "f");

    let j = db
        .opsctl()
        .args(["reindex", "--dry-run", "--format", "json"])
        .run()
        .success()
        .json();
    let planned = &j["plan"]["indexes"];
    assert_eq!(planned.as_array().unwrap().len(), 1, "{j}");
    assert_eq!(planned[0]["index"], "accounts_code_key");
    assert_eq!(planned[0]["reason"]["kind"], "invalid");

    // Still failing (duplicates): reported by name with what to do, left alone, no leftovers.
    let r = db.opsctl().args(["reindex"]).run().code(1);
    assert!(r.stdout.contains("failed"), "{}", r.stdout);
    assert!(
        r.stdout.contains("public.accounts_code_key"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("remove the duplicates"), "{}", r.stdout);
    assert!(r.stdout.contains("needs a person"), "{}", r.stdout);
    assert_eq!(index_state(&db, "accounts_code_key"), "f");
    assert_eq!(leftovers(&db), "");
    assert_eq!(
        db.sql("SELECT outcome FROM opsctl.maintenance_runs WHERE relation = 'accounts_code_key'"),
        "failed"
    );

    // Fixed data: repaired.
    db.sql("UPDATE accounts SET code = 2 WHERE id = 2");
    let j = db
        .opsctl()
        .args(["reindex", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(j["status"], "ok", "{j}");
    assert_eq!(j["results"][0]["outcome"], "ok");
    assert_eq!(index_state(&db, "accounts_code_key"), "t");
    assert_eq!(leftovers(&db), "");
}

#[test]
fn leftovers_of_failed_concurrent_reindex_are_cleaned_up() {
    let db = TestDb::with_schema("releft");
    db.sql(
        "CREATE TABLE pos (id int PRIMARY KEY, code int, other int);
         INSERT INTO pos SELECT g, g, g FROM generate_series(1, 5000) g;
         UPDATE pos SET code = 1, other = 1 WHERE id IN (1, 2);",
    );
    for sql in [
        "CREATE UNIQUE INDEX CONCURRENTLY pos_code_key ON pos (code)",
        // A failed REINDEX CONCURRENTLY leaves pos_code_key_ccnew.
        "REINDEX INDEX CONCURRENTLY pos_code_key",
        // An invalid index with a _ccold name stands for an undropped old copy.
        "CREATE UNIQUE INDEX CONCURRENTLY pos_other_key_ccold ON pos (other)",
    ] {
        assert!(
            !cluster().psql_output(&db.name, sql).status.success(),
            "{sql}"
        );
    }
    assert_eq!(leftovers(&db), "pos_code_key_ccnew,pos_other_key_ccold");
    db.sql("UPDATE pos SET code = 2, other = 2 WHERE id = 2");
    let j = db
        .opsctl()
        .args(["reindex", "--dry-run", "--format", "json"])
        .run()
        .success()
        .json();
    let kinds: Vec<String> = j["plan"]["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["index"].as_str().unwrap(),
                i["reason"]["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "pos_other_key_ccold:leftover_ccold",
            "pos_code_key_ccnew:leftover_ccnew"
        ],
        "{j}"
    );
    // The dry run changed nothing.
    assert_eq!(leftovers(&db), "pos_code_key_ccnew,pos_other_key_ccold");
    assert_eq!(index_state(&db, "pos_code_key"), "f");
    let r = db.opsctl().args(["reindex"]).run().success();
    assert!(r.stdout.contains("DROP INDEX CONCURRENTLY"), "{}", r.stdout);
    assert_eq!(leftovers(&db), "");
    assert_eq!(index_state(&db, "pos_code_key"), "t");
}

#[test]
fn bloated_index_is_rebuilt_healthy_one_is_not() {
    let db = TestDb::with_schema("rebloat");
    db.sql(
        "CREATE TABLE ticks (id int PRIMARY KEY, px int);
         INSERT INTO ticks SELECT g, g FROM generate_series(1, 100000) g;
         CREATE INDEX ticks_px_idx ON ticks (px);",
    );
    db.sql("DELETE FROM ticks WHERE id % 10 < 7");
    db.sql("VACUUM ANALYZE ticks");
    healthy_table(&db, "calm", 100_000);
    // Estimates only (no pgstattuple): both ticks indexes, not calm's.
    let j = db
        .opsctl()
        .args([
            "reindex",
            "--dry-run",
            "--min-size",
            "1MiB",
            "--format",
            "json",
        ])
        .run()
        .success()
        .json();
    assert_eq!(j["plan"]["pgstattuple"], false);
    let names: Vec<&str> = j["plan"]["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{j}");
    assert!(
        names.contains(&"ticks_pkey") && names.contains(&"ticks_px_idx"),
        "{j}"
    );
    let est = j["plan"]["indexes"][0]["reason"]["estimate"]
        .as_f64()
        .unwrap();
    assert!(est > 0.5, "{j}");
    // The default 10 MiB floor leaves these small indexes alone.
    let j = db
        .opsctl()
        .args(["reindex", "--dry-run", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(j["plan"]["indexes"].as_array().unwrap().len(), 0, "{j}");

    // With pgstattuple the estimate is confirmed, then the rebuild shrinks the index.
    db.sql("CREATE EXTENSION pgstattuple");
    let size = |n: &str| -> i64 {
        db.sql(&format!("SELECT pg_relation_size('{n}')"))
            .parse()
            .unwrap()
    };
    let before = size("ticks_px_idx");
    let oid_before = db.sql("SELECT 'ticks_px_idx'::regclass::oid");
    db.opsctl()
        .args(["reindex", "--dry-run", "--min-size", "0"])
        .run()
        .success();
    assert_eq!(size("ticks_px_idx"), before, "a dry run rebuilds nothing");
    assert_eq!(db.sql("SELECT 'ticks_px_idx'::regclass::oid"), oid_before);
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy.path(),
        "[maintenance]\nreindex_min_size = \"1MiB\"\n",
    )
    .unwrap();
    let j = db
        .opsctl()
        .args([
            "reindex", "--table", "ticks", "--format", "json", "--policy",
        ])
        .arg(policy.path())
        .run()
        .success()
        .json();
    assert_eq!(j["plan"]["pgstattuple"], true);
    let confirmed = j["plan"]["indexes"][0]["reason"]["confirmed"]
        .as_f64()
        .unwrap();
    assert!(confirmed > 0.5, "{j}");
    for r in j["results"].as_array().unwrap() {
        assert_eq!(r["outcome"], "ok", "{r}");
    }
    let after = size("ticks_px_idx");
    assert!(after * 2 < before, "{before} -> {after}");
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM opsctl.maintenance_runs WHERE job = 'reindex' \
             AND outcome = 'ok' AND size_after_bytes < size_before_bytes"
        ),
        "2"
    );
}

/// When each write succeeded, and the failures.
type Writes = (Vec<Instant>, Vec<String>);

/// Writes into `table` from another connection (short autocommit statements, as the
/// application does) until stopped.
fn start_writers(db: &TestDb, table: &str) -> (Arc<AtomicBool>, std::thread::JoinHandle<Writes>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let url = db.url.clone();
    let table = table.to_string();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let settings = opsctl::db::ConnSettings::resolve(
                &opsctl::db::ConnSources {
                    url: Some(url),
                    ..Default::default()
                },
                |_| None,
            )
            .unwrap();
            let conn = opsctl::db::connect(&settings).await.unwrap();
            let mut writes = Vec::new();
            let mut failures = Vec::new();
            let mut n: i64 = 10_000_000;
            while !stop2.load(Ordering::SeqCst) {
                n += 1;
                let ins = format!("INSERT INTO {table} (id, v) VALUES ($1, 1)");
                let upd = format!("UPDATE {table} SET v = v + 1 WHERE id = $1");
                for (sql, id) in [
                    (ins, n),
                    (upd, n - 1),
                    (
                        format!("UPDATE {table} SET v = v + 1 WHERE id = $1"),
                        (n % 5000) * 2 + 1,
                    ),
                ] {
                    match conn.execute(sql.as_str(), &[&id]).await {
                        Ok(_) => writes.push(Instant::now()),
                        Err(e) => failures.push(opsctl::db::describe(&e)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (writes, failures)
        })
    });
    (stop, handle)
}

#[test]
fn writers_keep_working_during_vacuum_and_reindex() {
    let db = TestDb::with_schema("reload");
    bloated_table(&db, "fills", 100_000);
    db.sql("CREATE INDEX fills_v_idx ON fills (v)");
    db.sql("VACUUM fills");
    let (stop, handle) = start_writers(&db, "fills");
    std::thread::sleep(Duration::from_millis(300));
    db.sql("UPDATE fills SET v = v + 1 WHERE id % 3 = 0");
    let t0 = Instant::now();
    let v = db
        .opsctl()
        .args(["vacuum", "--table", "fills", "--format", "json"])
        .run();
    let t1 = Instant::now();
    let r = db
        .opsctl()
        .args([
            "reindex",
            "--table",
            "fills",
            "--min-size",
            "0",
            "--format",
            "json",
        ])
        .run();
    let t2 = Instant::now();
    // Keep writing a moment after the jobs too.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let (writes, failures) = handle.join().unwrap();
    let v = v.success().json();
    let r = r.success().json();
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["results"][0]["outcome"], "ok", "{v}");
    let rebuilt = r["results"].as_array().unwrap();
    assert!(
        !rebuilt.is_empty(),
        "the bloated primary key should be rebuilt: {r}"
    );
    assert!(rebuilt.iter().all(|x| x["outcome"] == "ok"), "{r}");
    assert!(failures.is_empty(), "writes failed: {failures:?}");
    let during = |a: Instant, b: Instant| writes.iter().filter(|w| **w >= a && **w <= b).count();
    assert!(
        during(t0, t1) >= 3,
        "{} writes during vacuum",
        during(t0, t1)
    );
    assert!(
        during(t1, t2) >= 3,
        "{} writes during reindex",
        during(t1, t2)
    );
}

#[test]
fn lock_timeouts_are_retried_with_backoff() {
    let db = TestDb::with_schema("relock");
    bloated_table(&db, "hot", 10_000);
    // Another session holds a lock VACUUM conflicts with, for ~2 s.
    // Another session holds a lock VACUUM conflicts with until VACUUM has waited for it,
    // then 1 s more: at least one 300 ms attempt times out, whatever the machine's load.
    let holder = crate::common::hold_lock_until_waited(
        &db.name,
        "hot",
        "SHARE UPDATE EXCLUSIVE",
        Duration::from_secs(1),
    );
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy.path(),
        "[maintenance]\nlock_timeout = \"300ms\"\nretry_backoff = \"300ms\"\nlock_retries = 6\n",
    )
    .unwrap();
    let j = db
        .opsctl()
        .args(["vacuum", "--format", "json", "--policy"])
        .arg(policy.path())
        .run()
        .success()
        .json();
    let res = &j["results"][0];
    assert_eq!(res["outcome"], "ok", "{j}");
    assert!(res["attempts"].as_u64().unwrap() > 1, "{j}");
    holder.join().unwrap();

    // One that never gets its lock is skipped, said so, exit 1.
    let mut holder = psql_child(
        &db,
        "BEGIN; LOCK TABLE hot IN SHARE UPDATE EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT;",
    );
    db.sql("UPDATE hot SET v = v + 1");
    wait_for(
        &db,
        "SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                   WHERE c.relname = 'hot' AND l.mode = 'ShareUpdateExclusiveLock' AND l.granted",
    );
    std::fs::write(
        policy.path(),
        "[maintenance]\nlock_timeout = \"200ms\"\nretry_backoff = \"100ms\"\nlock_retries = 1\n",
    )
    .unwrap();
    let r = db
        .opsctl()
        .args(["vacuum", "--policy"])
        .arg(policy.path())
        .run()
        .code(1);
    assert!(r.stdout.contains("skipped"), "{}", r.stdout);
    assert!(r.stdout.contains("lock not available"), "{}", r.stdout);
    db.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE '%pg_sleep(8)%' AND pid <> pg_backend_pid()",
    );
    let _ = holder.wait();
}

fn psql_child(db: &TestDb, sql: &str) -> std::process::Child {
    Command::new("psql")
        .args(["-X", "-q", "-c", sql])
        .env("PGHOST", "localhost")
        .env("PGPORT", cluster().port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", &db.name)
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &cluster().ca)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for(db: &TestDb, sql: &str) {
    let t = Instant::now();
    while db.sql(sql) != "t" {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {sql}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_maintenance_job_at_a_time() {
    let db = TestDb::with_schema("relockadv");
    bloated_table(&db, "busy", 5_000);
    let key = opsctl::db::locks::MAINTENANCE;
    let mut holder = psql_child(
        &db,
        &format!("SELECT pg_advisory_lock({key}); SELECT pg_sleep(60);"),
    );
    wait_for(
        &db,
        "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    for job in ["vacuum", "reindex"] {
        let t = Instant::now();
        let r = db.opsctl().args([job, "--lock-wait", "1s"]).run().code(1);
        assert!(
            r.stderr.contains("another maintenance job"),
            "{job}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("--lock-wait"), "{}", r.stderr);
        // The holder is not opsctl: its session, named, with how to end it; no lock number.
        assert!(
            r.stderr.contains("a session of role postgres"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("\"psql\""), "{}", r.stderr);
        assert!(r.stderr.contains("pg_terminate_backend("), "{}", r.stderr);
        assert!(!r.stderr.contains(&key.to_string()), "{}", r.stderr);
        assert!(t.elapsed() < Duration::from_secs(8));
        // A dry run needs no lock.
        db.opsctl().args([job, "--dry-run"]).run().success();
    }
    assert!(dead_tuples(&db, "busy") > 1000);
    db.sql("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'");
    let _ = holder.wait();
    // Lock released: the job runs.
    let t = Instant::now();
    while db.sql("SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory'") == "t" {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(100));
    }
    db.opsctl()
        .args(["vacuum", "--lock-wait", "5s"])
        .run()
        .success();

    // A real second run: the first holds the maintenance lock while it retries a table
    // lock another session keeps until the second has refused (ended then, so the test
    // does not depend on how fast a loaded machine starts processes).
    db.sql("UPDATE busy SET v = v + 1");
    let mut holder = psql_child(
        &db,
        "BEGIN; LOCK TABLE busy IN SHARE UPDATE EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;",
    );
    wait_for(
        &db,
        "SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 'busy' AND l.mode = 'ShareUpdateExclusiveLock' AND l.granted",
    );
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy.path(),
        "[maintenance]\nlock_timeout = \"200ms\"\nretry_backoff = \"200ms\"\nlock_retries = 60\n",
    )
    .unwrap();
    let first = db
        .opsctl()
        .args(["vacuum", "--policy"])
        .arg(policy.path())
        .spawn();
    wait_for(
        &db,
        "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    let second = db
        .opsctl()
        .args(["vacuum", "--lock-wait", "1s"])
        .run()
        .code(1);
    assert!(
        second.stderr.contains("another maintenance job"),
        "{}",
        second.stderr
    );
    db.sql(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 'busy' AND l.mode = 'ShareUpdateExclusiveLock' AND l.granted \
         AND l.pid <> pg_backend_pid()",
    );
    let out = first.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok      VACUUM (ANALYZE) public.busy"),
        "{stdout}"
    );
    let _ = holder.wait();
}

#[test]
fn invalid_partitioned_index_is_explained() {
    let db = TestDb::with_schema("repart");
    db.sql("CREATE INDEX trades_model_idx ON ONLY trades (model_id)");
    let r = db.opsctl().args(["reindex", "--dry-run"]).run().success();
    assert!(
        r.stdout
            .contains("public.trades_model_idx: invalid partitioned index on public.trades"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("ATTACH PARTITION"), "{}", r.stdout);
}

#[test]
fn tables_the_role_may_not_maintain_are_reported() {
    let db = TestDb::with_schema("reperm");
    let role = format!("maint_{}", db.name);
    db.sql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'Pw-{role}'; GRANT CREATE ON SCHEMA public TO {role}"
    ));
    bloated_table(&db, "theirs", 5_000);
    db.sql(&format!(
        "ALTER TABLE theirs OWNER TO postgres; SET ROLE {role};"
    ));
    db.sql(&format!(
        "SET ROLE {role}; CREATE TABLE mine (id bigint PRIMARY KEY, v int) \
         WITH (autovacuum_enabled = false); \
         INSERT INTO mine SELECT g, g FROM generate_series(1, 5000) g; ANALYZE mine; \
         UPDATE mine SET v = v + 1;"
    ));
    let url = format!(
        "postgresql://{role}:Pw-{role}@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        cluster().port,
        db.name,
        cluster().ca.display()
    );
    let r = db
        .opsctl()
        .env("OPSCTL_DATABASE_URL", &url)
        .args(["vacuum"])
        .run()
        .code(1);
    assert!(
        r.stdout.contains("ok      VACUUM (ANALYZE) public.mine"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.contains("skipped VACUUM (ANALYZE) public.theirs"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("only its owner (postgres)"),
        "{}",
        r.stdout
    );
    assert!(dead_tuples(&db, "theirs") > 1000);
    assert!(
        r.stderr
            .contains("may not write to opsctl.maintenance_runs"),
        "{}",
        r.stderr
    );
    // Indexes of tables it does not own are reported the same way.
    let out = cluster().psql_output(
        &db.name,
        "CREATE UNIQUE INDEX CONCURRENTLY theirs_v_key ON theirs (v)",
    );
    assert!(!out.status.success());
    let r = db
        .opsctl()
        .env("OPSCTL_DATABASE_URL", &url)
        .args(["reindex", "--min-size", "0"])
        .run()
        .code(1);
    assert!(
        r.stdout
            .contains("skipped REINDEX INDEX CONCURRENTLY public.theirs_v_key"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.contains("run opsctl reindex as postgres"),
        "{}",
        r.stdout
    );
}

#[test]
fn bad_policy_values_are_named() {
    let policy = tempfile::NamedTempFile::new().unwrap();
    for (text, key) in [
        ("[maintenance]\nlock_timeout = \"soon\"\n", "lock_timeout"),
        (
            "[maintenance]\nvacuum_dead_ratio = 5\n",
            "vacuum_dead_ratio",
        ),
        (
            "[maintenance]\nreindex_min_size = \"big\"\n",
            "reindex_min_size",
        ),
        ("[maintenance]\nvacuum_min_dead = 5\n", "vacuum_min_dead"),
    ] {
        std::fs::write(policy.path(), text).unwrap();
        for job in ["vacuum", "reindex"] {
            let r = crate::common::opsctl()
                .args([job, "--database-url", "host=localhost", "--policy"])
                .arg(policy.path())
                .run()
                .code(1);
            assert!(r.stderr.contains(key), "{job} {text}: {}", r.stderr);
        }
    }
}
