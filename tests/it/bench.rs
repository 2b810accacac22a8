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
        "| backup create (s) |",
        "| backup file size (bytes) |",
        "| restore (s) |",
        "| import 1000 trades, audit trigger on (s) |",
        "| import 1000 trades, issue 3's schema: trigger off (s) |",
        "| archive 6 whole months,",
        "| archive partial month,",
        "| health, 500 partitions (s) |",
        "| trade inserts/s, audit trigger on / off |",
        "| backup create | ",
    ] {
        assert!(text.contains(row), "missing {row:?} in:\n{text}");
    }
    // Every measured figure is a number, and every ratio came out.
    assert!(!text.contains("| n/a |"), "a ratio is missing:\n{text}");
    let create = text
        .lines()
        .find(|l| l.starts_with("| backup create (s) |"))
        .unwrap();
    let secs: f64 = create.split('|').nth(2).unwrap().trim().parse().unwrap();
    assert!(secs > 0.0, "{create}");
}
