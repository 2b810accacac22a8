//! opsctl's own sensitive operations are recorded in opsctl.operations, without secrets.

use crate::common::{TestDb, PASSWORD};

#[test]
fn sensitive_commands_are_recorded_without_secrets() {
    let db = TestDb::with_schema("oplog");
    // The migration that created the table is itself recorded (after the fact).
    assert_eq!(
        db.sql("SELECT outcome FROM opsctl.operations WHERE command = 'migrate up'"),
        "success"
    );
    // A success, with the password given on the command line.
    db.opsctl()
        .env_remove("OPSCTL_DATABASE_URL")
        .args(["vacuum", "--database-url", &db.url])
        .run()
        .success();
    let row = db.sql(
        "SELECT outcome || '|' || command_line || '|' || coalesce(os_user, '') || '|' || db_role \
         FROM opsctl.operations WHERE command = 'vacuum'",
    );
    assert!(row.starts_with("success|"), "{row}");
    assert!(row.contains("vacuum --database-url"), "{row}");
    assert!(
        !row.contains(PASSWORD) && !row.contains("s3cret"),
        "secret recorded: {row}"
    );
    assert!(row.ends_with("|postgres"), "{row}");
    // A failure is recorded with its error.
    db.opsctl()
        .args(["reindex", "--index", "no_such_index"])
        .run()
        .code(1);
    let row = db.sql(
        "SELECT outcome || '|' || coalesce(error, '') FROM opsctl.operations WHERE command = 'reindex'",
    );
    assert!(
        row.starts_with("failure|") && row.contains("no_such_index"),
        "{row}"
    );
    // Dry runs change nothing and are not recorded; reports are not sensitive.
    db.opsctl().args(["vacuum", "--dry-run"]).run().success();
    db.opsctl().args(["migrate", "status"]).run().success();
    assert_eq!(
        db.sql("SELECT count(*) FROM opsctl.operations WHERE command_line LIKE '%dry-run%' OR command LIKE 'migrate status%'"),
        "0"
    );
    // The audit report lists them.
    let r = db
        .opsctl()
        .args(["audit", "report", "--format", "json"])
        .run()
        .success();
    assert!(r.stdout.contains("vacuum"), "{}", r.stdout);
}
