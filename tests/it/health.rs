//! `opsctl health`: JSON shape, output forms and exit codes.

use crate::common::{free_port, opsctl, TestDb};

#[test]
fn healthy_json_and_exit_zero() {
    let db = TestDb::new("h");
    db.sql("CREATE EXTENSION pg_stat_statements");
    let r = db
        .opsctl()
        .args(["health", "--format", "json"])
        .run()
        .success();
    let j = r.json();
    assert_eq!(j["status"], "healthy");
    assert_eq!(j["state"], "OK");
    assert_eq!(j["database_name"], db.name.as_str());
    assert!(j["server_version"].as_str().unwrap().starts_with("15"));
    let ids: Vec<&str> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for id in ["connectivity", "tls", "server_version"] {
        assert!(ids.contains(&id), "{id} missing in {ids:?}");
    }
}

#[test]
fn port_closed_is_critical_with_json() {
    let port = free_port();
    let r = opsctl()
        .args(["health", "--format", "json", "--database-url"])
        .arg(format!(
            "postgresql://postgres@127.0.0.1:{port}/postgres?connect_timeout=3"
        ))
        .run()
        .code(2);
    let j = r.json();
    assert_eq!(j["status"], "unhealthy");
    assert_eq!(j["state"], "CRITICAL");
    assert!(
        j["database"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{j}"
    );
}

#[test]
fn bad_configuration_is_unknown() {
    for url in [
        "postgresql://h:notaport/db",
        "mysql://h/db",
        "host=x sslmode=bogus",
        "host=x nosuch=1",
    ] {
        let r = opsctl()
            .args(["health", "--database-url", url])
            .run()
            .code(3);
        assert!(r.stderr.contains("error:"), "{url}: {}", r.stderr);
    }
    let r = opsctl()
        .args([
            "health",
            "--sslmode",
            "sometimes",
            "--database-url",
            "host=x",
        ])
        .run()
        .code(3);
    assert!(r.stderr.contains("unknown sslmode"), "{}", r.stderr);
    opsctl().args(["health", "--no-such-flag"]).run().code(3);
    opsctl().args(["health", "--format", "xml"]).run().code(3);
    opsctl()
        .args(["health", "--check", "nope", "--database-url", "host=x"])
        .run()
        .code(3);
    // Ordinary commands keep clap's usage code 2.
    opsctl().args(["no-such-command"]).run().code(2);
}

#[test]
fn all_output_forms() {
    let db = TestDb::new("forms");
    db.sql("CREATE EXTENSION pg_stat_statements");
    let t = db.opsctl().args(["health"]).run().success();
    assert!(t.stdout.contains("opsctl health"), "{}", t.stdout);
    assert!(!t.stdout.contains('\x1b'), "no colour off a terminal");
    let p = db
        .opsctl()
        .args(["health", "--format", "prometheus"])
        .run()
        .success();
    for line in p.stdout.lines() {
        assert!(
            line.starts_with("# HELP opsctl_")
                || line.starts_with("# TYPE opsctl_")
                || line.starts_with("opsctl_"),
            "bad prometheus line {line:?}"
        );
        if !line.starts_with('#') {
            let value = line.rsplit(' ').next().unwrap();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        }
    }
    assert!(p.stdout.contains("opsctl_up 1"));
    let n = db
        .opsctl()
        .args(["health", "--format", "nagios"])
        .run()
        .success();
    assert!(n.stdout.starts_with("OPSCTL HEALTH OK: "), "{}", n.stdout);
    assert_eq!(n.stdout.lines().count(), 1);
}

#[test]
fn check_and_skip_select_checks() {
    let db = TestDb::new("sel");
    db.sql("CREATE EXTENSION pg_stat_statements");
    let j = db
        .opsctl()
        .args(["health", "--format", "json", "--check", "tls"])
        .run()
        .success()
        .json();
    let ids: Vec<&str> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tls"]);
    let j = db
        .opsctl()
        .args(["health", "--format", "json", "--skip", "tls"])
        .run()
        .success()
        .json();
    assert!(!j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "tls"));
}

#[test]
fn textfile_is_written_atomically() {
    let db = TestDb::new("tf");
    db.sql("CREATE EXTENSION pg_stat_statements");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opsctl.prom");
    db.opsctl()
        .args(["health", "--format", "prometheus", "--textfile"])
        .arg(&path)
        .run()
        .success();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("# TYPE opsctl_check_state gauge"));
}
