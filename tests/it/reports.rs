//! `opsctl health` (full), `opsctl report pool|size`, `opsctl serve`: every check in an
//! OK and a non-OK state made real, every output form parsed back, exit codes, a
//! least-privilege role, and the HTTP endpoint scraped over a real socket.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{cluster, free_port, opsctl, TestDb, PASSWORD};

/// Serialises the tests that create cluster-wide objects (replication slots) with the
/// tests that expect every check OK.
static CLUSTER_WIDE: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER_WIDE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A psql session kept open in the background (stdin stays open until dropped).
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn psql_bg(db: &TestDb, sql: &str) -> Bg {
    let c = cluster();
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .env("PGHOST", "localhost")
        .env("PGPORT", c.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", &db.name)
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &c.ca)
        .env("PGAPPNAME", "opsctl-test-bg")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    child.stdin.as_mut().unwrap().flush().unwrap();
    Bg(child)
}

fn wait_for(db: &TestDb, sql: &str, want: &str) {
    let start = Instant::now();
    loop {
        if db.sql(sql) == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {sql:?} = {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn end_sessions(db: &TestDb) {
    db.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
}

/// A policy file in a temp dir (kept alive by the returned guard).
fn policy(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

fn health(db: &TestDb, pol: Option<&PathBuf>, extra: &[&str]) -> (i32, Value) {
    let mut o = db.opsctl();
    o.args(["health", "--format", "json"]);
    if let Some(p) = pol {
        o.arg("--policy").arg(p);
    }
    o.args(extra);
    let r = o.run();
    let j = r.json();
    (r.code, j)
}

fn check<'a>(j: &'a Value, id: &str) -> &'a Value {
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("check {id} missing in {j:#}"))
}

fn state_of(db: &TestDb, pol: Option<&PathBuf>, id: &str) -> (String, Value) {
    let (_, j) = health(db, pol, &["--check", id]);
    let c = check(&j, id).clone();
    (c["state"].as_str().unwrap().to_string(), c)
}

#[track_caller]
fn assert_state(db: &TestDb, pol: Option<&PathBuf>, id: &str, want: &str) -> Value {
    let (s, c) = state_of(db, pol, id);
    assert_eq!(s, want, "{id}: {c:#}");
    c
}

/// Monthly partitions of trades from `from` months before the current one to `to` after.
fn make_months(db: &TestDb, from: i32, to: i32) {
    db.sql(&format!(
        "DO $$ DECLARE m date; BEGIN \
           FOR i IN {from}..{to} LOOP \
             m := (date_trunc('month', now()) + make_interval(months => i))::date; \
             EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF trades FOR VALUES FROM (%L) TO (%L)', \
               'trades_' || to_char(m, 'YYYYMM'), m, (m + interval '1 month')::date); \
           END LOOP; END $$"
    ));
}

/// A backup repository made by the real commands: a key, and `opsctl backup create`.
struct Repo {
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("backup.key");
        opsctl()
            .args(["backup", "keygen", "--out"])
            .arg(&key)
            .run()
            .success();
        Repo { dir, key }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// A policy whose [backup].dir is this repository.
    fn policy(&self, extra: &str) -> (tempfile::TempDir, PathBuf) {
        policy(&format!("[backup]\ndir = {:?}\n{extra}", self.path()))
    }

    fn cmd(&self, db: &TestDb) -> crate::common::Opsctl {
        let mut o = db.opsctl();
        o.env("OPSCTL_KEY_FILE", &self.key);
        o
    }

    /// `opsctl backup create`: (id, backup file).
    fn create(&self, db: &TestDb) -> (String, PathBuf) {
        let j = self
            .cmd(db)
            .args(["backup", "create", "--format", "json", "--dir"])
            .arg(self.path())
            .run()
            .success()
            .json();
        (
            j["id"].as_str().unwrap().to_string(),
            PathBuf::from(j["path"].as_str().unwrap()),
        )
    }

    fn verify(&self, db: &TestDb, file: &std::path::Path) {
        self.cmd(db)
            .args(["backup", "verify"])
            .arg(file)
            .run()
            .success();
    }
}

/// Makes a backup look `hours` old where opsctl records it: the plaintext summary beside
/// the file and its row in opsctl.backups.
fn age_backup(db: &TestDb, id: &str, file: &std::path::Path, hours: i64) {
    let summary = file.with_extension("json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    for k in ["started_at", "finished_at"] {
        let t: chrono::DateTime<chrono::Utc> = v[k].as_str().unwrap().parse().unwrap();
        v[k] = Value::String((t - chrono::Duration::hours(hours)).to_rfc3339());
    }
    std::fs::write(&summary, v.to_string()).unwrap();
    db.sql(&format!(
        "UPDATE opsctl.backups SET started_at = started_at - interval '{hours} hours', \
         finished_at = finished_at - interval '{hours} hours' WHERE id = '{id}'"
    ));
}

#[test]
fn every_check_is_ok_on_a_healthy_database() {
    let _g = lock();
    let db = TestDb::with_schema("rall");
    db.sql("CREATE EXTENSION pg_stat_statements");
    make_months(&db, -1, 4);
    let repo = Repo::new();
    let (_, file) = repo.create(&db);
    repo.verify(&db, &file);
    let (_d, pol) = repo.policy("");
    let (code, j) = health(&db, Some(&pol), &[]);
    let ids: Vec<&str> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for id in [
        "connectivity",
        "tls",
        "server_version",
        "connections",
        "idle_in_transaction",
        "long_running_queries",
        "blocked_sessions",
        "cache_hit_ratio",
        "dead_tuples",
        "xid_wraparound",
        "invalid_indexes",
        "unused_indexes",
        "sequences",
        "replication_lag",
        "replication_slots",
        "partition_runway",
        "default_partition_rows",
        "backup_freshness",
        "restore_drill",
        "drill_scratch_databases",
        "audit_chain",
        "migrations",
        "scheduled_jobs",
        "slow_queries",
    ] {
        assert!(ids.contains(&id), "{id} missing");
        let c = check(&j, id);
        assert_eq!(c["state"], "OK", "{id}: {c:#}");
        assert!(
            c["value"].as_str().is_some_and(|v| !v.is_empty()),
            "{id}: {c}"
        );
    }
    assert_eq!(code, 0);
    assert!(check(&j, "partition_runway")["value"]
        .as_str()
        .unwrap()
        .contains("4 future months"));
    // Every check has a hint or is OK; thresholds where they judge.
    assert!(check(&j, "connections")["threshold"]
        .as_str()
        .unwrap()
        .contains("90"));
}

#[test]
fn connection_checks_see_idle_transactions_long_queries_and_lock_waits() {
    let db = TestDb::with_schema("rconn");
    let (_d, pol) = policy(
        "[reports]\nidle_in_transaction_warn_seconds = 1\nidle_in_transaction_crit_seconds = 3600\n\
         long_query_warn_seconds = 1\nlong_query_crit_seconds = 3600\n\
         lock_wait_warn_seconds = 1\nlock_wait_crit_seconds = 3600\n",
    );
    for id in [
        "idle_in_transaction",
        "long_running_queries",
        "blocked_sessions",
    ] {
        assert_state(&db, Some(&pol), id, "OK");
    }
    // A session that opened a transaction and went idle, holding a lock.
    let _idle = psql_bg(&db, "BEGIN;\nLOCK TABLE users IN ACCESS EXCLUSIVE MODE;\n");
    wait_for(
        &db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'",
        "1",
    );
    // One waiting on that lock, one running a long query.
    let _waiter = psql_bg(&db, "SELECT count(*) FROM users;\n");
    let _sleeper = psql_bg(&db, "SELECT pg_sleep(120);\n");
    wait_for(
        &db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        "1",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let c = assert_state(&db, Some(&pol), "idle_in_transaction", "WARNING");
    assert!(
        c["value"]
            .as_str()
            .unwrap()
            .contains("1 idle in transaction"),
        "{c}"
    );
    // The sleeper and the waiter.
    let c = assert_state(&db, Some(&pol), "long_running_queries", "WARNING");
    assert!(
        c["value"].as_str().unwrap().contains("2 queries over 1s"),
        "{c}"
    );
    let c = assert_state(&db, Some(&pol), "blocked_sessions", "WARNING");
    assert!(c["value"].as_str().unwrap().contains("blocked by"), "{c}");
    // Default thresholds: 60 s have not passed, so OK.
    assert_state(&db, None, "idle_in_transaction", "OK");

    // The pool report names them all.
    let r = db
        .opsctl()
        .args(["report", "pool", "--format", "json", "--policy"])
        .arg(&pol)
        .run()
        .code(1);
    let j = r.json();
    assert_eq!(j["state"], "WARNING");
    assert_eq!(j["idle_in_transaction"].as_array().unwrap().len(), 1);
    let waiting = j["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{j:#}");
    let blocker = waiting[0]["blocked_by"][0].as_i64().unwrap();
    assert!(j["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["pid"].as_i64() == Some(blocker)));
    assert!(j["long_running"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["query"].as_str().unwrap().contains("pg_sleep")));
    assert!(j["by_application"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["key"] == "opsctl-test-bg" && c["count"].as_i64() == Some(3)));
    assert!(j["used_connections"].as_i64().unwrap() >= 3);
    assert!(j["usable_connections"].as_i64().unwrap() == 297);
    assert_eq!(j["tcp_connections"], j["tls_connections"]);
    let t = db
        .opsctl()
        .args(["report", "pool", "--policy"])
        .arg(&pol)
        .run()
        .code(1);
    for s in [
        "Idle in transaction: 1",
        "Waiting on locks: 1",
        "by application:",
        "TLS:",
    ] {
        assert!(t.stdout.contains(s), "{s} missing:\n{}", t.stdout);
    }
    end_sessions(&db);
}

#[test]
fn invalid_and_unused_indexes() {
    let db = TestDb::new("ridx");
    db.sql("CREATE TABLE t (v int); INSERT INTO t SELECT g % 10 FROM generate_series(1, 1000) g; CREATE INDEX t_v ON t (v)");
    assert_state(&db, None, "invalid_indexes", "OK");
    assert_state(&db, None, "unused_indexes", "OK");
    // A failed CREATE UNIQUE INDEX CONCURRENTLY leaves an invalid index behind.
    let out = cluster().psql_output(
        &db.name,
        "CREATE UNIQUE INDEX CONCURRENTLY t_v_unique ON t (v)",
    );
    assert!(!out.status.success());
    let c = assert_state(&db, None, "invalid_indexes", "WARNING");
    assert!(c["value"].as_str().unwrap().contains("t_v_unique"), "{c}");
    db.sql("DROP INDEX t_v_unique");
    assert_state(&db, None, "invalid_indexes", "OK");
    let (_d, pol) = policy("[reports]\nunused_index_min_bytes = 0\n");
    let c = assert_state(&db, Some(&pol), "unused_indexes", "WARNING");
    let v = c["value"].as_str().unwrap();
    assert!(v.contains("public.t_v") && v.contains("statistics"), "{v}");
}

#[test]
fn sequences_near_their_column_limit() {
    let db = TestDb::with_schema("rseq");
    assert_state(&db, None, "sequences", "OK");
    db.sql("SELECT setval('users_id_seq', 1900000000)");
    let c = assert_state(&db, None, "sequences", "WARNING");
    assert!(c["value"].as_str().unwrap().contains("users_id_seq"), "{c}");
    db.sql("SELECT setval('users_id_seq', 2100000000)");
    assert_state(&db, None, "sequences", "CRITICAL");
}

#[test]
fn dead_tuples_backlog() {
    let db = TestDb::new("rdead");
    db.sql("CREATE TABLE d (id int) WITH (autovacuum_enabled = false); INSERT INTO d SELECT generate_series(1, 20000)");
    assert_state(&db, None, "dead_tuples", "OK");
    db.sql("DELETE FROM d WHERE id <= 15000");
    let c = assert_state(&db, None, "dead_tuples", "CRITICAL");
    assert!(c["value"].as_str().unwrap().contains("public.d"), "{c}");
    db.sql("VACUUM d");
    assert_state(&db, None, "dead_tuples", "OK");
}

#[test]
fn cache_hit_and_wraparound_follow_the_policy() {
    let db = TestDb::new("rcache");
    db.sql("CREATE TABLE c (id int); INSERT INTO c SELECT generate_series(1, 1000)");
    db.sql("SELECT count(*) FROM c");
    assert_state(&db, None, "cache_hit_ratio", "OK");
    let (_d, pol) = policy("[reports]\ncache_hit_min_blocks = 1\ncache_hit_warn_percent = 100\ncache_hit_crit_percent = 0\n");
    assert_state(&db, Some(&pol), "cache_hit_ratio", "WARNING");
    assert_state(&db, None, "xid_wraparound", "OK");
    let (_d2, pol2) = policy("[reports]\nxid_age_warn = 1\nxid_age_crit = 2000000000\n");
    let c = assert_state(&db, Some(&pol2), "xid_wraparound", "WARNING");
    assert!(c["value"].as_str().unwrap().contains("oldest table"), "{c}");
    let (_d3, pol3) = policy("[reports]\nxid_age_warn = 1\nxid_age_crit = 2\n");
    assert_state(&db, Some(&pol3), "xid_wraparound", "CRITICAL");
}

#[test]
fn partition_runway_and_default_rows() {
    let db = TestDb::with_schema("rpart");
    // Only the default partition: not set up yet, never a false alarm.
    let c = assert_state(&db, None, "partition_runway", "OK");
    assert!(
        c["value"].as_str().unwrap().contains("not configured"),
        "{c}"
    );
    assert_state(&db, None, "default_partition_rows", "OK");
    // Only past months: the current month is missing.
    make_months(&db, -3, -1);
    let c = assert_state(&db, None, "partition_runway", "CRITICAL");
    assert!(
        c["value"].as_str().unwrap().contains("current month"),
        "{c}"
    );
    // The current month but no future one.
    make_months(&db, 0, 0);
    assert_state(&db, None, "partition_runway", "WARNING");
    make_months(&db, 1, 3);
    let c = assert_state(&db, None, "partition_runway", "OK");
    assert!(
        c["value"].as_str().unwrap().contains("3 future months"),
        "{c}"
    );
    // A row no partition covers lands in the default partition.
    db.sql("INSERT INTO trades (id, symbol, side, quantity, entry_price, entry_time) VALUES ('x1', 'BTC', 'long', 1, 1, '2099-01-01')");
    let c = assert_state(&db, None, "default_partition_rows", "WARNING");
    assert!(
        c["value"].as_str().unwrap().contains("trades_default"),
        "{c}"
    );
}

/// `opsctl health` and `opsctl partition list` count the runway the same way (one
/// implementation), whatever the session time zone: here the next month is split in two
/// halves, which no single partition covers whole.
#[test]
fn health_runway_is_partition_list_runway() {
    let db = TestDb::with_schema("rrunway");
    db.sql(&format!(
        "ALTER DATABASE {} SET timezone = 'Pacific/Kiritimati'",
        db.name
    ));
    make_months(&db, 0, 0);
    db.sql(
        "DO $$ DECLARE m date := (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date; BEGIN \
           EXECUTE format('CREATE TABLE trades_h1 PARTITION OF trades FOR VALUES FROM (%L) TO (%L)', m, m + 15); \
           EXECUTE format('CREATE TABLE trades_h2 PARTITION OF trades FOR VALUES FROM (%L) TO (%L)', m + 15, (m + interval '1 month')::date); \
           EXECUTE format('CREATE TABLE trades_m2 PARTITION OF trades FOR VALUES FROM (%L) TO (%L)', (m + interval '1 month')::date, (m + interval '2 months')::date); \
         END $$",
    );
    let listed = db
        .opsctl()
        .args(["partition", "list", "--table", "trades", "--format", "json"])
        .run()
        .success()
        .json();
    let runway = &listed["tables"][0]["runway"];
    assert_eq!(runway["current_month"], true, "{listed}");
    let months = runway["future_months"].as_i64().unwrap();
    let (_, j) = health(&db, None, &["--check", "partition_runway"]);
    let c = check(&j, "partition_runway");
    assert!(
        c["value"]
            .as_str()
            .unwrap()
            .contains(&format!("public.trades: {months} future months")),
        "partition list says {months} future months; health: {c}"
    );
    let metric = c["metrics"][0]["value"].as_f64().unwrap();
    assert_eq!(metric, months as f64, "{c}");
}

#[test]
fn backup_freshness_and_restore_drill() {
    let db = TestDb::with_schema("rback");
    // No [backup].dir and no backup recorded in opsctl.backups: not set up.
    let c = assert_state(&db, None, "backup_freshness", "OK");
    assert_eq!(c["value"], "not configured: no [backup].dir in the policy");
    let c = assert_state(&db, None, "restore_drill", "OK");
    assert!(
        c["value"].as_str().unwrap().contains("not configured"),
        "{c}"
    );
    // A directory that does not exist.
    let (_d0, missing) = policy("[backup]\ndir = \"/nonexistent/opsctl-backups\"\n");
    let c = assert_state(&db, Some(&missing), "backup_freshness", "CRITICAL");
    assert!(
        c["value"].as_str().unwrap().contains("does not exist"),
        "{c}"
    );
    // Configured, but nothing there yet.
    let repo = Repo::new();
    std::fs::create_dir_all(repo.path()).unwrap();
    let (_d, pol) = repo.policy("");
    assert_state(&db, Some(&pol), "backup_freshness", "CRITICAL");
    // A real backup, not yet verified.
    let (id, file) = repo.create(&db);
    let c = assert_state(&db, Some(&pol), "backup_freshness", "CRITICAL");
    assert!(
        c["value"].as_str().unwrap().contains("none verified"),
        "{c}"
    );
    // Verified: fresh.
    repo.verify(&db, &file);
    let c = assert_state(&db, Some(&pol), "backup_freshness", "OK");
    assert!(
        c["value"]
            .as_str()
            .unwrap()
            .contains("newest verified backup"),
        "{c}"
    );
    // 30 hours old: past the 26 h default, before the 48 h critical level.
    age_backup(&db, &id, &file, 30);
    assert_state(&db, Some(&pol), "backup_freshness", "WARNING");
    // Older than [reports].backup_crit_age_hours.
    let (_d2, pol2) = repo.policy("max_age_hours = 0.1\n[reports]\nbackup_crit_age_hours = 0.5\n");
    assert_state(&db, Some(&pol2), "backup_freshness", "CRITICAL");
    // opsctl.backups alone is enough to judge (no [backup].dir in the policy).
    let c = assert_state(&db, None, "backup_freshness", "WARNING");
    assert!(c["value"].as_str().unwrap().contains("1d 6h ago"), "{c}");

    // A real restore drill passes.
    repo.cmd(&db)
        .args(["drill", "--latest", "--format", "json", "--dir"])
        .arg(repo.path())
        .run()
        .success();
    let c = assert_state(&db, Some(&pol), "restore_drill", "OK");
    assert!(c["value"].as_str().unwrap().contains("passed"), "{c}");
    assert_state(&db, None, "restore_drill", "OK");
    // The drill also verified the backup; it is still 30 h old.
    assert_state(&db, Some(&pol), "backup_freshness", "WARNING");
    // A later drill that found differences, as `opsctl drill` records it.
    db.sql(&format!(
        "INSERT INTO opsctl.backup_drills (backup_id, database, scratch_database, started_at, \
           finished_at, rto_seconds, tables_compared, rows_compared, ok, mismatches) \
         VALUES ('{id}', current_database(), 'scratch', now(), now() + interval '1 second', 1, 4, 10, false, \
           '[\"trades: 3 rows, expected 4\"]')"
    ));
    let c = assert_state(&db, Some(&pol), "restore_drill", "CRITICAL");
    assert!(c["value"].as_str().unwrap().contains("FAILED"), "{c}");
}

/// Seals until nothing waits (transactions of other tests can hold the xid horizon).
fn seal_all(db: &TestDb) {
    for _ in 0..50 {
        let out = db
            .opsctl()
            .args(["audit", "seal", "--format", "json"])
            .run()
            .success()
            .json();
        if out["rows_waiting"] == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("audit rows stayed unsealed: a transaction kept the xid horizon back");
}

#[test]
fn migrations_audit_and_jobs_not_configured_without_their_tables() {
    let db = TestDb::new("rrec0");
    for id in ["migrations", "audit_chain", "scheduled_jobs"] {
        let c = assert_state(&db, None, id, "OK");
        assert!(
            c["value"].as_str().unwrap().contains("not configured"),
            "{c}"
        );
    }
}

#[test]
fn pending_and_failed_migrations() {
    let db = TestDb::with_schema("rmig");
    let c = assert_state(&db, None, "migrations", "OK");
    assert!(c["value"].as_str().unwrap().contains("none pending"), "{c}");
    // A copy of migrations/ plus one file not applied yet.
    let dir = tempfile::tempdir().unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.path().join("V9999__extra.sql"),
        "-- opsctl:no-transaction\nCREATE TABLE extra_done (id int);\nSELECT 1/0;\n",
    )
    .unwrap();
    let (_d, pol) = policy(&format!("[reports]\nmigrations_dir = {:?}\n", dir.path()));
    let c = assert_state(&db, Some(&pol), "migrations", "WARNING");
    assert!(
        c["value"].as_str().unwrap().contains("1 pending: V9999"),
        "{c}"
    );
    // Running it fails half-way (a no-transaction file): failed, later runs blocked.
    db.opsctl()
        .args(["migrate", "up", "--migrations-dir"])
        .arg(dir.path())
        .run()
        .code(1);
    let c = assert_state(&db, Some(&pol), "migrations", "CRITICAL");
    let v = c["value"].as_str().unwrap();
    assert!(v.contains("V9999") && v.contains("division by zero"), "{c}");
    assert!(
        c["hint"].as_str().unwrap().contains("migrate resolve"),
        "{c}"
    );
}

#[test]
fn a_failed_scheduled_job_is_a_warning() {
    let db = TestDb::with_schema("rjobs");
    let c = assert_state(&db, None, "scheduled_jobs", "OK");
    assert!(c["value"].as_str().unwrap().contains("0 jobs"), "{c}");
    // A job that succeeds.
    db.opsctl()
        .args(["schedule", "run", "--once", "size-snapshot"])
        .run()
        .success();
    let c = assert_state(&db, None, "scheduled_jobs", "OK");
    assert!(c["value"].as_str().unwrap().contains("1 jobs"), "{c}");
    // The backup job without a backup directory fails, and is recorded as a failure.
    db.opsctl()
        .args(["schedule", "run", "--once", "backup"])
        .run()
        .code(1);
    let c = assert_state(&db, None, "scheduled_jobs", "WARNING");
    let v = c["value"].as_str().unwrap();
    assert!(
        v.contains("backup") && v.contains("backup.dir is not set"),
        "{c}"
    );
    assert!(!v.contains("size-snapshot"), "{c}");
    // A skipped run does not hide the failure.
    db.sql(
        "INSERT INTO opsctl.job_runs (job, finished_at, outcome, error) \
         VALUES ('backup', now(), 'skipped', 'previous run still going')",
    );
    assert_state(&db, None, "scheduled_jobs", "WARNING");
}

#[test]
fn audit_chain_seals_verifies_and_breaks() {
    let db = TestDb::with_schema("raudit");
    let c = assert_state(&db, None, "audit_chain", "OK");
    assert!(
        c["value"].as_str().unwrap().contains("never verified"),
        "{c}"
    );
    // Audited changes, never sealed.
    db.sql(
        "INSERT INTO users (id, username, email) VALUES (1, 'alice', 'a@x'), (2, 'bob', 'b@x');
         INSERT INTO positions (user_id, symbol, quantity, entry_price) VALUES (1, 'BTC', 1, 1)",
    );
    let c = assert_state(&db, None, "audit_chain", "WARNING");
    assert!(c["value"].as_str().unwrap().contains("no seal yet"), "{c}");
    seal_all(&db);
    db.opsctl().args(["audit", "verify"]).run().success();
    let c = assert_state(&db, None, "audit_chain", "OK");
    let v = c["value"].as_str().unwrap();
    assert!(
        v.contains("last verified intact") && v.contains("0 rows not sealed"),
        "{c}"
    );
    // The newest seal older than [reports].audit_seal_max_age_hours.
    let (_d, pol) = policy("[reports]\naudit_seal_max_age_hours = 0.0001\n");
    std::thread::sleep(Duration::from_millis(1200));
    assert_state(&db, Some(&pol), "audit_chain", "WARNING");
    // A sealed row changed behind the triggers' back, then `audit verify`.
    db.sql(
        "SET session_replication_role = replica;
         UPDATE audit.logged_actions SET app_actor = 'nobody' WHERE id = (SELECT min(id) FROM audit.logged_actions)",
    );
    db.opsctl().args(["audit", "verify"]).run().code(1);
    assert_eq!(
        db.sql("SELECT outcome FROM opsctl.operations WHERE command = 'audit verify' ORDER BY id DESC LIMIT 1"),
        "failure"
    );
    let c = assert_state(&db, None, "audit_chain", "CRITICAL");
    let v = c["value"].as_str().unwrap();
    assert!(v.contains("audit chain BROKEN at"), "{c}");
    assert!(v.contains("changed after it was sealed"), "{c}");
    let intact = c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "audit_chain_intact")
        .unwrap();
    assert_eq!(intact["value"], 0.0);
    let (code, _) = health(&db, None, &[]);
    assert_eq!(code, 2);
}

#[test]
fn slow_queries_need_pg_stat_statements() {
    let db = TestDb::new("rstmt");
    // An optional extension not installed is not set up: OK, with the way to enable it.
    let c = assert_state(&db, None, "slow_queries", "OK");
    assert!(
        c["value"].as_str().unwrap().starts_with("not configured"),
        "{c}"
    );
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("CREATE EXTENSION pg_stat_statements"),
        "{c}"
    );
    db.sql("CREATE EXTENSION pg_stat_statements");
    db.sql("SELECT pg_stat_statements_reset()");
    assert_state(&db, None, "slow_queries", "OK");
    db.sql("SELECT pg_sleep(0.3)");
    let (_d, pol) = policy("[reports]\nslow_query_min_calls = 1\nslow_query_mean_warn_ms = 200\n");
    let c = assert_state(&db, Some(&pol), "slow_queries", "WARNING");
    assert!(c["value"].as_str().unwrap().contains("pg_sleep"), "{c}");
    assert!(!c["details"]["top_by_total"].as_array().unwrap().is_empty());
    // Installed but unreadable by this role: UNKNOWN, never OK.
    let role = format!("stm_{}", db.name);
    db.sql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'Stm-pw-1' IN ROLE pg_monitor; \
         GRANT CONNECT ON DATABASE {} TO {role}; REVOKE ALL ON pg_stat_statements FROM PUBLIC",
        db.name
    ));
    let url = format!(
        "postgresql://{role}:Stm-pw-1@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        cluster().port,
        db.name,
        cluster().ca.display()
    );
    let r = opsctl()
        .args(["health", "--format", "json", "--check", "slow_queries"])
        .args(["--database-url", &url])
        .run()
        .code(3);
    let c = check(&r.json(), "slow_queries").clone();
    assert_eq!(c["state"], "UNKNOWN", "{c}");
    assert!(
        c["hint"].as_str().unwrap().contains("permission denied"),
        "{c}"
    );
}

#[test]
fn inactive_replication_slot() {
    let _g = lock();
    let db = TestDb::new("rslot");
    let c = assert_state(&db, None, "replication_slots", "OK");
    assert_eq!(c["value"], "not configured: no replication slots");
    let c = assert_state(&db, None, "replication_lag", "OK");
    assert_eq!(c["hint"], "no standby is connected");
    let slot = format!("s_{}", db.name);
    db.sql(&format!(
        "SELECT pg_create_physical_replication_slot('{slot}', true)"
    ));
    let (s, c) = state_of(&db, None, "replication_slots");
    db.sql(&format!("SELECT pg_drop_replication_slot('{slot}')"));
    assert_eq!(s, "WARNING", "{c}");
    assert!(c["value"].as_str().unwrap().contains(&slot), "{c}");
}

#[test]
fn least_privilege_role_gets_unknown_not_ok() {
    let db = TestDb::with_schema("rpriv");
    db.sql("CREATE EXTENSION pg_stat_statements");
    let role = format!("mon_{}", db.name);
    db.sql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'Mon-pw-1'; GRANT CONNECT ON DATABASE {} TO {role}",
        db.name
    ));
    // Another role's session in the database, whose state this role cannot see.
    let _other = psql_bg(&db, "BEGIN;\nSELECT 1;\n");
    wait_for(
        &db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'",
        "1",
    );
    let url = format!(
        "postgresql://{role}:Mon-pw-1@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        cluster().port,
        db.name,
        cluster().ca.display()
    );
    let r = opsctl()
        .args(["health", "--format", "json", "--database-url", &url])
        .run();
    let j = r.json();
    for id in [
        "idle_in_transaction",
        "long_running_queries",
        "blocked_sessions",
        "sequences",
        "slow_queries",
    ] {
        let c = check(&j, id);
        assert_eq!(c["state"], "UNKNOWN", "{id}: {c:#}");
        let hint = c["hint"].as_str().unwrap();
        assert!(
            hint.contains("pg_read_all_stats") || hint.contains("grant SELECT"),
            "{id}: {hint}"
        );
    }
    assert_eq!(check(&j, "connectivity")["state"], "OK");
    assert_eq!(r.code, 3, "{}", r.stdout);
    // With pg_monitor the same role sees them.
    db.sql(&format!("GRANT pg_monitor TO {role}"));
    let j = opsctl()
        .args([
            "health",
            "--format",
            "json",
            "--check",
            "idle_in_transaction",
            "--database-url",
            &url,
        ])
        .run()
        .json();
    assert_eq!(check(&j, "idle_in_transaction")["state"], "OK");
    end_sessions(&db);
}

/// Every line of a Prometheus exposition is a comment of the right form or a sample.
fn assert_prometheus(text: &str) {
    let mut typed = std::collections::HashSet::new();
    assert!(!text.is_empty());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.starts_with("opsctl_") && rest.contains(' '), "{line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            assert_eq!(ty, "gauge", "{line}");
            assert!(typed.insert(name.to_string()), "TYPE twice: {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("opsctl_"), "{line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    let _ = v;
                }
            }
        }
    }
}

/// `NAME STATE: text[ | 'label'=value;warn;crit;;...]` on one line.
fn assert_nagios(line: &str, name: &str) {
    assert!(
        line.ends_with('\n') && line.matches('\n').count() == 1,
        "{line:?}"
    );
    let line = line.trim_end();
    let (head, perf) = match line.split_once(" | ") {
        Some((h, p)) => (h, Some(p)),
        None => (line, None),
    };
    let rest = head.strip_prefix(name).unwrap_or_else(|| panic!("{line}"));
    let state = rest.trim_start().split(':').next().unwrap();
    assert!(
        ["OK", "WARNING", "CRITICAL", "UNKNOWN"].contains(&state),
        "{line}"
    );
    if let Some(p) = perf {
        for item in p.split(' ') {
            let (label, data) = item.split_once('=').unwrap_or_else(|| panic!("{item}"));
            assert!(label.starts_with('\'') && label.ends_with('\''), "{item}");
            let fields: Vec<&str> = data.split(';').collect();
            assert_eq!(fields.len(), 5, "{item}");
            fields[0]
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{item}"));
            for f in &fields[1..3] {
                if !f.is_empty() {
                    f.parse::<f64>().unwrap_or_else(|_| panic!("{item}"));
                }
            }
        }
    }
}

#[test]
fn every_form_of_every_report_parses_back() {
    let db = TestDb::with_schema("rforms");
    db.sql("CREATE EXTENSION pg_stat_statements");
    // Enough rows that users is among the largest tables, ahead of the many small
    // bookkeeping tables of the opsctl and audit schemas.
    db.sql(
        "INSERT INTO users (username, email) \
         SELECT 'u' || g, 'u' || g || '@example.com' FROM generate_series(1, 3000) g; \
         ANALYZE users",
    );
    for report in [
        vec!["health"],
        vec!["report", "pool"],
        vec!["report", "size"],
    ] {
        let name = format!("OPSCTL {}", report.join(" ").to_uppercase());
        let j = db.opsctl().args(&report).args(["--format", "json"]).run();
        let v = j.json();
        assert!(v["checks"].as_array().is_some_and(|c| !c.is_empty()), "{v}");
        let p = db
            .opsctl()
            .args(&report)
            .args(["--format", "prometheus"])
            .run();
        assert_eq!(p.code, j.code);
        assert_prometheus(&p.stdout);
        assert!(
            p.stdout.contains("opsctl_check_state{check="),
            "{}",
            p.stdout
        );
        let n = db.opsctl().args(&report).args(["--format", "nagios"]).run();
        assert_eq!(n.code, j.code);
        assert_nagios(&n.stdout, &name);
        let t = db.opsctl().args(&report).run();
        assert_eq!(t.code, j.code);
        assert!(t.stdout.starts_with("opsctl "), "{}", t.stdout);
        assert!(!t.stdout.contains('\x1b'));
    }
    let p = db
        .opsctl()
        .args(["report", "size", "--format", "prometheus"])
        .run();
    assert!(
        p.stdout.contains("opsctl_database_size_bytes{datname="),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout
            .contains("opsctl_table_size_bytes{relname=\"public.users\",part=\"heap\"}"),
        "{}",
        p.stdout
    );
    let p = db
        .opsctl()
        .args(["report", "pool", "--format", "prometheus"])
        .run();
    assert!(
        p.stdout.contains("opsctl_pool_connections_by_state{state="),
        "{}",
        p.stdout
    );
    // The textfile form for the pool report.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.prom");
    db.opsctl()
        .args(["report", "pool", "--format", "prometheus", "--textfile"])
        .arg(&path)
        .run()
        .success();
    assert_prometheus(&std::fs::read_to_string(&path).unwrap());
}

#[test]
fn exit_codes_are_the_worst_state() {
    let db = TestDb::new("rexit");
    db.sql("CREATE EXTENSION pg_stat_statements");
    db.opsctl().args(["health"]).run().success();
    let (_d, warn) = policy("[reports]\nxid_age_warn = 1\n");
    let r = db
        .opsctl()
        .args(["health", "--format", "nagios", "--policy"])
        .arg(&warn)
        .run()
        .code(1);
    assert!(
        r.stdout
            .starts_with("OPSCTL HEALTH WARNING: xid_wraparound WARNING"),
        "{}",
        r.stdout
    );
    let (_d2, crit) = policy("[reports]\nxid_age_warn = 1\nxid_age_crit = 2\n");
    db.opsctl()
        .args(["health", "--policy"])
        .arg(&crit)
        .run()
        .code(2);
    // A stock server without pg_stat_statements is OK for Nagios, not UNKNOWN forever.
    db.sql("DROP EXTENSION pg_stat_statements");
    let r = db
        .opsctl()
        .args(["health", "--format", "nagios"])
        .run()
        .code(0);
    assert!(r.stdout.starts_with("OPSCTL HEALTH OK"), "{}", r.stdout);
    // Usage and configuration errors of reports are UNKNOWN.
    opsctl()
        .args(["report", "pool", "--format", "xml"])
        .run()
        .code(3);
    opsctl().args(["report", "nosuch"]).run().code(3);
    db.opsctl()
        .args(["report", "size", "--textfile", "/tmp/x.prom"])
        .run()
        .code(3);
    let (_d4, nonsense) =
        policy("[reports]\nlong_query_warn_seconds = 600\nlong_query_crit_seconds = 60\n");
    let r = db
        .opsctl()
        .args(["health", "--policy"])
        .arg(&nonsense)
        .run()
        .code(3);
    assert!(r.stderr.contains("long_query_warn_seconds"), "{}", r.stderr);
    let (_d3, bad) = policy("[reports]\nconnections_warn_percnt = 1\n");
    let r = db
        .opsctl()
        .args(["report", "pool", "--policy"])
        .arg(&bad)
        .run()
        .code(3);
    assert!(r.stderr.contains("connections_warn_percnt"), "{}", r.stderr);
    // An unreachable database is CRITICAL.
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/x?connect_timeout=3",
        free_port()
    );
    let r = opsctl()
        .args([
            "report",
            "pool",
            "--format",
            "nagios",
            "--database-url",
            &url,
        ])
        .run()
        .code(2);
    assert!(
        r.stdout.starts_with("OPSCTL REPORT POOL CRITICAL:"),
        "{}",
        r.stdout
    );
    opsctl()
        .args(["report", "size", "--database-url", &url])
        .run()
        .code(2);
}

#[test]
fn size_report_snapshots_growth_and_runway() {
    let db = TestDb::with_schema("rsize");
    db.sql("INSERT INTO users (username, email) SELECT 'u' || g, 'u' || g || '@x' FROM generate_series(1, 2000) g");
    let j = db
        .opsctl()
        .args(["report", "size", "--format", "json"])
        .run()
        .success()
        .json();
    let bytes = j["database_bytes"].as_i64().unwrap();
    assert!(bytes > 1_000_000);
    assert!(j["growth"].is_null());
    let users = j["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "users")
        .unwrap()
        .clone();
    assert!(
        users["heap_bytes"].as_i64().unwrap() > 0 && users["index_bytes"].as_i64().unwrap() > 0
    );
    assert!(!j["indexes"].as_array().unwrap().is_empty());
    // --snapshot records a row and prunes those past the retention.
    db.sql(&format!(
        "INSERT INTO opsctl.size_snapshots (taken_at, database_bytes) VALUES (now() - interval '100 days', 1), \
           (now() - interval '8 days', {}), (now() - interval '1 day', {})",
        bytes - 8 * 1024 * 1024,
        bytes - 1024 * 1024
    ));
    let j = db
        .opsctl()
        .args(["report", "size", "--snapshot", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(j["snapshot"]["pruned"], 1);
    assert_eq!(db.sql("SELECT count(*) FROM opsctl.size_snapshots"), "3");
    let per_day = j["growth"]["bytes_per_day"].as_f64().unwrap();
    assert!((per_day - 1048576.0).abs() < 100_000.0, "{per_day}");
    let per_week = j["growth"]["bytes_per_week"].as_f64().unwrap();
    assert!((per_week - 7.0 * 1048576.0).abs() < 700_000.0, "{per_week}");
    // Disk limit 3 MiB away at ~1 MiB/day: CRITICAL; 20 MiB away: WARNING; far: OK.
    for (headroom, code) in [(3, 2), (20, 1), (100_000, 0)] {
        let (_d, pol) = policy(&format!(
            "[reports]\ndisk_limit_bytes = {}\n",
            bytes + headroom * 1024 * 1024
        ));
        let r = db
            .opsctl()
            .args(["report", "size", "--policy"])
            .arg(&pol)
            .run();
        assert_eq!(r.code, code, "{}", r.stdout);
        assert!(r.stdout.contains("reached in"), "{}", r.stdout);
        assert!(r.stdout.contains("Largest tables:"), "{}", r.stdout);
    }
    // Without the snapshot table, --snapshot says what to do.
    let bare = TestDb::new("rsize2");
    let r = bare
        .opsctl()
        .args(["report", "size", "--snapshot"])
        .run()
        .code(3);
    assert!(r.stderr.contains("migrate"), "{}", r.stderr);
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_with(port, path, "")
}

fn wait_listening(port: u16, child: &mut Child) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm_and_wait(child: &mut Child) -> i32 {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "serve ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_answers_health_metrics_and_404_then_stops_on_sigterm() {
    let db = TestDb::new("rserve");
    db.sql("CREATE EXTENSION pg_stat_statements");
    let port = free_port();
    let (_d, pol) = policy("[reports]\nxid_age_warn = 1\n");
    let mut child = db
        .opsctl()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cache-seconds",
            "30",
            "--policy",
        ])
        .arg(&pol)
        .spawn();
    wait_listening(port, &mut child);
    let (code, body) = http_get(port, "/db/health");
    assert_eq!(code, 200, "{body}");
    let j: Value = serde_json::from_str(&body).unwrap();
    // A WARNING check does not concern the load balancer.
    assert_eq!(j["status"], "healthy");
    assert_eq!(j["database"], "connected");
    assert_eq!(j["state"], "OK");
    let (code, body) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    assert_prometheus(&body);
    assert!(body.contains("opsctl_up 1"));
    let (code, _) = http_get(port, "/nope");
    assert_eq!(code, 404);
    // `/` is the dashboard now (issue 18): served without a token on a loopback bind.
    let (code, body) = http_get(port, "/");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<title>opsctl"), "{body}");
    // Cached: a burst of scrapes runs the checks once.
    let runs = "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '%pg_blocking_pids%' \
                AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let before = db.sql(runs);
    assert_ne!(before, "0");
    for _ in 0..20 {
        assert_eq!(http_get(port, "/metrics").0, 200);
    }
    assert_eq!(db.sql(runs), before);
    assert_eq!(sigterm_and_wait(&mut child), 0);

    // A database that cannot be reached: 500 unhealthy with the reason.
    let port = free_port();
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/x?connect_timeout=3",
        free_port()
    );
    let mut child = opsctl()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &url,
        ])
        .spawn();
    wait_listening(port, &mut child);
    let (code, body) = http_get(port, "/db/health");
    assert_eq!(code, 500, "{body}");
    let j: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["status"], "unhealthy");
    assert!(
        j["database"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{j}"
    );
    let (_, body) = http_get(port, "/metrics");
    assert!(body.contains("opsctl_up 0"), "{body}");
    assert_eq!(sigterm_and_wait(&mut child), 0);
}

fn http_get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, body)
}

fn spawn_serve(db: &TestDb, port: u16, extra: &[&str]) -> Child {
    let mut child = db
        .opsctl()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .spawn();
    wait_listening(port, &mut child);
    child
}

/// The load balancer's question is "can the application use the database": a CRITICAL
/// performance check does not make it 500; a read-only node does where the policy says
/// the node must be writable.
#[test]
fn serve_health_is_usability_not_performance() {
    let db = TestDb::new("rserveuse");
    db.sql("CREATE EXTENSION pg_stat_statements");
    // No cache hit ratio can pass these thresholds: cache_hit_ratio is CRITICAL.
    let (_d, pol) = policy(
        "[reports]\ncache_hit_warn_percent = 100\ncache_hit_crit_percent = 100\ncache_hit_min_blocks = 0\n",
    );
    db.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
    db.sql("SELECT count(*) FROM t");
    wait_for(
        &db,
        "SELECT (sum(heap_blks_hit + heap_blks_read) > 0)::text FROM pg_statio_user_tables",
        "true",
    );
    assert_state(&db, Some(&pol), "cache_hit_ratio", "CRITICAL");
    let port = free_port();
    let mut child = spawn_serve(&db, port, &["--policy", pol.to_str().unwrap()]);
    let (code, body) = http_get(port, "/db/health");
    assert_eq!(code, 200, "{body}");
    let j: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["status"], "healthy", "{j}");
    assert_eq!(j["state"], "OK", "{j}");
    // The performance judgement stays in /metrics and `opsctl health`.
    let (_, metrics) = http_get(port, "/metrics");
    assert!(
        metrics.contains("opsctl_check_state{check=\"cache_hit_ratio\"} 2"),
        "{metrics}"
    );
    db.opsctl()
        .args(["health", "--check", "cache_hit_ratio", "--policy"])
        .arg(&pol)
        .run()
        .code(2);
    assert_eq!(sigterm_and_wait(&mut child), 0);

    // A node that must be writable and is not: 500 with the reason.
    db.sql(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        db.name
    ));
    let port = free_port();
    let mut child = spawn_serve(&db, port, &[]);
    assert_eq!(http_get(port, "/db/health").0, 200);
    assert_eq!(sigterm_and_wait(&mut child), 0);
    let (_d2, writable) = policy("[reports]\nserve_require_writable = true\n");
    let port = free_port();
    let mut child = spawn_serve(&db, port, &["--policy", writable.to_str().unwrap()]);
    let (code, body) = http_get(port, "/db/health");
    assert_eq!(code, 500, "{body}");
    let j: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["status"], "unhealthy", "{j}");
    assert_eq!(j["state"], "CRITICAL", "{j}");
    assert!(j["database"].as_str().unwrap().contains("read-only"), "{j}");
    assert_eq!(sigterm_and_wait(&mut child), 0);
}

/// /db/health tells an anonymous client whether the database is usable, nothing more;
/// sessions and query text need --details or the bearer token.
#[test]
fn serve_health_hides_sessions_unless_allowed() {
    let db = TestDb::new("rservepriv");
    db.sql("CREATE EXTENSION pg_stat_statements");
    let _bg = psql_bg(&db, "SELECT pg_sleep(60), 'zebra-4711-secret';\n");
    wait_for(
        &db,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%zebra-4711%' AND state = 'active' AND pid <> pg_backend_pid()",
        "1",
    );
    let (_d, pol) = policy("[reports]\nlong_query_warn_seconds = 0.1\n");
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef0123456789abcdef";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let port = free_port();
    let mut child = spawn_serve(
        &db,
        port,
        &[
            "--policy",
            pol.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let (code, body) = http_get(port, "/db/health");
    assert_eq!(code, 200, "{body}");
    let j: Value = serde_json::from_str(&body).unwrap();
    let mut keys: Vec<&str> = j.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["database", "state", "status"], "{j}");
    assert!(!body.contains("zebra"), "{body}");
    // The token gets the whole report, query text included; a wrong one gets 401.
    let (code, body) = http_get_with(
        port,
        "/db/health",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(code, 200, "{body}");
    let j: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["status"], "healthy");
    assert!(body.contains("zebra-4711-secret"), "{body}");
    let c = check(&j["report"], "long_running_queries");
    assert_eq!(c["state"], "WARNING", "{c}");
    let (code, body) = http_get_with(port, "/db/health", "Authorization: Bearer nope\r\n");
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("zebra"), "{body}");
    assert_eq!(sigterm_and_wait(&mut child), 0);
    // --details: everyone gets the report.
    let port = free_port();
    let mut child = spawn_serve(&db, port, &["--details", "--policy", pol.to_str().unwrap()]);
    let (code, body) = http_get(port, "/db/health");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("zebra-4711-secret"), "{body}");
    assert_eq!(sigterm_and_wait(&mut child), 0);
    // A token file others can read is refused (exit 2).
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let r = db
        .opsctl()
        .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token_file)
        .run()
        .code(2);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
}

/// Raises this process's soft descriptor limit to `want` (the test holds thousands of
/// client sockets).
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert!(
        lim.rlim_max >= want,
        "the hard RLIMIT_NOFILE ({}) is below the {want} this test needs: raise it (ulimit -Hn)",
        lim.rlim_max
    );
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
}

/// An HTTP status code within `within`, or None (no answer, reset, timeout).
fn probe(port: u16, within: Duration) -> Option<u16> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.set_write_timeout(Some(within)).ok()?;
    write!(s, "GET /db/health HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// 2,000 idle connections against a server limited to 1,024 descriptors: the cap keeps
/// it below the limit, probes are answered at once (503 while full) and get 200 as soon
/// as the idle clients time out, while they still hold their sockets.
#[test]
fn serve_caps_connections_and_keeps_answering_probes() {
    use std::os::unix::process::CommandExt;
    raise_nofile(4096);
    let db = TestDb::new("rservecap");
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsctl"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OPSCTL_DATABASE_URL", &db.url)
        .env("HOME", "/nonexistent-home-for-tests")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The stock limit of a service without LimitNOFILE.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().expect("opsctl serve");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    wait_listening(port, &mut child);
    let pid = child.id();
    let mut child = Kill(child);
    assert_eq!(probe(port, Duration::from_secs(10)), Some(200));
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut idle = Vec::with_capacity(2000);
    let mut max_fds = 0;
    let start = Instant::now();
    while idle.len() < 2000 && start.elapsed() < Duration::from_secs(60) {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            idle.push(s);
        }
        if idle.len() % 100 == 0 {
            max_fds = max_fds.max(fds());
        }
    }
    assert_eq!(idle.len(), 2000, "could not open 2000 connections in 60 s");
    eprintln!("2000 idle connections open after {:?}", start.elapsed());
    // Probes are answered at once while the idle connections are open.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let code = probe(port, Duration::from_secs(3));
        assert!(
            code.is_some(),
            "a probe got no answer within 3 s (after {:?}) with 2000 idle connections open",
            t.elapsed()
        );
        codes.push(code.unwrap());
        max_fds = max_fds.max(fds());
        std::thread::sleep(Duration::from_millis(200));
    }
    // 200 once the idle clients time out (10 s), though they still hold their sockets.
    let mut healthy = false;
    while start.elapsed() < Duration::from_secs(90) {
        if probe(port, Duration::from_secs(3)) == Some(200) {
            healthy = true;
            break;
        }
        max_fds = max_fds.max(fds());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(healthy, "no 200 within 90 s; probe codes {codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 503), "{codes:?}");
    assert!(max_fds < 1000, "the server held {max_fds} descriptors");
    eprintln!("connection cap: probe codes {codes:?}, server descriptors at most {max_fds}");
    assert!(child.0.try_wait().unwrap().is_none(), "serve died");
    drop(idle);
    assert_eq!(sigterm_and_wait(&mut child.0), 0);
}

/// Human output shows sizes in IEC units (KiB, MiB: powers of 1024), never raw byte counts
/// or pg_size_pretty's kB/MB; JSON keeps numbers of bytes.
#[test]
fn sizes_are_in_iec_units_in_text_output() {
    let db = TestDb::with_schema("runits");
    make_months(&db, 0, 1);
    let r = db.opsctl().args(["partition", "list"]).run().success();
    let sizes = sizes_in(&r.stdout);
    assert!(!sizes.is_empty(), "no sizes in:\n{}", r.stdout);
    for (n, unit) in &sizes {
        assert!(
            ["B", "KiB", "MiB", "GiB", "TiB"].contains(&unit.as_str()),
            "{n} {unit} in:\n{}",
            r.stdout
        );
    }
    let j = db
        .opsctl()
        .args(["partition", "list", "--format", "json"])
        .run()
        .success()
        .json();
    assert!(j.to_string().contains("\"bytes\":"), "{j}");
    // backup create and list: dump, compressed and file sizes.
    let repo = Repo::new();
    let r = repo
        .cmd(&db)
        .args(["backup", "create", "--dir"])
        .arg(repo.path())
        .run()
        .success();
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("dump "))
        .unwrap_or_else(|| panic!("no sizes line in:\n{}", r.stdout));
    assert!(!line.contains(" bytes"), "{line}");
    assert_eq!(sizes_in(line).len(), 3, "{line}");
    let r = repo
        .cmd(&db)
        .args(["backup", "list", "--wide", "--dir"])
        .arg(repo.path())
        .run()
        .success();
    assert!(sizes_in(&r.stdout).len() >= 3, "{}", r.stdout);
}

/// Every "<number> <unit>" size in a text: (number, unit) for units that look like sizes.
fn sizes_in(text: &str) -> Vec<(String, String)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0].parse::<f64>().is_ok())
        .map(|w| {
            let unit = w[1].trim_end_matches([',', ';', ')', '.']);
            (w[0].to_string(), unit.to_string())
        })
        .filter(|(_, u)| {
            [
                "B", "bytes", "kB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB",
            ]
            .contains(&u.as_str())
        })
        .collect()
}

#[test]
fn tls_and_connection_saturation_turn_non_ok() {
    let db = TestDb::new("rtls");
    assert_state(&db, None, "tls", "OK");
    let (_, j) = health(&db, None, &["--check", "tls", "--sslmode", "require"]);
    let c = check(&j, "tls");
    assert_eq!(c["state"], "WARNING", "{c}");
    assert!(c["hint"].as_str().unwrap().contains("verify-full"), "{c}");
    assert_state(&db, None, "connections", "OK");
    let (_d, pol) =
        policy("[reports]\nconnections_warn_percent = 0.1\nconnections_crit_percent = 99\n");
    assert_state(&db, Some(&pol), "connections", "WARNING");
}

/// pg_receivewal streams like a standby: it shows up in pg_stat_replication.
#[test]
fn replication_lag_of_a_streaming_client() {
    let c = cluster();
    let hba = c.dir.join("data").join("pg_hba.conf");
    let line = "hostssl replication all 127.0.0.1/32 scram-sha-256";
    let text = std::fs::read_to_string(&hba).unwrap();
    if !text.contains(line) {
        std::fs::write(&hba, format!("{text}{line}\n")).unwrap();
        c.psql("postgres", "SELECT pg_reload_conf()");
    }
    let db = TestDb::new("rrepl");
    let wal = tempfile::tempdir().unwrap();
    let mut child = Command::new(c.bindir.join("pg_receivewal"))
        .arg("-D")
        .arg(wal.path())
        .args([
            "-h",
            "localhost",
            "-p",
            &c.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(["--no-loop", "-s", "1", "-w"])
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &c.ca)
        .env("PGAPPNAME", "opsctl-test-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pg_receivewal");
    let start = Instant::now();
    while db.sql(
        "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'opsctl-test-receiver'",
    ) != "1"
    {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("pg_receivewal exited {st}: {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pg_receivewal never streamed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _guard = Bg(child);
    let ok = assert_state(&db, None, "replication_lag", "OK");
    assert!(
        ok["value"]
            .as_str()
            .unwrap()
            .contains("opsctl-test-receiver"),
        "{ok}"
    );
    let (_d, pol) = policy(
        "[reports]\nreplication_lag_warn_seconds = 0\nreplication_lag_crit_seconds = 3600\n",
    );
    assert_state(&db, Some(&pol), "replication_lag", "WARNING");
}
