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
