//! TLS and connection-setting behaviour, through `opsctl health`.

use crate::common::{cluster, opsctl, TestDb, PASSWORD};

/// The checks about the connection itself (the others judge the database).
const CONNECTION_CHECKS: [&str; 6] = [
    "--check",
    "connectivity",
    "--check",
    "tls",
    "--check",
    "server_version",
];

fn kv(db: &str, extra: &str) -> String {
    let c = cluster();
    format!(
        "host=localhost port={} user=postgres password={PASSWORD} dbname={db} {extra}",
        c.port
    )
}

#[test]
fn verify_full_with_right_ca_connects() {
    let db = TestDb::new("vf");
    let r = db
        .opsctl()
        .args(["health", "--format", "json"])
        .args(CONNECTION_CHECKS)
        .run()
        .success();
    let j = r.json();
    assert_eq!(j["status"], "healthy");
    assert_eq!(j["database"], "connected");
    assert_eq!(j["tls"]["sslmode"], "verify-full");
    assert!(
        j["tls"]["version"].as_str().unwrap().starts_with("TLSv1."),
        "{j}"
    );
    assert!(j["tls"]["cipher"].as_str().is_some());
}

#[test]
fn unrelated_ca_is_refused() {
    let c = cluster();
    let r = opsctl()
        .args([
            "health",
            "--database-url",
            &kv("postgres", "sslmode=verify-full"),
        ])
        .arg("--sslrootcert")
        .arg(&c.other_ca)
        .run()
        .code(2);
    assert!(
        r.stdout.contains("certificate verification failed"),
        "{}",
        r.stdout
    );
    assert!(!r.all().contains(PASSWORD));
}

#[test]
fn hostname_mismatch_refused_by_verify_full_accepted_by_verify_ca() {
    let c = cluster();
    let base = format!(
        "host=db.wrong-name.test hostaddr=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres sslrootcert={}",
        c.port,
        c.ca.display()
    );
    let r = opsctl()
        .args([
            "health",
            "--database-url",
            &format!("{base} sslmode=verify-full"),
        ])
        .run()
        .code(2);
    assert!(
        r.stdout.contains("does not match the host name"),
        "{}",
        r.stdout
    );
    opsctl()
        .args([
            "health",
            "--database-url",
            &format!("{base} sslmode=verify-full"),
            "--sslmode",
            "verify-ca",
        ])
        .args(CONNECTION_CHECKS)
        .run()
        .success();
}

#[test]
fn sslmode_disable_against_hostssl_only_server_fails_clearly() {
    let r = opsctl()
        .args([
            "health",
            "--database-url",
            &kv("postgres", "sslmode=disable"),
        ])
        .run()
        .code(2);
    assert!(
        r.stdout.contains("refuses unencrypted connections"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("sslmode=disable"),
        "warning expected: {}",
        r.stderr
    );
}

#[test]
fn require_connects_but_warns() {
    let r = opsctl()
        .args([
            "health",
            "--database-url",
            &kv("postgres", "sslmode=require"),
            "--format",
            "json",
        ])
        .run()
        .code(1);
    assert!(r.stderr.contains("not verified"), "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["state"], "WARNING");
    assert_eq!(j["status"], "healthy");
}

#[test]
fn wrong_password_fails_and_is_never_echoed() {
    let c = cluster();
    let secret = "Wr0ng-Secret-xyz";
    let url = format!(
        "postgresql://postgres:{secret}@localhost:{}/postgres?sslrootcert={}",
        c.port,
        c.ca.display()
    );
    for format in ["text", "json", "prometheus", "nagios"] {
        let r = opsctl()
            .args(["health", "--format", format, "--database-url", &url])
            .run()
            .code(2);
        assert!(
            r.all().contains("authentication failed"),
            "{format}: {}",
            r.all()
        );
        assert!(
            !r.all().contains(secret),
            "password leaked in {format}: {}",
            r.all()
        );
    }
}

#[test]
fn pg_environment_alone_describes_the_connection() {
    let c = cluster();
    let r = opsctl()
        .env("PGHOST", "localhost")
        .env("PGPORT", c.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", "postgres")
        .env("PGSSLROOTCERT", &c.ca)
        .args(["health", "--format", "json"])
        .args(CONNECTION_CHECKS)
        .run()
        .success();
    assert_eq!(r.json()["tls"]["sslmode"], "verify-full");
}

#[test]
fn database_url_fallback_and_pgsslrootcert_fill_in() {
    let c = cluster();
    let url = format!(
        "postgresql://postgres:{PASSWORD}@localhost:{}/postgres",
        c.port
    );
    opsctl()
        .env("DATABASE_URL", &url)
        .env("PGSSLROOTCERT", &c.ca)
        .args(["health"])
        .args(CONNECTION_CHECKS)
        .run()
        .success();
    // OPSCTL_DATABASE_URL wins over DATABASE_URL.
    opsctl()
        .env("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
        .env("OPSCTL_DATABASE_URL", &url)
        .env("PGSSLROOTCERT", &c.ca)
        .args(["health"])
        .args(CONNECTION_CHECKS)
        .run()
        .success();
}

#[test]
fn unix_socket_uses_no_tls() {
    let c = cluster();
    let r = opsctl()
        .args(["health", "--format", "json", "--database-url"])
        .arg(format!(
            "host={} port={} user=postgres password={PASSWORD} dbname=postgres",
            c.socket_dir.display(),
            c.port
        ))
        .args(CONNECTION_CHECKS)
        .run()
        .success();
    let j = r.json();
    assert_eq!(j["tls"]["sslmode"], "unix-socket");
    assert_eq!(j["state"], "OK");
}
