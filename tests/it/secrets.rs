//! Secrets stay secret: connection strings in errors and the operations log, the
//! `--database-url` warning and the password file, the environment of child processes,
//! and client-key permissions.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{cluster, make_ca, make_cert, opsctl, Run, TestDb, PASSWORD};

/// The marker password carried by every connection string below.
const MARK: &str = "Zq9Mk7pw";

/// Malformed and well-formed connection strings, each carrying [`MARK`] as (part of) a
/// password. The well-formed ones point at a closed port so they fail fast.
fn table() -> Vec<String> {
    [
        // '/' in the password: the part before it used to be quoted as the port.
        "postgresql://ops:{M}/ss@db/x",
        // The same, with a valid-looking port: used to be accepted, dbname printed.
        "postgresql://127.0.0.1:1/{M}@db:5432/trading",
        // A space in an unquoted key=value password.
        "host=127.0.0.1 port=1 password=my {M}",
        // A quoted password with a space.
        "host=127.0.0.1 port=1 user=u password='a {M}'",
        // '@' in the password: redact used to stop at the first '@'.
        "postgresql://u:Sup3r@{M}@127.0.0.1:1/d",
        // Typo in the scheme: used to be echoed verbatim.
        "postgres//u:{M}@h/d",
        // Single slash.
        "postgresql:/u:{M}@h/d",
        // No scheme at all.
        "u:{M}@h/d",
        // '?' in the password: the rest became a query parameter without a value.
        "postgresql://u:a?{M}@h/d",
        // '&' and '=' in a query password: the rest became an unknown option name.
        "postgresql://u@127.0.0.1:1/d?password=a&{M}=b",
        // Percent-encoded key.
        "postgresql://u@127.0.0.1:1/d?pass%77ord={M}",
        // Spaces around '=' and a backslash-escaped space.
        "host=127.0.0.1 port=1 password = x\\ {M}",
        // Unknown scheme.
        "mysql://u:{M}@h/d",
        // Bad port after a password.
        "postgresql://u:{M}@127.0.0.1:99999/d",
        // Bad sslmode in a URL with a password.
        "postgresql://u:{M}@127.0.0.1:1/d?sslmode=bogus",
        // Percent-encoded password, well-formed.
        "postgresql://u:{M}%40x@127.0.0.1:1/d",
        // Unterminated quote.
        "host=127.0.0.1 password='{M}",
    ]
    .iter()
    .map(|s| s.replace("{M}", MARK))
    .collect()
}

#[track_caller]
fn assert_no_mark(what: &str, s: &str, text: &str) {
    assert!(
        !text.contains(MARK),
        "the marker password leaked through {what} for {s:?}:\n{text}"
    );
}

#[test]
fn connection_strings_never_leak_their_password() {
    let table = table();
    assert!(table.len() >= 12);
    for s in &table {
        for args in [
            vec!["health"],
            vec!["health", "--format", "json"],
            vec!["migrate", "up"],
            vec!["migrate", "up", "--format", "json"],
        ] {
            let r = opsctl()
                .args(&args)
                .args(["--database-url", s])
                .env("PGCONNECT_TIMEOUT", "2")
                .run();
            assert_ne!(r.code, 0, "{args:?} {s:?} succeeded");
            assert_no_mark(&format!("{args:?} --database-url"), s, &r.all());
            if args.contains(&"json") {
                continue;
            }
            let r = opsctl()
                .args(&args)
                .env("DATABASE_URL", s)
                .env("PGCONNECT_TIMEOUT", "2")
                .run();
            assert_no_mark(&format!("{args:?} with DATABASE_URL"), s, &r.all());
        }
    }
    // The operations log: the same strings as an argument of a sensitive command that
    // fails (the command line and the error are recorded).
    let db = TestDb::with_schema("sec_oplog");
    for s in &table {
        let r = db.opsctl().args(["reindex", "--index", s]).run();
        assert_ne!(r.code, 0, "{s:?}");
        assert_no_mark("reindex --index", s, &r.all());
    }
    let rows = db.sql(
        "SELECT command_line || ' | ' || coalesce(error, '') FROM opsctl.operations \
         WHERE command = 'reindex'",
    );
    assert_eq!(rows.lines().count(), table.len(), "{rows}");
    assert!(rows.contains("****"), "{rows}");
    assert_no_mark("opsctl.operations", "the table", &rows);
}

#[test]
fn redaction_keeps_what_is_not_secret() {
    // Redaction hides the password but still names the host and database.
    let db = TestDb::with_schema("sec_keep");
    let arg = format!("postgresql://ops:Sup3r@{MARK}@dbhost:5432/trading");
    db.opsctl().args(["reindex", "--index", &arg]).run();
    let line = db.sql("SELECT command_line FROM opsctl.operations WHERE command = 'reindex'");
    assert!(line.contains("ops:****@dbhost:5432/trading"), "{line}");
}

fn url_without_password(db: &str) -> String {
    let c = cluster();
    format!(
        "postgresql://postgres@localhost:{}/{db}?sslrootcert={}",
        c.port,
        c.ca.display()
    )
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_password_on_the_command_line_is_warned_about_once() {
    let db = TestDb::new("sec_argv");
    let r = opsctl()
        .args([
            "health",
            "--check",
            "connectivity",
            "--database-url",
            &db.url,
        ])
        .run()
        .success();
    assert_eq!(
        r.stderr
            .matches("--database-url carries a password")
            .count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("/proc"), "{}", r.stderr);
    // The same URL from the environment, or a URL without a password: no warning.
    let r = db
        .opsctl()
        .args(["health", "--check", "connectivity"])
        .run()
        .success();
    assert!(!r.stderr.contains("carries a password"), "{}", r.stderr);
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pgpass");
    write_mode(&pass, &format!("*:*:*:postgres:{PASSWORD}\n"), 0o600);
    let r = opsctl()
        .env("PGPASSFILE", &pass)
        .args(["health", "--check", "connectivity", "--database-url"])
        .arg(url_without_password(&db.name))
        .run()
        .success();
    assert!(!r.stderr.contains("carries a password"), "{}", r.stderr);
}

#[test]
fn password_file_is_used_like_libpq() {
    let db = TestDb::new("sec_pgpass");
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let health = |env: &[(&str, &Path)]| -> Run {
        let mut o = opsctl();
        for (k, v) in env {
            o.env(k, v);
        }
        o.args(["health", "--check", "connectivity", "--database-url"])
            .arg(url_without_password(&db.name))
            .run()
    };
    // Escapes, comments, non-matching lines first, wildcards: the first match wins.
    let pass = dir.path().join("pgpass");
    let text = format!(
        "# comment\n\
         otherhost:*:*:postgres:wrong\n\
         localhost:{port}:otherdb:postgres:wrong\n\
         localhost:{port}:{db}:nobody:wrong\n\
         local\\host:{port}:*:postgres:{pw}\n\
         *:*:*:*:wrong-too\n",
        port = c.port,
        db = db.name,
        pw = PASSWORD.replace('\\', "\\\\").replace(':', "\\:")
    );
    write_mode(&pass, &text, 0o600);
    health(&[("PGPASSFILE", &pass)]).success();
    // ~/.pgpass when PGPASSFILE is not set.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    write_mode(&home.join(".pgpass"), &text, 0o600);
    health(&[("HOME", &home)]).success();
    // Group or world access: ignored with libpq's warning, so authentication fails.
    write_mode(&pass, &text, 0o644);
    let r = health(&[("PGPASSFILE", &pass)]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("has group or world access"),
        "{}",
        r.stderr
    );
    assert!(!r.all().contains(PASSWORD));
    // A file that matches nothing: no password.
    write_mode(&pass, "otherhost:*:*:*:x\n", 0o600);
    let r = health(&[("PGPASSFILE", &pass)]);
    assert_ne!(r.code, 0);
    assert!(r.all().contains("no password was given"), "{}", r.all());
}

/// A bin directory whose pg_dump and pg_restore write their arguments and environment
/// to `<dir>/env-<tool>-<pid>` and then run the real tool.
fn env_dumping_bindir(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("envbin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = cluster().bindir.clone();
    for tool in ["pg_dump", "pg_restore"] {
        let p = bin.join(tool);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\n{{ echo \"ARGS: $*\"; env; }} > {out}/env-{tool}-$$\nexec {real}/{tool} \"$@\"\n",
                out = dir.display(),
                real = real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn child_processes_see_no_unrelated_secret() {
    let db = TestDb::with_schema("sec_child");
    let dir = tempfile::tempdir().unwrap();
    let bin = env_dumping_bindir(dir.path());
    let passphrase = "Passphrase-Mk4-unrelated";
    let token = "Tok3n-Mk5-unrelated";
    let run = |args: &[&str]| -> Run {
        db.opsctl()
            .env("OPSCTL_PG_BINDIR", &bin)
            .env("OPSCTL_PASSPHRASE", passphrase)
            .env("DATABASE_URL", &db.url)
            .env("AWS_SECRET_ACCESS_KEY", token)
            .env("LC_ALL", "C")
            .args(args)
            .arg("--dir")
            .arg(dir.path().join("repo"))
            .run()
    };
    let r = run(&["backup", "create", "--format", "json"]).success();
    let id = r.json()["id"].as_str().unwrap().to_string();
    run(&["backup", "verify", &id]).success();
    let target = format!("{}_r", db.name);
    run(&["restore", &id, "--create", "--target-db", &target]).success();
    let mut seen = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("env-") {
            continue;
        }
        let env = std::fs::read_to_string(&p).unwrap();
        for secret in [passphrase, token, "OPSCTL_DATABASE_URL", "DATABASE_URL="] {
            assert!(!env.contains(secret), "{name} got {secret}:\n{env}");
        }
        let offline = env.starts_with("ARGS: --version") || env.contains("--list");
        let lines: Vec<&str> = env.lines().filter(|l| l.contains(PASSWORD)).collect();
        let mut needs = vec!["PATH=", "LC_ALL=C"];
        if offline {
            // `--version` and `pg_restore --list` do not connect: no password at all.
            assert!(lines.is_empty(), "{name}:\n{env}");
            assert!(!env.contains("PGHOST="), "{name}:\n{env}");
        } else {
            // The one secret it needs, once, as PGPASSWORD.
            assert_eq!(lines, [format!("PGPASSWORD={PASSWORD}")], "{name}:\n{env}");
            needs.extend(["PGHOST=localhost", "PGSSLMODE=verify-full"]);
        }
        // What it needs to run: PATH, the locale, the connection opsctl chose.
        for need in needs {
            assert!(
                env.lines().any(|l| l.starts_with(need)),
                "{name} lacks {need}:\n{env}"
            );
        }
        seen.push(name);
    }
    seen.sort();
    assert!(
        seen.iter().any(|n| n.starts_with("env-pg_dump-")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .filter(|n| n.starts_with("env-pg_restore-"))
            .count()
            >= 2,
        "verify and restore run pg_restore: {seen:?}"
    );
}

#[test]
fn client_key_readable_by_others_is_refused_like_libpq() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "clientca");
    let (crt, key) = make_cert(dir.path(), "client", &ca, "postgres", "DNS:client");
    let db = TestDb::new("sec_key");
    let health = || {
        db.opsctl()
            .env("PGSSLCERT", &crt)
            .env("PGSSLKEY", &key)
            .args(["health", "--check", "connectivity"])
            .run()
    };
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = health().code(2);
    assert!(
        r.all().contains("has group or world access") && r.all().contains("u=rw (0600) or less"),
        "{}",
        r.all()
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    health().success();
}
