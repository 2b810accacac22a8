//! Several repositories (two local ones: a plain path and a file:/// URL): `backup
//! create` copies to both and verifies the copy, `backup list` says which repositories
//! hold each backup, restore and drill fall back to the second repository when the first
//! copy is corrupted and say so, a failed copy leaves the backup made and is retried by
//! the next run, `backup copy`, prune applies each repository's retention, health judges
//! each repository's freshness; archive exports to a file:/// repository.

use std::path::{Path, PathBuf};

use crate::backup::Env;
use crate::common::Run;

/// Two repositories: "first" (a plain path) and "second" (a file:/// URL, keeping only
/// the newest backup when `second_keeps_one`).
struct Repos {
    env: Env,
    policy: PathBuf,
}

impl Repos {
    fn new(tag: &str, second: &Path, second_keeps_one: bool) -> Repos {
        let env = Env::new(tag, 300);
        let policy = env.dir.path().join("repos.toml");
        let retention = if second_keeps_one {
            "[repositories.retention]\nkeep_last = 1\ndaily = 0\nweekly = 0\nmonthly = 0\n"
        } else {
            ""
        };
        std::fs::write(
            &policy,
            format!(
                "[[repositories]]\nname = \"first\"\nurl = \"{}\"\n\n[[repositories]]\nname = \
                 \"second\"\nurl = \"file://{}\"\n{retention}",
                env.dir.path().join("first").display(),
                second.display()
            ),
        )
        .unwrap();
        Repos { env, policy }
    }

    fn first(&self) -> PathBuf {
        self.env.dir.path().join("first")
    }

    fn run(&self, args: &[&str]) -> Run {
        self.env
            .cmd()
            .arg("--policy")
            .arg(&self.policy)
            .args(args)
            .run()
    }

    fn create(&self) -> (String, serde_json::Value) {
        let r = self
            .run(&["backup", "create", "--format", "json"])
            .success();
        let j = r.json();
        (j["id"].as_str().unwrap().to_string(), j)
    }

    fn file(&self, root: &Path, id: &str) -> PathBuf {
        root.join(&self.env.db.name).join(format!("{id}.opsbak"))
    }
}

fn ids_in(root: &Path, db: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join(db))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json") && !n.ends_with(".status.json"))
                .map(|n| n.trim_end_matches(".json").to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn corrupt(file: &Path) {
    let mut b = std::fs::read(file).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x20;
    std::fs::write(file, b).unwrap();
}

#[test]
fn copies_are_listed_and_a_corrupted_first_copy_falls_back_to_the_second() {
    let second = tempfile::tempdir().unwrap();
    let r = Repos::new("repos_copy", second.path(), false);
    let db = r.env.db.name.clone();
    let (id, j) = r.create();
    assert_eq!(j["repository"], "first", "{j}");
    assert_eq!(j["copies"][0]["repository"], "second", "{j}");
    assert_eq!(j["copies"][0]["ok"], true, "{j}");
    // Both hold the same bytes.
    let a = std::fs::read(r.file(&r.first(), &id)).unwrap();
    let b = std::fs::read(r.file(second.path(), &id)).unwrap();
    assert_eq!(a, b);

    let list = r
        .run(&["backup", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(
        list[0]["repositories"],
        serde_json::json!(["first", "second"])
    );
    let text = r.run(&["backup", "list"]).success();
    assert!(text.stdout.contains("repositories"), "{}", text.all());
    assert!(text.stdout.contains("first,second"), "{}", text.all());
    // One repository named: the listing as it always was.
    let one = r
        .run(&["backup", "list", "--format", "json", "--repo", "second"])
        .success()
        .json();
    assert_eq!(one[0]["id"], id.as_str());
    assert!(one[0].get("repositories").is_none(), "{one}");

    // The first copy is damaged: restore and drill use the second and say so.
    corrupt(&r.file(&r.first(), &id));
    let target = format!("{db}_from_second");
    let res = r
        .run(&["restore", &id, "--target-db", &target, "--create"])
        .success();
    assert!(
        res.stderr.contains("repository first") && res.stderr.contains("does not verify"),
        "{}",
        res.all()
    );
    assert!(
        res.stdout.contains("read from repository second"),
        "{}",
        res.all()
    );
    assert_eq!(
        r.env.db.sql("SELECT count(*) FROM trades"),
        crate::common::cluster().psql(&target, "SELECT count(*) FROM trades")
    );
    crate::common::cluster().psql("postgres", &format!("DROP DATABASE \"{target}\""));
    let d = r.run(&["drill", &id, "--format", "json"]).success().json();
    assert_eq!(d["ok"], true, "{d}");
    assert_eq!(d["repository"], "second", "{d}");
    // The drill's status went to the copy it used.
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(second.path().join(&db).join(format!("{id}.status.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(st["drill_ok"], true, "{st}");
    // With only the damaged copy there is nothing to fall back to: exit 1, nothing made.
    let bad = r.run(&[
        "restore",
        &id,
        "--target-db",
        "never_made",
        "--create",
        "--repo",
        "first",
    ]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert_eq!(
        crate::common::cluster().psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'never_made'"
        ),
        "0"
    );
}

#[test]
fn a_failed_copy_leaves_the_backup_made_and_the_next_run_retries_it() {
    let tmp = tempfile::tempdir().unwrap();
    // A regular file where the second repository's directory should be: unwritable, even
    // for root.
    let blocker = tmp.path().join("blocked");
    std::fs::write(&blocker, "not a directory").unwrap();
    let second = blocker.join("repo");
    let r = Repos::new("repos_retry", &second, false);
    let db = r.env.db.name.clone();
    let run = r.run(&["backup", "create"]).success();
    assert!(
        run.stderr.contains("copy of backup") && run.stderr.contains("failed"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("next `opsctl backup create` retries"),
        "{}",
        run.all()
    );
    let first_id = ids_in(&r.first(), &db);
    assert_eq!(first_id.len(), 1, "the backup is made");
    let text = r.run(&["backup", "list"]).success();
    assert!(text.stdout.contains("(not in second)"), "{}", text.all());

    // The repository becomes writable: the next run copies both backups.
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (id2, j) = r.create();
    let copied: Vec<&str> = j["copies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == true)
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(copied.len(), 2, "{j}");
    assert!(copied.contains(&first_id[0].as_str()) && copied.contains(&id2.as_str()));
    assert_eq!(ids_in(&second, &db), ids_in(&r.first(), &db));

    // `backup copy` to a third repository given by URL, read back; twice is a no-op.
    let third = tempfile::tempdir().unwrap();
    let url = format!("file://{}", third.path().display());
    let c = r.run(&["backup", "copy", &id2, "--to", &url]).success();
    assert!(c.stdout.contains("read back"), "{}", c.all());
    assert_eq!(ids_in(third.path(), &db), vec![id2.clone()]);
    let again = r.run(&["backup", "copy", &id2, "--to", &url]).success();
    assert!(again.stdout.contains("already holds"), "{}", again.all());
    r.env
        .cmd()
        .args(["backup", "verify", &id2, "--repo", &url])
        .run()
        .success();
    let none = r.run(&["backup", "copy", "20200101T000000Z-0000", "--to", &url]);
    assert_eq!(none.code, 1, "{}", none.all());
}

#[test]
fn prune_applies_each_repositorys_retention_and_health_judges_each_repository() {
    let second = tempfile::tempdir().unwrap();
    let r = Repos::new("repos_prune", second.path(), true);
    let db = r.env.db.name.clone();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(r.create().0);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let p = r.run(&["backup", "prune"]).success();
    assert!(p.stdout.contains("repository first"), "{}", p.all());
    assert!(p.stdout.contains("repository second"), "{}", p.all());
    assert!(
        p.stdout.contains(&format!("delete {db}/{}", ids[0])),
        "{}",
        p.all()
    );
    // The first keeps all three (default retention: today's newest plus the newest 3… all
    // within keep_last), the second only the newest.
    assert_eq!(ids_in(&r.first(), &db).len(), 3, "{}", p.all());
    assert_eq!(
        ids_in(second.path(), &db),
        vec![ids[2].clone()],
        "{}",
        p.all()
    );

    // Health: both fresh; then the second's newest copy is three days old → a WARNING of
    // its own.
    let health = |r: &Repos| {
        r.run(&[
            "health",
            "--format",
            "json",
            "--check",
            "repository_freshness",
        ])
        .json()
    };
    let h = health(&r);
    let checks = h["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "{h}");
    assert!(checks.iter().all(|c| c["state"] == "OK"), "{h}");
    let summary = second.path().join(&db).join(format!("{}.json", ids[2]));
    let mut s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let old = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    s["finished_at"] = old.clone().into();
    s["started_at"] = old.into();
    std::fs::write(&summary, serde_json::to_vec(&s).unwrap()).unwrap();
    let h = health(&r);
    let checks = h["checks"].as_array().unwrap();
    let second_check = checks
        .iter()
        .find(|c| c["value"].as_str().unwrap().contains("repository second"))
        .unwrap();
    assert_eq!(second_check["state"], "WARNING", "{h}");
    assert!(
        second_check["value"].as_str().unwrap().contains("behind"),
        "{h}"
    );
    let first_check = checks
        .iter()
        .find(|c| c["value"].as_str().unwrap().contains("repository first"))
        .unwrap();
    assert_eq!(first_check["state"], "OK", "{h}");
}

/// Trades every hour of January and February 2025 (and a day of March), months made.
#[cfg(feature = "test-hooks")]
fn archive_db(tag: &str) -> crate::common::TestDb {
    let db = crate::common::TestDb::with_schema(tag);
    db.sql(
        "INSERT INTO users (username, email) VALUES ('ann', 'ann@example.com');
         INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, exit_price, entry_time)
         SELECT 't' || g, 1, 'BTC', 'buy', 1, 100 + g, 101 + g,
                timestamp '2025-01-01' + g * interval '1 hour'
           FROM generate_series(0, 1439) g",
    );
    db.opsctl().args(["partition", "ensure"]).run().success();
    db
}

#[cfg(feature = "test-hooks")]
#[test]
fn archive_exports_go_to_a_file_url_repository_verified_by_reading_back() {
    let db = archive_db("repos_archive");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    crate::common::opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .run()
        .success();
    let repo = dir.path().join("exports");
    let url = format!("file://{}", repo.display());
    let archive = |extra: &[&str], corrupt: bool| {
        let mut c = db.opsctl();
        c.env("OPSCTL_KEY_FILE", &key).args([
            "archive",
            "--before",
            "2025-03-01",
            "--format",
            "json",
            "--export-dir",
            &url,
        ]);
        if corrupt {
            c.env("OPSCTL_TEST_CORRUPT_EXPORT", "1");
        }
        c.args(extra).run()
    };
    let jan = db.sql("SELECT count(*) FROM trades WHERE entry_time < '2025-02-01'");
    // A month whose object does not read back is neither recorded nor dropped, and its
    // object is not left in the repository.
    let bad = archive(&["--drop-after-export"], true);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(bad.all().contains("did not verify"), "{}", bad.all());
    assert_eq!(
        db.sql("SELECT to_regclass('archive.trades_p2025_01') IS NOT NULL"),
        "t"
    );
    let left: Vec<_> = std::fs::read_dir(&repo)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    let run = archive(&["--drop-after-export"], false).success();
    let j = run.json();
    let months = j["export"]["months"].as_array().unwrap();
    assert_eq!(months.len(), 2, "{}", run.all());
    assert!(months
        .iter()
        .all(|m| m["verified"] == true && m["dropped"] == true));
    let file = repo.join("public.trades_p2025_01.opsarc");
    assert!(file.is_file());
    assert_eq!(
        db.sql("SELECT to_regclass('archive.trades_p2025_01') IS NOT NULL"),
        "f"
    );
    // Back from the repository by name.
    let back = db
        .opsctl()
        .env("OPSCTL_KEY_FILE", &key)
        .args([
            "archive",
            "restore",
            "public.trades_p2025_01.opsarc",
            "--repo",
            &url,
        ])
        .run()
        .success();
    assert!(back.stdout.contains("(verified)"), "{}", back.all());
    assert_eq!(db.sql("SELECT count(*) FROM archive.trades_p2025_01"), jan);
}

/// A local repository and an S3 one (the loopback s3s-fs server): the copy goes to S3,
/// is listed there, verifies from there, and a restore falls back to it (the object
/// spooled once to a private file) when the local copy is damaged.
#[cfg(feature = "test-hooks")]
#[test]
fn a_local_and_an_s3_repository_copy_list_verify_and_fall_back() {
    let server = crate::common::s3::S3Server::start();
    let env = Env::new("repos_s3", 200);
    let policy = env.dir.path().join("s3.toml");
    let local = env.dir.path().join("onsite");
    std::fs::write(
        &policy,
        format!(
            "[[repositories]]\nname = \"onsite\"\nurl = \"{}\"\n\n{}",
            local.display(),
            server.policy_entry("offsite", "opsctl/prod")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        c.arg("--policy").arg(&policy);
        for (k, v) in server.env() {
            c.env(k, v);
        }
        c.args(args).run()
    };
    let created = run(&["backup", "create", "--format", "json"]).success();
    let j = created.json();
    let id = j["id"].as_str().unwrap().to_string();
    assert_eq!(j["copies"][0]["repository"], "offsite", "{j}");
    assert_eq!(j["copies"][0]["ok"], true, "{j}");
    let list = run(&["backup", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(
        list[0]["repositories"],
        serde_json::json!(["onsite", "offsite"])
    );
    run(&["backup", "verify", &id, "--repo", "offsite"]).success();
    // The local copy is damaged: the restore reads the S3 copy and says so.
    let mut b = std::fs::read(local.join(&env.db.name).join(format!("{id}.opsbak"))).unwrap();
    let at = b.len() / 2;
    b[at] ^= 1;
    std::fs::write(local.join(&env.db.name).join(format!("{id}.opsbak")), b).unwrap();
    let target = format!("{}_from_s3", env.db.name);
    let r = run(&["restore", &id, "--target-db", &target, "--create"]).success();
    assert!(
        r.stdout.contains("read from repository offsite"),
        "{}",
        r.all()
    );
    assert_eq!(
        env.db.sql("SELECT count(*) FROM trades"),
        crate::common::cluster().psql(&target, "SELECT count(*) FROM trades")
    );
    crate::common::cluster().psql("postgres", &format!("DROP DATABASE \"{target}\""));
}

/// On an S3 repository (the loopback s3s-fs server): archive exports with
/// --drop-after-export, read back from S3 before each month is dropped, and `archive
/// restore` by name from there; a backup there rekeyed to a new key opens with it.
#[cfg(feature = "test-hooks")]
#[test]
fn archive_export_drop_restore_and_rekey_on_an_s3_repository() {
    let server = crate::common::s3::S3Server::start();
    let db = archive_db("repos_s3_archive");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let new_key = dir.path().join("k2");
    for k in [&key, &new_key] {
        crate::common::opsctl()
            .args(["backup", "keygen", "--out"])
            .arg(k)
            .run()
            .success();
    }
    let policy = dir.path().join("s3.toml");
    std::fs::write(&policy, server.policy_entry("offsite", "exports")).unwrap();
    let run = |args: &[&str]| {
        let mut c = db.opsctl();
        c.env("OPSCTL_KEY_FILE", &key).arg("--policy").arg(&policy);
        for (k, v) in server.env() {
            c.env(k, v);
        }
        c.args(args).run()
    };
    let url = "s3://bucket/exports";
    let jan = db.sql("SELECT count(*) FROM trades WHERE entry_time < '2025-02-01'");
    let j = run(&[
        "archive",
        "--before",
        "2025-03-01",
        "--format",
        "json",
        "--export-dir",
        url,
        "--drop-after-export",
    ])
    .success()
    .json();
    let months = j["export"]["months"].as_array().unwrap();
    assert_eq!(months.len(), 2, "{j}");
    assert!(months
        .iter()
        .all(|m| m["verified"] == true && m["dropped"] == true));
    assert!(server
        .root
        .path()
        .join("bucket/exports/public.trades_p2025_01.opsarc")
        .is_file());
    assert!(server.incomplete_uploads().is_empty());
    assert_eq!(
        db.sql("SELECT to_regclass('archive.trades_p2025_01') IS NOT NULL"),
        "f"
    );
    let back = run(&[
        "archive",
        "restore",
        "public.trades_p2025_01.opsarc",
        "--repo",
        url,
    ])
    .success();
    assert!(back.stdout.contains("(verified)"), "{}", back.all());
    assert_eq!(db.sql("SELECT count(*) FROM archive.trades_p2025_01"), jan);

    // A backup on S3, rekeyed: the new key alone opens it.
    let backups = "s3://bucket/backups";
    let id = run(&["backup", "create", "--format", "json", "--repo", backups])
        .success()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let new_key_arg = new_key.display().to_string();
    run(&[
        "backup",
        "rekey",
        &id,
        "--repo",
        backups,
        "--new-key-file",
        &new_key_arg,
        "--replace",
    ])
    .success();
    let mut c = db.opsctl();
    c.env("OPSCTL_KEY_FILE", &new_key)
        .arg("--policy")
        .arg(&policy);
    for (k, v) in server.env() {
        c.env(k, v);
    }
    c.args(["backup", "verify", &id, "--repo", backups])
        .run()
        .success();
    let old = run(&["backup", "verify", &id, "--repo", backups]);
    assert_ne!(
        old.code,
        0,
        "the replaced key must not open it: {}",
        old.all()
    );
}
