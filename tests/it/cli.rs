//! The on-call engineer's command line (issue 14): examples and option groups in every
//! help, the common flags before or after the command, completions and man pages, one
//! duration parser, dates with or without a zone, JSON logs, and errors in the asked-for
//! `--format`.

use std::time::Duration;

use clap::CommandFactory;
use opsctl::cli::{Cli, Command};

use crate::common::{free_port, opsctl, TestDb};

/// A database URL nothing listens on: commands get past argument parsing, then fail.
const NOWHERE: &str = "postgresql://nobody@127.0.0.1:1/nothing?sslmode=disable";

/// Every command and subcommand, with its path (`["backup", "create"]`).
fn every_command() -> Vec<(String, clap::Command)> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let p = format!("{path} {}", sub.get_name()).trim().to_string();
            out.push((p.clone(), sub.clone()));
            walk(sub, &p, out);
        }
    }
    let mut root = Cli::command();
    root.build();
    let mut out = Vec::new();
    walk(&root, "", &mut out);
    out
}

/// The example lines at the end of a long help.
fn examples(help: &str) -> Vec<String> {
    let Some((_, tail)) = help.rsplit_once("\nExamples:\n") else {
        return Vec::new();
    };
    // A line ending in ` \` goes on in the next one, as in a shell.
    tail.replace(" \\\n", " ")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split("   #").next().unwrap_or(l))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn long_help(path: &str) -> String {
    let r = opsctl().args(path.split(' ')).arg("--help").run().success();
    r.stdout
}

#[test]
fn every_long_help_ends_with_two_or_three_real_examples() {
    let commands = every_command();
    assert!(commands.len() > 30, "{}", commands.len());
    for (path, mut cmd) in commands {
        let help = cmd.render_long_help().to_string();
        let ex = examples(&help);
        assert!(
            (2..=3).contains(&ex.len()),
            "`opsctl {path} --help` should end with 2 or 3 examples, has {ex:?}:\n{help}"
        );
        for e in &ex {
            // Each one is a command line of this very command (perhaps after VAR=… or a pipe).
            assert!(
                e.contains(&format!("opsctl {path}")),
                "`opsctl {path}` example {e:?} runs something else"
            );
            let words: Vec<&str> = e
                .split(" | ")
                .find(|p| p.contains("opsctl "))
                .unwrap()
                .split_whitespace()
                .skip_while(|w| *w != "opsctl")
                .take_while(|w| *w != ">")
                .collect();
            // And clap accepts it as written.
            let args: Vec<std::ffi::OsString> =
                words.iter().map(|w| w.trim_matches('"').into()).collect();
            if let Err(err) = Cli::parse_anywhere(&args) {
                panic!("example {e:?} of `opsctl {path}` does not parse: {err}");
            }
        }
    }
    // The 3 a.m. ones come first, as the binary prints them.
    let drill = examples(&long_help("drill"));
    assert!(
        drill[0].starts_with("opsctl drill --latest --dir "),
        "{drill:?}"
    );
    let archive = examples(&long_help("archive"));
    assert_eq!(archive[0], "opsctl archive --before 2025-01-01 --dry-run");
    // The short help stays short.
    let short = opsctl().args(["drill", "-h"]).run().success().stdout;
    assert!(!short.contains("Examples:"), "{short}");
}

#[test]
fn options_are_grouped_the_same_way_everywhere() {
    for (path, mut cmd) in every_command() {
        if cmd.has_subcommands() && path != "archive" {
            continue;
        }
        let help = cmd.render_long_help().to_string();
        let heading = |name: &str| help.find(&format!("\n{name}:\n"));
        let at = |flag: &str| {
            help.find(&format!("  {flag} "))
                .or_else(|| help.find(&format!("  {flag}\n")))
        };
        let under = |flag: &str| -> Option<&str> {
            let at = at(flag)?;
            ["Arguments", "Options", "Connection and keys", "Output"]
                .into_iter()
                .filter(|h| heading(h).is_some_and(|p| p < at))
                .max_by_key(|h| heading(h))
        };
        // What to act on and how (Options), then connection and keys, then output.
        let order: Vec<usize> = ["Options", "Connection and keys", "Output"]
            .iter()
            .filter_map(|h| heading(h))
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "`opsctl {path} --help`: groups out of order:\n{help}"
        );
        for (flag, group) in [
            ("--database-url", "Connection and keys"),
            ("--sslmode", "Connection and keys"),
            ("--key-file", "Connection and keys"),
            ("--passphrase-file", "Connection and keys"),
            ("--format", "Output"),
            ("--log-format", "Output"),
            ("--policy", "Options"),
            ("--dry-run", "Options"),
            ("--lock-wait", "Options"),
        ] {
            if at(flag).is_some() {
                assert_eq!(
                    under(flag),
                    Some(group),
                    "`opsctl {path} --help`: {flag} not under {group}:\n{help}"
                );
            }
        }
    }
}

#[test]
fn what_to_act_on_comes_before_the_policy() {
    let help = long_help("archive");
    let at = |f: &str| {
        help.find(&format!("  {f} "))
            .unwrap_or_else(|| panic!("{f}"))
    };
    assert!(at("--before") < at("--policy"), "{help}");
    let help = long_help("vacuum");
    let at = |f: &str| {
        help.find(&format!("  {f} "))
            .unwrap_or_else(|| panic!("{f}"))
    };
    assert!(at("--table") < at("--policy"), "{help}");
}

#[test]
fn common_flags_are_accepted_before_or_after_the_command() {
    let db = TestDb::with_schema("cli_global");
    let before = opsctl()
        .args([
            "--database-url",
            &db.url,
            "--format",
            "json",
            "migrate",
            "status",
        ])
        .run();
    let after = opsctl()
        .args([
            "migrate",
            "status",
            "--database-url",
            &db.url,
            "--format",
            "json",
        ])
        .run();
    assert_eq!(before.code, 0, "{}{}", before.stdout, before.stderr);
    assert_eq!(before.json(), after.json());
    // `=` forms, a policy given first, and the report formats too.
    let r = opsctl()
        .args([&format!("--database-url={}", db.url), "--policy"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/opsctl.toml"))
        .args(["--format=json", "health", "--check", "connectivity"])
        .run()
        .success();
    assert_eq!(r.json()["checks"][0]["id"], "connectivity", "{}", r.stdout);
    // Policy and output flags before a nested command; the key too.
    let dir = tempfile::tempdir().unwrap();
    let r = opsctl()
        .args(["--format", "json", "--policy"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/opsctl.toml"))
        .args(["backup", "list", "--dir"])
        .arg(dir.path())
        .run()
        .success();
    assert!(r.json().is_array() || r.json().is_object(), "{}", r.stdout);
    let r = opsctl()
        .args([
            "--key-file",
            "/nonexistent.key",
            "backup",
            "verify",
            "x",
            "--dir",
        ])
        .arg(dir.path())
        .run();
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains("unexpected argument"), "{}", r.stderr);
    // A flag the command does not have is still refused, after the move too.
    let r = opsctl().args(["--key-file", "k", "health"]).run();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("--key-file"), "{}", r.stderr);
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _opsctl"),
        ("zsh", "#compdef opsctl"),
        ("fish", "complete -c opsctl"),
    ] {
        let r = opsctl().args(["completions", shell]).run().success();
        assert!(r.stdout.contains(marker), "{shell}:\n{}", r.stdout);
        for word in ["drill", "archive", "lock-wait", "database-url"] {
            assert!(r.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    let r = opsctl().args(["completions", "tcsh"]).run().code(2);
    assert!(r.stderr.contains("bash"), "{}", r.stderr);
}

#[test]
fn man_page_and_one_page_per_command() {
    let r = opsctl().arg("man").run().success();
    assert!(
        r.stdout.starts_with(".ie \\n(.g .ds Aq") || r.stdout.contains(".TH opsctl 1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(".SH NAME") && r.stdout.contains("opsctl\\-drill"),
        "{}",
        r.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let r = opsctl().args(["man", "--dir"]).arg(&out).run().success();
    let pages = every_command().len() + 1;
    assert!(
        r.stdout.contains(&format!("wrote {pages} manual pages")),
        "{}",
        r.stdout
    );
    for name in [
        "opsctl.1",
        "opsctl-drill.1",
        "opsctl-backup-create.1",
        "opsctl-migrate-up.1",
    ] {
        let text =
            std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH "), "{name}");
    }
    let page = std::fs::read_to_string(out.join("opsctl-drill.1")).unwrap();
    assert!(
        page.contains("\\-\\-latest") && page.contains("Examples:"),
        "{page}"
    );
}

/// The lock wait the parsed command line carries.
fn lock_wait(args: &[&str]) -> Result<Duration, String> {
    let mut argv = vec!["opsctl"];
    argv.extend_from_slice(args);
    let argv: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
    let cli = Cli::parse_anywhere(&argv).map_err(|e| e.to_string())?;
    use opsctl::cli::{BackupCommand, MigrateCommand};
    Ok(match cli.command {
        Command::Migrate(m) => match m.command {
            MigrateCommand::Up(a) => a.lock_wait,
            MigrateCommand::Baseline(a) => a.lock_wait,
            MigrateCommand::Resolve(a) => a.lock_wait,
            _ => unreachable!(),
        },
        Command::Backup(b) => match b.command {
            BackupCommand::Create(a) => a.lock_wait,
            _ => unreachable!(),
        },
        Command::Archive(a) => a.lock_wait,
        Command::Vacuum(a) => a.lock_wait.unwrap(),
        Command::Reindex(a) => a.lock_wait.unwrap(),
        _ => unreachable!(),
    })
}

#[test]
fn every_duration_flag_takes_the_same_forms() {
    let commands: [&[&str]; 7] = [
        &["migrate", "up"],
        &["migrate", "baseline", "--version", "1"],
        &["migrate", "resolve", "1", "--applied"],
        &["backup", "create"],
        &["archive", "--before", "2025-01-01"],
        &["vacuum"],
        &["reindex"],
    ];
    for cmd in commands {
        for (text, secs) in [("90", 90), ("60s", 60), ("5m", 300), ("1h30m", 5400)] {
            let mut args = cmd.to_vec();
            args.extend(["--lock-wait", text]);
            assert_eq!(
                lock_wait(&args),
                Ok(Duration::from_secs(secs)),
                "opsctl {} --lock-wait {text}",
                cmd.join(" ")
            );
        }
        // One placeholder in the help.
        let words = if ["migrate", "backup"].contains(&cmd[0]) {
            2
        } else {
            1
        };
        let help = long_help(&cmd[..words].join(" "));
        assert!(
            help.contains("--lock-wait <DURATION>"),
            "{}:\n{help}",
            cmd.join(" ")
        );
        // One error message.
        let r = opsctl().args(cmd).args(["--lock-wait", "5x"]).run().code(2);
        assert!(
            r.stderr.contains(
                "invalid duration \"5x\": unknown unit \"x\" (examples: 90s, 30m, 2h, 1h30m, 7d)"
            ),
            "{}: {}",
            cmd.join(" "),
            r.stderr
        );
    }
    // Policy keys go through the same parser.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(
        &p,
        "[maintenance]\nlock_wait = \"1h30m\"\nretry_backoff = \"90\"\n\n\
         [scheduler]\nmax_wait = \"5m\"\nstop_grace = \"60s\"\n",
    )
    .unwrap();
    let r = opsctl().args(["policy", "check"]).arg(&p).run();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    std::fs::write(&p, "[maintenance]\nlock_wait = \"5x\"\n").unwrap();
    let r = opsctl().args(["policy", "check"]).arg(&p).run().code(1);
    assert!(
        r.stderr.contains("2:1") && r.stderr.contains("invalid duration \"5x\""),
        "{}",
        r.stderr
    );
}

#[test]
fn archive_dates_with_or_without_a_zone_and_why_a_date_is_invalid() {
    let help = long_help("archive");
    assert!(help.contains("without a zone is UTC"), "{help}");
    let r = opsctl()
        .args(["archive", "--before", "2020-02-30", "--dry-run"])
        .run()
        .code(2);
    assert!(
        r.stderr.contains("February 2020 has 29 days"),
        "{}",
        r.stderr
    );
    let r = opsctl()
        .args(["archive", "--before", "2025-06-31T00:00:00Z", "--dry-run"])
        .run()
        .code(2);
    assert!(r.stderr.contains("June 2025 has 30 days"), "{}", r.stderr);

    let db = TestDb::with_schema("cli_dates");
    let plan = |before: &str| {
        let r = db
            .opsctl()
            .args([
                "archive",
                "--dry-run",
                "--format",
                "json",
                "--before",
                before,
            ])
            .run()
            .success();
        r.json()
    };
    let naive = plan("2025-06-01T00:00:00");
    assert_eq!(naive, plan("2025-06-01"));
    assert_eq!(naive, plan("2025-06-01T02:00:00+02:00"));
    assert_ne!(naive, plan("2025-06-01T12:00:00"), "the time of day counts");
}

#[test]
fn json_logs_carry_errors_warnings_and_serve_messages() {
    let r = opsctl()
        .args(["--log-format", "json", "archive", "--before", "2020-02-30"])
        .run()
        .code(2);
    let lines: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert_eq!(lines[0]["level"], "ERROR");
    assert!(lines[0]["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("February 2020 has 29 days"));

    // A warning (an unencrypted connection), then the error.
    let r = opsctl()
        .args([
            "--log-format",
            "json",
            "--database-url",
            NOWHERE,
            "migrate",
            "status",
        ])
        .run()
        .code(1);
    let levels: Vec<String> = r
        .stderr
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            v["level"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        levels.contains(&"WARN".to_string()) && levels.contains(&"ERROR".to_string()),
        "{}",
        r.stderr
    );

    // serve: "listening on", as a JSON line.
    let port = free_port();
    let mut child = opsctl()
        .args([
            "serve",
            "--log-format",
            "json",
            "--database-url",
            NOWHERE,
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .spawn();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "INFO");
    assert!(
        v["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("listening on"),
        "{line}"
    );
}

#[test]
fn errors_in_the_asked_for_format_with_the_exit_code_unchanged() {
    // Nagios: a configuration error is UNKNOWN on stdout, exit 3.
    let r = opsctl()
        .args([
            "health",
            "--format",
            "nagios",
            "--policy",
            "/nonexistent/policy.toml",
        ])
        .run()
        .code(3);
    assert!(r.stdout.starts_with("OPSCTL UNKNOWN: "), "{}", r.stdout);
    assert!(
        r.stdout.contains("/nonexistent/policy.toml"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    let r = opsctl()
        .args([
            "report",
            "pool",
            "--format",
            "nagios",
            "--policy",
            "/nonexistent/policy.toml",
        ])
        .run()
        .code(3);
    assert!(r.stdout.starts_with("OPSCTL UNKNOWN: "), "{}", r.stdout);

    // JSON: the error on stdout as JSON, the same exit code as in text.
    for args in [
        vec!["migrate", "status", "--database-url", NOWHERE],
        vec!["archive", "--before", "2020-02-30"],
        vec!["partition", "list", "--database-url", NOWHERE],
    ] {
        let text = opsctl().args(&args).run();
        let json = opsctl().args(&args).args(["--format", "json"]).run();
        assert_eq!(json.code, text.code, "{args:?}");
        assert_ne!(json.code, 0, "{args:?}");
        assert!(text.stdout.is_empty(), "{args:?}: {}", text.stdout);
        let v = json.json();
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{args:?}: {v}"
        );
        assert!(json.stderr.contains("error:"), "{args:?}: {}", json.stderr);
    }
}

#[test]
fn restore_clean_is_described_alike_in_help_and_error() {
    let db = TestDb::with_schema("cli_clean");
    let target = TestDb::new("cli_clean_t");
    target.sql("CREATE TABLE keep_me (x int)");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("backup.key");
    opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .run()
        .success();
    let created = db
        .opsctl()
        .args(["backup", "create", "--format", "json", "--key-file"])
        .arg(&key)
        .arg("--dir")
        .arg(dir.path().join("repo"))
        .run()
        .success()
        .json();
    let file = created["path"].as_str().unwrap();
    let r = db
        .opsctl()
        .args(["restore", file, "--target-db", &target.name, "--key-file"])
        .arg(&key)
        .run()
        .code(1);
    let help = long_help("restore");
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let said = "restore into a staging database, then swap it in for the target once the restore succeeded (objects not in the backup are gone; a failure leaves the target untouched)";
    assert!(
        flat(&help).contains(&format!(
            "Replace a non-empty target database as a whole: {said}"
        )),
        "{help}"
    );
    let err = flat(&r.stderr);
    assert!(
        err.contains("pass --clean to replace the target database as a whole"),
        "{err}"
    );
    for part in [
        "staging database",
        "swapped in for the target once the restore succeeded",
        "objects not in the backup are gone",
        "a failure leaves the target untouched",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
}

#[test]
fn readme_commands_table_shows_the_key_where_it_is_needed() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let row = |cmd: &str| -> String {
        readme
            .lines()
            .find(|l| l.starts_with(&format!("| `opsctl {cmd}")))
            .unwrap_or_else(|| panic!("no README row for {cmd}"))
            .to_string()
    };
    for cmd in [
        "backup create",
        "backup verify",
        "backup rekey",
        "restore",
        "drill",
        "archive restore",
    ] {
        let r = row(cmd);
        assert!(
            r.contains("--key-file") && r.contains("OPSCTL_KEY_FILE"),
            "{r}"
        );
    }
    for cmd in ["completions", "man"] {
        row(cmd);
    }
    assert!(
        readme.contains("opsctl completions bash"),
        "README: completions install"
    );
    assert!(readme.contains("opsctl man --dir"), "README: man install");
}
