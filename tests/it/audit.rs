//! `opsctl audit seal | verify | report`, the audit triggers, the roles and row-level
//! security of migrations V40–V42, and opsctl's own operations log.

use crate::common::{cluster, opsctl, TestDb};

/// Seals until nothing waits: transactions of other tests on the shared cluster can
/// hold the xid horizon back for a moment.
fn seal_all(db: &TestDb) -> serde_json::Value {
    for _ in 0..50 {
        let out = db
            .opsctl()
            .args(["audit", "seal", "--format", "json"])
            .run()
            .success()
            .json();
        if out["rows_waiting"] == 0 {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("audit rows stayed unsealed: a transaction kept the xid horizon back");
}

fn seed(db: &TestDb) {
    db.sql(
        "SET app.actor = 'seeder';
         INSERT INTO users (id, username, email) VALUES (1, 'alice', 'a@x'), (2, 'bob', 'b@x');
         INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time)
           VALUES ('t-a1', 1, 'BTC', 'buy', 1.5, 100.12345678, '2026-01-05 10:00'),
                  ('t-a2', 1, 'ETH', 'sell', 2, 50, '2026-01-06 10:00'),
                  ('t-b1', 2, 'BTC', 'buy', 3, 101, '2026-01-07 10:00');
         INSERT INTO positions (user_id, symbol, quantity, entry_price) VALUES (1, 'BTC', 1, 1), (2, 'ETH', 2, 2);
         INSERT INTO account_totals (user_id, \"timestamp\", realized_pnl) VALUES (1, now(), 1), (2, now(), 2);",
    );
}

#[test]
fn insert_update_delete_truncate_are_audited_with_who_what_old_new() {
    let db = TestDb::with_schema("audit_dml");
    seed(&db);
    db.sql(
        "SET app.actor = 'jane@desk'; SET application_name = 'trader-ui';
         UPDATE trades SET exit_price = 120 WHERE id = 't-a1';
         DELETE FROM trades WHERE id = 't-a2';
         TRUNCATE positions;",
    );
    let ins = db.sql(
        "SELECT action, schema_name, relname, session_user_name, app_actor, row_new->>'quantity', \
         row_old IS NULL, transaction_id > 0, action_tstamp_stm >= action_tstamp_tx \
         FROM audit.logged_actions WHERE table_name = 'trades' AND action = 'I' AND row_new->>'id' = 't-a1'",
    );
    assert_eq!(
        ins,
        "I|public|trades_default|postgres|seeder|1.50000000|t|t|t"
    );
    let upd = db.sql(
        "SELECT app_actor, application_name, row_old->>'exit_price' IS NULL, row_new->>'exit_price', \
         client_addr IS NOT NULL \
         FROM audit.logged_actions WHERE table_name = 'trades' AND action = 'U'",
    );
    assert_eq!(upd, "jane@desk|trader-ui|t|120.00000000|t");
    let del = db.sql(
        "SELECT app_actor, row_old->>'id', row_old->>'symbol', row_new IS NULL \
         FROM audit.logged_actions WHERE table_name = 'trades' AND action = 'D'",
    );
    assert_eq!(del, "jane@desk|t-a2|ETH|t");
    let trunc = db.sql(
        "SELECT table_name, app_actor, row_old IS NULL AND row_new IS NULL \
         FROM audit.logged_actions WHERE action = 'T'",
    );
    assert_eq!(trunc, "positions|jane@desk|t");
    // One statement's rows share its transaction id and timestamps.
    let same_tx = db.sql(
        "SELECT count(DISTINCT transaction_id), count(DISTINCT action_tstamp_tx) \
         FROM audit.logged_actions WHERE app_actor = 'seeder'",
    );
    assert_eq!(same_tx, "1|1");
    // With no monthly partition the rows land in the default partition.
    let n = db.sql("SELECT count(*) FROM audit.logged_actions_default");
    assert_eq!(n, "12");
    // The report counts them by table, operation and actor.
    let r = db
        .opsctl()
        .args(["audit", "report", "--since", "1h", "--format", "json"])
        .run()
        .success()
        .json();
    let changes = r["changes"].as_array().unwrap();
    let find = |table: &str, op: &str, actor: &str| {
        changes
            .iter()
            .find(|c| c["table"] == table && c["operation"] == op && c["actor"] == actor)
            .map(|c| c["count"].as_i64().unwrap())
    };
    assert_eq!(find("trades", "INSERT", "seeder"), Some(3));
    assert_eq!(find("trades", "DELETE", "jane@desk"), Some(1));
    assert_eq!(find("positions", "TRUNCATE", "jane@desk"), Some(1));
    assert_eq!(r["trade_deletes_total"], 1);
    assert_eq!(r["trade_deletes"][0]["trade_id"], "t-a2");
    assert_eq!(r["total_changes"], 12);
}

#[test]
fn audit_triggers_are_security_definer_with_fixed_search_path() {
    let db = TestDb::with_schema("audit_defs");
    let out = db.sql(
        "SELECT p.proname, p.prosecdef, p.proconfig::text, r.rolname, r.rolcanlogin \
         FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner \
         WHERE p.pronamespace = 'audit'::regnamespace AND p.proname IN ('log_row', 'log_truncate') ORDER BY 1",
    );
    assert_eq!(
        out,
        "log_row|t|{\"search_path=pg_catalog, pg_temp\"}|opsctl_audit_owner|f\n\
         log_truncate|t|{\"search_path=pg_catalog, pg_temp\"}|opsctl_audit_owner|f"
    );
    let owner = db.sql("SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'audit'");
    assert_eq!(owner, "opsctl_audit_owner");
}

#[test]
fn the_application_role_cannot_alter_audit_rows() {
    let db = TestDb::with_schema("audit_app_ro");
    seed(&db);
    seal_all(&db);
    for stmt in [
        "UPDATE audit.logged_actions SET app_actor = 'x'",
        "DELETE FROM audit.logged_actions",
        "TRUNCATE audit.logged_actions",
        "DELETE FROM audit.logged_actions_default",
        "INSERT INTO audit.logged_actions (action_tstamp_tx, action_tstamp_stm, schema_name, \
         table_name, relname, action, transaction_id, session_user_name) \
         VALUES (now(), now(), 'public', 'trades', 'trades', 'I', 1, 'x')",
        "DELETE FROM audit.seals",
    ] {
        let out = cluster().psql_output(&db.name, &format!("SET ROLE opsctl_app; {stmt}"));
        assert!(!out.status.success(), "{stmt} succeeded as opsctl_app");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("permission denied"), "{stmt}: {err}");
    }
    // Even the superuser is refused unless the guard is switched off deliberately.
    let out = cluster().psql_output(&db.name, "UPDATE audit.logged_actions SET app_actor = 'x'");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"));
    let out = cluster().psql_output(&db.name, "DELETE FROM audit.seals");
    assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"));
    assert_eq!(
        db.sql("SELECT count(*) FROM audit.logged_actions WHERE app_actor = 'x'"),
        "0"
    );
    // Yet the application's own writes are audited through the SECURITY DEFINER trigger.
    db.sql(
        "SET ROLE opsctl_app; SET app.user_id = '1'; SET app.actor = 'app';
         INSERT INTO positions (user_id, symbol, quantity, entry_price) VALUES (1, 'SOL', 1, 1);",
    );
    assert_eq!(
        db.sql("SELECT session_user_name, app_actor FROM audit.logged_actions WHERE row_new->>'symbol' = 'SOL'"),
        "postgres|app"
    );
}

fn verify_json(db: &TestDb, code: i32) -> serde_json::Value {
    db.opsctl()
        .args(["audit", "verify", "--format", "json"])
        .run()
        .code(code)
        .json()
}

#[test]
fn verify_passes_on_an_intact_chain_across_several_seals() {
    let db = TestDb::with_schema("audit_intact");
    let v = verify_json(&db, 0);
    assert_eq!(v["seals"], 0);
    seed(&db);
    let mut s = serde_json::Value::Null;
    for _ in 0..50 {
        s = db
            .opsctl()
            .args(["audit", "seal", "--batch-size", "4", "--format", "json"])
            .run()
            .success()
            .json();
        if s["rows_waiting"] == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(s["seals"].as_array().unwrap().len() >= 3, "{s}");
    db.sql("UPDATE trades SET exit_price = 1 WHERE id = 't-b1'");
    let s2 = seal_all(&db);
    let v = verify_json(&db, 0);
    assert_eq!(v["intact"], true);
    assert_eq!(v["rows_verified"], 10);
    assert_eq!(v["unsealed_rows"], 0);
    assert_eq!(v["head_hash"], s2["head_hash"]);
    // Nothing new: a second seal writes nothing and keeps the head.
    let s3 = seal_all(&db);
    assert_eq!(s3["seals"].as_array().unwrap().len(), 0);
    assert_eq!(s3["head_hash"], s2["head_hash"]);
    let text = db.opsctl().args(["audit", "verify"]).run().success();
    assert!(text.stdout.contains("audit verify: OK"), "{}", text.stdout);
}

#[test]
fn verify_names_a_changed_row() {
    let db = TestDb::with_schema("audit_changed");
    seed(&db);
    seal_all(&db);
    let id = db
        .sql("SELECT id FROM audit.logged_actions WHERE row_new->>'id' = 't-b1' AND action = 'I'");
    db.sql(&format!(
        "SET session_replication_role = replica;
         UPDATE audit.logged_actions SET row_new = jsonb_set(row_new, '{{quantity}}', '\"30.00000000\"') WHERE id = {id}"
    ));
    let v = verify_json(&db, 1);
    assert_eq!(v["intact"], false);
    assert_eq!(v["first_problem"]["kind"], "changed");
    assert_eq!(v["first_problem"]["row_id"].to_string(), id);
    let text = db.opsctl().args(["audit", "verify"]).run().code(1);
    assert!(
        text.stdout
            .contains(&format!("audit row {id} was changed after it was sealed")),
        "{}",
        text.stdout
    );
}

#[test]
fn verify_names_a_deleted_row() {
    let db = TestDb::with_schema("audit_deleted");
    seed(&db);
    seal_all(&db);
    let id = db.sql(
        "SELECT id FROM audit.logged_actions WHERE table_name = 'positions' ORDER BY id LIMIT 1",
    );
    db.sql(&format!(
        "SET session_replication_role = replica; DELETE FROM audit.logged_actions WHERE id = {id}"
    ));
    let v = verify_json(&db, 1);
    assert_eq!(v["first_problem"]["kind"], "deleted");
    assert_eq!(v["first_problem"]["row_id"].to_string(), id);
    let text = db.opsctl().args(["audit", "verify"]).run().code(1);
    assert!(text.stdout.contains(&format!("audit row {id} was deleted")));
}

#[test]
fn verify_names_a_row_inserted_out_of_chain() {
    let db = TestDb::with_schema("audit_inserted");
    seed(&db);
    seal_all(&db);
    // A forged row inside the sealed range (a sealed transaction's id, a fresh row id).
    db.sql(
        "INSERT INTO audit.logged_actions (id, action_tstamp_tx, action_tstamp_stm, schema_name, \
         table_name, relname, action, transaction_id, session_user_name, row_old) \
         SELECT 5000, action_tstamp_tx, action_tstamp_stm, 'public', 'trades', 'trades_default', 'D', \
         transaction_id, 'alice', '{\"id\": \"t-zz\"}' FROM audit.logged_actions ORDER BY id LIMIT 1",
    );
    let v = verify_json(&db, 1);
    assert_eq!(v["first_problem"]["kind"], "inserted");
    assert_eq!(v["first_problem"]["row_id"], 5000);
    let text = db.opsctl().args(["audit", "verify"]).run().code(1);
    assert!(
        text.stdout
            .contains("audit row 5000 was inserted out of chain"),
        "{}",
        text.stdout
    );
}

#[test]
fn verify_catches_a_row_claiming_a_future_transaction_and_a_rewritten_seal() {
    let db = TestDb::with_schema("audit_forged");
    seed(&db);
    seal_all(&db);
    db.sql(
        "INSERT INTO audit.logged_actions (id, action_tstamp_tx, action_tstamp_stm, schema_name, \
         table_name, relname, action, transaction_id, session_user_name) \
         VALUES (6000, now(), now(), 'public', 'trades', 'trades', 'I', 999999999999, 'x')",
    );
    let v = verify_json(&db, 1);
    assert_eq!(v["first_problem"]["kind"], "future_transaction");
    assert_eq!(v["first_problem"]["row_id"], 6000);

    let db = TestDb::with_schema("audit_seal_rw");
    seed(&db);
    seal_all(&db);
    db.sql(
        "SET session_replication_role = replica; UPDATE audit.seals SET hash = repeat('a', 64) WHERE seal_id = 1",
    );
    let v = verify_json(&db, 1);
    assert_eq!(v["first_problem"]["kind"], "broken_seal");
    assert_eq!(v["first_problem"]["seal_id"], 1);
}

#[test]
fn the_application_role_sees_and_writes_only_its_own_rows() {
    let db = TestDb::with_schema("audit_rls");
    seed(&db);
    let role = format!("t_app_{}", std::process::id());
    let pw = "App-pw-9x";
    cluster().psql(
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
             CREATE ROLE {role} LOGIN PASSWORD '{pw}' IN ROLE opsctl_app; END IF; END $$"
        ),
    );
    let app = |sql: &str| {
        std::process::Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGHOST", "localhost")
            .env("PGPORT", cluster().port.to_string())
            .env("PGUSER", &role)
            .env("PGPASSWORD", pw)
            .env("PGDATABASE", &db.name)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &cluster().ca)
            .env("PGOPTIONS", "-c app.user_id=1")
            .output()
            .unwrap()
    };
    let out = app("SELECT string_agg(id, ',' ORDER BY id) FROM trades");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t-a1,t-a2");
    let out = app(
        "SELECT (SELECT count(*) FROM positions) || '/' || (SELECT count(*) FROM account_totals)",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1/1");
    // Writing another user's row is refused; updating them touches nothing.
    let out =
        app("INSERT INTO positions (user_id, symbol, quantity, entry_price) VALUES (2, 'X', 1, 1)");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("row-level security"));
    let out = app("UPDATE trades SET exit_price = 1 WHERE user_id = 2 RETURNING id");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
    let out =
        app("INSERT INTO positions (user_id, symbol, quantity, entry_price) VALUES (1, 'X', 1, 1)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without app.user_id the role sees nothing.
    let out = db.sql("SET ROLE opsctl_app; SELECT count(*) FROM trades");
    assert_eq!(out, "0");
    // The table owner and other roles keep seeing every row (RLS enabled, not forced).
    let other = format!("t_reader_{}", std::process::id());
    cluster().psql(
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{other}') THEN \
             CREATE ROLE {other} NOLOGIN; END IF; END $$"
        ),
    );
    db.sql(&format!("GRANT SELECT ON trades TO {other}"));
    assert_eq!(
        db.sql(&format!("SET ROLE {other}; SELECT count(*) FROM trades")),
        "3"
    );
    let forced = db.sql(
        "SELECT string_agg(relname || ':' || relrowsecurity || relforcerowsecurity, ',' ORDER BY relname) \
         FROM pg_class WHERE relname IN ('trades', 'positions', 'account_totals')",
    );
    assert_eq!(
        forced,
        "account_totals:truefalse,positions:truefalse,trades:truefalse"
    );
}

#[test]
fn the_maintenance_role_bypasses_rls_so_a_dump_holds_every_row() {
    let db = TestDb::with_schema("audit_maint");
    seed(&db);
    let role = format!("t_maint_{}", std::process::id());
    let pw = "Maint-pw-4y";
    cluster().psql(
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
             CREATE ROLE {role} LOGIN PASSWORD '{pw}' IN ROLE opsctl_maintenance; END IF; END $$"
        ),
    );
    // Membership does not inherit BYPASSRLS: the dump runs with --role.
    let out = std::process::Command::new(cluster().bindir.join("pg_dump"))
        .args([
            "--data-only",
            "--role=opsctl_maintenance",
            "-t",
            "trades*",
            "-t",
            "positions",
        ])
        .env("PGHOST", "localhost")
        .env("PGPORT", cluster().port.to_string())
        .env("PGUSER", &role)
        .env("PGPASSWORD", pw)
        .env("PGDATABASE", &db.name)
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &cluster().ca)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in ["t-a1", "t-a2", "t-b1"] {
        assert!(dump.contains(t), "{t} missing from the dump");
    }
    assert_eq!(
        db.sql("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'opsctl_maintenance'"),
        "t"
    );
    assert_eq!(
        db.sql("SELECT pg_has_role('opsctl_monitor', 'pg_monitor', 'MEMBER')"),
        "t"
    );
    // The monitoring role reads the chain status but not the audited rows.
    assert!(db
        .sql("SET ROLE opsctl_monitor; SELECT seals FROM audit.chain_summary()")
        .starts_with('0'));
    let out = cluster().psql_output(
        &db.name,
        "SET ROLE opsctl_monitor; SELECT count(*) FROM audit.logged_actions",
    );
    assert!(!out.status.success());
}

#[test]
fn opsctl_operations_are_recorded_without_secrets() {
    let db = TestDb::with_schema("audit_oplog");
    seed(&db);
    // The secret travels on the command line here, on purpose.
    let run = crate::common::opsctl()
        .args(["audit", "seal", "--database-url", &db.url, "--format=json"])
        .run()
        .success();
    assert!(
        run.json()["rows_sealed"].as_i64().unwrap() > 0
            || run.json()["rows_waiting"].as_i64().unwrap() > 0
    );
    let r = db
        .opsctl()
        .args(["audit", "report", "--format", "json"])
        .run()
        .success();
    assert!(!r.stdout.contains(crate::common::PASSWORD), "{}", r.stdout);
    let ops = r.json()["operations"].as_array().unwrap().clone();
    let op = ops
        .iter()
        .find(|o| o["command"] == "audit seal")
        .expect("the seal is in the report");
    assert_eq!(op["outcome"], "success");
    assert_eq!(op["db_role"], "postgres");
    assert!(op["finished_at"].is_string());
    assert!(op["host"].is_string());
    let line = op["command_line"].as_str().unwrap();
    assert!(
        line.contains("audit seal --database-url **** --format=json"),
        "{line}"
    );
    let stored = db.sql("SELECT command_line FROM opsctl.operations");
    assert!(!stored.contains(crate::common::PASSWORD));
    assert!(!stored.contains("%21"), "{stored}");
    // The text report lists it too.
    let t = db.opsctl().args(["audit", "report"]).run().success();
    // The seal, and the `migrate up` that made this database.
    assert!(t.stdout.contains("opsctl operations (2)"), "{}", t.stdout);
    assert!(t.stdout.contains("success"), "{}", t.stdout);
}

#[test]
fn a_failed_seal_is_recorded_as_a_failure() {
    let db = TestDb::with_schema("audit_opfail");
    seed(&db);
    db.sql(
        "CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN RAISE EXCEPTION 'disk on fire'; END$$;
         CREATE TRIGGER boom BEFORE INSERT ON audit.seals FOR EACH ROW EXECUTE FUNCTION public.boom();",
    );
    // Retried: another test's open transaction may hold the horizon back, and a run
    // with nothing to seal writes no seal.
    let mut run = db.opsctl().args(["audit", "seal"]).run();
    for _ in 0..50 {
        if run.code != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        run = db.opsctl().args(["audit", "seal"]).run();
    }
    let run = run.code(1);
    assert!(run.stderr.contains("disk on fire"), "{}", run.stderr);
    let outcome = db.sql(
        "SELECT command, outcome, error LIKE '%disk on fire%', finished_at IS NOT NULL \
         FROM opsctl.operations WHERE outcome = 'failure'",
    );
    assert_eq!(outcome, "audit seal|failure|t|t");
    assert_eq!(db.sql("SELECT count(*) FROM audit.seals"), "0");
}

#[test]
fn report_filters_and_bad_arguments() {
    let db = TestDb::with_schema("audit_report");
    seed(&db);
    db.sql("SET app.actor = 'mallory'; DELETE FROM trades WHERE user_id = 2");
    let r = db
        .opsctl()
        .args([
            "audit", "report", "--table", "trades", "--actor", "mallory", "--format", "json",
        ])
        .run()
        .success()
        .json();
    assert_eq!(r["total_changes"], 1);
    assert_eq!(r["trade_deletes"][0]["trade_id"], "t-b1");
    assert_eq!(r["trade_deletes"][0]["actor"], "mallory");
    assert_eq!(r["largest_transactions"][0]["rows"], 1);
    assert_eq!(r["chain"]["unsealed_rows"], 10);
    let r = db
        .opsctl()
        .args([
            "audit",
            "report",
            "--from",
            "2000-01-01",
            "--to",
            "2000-01-02",
            "--format",
            "json",
        ])
        .run()
        .success()
        .json();
    assert_eq!(r["total_changes"], 0);
    let t = db
        .opsctl()
        .args(["audit", "report", "--since", "2h"])
        .run()
        .success();
    assert!(t.stdout.contains("deletes of trades (1)"), "{}", t.stdout);
    assert!(
        t.stdout.contains("trade t-b1 (user 2, BTC)"),
        "{}",
        t.stdout
    );
    assert!(t.stdout.contains("unsealed rows: 10"), "{}", t.stdout);
    for (args, needle) in [
        (vec!["--since", "forever"], "invalid duration"),
        (
            vec!["--from", "2026-02-01", "--to", "2026-01-01"],
            "window is empty",
        ),
        (vec!["--from", "yesterday"], "is not a time"),
        (vec!["--to", "2026-01-01"], "--to needs --from"),
        (vec!["--table", "orders"], "not audited"),
        (
            vec!["--since", "1h", "--from", "2026-01-01"],
            "cannot be used with",
        ),
        (vec!["--format", "xml"], "invalid value"),
    ] {
        let mut all = vec!["audit", "report"];
        all.extend(args);
        let run = db.opsctl().args(&all).run().code(2);
        assert!(run.stderr.contains(needle), "{all:?}: {}", run.stderr);
    }
}

#[test]
fn audit_commands_explain_a_database_without_the_audit_schema() {
    let db = TestDb::new("audit_nomig");
    for sub in ["seal", "verify", "report"] {
        let run = db.opsctl().args(["audit", sub]).run().code(1);
        assert!(
            run.stderr.contains("opsctl migrate up"),
            "{sub}: {}",
            run.stderr
        );
    }
}

#[test]
fn creating_roles_without_the_privilege_names_the_statement() {
    let db = TestDb::with_schema("audit_noprivs");
    let user = format!("t_plain_{}", std::process::id());
    cluster().psql(
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{user}') THEN \
             CREATE ROLE {user} LOGIN PASSWORD 'Plain-pw-1'; END IF; END $$"
        ),
    );
    // The roles migration, with role names that do not exist yet on this cluster.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/V40__roles.sql");
    let tag = format!("t{}_", std::process::id());
    let sql = std::fs::read_to_string(path)
        .unwrap()
        .replace("'opsctl_", &format!("'{tag}opsctl_"));
    let run = |sql: &str| {
        std::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGHOST", "localhost")
            .env("PGPORT", cluster().port.to_string())
            .env("PGUSER", &user)
            .env("PGPASSWORD", "Plain-pw-1")
            .env("PGDATABASE", &db.name)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &cluster().ca)
            .output()
            .unwrap()
    };
    db.sql(&format!(
        "GRANT CREATE ON DATABASE \"{}\" TO {user}",
        db.name
    ));
    let out = run(&sql);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "CREATE ROLE {tag}opsctl_audit_owner NOLOGIN needs the CREATEROLE privilege"
        )),
        "{err}"
    );
    assert!(err.contains("HINT"), "{err}");
    // With CREATEROLE but no superuser, BYPASSRLS is the statement that fails.
    cluster().psql("postgres", &format!("ALTER ROLE {user} CREATEROLE"));
    let out = run(&sql);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "CREATE ROLE {tag}opsctl_maintenance NOLOGIN BYPASSRLS needs a superuser"
        )),
        "{err}"
    );
    assert!(err.contains("have a superuser run"), "{err}");
}

#[test]
fn a_rewritten_chain_is_caught_against_a_hash_kept_outside() {
    let db = TestDb::with_schema("audit_rewrite");
    seed(&db);
    let head = seal_all(&db)["head_hash"].as_str().unwrap().to_string();
    db.opsctl()
        .args(["audit", "verify", "--expect-hash", &head])
        .run()
        .success();
    // A superuser rewrites history: drops the seals, changes a row, seals again.
    db.sql(
        "SET session_replication_role = replica;
         DELETE FROM audit.seals;
         UPDATE audit.logged_actions SET app_actor = 'nobody' WHERE app_actor = 'seeder';",
    );
    seal_all(&db);
    verify_json(&db, 0); // consistent in itself…
    let run = db
        .opsctl()
        .args([
            "audit",
            "verify",
            "--format",
            "json",
            "--expect-hash",
            &head,
        ])
        .run()
        .code(1);
    let v = run.json();
    assert_eq!(v["first_problem"]["kind"], "missing_hash");
    assert_eq!(v["first_problem"]["hash"], head.as_str());
    let run = db
        .opsctl()
        .args(["audit", "verify", "--expect-hash", "xyz"])
        .run()
        .code(2);
    assert!(
        run.stderr.contains("64 hexadecimal digits"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_non_superuser_owner_with_createrole_migrates_a_second_database_cleanly() {
    // Roles exist already (other databases of this cluster were migrated): the
    // migrations must not need a superuser then, and the owner must not end up able to
    // rewrite audit rows.
    TestDb::with_schema("audit_first");
    let owner = format!("t_owner_{}", std::process::id());
    let pw = "Owner-pw-3z";
    cluster().psql(
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{owner}') THEN \
             CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD '{pw}'; END IF; END $$"
        ),
    );
    let db = TestDb::new("audit_owner");
    cluster().psql(
        "postgres",
        &format!("ALTER DATABASE \"{}\" OWNER TO {owner}", db.name),
    );
    let as_owner = |args: &[&str]| {
        std::process::Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .env("PGHOST", "localhost")
            .env("PGPORT", cluster().port.to_string())
            .env("PGUSER", &owner)
            .env("PGPASSWORD", pw)
            .env("PGDATABASE", &db.name)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &cluster().ca)
            .output()
            .unwrap()
    };
    for f in crate::common::migration_files() {
        let out = as_owner(&["-1", "-f", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = as_owner(&[
        "-c",
        "SET app.actor = 'owner-app'; INSERT INTO users (username, email) VALUES ('o', 'o@x')",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        db.sql("SELECT session_user_name, app_actor FROM audit.logged_actions"),
        format!("{owner}|owner-app")
    );
    let out = as_owner(&["-c", "DELETE FROM audit.logged_actions"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    assert_eq!(
        db.sql(&format!(
            "SELECT pg_has_role('{owner}', 'opsctl_audit_owner', 'MEMBER')"
        )),
        "f"
    );
}

#[test]
fn rows_of_running_transactions_wait_for_the_next_seal() {
    use std::io::Write;
    let db = TestDb::with_schema("audit_horizon");
    seed(&db);
    // A transaction that stays open: its audit row takes an id before the rows below.
    let mut open = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .env("PGHOST", "localhost")
        .env("PGPORT", cluster().port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", crate::common::PASSWORD)
        .env("PGDATABASE", &db.name)
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &cluster().ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdin = open.stdin.as_mut().unwrap();
    writeln!(
        stdin,
        "BEGIN; INSERT INTO positions (user_id, symbol, quantity, entry_price) VALUES (1, 'LONG', 1, 1);"
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut waited = 0;
    while db.sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()") != "1" {
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
        assert!(waited < 100, "the open transaction did not start");
    }
    db.sql(
        "INSERT INTO positions (user_id, symbol, quantity, entry_price) VALUES (2, 'LATER', 1, 1)",
    );
    let s = db
        .opsctl()
        .args(["audit", "seal", "--format", "json"])
        .run()
        .success()
        .json();
    assert!(s["rows_waiting"].as_i64().unwrap() >= 1, "{s}");
    let text = db.opsctl().args(["audit", "seal"]).run().success();
    assert!(
        text.stdout.contains("wait for transactions still running"),
        "{}",
        text.stdout
    );
    writeln!(stdin, "COMMIT;").unwrap();
    drop(open.stdin.take());
    assert!(open.wait().unwrap().success());
    seal_all(&db);
    let v = verify_json(&db, 0);
    assert_eq!(v["rows_verified"], 11);
    assert_eq!(v["unsealed_rows"], 0);
}

/// The oplog API the other sensitive commands call, against a real database.
#[test]
fn the_oplog_api_records_start_and_end_even_when_the_table_appears_midway() {
    use opsctl::db::{connect, ConnSettings, ConnSources};
    use opsctl::oplog::{self, Outcome};
    let fresh = TestDb::new("audit_oplog_api");
    let settings = ConnSettings::resolve(
        &ConnSources {
            url: Some(fresh.url.clone()),
            sslmode: None,
            sslrootcert: None,
        },
        |_| None,
    )
    .unwrap();
    let argv: Vec<String> = ["opsctl", "migrate", "up", "--database-url", &fresh.url]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = connect(&settings).await.unwrap();
        // No opsctl.operations yet (a fresh database before `migrate up`).
        let op = oplog::start(&conn, &argv).await.unwrap();
        assert!(op.id.is_none());
        for f in crate::common::migration_files() {
            let sql = std::fs::read_to_string(f).unwrap();
            conn.batch_execute(&sql).await.unwrap();
        }
        op.finish(&conn, Outcome::Success, None).await.unwrap();
        // A failing operation, recorded from the start.
        let op = oplog::start(&conn, &argv).await.unwrap();
        assert!(op.id.is_some());
        let err = format!("could not reach {}", fresh.url);
        op.finish(&conn, Outcome::Failure, Some(&err))
            .await
            .unwrap();
    });
    let rows = fresh.sql(
        "SELECT command, outcome, started_at <= finished_at, coalesce(error, '-') FROM opsctl.operations ORDER BY id",
    );
    assert!(!rows.contains(crate::common::PASSWORD), "{rows}");
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines[0], "migrate up|success|t|-");
    assert!(
        lines[1].starts_with("migrate up|failure|t|could not reach postgresql://postgres:****@"),
        "{rows}"
    );
}

/// The library calls the backup manifest and health use.
#[test]
fn latest_seal_hash_and_chain_status_for_backups_and_health() {
    use opsctl::db::{connect, ConnSettings, ConnSources};
    let db = TestDb::with_schema("audit_status");
    let bare = TestDb::new("audit_status_bare");
    seed(&db);
    let head = seal_all(&db)["head_hash"].as_str().unwrap().to_string();
    db.sql("UPDATE users SET email = 'new@x' WHERE id = 1");
    let settings = |url: &str| {
        ConnSettings::resolve(
            &ConnSources {
                url: Some(url.to_string()),
                sslmode: None,
                sslrootcert: None,
            },
            |_| None,
        )
        .unwrap()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = connect(&settings(&db.url)).await.unwrap();
        let got = opsctl::audit::latest_seal_hash(&conn).await.unwrap();
        assert_eq!(got.as_deref(), Some(head.as_str()));
        let st = opsctl::audit::chain_status(&conn).await.unwrap().unwrap();
        assert_eq!(st.head_hash.as_deref(), Some(head.as_str()));
        assert_eq!(st.sealed_rows, 9);
        assert_eq!(st.unsealed_rows, 1);
        assert!(st.oldest_unsealed.is_some());
        assert!(st.last_sealed_at.is_some());
        let conn = connect(&settings(&bare.url)).await.unwrap();
        assert_eq!(opsctl::audit::latest_seal_hash(&conn).await.unwrap(), None);
        assert!(opsctl::audit::chain_status(&conn).await.unwrap().is_none());
    });
}

#[test]
fn a_whole_chain_rewrite_is_caught_against_the_backups() {
    let db = TestDb::with_schema("audit_backups");
    seed(&db);
    let first = seal_all(&db);
    let head = first["head_hash"].as_str().unwrap().to_string();
    let seal_id: i64 = db
        .sql("SELECT max(seal_id) FROM audit.seals")
        .trim()
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("backup.key");
    let repo = dir.path().join("repo");
    db.opsctl()
        .args(["backup", "keygen", "--out"])
        .arg(&key)
        .run()
        .success();
    let backup = |db: &TestDb| {
        db.opsctl()
            .env("OPSCTL_KEY_FILE", &key)
            .args(["backup", "create", "--format", "json", "--dir"])
            .arg(&repo)
            .run()
            .success()
            .json()
    };
    // The chain head goes into the summary (and the sealed manifest behind it).
    let created = backup(&db);
    assert_eq!(created["audit_seal"]["hash"], head.as_str(), "{created}");
    assert_eq!(created["audit_seal"]["seal_id"], seal_id);
    let file = created["path"].as_str().unwrap().to_string();
    db.opsctl()
        .env("OPSCTL_KEY_FILE", &key)
        .args(["backup", "verify", &file])
        .run()
        .success();
    let list = db
        .opsctl()
        .args(["backup", "list", "--dir"])
        .arg(&repo)
        .run()
        .success();
    assert!(list.stdout.contains("audit seal"), "{}", list.stdout);
    assert!(
        list.stdout.contains(&format!("#{seal_id} {}", &head[..12])),
        "{}",
        list.stdout
    );
    let listed = db
        .opsctl()
        .args(["backup", "list", "--format", "json", "--dir"])
        .arg(&repo)
        .run()
        .success()
        .json();
    assert_eq!(listed[0]["audit_seal"]["hash"], head.as_str());

    // Intact: the recorded seal is in the chain.
    let ok = db
        .opsctl()
        .env("OPSCTL_KEY_FILE", &key)
        .args(["audit", "verify", "--backups"])
        .arg(&repo)
        .run()
        .success();
    assert!(
        ok.stdout
            .contains("1 seal recorded by backups is in the chain unchanged"),
        "{}",
        ok.stdout
    );
    // A later seal and a later backup: both recorded seals still check out.
    db.sql("SET app.actor = 'seeder'; UPDATE positions SET quantity = 5 WHERE user_id = 1;");
    seal_all(&db);
    backup(&db);
    db.opsctl()
        .env("OPSCTL_KEY_FILE", &key)
        .args(["audit", "verify", "--format", "json", "--backups"])
        .arg(&repo)
        .run()
        .success();

    // A superuser rewrites the whole chain: drops the seals, changes a row, seals again.
    db.sql(
        "SET session_replication_role = replica;
         DELETE FROM audit.seals;
         UPDATE audit.logged_actions SET app_actor = 'nobody' WHERE app_actor = 'seeder';",
    );
    seal_all(&db);
    verify_json(&db, 0); // consistent in itself…
    let run = db
        .opsctl()
        .env("OPSCTL_KEY_FILE", &key)
        .args(["audit", "verify", "--backups"])
        .arg(&repo)
        .run()
        .code(1);
    let id = created["id"].as_str().unwrap();
    assert!(run.stdout.contains("TAMPERED"), "{}", run.stdout);
    assert!(run.stdout.contains(id), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("seal {seal_id} with hash {head}")),
        "{}",
        run.stdout
    );
    let v = db
        .opsctl()
        .env("OPSCTL_KEY_FILE", &key)
        .args(["audit", "verify", "--format", "json", "--backups"])
        .arg(&repo)
        .run()
        .code(1)
        .json();
    assert_eq!(v["first_problem"]["kind"], "backup_seal");
    assert_eq!(v["first_problem"]["hash"], head.as_str());
    assert_eq!(v["recorded_seals_checked"], 2);

    // A directory that does not exist is an error, not a pass.
    db.opsctl()
        .env("OPSCTL_KEY_FILE", &key)
        .args(["audit", "verify", "--backups"])
        .arg(dir.path().join("nope"))
        .run()
        .code(1);
}

/// A backup key and repository in a temp dir, and `backup create` into it.
struct BackupRepo {
    dir: tempfile::TempDir,
    key: std::path::PathBuf,
    repo: std::path::PathBuf,
}

impl BackupRepo {
    fn new(db: &TestDb) -> BackupRepo {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("backup.key");
        let repo = dir.path().join("repo");
        db.opsctl()
            .args(["backup", "keygen", "--out"])
            .arg(&key)
            .run()
            .success();
        BackupRepo { dir, key, repo }
    }
    fn create(&self, db: &TestDb) -> serde_json::Value {
        db.opsctl()
            .env("OPSCTL_KEY_FILE", &self.key)
            .args(["backup", "create", "--format", "json", "--dir"])
            .arg(&self.repo)
            .run()
            .success()
            .json()
    }
    fn verify(&self, db: &TestDb, extra: &[&str]) -> crate::common::Run {
        db.opsctl()
            .env("OPSCTL_KEY_FILE", &self.key)
            .args(["audit", "verify", "--format", "json"])
            .args(extra)
            .arg("--backups")
            .arg(&self.repo)
            .run()
    }
}

/// A superuser rewrites the chain from seal `after + 1` on: drops those seals, changes
/// the audit rows with ids above `row`, and seals again. The chain is consistent again.
fn rewrite_chain_after(db: &TestDb, after: i64, row: i64) {
    db.sql(&format!(
        "SET session_replication_role = replica;
         DELETE FROM audit.seals WHERE seal_id > {after};
         UPDATE audit.logged_actions SET app_actor = 'nobody' WHERE id > {row};"
    ));
    seal_all(db);
    verify_json(db, 0);
}

#[test]
fn verify_backups_trusts_the_sealed_manifest_not_the_summary() {
    let db = TestDb::with_schema("audit_bk_summary");
    seed(&db);
    seal_all(&db);
    let repo = BackupRepo::new(&db);
    let created = repo.create(&db);
    let seal_id = created["audit_seal"]["seal_id"].as_i64().unwrap();
    let file = std::path::PathBuf::from(created["path"].as_str().unwrap());
    let summary = file.with_extension("json");
    repo.verify(&db, &[]).success();

    // The whole chain is rewritten, and the summary edited to the new hash.
    rewrite_chain_after(&db, 0, 0);
    let new_hash = db.sql(&format!(
        "SELECT hash FROM audit.seals WHERE seal_id = {seal_id}"
    ));
    let text = std::fs::read_to_string(&summary).unwrap();
    let old_hash = created["audit_seal"]["hash"].as_str().unwrap();
    assert!(text.contains(old_hash));
    std::fs::write(&summary, text.replace(old_hash, &new_hash)).unwrap();
    let v = repo.verify(&db, &[]).code(1).json();
    assert_eq!(v["intact"], false, "{v}");
    let kinds: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"backup_seal"), "{v}");
    assert!(kinds.contains(&"backup_summary"), "{v}");
    let text_run = repo.verify(&db, &[]);
    assert!(
        text_run.stdout.contains(old_hash) && text_run.stdout.contains("summary"),
        "{}",
        text_run.all()
    );

    // Without the summaries the sealed manifests still speak.
    for e in std::fs::read_dir(file.parent().unwrap()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let v = repo.verify(&db, &[]).code(1).json();
    assert_eq!(v["first_problem"]["kind"], "backup_seal", "{v}");
    assert_eq!(v["first_problem"]["hash"], old_hash, "{v}");

    // The key is required: the summaries are not evidence.
    let r = db
        .opsctl()
        .env_remove("OPSCTL_KEY_FILE")
        .args(["audit", "verify", "--backups"])
        .arg(&repo.repo)
        .run()
        .code(1);
    assert!(r.stderr.contains("no backup key"), "{}", r.all());

    // A directory without any backup recording a seal is a failure, not a pass.
    let empty = repo.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let r = db
        .opsctl()
        .env("OPSCTL_KEY_FILE", &repo.key)
        .args(["audit", "verify", "--backups"])
        .arg(&empty)
        .run()
        .code(1);
    assert!(r.all().contains("no audit seal is recorded"), "{}", r.all());
}

fn seal_with_policy(db: &TestDb, policy: &std::path::Path) {
    for _ in 0..50 {
        let out = db
            .opsctl()
            .args(["audit", "seal", "--format", "json", "--policy"])
            .arg(policy)
            .run()
            .success()
            .json();
        if out["rows_waiting"] == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("audit rows stayed unsealed");
}

#[test]
fn seals_after_the_newest_backup_are_caught_against_the_anchor_file() {
    let db = TestDb::with_schema("audit_anchor");
    seed(&db);
    let repo = BackupRepo::new(&db);
    let anchors = repo.dir.path().join("anchors.log");
    let policy = repo.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[audit]\nanchor_file = {:?}\n",
            anchors.display().to_string()
        ),
    )
    .unwrap();
    let r = opsctl()
        .args(["policy", "check"])
        .arg(&policy)
        .run()
        .success();
    assert!(r.stdout.contains("anchor_file"), "{}", r.all());
    seal_with_policy(&db, &policy);
    let backed_up = repo.create(&db)["audit_seal"]["seal_id"].as_i64().unwrap();
    let cut: i64 = db
        .sql("SELECT max(id) FROM audit.logged_actions")
        .parse()
        .unwrap();
    // Changes after the newest backup, sealed in small seals (each one anchored).
    db.sql("SET app.actor = 'seeder'; UPDATE positions SET quantity = 7; UPDATE users SET email = email || '.x';");
    for _ in 0..50 {
        let out = db
            .opsctl()
            .args([
                "audit",
                "seal",
                "--format",
                "json",
                "--batch-size",
                "2",
                "--policy",
            ])
            .arg(&policy)
            .run()
            .success()
            .json();
        if out["rows_waiting"] == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let seals: i64 = db.sql("SELECT count(*) FROM audit.seals").parse().unwrap();
    assert!(seals >= backed_up + 2, "{seals} seals");
    // One line per seal: time, seal id, hash; each as the chain holds it.
    let text = std::fs::read_to_string(&anchors).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as i64, seals, "{text}");
    for (n, l) in lines.iter().enumerate() {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 3, "{l}");
        assert!(f[0].parse::<chrono::DateTime<chrono::Utc>>().is_ok(), "{l}");
        assert_eq!(f[1], (n + 1).to_string(), "{l}");
        assert_eq!(
            db.sql(&format!(
                "SELECT hash FROM audit.seals WHERE seal_id = {}",
                f[1]
            )),
            f[2]
        );
    }
    let mode = std::fs::metadata(&anchors).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077, 0);
    let ok = db
        .opsctl()
        .args(["audit", "verify", "--anchors"])
        .arg(&anchors)
        .run()
        .success();
    assert!(
        ok.stdout.contains(&format!("{seals} seal(s) anchored")),
        "{}",
        ok.stdout
    );

    // Only the rows sealed since the backup are rewritten: the backup cannot see it...
    rewrite_chain_after(&db, backed_up, cut);
    repo.verify(&db, &[]).success();
    // ...the anchors do, naming the first rewritten seal.
    let v = db
        .opsctl()
        .args(["audit", "verify", "--format", "json", "--anchors"])
        .arg(&anchors)
        .run()
        .code(1)
        .json();
    assert_eq!(v["first_problem"]["kind"], "anchor_seal", "{v}");
    assert_eq!(v["first_problem"]["seal_id"], backed_up + 1, "{v}");
    let r = db
        .opsctl()
        .args(["audit", "verify", "--anchors"])
        .arg(&anchors)
        .run()
        .code(1);
    assert!(r.stdout.contains("TAMPERED"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&anchors.display().to_string()),
        "{}",
        r.stdout
    );

    // A malformed or empty anchor file is a failure, not a pass.
    let bad = repo.dir.path().join("bad.log");
    std::fs::write(&bad, "2026-01-01T00:00:00Z x y\n").unwrap();
    let r = db
        .opsctl()
        .args(["audit", "verify", "--anchors"])
        .arg(&bad)
        .run()
        .code(1);
    assert!(r.stderr.contains(":1:"), "{}", r.all());
    std::fs::write(&bad, "").unwrap();
    db.opsctl()
        .args(["audit", "verify", "--anchors"])
        .arg(&bad)
        .run()
        .code(1);

    // policy check names an anchor file whose directory does not exist.
    std::fs::write(
        &policy,
        "[audit]\nanchor_file = \"/nonexistent/dir/anchors.log\"\n",
    )
    .unwrap();
    let r = opsctl()
        .args(["policy", "check"])
        .arg(&policy)
        .run()
        .code(1);
    assert!(
        r.stderr.contains(
            "policy.toml:2:1: the directory of /nonexistent/dir/anchors.log does not exist"
        ),
        "{}",
        r.all()
    );
}

// ---------------------------------------------------------------------------------------
// Row moves by opsctl: one sealed MOVE row per moving transaction, not a DELETE per row

/// psql as another login role of the cluster.
fn psql_as(db: &TestDb, user: &str, pw: &str, sql: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGHOST", "localhost")
        .env("PGPORT", cluster().port.to_string())
        .env("PGUSER", user)
        .env("PGPASSWORD", pw)
        .env("PGDATABASE", &db.name)
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &cluster().ca)
        .output()
        .unwrap()
}

/// Content checksum of a relation as the MOVE rows record it.
fn content_checksum(db: &TestDb, rel: &str) -> String {
    db.sql(&format!(
        "SELECT coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text FROM {rel} t"
    ))
}

#[test]
fn opsctl_row_moves_are_one_sealed_move_row_not_a_delete_per_row() {
    // Audit months made before the MOVE action existed (V61) must take MOVE rows too.
    let db = TestDb::new("audit_move");
    db.opsctl()
        .args(["migrate", "up", "--to", "60"])
        .run()
        .success();
    db.opsctl()
        .args(["partition", "ensure", "--table", "audit.logged_actions"])
        .run()
        .success();
    db.opsctl().args(["migrate", "up"]).run().success();
    // 2160 hourly trades over Jan..Mar 2025, all in the default partition.
    db.sql(
        "SET app.actor = 'seeder';
         INSERT INTO users (id, username, email) VALUES (1, 'ann', 'ann@example.com');
         INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time)
         SELECT 't' || g, 1, 'BTC', 'buy', 1, 100 + g, timestamp '2025-01-01' + g * interval '1 hour'
           FROM generate_series(0, 2159) g",
    );
    let audit_rows = || db.sql("SELECT count(*) FROM audit.logged_actions");
    assert_eq!(audit_rows(), "2161");
    seal_all(&db);

    db.opsctl().args(["partition", "ensure"]).run().success();
    assert_eq!(db.sql("SELECT count(*) FROM trades_default"), "0");
    // No DELETE row per moved row: one MOVE row per month, sealed like any other.
    assert_eq!(
        db.sql("SELECT count(*) FROM audit.logged_actions WHERE action = 'D'"),
        "0"
    );
    let moves = db.sql(
        "SELECT table_name, relname, row_old->>'relation', row_new->>'relation', \
         row_new->>'rows', app_actor FROM audit.logged_actions WHERE action = 'M' ORDER BY id",
    );
    assert_eq!(
        moves,
        "trades|trades_default|public.trades_default|public.trades_p2025_01|744|opsctl partition ensure\n\
         trades|trades_default|public.trades_default|public.trades_p2025_02|672|opsctl partition ensure\n\
         trades|trades_default|public.trades_default|public.trades_p2025_03|744|opsctl partition ensure"
    );
    for month in ["trades_p2025_01", "trades_p2025_02", "trades_p2025_03"] {
        let recorded = db.sql(&format!(
            "SELECT row_new->>'checksum' FROM audit.logged_actions \
             WHERE action = 'M' AND row_new->>'relation' = 'public.{month}'"
        ));
        assert_eq!(recorded, content_checksum(&db, month), "{month}");
    }
    assert_eq!(audit_rows(), "2164");
    let sealed = seal_all(&db);
    assert_eq!(sealed["rows_sealed"], 3, "{sealed}");
    let v = verify_json(&db, 0);
    assert_eq!(v["rows_verified"], 2164, "{v}");
    // The report: moves are not deletes of trades.
    let r = db
        .opsctl()
        .args(["audit", "report", "--since", "1h", "--format", "json"])
        .run()
        .success()
        .json();
    assert_eq!(r["trade_deletes_total"], 0, "{r}");
    assert_eq!(r["moves_total"], 3, "{r}");
    assert_eq!(r["rows_moved"], 2160, "{r}");
    let change = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["operation"] == "MOVE")
        .unwrap()
        .clone();
    assert_eq!(change["table"], "trades");
    assert_eq!(change["count"], 3);
    let text = db
        .opsctl()
        .args(["audit", "report", "--since", "1h"])
        .run()
        .success()
        .stdout;
    assert!(text.contains("deletes of trades (0)"), "{text}");
    assert!(
        text.contains("public.trades_default → public.trades_p2025_02") && text.contains("672"),
        "{text}"
    );

    // A real delete by anyone else is audited exactly as before.
    db.sql("SET app.actor = 'jane'; DELETE FROM trades WHERE id = 't5'");
    assert_eq!(
        db.sql("SELECT app_actor, row_old->>'id' FROM audit.logged_actions WHERE action = 'D'"),
        "jane|t5"
    );

    // Archive: rows moved in batches into archive.trades are MOVE rows as well, and whole
    // months moved by metadata are recorded the same way.
    db.opsctl()
        .args(["archive", "--before", "2025-02-15", "--batch-size", "100"])
        .run()
        .success();
    assert_eq!(
        db.sql("SELECT count(*) FROM audit.logged_actions WHERE action = 'D'"),
        "1"
    );
    let archived = db.sql(
        "SELECT row_old->>'relation', row_new->>'relation', sum((row_new->>'rows')::int), count(*) \
         FROM audit.logged_actions WHERE action = 'M' AND app_actor = 'opsctl archive' \
         GROUP BY 1, 2 ORDER BY 1",
    );
    assert_eq!(
        archived,
        "public.trades|archive.trades|336|4\npublic.trades_p2025_01|archive.trades|743|1"
    );
    assert_eq!(
        db.sql("SELECT row_new->>'checksum' FROM audit.logged_actions WHERE row_old->>'relation' = 'public.trades_p2025_01'"),
        content_checksum(&db, "archive.trades_p2025_01")
    );
    seal_all(&db);
    verify_json(&db, 0);
    // Editing a sealed MOVE row is caught like any other.
    db.sql(
        "SET opsctl.audit_rewrite = 'on'; \
         UPDATE audit.logged_actions SET row_new = jsonb_set(row_new, '{rows}', '1') \
         WHERE action = 'M' AND row_new->>'relation' = 'public.trades_p2025_02'",
    );
    let v = verify_json(&db, 1);
    assert_eq!(v["first_problem"]["kind"], "changed", "{v}");
}

#[test]
fn the_bulk_move_setting_silences_nobody_but_the_table_owner_in_its_transaction() {
    let db = TestDb::with_schema("audit_bulk");
    seed(&db);
    let who = format!("mallory_{}", std::process::id());
    let pw = "Mallory-pw-9q";
    cluster().psql(
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{who}') THEN \
             CREATE ROLE {who} LOGIN PASSWORD '{pw}' IN ROLE opsctl_app; END IF; END $$"
        ),
    );
    let deleted = |id: &str| {
        db.sql(&format!(
            "SELECT count(*) FROM audit.logged_actions WHERE action = 'D' AND row_old->>'id' = '{id}'"
        ))
    };
    // The application role sets the move setting exactly as opsctl does: still audited.
    let out = psql_as(
        &db,
        &who,
        pw,
        "SET app.user_id = '1'; BEGIN; \
         SELECT set_config('opsctl.bulk_move', 'public.trades:' || txid_current(), true); \
         DELETE FROM trades WHERE id = 't-a1'; COMMIT;",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.sql("SELECT count(*) FROM trades WHERE id = 't-a1'"), "0");
    assert_eq!(deleted("t-a1"), "1");
    // Nor can it write MOVE rows.
    let out = psql_as(
        &db,
        &who,
        pw,
        "SELECT audit.log_move('public', 'trades', 'public', 'trades_default', 'public', 'x', 1, '0')",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("may not record moves"), "{err}");
    // The owner's setting outside its own transaction (session- or role-wide) silences
    // nothing either.
    db.sql(
        "SET opsctl.bulk_move = 'public.trades'; DELETE FROM trades WHERE id = 't-a2'; COMMIT; \
         BEGIN; SELECT set_config('opsctl.bulk_move', 'public.trades:' || txid_current(), false); \
         COMMIT; DELETE FROM trades WHERE id = 't-b1';",
    );
    assert_eq!(deleted("t-a2"), "1");
    assert_eq!(deleted("t-b1"), "1");
    // Inside the owner's transaction, it covers only the table it names and never UPDATEs.
    db.sql(
        "INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time)
           VALUES ('t-c1', 1, 'BTC', 'buy', 1, 1, '2026-01-08 10:00'), ('t-c2', 1, 'BTC', 'buy', 1, 1, '2026-01-08 11:00');
         BEGIN;
         SELECT set_config('opsctl.bulk_move', 'public.positions:' || txid_current(), true);
         DELETE FROM trades WHERE id = 't-c1';
         UPDATE trades SET exit_price = 2 WHERE id = 't-c2';
         COMMIT;",
    );
    assert_eq!(deleted("t-c1"), "1");
    assert_eq!(
        db.sql("SELECT count(*) FROM audit.logged_actions WHERE action = 'U' AND row_new->>'id' = 't-c2'"),
        "1"
    );
}
