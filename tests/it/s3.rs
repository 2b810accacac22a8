//! The S3 repository kind against a real S3-speaking server on loopback (s3s-fs, which
//! checks request signatures): objects, streamed multipart uploads in bounded memory,
//! atomic visibility, incomplete uploads, and the errors a person must be able to act on.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Instant;

use crate::common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};

const MIB: usize = 1024 * 1024;

/// Deterministic incompressible bytes: block `i` of 1 MiB.
fn block(i: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(MIB);
    while out.len() < MIB {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn small_parts(server: &S3Server) -> opsctl::storage::config::S3Settings {
    opsctl::storage::config::S3Settings {
        part_size: 5 * MIB as u64,
        concurrency: 2,
        ..server.settings()
    }
}

#[test]
fn objects_are_put_read_listed_and_deleted() {
    let server = S3Server::start();
    let repo = server.repo("opsctl/prod");
    assert!(repo.list("").unwrap().is_empty());
    repo.put("db/a.json", b"{\"a\":1}").unwrap();
    repo.put("db/empty", b"").unwrap();
    repo.put("other/x.opsbak", b"x").unwrap();
    // A multipart object: 12.5 MiB in 5 MiB parts, read back byte for byte.
    let big = server.repo_with(
        "bucket",
        "opsctl/prod",
        &small_parts(&server),
        ACCESS_KEY,
        SECRET_KEY,
    );
    let mut want = Vec::new();
    let mut sink = big.create("db/b.opsbak").unwrap();
    for i in 0..12 {
        let b = block(i);
        sink.write_all(&b).unwrap();
        want.extend_from_slice(&b);
    }
    sink.write_all(&block(99)[..MIB / 2]).unwrap();
    want.extend_from_slice(&block(99)[..MIB / 2]);
    assert!(
        !repo.exists("db/b.opsbak").unwrap(),
        "visible before commit"
    );
    sink.commit().unwrap();

    let keys: Vec<String> = repo
        .list("db/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["db/a.json", "db/b.opsbak", "db/empty"]);
    assert_eq!(
        repo.list("db/a").unwrap().len(),
        1,
        "a prefix inside a name"
    );
    assert_eq!(repo.list("").unwrap().len(), 4);
    let head = repo.head("db/b.opsbak").unwrap().unwrap();
    assert_eq!(head.size, want.len() as u64);
    let mut got = Vec::new();
    repo.open("db/b.opsbak")
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == want, "the multipart object reads back unchanged");
    assert_eq!(repo.get("db/a.json").unwrap().unwrap(), b"{\"a\":1}");
    assert_eq!(repo.get("db/empty").unwrap().unwrap(), b"");
    assert_eq!(repo.get("db/none").unwrap(), None);
    assert!(repo.head("db/none").unwrap().is_none());
    // Objects live under the prefix on the server, nowhere else.
    assert!(server
        .root
        .path()
        .join("bucket/opsctl/prod/db/a.json")
        .is_file());
    // Another prefix of the same bucket does not see them.
    assert!(server.repo("opsctl/test").list("").unwrap().is_empty());
    repo.delete("db/a.json").unwrap();
    repo.delete("db/a.json").unwrap();
    assert!(repo.get("db/a.json").unwrap().is_none());
    let e = repo
        .open("db/none")
        .err()
        .expect("a missing object cannot be opened")
        .to_string();
    assert!(e.contains("s3://bucket/opsctl/prod"), "{e}");
    assert!(server.incomplete_uploads().is_empty());
}

#[test]
fn a_dropped_or_aborted_sink_leaves_nothing_behind() {
    let server = S3Server::start();
    let repo = server.repo_with("bucket", "p", &small_parts(&server), ACCESS_KEY, SECRET_KEY);
    // Aborted after two parts went up.
    let mut sink = repo.create("db/aborted.opsbak").unwrap();
    for i in 0..11 {
        sink.write_all(&block(i)).unwrap();
    }
    assert!(
        !server.incomplete_uploads().is_empty(),
        "the upload is under way"
    );
    sink.abort();
    // Dropped (a writer that failed half-way) after parts went up.
    let mut sink = repo.create("db/dropped.opsbak").unwrap();
    for i in 0..11 {
        sink.write_all(&block(i)).unwrap();
    }
    drop(sink);
    // Dropped before the first part was full: nothing was ever sent.
    let mut sink = repo.create("db/small.json").unwrap();
    sink.write_all(b"{}").unwrap();
    drop(sink);
    assert!(repo.list("").unwrap().is_empty(), "{:?}", repo.list(""));
    assert!(
        server.incomplete_uploads().is_empty(),
        "the multipart uploads were aborted on the server: {:?}",
        server.incomplete_uploads()
    );
}

#[test]
fn clean_incomplete_signs_its_request_and_goes_on_when_the_server_cannot_list_uploads() {
    // s3s-fs does not implement ListMultipartUploads: opsctl warns (naming the remedy, a
    // lifecycle rule) and goes on, so prune still works; the request carries a valid
    // signature (a wrong secret is refused with 403, an error naming the repository).
    let server = S3Server::start();
    let repo = server.repo("p");
    let mut sink = repo.create("db/x").unwrap();
    sink.write_all(b"x").unwrap();
    sink.commit().unwrap();
    assert_eq!(
        repo.clean_incomplete(std::time::Duration::ZERO).unwrap(),
        Vec::<String>::new()
    );
    let wrong = server.repo_with(
        "bucket",
        "p",
        &server.settings(),
        ACCESS_KEY,
        "not-the-secret-1234",
    );
    let e = wrong
        .clean_incomplete(std::time::Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(e.contains("repository s3://bucket/p"), "{e}");
    assert!(e.contains("HTTP 403"), "{e}");
    assert!(!e.contains("not-the-secret-1234"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn wrong_credentials_give_one_line_naming_the_url_and_never_the_secret() {
    let server = S3Server::start();
    let secret = "wrong-secret-9c1b7e2a55";
    let repo = server.repo_with("bucket", "prod", &server.settings(), ACCESS_KEY, secret);
    for e in [
        repo.list("").unwrap_err().to_string(),
        repo.put("k", b"v").unwrap_err().to_string(),
        repo.head("k").unwrap_err().to_string(),
    ] {
        assert!(e.starts_with("repository s3://bucket/prod: cannot "), "{e}");
        assert!(e.contains("HTTP 403"), "{e}");
        assert!(
            e.contains("AWS_SECRET_ACCESS_KEY"),
            "says where the secret comes from: {e}"
        );
        assert!(!e.contains(secret), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let unknown = server.repo_with("bucket", "prod", &server.settings(), "nobody", SECRET_KEY);
    let e = unknown.list("").unwrap_err().to_string();
    assert!(e.contains("HTTP 403") || e.contains("HTTP 401"), "{e}");
    assert!(
        server.repo("prod").list("").unwrap().is_empty(),
        "nothing was written"
    );
}

#[test]
fn a_missing_bucket_is_named_as_such() {
    let server = S3Server::start();
    let repo = server.repo_with(
        "nosuchbucket",
        "p",
        &server.settings(),
        ACCESS_KEY,
        SECRET_KEY,
    );
    // (s3s-fs creates a bucket on PUT and answers NoSuchKey to a GET in a missing bucket,
    // so the listing every command starts with is what is asked here.)
    for e in [
        repo.list("").unwrap_err().to_string(),
        repo.list("db/").unwrap_err().to_string(),
    ] {
        assert!(
            e.starts_with("repository s3://nosuchbucket/p: cannot "),
            "{e}"
        );
        assert!(e.contains("bucket does not exist"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn an_endpoint_that_is_down_or_speaks_no_tls_is_reported_clearly() {
    let mut server = S3Server::start();
    let repo = server.repo("p");
    repo.put("k", b"v").unwrap();
    // An https endpoint whose certificate no trusted CA signed: a TLS failure in one line.
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::common::make_ca(dir.path(), "untrusted-ca");
    let (crt, key) = crate::common::make_cert(dir.path(), "s3", &ca, "127.0.0.1", "IP:127.0.0.1");
    let tls_port = crate::common::free_port();
    let mut tls_server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{tls_port}"))
        .arg("-cert")
        .arg(&crt)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let tls = opsctl::storage::config::S3Settings {
        endpoint: Some(format!("https://127.0.0.1:{tls_port}")),
        ..server.settings()
    };
    let e = server
        .repo_with("bucket", "p", &tls, ACCESS_KEY, SECRET_KEY)
        .list("")
        .unwrap_err()
        .to_string();
    let _ = tls_server.kill();
    let _ = tls_server.wait();
    assert!(e.contains("repository s3://bucket/p"), "{e}");
    assert!(e.contains("TLS failure"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    server.stop();
    let started = Instant::now();
    let e = repo.list("").unwrap_err().to_string();
    assert!(e.starts_with("repository s3://bucket/p: cannot list objects: cannot reach the endpoint http://127.0.0.1:"), "{e}");
    assert!(e.contains("connection refused"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert!(started.elapsed().as_secs() < 60, "retries are bounded");
    let e = repo.get("k").unwrap_err().to_string();
    assert!(e.contains("cannot reach the endpoint"), "{e}");
}

/// Peak memory of a separate process (this test binary re-run on `upload_child` alone)
/// streaming a 256 MiB object through the policy path (AWS credentials from the
/// environment), and the throughput both ways.
#[test]
fn a_large_streamed_upload_stays_in_bounded_memory() {
    let server = S3Server::start();
    let mib = std::env::var("OPSCTL_TEST_S3_MIB").unwrap_or_else(|_| "256".into());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "s3::upload_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OPSCTL_TEST_S3_CHILD", server.endpoint())
        .env("OPSCTL_TEST_S3_MIB", &mib)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.split_once(&format!("{name}=")).map(|(_, v)| v))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    let hwm_mib = field("VMHWM_KIB") / 1024.0;
    let mib: f64 = mib.parse().unwrap();
    eprintln!(
        "S3 streamed upload of {mib} MiB: peak RSS {hwm_mib:.1} MiB, upload {:.0} MiB/s, download {:.0} MiB/s",
        mib / field("UPLOAD_SECS"),
        mib / field("DOWNLOAD_SECS")
    );
    assert!(hwm_mib < 64.0, "peak RSS {hwm_mib:.1} MiB");
    let repo = server.repo("rss");
    assert_eq!(
        repo.head("big.bin").unwrap().unwrap().size,
        mib as u64 * MIB as u64
    );
    assert!(server.incomplete_uploads().is_empty());
}

/// The child of the test above (run only by it).
#[test]
#[ignore = "run by a_large_streamed_upload_stays_in_bounded_memory in a process of its own"]
fn upload_child() {
    let Ok(endpoint) = std::env::var("OPSCTL_TEST_S3_CHILD") else {
        return;
    };
    let mib: usize = std::env::var("OPSCTL_TEST_S3_MIB")
        .unwrap()
        .parse()
        .unwrap();
    let entry: opsctl::storage::config::RepositoryEntry = toml::from_str(&format!(
        "name = \"off\"\nurl = \"s3://bucket/rss\"\nendpoint = \"{endpoint}\"\nallow_http = true\npath_style = true\n"
    ))
    .unwrap();
    let repo = opsctl::storage::Repository::from_entry(&entry).unwrap();
    let blocks: Vec<Vec<u8>> = (0..2).map(block).collect();
    println!("START_HWM_KIB={}", hwm_kib());
    let started = Instant::now();
    let mut sink = repo.create("big.bin").unwrap();
    for i in 0..mib {
        sink.write_all(&blocks[i % blocks.len()]).unwrap();
    }
    sink.commit().unwrap();
    println!("UPLOAD_SECS={}", started.elapsed().as_secs_f64());
    println!("UPLOAD_HWM_KIB={}", hwm_kib());
    let started = Instant::now();
    let mut r = repo.open("big.bin").unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, mib * MIB);
    println!("DOWNLOAD_SECS={}", started.elapsed().as_secs_f64());
    println!("VMHWM_KIB={}", hwm_kib());
}

/// This process's peak resident memory so far, KiB.
fn hwm_kib() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .to_string()
}

// ---- The CLI on S3 (AWS credentials from the environment, as in production) ----

/// A database to back up, a key, and a policy naming the test server's bucket (so an
/// `s3://bucket/...` URL on the command line takes its endpoint settings).
struct CliEnv {
    env: crate::backup::Env,
    server: S3Server,
    policy: std::path::PathBuf,
}

impl CliEnv {
    fn new(tag: &str, extra_policy: &str) -> CliEnv {
        let env = crate::backup::Env::new(tag, 300);
        let server = S3Server::start();
        let policy = env.dir.path().join("s3.toml");
        std::fs::write(
            &policy,
            format!(
                "{}{}part_size = \"5MiB\"\n",
                extra_policy,
                server.policy_entry("offsite", "opsctl")
            ),
        )
        .unwrap();
        CliEnv {
            env,
            server,
            policy,
        }
    }

    fn cmd(&self) -> crate::common::Opsctl {
        let mut o = self.env.cmd();
        o.arg("--policy").arg(&self.policy);
        for (k, v) in self.server.env() {
            o.env(k, v);
        }
        o
    }

    fn run(&self, args: &[&str]) -> crate::common::Run {
        self.cmd().args(args).run()
    }
}

#[test]
fn the_whole_backup_cycle_runs_on_s3() {
    let c = CliEnv::new("s3_cycle", "");
    let url = "s3://bucket/cycle";
    let j = c
        .run(&["backup", "create", "--format", "json", "--repo", url])
        .success()
        .json();
    let id = j["id"].as_str().unwrap().to_string();
    // The backup is on the server under the URL's prefix, nothing is left half-written.
    let db = c.env.db.name.clone();
    let on_server = c.server.root.path().join("bucket/cycle").join(&db);
    assert!(on_server.join(format!("{id}.opsbak")).is_file(), "{j}");
    assert!(on_server.join(format!("{id}.json")).is_file(), "{j}");
    assert!(c.server.incomplete_uploads().is_empty());
    let list = c
        .run(&["backup", "list", "--format", "json", "--repo", url])
        .success()
        .json();
    assert_eq!(list[0]["id"], id.as_str(), "{list}");
    c.run(&["backup", "verify", &id, "--repo", url]).success();
    let target = format!("{db}_from_s3");
    c.run(&[
        "restore",
        &id,
        "--target-db",
        &target,
        "--create",
        "--repo",
        url,
    ])
    .success();
    assert_eq!(
        c.env.db.sql("SELECT count(*) FROM trades"),
        crate::common::cluster().psql(&target, "SELECT count(*) FROM trades")
    );
    crate::common::cluster().psql("postgres", &format!("DROP DATABASE \"{target}\""));
    let d = c
        .run(&["drill", &id, "--format", "json", "--repo", url])
        .success()
        .json();
    assert_eq!(d["ok"], true, "{d}");
    // Prune keeps the only (verified) backup.
    c.run(&["backup", "prune", "--repo", url]).success();
    let list = c
        .run(&["backup", "list", "--format", "json", "--repo", url])
        .success()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // A tampered object does not verify (the authentication tag, read from S3).
    let f = on_server.join(format!("{id}.opsbak"));
    let mut b = std::fs::read(&f).unwrap();
    let at = b.len() / 2;
    b[at] ^= 1;
    std::fs::write(&f, b).unwrap();
    let bad = c.run(&["backup", "verify", &id, "--repo", url]);
    assert_eq!(bad.code, 1, "{}", bad.all());
}

#[test]
fn cli_errors_on_s3_are_one_line_naming_the_url_without_the_secret() {
    let c = CliEnv::new("s3_errors", "");
    let url = "s3://bucket/errs";
    let secret = "wrong-cli-secret-5d2e91";
    let r = c
        .cmd()
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .args(["backup", "list", "--repo", url])
        .run();
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("repository s3://bucket/errs: cannot list objects: "),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("HTTP 403"), "{}", r.all());
    assert!(!r.all().contains(secret), "{}", r.all());
    let r = c
        .cmd()
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .args(["backup", "create", "--repo", url])
        .run();
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(!r.all().contains(secret), "{}", r.all());
    assert!(r.stderr.contains("s3://bucket/errs"), "{}", r.all());
    // A bucket the server does not have, named by a policy entry on the same endpoint.
    let mut text = std::fs::read_to_string(&c.policy).unwrap();
    text.push_str(
        &c.server
            .policy_entry("missing", "x")
            .replace("s3://bucket/", "s3://nosuchbucket/"),
    );
    std::fs::write(&c.policy, text).unwrap();
    let r = c.run(&["backup", "list", "--repo", "missing"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("repository s3://nosuchbucket/x")
            && r.stderr.contains("bucket does not exist"),
        "{}",
        r.all()
    );
    let mut c = c;
    c.server.stop();
    let r = c.run(&["backup", "list", "--repo", url]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("cannot reach the endpoint"),
        "{}",
        r.all()
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.all());
}

#[test]
fn s3_as_the_second_repository_gets_a_verified_copy() {
    let dir = tempfile::tempdir().unwrap();
    let local = format!(
        "[[repositories]]\nname = \"fast\"\nurl = \"{}\"\n\n",
        dir.path().join("fast").display()
    );
    let c = CliEnv::new("s3_second", &local);
    let j = c
        .run(&["backup", "create", "--format", "json"])
        .success()
        .json();
    let id = j["id"].as_str().unwrap().to_string();
    assert_eq!(j["repository"], "fast", "{j}");
    assert_eq!(j["copies"][0]["repository"], "offsite", "{j}");
    assert_eq!(j["copies"][0]["ok"], true, "{j}");
    let list = c
        .run(&["backup", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(
        list[0]["repositories"],
        serde_json::json!(["fast", "offsite"]),
        "{list}"
    );
    // The local copy is gone: restore reads the S3 copy and says so.
    std::fs::remove_file(
        dir.path()
            .join("fast")
            .join(&c.env.db.name)
            .join(format!("{id}.opsbak")),
    )
    .unwrap();
    let target = format!("{}_from_offsite", c.env.db.name);
    let r = c
        .run(&["restore", &id, "--target-db", &target, "--create"])
        .success();
    assert!(r.stdout.contains("offsite"), "{}", r.all());
    crate::common::cluster().psql("postgres", &format!("DROP DATABASE \"{target}\""));
}

/// A pg_dump that writes `bytes` of its output, then stops for a minute (the upload is
/// under way when the test kills opsctl).
fn stalling_pg_bindir(dir: &std::path::Path, bytes: u64) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("stallbin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = crate::common::cluster().bindir.clone();
    std::fs::write(
        bin.join("pg_dump"),
        format!(
            "#!/bin/sh\ncase \"$1\" in --version) exec {0}/pg_dump --version;; esac\n{0}/pg_dump \"$@\" | {{ head -c {bytes}; sleep 60; cat; }}\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("pg_dump"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(real.join("pg_restore"), bin.join("pg_restore")).unwrap();
    bin
}

/// Starts `backup create` to S3 over a database whose dump is bigger than a part, and
/// returns once a multipart upload is in progress on the server.
fn create_until_uploading(c: &CliEnv) -> std::process::Child {
    // ~12 MB of poorly compressible text: more than two 5 MiB parts after zstd.
    c.env.db.sql(
        "CREATE TABLE blob AS SELECT string_agg(md5(random()::text) || md5(random()::text), '') AS t FROM generate_series(1, 200000) g GROUP BY g % 20",
    );
    let bin = stalling_pg_bindir(c.env.dir.path(), 11_000_000);
    let child = c
        .cmd()
        .env("OPSCTL_PG_BINDIR", &bin)
        .args(["backup", "create", "--repo", "s3://bucket/killed"])
        .own_process_group()
        .spawn();
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while c.server.incomplete_uploads().is_empty() {
        assert!(Instant::now() < deadline, "no multipart upload started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child
}

#[test]
fn kill_9_mid_upload_leaves_no_listed_backup() {
    let c = CliEnv::new("s3_kill9", "");
    let mut child = create_until_uploading(&c);
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    let list = c
        .run(&[
            "backup",
            "list",
            "--format",
            "json",
            "--repo",
            "s3://bucket/killed",
        ])
        .success()
        .json();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    // The upload stays incomplete (nothing could abort it): never an object.
    assert!(!c.server.incomplete_uploads().is_empty());
    let objects = c.server.repo("killed").list("").unwrap();
    assert!(objects.is_empty(), "{objects:?}");
}

#[test]
fn sigterm_mid_upload_aborts_the_multipart_upload() {
    let c = CliEnv::new("s3_term", "");
    let child = create_until_uploading(&c);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let list = c
        .run(&[
            "backup",
            "list",
            "--format",
            "json",
            "--repo",
            "s3://bucket/killed",
        ])
        .success()
        .json();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    assert!(
        c.server.incomplete_uploads().is_empty(),
        "the multipart upload was aborted: {:?}",
        c.server.incomplete_uploads()
    );
}
