//! The benchmark script cannot rot: it runs here on a tiny data set with the test build.

use std::process::Command;

#[test]
fn bench_script_runs_on_a_small_data_set() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("bench.md");
    let run = Command::new("bash")
        .arg(format!("{root}/scripts/bench.sh"))
        .args([
            "--rows",
            "2000",
            "--reps",
            "1",
            "--opsctl",
            env!("CARGO_BIN_EXE_opsctl"),
            "--out",
        ])
        .arg(&report)
        .env_remove("OPSCTL_DATABASE_URL")
        .output()
        .expect("cannot run scripts/bench.sh");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench.sh failed:\n{stderr}");
    let text = std::fs::read_to_string(&report).unwrap();
    for row in [
        "### Data set `audit`: 2000 trades, audit trigger on",
        "### Data set `lean`: 2000 trades, audit trigger off",
        "| audit.logged_actions |",
        "| `opsctl backup create` (zstd 3, default) |",
        "| `pg_dump -Fc \\| openssl enc -aes-256-cbc -pbkdf2` |",
        "| `pg_dump -Fc -Z0 > file` (floor) |",
        "| `opsctl backup create --compression gzip` (3) |",
        "| time ≤ 0.70× hand pipeline |",
        "| time ≤ 1.15× floor |",
        "| size ≤ 1.10× hand pipeline |",
        "| peak RSS < 32 MiB |",
        "| `opsctl restore` (zstd backup) |",
        "| `opsctl restore` (gzip backup) |",
        "| restore ≤ 1.05× pg_restore |",
        "| verify (decrypt + decompress) zstd / gzip |",
        "| import 1000 trades, audit trigger on (s) |",
        "| import 1000 trades, issue 3's schema: trigger off (s) |",
        "| archive 6 whole months,",
        "| archive partial month,",
        "| health, 500 partitions (s) |",
        "| trade inserts/s, audit trigger on / off |",
        "| backup create | ",
        "| `backup create --repo` |",
        "| `restore ID --repo` (fresh database) |",
        "| local directory → S3 |",
        "| backup create to S3 ≤ 1.15× to a local directory |",
        "| peak RSS < 64 MiB (largest of the six commands) |",
    ] {
        assert!(text.contains(row), "missing {row:?} in:\n{text}");
    }
    // Every measured figure is a number, and every ratio came out.
    assert!(!text.contains("| n/a |"), "a figure is missing:\n{text}");
    for row in [
        "| `opsctl backup create` (zstd 3, default) |",
        "| `opsctl restore` (zstd backup) |",
    ] {
        let line = text.lines().find(|l| l.starts_with(row)).unwrap();
        let secs: f64 = line.split(" | ").nth(1).unwrap().trim().parse().unwrap();
        assert!(secs > 0.0, "{line}");
    }
    // The audit data set really holds the audit log: one row image per trade at least.
    let audit = text
        .lines()
        .find(|l| l.starts_with("| audit.logged_actions |"))
        .unwrap();
    let rows: u64 = audit
        .split(" | ")
        .nth(1)
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(rows >= 2000, "{audit}");
}
