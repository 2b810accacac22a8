//! `opsctl policy check`, `opsctl schedule list` and `opsctl schedule run`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::common::{opsctl, TestDb};

fn policy_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("policy.toml");
    std::fs::File::create(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p
}

#[test]
fn policy_check_lists_every_problem_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("backup.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = policy_file(
        &dir,
        &format!(
            "[backup]\nkey_file = \"{}\"\nschedule = \"0 2 * * 8\"\n\n[maintenance]\nvacum_schedule = \"@daily\"\n\n[archive]\nage = \"18 m\"\n",
            key.display()
        ),
    );
    let r = opsctl().args(["policy", "check"]).arg(&p).run().code(1);
    let f = p.display().to_string();
    assert!(
        r.stderr.contains(&format!("{f}:2:1: key file")) && r.stderr.contains("chmod 600"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("{f}:3:1: invalid cron day-of-week field \"8\"")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("{f}:6:1: unknown key `vacum_schedule` in [maintenance] (did you mean `vacuum_schedule`?)")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("{f}:9:1: invalid duration \"18 m\"")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("4 problem(s)"), "{}", r.stderr);
}

#[test]
fn policy_check_prints_the_effective_policy() {
    let dir = tempfile::tempdir().unwrap();
    let p = policy_file(&dir, "[backup.retention]\ndaily = 10\n");
    let r = opsctl().args(["policy", "check"]).arg(&p).run().success();
    assert!(r.stdout.contains("daily = 10"), "{}", r.stdout);
    assert!(
        r.stdout.contains("keep_last = 3"),
        "defaults filled in: {}",
        r.stdout
    );
    // The shipped default and example policies are what they claim to be.
    let root = env!("CARGO_MANIFEST_DIR");
    opsctl()
        .args(["policy", "check", &format!("{root}/policies/opsctl.toml")])
        .run()
        .success();
    let r = opsctl()
        .args([
            "policy",
            "check",
            "--format",
            "json",
            &format!("{root}/policies/examples/production.toml"),
        ])
        .run();
    let j = r.json();
    // Only host paths that do not exist on a test machine may be reported.
    for p in j["problems"].as_array().unwrap() {
        let key = p["key"].as_str().unwrap();
        assert!(
            ["backup.dir", "backup.key_file", "reports.textfile"].contains(&key),
            "{p}"
        );
    }
    // A syntax error is located too.
    let bad = policy_file(&dir, "[backup\n");
    let r = opsctl().args(["policy", "check"]).arg(&bad).run().code(1);
    assert!(r.stderr.contains(":1:"), "{}", r.stderr);
}

#[test]
fn schedule_list_shows_next_fire_times_and_last_runs() {
    let db = TestDb::with_schema("schedlist");
    let dir = tempfile::tempdir().unwrap();
    let p = policy_file(&dir, "[maintenance]\nvacuum_schedule = \"30 3 * * *\"\n[audit]\nseal_schedule = \"*/15 * * * *\"\n");
    db.sql("INSERT INTO opsctl.job_runs (job, started_at, finished_at, outcome) VALUES ('vacuum', now() - interval '1 day', now() - interval '1 day' + interval '5 min', 'success')");
    let j = db
        .opsctl()
        .args(["schedule", "list", "--format", "json", "--policy"])
        .arg(&p)
        .run()
        .success()
        .json();
    let jobs = j["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 10);
    let vac = jobs.iter().find(|x| x["job"] == "vacuum").unwrap();
    assert_eq!(vac["expression"], "30 3 * * *");
    let next = vac["next"].as_array().unwrap();
    assert_eq!(next.len(), 3);
    for t in next {
        assert!(t.as_str().unwrap().contains("T03:30:00"), "{t}");
    }
    assert_eq!(vac["last_run"]["outcome"], "success");
    let backup = jobs.iter().find(|x| x["job"] == "backup").unwrap();
    assert!(backup["expression"].is_null());
    let text = db
        .opsctl()
        .args(["schedule", "list", "--policy"])
        .arg(&p)
        .run()
        .success();
    assert!(text.stdout.contains("audit-seal"), "{}", text.stdout);
    // Text shows times one way; JSON (above) in RFC 3339.
    let vac = text.stdout.lines().find(|l| l.contains("vacuum")).unwrap();
    assert!(vac.contains(" 03:30 UTC"), "{vac}");
    assert!(!vac.contains("T03:30:00"), "{vac}");
    assert!(
        vac.contains("last: success at 20") && vac.ends_with(" UTC"),
        "{vac}"
    );
}

#[test]
fn once_runs_one_job_and_records_it() {
    let db = TestDb::with_schema("once");
    // A job that is not configured fails clearly and is recorded as a failure.
    let r = db
        .opsctl()
        .args(["schedule", "run", "--once", "backup"])
        .run()
        .code(1);
    assert!(r.stderr.contains("backup.dir is not set"), "{}", r.stderr);
    assert_eq!(
        db.sql("SELECT outcome FROM opsctl.job_runs WHERE job = 'backup'"),
        "failure"
    );
    let r = db
        .opsctl()
        .args(["schedule", "run", "--once", "nonsense"])
        .run()
        .code(1);
    assert!(r.stderr.contains("unknown job"), "{}", r.stderr);
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn one_active_scheduler_and_the_standby_takes_over() {
    let db = TestDb::with_schema("leader");
    let dir = tempfile::tempdir().unwrap();
    // A 6-field (seconds) schedule: every 2 seconds. Jobs fail fast (no backup dir) but
    // each run is recorded with the scheduler's pid: that is what this test watches.
    let p = policy_file(
        &dir,
        "[backup]\nschedule = \"*/2 * * * * *\"\n[scheduler]\nretries = 0\nstandby_poll = \"1 second\"\n",
    );
    let mut a = db
        .opsctl()
        .args(["schedule", "run", "--policy"])
        .arg(&p)
        .spawn();
    let pid_a = a.id();
    wait_for(
        "the first scheduler's runs",
        Duration::from_secs(30),
        || {
            db.sql(&format!(
                "SELECT count(*) FROM opsctl.job_runs WHERE pid = {pid_a}"
            )) != "0"
        },
    );
    let mut b = db
        .opsctl()
        .args(["schedule", "run", "--policy"])
        .arg(&p)
        .spawn();
    let pid_b = b.id();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        db.sql(&format!(
            "SELECT count(*) FROM opsctl.job_runs WHERE pid = {pid_b}"
        )),
        "0",
        "the standby ran jobs"
    );
    let _ = a.kill();
    let _ = a.wait();
    wait_for("the standby to take over", Duration::from_secs(30), || {
        db.sql(&format!(
            "SELECT count(*) FROM opsctl.job_runs WHERE pid = {pid_b}"
        )) != "0"
    });
    unsafe {
        libc::kill(pid_b as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = b.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "scheduler did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "SIGTERM exit: {status:?}");
    let out = b.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("standby"), "{stderr}");
    assert_eq!(
        db.sql("SELECT count(*) FROM opsctl.job_runs WHERE outcome = 'running'"),
        "0"
    );
}

fn seed_trades(db: &TestDb) {
    db.sql(
        "INSERT INTO users (username, email) SELECT 'u' || g, 'u' || g || '@example.com' FROM generate_series(1, 20) g;
         INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time)
         SELECT 't' || g, 1 + g % 20, 'BTCUSDT', 'long', 1, 100, now() - g * interval '1 day'
         FROM generate_series(1, 900) g",
    );
}

fn full_policy(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let key = dir.join("backup.key");
    opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .run()
        .success();
    let p = dir.join("policy.toml");
    std::fs::write(
        &p,
        format!(
            "[backup]\ndir = \"{}\"\nkey_file = \"{}\"\n{extra}\n[archive]\nage = \"18 months\"\ntables = [\"trades\"]\n[scheduler]\nretries = 0\nstop_grace = \"20 seconds\"\n",
            dir.join("repo").display(),
            key.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn once_runs_every_kind_of_job() {
    let db = TestDb::with_schema("onceall");
    seed_trades(&db);
    let dir = tempfile::tempdir().unwrap();
    let p = full_policy(dir.path(), "");
    for job in [
        "partitions",
        "backup",
        "prune",
        "drill",
        "vacuum",
        "reindex",
        "archive",
        "size-snapshot",
        "audit-seal",
    ] {
        let r = db
            .opsctl()
            .args(["schedule", "run", "--once", job, "--policy"])
            .arg(&p)
            .run();
        assert_eq!(r.code, 0, "--once {job}:\n{}", r.stderr);
        assert_eq!(
            db.sql(&format!(
                "SELECT outcome FROM opsctl.job_runs WHERE job = '{job}' AND runner = 'once'"
            )),
            "success",
            "{job}"
        );
    }
    // What each job did is there to see.
    let listed = db
        .opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(dir.path().join("repo"))
        .run()
        .success();
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    assert_ne!(
        db.sql("SELECT count(*) FROM archive.trades"),
        "0",
        "archive moved nothing"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM trades WHERE entry_time < date_trunc('day', (now() AT TIME ZONE 'UTC') - interval '18 months')"),
        "0"
    );
    assert_eq!(db.sql("SELECT count(*) FROM opsctl.size_snapshots"), "1");
    assert_ne!(db.sql("SELECT count(*) FROM audit.seals"), "0");
    let j = db
        .opsctl()
        .args(["schedule", "list", "--format", "json", "--policy"])
        .arg(&p)
        .run()
        .success()
        .json();
    let drill = j["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["job"] == "drill")
        .unwrap()
        .clone();
    assert_eq!(drill["last_run"]["outcome"], "success");
}

#[test]
fn sigterm_during_a_job_leaves_no_half_state() {
    let db = TestDb::with_schema("sigterm");
    seed_trades(&db);
    let dir = tempfile::tempdir().unwrap();
    let p = full_policy(dir.path(), "schedule = \"* * * * * *\"");
    // A pg_dump that takes a few seconds, so the signal arrives mid-backup.
    let bin = crate::common::slow_pg_bindir(dir.path(), 4);
    let mut daemon = db
        .opsctl()
        .env("OPSCTL_PG_BINDIR", &bin)
        .args(["schedule", "run", "--policy"])
        .arg(&p)
        .spawn();
    wait_for("a running backup", Duration::from_secs(30), || {
        db.sql("SELECT count(*) FROM opsctl.job_runs WHERE outcome = 'running'") != "0"
    });
    // The job has reached its (slow) dump: its directory is there.
    wait_for("the backup writing", Duration::from_secs(30), || {
        dir.path().join("repo").join(&db.name).exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "scheduler did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(
        db.sql("SELECT string_agg(outcome, ',') FROM opsctl.job_runs"),
        "cancelled"
    );
    // No backup half-written: nothing listed, no temporary file left behind.
    let repo = dir.path().join("repo");
    let listed = db
        .opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(&repo)
        .run()
        .success();
    assert_eq!(listed.json().as_array().unwrap().len(), 0);
    let leftovers: Vec<_> = walk(&repo);
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A policy whose backup job fails (its key file does not exist) and whose size snapshot
/// works.
fn failing_backup_policy(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(
        &p,
        format!(
            "[backup]\ndir = \"{}\"\nkey_file = \"{}\"\n[scheduler]\nretries = 0\n",
            dir.join("repo").display(),
            dir.join("missing.key").display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn history_shows_each_run_with_duration_exit_code_attempt_and_error() {
    let db = TestDb::with_schema("schedhist");
    let dir = tempfile::tempdir().unwrap();
    let p = failing_backup_policy(dir.path());
    db.opsctl()
        .args(["schedule", "run", "--once", "size-snapshot", "--policy"])
        .arg(&p)
        .run()
        .success();
    db.opsctl()
        .args(["schedule", "run", "--once", "backup", "--policy"])
        .arg(&p)
        .run()
        .code(1);
    // A malformed window is a usage error, said before anything runs.
    let r = db
        .opsctl()
        .args(["schedule", "history", "--since", "yesterday"])
        .run()
        .code(2);
    assert!(r.stderr.contains("--since"), "{}", r.stderr);
    // An old run, outside the window.
    db.sql("INSERT INTO opsctl.job_runs (job, started_at, finished_at, outcome) VALUES ('vacuum', now() - interval '3 days', now() - interval '3 days', 'success')");

    let j = db
        .opsctl()
        .args(["schedule", "history", "--since", "1d", "--format", "json"])
        .run()
        .success()
        .json();
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{j}");
    // Newest first: the failed backup.
    let b = &runs[0];
    assert_eq!(b["job"], "backup");
    assert_eq!(b["outcome"], "failure");
    assert_eq!(b["exit_code"], 1);
    assert_eq!(b["attempt"], 1);
    assert!(b["duration_seconds"].as_f64().unwrap() >= 0.0, "{b}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(b["started_at"].as_str().unwrap()).is_ok(),
        "{b}"
    );
    let error = b["error"].as_str().unwrap();
    // The job's own error, not the command line that ran it.
    assert!(error.contains("missing.key"), "{error}");
    assert!(
        !error.starts_with('`') && !error.starts_with("error:"),
        "{error}"
    );
    assert!(b["output"].as_str().unwrap().contains("missing.key"), "{b}");
    let s = &runs[1];
    assert_eq!(s["job"], "size-snapshot");
    assert_eq!(s["outcome"], "success");
    assert_eq!(s["exit_code"], 0);

    // One job, as text.
    let t = db
        .opsctl()
        .args(["schedule", "history", "--job", "backup"])
        .run()
        .success()
        .stdout;
    assert!(t.starts_with("1 run of job backup since "), "{t}");
    assert!(t.contains(" UTC  backup"), "{t}");
    assert!(t.contains("failure"), "{t}");
    assert!(t.contains("attempt 1  exit code 1"), "{t}");
    assert!(t.contains("error: ") && t.contains("missing.key"), "{t}");
    assert!(!t.contains("size-snapshot"), "{t}");
    let t = db
        .opsctl()
        .args(["schedule", "history", "--since", "7d"])
        .run()
        .success()
        .stdout;
    assert!(t.starts_with("3 runs of scheduled jobs"), "{t}");
    db.opsctl()
        .args(["schedule", "history", "--job", "nonsense"])
        .run()
        .code(1);

    // `schedule list` says why the last run failed.
    let t = db
        .opsctl()
        .args(["schedule", "list", "--policy"])
        .arg(&p)
        .run()
        .success()
        .stdout;
    let line = t
        .lines()
        .find(|l| l.trim_start().starts_with("backup"))
        .unwrap();
    assert!(line.contains("last: failure at"), "{line}");
    assert!(
        line.contains("(exit code 1)") && line.contains("missing.key"),
        "{line}"
    );

    // health's hint names a command that exists and the value shows the error.
    let h = db
        .opsctl()
        .args(["health", "--format", "json", "--check", "scheduled_jobs"])
        .run()
        .json();
    let c = h["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "scheduled_jobs")
        .unwrap()
        .clone();
    let value = c["value"].as_str().unwrap();
    assert!(value.contains("missing.key"), "{c}");
    assert!(!value.contains("`opsctl backup create"), "{c}");
    let hint = c["hint"].as_str().unwrap();
    assert!(
        hint.contains("opsctl schedule history --job backup"),
        "{hint}"
    );
    // The command the hint names exists.
    db.opsctl()
        .args(["schedule", "history", "--job", "backup"])
        .run()
        .success();
}
