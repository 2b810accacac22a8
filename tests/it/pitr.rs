//! Point-in-time recovery: base backups, restore --pitr to a time, an LSN, a restore point
//! and the end of the archive, the refusals (non-empty or used directory, target outside
//! the window, tampered base backup), prune keeping the WAL kept base backups need, and
//! PITR drills. Each test runs a private cluster with archive_mode=on whose
//! archive_command is this build's `opsctl wal push`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{self, opsctl, Opsctl, PASSWORD};

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A private archiving cluster: TLS, a replication line in pg_hba, archive_command =
/// `opsctl wal push`, a repository and key the `postgres` user can read.
pub struct Archiving {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub ca: PathBuf,
    pub repo: PathBuf,
    #[allow(dead_code)]
    pub key: PathBuf,
    pub policy: PathBuf,
    bindir: PathBuf,
    /// Data directories of servers started by restores, stopped on drop.
    restored: std::cell::RefCell<Vec<PathBuf>>,
}

fn chown_postgres(p: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Archiving {
    pub fn start(tag: &str, extra_conf: &str) -> Archiving {
        let bindir = common::bindir();
        let common::ClusterDir {
            dir,
            data,
            sock,
            ca,
            server,
            ..
        } = common::cluster_dir(&format!("opsctl-pitr-{tag}-"));
        let repo = dir.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let key = dir.join("key");
        opsctl()
            .args(["backup", "keygen", "--out"])
            .arg(&key)
            .run()
            .success();
        let policy = dir.join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "[backup]\ndir = \"{}\"\nkey_file = \"{}\"\n\n[basebackup]\nkeep_last = 1\narchive_wait = \"60s\"\n",
                repo.display(),
                key.display()
            ),
        )
        .unwrap();
        chown_postgres(&dir);
        let port = common::free_port();
        let a = Archiving {
            dir: dir.clone(),
            data: data.clone(),
            port,
            ca: ca.0.clone(),
            repo,
            key,
            policy: policy.clone(),
            bindir: bindir.clone(),
            restored: Default::default(),
        };
        a.pg(
            &["initdb", "-D"],
            &[&data],
            &[
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                &format!("--pwfile={}", dir.join("pwfile").display()),
            ],
        );
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{sock}'\n\
             ssl = on\nssl_cert_file = '{crt}'\nssl_key_file = '{key}'\nfsync = off\n\
             timezone = 'UTC'\nwal_level = replica\narchive_mode = on\n\
             archive_command = '\"{opsctl}\" wal push %p --policy \"{policy}\"'\n\
             max_wal_senders = 4\nlog_min_messages = warning\n{extra_conf}\n",
            sock = sock.display(),
            crt = server.0.display(),
            key = server.1.display(),
            opsctl = env!("CARGO_BIN_EXE_opsctl"),
            policy = policy.display(),
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl replication all 127.0.0.1/32 scram-sha-256\n\
             hostnossl all all all reject\n",
        )
        .unwrap();
        chown_postgres(&data);
        a.pg_ctl(
            &data,
            &["-l"],
            Some(&dir.join("server.log")),
            &["-w", "-t", "60", "start"],
        );
        a
    }

    fn pg(&self, prog_and_flag: &[&str], paths: &[&Path], rest: &[&str]) {
        let prog = self.bindir.join(prog_and_flag[0]);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(prog);
            c
        } else {
            Command::new(prog)
        };
        c.args(&prog_and_flag[1..]).args(paths).args(rest);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{prog_and_flag:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, data: &Path, pre: &[&str], log: Option<&Path>, post: &[&str]) {
        let pg_ctl = self.bindir.join("pg_ctl");
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        c.arg("-D").arg(data).args(pre);
        if let Some(l) = log {
            c.arg(l);
        }
        let out = c.args(post).output().unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {post:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the source server (`immediate` for a crash).
    pub fn stop(&self, mode: &str) {
        self.pg_ctl(&self.data, &["-m", mode], None, &["-w", "stop"]);
    }

    pub fn url_port(&self, port: u16, db: &str) -> String {
        format!(
            "postgresql://postgres:{}@localhost:{port}/{db}?sslmode=verify-full&sslrootcert={}",
            PASSWORD.replace('!', "%21"),
            self.ca.display()
        )
    }

    pub fn url(&self) -> String {
        self.url_port(self.port, "postgres")
    }

    pub fn psql_port(&self, port: u16, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGHOST", "localhost")
            .env("PGPORT", port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", PASSWORD)
            .env("PGDATABASE", "postgres")
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &self.ca)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_port(self.port, sql)
    }

    /// opsctl with this cluster's connection, policy and key.
    pub fn opsctl(&self) -> Opsctl {
        let mut o = opsctl();
        o.env("OPSCTL_DATABASE_URL", self.url())
            .env("OPSCTL_POLICY", &self.policy);
        o
    }

    /// Switches WAL and waits until the archiver has caught up with it.
    pub fn switch_and_wait(&self) {
        let seg = self.psql("SELECT pg_walfile_name(pg_switch_wal())");
        let t0 = Instant::now();
        loop {
            let last = self.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
            if last.as_str() >= seg.as_str() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "segment {seg} not archived (last {last}); server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A fresh data directory path for a restore (under the cluster directory, which the
    /// postgres user can reach).
    pub fn pgdata(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        self.restored.borrow_mut().push(p.clone());
        p
    }

    pub fn restore(&self, pgdata: &Path, port: u16, target: &[&str]) -> Opsctl {
        let mut o = self.opsctl();
        o.args(["restore", "--pitr", "--pgdata"])
            .arg(pgdata)
            .args(["--port", &port.to_string()])
            .args(target);
        o
    }
}

impl Drop for Archiving {
    fn drop(&mut self) {
        for d in self.restored.borrow().iter() {
            if d.join("postmaster.pid").exists() {
                let _ = Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(self.bindir.join("pg_ctl"))
                    .arg("-D")
                    .arg(d)
                    .args(["-m", "immediate", "-w", "stop"])
                    .output();
            }
        }
        if self.data.join("postmaster.pid").exists() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        if !std::thread::panicking() || std::env::var_os("OPSCTL_KEEP_TEST_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn marks(a: &Archiving, port: u16) -> String {
    a.psql_port(port, "SELECT string_agg(note, ',' ORDER BY id) FROM marks")
}

#[test]
fn restore_to_a_time_a_restore_point_and_the_end_of_the_archive() {
    let a = Archiving::start("main", "");
    a.psql("CREATE TABLE marks (id int PRIMARY KEY, note text)");
    a.psql("INSERT INTO marks VALUES (0, 'before-backup')");
    // A cluster that was itself restored with --start keeps opsctl-recovery.log in its data
    // directory, so its base backups carry it: a restore must not take those old lines for
    // its own recovery having finished.
    std::fs::write(
        a.data.join("opsctl-recovery.log"),
        "LOG:  redo done at 0/DEADBEE system usage: CPU: user: 0.00 s\n\
         LOG:  last completed transaction was at log time 2000-01-01 00:00:00+00\n\
         LOG:  archive recovery complete\n\
         LOG:  database system is ready to accept connections\n",
    )
    .unwrap();
    let r = a
        .opsctl()
        .args(["basebackup", "--format", "json"])
        .run()
        .success();
    let b = r.json();
    assert_eq!(b["kind"], "base");
    assert!(b["files"].as_u64().unwrap() > 100, "{}", r.stdout);
    let backup_id = b["id"].as_str().unwrap().to_string();

    // Nothing to recover to before the base backup ended.
    let early = a.pgdata("early");
    let r = a
        .restore(
            &early,
            common::free_port(),
            &["--to-time", "2000-01-01T00:00:00Z"],
        )
        .run()
        .code(1);
    assert!(
        r.stderr.contains("before the oldest base backup"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("recovery window"), "{}", r.stderr);
    assert!(
        !early.exists(),
        "nothing may be written for a refused target"
    );

    std::thread::sleep(Duration::from_millis(300));
    a.psql("INSERT INTO marks VALUES (1, 'first')");
    std::thread::sleep(Duration::from_millis(300));
    let between = a.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(300));
    a.psql("INSERT INTO marks VALUES (2, 'second')");
    a.opsctl()
        .args(["restore-point", "after-second"])
        .run()
        .success();
    a.psql("INSERT INTO marks VALUES (3, 'third')");
    a.switch_and_wait();

    // A time after the newest archived WAL is refused, naming the window.
    let future = a.pgdata("future");
    let r = a
        .restore(
            &future,
            common::free_port(),
            &["--to-time", "2999-01-01T00:00:00Z"],
        )
        .run()
        .code(1);
    assert!(
        r.stderr.contains("after the newest archived WAL"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&backup_id), "{}", r.stderr);
    assert!(!future.exists());

    // To the time between the two inserts: the first row is there, the second is not.
    let t_dir = a.pgdata("to-time");
    let t_port = common::free_port();
    let r = a
        .restore(
            &t_dir,
            t_port,
            &["--to-time", &between, "--target-action", "pause", "--start"],
        )
        .run()
        .success();
    assert!(r.stdout.contains("recovery paused"), "{}", r.stdout);
    assert_eq!(marks(&a, t_port), "before-backup,first");
    let auto = std::fs::read_to_string(t_dir.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("wal fetch %f %p --policy"), "{auto}");
    assert!(t_dir.join("recovery.signal").exists());

    // A directory a running server uses, and a non-empty one, are refused.
    let r = a
        .restore(&t_dir, common::free_port(), &["--latest"])
        .run()
        .code(1);
    assert!(r.stderr.contains("postmaster.pid"), "{}", r.stderr);
    let full = a.pgdata("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    let r = a
        .restore(&full, common::free_port(), &["--latest"])
        .run()
        .code(1);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(full.join("keep.txt")).unwrap(),
        "mine"
    );

    // To the restore point: the second row is there, the third is not.
    let n_dir = a.pgdata("to-name");
    let n_port = common::free_port();
    a.restore(
        &n_dir,
        n_port,
        &[
            "--to-name",
            "after-second",
            "--target-action",
            "pause",
            "--start",
        ],
    )
    .run()
    .success();
    assert_eq!(marks(&a, n_port), "before-backup,first,second");

    // --latest after the source crashed and its data directory is gone.
    a.psql("INSERT INTO marks VALUES (4, 'fourth')");
    a.switch_and_wait();
    a.stop("immediate");
    std::fs::remove_dir_all(&a.data).unwrap();
    let l_dir = a.pgdata("latest");
    let l_port = common::free_port();
    let r = a
        .restore(
            &l_dir,
            l_port,
            &[
                "--latest", "--start", "--backup", &backup_id, "--format", "json",
            ],
        )
        .run()
        .success();
    let j = r.json();
    assert_eq!(j["reached"]["state"], "promoted", "{}", r.stdout);
    assert_ne!(j["reached"]["lsn"], "0/DEADBEE", "{}", r.stdout);
    assert_eq!(marks(&a, l_port), "before-backup,first,second,third,fourth");
    assert_eq!(a.psql_port(l_port, "SELECT pg_is_in_recovery()"), "f");
}

#[test]
fn a_tampered_base_backup_is_refused_before_anything_is_written() {
    let a = Archiving::start("tamper", "");
    a.psql("CREATE TABLE marks (id int PRIMARY KEY, note text)");
    a.opsctl().args(["basebackup"]).run().success();
    a.switch_and_wait();
    let tar = walk(&a.repo)
        .into_iter()
        .find(|p| p.ends_with("base.tar.opsbak"))
        .expect("a base backup tar in the repository");
    let mut bytes = std::fs::read(&tar).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&tar, &bytes).unwrap();
    let dir = a.pgdata("tampered");
    let r = a
        .restore(&dir, common::free_port(), &["--latest"])
        .run()
        .code(1);
    assert!(
        r.stderr.to_lowercase().contains("authentic"),
        "{}",
        r.stderr
    );
    assert!(
        !dir.exists(),
        "nothing may be written from a tampered backup"
    );
}

#[test]
fn basebackup_refuses_a_server_that_does_not_archive() {
    let a = Archiving::start("noarch", "archive_mode = off\n");
    // archive_mode = off set after the default line: the last one wins.
    let r = a.opsctl().args(["basebackup"]).run().code(1);
    assert!(r.stderr.contains("archiving is off"), "{}", r.stderr);
    assert!(walk(&a.repo).is_empty(), "nothing may be kept");
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn segments(repo: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(&repo.join("wal"))
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    v.sort();
    v
}

fn drill_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("opsctl-pitr-drill-")
        })
        .collect()
}

#[test]
fn prune_keeps_the_wal_kept_base_backups_need_and_drills_prove_it() {
    let a = Archiving::start("prune", "");
    a.psql("CREATE TABLE marks (id int PRIMARY KEY, note text)");
    a.psql("INSERT INTO marks SELECT g, 'row ' || g FROM generate_series(1, 500) g");
    let first = a
        .opsctl()
        .args(["basebackup", "--format", "json"])
        .run()
        .success()
        .json();
    a.psql("INSERT INTO marks VALUES (1000, 'between backups')");
    a.switch_and_wait();
    let second = a
        .opsctl()
        .args(["basebackup", "--format", "json"])
        .run()
        .success()
        .json();
    a.switch_and_wait();
    let second_start = second["start_wal"].as_str().unwrap().to_string();
    let before = segments(&a.repo);
    assert!(before.iter().any(|s| *s < second_start), "{before:?}");

    // backup list shows both, marked as base backups, with their windows.
    let list = a.opsctl().args(["backup", "list"]).run().success();
    assert!(list.stdout.contains("base backups"), "{}", list.stdout);
    assert!(list.stdout.contains(first["id"].as_str().unwrap()));

    // keep_last = 1: the first goes, with the WAL only it needed; the second's stays.
    let r = a
        .opsctl()
        .args(["backup", "prune", "--format", "json"])
        .run()
        .success();
    let j = r.json();
    let decisions = j["base_backups"]["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2, "{}", r.stdout);
    assert_eq!(decisions[0]["id"], first["id"]);
    assert_eq!(decisions[0]["keep"], false);
    assert_eq!(decisions[1]["keep"], true);
    let after = segments(&a.repo);
    assert!(after.iter().all(|s| *s >= second_start), "{after:?}");
    assert!(after.contains(&second_start), "{after:?}");
    let listed = a
        .opsctl()
        .args(["backup", "list", "--format", "json"])
        .run()
        .success()
        .json();
    let bases: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "base")
        .collect();
    assert_eq!(bases.len(), 1);
    assert_eq!(bases[0]["id"], second["id"]);

    // backup verify works on a base backup.
    let v = a
        .opsctl()
        .args(["backup", "verify", second["id"].as_str().unwrap()])
        .run()
        .success();
    assert!(v.stdout.contains("is good"), "{}", v.stdout);

    // The kept base backup still recovers: a PITR drill matches every table.
    a.psql("INSERT INTO marks VALUES (2000, 'after the second backup')");
    let dirs_before = drill_dirs();
    let d = a
        .opsctl()
        .args(["drill", "--pitr", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(d["ok"], true, "{d}");
    assert_eq!(d["rows"], 502);
    assert!(d["rto_secs"].as_f64().unwrap() > 0.0);
    let listed = a.opsctl().args(["backup", "list"]).run().success();
    assert!(listed.stdout.contains("ok, rto"), "{}", listed.stdout);

    // A segment missing in the middle of the archive: the drill fails, says why, cleans up.
    let stop = second["stop_wal"].as_str().unwrap().to_string();
    for p in walk(&a.repo.join("wal")) {
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if n.len() == 24 && n.as_str() > stop.as_str() {
            std::fs::remove_file(&p).unwrap();
        }
    }
    a.psql("INSERT INTO marks VALUES (3000, 'after the gap')");
    let r = a.opsctl().args(["drill", "--pitr"]).run().code(1);
    assert!(r.stderr.contains("PITR drill failed"), "{}", r.stderr);
    assert!(r.stderr.contains("recovery"), "{}", r.stderr);
    assert_eq!(
        drill_dirs(),
        dirs_before,
        "the scratch directory must be removed"
    );
    // The drill's restore point lies beyond the gap: restore refuses a target there up
    // front, naming the window, instead of recovering to the gap and stopping short.
    let now = chrono::Utc::now().to_rfc3339();
    let dir = a.pgdata("beyond-gap");
    let refused = a
        .restore(&dir, common::free_port(), &["--to-time", &now])
        .run()
        .code(1);
    assert!(
        refused.stderr.contains("after the newest archived WAL"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("recovery window"),
        "{}",
        refused.stderr
    );
    assert!(!dir.exists());
    // The server log the error names is kept to read.
    let log = r
        .stderr
        .split("(log: ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .unwrap_or_else(|| panic!("the error names the server log: {}", r.stderr));
    let text = std::fs::read_to_string(log).expect("the named log exists");
    assert!(text.contains("recovery"), "{text}");
    std::fs::remove_file(log).unwrap();
}

fn pitr_window(a: &Archiving) -> serde_json::Value {
    let h = a
        .opsctl()
        .args(["health", "--check", "pitr_window", "--format", "json"])
        .run()
        .json();
    assert_eq!(h["checks"][0]["id"], "pitr_window", "{h}");
    h["checks"][0].clone()
}

#[test]
fn pitr_window_shows_the_window_and_flags_a_missed_schedule_and_a_missing_segment() {
    let a = Archiving::start("window", "");
    a.psql("CREATE TABLE marks (id int PRIMARY KEY, note text)");
    // No base backup and no schedule: not configured, not a warning.
    let c = pitr_window(&a);
    assert_eq!(c["state"], "OK", "{c}");
    assert!(
        c["value"].as_str().unwrap().contains("no base backup"),
        "{c}"
    );

    let b = a
        .opsctl()
        .args(["basebackup", "--format", "json"])
        .run()
        .success()
        .json();
    a.psql("INSERT INTO marks VALUES (1, 'after')");
    a.switch_and_wait();
    let c = pitr_window(&a);
    assert_eq!(c["state"], "OK", "{c}");
    let v = c["value"].as_str().unwrap();
    assert!(v.starts_with("window "), "{c}");
    assert!(v.contains("1 base backup"), "{c}");
    assert!(v.contains("not drilled"), "{c}");

    // The dashboard's backups page shows the window and the base backup (in the DOM and
    // in /api/backups).
    let (page, api) = dashboard_backups(&a);
    let doc = scraper::Html::parse_document(&page);
    let window: String = doc
        .select(&scraper::Selector::parse(".pitr-window").unwrap())
        .next()
        .expect("a recovery window on /backups")
        .text()
        .collect();
    assert!(window.starts_with("Recovery window: from "), "{window}");
    assert!(!window.contains("nowhere"), "{window}");
    let row = scraper::Selector::parse("table.base-backups tbody tr").unwrap();
    let ids: Vec<_> = doc
        .select(&row)
        .filter_map(|r| r.value().attr("data-id"))
        .collect();
    assert_eq!(ids, [b["id"].as_str().unwrap()], "{page}");
    let listed = &api["repositories"][0]["base_backups"][0];
    assert_eq!(listed["id"], b["id"], "{api}");
    assert!(listed["window"]["to_time"].is_string(), "{api}");

    // A daily schedule, and a newest base backup that (by its summary) stopped three days
    // ago: the schedule's runs since then are missing.
    let policy = std::fs::read_to_string(&a.policy).unwrap();
    std::fs::write(
        &a.policy,
        policy.replace("[basebackup]\n", "[basebackup]\nschedule = \"0 1 * * *\"\n"),
    )
    .unwrap();
    let summary = walk(&a.repo)
        .into_iter()
        .find(|p| p.ends_with("summary.json") && p.to_string_lossy().contains("/base/"))
        .expect("the base backup's summary");
    let mut s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let old = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    s["stopped_at"] = old.clone().into();
    s["started_at"] = old.into();
    std::fs::write(&summary, serde_json::to_vec(&s).unwrap()).unwrap();
    let c = pitr_window(&a);
    assert_eq!(c["state"], "WARNING", "{c}");
    assert!(c["hint"].as_str().unwrap().contains("is missing"), "{c}");

    // A segment the newest base backup needs is gone: it cannot be restored.
    let stop = b["stop_wal"].as_str().unwrap().to_string();
    let seg = walk(&a.repo.join("wal"))
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy() == stop)
        .expect("the base backup's stop segment in the archive");
    std::fs::remove_file(&seg).unwrap();
    let c = pitr_window(&a);
    assert_eq!(c["state"], "CRITICAL", "{c}");
    assert!(
        c["value"].as_str().unwrap().contains("cannot be restored"),
        "{c}"
    );
    // And restore --pitr refuses it up front, writing nothing.
    let dir = a.pgdata("unrecoverable");
    let r = a
        .restore(&dir, common::free_port(), &["--latest"])
        .run()
        .code(1);
    assert!(
        r.stderr.contains("cannot be made consistent"),
        "{}",
        r.stderr
    );
    assert!(!dir.exists());
}

/// `opsctl serve` on a free loopback port for `a`: the `/backups` page and `/api/backups`.
fn dashboard_backups(a: &Archiving) -> (String, serde_json::Value) {
    use std::io::{Read, Write};
    let port = common::free_port();
    let mut child = a
        .opsctl()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .spawn();
    let get = |path: &str| -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        Some(body.to_string())
    };
    let start = std::time::Instant::now();
    let page = loop {
        if let Some(p) = get("/backups") {
            break p;
        }
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let api = get("/api/backups").expect("/api/backups");
    let _ = child.kill();
    let _ = child.wait();
    (
        page,
        serde_json::from_str(&api).unwrap_or_else(|e| panic!("{e}: {api}")),
    )
}
