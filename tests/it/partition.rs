//! `opsctl partition ensure|list` and `opsctl archive --before`: months created and
//! idempotent, stray default rows moved, archives at every kind of date, dry runs that
//! change nothing, kill -9 at many points then resume, a new date while one is
//! unfinished, writers running beside the archive, and a concurrent second archive.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{cluster, free_port, opsctl, TestDb};

/// Trades every hour from 2025-01-01 00:00 for `hours` hours (Jan..May 2025 for 3600).
fn seed(db: &TestDb, hours: i64) {
    db.sql(&format!(
        "INSERT INTO users (username, email) VALUES ('ann', 'ann@example.com');
         INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, exit_price, entry_time)
         SELECT 't' || g, 1, 'BTC', 'buy', 1, 100 + g, 101 + g,
                timestamp '2025-01-01' + g * interval '1 hour'
           FROM generate_series(0, {}) g",
        hours - 1
    ));
}

/// A schema with seeded trades and the months made by `partition ensure`.
fn seeded(tag: &str, hours: i64) -> TestDb {
    let db = TestDb::with_schema(tag);
    seed(&db, hours);
    db.opsctl().args(["partition", "ensure"]).run().success();
    db
}

fn has_archive(db: &TestDb) -> bool {
    db.sql("SELECT to_regclass('archive.trades') IS NOT NULL") == "t"
}

/// Count and checksum of every trade, live or archived: equal before and after means
/// nothing was lost and nothing duplicated.
/// Months an interrupted run detached but did not attach yet are counted too: the
/// journal names them and the next run attaches them.
fn fingerprint(db: &TestDb) -> String {
    let mut src = if has_archive(db) {
        "SELECT * FROM public.trades UNION ALL SELECT * FROM archive.trades".to_string()
    } else {
        "SELECT * FROM public.trades".to_string()
    };
    let pending = db.sql(
        "SELECT string_agg(partition, ',') FROM opsctl.archive_journal_partitions WHERE state = 'detached'",
    );
    for p in pending.split(',').filter(|p| !p.is_empty()) {
        src.push_str(&format!(" UNION ALL SELECT * FROM archive.{p}"));
    }
    db.sql(&format!(
        "SELECT count(*) || ':' || md5(coalesce(string_agg(id || '|' || entry_time::text || '|' \
         || coalesce(exit_price::text, '-'), ',' ORDER BY id, entry_time), '')) FROM ({src}) x"
    ))
}

fn live_older(db: &TestDb, date: &str) -> i64 {
    db.sql(&format!(
        "SELECT count(*) FROM trades WHERE entry_time < '{date}'"
    ))
    .parse()
    .unwrap()
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.sql(sql).parse().unwrap()
}

#[cfg(feature = "test-hooks")]
/// Starts opsctl with the test hook pausing at `point`; returns once it is paused there.
fn spawn_paused(db: &TestDb, args: &[&str], point: &str) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    let mut child = db
        .opsctl()
        .env("OPSCTL_TEST_PAUSE_AT", point)
        .args(args)
        .spawn();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let marker = format!("paused at {point}");
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l.contains(&marker) => return child,
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "opsctl never paused at {point} (exit {:?}); stderr: {}",
                    out.status.code(),
                    seen.join("\n")
                );
            }
        }
    }
}

#[cfg(feature = "test-hooks")]
fn kill9(mut child: std::process::Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

// ---------------------------------------------------------------------------------------
// partition ensure / list

#[test]
fn ensure_creates_months_moves_default_rows_and_is_idempotent() {
    let db = TestDb::with_schema("pens");
    seed(&db, 3600);
    assert_eq!(count(&db, "SELECT count(*) FROM trades_default"), 3600);
    let r = db
        .opsctl()
        .args(["partition", "ensure", "--format", "json"])
        .run()
        .success();
    let j = r.json();
    let t = &j["tables"][0];
    assert_eq!(t["table"], "public.trades");
    assert_eq!(t["rows_moved_from_default"], 3600);
    assert_eq!(t["rows_left_in_default"], 0);
    assert_eq!(t["runway"]["future_months"], 3);
    let created: Vec<&str> = t["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["partition"].as_str().unwrap())
        .collect();
    assert_eq!(created[0], "trades_p2025_01");
    assert_eq!(count(&db, "SELECT count(*) FROM trades_default"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM trades_p2025_02"), 672);
    // Each month carries its range as a CHECK constraint.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'trades_p2025_02_range' AND convalidated"
        ),
        1
    );
    let before = db.sql("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'trades_p%' AND relkind = 'r'");

    // Twice is a no-op.
    let r = db.opsctl().args(["partition", "ensure"]).run().success();
    assert!(r.stdout.contains("nothing to do"), "{}", r.stdout);
    let j = db
        .opsctl()
        .args(["partition", "ensure", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(j["tables"][0]["created"].as_array().unwrap().len(), 0);
    let after = db.sql("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'trades_p%' AND relkind = 'r'");
    assert_eq!(before, after);

    // list: states, ranges, runway.
    let j = db
        .opsctl()
        .args(["partition", "list", "--format", "json"])
        .run()
        .success()
        .json();
    let t = &j["tables"][0];
    assert_eq!(t["runway"]["future_months"], 3);
    assert_eq!(t["runway"]["current_month"], true);
    assert_eq!(t["rows_in_default"], 0);
    let parts = t["partitions"].as_array().unwrap();
    let jan = parts
        .iter()
        .find(|p| p["name"] == "trades_p2025_01")
        .unwrap();
    assert_eq!(jan["state"], "live");
    assert_eq!(jan["from"], "2025-01-01T00:00:00");
    assert_eq!(jan["to"], "2025-02-01T00:00:00");
    assert!(jan["bytes"].as_i64().unwrap() > 0);
    let def = parts
        .iter()
        .find(|p| p["name"] == "trades_default")
        .unwrap();
    assert_eq!(def["state"], "default");
    let text = db
        .opsctl()
        .args(["partition", "list"])
        .run()
        .success()
        .stdout;
    assert!(text.contains("runway 3 future months"), "{text}");
    assert!(text.contains("public.trades_p2025_01"), "{text}");
}

#[test]
fn ensure_premake_and_dry_run() {
    let db = TestDb::with_schema("ppre");
    let n = || {
        count(
            &db,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'trades'::regclass",
        )
    };
    assert_eq!(n(), 1);
    let r = db
        .opsctl()
        .args(["partition", "ensure", "--premake", "6", "--dry-run"])
        .run()
        .success();
    assert!(
        r.stdout.contains("would create 7 partitions"),
        "{}",
        r.stdout
    );
    assert_eq!(n(), 1, "dry run created something");
    let j = db
        .opsctl()
        .args(["partition", "ensure", "--premake", "6", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(j["tables"][0]["runway"]["future_months"], 6);
    assert_eq!(n(), 8);
}

#[test]
fn stray_rows_in_the_default_partition_are_moved() {
    let db = seeded("pstray", 3600);
    // An old month with no partition, and the default partition catches its rows.
    db.sql(
        "INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time)
         VALUES ('old1', 1, 'ETH', 'sell', 2, 50, '2024-06-10 08:00'),
                ('old2', 1, 'ETH', 'sell', 2, 50, '2024-06-11 09:00')",
    );
    assert_eq!(count(&db, "SELECT count(*) FROM trades_default"), 2);
    let j = db
        .opsctl()
        .args(["partition", "list", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(j["tables"][0]["rows_in_default"], 2);
    let r = db.opsctl().args(["partition", "ensure"]).run().success();
    assert!(
        r.stdout.contains("moved 2 rows from the default"),
        "{}",
        r.all()
    );
    assert_eq!(count(&db, "SELECT count(*) FROM trades_default"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM trades_p2024_06"), 2);
    assert_eq!(count(&db, "SELECT count(*) FROM trades"), 3602);
}

#[test]
fn non_partitioned_or_missing_tables_are_clear_errors() {
    let db = TestDb::with_schema("pnp");
    let r = db
        .opsctl()
        .args(["partition", "ensure", "--table", "account_totals"])
        .run()
        .code(2);
    assert!(
        r.stderr.contains("account_totals is not partitioned"),
        "{}",
        r.stderr
    );
    // Named in the policy: same clear error.
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("p.toml");
    std::fs::write(
        &pol,
        "[[partitions.tables]]\ntable = \"account_totals\"\ncolumn = \"timestamp\"\n",
    )
    .unwrap();
    let r = db
        .opsctl()
        .args(["partition", "ensure", "--policy"])
        .arg(&pol)
        .run()
        .code(2);
    assert!(r.stderr.contains("not partitioned"), "{}", r.stderr);
    let r = db
        .opsctl()
        .args(["partition", "list", "--table", "nosuch"])
        .run()
        .code(2);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    let r = db
        .opsctl()
        .args([
            "archive",
            "--before",
            "2025-01-01",
            "--table",
            "account_totals",
        ])
        .run()
        .code(2);
    assert!(r.stderr.contains("not partitioned"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------
// archive: dates

fn archive_json(db: &TestDb, args: &[&str]) -> serde_json::Value {
    let r = db
        .opsctl()
        .arg("archive")
        .args(args)
        .args(["--format", "json"])
        .run()
        .success();
    r.json()
}

#[test]
fn archive_at_a_month_start_moves_whole_months_only() {
    let db = seeded("amon", 3600);
    let fp = fingerprint(&db);
    let j = archive_json(&db, &["--before", "2025-03-01"]);
    let s = &j["summary"];
    assert_eq!(j["verified"], true, "{j}");
    assert_eq!(
        s["partitions_moved"],
        serde_json::json!(["archive.trades_p2025_01", "archive.trades_p2025_02"])
    );
    assert_eq!(s["rows_moved"], 744 + 672);
    assert_eq!(s["rows_moved_by_batches"], 0);
    assert_eq!(s["source_rows"], 744 + 672);
    assert_eq!(s["live_rows_left"], 0);
    assert!(s["bytes_moved"].as_i64().unwrap() > 0);
    assert_eq!(live_older(&db, "2025-03-01"), 0);
    assert_eq!(fingerprint(&db), fp);
    // The months are now partitions of archive.trades, queryable.
    assert_eq!(
        db.sql("SELECT string_agg(c.oid::regclass::text, ',' ORDER BY 1) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'archive.trades'::regclass AND c.relname LIKE '%p2025%'"),
        "archive.trades_p2025_01,archive.trades_p2025_02"
    );
    let j = db
        .opsctl()
        .args(["partition", "list", "--format", "json"])
        .run()
        .success()
        .json();
    let parts = j["tables"][0]["partitions"].as_array().unwrap();
    let jan = parts
        .iter()
        .find(|p| p["name"] == "trades_p2025_01")
        .unwrap();
    assert_eq!(jan["state"], "archived");
    assert_eq!(jan["schema"], "archive");
    // The same date again: nothing left to do, still verified.
    let j = archive_json(&db, &["--before", "2025-03-01"]);
    assert_eq!(j["summary"]["rows_moved"], 0);
    assert_eq!(j["verified"], true);
}

#[test]
fn archive_mid_month_moves_the_partial_month_in_batches() {
    let db = seeded("amid", 3600);
    let fp = fingerprint(&db);
    let r = db
        .opsctl()
        .args([
            "archive",
            "--before",
            "2025-03-15T12:00:00Z",
            "--batch-size",
            "50",
        ])
        .run()
        .success();
    assert!(r.stdout.contains("done, verified"), "{}", r.stdout);
    assert!(r.stdout.contains("partitions moved: 2"), "{}", r.stdout);
    // March 1 00:00 .. 15 12:00 = 14.5 days = 348 hourly rows, in 7 batches of 50.
    assert!(r.stdout.contains("348 in 7 batches"), "{}", r.stdout);
    assert_eq!(live_older(&db, "2025-03-15 12:00"), 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM trades_p2025_03"),
        744 - 348
    );
    assert_eq!(fingerprint(&db), fp);
    // A later date that covers March whole: the month moves by DETACH/ATTACH and takes
    // over the rows the earlier run put in the archive's default partition.
    let j = archive_json(&db, &["--before", "2025-04-01"]);
    assert_eq!(j["verified"], true, "{j}");
    assert_eq!(
        j["summary"]["partitions_moved"][0],
        "archive.trades_p2025_03"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM archive.trades_p2025_03"),
        744
    );
    assert_eq!(count(&db, "SELECT count(*) FROM archive.trades_default"), 0);
    assert_eq!(fingerprint(&db), fp);
}

#[test]
fn archive_before_all_data_moves_nothing() {
    let db = seeded("abef", 3600);
    let fp = fingerprint(&db);
    let j = archive_json(&db, &["--before", "2024-06-01"]);
    assert_eq!(j["verified"], true);
    assert_eq!(j["summary"]["rows_moved"], 0);
    assert_eq!(j["summary"]["partitions_moved"], serde_json::json!([]));
    assert_eq!(count(&db, "SELECT count(*) FROM trades"), 3600);
    assert_eq!(fingerprint(&db), fp);
}

#[test]
fn archive_after_all_data_moves_everything_and_keeps_future_months() {
    let db = seeded("aaft", 3600);
    let fp = fingerprint(&db);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let j = archive_json(&db, &["--before", &today, "--batch-size", "500"]);
    assert_eq!(j["verified"], true, "{j}");
    assert_eq!(j["summary"]["rows_moved"], 3600);
    assert_eq!(count(&db, "SELECT count(*) FROM trades"), 0);
    assert_eq!(fingerprint(&db), fp);
    // The current and future months stay live, so inserts keep landing in months.
    let j = db
        .opsctl()
        .args(["partition", "list", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(j["tables"][0]["runway"]["current_month"], true);
    assert_eq!(j["tables"][0]["runway"]["future_months"], 3);
}

#[test]
fn a_future_date_is_refused_unless_forced() {
    let db = seeded("afut", 3600);
    let fp = fingerprint(&db);
    let future = (chrono::Utc::now() + chrono::Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    let r = db
        .opsctl()
        .args(["archive", "--before", &future])
        .run()
        .code(2);
    assert!(r.stderr.contains("in the future"), "{}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert!(!has_archive(&db));
    assert_eq!(count(&db, "SELECT count(*) FROM opsctl.archive_journal"), 0);
    assert_eq!(fingerprint(&db), fp);
    let r = db
        .opsctl()
        .args(["archive", "--before", &future, "--force", "--dry-run"])
        .run()
        .success();
    assert!(r.stdout.contains("total: 3600 rows"), "{}", r.stdout);
}

#[test]
fn malformed_dates_are_refused_before_connecting() {
    // The database is unreachable: a refusal that names the date proves nothing was tried.
    let url = format!("postgresql://postgres@127.0.0.1:{}/x", free_port());
    for bad in [
        "2025-13-01",
        "2025-02-30",
        "31/01/2025",
        "yesterday",
        "2025-1-5",
        "2025-01-15T25:00:00Z",
        "",
    ] {
        let r = opsctl()
            .args(["archive", "--database-url", &url, "--before", bad])
            .run()
            .code(2);
        assert!(r.stderr.contains("invalid date"), "{bad}: {}", r.stderr);
        assert!(!r.stderr.contains("connect"), "{bad}: {}", r.stderr);
    }
    let r = opsctl().args(["archive"]).run().code(2);
    assert!(r.stderr.contains("--before"), "{}", r.stderr);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let db = seeded("adry", 3600);
    let state = |db: &TestDb| {
        format!(
            "{}|{}|{}|{}",
            fingerprint(db),
            db.sql("SELECT string_agg(c.oid::regclass::text, ',' ORDER BY 1) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"),
            db.sql("SELECT count(*) FROM opsctl.archive_journal"),
            db.sql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'archive'"),
        )
    };
    let before = state(&db);
    let r = db
        .opsctl()
        .args([
            "archive",
            "--before",
            "2025-03-15",
            "--dry-run",
            "--batch-size",
            "100",
        ])
        .run()
        .success();
    assert!(r.stdout.contains("dry run"), "{}", r.stdout);
    assert!(r.stdout.contains("public.trades_p2025_01"), "{}", r.stdout);
    assert!(r.stdout.contains("336 in 4 batches"), "{}", r.stdout);
    let j = db
        .opsctl()
        .args([
            "archive",
            "--before",
            "2025-03-15",
            "--dry-run",
            "--format",
            "json",
        ])
        .run()
        .success()
        .json();
    assert_eq!(j["plan"]["rows"], 744 + 672 + 336);
    assert_eq!(j["plan"]["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(state(&db), before);
}

// ---------------------------------------------------------------------------------------
// archive: interruptions and concurrency

#[cfg(feature = "test-hooks")]
const KILL_POINTS: &[&str] = &[
    "archive-table",
    "journal",
    "detached",
    "attached",
    "in-batch",
    "batch",
    "verify",
];

#[test]
#[cfg(feature = "test-hooks")] // OPSCTL_TEST_PAUSE_AT
fn kill_9_at_every_point_then_rerun_with_the_same_date_finishes() {
    for point in KILL_POINTS {
        let db = seeded(&format!("akill_{}", point.replace('-', "_")), 3600);
        let fp = fingerprint(&db);
        let args = ["archive", "--before", "2025-03-15", "--batch-size", "50"];
        let child = spawn_paused(&db, &args, point);
        kill9(child);
        assert_eq!(
            fingerprint(&db),
            fp,
            "rows lost or duplicated after kill at {point}"
        );
        if *point == "detached" {
            let j = db
                .opsctl()
                .args(["partition", "list", "--format", "json"])
                .run()
                .success()
                .json();
            let parts = j["tables"][0]["partitions"].as_array().unwrap();
            assert!(
                parts
                    .iter()
                    .any(|p| p["state"] == "detached" && p["name"] == "trades_p2025_01"),
                "{j}"
            );
        }
        let r = db
            .opsctl()
            .args(args)
            .args(["--lock-wait", "30", "--format", "json"])
            .run()
            .success();
        let j = r.json();
        assert_eq!(j["verified"], true, "{point}: {j}");
        let s = &j["summary"];
        assert_eq!(s["rows_moved"], 744 + 672 + 336, "{point}: {j}");
        assert_eq!(s["source_rows"], 744 + 672 + 336, "{point}: {j}");
        if !["archive-table"].contains(point) {
            assert!(
                r.stderr.contains("resuming the unfinished archive"),
                "{point}: {}",
                r.stderr
            );
            assert_eq!(s["resumed"], true, "{point}");
        }
        assert_eq!(live_older(&db, "2025-03-15"), 0, "{point}");
        assert_eq!(fingerprint(&db), fp, "{point}");
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM opsctl.archive_journal WHERE state = 'running'"
            ),
            0
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM opsctl.archive_journal_partitions WHERE state <> 'attached'"
            ),
            0
        );
    }
}

#[test]
#[cfg(feature = "test-hooks")] // OPSCTL_TEST_PAUSE_AT
fn a_new_date_while_one_is_unfinished_first_finishes_the_recorded_one() {
    let db = seeded("anew", 3600);
    let fp = fingerprint(&db);
    let child = spawn_paused(
        &db,
        &["archive", "--before", "2025-03-15", "--batch-size", "50"],
        "batch",
    );
    kill9(child);
    let r = db
        .opsctl()
        .args(["archive", "--before", "2025-04-15", "--batch-size", "50"])
        .args(["--lock-wait", "30", "--format", "json"])
        .run()
        .success();
    assert!(
        r.stderr
            .contains("unfinished archive of public.trades before 2025-03-15")
            && r.stderr.contains("finishing it first"),
        "{}",
        r.stderr
    );
    let j = r.json();
    assert_eq!(j["verified"], true, "{j}");
    assert_eq!(j["finished_first"]["cutoff"], "2025-03-15T00:00:00");
    assert_eq!(j["finished_first"]["verified"], true);
    assert_eq!(j["summary"]["cutoff"], "2025-04-15T00:00:00");
    assert_eq!(live_older(&db, "2025-04-15"), 0);
    assert_eq!(fingerprint(&db), fp);
    assert_eq!(
        db.sql("SELECT string_agg(cutoff::date::text || ':' || state || ':' || verified, ',' ORDER BY id) FROM opsctl.archive_journal"),
        "2025-03-15:done:true,2025-04-15:done:true"
    );
    // Text form says so too.
    let r = db
        .opsctl()
        .args(["archive", "--before", "2025-04-20"])
        .run()
        .success();
    assert!(r.stdout.contains("done, verified"), "{}", r.stdout);
}

#[test]
fn writers_keep_working_during_an_archive_and_no_row_is_lost() {
    let db = seeded("awri", 3600);
    let fp_old = db.sql(
        "SELECT count(*) || ':' || md5(string_agg(id, ',' ORDER BY id)) FROM trades WHERE entry_time < '2025-06-01'",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let name = db.name.clone();
    let writer = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) || i < 5 {
                i += 1;
                let sql = format!(
                    "INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time)
                     VALUES ('w{i}', 1, 'SOL', 'buy', 1, 10, now() - interval '1 minute');
                     UPDATE trades SET exit_price = 11, exit_time = now()
                      WHERE id = 'w{i}' AND entry_time > now() - interval '1 day';
                     UPDATE trades SET exit_price = exit_price + 1
                      WHERE id = 't3599' AND entry_time = timestamp '2025-01-01' + 3599 * interval '1 hour'"
                );
                let out = cluster().psql_output(&name, &sql);
                if out.status.success() {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&out.stderr).into_owned());
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let r = db
        .opsctl()
        .args([
            "archive",
            "--before",
            "2025-04-15",
            "--batch-size",
            "10",
            "--format",
            "json",
        ])
        .run()
        .success();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let j = r.json();
    assert_eq!(j["verified"], true, "{j}");
    let failed = failed.lock().unwrap();
    assert!(failed.is_empty(), "writers failed: {failed:?}");
    let n = ok.load(Ordering::SeqCst);
    assert!(n >= 5, "{n}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM trades WHERE id LIKE 'w%'"),
        n as i64
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM trades WHERE id LIKE 'w%' AND exit_price = 11"
        ),
        n as i64
    );
    let fp_now = db.sql(
        "SELECT count(*) || ':' || md5(string_agg(id, ',' ORDER BY id)) FROM \
         (SELECT id, entry_time FROM trades UNION ALL SELECT id, entry_time FROM archive.trades) x \
         WHERE entry_time < '2025-06-01'",
    );
    assert_eq!(fp_now, fp_old);
    assert_eq!(live_older(&db, "2025-04-15"), 0);
}

#[test]
#[cfg(feature = "test-hooks")] // OPSCTL_TEST_PAUSE_AT
fn a_concurrent_second_archive_refuses_and_never_interleaves() {
    let db = seeded("acon", 3600);
    let fp = fingerprint(&db);
    let args = ["archive", "--before", "2025-03-15", "--batch-size", "50"];
    let child = spawn_paused(&db, &args, "batch");
    let r = db.opsctl().args(args).run().code(1);
    assert!(r.stderr.contains("another maintenance job"), "{}", r.stderr);
    // The refused run changed nothing: still one journal row, still running.
    assert_eq!(
        db.sql("SELECT string_agg(state, ',') FROM opsctl.archive_journal"),
        "running"
    );
    kill9(child);
    let j = db
        .opsctl()
        .args(args)
        .args(["--lock-wait", "30", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(j["verified"], true);
    assert_eq!(fingerprint(&db), fp);
}

#[test]
fn a_busy_live_table_is_retried_with_short_lock_timeouts() {
    let db = seeded("alock", 3600);
    let fp = fingerprint(&db);
    // A long reader: DETACH cannot get its lock until it ends, 1.2 s after the archive
    // first waited for it (whatever the machine's load).
    let holder = crate::common::hold_lock_until_waited(
        &db.name,
        "trades",
        "ACCESS SHARE",
        Duration::from_millis(1200),
    );
    let started = std::time::Instant::now();
    let r = db
        .opsctl()
        .env("OPSCTL_LOG", "info")
        .args(["archive", "--before", "2025-03-01", "--format", "json"])
        .run()
        .success();
    holder.join().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(
        r.stderr.contains("lock not granted within 100 ms"),
        "{}",
        r.stderr
    );
    let j = r.json();
    assert_eq!(j["verified"], true, "{j}");
    assert_eq!(j["summary"]["rows_moved"], 744 + 672);
    assert_eq!(fingerprint(&db), fp);
}

#[test]
fn other_tables_by_policy_timestamptz_in_another_schema() {
    let db = TestDb::with_schema("ppol");
    db.sql(
        "CREATE SCHEMA ledger;
         CREATE TABLE ledger.events (
             id bigint NOT NULL, at timestamptz NOT NULL, payload text,
             PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE INDEX ON ledger.events (at);",
    );
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("p.toml");
    std::fs::write(
        &pol,
        "[partitions]\npremake = 2\n\n[[partitions.tables]]\ntable = \"trades\"\ncolumn = \"entry_time\"\n\n\
         [[partitions.tables]]\ntable = \"events\"\nschema = \"ledger\"\ncolumn = \"at\"\n",
    )
    .unwrap();
    // No default partition yet: ensure creates it first, then the months.
    let j = db
        .opsctl()
        .args(["partition", "ensure", "--format", "json", "--policy"])
        .arg(&pol)
        .run()
        .success()
        .json();
    let ev = &j["tables"][1];
    assert_eq!(ev["table"], "ledger.events");
    assert_eq!(ev["default_created"], true);
    assert_eq!(ev["runway"]["future_months"], 2);
    assert_eq!(j["tables"][0]["runway"]["future_months"], 2);
    // Old rows land in the default partition; the next ensure gives them their months.
    db.sql(
        "INSERT INTO ledger.events SELECT g, timestamptz '2025-01-01 00:00+00' + g * interval '2 hours', 'e' || g
           FROM generate_series(0, 1799) g",
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM ledger.events_default"),
        1800
    );
    let j = db
        .opsctl()
        .args([
            "partition",
            "ensure",
            "--table",
            "ledger.events",
            "--format",
            "json",
            "--policy",
        ])
        .arg(&pol)
        .run()
        .success()
        .json();
    assert_eq!(j["tables"][0]["rows_moved_from_default"], 1800);
    // February 2025: 28 days, every 2 hours.
    assert_eq!(
        count(&db, "SELECT count(*) FROM ledger.events_p2025_02"),
        28 * 12
    );
    assert_eq!(count(&db, "SELECT count(*) FROM ledger.events_default"), 0);
    // The policy names the column: a wrong one is a clear error.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[partitions.tables]]\ntable = \"events\"\nschema = \"ledger\"\ncolumn = \"payload\"\n",
    )
    .unwrap();
    let r = db
        .opsctl()
        .args(["partition", "list", "--policy"])
        .arg(&bad)
        .run()
        .code(2);
    assert!(r.stderr.contains("partitioned by \"at\""), "{}", r.stderr);
    // Archive mid-month, by RFC 3339 with an offset (12:00+02:00 = 10:00 UTC).
    let total = count(&db, "SELECT count(*) FROM ledger.events");
    let j = db
        .opsctl()
        .args([
            "archive",
            "--table",
            "ledger.events",
            "--before",
            "2025-03-10T12:00:00+02:00",
        ])
        .args(["--batch-size", "40", "--format", "json", "--policy"])
        .arg(&pol)
        .run()
        .success()
        .json();
    assert_eq!(j["verified"], true, "{j}");
    assert_eq!(j["summary"]["cutoff"], "2025-03-10T10:00:00");
    assert_eq!(
        j["summary"]["partitions_moved"],
        serde_json::json!(["archive.events_p2025_01", "archive.events_p2025_02"])
    );
    // March 1 00:00 .. March 10 10:00 UTC, every 2 hours: 9 days * 12 + 5 = 113 rows.
    assert_eq!(j["summary"]["rows_moved_by_batches"], 113);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ledger.events WHERE at < '2025-03-10 10:00+00'"
        ),
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM ledger.events")
            + count(&db, "SELECT count(*) FROM archive.events"),
        total
    );
}

#[test]
#[cfg(feature = "test-hooks")] // OPSCTL_TEST_PAUSE_AT
fn a_second_archive_with_lock_wait_waits_then_resumes_the_first() {
    let db = seeded("await", 3600);
    let fp = fingerprint(&db);
    let args = ["archive", "--before", "2025-03-15", "--batch-size", "50"];
    let first = spawn_paused(&db, &args, "batch");
    let mut second = db
        .opsctl()
        .args(args)
        .args(["--lock-wait", "60", "--format", "json"])
        .spawn();
    // Kill the first only once the second says it is waiting (not after a fixed sleep,
    // which a loaded machine can outlast before the second even connects).
    let stderr = second.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("waiting for another") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the second archive did not wait");
    assert!(
        second.try_wait().unwrap().is_none(),
        "the second archive did not wait"
    );
    kill9(first);
    let out = second.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("resuming the unfinished archive"),
        "{stderr}"
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["verified"], true);
    assert_eq!(fingerprint(&db), fp);
    assert_eq!(live_older(&db, "2025-03-15"), 0);
}

#[test]
#[cfg(feature = "test-hooks")] // OPSCTL_TEST_PAUSE_AT
fn a_refused_lock_names_the_holder() {
    let db = seeded("aholder", 3600);
    let args = ["archive", "--before", "2025-03-15", "--batch-size", "50"];
    let child = spawn_paused(&db, &args, "batch");
    let pid = child.id();
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    for job in ["vacuum", "reindex"] {
        let r = db.opsctl().args([job, "--lock-wait", "1s"]).run().code(1);
        let e = &r.stderr;
        assert!(e.contains("another maintenance job"), "{e}");
        // Which job: its command line, pid, host, user and since when.
        assert!(e.contains("`opsctl archive --before 2025-03-15"), "{e}");
        assert!(e.contains(&format!("pid {pid} on {host}")), "{e}");
        assert!(e.contains("since 20") && e.contains(" UTC"), "{e}");
        assert!(e.contains("--lock-wait"), "{e}");
        // Not a lock number.
        assert!(
            !e.contains(&opsctl::db::locks::MAINTENANCE.to_string()),
            "{e}"
        );
    }
    kill9(child);
}

// ---------------------------------------------------------------------------------------
// partition list after a move: one source for the row counts

#[test]
fn list_right_after_ensure_agrees_with_itself() {
    let db = TestDb::with_schema("plistsame");
    seed(&db, 3600);
    // The planner's statistics say the default partition holds the 3600 rows.
    db.sql("ANALYZE trades");
    db.opsctl().args(["partition", "ensure"]).run().success();
    let j = db
        .opsctl()
        .args(["partition", "list", "--format", "json"])
        .run()
        .success()
        .json();
    let t = &j["tables"][0];
    assert_eq!(t["rows_in_default"], 0);
    let parts = t["partitions"].as_array().unwrap();
    let def = parts
        .iter()
        .find(|p| p["name"] == "trades_default")
        .unwrap();
    // The default partition's row is the same exact count as the header.
    assert_eq!(def["exact_rows"], 0, "{def}");
    assert_eq!(def["estimated_rows"], 0, "{def}");
    // The months' estimates were refreshed by ensure (ANALYZE of what it filled).
    for p in parts.iter().filter(|p| p["state"] == "live") {
        let name = p["name"].as_str().unwrap();
        let n = count(&db, &format!("SELECT count(*) FROM {name}"));
        assert_eq!(p["estimated_rows"], n, "{name}: {p}");
    }
    // The text says the same in the header and in the table, and labels estimates.
    let text = db
        .opsctl()
        .args(["partition", "list"])
        .run()
        .success()
        .stdout;
    assert!(text.contains("0 rows in the default partition"), "{text}");
    let def_line = text
        .lines()
        .find(|l| l.contains("public.trades_default"))
        .unwrap();
    let cols: Vec<&str> = def_line.split_whitespace().collect();
    assert_eq!(cols[2], "0", "{text}");
    let feb_line = text
        .lines()
        .find(|l| l.contains("public.trades_p2025_02"))
        .unwrap();
    assert!(feb_line.contains("~672"), "{text}");
    assert!(text.contains("~ = estimate"), "{text}");
    // An archive that moves half of February in batches refreshes its estimate too.
    db.opsctl()
        .args(["archive", "--before", "2025-02-15"])
        .run()
        .success();
    let j = db
        .opsctl()
        .args(["partition", "list", "--format", "json"])
        .run()
        .success()
        .json();
    let feb = j["tables"][0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "trades_p2025_02" && p["state"] == "live")
        .unwrap()
        .clone();
    assert_eq!(
        feb["estimated_rows"],
        count(&db, "SELECT count(*) FROM public.trades_p2025_02"),
        "{feb}"
    );
    assert_eq!(feb["estimated_rows"], 672 - 14 * 24);
}
