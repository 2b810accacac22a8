//! `opsctl backup …`, `restore` and `drill` against the real cluster: round trip, every
//! corruption case of the container, keys and passphrases, rekey, killed runs, missing
//! pg_dump, restore refusals, drills that must fail and drills under concurrent writes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::{cluster, opsctl, Run, TestDb};

const CHUNK_RECORD: usize = 6 + 64 * 1024 + 16;

pub(crate) fn seed(db: &TestDb, trades: u32) {
    db.sql(&format!(
        "INSERT INTO users (username, email) SELECT 'u' || g, 'u' || g || '@example.com' \
           FROM generate_series(1, 50) g;
         INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, exit_price, \
           entry_time, realized_pnl, model_id) \
         SELECT md5(g::text) || '-' || g, 1 + g % 50, 'S' || (g % 20), \
           CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, g * 0.00000001, 100 + g * 0.01, \
           NULL, timestamp '2026-01-01' + g * interval '1 minute', -g * 0.5, md5((g * 7)::text) \
         FROM generate_series(1, {trades}) g;
         INSERT INTO positions (user_id, symbol, quantity, entry_price) \
           SELECT g, 'S1', g, 1.5 FROM generate_series(1, 50) g;"
    ));
}

/// A database with the schema and `trades` trades, a key, and a backup repository.
pub(crate) struct Env {
    pub(crate) db: TestDb,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) key: PathBuf,
}

impl Env {
    pub(crate) fn new(tag: &str, trades: u32) -> Env {
        let db = TestDb::with_schema(tag);
        seed(&db, trades);
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("keys/backup.key");
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        opsctl()
            .args(["backup", "keygen", "--out"])
            .arg(&key)
            .run()
            .success();
        Env { db, dir, key }
    }

    pub(crate) fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub(crate) fn cmd(&self) -> crate::common::Opsctl {
        let mut o = self.db.opsctl();
        o.env("OPSCTL_KEY_FILE", &self.key);
        o
    }

    pub(crate) fn create(&self) -> (String, PathBuf) {
        let r = self
            .cmd()
            .args(["backup", "create", "--format", "json", "--dir"])
            .arg(self.repo())
            .run()
            .success();
        let j = r.json();
        (
            j["id"].as_str().unwrap().to_string(),
            PathBuf::from(j["path"].as_str().unwrap()),
        )
    }

    fn verify(&self, file: &Path) -> Run {
        self.cmd().args(["backup", "verify"]).arg(file).run()
    }

    /// `drill ID --format json`, with `fault` run in the scratch database first (the
    /// test-only `OPSCTL_DRILL_FAULT_SQL`).
    #[cfg(feature = "test-hooks")]
    fn drill(&self, id: &str, fault: Option<&str>) -> Run {
        let mut c = self.cmd();
        if let Some(sql) = fault {
            c.env("OPSCTL_DRILL_FAULT_SQL", sql);
        }
        c.args(["drill", id, "--format", "json", "--dir"])
            .arg(self.repo())
            .run()
    }
}

pub(crate) fn content(db: &str) -> String {
    cluster().psql(
        db,
        "SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id, entry_time)) FROM trades t",
    )
}

fn header_len(file: &Path) -> usize {
    let bytes = std::fs::read(file).unwrap();
    opsctl::backup::format::Header::read(&mut &bytes[..])
        .unwrap()
        .1 as usize
}

fn write_key(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn db_exists(name: &str) -> bool {
    cluster().psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    ) == "1"
}

#[test]
fn keygen_writes_a_private_hex_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let r = opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .run()
        .success();
    assert!(r.stdout.contains("key id"), "{}", r.stdout);
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n') && text.trim().chars().all(|c| c.is_ascii_hexdigit()));
    let r = opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .run()
        .code(1);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

#[test]
fn round_trip_create_list_verify_restore_drill() {
    let e = Env::new("bk_round", 3000);
    let (id, file) = e.create();
    assert!(file.starts_with(e.repo().join(&e.db.name)));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // list without any key.
    let r = opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .success();
    let list = r.json();
    let entry = &list.as_array().unwrap()[0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["database"], e.db.name.as_str());
    assert!(entry["dump_bytes"].as_u64().unwrap() > entry["compressed_bytes"].as_u64().unwrap());
    assert_eq!(
        entry["file_bytes"].as_u64().unwrap(),
        std::fs::metadata(&file).unwrap().len()
    );
    assert_eq!(entry["key_ids"].as_array().unwrap().len(), 1);
    // The summary holds no secret.
    let summary = std::fs::read_to_string(file.with_extension("json")).unwrap();
    assert!(!summary.contains(crate::common::PASSWORD));
    assert!(!summary.contains(std::fs::read_to_string(&e.key).unwrap().trim()));

    let r = e.verify(&file).success();
    assert!(r.stdout.contains("is good"), "{}", r.stdout);
    // By id under --dir.
    e.cmd()
        .args(["backup", "verify", &id, "--dir"])
        .arg(e.repo())
        .run()
        .success();

    let target = format!("{}_restored", e.db.name);
    let r = e
        .cmd()
        .args(["restore", &id, "--create", "--target-db", &target, "--dir"])
        .arg(e.repo())
        .run()
        .success();
    assert!(r.stdout.contains("restored backup"), "{}", r.stdout);
    assert_eq!(content(&target), content(&e.db.name));
    assert_eq!(cluster().psql(&target, "SELECT count(*) FROM users"), "50");

    let r = e
        .cmd()
        .args(["drill", "--latest", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .success();
    let j = r.json();
    assert_eq!(j["ok"], true);
    assert!(j["rows_compared"].as_i64().unwrap() >= 3100);
    assert!(!db_exists(j["scratch_database"].as_str().unwrap()));
    let rec =
        e.db.sql("SELECT ok, rows_compared FROM opsctl.backup_drills");
    assert!(rec.starts_with("t|"), "{rec}");
    assert_eq!(
        e.db.sql(&format!(
            "SELECT last_drill_ok FROM opsctl.backups WHERE id = '{id}'"
        )),
        "t"
    );
    let r = opsctl()
        .args(["backup", "list", "--dir"])
        .arg(e.repo())
        .run()
        .success();
    assert!(
        r.stdout.contains(&id) && r.stdout.contains("rto"),
        "{}",
        r.stdout
    );
    // The default table fits 120 columns; one timestamp style; --wide shows everything.
    for l in r.stdout.lines() {
        assert!(
            l.chars().count() <= 120,
            "{} columns: {l}",
            l.chars().count()
        );
    }
    assert!(r.stdout.contains(" UTC"), "{}", r.stdout);
    let wide = opsctl()
        .args(["backup", "list", "--wide", "--dir"])
        .arg(e.repo())
        .run()
        .success()
        .stdout;
    for col in ["compressed", "key id", "duration", "end"] {
        assert!(wide.lines().next().unwrap().contains(col), "{col}: {wide}");
    }
    assert!(wide.lines().any(|l| l.chars().count() > 120), "{wide}");
    let j = opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .json();
    assert_eq!(j[0]["status"]["drill_ok"], true);
    assert_eq!(j[0]["status"]["verify_ok"], true);
}

#[test]
fn every_corruption_is_detected_with_its_reason() {
    let e = Env::new("bk_corrupt", 6000);
    let (_, file) = e.create();
    let good = std::fs::read(&file).unwrap();
    let h = header_len(&file);
    assert!(
        good.len() > h + 3 * CHUNK_RECORD,
        "need at least 3 full chunks, file has {} bytes",
        good.len()
    );
    let bad = e.dir.path().join("bad.opsbak");
    let check = |bytes: &[u8], expect: &str| {
        std::fs::write(&bad, bytes).unwrap();
        let r = e.verify(&bad).code(1);
        assert!(
            r.stderr.contains(expect),
            "expected {expect:?} in:\n{}",
            r.stderr
        );
        let j = e
            .cmd()
            .args(["backup", "verify", "--format", "json"])
            .arg(&bad)
            .run()
            .code(1)
            .json();
        assert_eq!(j["ok"], false);
    };
    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x40;
        b
    };
    check(&flip(3), "header corrupted");
    check(&flip(20), "header corrupted");
    check(&flip(h - 40), "header corrupted");
    check(&flip(h + 6 + 100), "chunk 0 failed authentication");
    check(
        &flip(h + CHUNK_RECORD + 5000),
        "chunk 1 failed authentication",
    );
    // The manifest is the sealed trailer at the very end.
    check(&flip(good.len() - 20), "(manifest/trailer)");
    // Cut at a chunk boundary and inside a chunk.
    check(&good[..h + 2 * CHUNK_RECORD], "truncated");
    check(&good[..h + 2 * CHUNK_RECORD], "without a final chunk");
    check(&good[..h + CHUNK_RECORD + 999], "truncated");
    check(&good[..good.len() - 1], "truncated");
    // Appended bytes.
    let mut more = good.clone();
    more.extend_from_slice(b"\0\0junk");
    check(&more, "trailing data");
    // Two swapped chunks.
    let mut sw = good.clone();
    let (a, b) = (h + CHUNK_RECORD, h + 2 * CHUNK_RECORD);
    sw[a..a + CHUNK_RECORD].copy_from_slice(&good[b..b + CHUNK_RECORD]);
    sw[b..b + CHUNK_RECORD].copy_from_slice(&good[a..a + CHUNK_RECORD]);
    check(&sw, "chunk 1 failed authentication");
    // A summary that disagrees with the sealed manifest.
    std::fs::write(&bad, &good).unwrap();
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file.with_extension("json")).unwrap())
            .unwrap();
    s["rows"] = serde_json::json!(1);
    std::fs::write(bad.with_extension("json"), s.to_string()).unwrap();
    let r = e.verify(&bad).code(1);
    assert!(r.stderr.contains("manifest mismatch"), "{}", r.stderr);
    // The original is still good, and a corrupt backup never creates the restore target.
    e.verify(&file).success();
    std::fs::write(&bad, flip(h + CHUNK_RECORD + 5000)).unwrap();
    let target = format!("{}_never", e.db.name);
    let r = e
        .cmd()
        .args(["restore", "--create", "--target-db", &target])
        .arg(&bad)
        .run()
        .code(1);
    assert!(r.stderr.contains("failed authentication"), "{}", r.stderr);
    assert!(!db_exists(&target));
}

#[test]
fn wrong_key_bad_key_files_and_passphrases() {
    let e = Env::new("bk_keys", 200);
    let (_, file) = e.create();
    let other = e.dir.path().join("other.key");
    opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&other)
        .run()
        .success();
    let r = opsctl()
        .env("OPSCTL_KEY_FILE", &other)
        .args(["backup", "verify"])
        .arg(&file)
        .run()
        .code(1);
    assert!(r.stderr.contains("wrong key"), "{}", r.stderr);
    assert!(!r.stderr.contains("corrupt"), "{}", r.stderr);

    // Short, malformed and too-open key files.
    let k = e.dir.path().join("short.key");
    write_key(&k, b"0123456789abcdef\n", 0o600);
    let r = opsctl()
        .args(["backup", "verify", "--key-file"])
        .arg(&k)
        .arg(&file)
        .run()
        .code(1);
    assert!(
        r.stderr.contains("exactly 32 bytes") && r.stderr.contains("64 hexadecimal"),
        "{}",
        r.stderr
    );
    write_key(&k, &[b'x'; 64], 0o600);
    let r = opsctl()
        .args(["backup", "verify", "--key-file"])
        .arg(&k)
        .arg(&file)
        .run()
        .code(1);
    assert!(r.stderr.contains("not hexadecimal"), "{}", r.stderr);
    std::fs::copy(&e.key, &k).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = opsctl()
        .args(["backup", "verify", "--key-file"])
        .arg(&k)
        .arg(&file)
        .run()
        .code(1);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    // Raw 32-byte key files work.
    let raw = hex_decode(std::fs::read_to_string(&e.key).unwrap().trim());
    write_key(&k, &raw, 0o400);
    opsctl()
        .args(["backup", "verify", "--key-file"])
        .arg(&k)
        .arg(&file)
        .run()
        .success();
    // No key at all.
    let r = opsctl().args(["backup", "verify"]).arg(&file).run().code(1);
    assert!(r.stderr.contains("no backup key"), "{}", r.stderr);

    // Passphrase: create from the environment, open from a file.
    let r =
        e.db.opsctl()
            .env("OPSCTL_PASSPHRASE", "correct horse battery staple")
            .args(["backup", "create", "--format", "json", "--dir"])
            .arg(e.repo())
            .run()
            .success();
    let pfile = PathBuf::from(r.json()["path"].as_str().unwrap());
    let pp = e.dir.path().join("pass");
    write_key(&pp, b"correct horse battery staple\n", 0o600);
    opsctl()
        .args(["backup", "verify", "--passphrase-file"])
        .arg(&pp)
        .arg(&pfile)
        .run()
        .success();
    let r = opsctl()
        .env("OPSCTL_PASSPHRASE", "incorrect horse battery staple")
        .args(["backup", "verify"])
        .arg(&pfile)
        .run()
        .code(1);
    assert!(r.stderr.contains("wrong key"), "{}", r.stderr);
    // The key file does not open the passphrase backup either.
    let r = e.verify(&pfile).code(1);
    assert!(r.stderr.contains("wrong key"), "{}", r.stderr);
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rekey_then_open_with_only_the_new_key() {
    let e = Env::new("bk_rekey", 500);
    let (id, file) = e.create();
    let new = e.dir.path().join("new.key");
    opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&new)
        .run()
        .success();
    let before = std::fs::read(&file).unwrap();
    let r = e
        .cmd()
        .args([
            "backup",
            "rekey",
            &id,
            "--replace",
            "--format",
            "json",
            "--new-key-file",
        ])
        .arg(&new)
        .arg("--dir")
        .arg(e.repo())
        .run()
        .success();
    assert_eq!(r.json()["key_ids"].as_array().unwrap().len(), 1);
    let after = std::fs::read(&file).unwrap();
    // Body unchanged: same bytes after the header.
    let (hb, ha) = (
        opsctl::backup::format::Header::read(&mut &before[..])
            .unwrap()
            .1 as usize,
        opsctl::backup::format::Header::read(&mut &after[..])
            .unwrap()
            .1 as usize,
    );
    assert_eq!(before[hb..], after[ha..]);
    opsctl()
        .env("OPSCTL_KEY_FILE", &new)
        .args(["backup", "verify"])
        .arg(&file)
        .run()
        .success();
    let r = e.verify(&file).code(1);
    assert!(r.stderr.contains("wrong key"), "{}", r.stderr);
}

/// Waits until a temporary file appears in `dbdir` that was not there when called (a
/// stale one of an earlier killed run does not count: its writer is not this run).
fn wait_for_temp(dbdir: &Path) {
    let temps = || -> Vec<std::ffi::OsString> {
        std::fs::read_dir(dbdir)
            .map(|rd| {
                rd.flatten()
                    .map(|f| f.file_name())
                    .filter(|n| n.to_string_lossy().contains(".tmp-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = temps();
    for _ in 0..200 {
        if temps().iter().any(|n| !before.contains(n)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no new temporary file appeared in {}", dbdir.display());
}

fn listed(repo: &Path) -> usize {
    opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(repo)
        .run()
        .success()
        .json()
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn killed_or_terminated_create_leaves_no_backup() {
    let e = Env::new("bk_kill", 200);
    let bin = crate::common::slow_pg_bindir(e.dir.path(), 3);
    let dbdir = e.repo().join(&e.db.name);
    // SIGKILL: at most a hidden temporary file remains, never a listed backup.
    let mut child = e
        .cmd()
        .env("OPSCTL_PG_BINDIR", &bin)
        .args(["backup", "create", "--dir"])
        .arg(e.repo())
        .spawn();
    wait_for_temp(&dbdir);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(listed(&e.repo()), 0);
    let visible: Vec<String> = std::fs::read_dir(&dbdir)
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(visible.is_empty(), "{visible:?}");
    // SIGTERM: the temporary file is removed too.
    let child = e
        .cmd()
        .env("OPSCTL_PG_BINDIR", &bin)
        .args(["backup", "create", "--dir"])
        .arg(e.repo())
        .spawn();
    wait_for_temp(&dbdir);
    std::thread::sleep(std::time::Duration::from_millis(300));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("terminated"));
    assert_eq!(listed(&e.repo()), 0);
    // The next run cleans the stale temporary file of the killed run and succeeds.
    e.create();
    assert_eq!(listed(&e.repo()), 1);
    let hidden = std::fs::read_dir(&dbdir)
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(hidden, 0);
}

#[test]
fn pg_dump_missing_or_too_old_is_a_clear_error() {
    let e = Env::new("bk_nodump", 10);
    let empty = e.dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let r = e
        .cmd()
        .env("OPSCTL_PG_BINDIR", &empty)
        .args(["backup", "create", "--dir"])
        .arg(e.repo())
        .run()
        .code(1);
    assert!(
        r.stderr
            .contains("need pg_dump and pg_restore of PostgreSQL 15 or newer")
            && r.stderr.contains("OPSCTL_PG_BINDIR"),
        "{}",
        r.stderr
    );
    let old = e.dir.path().join("old-bin");
    std::fs::create_dir_all(&old).unwrap();
    for t in ["pg_dump", "pg_restore"] {
        std::fs::write(old.join(t), "#!/bin/sh\necho \"$0 (PostgreSQL) 12.9\"\n").unwrap();
        std::fs::set_permissions(old.join(t), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let r = e
        .cmd()
        .env("OPSCTL_PG_BINDIR", &old)
        .args(["backup", "create", "--dir"])
        .arg(e.repo())
        .run()
        .code(1);
    assert!(
        r.stderr.contains("only older ones") && r.stderr.contains("12.9"),
        "{}",
        r.stderr
    );
    assert!(!e.repo().exists() || listed(&e.repo()) == 0);
}

#[test]
#[cfg(feature = "test-hooks")]
fn drill_fails_naming_the_table_when_restored_data_differs() {
    let e = Env::new("bk_drillfail", 300);
    let (id, _) = e.create();
    let r = e
        .cmd()
        .env(
            "OPSCTL_DRILL_FAULT_SQL",
            "SET session_replication_role = replica; \
             UPDATE trades SET quantity = quantity + 0.00000001 \
             WHERE id = (SELECT min(id) FROM trades)",
        )
        .args(["drill", &id, "--dir"])
        .arg(e.repo())
        .run()
        .code(1);
    assert!(r.stdout.contains("drill FAILED"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("table public.trades_default: content checksum"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("public.users"), "{}", r.stdout);
    // A deleted row is reported as a count difference.
    let r = e
        .cmd()
        .env(
            "OPSCTL_DRILL_FAULT_SQL",
            "SET session_replication_role = replica; DELETE FROM positions WHERE id = 7",
        )
        .args(["drill", &id, "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .code(1);
    let j = r.json();
    assert_eq!(j["ok"], false);
    assert_eq!(
        j["mismatches"][0],
        "table public.positions: 49 rows restored, 50 recorded at backup time"
    );
    assert!(!db_exists(j["scratch_database"].as_str().unwrap()));
    assert_eq!(
        e.db.sql("SELECT count(*) FILTER (WHERE NOT ok) FROM opsctl.backup_drills"),
        "2"
    );
    let l = opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .json();
    assert_eq!(l[0]["status"]["drill_ok"], false);
}

#[test]
fn drill_passes_for_a_backup_taken_while_writers_insert_and_update() {
    let e = Env::new("bk_writers", 2000);
    let bin = crate::common::slow_pg_bindir(e.dir.path(), 1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let name = e.db.name.clone();
    let s2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut n = 0u32;
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            n += 1;
            cluster().psql(
                &name,
                &format!(
                    "INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time) \
                     SELECT 'w{n}-' || g, 1, 'W', 'buy', g, 1, now() FROM generate_series(1, 50) g;
                     UPDATE trades SET exit_price = entry_price + {n} WHERE user_id = 1 + {n} % 50;
                     UPDATE positions SET quantity = quantity + 1;"
                ),
            );
            n += 0;
        }
        n
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = e
        .cmd()
        .env("OPSCTL_PG_BINDIR", &bin)
        .args(["backup", "create", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .success();
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds = writer.join().unwrap();
    assert!(rounds >= 3, "writers ran {rounds} rounds only");
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = e
        .cmd()
        .args(["drill", &id, "--dir"])
        .arg(e.repo())
        .run()
        .success();
    assert!(r.stdout.contains("drill PASSED"), "{}", r.stdout);
}

#[test]
fn restore_refusals_clean_jobs_and_missing_roles() {
    let e = Env::new("bk_restore", 500);
    let role = format!("r_{}", e.db.name);
    e.db.sql(&format!(
        "CREATE ROLE {role}; GRANT SELECT ON users TO {role}; \
         CREATE TABLE owned_by_role (x int); ALTER TABLE owned_by_role OWNER TO {role};"
    ));
    let (id, file) = e.create();
    // The connected database needs --force.
    let r = e
        .cmd()
        .args(["restore", "--target-db", &e.db.name])
        .arg(&file)
        .run()
        .code(1);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    // A missing target needs --create.
    let target = format!("{}_t", e.db.name);
    let r = e
        .cmd()
        .args(["restore", "--target-db", &target])
        .arg(&file)
        .run()
        .code(1);
    assert!(r.stderr.contains("--create"), "{}", r.stderr);
    e.cmd()
        .args(["restore", "--create", "--target-db", &target])
        .arg(&file)
        .run()
        .success();
    // Non-empty target: refused, then --clean replaces.
    let r = e
        .cmd()
        .args(["restore", "--target-db", &target])
        .arg(&file)
        .run()
        .code(1);
    assert!(
        r.stderr.contains("not empty") && r.stderr.contains("--clean"),
        "{}",
        r.stderr
    );
    cluster().psql(&target, "DELETE FROM positions");
    e.cmd()
        .args(["restore", "--clean", "--target-db", &target])
        .arg(&file)
        .run()
        .success();
    assert_eq!(
        cluster().psql(&target, "SELECT count(*) FROM positions"),
        "50"
    );
    // --jobs decrypts to a temporary file and restores in parallel.
    let tj = format!("{}_j", e.db.name);
    let tmp = tempfile::tempdir().unwrap();
    let r = e
        .cmd()
        .env("TMPDIR", tmp.path())
        .args([
            "restore",
            "--jobs",
            "2",
            "--create",
            "--format",
            "json",
            "--target-db",
            &tj,
            &id,
            "--dir",
        ])
        .arg(e.repo())
        .run()
        .success();
    assert_eq!(r.json()["jobs"], 2);
    assert_eq!(content(&tj), content(&e.db.name));
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temp file removed"
    );
    // The role disappears from the cluster: the restore skips ownership and says so.
    for d in [&target, &tj] {
        cluster().psql("postgres", &format!("DROP DATABASE \"{d}\""));
    }
    e.db.sql(&format!("DROP OWNED BY {role}"));
    e.db.sql(&format!("DROP ROLE {role}"));
    let t2 = format!("{}_noroles", e.db.name);
    let r = e
        .cmd()
        .args(["restore", "--create", "--target-db", &t2])
        .arg(&file)
        .run()
        .success();
    assert!(
        r.stderr.contains(&role) && r.stderr.contains("--no-owner --no-privileges"),
        "{}",
        r.stderr
    );
    assert_eq!(cluster().psql(&t2, "SELECT count(*) FROM users"), "50");
}

#[test]
fn prune_keeps_the_newest_verified_backup_and_explains() {
    let e = Env::new("bk_prune", 50);
    let (old, old_file) = e.create();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (new1, _) = e.create();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (new2, _) = e.create();
    e.verify(&old_file).success();
    let policy = e.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[backup.retention]\nkeep_last = 1\ndaily = 0\nweekly = 0\nmonthly = 0\n",
    )
    .unwrap();
    let run = |dry: bool| {
        let mut c = opsctl();
        c.args(["backup", "prune", "--dir"])
            .arg(e.repo())
            .arg("--policy")
            .arg(&policy);
        if dry {
            c.arg("--dry-run");
        }
        c.run().success()
    };
    let r = run(true);
    assert!(
        r.stdout
            .contains(&format!("would delete {}/{new1}", e.db.name)),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("the newest verified backup"),
        "{}",
        r.stdout
    );
    assert_eq!(listed(&e.repo()), 3);
    run(false);
    let ids: Vec<String> = opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![old, new2]);
}

#[test]
fn drill_fails_when_the_sealed_manifest_disagrees() {
    use opsctl::backup::{format, keys};
    use std::io::{Read, Write};
    let e = Env::new("bk_manifest", 100);
    let (_, file) = e.create();
    // Re-seal the same dump with a manifest whose users checksum is off (the container
    // API is reusable for any stream).
    let key = keys::load_key_file(&e.key).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let mut r = format::Reader::open(&bytes[..], &[keys::KeyMaterial::Key(key.clone())]).unwrap();
    let content = r.header.content.clone();
    let mut data = Vec::new();
    r.read_to_end(&mut data).unwrap();
    let trailer = r.finish().unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&trailer).unwrap();
    for t in m["tables"].as_array_mut().unwrap() {
        if t["table"] == "users" {
            t["checksum"] = serde_json::json!("00000000000000000000000000000000");
        }
    }
    let mut w = format::Writer::new(Vec::new(), &[keys::KeyMaterial::Key(key)], &content).unwrap();
    w.write_all(&data).unwrap();
    let (out, _) = w.finish(&serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::write(&file, out).unwrap();
    let r = e.cmd().args(["drill"]).arg(&file).run().code(1);
    assert!(
        r.stdout.contains("table public.users: content checksum"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("public.trades"), "{}", r.stdout);
}

#[test]
fn row_level_security_that_would_hide_rows_fails_the_backup_clearly() {
    let e = Env::new("bk_rls", 100);
    let role = format!("rls_{}", e.db.name);
    e.db.sql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'Rls-pw-123'; \
         GRANT USAGE ON SCHEMA opsctl TO {role}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public, opsctl TO {role}; \
         GRANT SELECT ON ALL SEQUENCES IN SCHEMA public, opsctl TO {role}; \
         GRANT USAGE ON SCHEMA audit, archive TO {role}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA audit, archive TO {role}; \
         GRANT SELECT ON ALL SEQUENCES IN SCHEMA audit, archive TO {role}; \
         ALTER TABLE positions ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY only_some ON positions USING (user_id < 10);"
    ));
    let url = format!(
        "postgresql://{role}:Rls-pw-123@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        cluster().port,
        e.db.name,
        cluster().ca.display()
    );
    let r = opsctl()
        .env("OPSCTL_DATABASE_URL", &url)
        .env("OPSCTL_KEY_FILE", &e.key)
        .args(["backup", "create", "--dir"])
        .arg(e.repo())
        .run()
        .code(1);
    assert!(
        r.stderr.contains("row-level security") && r.stderr.contains("BYPASSRLS"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Rls-pw-123"));
    assert!(!e.repo().exists() || listed(&e.repo()) == 0);
    e.db.sql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

#[test]
fn restore_refuses_an_authentic_backup_whose_dump_hash_disagrees_and_leaves_nothing() {
    // Every tag is valid (re-sealed with the key) but the sealed manifest records another
    // SHA-256: the authentication pass accepts it, the streaming pass must catch it before
    // pg_restore commits, and nothing restored may stay behind.
    use opsctl::backup::{format, keys};
    use std::io::{Read, Write};
    let e = Env::new("bk_hash", 2000);
    let (_, file) = e.create();
    let key = keys::load_key_file(&e.key).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let mut r = format::Reader::open(&bytes[..], &[keys::KeyMaterial::Key(key.clone())]).unwrap();
    let content = r.header.content.clone();
    let mut data = Vec::new();
    r.read_to_end(&mut data).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&r.finish().unwrap()).unwrap();
    m["dump_sha256"] = serde_json::json!("0".repeat(64));
    let mut w = format::Writer::new(Vec::new(), &[keys::KeyMaterial::Key(key)], &content).unwrap();
    w.write_all(&data).unwrap();
    let (out, _) = w.finish(&serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::write(&file, out).unwrap();

    let created = format!("{}_hash_new", e.db.name);
    let r = e
        .cmd()
        .args(["restore", "--create", "--target-db", &created])
        .arg(&file)
        .run()
        .code(1);
    assert!(r.stderr.contains("manifest mismatch"), "{}", r.stderr);
    assert!(r.stderr.contains("SHA-256"), "{}", r.stderr);
    assert!(!db_exists(&created), "the created target must be dropped");

    let existing = format!("{}_hash_old", e.db.name);
    cluster().psql("postgres", &format!("CREATE DATABASE \"{existing}\""));
    let r = e
        .cmd()
        .args(["restore", "--target-db", &existing])
        .arg(&file)
        .run()
        .code(1);
    assert!(r.stderr.contains("manifest mismatch"), "{}", r.stderr);
    assert_eq!(
        cluster().psql(
            &existing,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_%'"
        ),
        "0",
        "pg_restore's transaction must roll back"
    );
    cluster().psql("postgres", &format!("DROP DATABASE \"{existing}\""));
}

/// The key id of a key file, as `backup list` shows it.
fn key_id_of(key: &Path) -> String {
    let k = opsctl::backup::keys::load_key_file(key).unwrap();
    opsctl::backup::keys::key_id_hex(&opsctl::backup::keys::key_id(&k))
}

fn new_key(dir: &Path, name: &str) -> PathBuf {
    let k = dir.join(name);
    opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&k)
        .run()
        .success();
    k
}

fn status_of(file: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(file.with_extension("status.json")).unwrap())
        .unwrap()
}

#[test]
fn a_wrong_key_records_nothing_and_prune_keeps_the_verified_backup() {
    let e = Env::new("bk_wrongkey_status", 50);
    let (old, old_file) = e.create();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (new, new_file) = e.create();
    e.cmd()
        .args(["backup", "verify", &old, "--dir"])
        .arg(e.repo())
        .run()
        .success();
    assert_eq!(status_of(&old_file)["verify_ok"], true);
    let other = new_key(e.dir.path(), "other.key");
    // A typo in the key path: this key does not open the backup; nothing is recorded.
    let r = e
        .cmd()
        .args(["backup", "verify", &old, "--dir"])
        .arg(e.repo())
        .arg("--key-file")
        .arg(&other)
        .run()
        .code(1);
    let expect = format!(
        "this key does not open backup {old} (its key ids: {})",
        key_id_of(&e.key)
    );
    assert!(r.stderr.contains(&expect), "{expect:?} in:\n{}", r.stderr);
    assert!(!r.stderr.contains("BAD"), "{}", r.stderr);
    assert_eq!(status_of(&old_file)["verify_ok"], true);
    assert_eq!(
        e.db.sql(&format!(
            "SELECT verify_ok FROM opsctl.backups WHERE id = '{old}'"
        )),
        "t"
    );
    let list = opsctl()
        .args(["backup", "list", "--dir"])
        .arg(e.repo())
        .run()
        .success();
    let row = list.stdout.lines().find(|l| l.starts_with(&old)).unwrap();
    assert!(row.contains(" ok ") && !row.contains("FAILED"), "{row}");
    let policy = e.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[backup.retention]\nkeep_last = 1\ndaily = 0\nweekly = 0\nmonthly = 0\n",
    )
    .unwrap();
    let r = opsctl()
        .args(["backup", "prune", "--dry-run", "--dir"])
        .arg(e.repo())
        .arg("--policy")
        .arg(&policy)
        .run()
        .success();
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains(&format!("/{old} ")))
        .unwrap();
    assert!(
        line.starts_with("keep") && line.contains("the newest verified backup"),
        "{}",
        r.stdout
    );
    // A verified defect of the file itself still marks it bad.
    let mut bytes = std::fs::read(&new_file).unwrap();
    let at = header_len(&new_file) + 100;
    bytes[at] ^= 0x01;
    std::fs::write(&new_file, &bytes).unwrap();
    let r = e
        .cmd()
        .args(["backup", "verify", &new, "--dir"])
        .arg(e.repo())
        .run()
        .code(1);
    assert!(r.stderr.contains("is BAD"), "{}", r.stderr);
    assert_eq!(status_of(&new_file)["verify_ok"], false);
    assert_eq!(
        e.db.sql(&format!(
            "SELECT verify_ok FROM opsctl.backups WHERE id = '{new}'"
        )),
        "f"
    );
}

#[test]
fn rekey_reencrypt_revokes_the_old_key_even_with_the_old_header_spliced_on() {
    let e = Env::new("bk_reencrypt", 3000);
    let (id, file) = e.create();
    let new = new_key(e.dir.path(), "new.key");
    let before = std::fs::read(&file).unwrap();
    let hb = header_len(&file);
    let splice = |header: &[u8], body: &[u8], name: &str| {
        let p = e.dir.path().join(name);
        let mut b = header.to_vec();
        b.extend_from_slice(body);
        std::fs::write(&p, b).unwrap();
        p
    };

    // Without --reencrypt the body and data key stay: the old header spliced back onto
    // the rekeyed body still opens with the old key. Not a revocation.
    let copy = e.dir.path().join("copy.opsbak");
    std::fs::copy(&file, &copy).unwrap();
    e.cmd()
        .args(["backup", "rekey", "--replace", "--new-key-file"])
        .arg(&new)
        .arg(&copy)
        .run()
        .success();
    let rekeyed = std::fs::read(&copy).unwrap();
    let hr = header_len(&copy);
    let p = splice(&before[..hb], &rekeyed[hr..], "spliced-plain.opsbak");
    e.verify(&p).success();

    // With --reencrypt: a fresh data key and a re-encrypted body.
    let r = e
        .cmd()
        .args([
            "backup",
            "rekey",
            &id,
            "--replace",
            "--reencrypt",
            "--format",
            "json",
            "--new-key-file",
        ])
        .arg(&new)
        .arg("--dir")
        .arg(e.repo())
        .run()
        .success();
    assert_eq!(r.json()["key_ids"], serde_json::json!([key_id_of(&new)]));
    let after = std::fs::read(&file).unwrap();
    let ha = header_len(&file);
    assert_ne!(before[hb..], after[ha..], "the body must be re-encrypted");
    // The new file verifies (summary agrees) with the new key, and is listed with it.
    opsctl()
        .env("OPSCTL_KEY_FILE", &new)
        .args(["backup", "verify"])
        .arg(&file)
        .run()
        .success();
    let list = opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .json();
    assert_eq!(list[0]["key_ids"], serde_json::json!([key_id_of(&new)]));
    assert_eq!(list[0]["file_bytes"].as_u64().unwrap(), after.len() as u64);
    // The old key opens neither the new file nor the new body under the old header.
    let r = e.verify(&file).code(1);
    assert!(r.stderr.contains("does not open"), "{}", r.stderr);
    let p = splice(&before[..hb], &after[ha..], "spliced-new.opsbak");
    let r = e.verify(&p).code(1);
    assert!(r.stderr.contains("failed authentication"), "{}", r.stderr);
    // Nor does the old body under the new header open with the new key.
    let p = splice(&after[..ha], &before[hb..], "spliced-old.opsbak");
    let r = opsctl()
        .env("OPSCTL_KEY_FILE", &new)
        .args(["backup", "verify"])
        .arg(&p)
        .run()
        .code(1);
    assert!(r.stderr.contains("failed authentication"), "{}", r.stderr);

    // A damaged source is refused and left as it was, with no temporary file.
    let bad = e.dir.path().join("bad").join("bad.opsbak");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    let mut b = before.clone();
    b[hb + CHUNK_RECORD + 10] ^= 0x01;
    std::fs::write(&bad, &b).unwrap();
    let other = new_key(e.dir.path(), "other.key");
    let r = e
        .cmd()
        .args([
            "backup",
            "rekey",
            "--replace",
            "--reencrypt",
            "--new-key-file",
        ])
        .arg(&other)
        .arg(&bad)
        .run()
        .code(1);
    assert!(r.stderr.contains("failed authentication"), "{}", r.stderr);
    assert_eq!(std::fs::read(&bad).unwrap(), b);
    assert_eq!(std::fs::read_dir(bad.parent().unwrap()).unwrap().count(), 1);
}

fn temp_files(dbdir: &Path) -> Vec<String> {
    std::fs::read_dir(dbdir)
        .map(|rd| {
            rd.flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prune_removes_temporary_files_of_killed_creates_and_list_counts_them() {
    let e = Env::new("bk_tmp_dead", 200);
    let live_db = TestDb::with_schema("bk_tmp_live");
    seed(&live_db, 200);
    let bin = crate::common::slow_pg_bindir(e.dir.path(), 5);
    let dead_dir = e.repo().join(&e.db.name);
    let live_dir = e.repo().join(&live_db.name);
    e.create();
    // kill -9 of a create leaves its temporary file.
    let mut killed = e
        .cmd()
        .env("OPSCTL_PG_BINDIR", &bin)
        .args(["backup", "create", "--dir"])
        .arg(e.repo())
        .spawn();
    wait_for_temp(&dead_dir);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let dead = temp_files(&dead_dir);
    assert_eq!(dead.len(), 1, "{dead:?}");
    // A create of another database is running meanwhile: its temporary file is live.
    let live = live_db
        .opsctl()
        .env("OPSCTL_KEY_FILE", &e.key)
        .env("OPSCTL_PG_BINDIR", &bin)
        .args(["backup", "create", "--dir"])
        .arg(e.repo())
        .spawn();
    wait_for_temp(&live_dir);
    let writing = temp_files(&live_dir);

    let r = opsctl()
        .args(["backup", "list", "--dir"])
        .arg(e.repo())
        .run()
        .success();
    assert!(
        r.stdout.contains("2 temporary files")
            && r.stdout.contains("1 being written")
            && r.stdout.contains("1 left by a writer that is gone"),
        "{}",
        r.stdout
    );
    let prune = |dry: bool| {
        let mut c = opsctl();
        c.args(["backup", "prune", "--dir"]).arg(e.repo());
        if dry {
            c.arg("--dry-run");
        }
        c.run().success()
    };
    let r = prune(true);
    assert!(
        r.stdout
            .contains(&format!("would remove {}/{}", e.db.name, dead[0])),
        "{}",
        r.stdout
    );
    assert_eq!(temp_files(&dead_dir), dead);
    let r = prune(false);
    assert!(
        r.stdout
            .contains(&format!("removed {}/{}", e.db.name, dead[0])),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(&format!("leave {}/{}", live_db.name, writing[0])),
        "{}",
        r.stdout
    );
    assert!(temp_files(&dead_dir).is_empty());
    // The live writer was left alone and finishes its backup.
    let out = live.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listed(&e.repo()), 2);
    assert!(temp_files(&live_dir).is_empty());
}

#[cfg(feature = "test-hooks")]
#[test]
fn sigterm_after_the_backup_is_in_place_says_it_was_written() {
    let e = Env::new("bk_term_late", 100);
    let child = e
        .cmd()
        .env("OPSCTL_TEST_PAUSE_AT", "backup-written")
        .args(["backup", "create", "--dir"])
        .arg(e.repo())
        .spawn();
    let mut waited = 0;
    while !e.repo().exists() || listed(&e.repo()) == 0 {
        waited += 1;
        assert!(waited < 600, "the backup never appeared");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let list = opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .json();
    let id = list[0]["id"].as_str().unwrap();
    let path = list[0]["path"].as_str().unwrap();
    assert!(!stderr.contains("no backup was written"), "{stderr}");
    assert!(
        stderr.contains(&format!("backup {id} was written to {path}")),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
    e.verify(Path::new(path)).success();
}

#[test]
#[cfg(feature = "test-hooks")]
fn drill_fails_when_a_sequence_was_set_back_or_a_materialized_view_differs() {
    let e = Env::new("bk_seqmv", 200);
    e.db.sql(
        "CREATE MATERIALIZED VIEW position_users AS \
         SELECT user_id, count(*) AS n FROM positions GROUP BY user_id",
    );
    let (id, _) = e.create();
    let drill = |fault: Option<&str>| e.drill(&id, fault);
    let j = drill(None).success().json();
    assert_eq!(j["ok"], true, "{j:#}");
    // A sequence behind its table: the next insert would reuse an id.
    let j = drill(Some("SELECT setval('positions_id_seq', 3)"))
        .code(1)
        .json();
    let m: Vec<String> = j["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("sequence public.positions_id_seq: behind")
            && m[0].contains("last_value 3")
            && m[0].contains("last_value 50"),
        "{m:?}"
    );
    // A materialized view whose rows differ from those counted at backup time.
    let j = drill(Some(
        "DROP MATERIALIZED VIEW position_users; \
         CREATE MATERIALIZED VIEW position_users AS \
         SELECT user_id, count(*) AS n FROM positions WHERE user_id <= 10 GROUP BY user_id",
    ))
    .code(1)
    .json();
    assert_eq!(
        j["mismatches"][0],
        "materialized view public.position_users: 10 rows after the restore, 50 recorded at \
         backup time"
    );
}

#[test]
fn restore_clean_force_replaces_the_connected_database_in_place() {
    let e = Env::new("bk_inplace", 300);
    let (_, file) = e.create();
    let before = content(&e.db.name);
    e.db.sql(
        "DELETE FROM positions; \
         INSERT INTO users (username, email) VALUES ('late', 'late@example.com')",
    );
    let staging_left = || {
        cluster().psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname LIKE '{}%' AND datname <> '{}'",
                e.db.name, e.db.name
            ),
        )
    };
    // Another session on the database: refused before anything is restored.
    let mut other = std::process::Command::new("psql")
        .args(["-X", "-q", "-c", "SELECT pg_sleep(60)", &e.db.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        cluster().psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
                 AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()",
                e.db.name
            ),
        ) == "1"
    });
    assert!(seen, "the other session never showed up");
    let r = e
        .cmd()
        .args(["restore", "--clean", "--force", "--target-db", &e.db.name])
        .arg(&file)
        .run()
        .code(1);
    // The server keeps a sleeping backend after its client is gone: end it too.
    let _ = other.kill();
    let _ = other.wait();
    cluster().psql(
        "postgres",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' \
             AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()",
            e.db.name
        ),
    );
    assert!(
        r.stderr.contains("other session") && r.stderr.contains("pg_stat_activity"),
        "{}",
        r.stderr
    );
    assert_eq!(staging_left(), "0");
    assert_eq!(e.db.sql("SELECT count(*) FROM positions"), "0");
    // Alone on it: the restore swaps the database in place.
    e.cmd()
        .args(["restore", "--clean", "--force", "--target-db", &e.db.name])
        .arg(&file)
        .run()
        .success();
    assert_eq!(content(&e.db.name), before);
    assert_eq!(e.db.sql("SELECT count(*) FROM positions"), "50");
    assert_eq!(e.db.sql("SELECT count(*) FROM users"), "50");
    assert_eq!(staging_left(), "0");
    // The operations log of the database now in place records the restore.
    assert_eq!(
        e.db.sql(
            "SELECT outcome FROM opsctl.operations WHERE command = 'restore' \
             ORDER BY id DESC LIMIT 1"
        ),
        "success"
    );
}

/// The JSON manifest sealed in a backup file, and the plaintext dump.
fn open_sealed(e: &Env, file: &Path) -> (serde_json::Value, Vec<u8>) {
    use opsctl::backup::{format, keys};
    use std::io::Read;
    let key = keys::load_key_file(&e.key).unwrap();
    let bytes = std::fs::read(file).unwrap();
    let mut r = format::Reader::open(&bytes[..], &[keys::KeyMaterial::Key(key)]).unwrap();
    let mut data = Vec::new();
    r.read_to_end(&mut data).unwrap();
    let trailer = r.finish().unwrap();
    (serde_json::from_slice(&trailer).unwrap(), data)
}

/// Re-seals `dump` with manifest `m` into `file` (the container API takes any stream).
fn reseal(e: &Env, file: &Path, dump: &[u8], m: &serde_json::Value) {
    use opsctl::backup::{format, keys};
    use std::io::Write;
    let key = keys::load_key_file(&e.key).unwrap();
    // The same content label (it names the compression of `dump`).
    let bytes = std::fs::read(file).unwrap();
    let content = format::Reader::open(&bytes[..], &[keys::KeyMaterial::Key(key.clone())])
        .unwrap()
        .header
        .content
        .clone();
    let mut w = format::Writer::new(Vec::new(), &[keys::KeyMaterial::Key(key)], &content).unwrap();
    w.write_all(dump).unwrap();
    let (out, _) = w.finish(&serde_json::to_vec(m).unwrap()).unwrap();
    std::fs::write(file, out).unwrap();
}

/// Runs `f` with a library connection to `db` (on a current-thread runtime).
fn with_conn<T>(
    db: &TestDb,
    f: impl for<'a> FnOnce(
        &'a opsctl::db::Connection,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>,
) -> T {
    use opsctl::db::{connect, ConnSettings, ConnSources};
    let settings = ConnSettings::resolve(
        &ConnSources {
            url: Some(db.url.clone()),
            sslmode: None,
            sslrootcert: None,
        },
        |_| None,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = connect(&settings).await.unwrap();
        f(&c).await
    })
}

/// Table statistics as manifest `version` defines them, computed by the library's
/// drill path on `db` (a `COPY … TO STDOUT` per table from version 4 on).
fn table_stats(db: &TestDb, version: u32) -> Vec<opsctl::backup::manifest::TableStat> {
    use opsctl::backup::manifest;
    with_conn(db, move |c| {
        Box::pin(async move {
            c.batch_execute(manifest::STABLE_OUTPUT).await.unwrap();
            manifest::compute(c, version, false).await.unwrap().tables
        })
    })
}

fn seq_scans(db: &TestDb, table: &str) -> i64 {
    db.sql(&format!(
        "SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables WHERE relname = '{table}'"
    ))
    .parse()
    .unwrap()
}

/// Awkward values for COPY text: NULLs, backslashes, tabs, newlines, jsonb, time zones,
/// long numerics, floats, bytea, money, a dropped and a generated column, quoted names;
/// and a database whose own TimeZone and bytea_output differ from the drill's.
fn awkward(db: &TestDb) {
    db.sql(&format!(
        "ALTER DATABASE \"{}\" SET timezone = 'America/New_York'; \
         ALTER DATABASE \"{}\" SET bytea_output = 'escape'",
        db.name, db.name
    ));
    db.sql(
        r#"CREATE TABLE odd (id int PRIMARY KEY, gone int, t text, j jsonb, ts timestamptz,
             n numeric, f float8, r real, b bytea, iv interval, d date, m money,
             g int GENERATED ALWAYS AS (id * 2) STORED);
           ALTER TABLE odd DROP COLUMN gone;
           INSERT INTO odd (id, t, j, ts, n, f, r, b, iv, d, m) VALUES
            (1, E'back\\slash\ttab\nnewline\r\\N', '{"k": "v\\n\t", "n": 1.50, "a": [null]}',
             '2026-03-29 01:30:00.123456+05:30', 12345678901234567890.123456789012345678901,
             0.1, 3.14159, '\x00ff5c0a', '1 year 2 mons -3 days 04:05:06.789', 'infinity',
             12.34),
            (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            (3, '', '"plain"', '-infinity', 'NaN', 'NaN', '-Infinity', '', '0', '0044-03-15 BC',
             -0.01),
            (4, 'ünïcödé ✓', '{}', '1999-12-31 23:59:59.999999-08', -0.000000000000000001,
             1e300, 1.17549435e-38, '\x5c5c', '-178000000 years', '2000-02-29', 0);
           CREATE TABLE empty (id int);
           CREATE SCHEMA "Odd Schema";
           CREATE TABLE "Odd Schema"."Ta""ble" ("a col" text);
           INSERT INTO "Odd Schema"."Ta""ble" SELECT repeat('x\', g) FROM generate_series(1, 300) g;
           SELECT lo_from_bytea(0, '\x0102');"#,
    );
}

#[test]
fn backup_create_reads_each_table_once_and_seals_manifest_v4() {
    let e = Env::new("bk_onescan", 500);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let before = seq_scans(&e.db, "positions");
    let (_, file) = e.create();
    let (m, _) = open_sealed(&e, &file);
    assert_eq!(m["manifest_version"], 4, "{m:#}");
    let positions = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "positions")
        .unwrap();
    assert_eq!(positions["rows"], 50);
    assert!(
        positions["checksum"]
            .as_str()
            .unwrap()
            .starts_with("xxh3sum:"),
        "{positions}"
    );
    // pg_dump's COPY is the only scan (statistics arrive when the sessions end).
    let mut after = before;
    for _ in 0..50 {
        after = seq_scans(&e.db, "positions");
        if after > before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    after = after.max(seq_scans(&e.db, "positions"));
    assert_eq!(
        after - before,
        1,
        "sequential scans of positions during create"
    );
}

#[test]
fn dumpscan_of_a_real_pg_dump_matches_the_drills_copy_in_any_piece_size() {
    use opsctl::backup::{dumpscan::DumpScan, manifest};
    let db = TestDb::new("bk_scanreal");
    awkward(&db);
    let out = std::process::Command::new(cluster().bindir.join("pg_dump"))
        .args(["--format=custom", "--compress=0", "--dbname"])
        .arg(cluster().url(&db.name))
        .env("PGOPTIONS", manifest::DUMP_PGOPTIONS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want: Vec<(String, String, i64, String)> = table_stats(&db, 4)
        .into_iter()
        .map(|t| (t.schema, t.table, t.rows, t.checksum))
        .collect();
    want.sort();
    assert_eq!(want.len(), 3, "{want:?}");
    assert!(want.iter().any(|t| t.1 == "odd" && t.2 == 4), "{want:?}");
    for piece in [1, 3, 4096, 65536, out.stdout.len()] {
        let mut s = DumpScan::new();
        for p in out.stdout.chunks(piece) {
            s.feed(p);
        }
        let mut got: Vec<(String, String, i64, String)> = s
            .finish()
            .unwrap()
            .into_iter()
            .map(|t| (t.schema, t.table, t.rows, t.checksum))
            .collect();
        got.sort();
        assert_eq!(got, want, "piece size {piece}");
    }
}

#[test]
#[cfg(feature = "test-hooks")] // OPSCTL_DRILL_FAULT_SQL
fn drill_passes_for_awkward_values_and_names_the_table_of_one_changed_numeric() {
    let e = Env::new("bk_awkward", 50);
    awkward(&e.db);
    let (id, _) = e.create();
    let drill = |fault: Option<&str>| e.drill(&id, fault);
    let j = drill(None).success().json();
    assert_eq!(j["ok"], true, "{j:#}");
    // The last of 39 digits of one numeric in one row.
    let j = drill(Some(
        "UPDATE odd SET n = n + 0.000000000000000000001 WHERE id = 1",
    ))
    .code(1)
    .json();
    let m = j["mismatches"].as_array().unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].as_str()
            .unwrap()
            .starts_with("table public.odd: content checksum"),
        "{m:?}"
    );
}

#[test]
fn manifests_of_versions_1_2_and_3_still_drill_with_their_own_checksums() {
    let e = Env::new("bk_oldmanifest", 100);
    let (id, file) = e.create();
    let (m4, dump) = open_sealed(&e, &file);
    // What older versions would have recorded: their checksums of the backup's content.
    let target = format!("{}_restored", e.db.name);
    e.cmd()
        .args(["restore", &id, "--create", "--target-db", &target, "--dir"])
        .arg(e.repo())
        .run()
        .success();
    let restored = TestDb {
        url: cluster().url(&target),
        name: target,
    };
    for version in [1u32, 2, 3] {
        let mut m = m4.clone();
        m["manifest_version"] = version.into();
        m["tables"] = serde_json::to_value(table_stats(&restored, version)).unwrap();
        assert!(!m["tables"][0]["checksum"]
            .as_str()
            .unwrap()
            .starts_with("xxh3sum:"));
        if version < 3 {
            m.as_object_mut().unwrap().remove("sequences");
            m.as_object_mut().unwrap().remove("matviews");
        }
        reseal(&e, &file, &dump, &m);
        let j = e
            .cmd()
            .args(["drill", &id, "--format", "json", "--dir"])
            .arg(e.repo())
            .run()
            .success()
            .json();
        assert_eq!(j["ok"], true, "version {version}: {j:#}");
        let j = e
            .cmd()
            .env(
                "OPSCTL_DRILL_FAULT_SQL",
                "SET session_replication_role = replica; \
                 UPDATE positions SET entry_price = 1.6 WHERE id = 7",
            )
            .args(["drill", &id, "--format", "json", "--dir"])
            .arg(e.repo())
            .run()
            .code(1)
            .json();
        assert!(
            j["mismatches"][0]
                .as_str()
                .unwrap()
                .starts_with("table public.positions: content checksum"),
            "version {version}: {j:#}"
        );
    }
}

#[test]
fn a_database_not_in_utf8_gets_a_version_3_manifest_that_drills() {
    let name = format!("t_bk_latin1_{}", std::process::id());
    cluster().psql(
        "postgres",
        &format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' \
             LC_CTYPE 'C'"
        ),
    );
    let db = TestDb {
        url: cluster().url(&name),
        name,
    };
    // ASCII only: restore creates the scratch database in the cluster's default encoding
    // (UTF8), so non-ASCII text in a LATIN1 database hashes differently there (known
    // limitation of the row::text checksums, reported, not fixed here).
    db.sql("CREATE TABLE t (id int, s text); INSERT INTO t VALUES (1, 'cafe\\'), (2, NULL)");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("backup.key");
    opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .run()
        .success();
    let e = Env { db, dir, key };
    let (id, file) = e.create();
    let (m, _) = open_sealed(&e, &file);
    assert_eq!(m["manifest_version"], 3, "{m:#}");
    let j = e
        .cmd()
        .args(["drill", &id, "--format", "json", "--dir"])
        .arg(e.repo())
        .run()
        .success()
        .json();
    assert_eq!(j["ok"], true, "{j:#}");
}
