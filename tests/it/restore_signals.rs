//! Ctrl-C and SIGTERM during `restore` and `drill`, sent as a terminal sends them (SIGINT
//! to the process group) at the test hook's pause points: everything the run did is
//! undone, the exit status is 130/143 with one line saying what was undone, the
//! operations log says so; scratch databases of killed drills are removed by the next
//! drill and reported by `health` until then.
#![cfg(feature = "test-hooks")]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::backup::{db_exists, Env};
use crate::common::{cluster, Opsctl};

/// An opsctl run paused at a test-hook point, in a process group of its own.
struct Paused {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn spawn_paused(cmd: &mut Opsctl, point: &str) -> Paused {
    let mut child = cmd
        .env("OPSCTL_TEST_PAUSE_AT", point)
        .own_process_group()
        .spawn();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut p = Paused {
        child,
        lines: rx,
        seen: Vec::new(),
    };
    let marker = format!("paused at {point}");
    loop {
        match p.lines.recv_timeout(Duration::from_secs(120)) {
            Ok(l) if l.contains(&marker) => return p,
            Ok(l) => p.seen.push(l),
            Err(_) => {
                let _ = p.child.kill();
                let _ = p.child.wait();
                panic!(
                    "opsctl never paused at {point}; stderr: {}",
                    p.seen.join("\n")
                );
            }
        }
    }
}

impl Paused {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What a terminal does on Ctrl-C: SIGINT to the whole foreground process group.
    fn ctrl_c(&self) {
        assert_eq!(unsafe { libc::kill(-self.pid(), libc::SIGINT) }, 0);
    }

    fn signal(&self, sig: i32) {
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits for the exit: (exit code, -1 for death by a signal; stderr after the pause).
    fn finish(mut self) -> (i32, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("opsctl did not exit within 60 s of the signal");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push(l);
        }
        (status.code().unwrap_or(-1), rest.join("\n"))
    }
}

/// The newest operations-log row of `command` run by `pid`: "outcome|error".
fn oplog(e: &Env, command: &str, pid: i32) -> String {
    e.db.sql(&format!(
        "SELECT outcome || '|' || coalesce(error, '') FROM opsctl.operations \
         WHERE (command = '{command}' OR command LIKE '{command} %') AND pid = {pid} \
         ORDER BY id DESC LIMIT 1"
    ))
}

/// Processes whose command line mentions `needle` (e.g. a pg_restore into a database).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for d in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(raw) = std::fs::read(d.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) && cmd.contains("pg_restore") {
                out.push(cmd);
            }
        }
    }
    out
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// The scratch databases of the drill run by `pid`.
fn scratch_of(pid: i32) -> Vec<String> {
    cluster()
        .psql(
            "postgres",
            &format!(
                "SELECT datname FROM pg_database \
                 WHERE datname LIKE 'opsctl\\_drill\\_%\\_{pid}'"
            ),
        )
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn restore_interrupted_at_three_points_undoes_what_it_did() {
    let e = Env::new("sig_restore", 3000);
    let (_, file) = e.create();
    let tmp = tempfile::tempdir().unwrap();

    // 1. --jobs: the plaintext dump is spooled, nothing created yet.
    let t1 = format!("{}_s1", e.db.name);
    let p = spawn_paused(
        e.cmd()
            .env("TMPDIR", tmp.path())
            .args(["restore", "--jobs", "2", "--create", "--target-db", &t1])
            .arg(&file),
        "restore-spooled",
    );
    let spool: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    assert_eq!(spool.len(), 1, "{spool:?}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool[0]), 0o700, "the spool directory is private");
    assert_eq!(mode(&spool[0].join("dump")), 0o600);
    let pid = p.pid();
    p.ctrl_c();
    let (code, err) = p.finish();
    assert_eq!(code, 130, "{err}");
    assert_eq!(
        err.trim(),
        "restore interrupted by SIGINT: removed the temporary plaintext dump"
    );
    assert_eq!(entries(tmp.path()), 0, "the spool is removed");
    assert!(!db_exists(&t1));
    let log = oplog(&e, "restore", pid);
    assert!(
        log.starts_with("failure|restore interrupted by SIGINT"),
        "{log}"
    );

    // 2. Without --jobs: pg_restore is reading the dump into a database this run created.
    let t2 = format!("{}_s2", e.db.name);
    let p = spawn_paused(
        e.cmd()
            .env("TMPDIR", tmp.path())
            .args(["restore", "--create", "--target-db", &t2])
            .arg(&file),
        "restore-streaming",
    );
    assert!(db_exists(&t2));
    assert_eq!(processes_mentioning(&t2).len(), 1, "pg_restore runs");
    p.ctrl_c();
    let (code, err) = p.finish();
    assert_eq!(code, 130, "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "restore interrupted by SIGINT: stopped pg_restore, dropped database {t2}, which \
             this run had created"
        )
    );
    assert!(!db_exists(&t2));
    assert!(processes_mentioning(&t2).is_empty());

    // 3. --clean onto an existing database: restored into the staging copy, not swapped
    // yet. The staging copy goes, the old content stays.
    let t3 = format!("{}_s3", e.db.name);
    e.cmd()
        .args(["restore", "--create", "--target-db", &t3])
        .arg(&file)
        .run()
        .success();
    cluster().psql(&t3, "DELETE FROM positions");
    let p = spawn_paused(
        e.cmd()
            .args(["restore", "--clean", "--target-db", &t3])
            .arg(&file),
        "restore-restored",
    );
    let staging = format!("{t3}_opsctl_new_{}", p.pid());
    assert!(db_exists(&staging));
    p.ctrl_c();
    let (code, err) = p.finish();
    assert_eq!(code, 130, "{err}");
    assert!(
        err.contains(&format!("dropped database {staging}"))
            && err.ends_with(&format!("; {t3} is as it was")),
        "{err}"
    );
    assert!(!db_exists(&staging));
    assert_eq!(cluster().psql(&t3, "SELECT count(*) FROM positions"), "0");
    assert_eq!(entries(tmp.path()), 0);
    cluster().psql("postgres", &format!("DROP DATABASE \"{t3}\""));
}

#[test]
fn sigterm_to_restore_alone_stops_pg_restore_and_drops_the_new_database() {
    // SIGTERM to opsctl only (kill PID, a service manager): pg_restore gets no signal of
    // its own and must not be left to finish into the target.
    let e = Env::new("sig_term", 3000);
    let (_, file) = e.create();
    let t = format!("{}_t", e.db.name);
    let p = spawn_paused(
        e.cmd()
            .args(["restore", "--create", "--target-db", &t])
            .arg(&file),
        "restore-streaming",
    );
    let pid = p.pid();
    p.signal(libc::SIGTERM);
    let (code, err) = p.finish();
    assert_eq!(code, 143, "{err}");
    assert!(
        err.contains("stopped pg_restore") && err.contains(&format!("dropped database {t}")),
        "{err}"
    );
    assert!(processes_mentioning(&t).is_empty());
    assert!(!db_exists(&t));
    assert!(
        oplog(&e, "restore", pid).starts_with("failure|restore interrupted by SIGTERM"),
        "{}",
        oplog(&e, "restore", pid)
    );
}

#[test]
fn drill_interrupted_at_three_points_drops_its_scratch_database() {
    let e = Env::new("sig_drill", 3000);
    let (id, _) = e.create();
    for (point, says) in [
        (
            "restore-streaming",
            "stopped pg_restore, dropped database opsctl_drill_",
        ),
        ("restore-restored", "dropped database opsctl_drill_"),
        (
            "drill-comparing",
            "dropped the scratch database opsctl_drill_",
        ),
    ] {
        let p = spawn_paused(e.cmd().args(["drill", &id, "--dir"]).arg(e.repo()), point);
        let pid = p.pid();
        assert_eq!(scratch_of(pid).len(), 1, "{point}: scratch exists");
        p.ctrl_c();
        let (code, err) = p.finish();
        assert_eq!(code, 130, "{point}: {err}");
        assert!(
            err.starts_with("drill interrupted by SIGINT: ") && err.contains(says),
            "{point}: {err}"
        );
        assert!(scratch_of(pid).is_empty(), "{point}: scratch dropped");
        let log = oplog(&e, "drill", pid);
        assert!(
            log.starts_with("failure|drill interrupted by SIGINT"),
            "{point}: {log}"
        );
    }
    // Nothing was recorded as a drill result.
    assert_eq!(e.db.sql("SELECT count(*) FROM opsctl.backup_drills"), "0");
}

fn health_check(e: &Env) -> serde_json::Value {
    let r = e.cmd().args(["health", "--format", "json"]).run();
    r.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "drill_scratch_databases")
        .unwrap_or_else(|| panic!("no drill_scratch_databases check: {}", r.stdout))
        .clone()
}

#[test]
fn killed_drill_leaves_a_scratch_database_that_health_reports_and_the_next_drill_removes() {
    let e = Env::new("sig_left", 300);
    let (id, _) = e.create();
    // A drill running meanwhile (paused while comparing): its scratch database is in use.
    let busy = spawn_paused(
        e.cmd().args(["drill", &id, "--dir"]).arg(e.repo()),
        "drill-comparing",
    );
    // A drill killed outright (no handler can run): its scratch database stays and its
    // operations-log row stays `running`.
    let mut p = spawn_paused(
        e.cmd().args(["drill", &id, "--dir"]).arg(e.repo()),
        "restore-restored",
    );
    let killed = p.pid();
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let left = scratch_of(killed);
    assert_eq!(left.len(), 1);
    assert!(oplog(&e, "drill", killed).starts_with("running|"));
    // Not ours to remove: a database that only looks like a scratch database.
    let lookalike = "opsctl_drill_by_hand_999999";
    cluster().psql("postgres", &format!("CREATE DATABASE {lookalike}"));

    let c = health_check(&e);
    assert_eq!(c["state"], "WARNING", "{c:#}");
    let value = c["value"].as_str().unwrap();
    assert!(
        value.starts_with("1 left by interrupted drills: ") && value.contains(&left[0]),
        "{c:#}"
    );

    let r = e
        .cmd()
        .args(["drill", &id, "--dir"])
        .arg(e.repo())
        .run()
        .success();
    assert!(
        r.stderr.contains(&format!(
            "dropped 1 scratch database(s) left by earlier interrupted drills: {}",
            left[0]
        )),
        "{}",
        r.stderr
    );
    assert!(scratch_of(killed).is_empty());
    assert_eq!(
        scratch_of(busy.pid()).len(),
        1,
        "a running drill's scratch stays"
    );
    assert!(db_exists(lookalike));
    let log = oplog(&e, "drill", killed);
    assert!(
        log.starts_with("failure|interrupted: process") && log.contains("ended without"),
        "{log}"
    );
    busy.ctrl_c();
    assert_eq!(busy.finish().0, 130);
    let c = health_check(&e);
    assert_eq!(c["state"], "OK", "{c:#}");
    cluster().psql("postgres", &format!("DROP DATABASE {lookalike}"));
}
