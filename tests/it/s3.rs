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
fn clean_incomplete_signs_its_request_and_says_when_the_server_cannot_list_uploads() {
    // s3s-fs does not implement ListMultipartUploads: opsctl must say so in one line
    // naming the repository and the remedy (a lifecycle rule), and the request must carry
    // a valid signature (a wrong secret is refused with 403 before that).
    let server = S3Server::start();
    let repo = server.repo("p");
    let mut sink = repo.create("db/x").unwrap();
    sink.write_all(b"x").unwrap();
    sink.commit().unwrap();
    let e = repo
        .clean_incomplete(std::time::Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(e.contains("repository s3://bucket/p"), "{e}");
    assert!(e.contains("ListMultipartUploads not implemented"), "{e}");
    assert!(e.contains("lifecycle rule"), "{e}");
    assert!(!e.contains('\n'), "{e}");
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
    assert!(e.contains("HTTP 403"), "{e}");
    assert!(!e.contains("not-the-secret-1234"), "{e}");
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
