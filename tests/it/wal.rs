//! `opsctl wal`: a private cluster with archive_mode on and archive_command running this
//! opsctl; segments sealed in the repository, duplicate pushes, another cluster refused,
//! fetch exit codes, a tampered segment stopping a real recovery, status, setup, verify.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{bindir, free_port, opsctl, Opsctl};

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A command run as the cluster's OS user.
fn as_pg(prog: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

fn ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chown_pg(p: &Path) {
    if is_root() {
        ok(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(p),
            "chown",
        );
    }
}

/// A cluster of its own that archives with opsctl into `repo`, stopped and removed on drop.
struct ArchCluster {
    dir: PathBuf,
    data: PathBuf,
    sock: PathBuf,
    port: u16,
    repo: PathBuf,
    policy: PathBuf,
}

const MARKER: &str = "opsctl-wal-plaintext-marker";

impl ArchCluster {
    fn start(tag: &str) -> ArchCluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("opsctl-wal-{tag}-"))
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let data = dir.join("data");
        let sock = dir.join("sock");
        let repo = dir.join("repo");
        std::fs::create_dir_all(&sock).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        let key = dir.join("wal.key");
        opsctl()
            .args(["backup", "keygen", "--out"])
            .arg(&key)
            .run()
            .success();
        let policy = dir.join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "[backup]\ndir = \"{}\"\nkey_file = \"{}\"\n",
                repo.display(),
                key.display()
            ),
        )
        .unwrap();
        chown_pg(&dir);
        ok(
            as_pg(&bindir().join("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ]),
            "initdb",
        );
        let port = free_port();
        let conf = format!(
            "\nport = {port}\nlisten_addresses = ''\nunix_socket_directories = '{sock}'\n\
             wal_level = replica\narchive_mode = on\n\
             archive_command = '{exe} wal push %p --policy {policy}'\n\
             fsync = off\nlog_min_messages = warning\ntimezone = 'UTC'\n",
            sock = sock.display(),
            exe = env!("CARGO_BIN_EXE_opsctl"),
            policy = policy.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        let c = ArchCluster {
            dir,
            data,
            sock,
            port,
            repo,
            policy,
        };
        c.pg_ctl(&c.data.clone(), "start");
        c
    }

    fn pg_ctl(&self, data: &Path, action: &str) {
        ok(
            as_pg(&bindir().join("pg_ctl"))
                .arg("-D")
                .arg(data)
                .arg("-l")
                .arg(self.dir.join(format!(
                    "{}.log",
                    data.file_name().unwrap().to_string_lossy()
                )))
                .args(["-w", "-t", "60", "-m", "fast", action]),
            &format!("pg_ctl {action}"),
        );
    }

    fn psql(&self, sql: &str) -> String {
        ok(
            Command::new(bindir().join("psql"))
                .args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    "postgres",
                ])
                .arg("-h")
                .arg(&self.sock)
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-d", "postgres", "-c", sql]),
            sql,
        )
        .trim()
        .to_string()
    }

    fn url(&self) -> String {
        format!(
            "postgresql://postgres@/postgres?host={}&port={}&sslmode=disable",
            self.sock.display(),
            self.port
        )
    }

    /// Writes some WAL with the marker in it and switches to a new segment; returns the
    /// name of the segment that was closed, once it is archived.
    fn fill_and_switch(&self) -> String {
        self.psql(&format!(
            "CREATE TABLE IF NOT EXISTS t(id serial, note text); \
             INSERT INTO t(note) SELECT '{MARKER}' || g FROM generate_series(1, 2000) g"
        ));
        let seg = self.psql("SELECT pg_walfile_name(pg_switch_wal())");
        self.wait_archived(&seg);
        seg
    }

    fn wait_archived(&self, seg: &str) {
        let t0 = Instant::now();
        loop {
            let last = self.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
            if last.as_str() >= seg {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{seg} not archived in 60 s (last {last}); server log:\n{}",
                self.log("data")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn sysid(&self) -> String {
        self.psql("SELECT system_identifier FROM pg_control_system()")
    }

    fn sysid_of(&self, data: &Path) -> String {
        let out = ok(
            Command::new(bindir().join("pg_controldata")).arg(data),
            "pg_controldata",
        );
        out.lines()
            .find_map(|l| l.strip_prefix("Database system identifier:"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn object(&self, seg: &str) -> PathBuf {
        self.repo
            .join("wal")
            .join(self.sysid())
            .join(&seg[..8])
            .join(seg)
    }

    fn wal(&self) -> Opsctl {
        let mut o = opsctl();
        o.arg("wal").env("OPSCTL_POLICY", &self.policy);
        o
    }
}

impl Drop for ArchCluster {
    fn drop(&mut self) {
        for d in ["data", "restored"] {
            let data = self.dir.join(d);
            if data.join("postmaster.pid").exists() {
                let _ = as_pg(&bindir().join("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .args(["stop", "-m", "immediate"])
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn sha(p: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

#[test]
fn archiving_pushes_sealed_segments_refuses_conflicts_and_fetch_exit_codes() {
    let c = ArchCluster::start("push");
    let s1 = c.fill_and_switch();
    let s2 = c.fill_and_switch();
    let s3 = c.fill_and_switch();

    // Sealed in the repository: the marker is in the segment, not in what is stored.
    let stored = std::fs::read(c.object(&s2)).unwrap();
    assert!(
        !contains(&stored, MARKER.as_bytes()),
        "plaintext in the repository"
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.repo.join("wal/archive.json")).unwrap()).unwrap();
    assert_eq!(info["system_identifier"], c.sysid());

    // Round trip: fetch gives back the segment byte for byte.
    let work = tempfile::tempdir().unwrap();
    let fetched = work.path().join("RECOVERYXLOG");
    c.wal().args(["fetch", &s2]).arg(&fetched).run().success();
    let original = c.data.join("pg_wal").join(&s2);
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(&original).unwrap()
    );
    assert!(contains(
        &std::fs::read(&fetched).unwrap(),
        MARKER.as_bytes()
    ));

    // Identical re-push (PostgreSQL re-archives after a crash): 0 and a notice.
    let copy = work.path().join(&s2);
    std::fs::copy(&original, &copy).unwrap();
    let r = c.wal().arg("push").arg(&copy).run().success();
    assert!(
        r.stderr.contains("already archived with identical content"),
        "{}",
        r.stderr
    );

    // Different content under the same name: refused, the archived copy kept.
    let before = sha(&c.object(&s2));
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[200_000] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    let r = c.wal().arg("push").arg(&copy).run().code(1);
    assert!(r.stderr.contains("different content"), "{}", r.stderr);
    assert_eq!(sha(&c.object(&s2)), before, "the archived segment changed");

    // A segment of another cluster pointed at the same repository: refused.
    let other = work.path().join("other");
    std::fs::create_dir(&other).unwrap();
    chown_pg(&other);
    ok(
        as_pg(&bindir().join("initdb"))
            .arg("-D")
            .arg(other.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync"]),
        "initdb other",
    );
    let foreign = other.join("data/pg_wal/000000010000000000000001");
    let r = c.wal().arg("push").arg(&foreign).run().code(1);
    assert!(r.stderr.contains("refusing to mix"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(c.repo.join("wal")).unwrap().count(),
        2,
        "archive.json and one cluster folder"
    );
    // A file that is not a WAL segment at all.
    let junk = work.path().join("000000010000000000000063");
    std::fs::write(&junk, vec![0u8; 16 << 20]).unwrap();
    let r = c.wal().arg("push").arg(&junk).run().code(1);
    assert!(
        r.stderr.contains("not a PostgreSQL WAL page"),
        "{}",
        r.stderr
    );

    // fetch of a file the archive does not have: 1, quietly.
    let r = c
        .wal()
        .args(["fetch", "0000000100000000000000EE"])
        .arg(work.path().join("x"))
        .run()
        .code(1);
    assert_eq!(r.all(), "", "a missing file is not an error to shout about");
    c.wal()
        .args(["fetch", "00000002.history"])
        .arg(work.path().join("x"))
        .run()
        .code(1);

    // A tampered copy of the repository: fetch stops recovery (exit above 125).
    let copy_repo = work.path().join("repo-copy");
    ok(
        Command::new("cp").arg("-a").arg(&c.repo).arg(&copy_repo),
        "cp -a",
    );
    let obj = copy_repo
        .join("wal")
        .join(c.sysid())
        .join(&s2[..8])
        .join(&s2);
    let mut b = std::fs::read(&obj).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    std::fs::write(&obj, &b).unwrap();
    let dest = work.path().join("tampered");
    let r = c
        .wal()
        .args(["fetch", &s2])
        .arg(&dest)
        .arg("--repo")
        .arg(&copy_repo)
        .run()
        .code(200);
    assert!(r.stderr.contains("failed authentication"), "{}", r.stderr);
    assert!(r.stderr.contains("stopping recovery"), "{}", r.stderr);
    assert!(
        !dest.exists(),
        "a file that failed authentication was delivered"
    );
    // A truncated one too, and the wrong key.
    std::fs::write(&obj, &stored[..stored.len() - 10]).unwrap();
    c.wal()
        .args(["fetch", &s2])
        .arg(&dest)
        .arg("--repo")
        .arg(&copy_repo)
        .run()
        .code(200);
    let wrong = work.path().join("wrong.key");
    opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&wrong)
        .run()
        .success();
    let r = c
        .wal()
        .args(["fetch", &s1])
        .arg(&dest)
        .arg("--key-file")
        .arg(&wrong)
        .run()
        .code(200);
    assert!(r.stderr.contains("key"), "{}", r.stderr);
    // A mistyped restore_command (usage error) stops recovery too.
    c.wal().args(["fetch", &s1]).run().code(200);

    // verify: no gap; then a segment removed from the middle of the copy is a gap.
    let r = c.wal().args(["verify", "--format", "json"]).run().success();
    let v = r.json();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["checked"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(v["to"], s3);
    std::fs::remove_file(&obj).unwrap();
    let r = c
        .wal()
        .args(["verify", "--repo"])
        .arg(&copy_repo)
        .run()
        .code(1);
    assert!(
        r.stdout.contains(&format!(
            "GAP on timeline 1: 1 segment(s) missing, {s2} .. {s2}"
        )),
        "{}",
        r.stdout
    );
    // A start before the oldest archived segment (segment 0 is never written): a gap.
    let r = c
        .wal()
        .args(["verify", "--from", "000000010000000000000000"])
        .run()
        .code(1);
    assert!(
        r.stdout
            .contains("segment(s) missing, 000000010000000000000000 .."),
        "{}",
        r.stdout
    );
    c.wal().args(["verify", "--from", "nonsense"]).run().code(1);

    // status: settings, the archiver's counters, what is waiting, the newest per timeline.
    let r = c
        .wal()
        .args(["status", "--format", "json", "--database-url", &c.url()])
        .run()
        .success();
    let st = r.json();
    assert_eq!(st["archive_mode"], "on", "{st}");
    assert_eq!(st["wal_level"], "replica");
    assert!(st["archive_command"]
        .as_str()
        .unwrap()
        .contains("wal push %p"));
    assert!(st["archived_count"].as_i64().unwrap() >= 3, "{st}");
    assert_eq!(st["ready_count"], 0, "{st}");
    assert_eq!(
        st["archive"]["newest_per_timeline"][0]["segment"], s3,
        "{st}"
    );
    assert_eq!(st["archive"]["system_identifier"], c.sysid());
    let r = c
        .wal()
        .args(["status", "--database-url", &c.url()])
        .run()
        .success();
    assert!(
        r.stdout.contains(&format!("newest archived {s3}")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("archive_mode     on"), "{}", r.stdout);

    // health: archiving works.
    let h = opsctl()
        .args([
            "health",
            "--check",
            "wal_archiving",
            "--format",
            "json",
            "--database-url",
            &c.url(),
        ])
        .run()
        .success()
        .json();
    assert_eq!(h["checks"][0]["id"], "wal_archiving", "{h}");
    assert_eq!(h["checks"][0]["state"], "OK", "{h}");
    assert!(
        h["checks"][0]["value"].as_str().unwrap().contains(&s3),
        "{h}"
    );

    // A failing archiver shows in status: point archive_command at a missing key.
    c.psql(&format!(
        "ALTER SYSTEM SET archive_command = '{} wal push %p --policy {} --key-file /nonexistent'",
        env!("CARGO_BIN_EXE_opsctl"),
        c.policy.display()
    ));
    c.psql("SELECT pg_reload_conf()");
    c.psql("CREATE TABLE u AS SELECT 1 AS x");
    let failing = c.psql("SELECT pg_walfile_name(pg_switch_wal())");
    let t0 = Instant::now();
    while c.psql("SELECT failed_count FROM pg_stat_archiver") == "0" {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the archiver never failed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = c
        .wal()
        .args(["status", "--format", "json", "--database-url", &c.url()])
        .run()
        .success()
        .json();
    assert_eq!(st["last_failed_wal"], failing, "{st}");
    assert!(st["ready_count"].as_i64().unwrap() >= 1, "{st}");
    assert!(
        st["notes"].to_string().contains("archiving is failing"),
        "{st}"
    );
    // health: failing since a recent success is a WARNING (CRITICAL after 5 minutes
    // without success; the unit tests cover that), exit 1.
    let r = opsctl()
        .args([
            "health",
            "--check",
            "wal_archiving",
            "--format",
            "json",
            "--database-url",
            &c.url(),
        ])
        .run()
        .code(1);
    let h = r.json();
    assert_eq!(h["checks"][0]["state"], "WARNING", "{h}");
    assert!(
        h["checks"][0]["hint"].as_str().unwrap().contains(&failing),
        "{h}"
    );
    let r = opsctl()
        .args([
            "health",
            "--check",
            "wal_archiving",
            "--format",
            "prometheus",
            "--database-url",
            &c.url(),
        ])
        .run();
    assert!(
        r.stdout.contains("opsctl_wal_archive_failures"),
        "{}",
        r.stdout
    );
}

#[test]
fn setup_print_names_opsctl_the_policy_and_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .run()
        .success();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "[backup]\ndir = \"{}\"\nkey_file = \"{}\"\n",
            dir.path().display(),
            key.display()
        ),
    )
    .unwrap();
    let r = opsctl()
        .args(["wal", "setup", "--print", "--policy"])
        .arg(&policy)
        .run()
        .success();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_opsctl")).unwrap();
    let policy = std::fs::canonicalize(&policy).unwrap();
    assert!(
        r.stdout.contains(&format!(
            "ALTER SYSTEM SET archive_command = '{} wal push %p --policy {}';",
            exe.display(),
            policy.display()
        )),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("ALTER SYSTEM SET archive_mode = 'on';  -- needs a restart"));
    assert!(r
        .stdout
        .contains("ALTER SYSTEM SET wal_level = 'replica';  -- needs a restart"));
    assert!(r
        .stdout
        .contains("ALTER SYSTEM SET archive_timeout = '60s';  -- takes effect on reload"));
    let r = opsctl()
        .args([
            "wal",
            "setup",
            "--print",
            "--archive-timeout",
            "5m",
            "--policy",
        ])
        .arg(&policy)
        .run()
        .success();
    assert!(
        r.stdout.contains("archive_timeout = '300s'"),
        "{}",
        r.stdout
    );
    // Without a policy the archiver could not find the repository or the key.
    let r = opsctl().args(["wal", "setup", "--print"]).run().code(1);
    assert!(r.stderr.contains("--policy"), "{}", r.stderr);
    opsctl().args(["wal", "setup"]).run().code(2);
    opsctl()
        .args([
            "wal",
            "setup",
            "--print",
            "--archive-timeout",
            "soon",
            "--policy",
        ])
        .arg(&policy)
        .run()
        .code(1);
}

/// A base backup taken by hand, recovered with restore_command = opsctl wal fetch: a
/// tampered segment makes the server stop (no promotion, recovery.signal kept); with the
/// segment put back the same recovery completes and the rows are there.
#[test]
fn a_tampered_segment_stops_recovery_and_the_server_does_not_promote() {
    let c = ArchCluster::start("recovery");
    c.fill_and_switch();
    let restored = c.dir.join("restored");
    ok(
        as_pg(&bindir().join("pg_basebackup"))
            .arg("-D")
            .arg(&restored)
            .args(["-X", "none", "-c", "fast", "-U", "postgres"])
            .arg("-h")
            .arg(&c.sock)
            .arg("-p")
            .arg(c.port.to_string()),
        "pg_basebackup",
    );
    c.psql("CREATE TABLE after_backup AS SELECT g FROM generate_series(1, 1000) g");
    let s1 = c.fill_and_switch();
    c.psql("INSERT INTO after_backup SELECT g FROM generate_series(1001, 2000) g");
    let s2 = c.fill_and_switch();
    assert!(s2 > s1);
    // The .backup file of pg_basebackup is archived too.
    let tl = c.repo.join("wal").join(c.sysid()).join("00000001");
    assert!(
        std::fs::read_dir(&tl).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".backup")),
        "no .backup file archived"
    );
    c.pg_ctl(&c.data.clone(), "stop");

    // Tamper with the segment holding the second batch.
    let obj = c.repo.join("wal").join(
        std::fs::read_dir(c.repo.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .find(|n| n != "archive.json")
            .unwrap(),
    );
    let obj = obj.join("00000001").join(&s2);
    let good = std::fs::read(&obj).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 100] ^= 0x55;
    std::fs::write(&obj, &bad).unwrap();

    let conf = restored.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
    text.push_str(&format!(
        "\nrestore_command = '{} wal fetch %f %p --policy {}'\nport = {}\n",
        env!("CARGO_BIN_EXE_opsctl"),
        c.policy.display(),
        free_port()
    ));
    std::fs::write(&conf, text).unwrap();
    std::fs::write(restored.join("recovery.signal"), "").unwrap();
    chown_pg(&restored);
    let log = c.dir.join("restored.log");
    // Started without waiting: the server is expected to stop by itself.
    ok(
        as_pg(&bindir().join("pg_ctl"))
            .arg("-D")
            .arg(&restored)
            .arg("-l")
            .arg(&log)
            .arg("start"),
        "pg_ctl start (recovery)",
    );
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("database system is shut down")
            && !restored.join("postmaster.pid").exists()
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the server did not stop on the tampered segment:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("failed authentication"), "{text}");
    assert!(
        !text.contains("database system is ready to accept connections"),
        "{text}"
    );
    assert!(!text.contains("selected new timeline"), "promoted:\n{text}");
    assert!(
        restored.join("recovery.signal").exists(),
        "recovery.signal gone"
    );
    let control = ok(
        Command::new(bindir().join("pg_controldata")).arg(&restored),
        "pg_controldata",
    );
    assert!(control.contains("in archive recovery"), "{control}");

    // The genuine segment back: the same recovery goes on to the end and promotes.
    std::fs::write(&obj, &good).unwrap();
    std::fs::write(&log, "").unwrap();
    ok(
        as_pg(&bindir().join("pg_ctl"))
            .arg("-D")
            .arg(&restored)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "90", "start"]),
        "pg_ctl start (recovery, genuine segment)",
    );
    let t0 = Instant::now();
    while restored.join("recovery.signal").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "recovery did not finish:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("selected new timeline ID: 2"), "{text}");
    let port = std::fs::read_to_string(restored.join("postmaster.pid"))
        .unwrap()
        .lines()
        .nth(3)
        .unwrap()
        .to_string();
    let rows = ok(
        Command::new(bindir().join("psql"))
            .args(["-X", "-A", "-t", "-U", "postgres", "-h"])
            .arg(&c.sock)
            .args([
                "-p",
                &port,
                "-d",
                "postgres",
                "-c",
                "SELECT count(*) FROM after_backup",
            ]),
        "count",
    );
    assert_eq!(rows.trim(), "2000");

    // The promoted server archives timeline 2 into the same archive (same cluster):
    // 00000002.history, the old timeline's .partial, new segments. verify follows the
    // history across the switch.
    let psql2 = |sql: &str| {
        ok(
            Command::new(bindir().join("psql"))
                .args([
                    "-X",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    "postgres",
                    "-h",
                ])
                .arg(&c.sock)
                .args(["-p", &port, "-d", "postgres", "-c", sql]),
            sql,
        )
        .trim()
        .to_string()
    };
    psql2("INSERT INTO after_backup SELECT g FROM generate_series(2001, 3000) g");
    let t2 = psql2("SELECT pg_walfile_name(pg_switch_wal())");
    assert!(t2.starts_with("00000002"), "{t2}");
    let t0 = Instant::now();
    while psql2("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < t2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "{t2} not archived");
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = c
        .wal()
        .args(["verify", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(v["timeline"], 2, "{v}");
    assert_eq!(v["history"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["to"], t2, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    // The history file and a timeline-2 segment come back through fetch.
    let work = tempfile::tempdir().unwrap();
    c.wal()
        .args(["fetch", "00000002.history"])
        .arg(work.path().join("h"))
        .run()
        .success();
    let h = std::fs::read_to_string(work.path().join("h")).unwrap();
    assert!(h.starts_with("1\t"), "{h}");
    // Without the history file the timelines cannot be followed: a problem, exit 1.
    let hist = c
        .repo
        .join("wal")
        .join(c.sysid_of(&restored))
        .join("00000002/00000002.history");
    std::fs::remove_file(&hist).unwrap();
    let r = c.wal().arg("verify").run().code(1);
    assert!(
        r.stdout.contains("00000002.history is not archived"),
        "{}",
        r.stdout
    );
}
