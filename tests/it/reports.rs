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
    let c = assert_state(&db, None, "slow_queries", "UNKNOWN");
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
    db.sql("DROP EXTENSION pg_stat_statements");
    let r = db
        .opsctl()
        .args(["health", "--check", "slow_queries"])
        .run()
        .code(3);
    assert!(r.stdout.contains("UNKNOWN"), "{}", r.stdout);
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
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
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
    // WARNING still counts as healthy.
    assert_eq!(j["status"], "healthy");
    assert_eq!(j["database"], "connected");
    assert_eq!(j["state"], "WARNING");
    let (code, body) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    assert_prometheus(&body);
    assert!(body.contains("opsctl_up 1"));
    let (code, _) = http_get(port, "/nope");
    assert_eq!(code, 404);
    let (code, _) = http_get(port, "/");
    assert_eq!(code, 404);
    // Cached: a burst of scrapes runs the checks once.
    let runs = "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '%pg_blocking_pids%'";
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
