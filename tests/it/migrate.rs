//! `opsctl migrate`: up, status, verify, baseline, resolve, locking, drift, failures.

use crate::common::TestDb;

#[test]
fn fresh_up_then_status_clean_and_second_up_noop() {
    let db = TestDb::new("mig_fresh");
    let r = db.opsctl().args(["migrate", "up"]).run().success();
    assert!(
        r.stdout.contains("applied V1 trading_schema"),
        "{}",
        r.all()
    );
    let st = db
        .opsctl()
        .args(["migrate", "status", "--format", "json"])
        .run()
        .success();
    let j = st.json();
    assert_eq!(j["up_to_date"], true);
    assert_eq!(j["pending"], 0);
    let r = db.opsctl().args(["migrate", "up"]).run().success();
    assert!(r.stdout.contains("nothing to apply"), "{}", r.all());
}
