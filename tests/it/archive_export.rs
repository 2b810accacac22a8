//! `opsctl archive --export-dir [--drop-after-export]` and `opsctl archive restore FILE`:
//! export → verify → drop → restore round trip with counts and checksums compared,
//! tampered and truncated files and wrong keys refused, an unverified month never dropped,
//! a present month never restored twice; archive and ensure sessions attributed in the
//! audit log; `partition ensure` on the audit log while audited writes go on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::{cluster, opsctl, TestDb};

/// Trades every hour from 2025-01-01 for `hours` hours, months made by `partition ensure`.
fn seeded(tag: &str, hours: i64) -> TestDb {
    let db = TestDb::with_schema(tag);
    db.sql(&format!(
        "INSERT INTO users (username, email) VALUES ('ann', 'ann@example.com');
         INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, exit_price, entry_time)
         SELECT 't' || g, 1, 'BTC', 'buy', 1, 100 + g, 101 + g,
                timestamp '2025-01-01' + g * interval '1 hour'
           FROM generate_series(0, {}) g",
        hours - 1
    ));
    db.opsctl().args(["partition", "ensure"]).run().success();
    db
}

struct Env {
    db: TestDb,
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Env {
    fn new(tag: &str) -> Env {
        let db = seeded(tag, 3600); // Jan..May 2025
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("archive.key");
        opsctl()
            .args(["backup", "keygen", "--out"])
            .arg(&key)
            .run()
            .success();
        Env { db, dir, key }
    }
    fn export_dir(&self) -> PathBuf {
        self.dir.path().join("export")
    }
    fn cmd(&self) -> crate::common::Opsctl {
        let mut o = self.db.opsctl();
        o.env("OPSCTL_KEY_FILE", &self.key);
        o
    }
    fn archive(&self, extra: &[&str]) -> crate::common::Run {
        let mut c = self.cmd();
        c.args([
            "archive",
            "--before",
            "2025-03-01",
            "--format",
            "json",
            "--export-dir",
        ])
        .arg(self.export_dir())
        .args(extra);
        c.run()
    }
    fn restore(&self, file: &Path) -> crate::common::Run {
        self.cmd()
            .args(["archive", "restore", "--format", "json"])
            .arg(file)
            .run()
    }
    fn file(&self, month: &str) -> PathBuf {
        self.export_dir()
            .join(format!("public.trades_p{month}.opsarc"))
    }
}

/// Count and md5 of a month's rows in a relation, in key order.
fn fingerprint(db: &TestDb, rel: &str, from: &str, to: &str) -> String {
    db.sql(&format!(
        "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY id, entry_time), '')) \
         FROM {rel} t WHERE entry_time >= '{from}' AND entry_time < '{to}'"
    ))
}

fn exists(db: &TestDb, rel: &str) -> bool {
    db.sql(&format!("SELECT to_regclass('{rel}') IS NOT NULL")) == "t"
}

#[test]
fn export_verify_drop_restore_round_trip() {
    let env = Env::new("exp_round");
    let db = &env.db;
    let jan = fingerprint(db, "trades", "2025-01-01", "2025-02-01");
    let feb = fingerprint(db, "trades", "2025-02-01", "2025-03-01");
    assert!(jan.starts_with("744:"), "{jan}");

    let run = env.archive(&["--drop-after-export"]).success();
    let j = run.json();
    assert_eq!(j["verified"], true, "{}", run.all());
    let months = j["export"]["months"].as_array().unwrap();
    assert_eq!(months.len(), 2, "{}", run.all());
    for m in months {
        assert_eq!(m["verified"], true);
        assert_eq!(m["dropped"], true);
        assert_eq!(m["written"], true);
    }
    assert_eq!(months[0]["rows"], 744);
    assert_eq!(months[1]["rows"], 672);
    // Dropped from the database, recorded, files private.
    assert!(!exists(db, "archive.trades_p2025_01"));
    assert!(!exists(db, "archive.trades_p2025_02"));
    assert_eq!(db.sql("SELECT count(*) FROM archive.trades"), "0");
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM opsctl.archive_exports \
             WHERE verified_at IS NOT NULL AND dropped_at IS NOT NULL"
        ),
        "2"
    );
    use std::os::unix::fs::PermissionsExt;
    let jan_file = env.file("2025_01");
    let feb_file = env.file("2025_02");
    let mode = std::fs::metadata(&jan_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The files are in the backup container: opaque bytes.
    let raw = std::fs::read(&jan_file).unwrap();
    assert!(raw.starts_with(b"OPSCTLBK"));
    assert!(
        !raw.windows(4).any(|w| w == b"BTC\0") && !String::from_utf8_lossy(&raw).contains("t100")
    );

    // Restore brings both back, with the same rows and checksums.
    let r = env.restore(&jan_file).success().json();
    assert_eq!(r["restored"], true);
    assert_eq!(r["result"]["rows"], 744);
    assert_eq!(r["result"]["checksum"], months[0]["checksum"]);
    assert_eq!(r["result"]["partition"], "archive.trades_p2025_01");
    let r = env.restore(&feb_file).success().json();
    assert_eq!(r["result"]["checksum"], months[1]["checksum"]);
    assert_eq!(
        fingerprint(db, "archive.trades", "2025-01-01", "2025-02-01"),
        jan
    );
    assert_eq!(
        fingerprint(db, "archive.trades", "2025-02-01", "2025-03-01"),
        feb
    );
    // As the month partition with its range CHECK.
    assert_eq!(
        db.sql(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c \
             WHERE c.oid = 'archive.trades_p2025_01'::regclass"
        ),
        "FOR VALUES FROM ('2025-01-01 00:00:00') TO ('2025-02-01 00:00:00')"
    );
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'archive.trades_p2025_01'::regclass \
             AND conname = 'trades_p2025_01_range' AND convalidated"
        ),
        "1"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM opsctl.archive_exports WHERE restored_at IS NOT NULL"),
        "2"
    );

    // A second restore of a present month is refused and changes nothing.
    let again = env.restore(&jan_file).code(1);
    assert!(again.all().contains("present already"), "{}", again.all());
    assert_eq!(again.json()["restored"], false);
    assert_eq!(
        fingerprint(db, "archive.trades", "2025-01-01", "2025-02-01"),
        jan
    );

    // The same file restores into another database of the same schema (no archive yet).
    let other = TestDb::with_schema("exp_round_other");
    let r = other
        .opsctl()
        .env("OPSCTL_KEY_FILE", &env.key)
        .args(["archive", "restore"])
        .arg(&feb_file)
        .run()
        .success();
    assert!(
        r.stdout.contains("restored archive.trades_p2025_02"),
        "{}",
        r.all()
    );
    assert_eq!(
        fingerprint(&other, "archive.trades", "2025-02-01", "2025-03-01"),
        feb
    );

    // partition list shows them archived again.
    let l = db
        .opsctl()
        .args(["partition", "list", "--format", "json"])
        .run()
        .success()
        .json();
    let archived: Vec<&str> = l["tables"][0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "archived" && p["is_default"] == false)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(archived, vec!["trades_p2025_01", "trades_p2025_02"]);
}

#[test]
fn export_without_drop_keeps_months_and_is_not_rewritten() {
    let env = Env::new("exp_keep");
    let db = &env.db;
    let run = env.archive(&[]).success();
    let months = run.json()["export"]["months"].as_array().unwrap().clone();
    assert_eq!(months.len(), 2);
    assert!(months.iter().all(|m| m["dropped"] == false));
    assert!(exists(db, "archive.trades_p2025_01"));
    // Same date again: nothing moves, the verified exports are kept.
    let again = env.archive(&["--drop-after-export"]).success().json();
    let m2 = again["export"]["months"].as_array().unwrap();
    assert!(m2
        .iter()
        .all(|m| m["written"] == false && m["dropped"] == true));
    assert_eq!(
        db.sql("SELECT count(*) FROM opsctl.archive_exports"),
        "2",
        "no second file was recorded"
    );
    assert!(!exists(db, "archive.trades_p2025_01"));
    // A restore lands the same rows back.
    env.restore(&env.file("2025_01")).success();
    assert_eq!(db.sql("SELECT count(*) FROM archive.trades"), "744");
}

#[test]
fn tampered_truncated_and_wrong_key_exports_are_refused() {
    let env = Env::new("exp_tamper");
    let db = &env.db;
    env.archive(&["--drop-after-export"]).success();
    let good = env.file("2025_01");
    let bytes = std::fs::read(&good).unwrap();

    // A flipped byte in the body.
    let flipped = env.dir.path().join("flipped.opsarc");
    let mut b = bytes.clone();
    let at = b.len() / 2;
    b[at] ^= 0x01;
    std::fs::write(&flipped, &b).unwrap();
    let r = env.restore(&flipped).code(1);
    assert!(r.stderr.contains("failed authentication"), "{}", r.all());
    assert_eq!(r.json()["error"], "chunk_auth");

    // Truncated: cut in the middle, and cut exactly before the trailer.
    let cut = env.dir.path().join("cut.opsarc");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = env.restore(&cut).code(1);
    assert!(r.stderr.contains("truncated"), "{}", r.all());
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let r = env.restore(&cut).code(1);
    assert!(
        r.stderr.contains("truncated") || r.stderr.contains("failed authentication"),
        "{}",
        r.all()
    );

    // Wrong key.
    let other = env.dir.path().join("other.key");
    opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&other)
        .run()
        .success();
    let r = env
        .db
        .opsctl()
        .env("OPSCTL_KEY_FILE", &other)
        .args(["archive", "restore"])
        .arg(&good)
        .run()
        .code(1);
    assert!(r.stderr.contains("wrong key"), "{}", r.all());
    // No key at all: a usage error.
    let r = env
        .db
        .opsctl()
        .args(["archive", "restore"])
        .arg(&good)
        .run()
        .code(2);
    assert!(r.stderr.contains("no backup key"), "{}", r.all());

    // Nothing was restored by any of them; the good file still works.
    assert!(!exists(db, "archive.trades_p2025_01"));
    assert_eq!(db.sql("SELECT count(*) FROM archive.trades"), "0");
    env.restore(&good).success();
    assert_eq!(db.sql("SELECT count(*) FROM archive.trades"), "744");
}

#[test]
fn an_archived_row_updated_after_its_export_is_exported_again_before_the_drop() {
    let env = Env::new("exp_updated");
    let db = &env.db;
    env.archive(&[]).success();
    // Same row count, other content: an earlier export must not stand in for it.
    db.sql("UPDATE archive.trades SET exit_price = 999 WHERE id = 't5'");
    let jan = fingerprint(db, "archive.trades", "2025-01-01", "2025-02-01");
    let run = env.archive(&["--drop-after-export"]).success().json();
    let months = run["export"]["months"].as_array().unwrap();
    let month = |p: &str| {
        months
            .iter()
            .find(|m| m["partition"] == p)
            .unwrap_or_else(|| panic!("{p} in {run}"))
    };
    let (m1, m2) = (
        month("archive.trades_p2025_01"),
        month("archive.trades_p2025_02"),
    );
    assert_eq!(
        (&m1["written"], &m1["dropped"]),
        (&true.into(), &true.into()),
        "{m1}"
    );
    assert_eq!(
        (&m2["written"], &m2["dropped"]),
        (&false.into(), &true.into()),
        "{m2}"
    );
    assert!(!exists(db, "archive.trades_p2025_01"));
    // The restore brings back the updated row, not the one of the first export.
    env.restore(&env.file("2025_01")).success();
    assert_eq!(
        db.sql("SELECT exit_price = 999 FROM archive.trades WHERE id = 't5'"),
        "t"
    );
    assert_eq!(
        fingerprint(db, "archive.trades", "2025-01-01", "2025-02-01"),
        jan
    );
}

#[test]
#[cfg(feature = "test-hooks")] // OPSCTL_TEST_CORRUPT_EXPORT
fn drop_after_export_never_drops_an_unverified_month() {
    let env = Env::new("exp_unverified");
    let db = &env.db;
    let before = fingerprint(db, "trades", "2025-01-01", "2025-02-01");
    let r = env
        .cmd()
        .env("OPSCTL_TEST_CORRUPT_EXPORT", "1")
        .args([
            "archive",
            "--before",
            "2025-03-01",
            "--drop-after-export",
            "--export-dir",
        ])
        .arg(env.export_dir())
        .run()
        .code(1);
    assert!(r.all().contains("did not verify"), "{}", r.all());
    assert!(r.all().contains("EXPORT FAILED"), "{}", r.all());
    // The month is still there, whole; no file took its name; nothing recorded.
    assert!(exists(db, "archive.trades_p2025_01"));
    assert!(exists(db, "archive.trades_p2025_02"));
    assert_eq!(
        fingerprint(db, "archive.trades", "2025-01-01", "2025-02-01"),
        before
    );
    assert!(!env.file("2025_01").exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.export_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(db.sql("SELECT count(*) FROM opsctl.archive_exports"), "0");
    // Without the fault the same command exports, verifies and drops.
    env.archive(&["--drop-after-export"]).success();
    assert!(!exists(db, "archive.trades_p2025_01"));
}

#[test]
fn drop_after_export_needs_an_export_dir() {
    let env = Env::new("exp_usage");
    let r = env
        .cmd()
        .args(["archive", "--before", "2025-03-01", "--drop-after-export"])
        .run()
        .code(2);
    assert!(r.stderr.contains("--export-dir"), "{}", r.all());
    assert!(!exists(&env.db, "archive.trades"));
    // restore of a file that does not exist: a usage error.
    env.cmd()
        .args(["archive", "restore", "/nonexistent/x.opsarc"])
        .run()
        .code(2);
}

#[test]
fn archive_row_moves_are_attributed_to_opsctl_archive() {
    let db = seeded("exp_actor", 3600);
    // Mid-month: February's first half moves in batches (DELETE … RETURNING), audited.
    let r = db
        .opsctl()
        .args([
            "archive",
            "--before",
            "2025-02-15",
            "--batch-size",
            "100",
            "--format",
            "json",
        ])
        .run()
        .success()
        .json();
    let batched = r["summary"]["rows_moved_by_batches"].as_i64().unwrap();
    assert_eq!(batched, 14 * 24);
    // Each batch is one MOVE row (V61) under the archive's name, not a DELETE per row.
    assert_eq!(
        db.sql(
            "SELECT sum((row_new->>'rows')::int) FROM audit.logged_actions \
             WHERE table_name = 'trades' AND action = 'M' AND app_actor = 'opsctl archive' \
             AND row_new->>'relation' = 'archive.trades' AND row_old->>'relation' = 'public.trades'"
        ),
        batched.to_string()
    );
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM audit.logged_actions \
             WHERE table_name = 'trades' AND (action = 'D' OR (action = 'M' AND app_actor IS NULL))"
        ),
        "0"
    );
}

fn policy_file(dir: &Path) -> PathBuf {
    // The shipped, documented default policy names trades and the audit log.
    let _ = dir;
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/opsctl.toml")
}

#[test]
fn ensure_on_the_audit_log_creates_months_and_moves_default_rows_during_writes() {
    let db = seeded("exp_audit", 24);
    let tmp = tempfile::tempdir().unwrap();
    let policy = policy_file(tmp.path());
    // Audit rows of the seed and of the ensure above sit in the default partition.
    let in_default: i64 = db
        .sql("SELECT count(*) FROM audit.logged_actions_default")
        .parse()
        .unwrap();
    assert!(in_default >= 24, "{in_default}");
    db.opsctl().args(["audit", "seal"]).run().success();

    // Audited writers keep going while ensure moves the rows.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (stop, ok, failed, name) = (stop.clone(), ok.clone(), failed.clone(), db.name.clone());
        writers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 400 {
                let out = cluster().psql_output(
                    &name,
                    &format!(
                        "INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time) \
                         VALUES ('w{w}_{i}', 1, 'ETH', 'buy', 1, 10, now())"
                    ),
                );
                if out.status.success() {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    eprintln!("writer failed: {}", String::from_utf8_lossy(&out.stderr));
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
        }));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = db
        .opsctl()
        .env("OPSCTL_POLICY", &policy)
        .args(["partition", "ensure", "--format", "json"])
        .run()
        .success();
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "an audited write failed");
    let written = ok.load(Ordering::SeqCst);
    assert!(written > 0);
    let j = r.json();
    let audit = j["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "audit.logged_actions")
        .unwrap_or_else(|| panic!("{}", r.all()))
        .clone();
    assert!(audit["rows_moved_from_default"].as_i64().unwrap() >= in_default);
    assert_eq!(audit["rows_left_in_default"], 0);
    assert!(audit["runway"]["future_months"].as_u64().unwrap() >= 3);
    assert_eq!(
        db.sql("SELECT count(*) FROM audit.logged_actions_default"),
        "0"
    );
    // Every audit row is still there: the seed's, the ensure's own, and one per write.
    let trades_written: i64 = db
        .sql("SELECT count(*) FROM audit.logged_actions WHERE table_name = 'trades' AND action = 'I'")
        .parse()
        .unwrap();
    assert_eq!(trades_written, 24 + written as i64);
    // New months: owned by the audit owner, TRUNCATE guarded, row guard cloned.
    let parts = db.sql(
        "SELECT string_agg(c.relname || ':' || pg_get_userbyid(c.relowner), ',' ORDER BY c.relname) \
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
          WHERE i.inhparent = 'audit.logged_actions'::regclass AND c.relname <> 'logged_actions_default'",
    );
    assert!(!parts.is_empty());
    for p in parts.split(',') {
        let (name, owner) = p.split_once(':').unwrap();
        assert_eq!(owner, "opsctl_audit_owner", "{p}");
        assert_eq!(
            db.sql(&format!(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit.{name}'::regclass \
                 AND tgname IN ('{name}_no_truncate', 'logged_actions_append_only')"
            )),
            "2",
            "{name}"
        );
    }
    let first = parts.split(',').next().unwrap().split(':').next().unwrap();
    let out = cluster().psql_output(&db.name, &format!("TRUNCATE audit.{first}"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"));
    let out = cluster().psql_output(&db.name, &format!("DELETE FROM audit.{first}"));
    assert!(!out.status.success());
    // The seal chain still verifies (rows kept their ids and content).
    db.opsctl().args(["audit", "verify"]).run().success();
    // The moves out of trades' default (none here) and the ensure session's own writes
    // are attributed: a second ensure is a no-op.
    let again = db
        .opsctl()
        .env("OPSCTL_POLICY", &policy)
        .args(["partition", "ensure"])
        .run()
        .success();
    assert!(
        again.stdout.contains("audit.logged_actions: nothing to do"),
        "{}",
        again.all()
    );
}

#[test]
fn ensure_moves_of_default_rows_are_attributed_to_the_ensure_actor() {
    let db = TestDb::with_schema("exp_ensure_actor");
    db.sql(
        "INSERT INTO users (username, email) VALUES ('ann', 'ann@example.com');
         INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time)
         VALUES ('a', 1, 'BTC', 'buy', 1, 1, '2025-03-03'), ('b', 1, 'BTC', 'buy', 1, 1, '2025-03-04')",
    );
    assert_eq!(db.sql("SELECT count(*) FROM trades_default"), "2");
    db.opsctl().args(["partition", "ensure"]).run().success();
    assert_eq!(db.sql("SELECT count(*) FROM trades_default"), "0");
    assert_eq!(db.sql("SELECT count(*) FROM trades"), "2");
    // The move out of the default partition is audited (one MOVE row, V61) under the
    // ensure's name, never as an anonymous change nor as a delete per row.
    assert_eq!(
        db.sql(
            "SELECT row_new->>'rows' FROM audit.logged_actions WHERE table_name = 'trades' \
             AND action = 'M' AND relname = 'trades_default' AND app_actor = 'opsctl partition ensure'"
        ),
        "2"
    );
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM audit.logged_actions WHERE table_name = 'trades' \
             AND (action = 'D' OR (action = 'M' AND app_actor IS NULL))"
        ),
        "0"
    );
}

#[test]
fn ensure_skips_the_audit_log_where_it_is_not_configured() {
    let db = TestDb::new("exp_noaudit");
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("p.toml");
    std::fs::write(
        &policy,
        "[[partitions.tables]]\ntable = \"logged_actions\"\nschema = \"audit\"\ncolumn = \"action_tstamp_tx\"\n",
    )
    .unwrap();
    let r = db
        .opsctl()
        .env("OPSCTL_POLICY", &policy)
        .args(["partition", "ensure"])
        .run()
        .success();
    assert!(r.all().contains("not configured"), "{}", r.all());
    let r = db
        .opsctl()
        .env("OPSCTL_POLICY", &policy)
        .args(["partition", "list"])
        .run()
        .success();
    assert!(r.all().contains("not configured"), "{}", r.all());
    // Named explicitly, a missing table is still an error.
    db.opsctl()
        .env("OPSCTL_POLICY", &policy)
        .args(["partition", "ensure", "--table", "audit.logged_actions"])
        .run()
        .code(2);
}

#[test]
fn exports_are_zstd_by_default_and_gzip_exports_written_before_still_restore() {
    use opsctl::backup::compress::{Codec, Compression};
    use opsctl::backup::{format, keys};
    use std::io::{Read, Write};
    let env = Env::new("exp_zstd");
    let db = &env.db;
    let jan = fingerprint(db, "trades", "2025-01-01", "2025-02-01");
    let feb = fingerprint(db, "trades", "2025-02-01", "2025-03-01");
    let run = env.archive(&["--drop-after-export"]).success();
    assert_eq!(run.json()["verified"], true, "{}", run.all());
    let label = |f: &Path| {
        let bytes = std::fs::read(f).unwrap();
        format::Header::read(&mut &bytes[..]).unwrap().0.content
    };
    let (jan_file, feb_file) = (env.file("2025_01"), env.file("2025_02"));
    assert_eq!(label(&jan_file), "opsctl archive month+zstd");

    // February rewritten as opsctl wrote exports before: gzip under the bare label.
    let key = keys::load_key_file(&env.key).unwrap();
    let bytes = std::fs::read(&feb_file).unwrap();
    let mut r = format::Reader::open(&bytes[..], &[keys::KeyMaterial::Key(key.clone())]).unwrap();
    let mut zstd = Vec::new();
    r.read_to_end(&mut zstd).unwrap();
    let trailer = r.finish().unwrap();
    let mut copy = Vec::new();
    Codec::Zstd
        .decoder(std::io::BufReader::new(&zstd[..]))
        .unwrap()
        .read_to_end(&mut copy)
        .unwrap();
    let mut gz = Compression::new(Codec::Gzip, Some(3))
        .unwrap()
        .encoder(Vec::new())
        .unwrap();
    gz.write_all(&copy).unwrap();
    let mut w = format::Writer::new(
        Vec::new(),
        &[keys::KeyMaterial::Key(key)],
        "opsctl archive month",
    )
    .unwrap();
    w.write_all(&gz.finish().unwrap()).unwrap();
    std::fs::write(&feb_file, w.finish(&trailer).unwrap().0).unwrap();
    assert_eq!(label(&feb_file), "opsctl archive month");

    env.restore(&jan_file).success();
    env.restore(&feb_file).success();
    assert_eq!(
        fingerprint(db, "archive.trades", "2025-01-01", "2025-02-01"),
        jan
    );
    assert_eq!(
        fingerprint(db, "archive.trades", "2025-02-01", "2025-03-01"),
        feb
    );
}
