//! Security posture checks of `opsctl health`: security_settings on a deliberately
//! insecure private cluster and after fixing it, row_level_security, server_updates,
//! a least-privilege role, and the [security] policy keys.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{cluster, opsctl, OwnCluster, TestDb};

fn policy(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

fn check<'a>(j: &'a Value, id: &str) -> &'a Value {
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("check {id} missing in {j:#}"))
}

/// `opsctl health --check ID --format FORMAT [--policy P]` against `url`.
fn health(url: &str, id: &str, format: &str, pol: Option<&PathBuf>) -> crate::common::Run {
    let mut o = opsctl();
    o.args([
        "health",
        "--format",
        format,
        "--check",
        id,
        "--database-url",
        url,
    ]);
    if let Some(p) = pol {
        o.arg("--policy").arg(p);
    }
    o.run()
}

const SAFE_HBA: &str = "local all all scram-sha-256\n\
     hostssl all all 127.0.0.1/32 scram-sha-256\n\
     hostnossl all all all reject\n";

#[test]
fn insecure_cluster_findings_are_named_and_the_fixed_cluster_is_ok() {
    let hba = format!("{SAFE_HBA}host all all 10.20.0.0/16 trust\n");
    let c = OwnCluster::start(&hba);
    c.psql(
        "postgres",
        "SET password_encryption = 'md5'; CREATE ROLE legacy_md5 LOGIN PASSWORD 'Md5-pw-123'; \
         RESET password_encryption; \
         CREATE ROLE extra_su LOGIN SUPERUSER PASSWORD 'Su-pw-123'; \
         GRANT CREATE ON SCHEMA public TO PUBLIC",
    );
    let url = c.url("postgres");

    let r = health(&url, "security_settings", "json", None).code(2);
    let j = r.json();
    let s = check(&j, "security_settings");
    assert_eq!(s["state"], "CRITICAL", "{s:#}");
    let value = s["value"].as_str().unwrap();
    for needle in [
        "line 4",
        "10.20.0.0/16",
        "trust",
        "legacy_md5",
        "CREATE on schema public is granted to PUBLIC",
        "extra_su",
    ] {
        assert!(value.contains(needle), "{needle:?} not in {value}");
    }
    assert!(
        value.starts_with("pg_hba.conf line 4 `host all all 10.20.0.0/16 trust`"),
        "the CRITICAL finding comes first: {value}"
    );
    assert!(
        value.ends_with("login superusers not allowed by the policy: extra_su"),
        "only extra_su: the bootstrap superuser postgres is allowed: {value}"
    );
    let hint = s["hint"].as_str().unwrap();
    for needle in [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        "ALTER ROLE \"extra_su\" NOSUPERUSER",
        "ALTER ROLE \"legacy_md5\" PASSWORD",
        "replace trust with scram-sha-256",
    ] {
        assert!(hint.contains(needle), "{needle:?} not in {hint}");
    }
    let findings = s["details"]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 4, "{findings:#?}");
    assert_eq!(s["metrics"][0]["value"], 4.0);

    // Nagios: one line naming each finding, exit 2.
    let n = health(&url, "security_settings", "nagios", None).code(2);
    assert!(
        n.stdout
            .starts_with("OPSCTL HEALTH CRITICAL: security_settings CRITICAL ("),
        "{}",
        n.stdout
    );
    for needle in ["10.20.0.0/16", "legacy_md5", "schema public", "extra_su"] {
        assert!(n.stdout.contains(needle), "{needle:?} not in {}", n.stdout);
    }
    assert!(n.stdout.contains("'security_findings'=4;"), "{}", n.stdout);
    // Prometheus and text carry the state too.
    let p = health(&url, "security_settings", "prometheus", None).code(2);
    assert!(
        p.stdout
            .contains("opsctl_check_state{check=\"security_settings\"} 2"),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout.contains("opsctl_security_findings 4"),
        "{}",
        p.stdout
    );
    let t = health(&url, "security_settings", "text", None).code(2);
    assert!(t.stdout.contains("extra_su"), "{}", t.stdout);

    // A superuser the policy allows is no longer named.
    let (_d, allow) = policy("[security]\nallowed_superusers = [\"extra_su\"]\n");
    let j = health(&url, "security_settings", "json", Some(&allow)).json();
    let v = check(&j, "security_settings")["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!v.contains("extra_su"), "{v}");
    assert!(v.contains("legacy_md5"), "{v}");

    // Without the trust line the worst left is WARNING.
    c.set_hba(SAFE_HBA);
    let j = health(&url, "security_settings", "json", None)
        .code(1)
        .json();
    let s = check(&j, "security_settings");
    assert_eq!(s["state"], "WARNING", "{s:#}");
    assert!(!s["value"].as_str().unwrap().contains("trust"), "{s:#}");

    // The fixed cluster: OK in every format.
    c.psql(
        "postgres",
        "ALTER ROLE legacy_md5 PASSWORD 'Scram-pw-123'; ALTER ROLE extra_su NOSUPERUSER; \
         REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    );
    let j = health(&url, "security_settings", "json", None)
        .success()
        .json();
    let s = check(&j, "security_settings");
    assert_eq!(s["state"], "OK", "{s:#}");
    let v = s["value"].as_str().unwrap();
    assert!(
        v.contains("ssl on") && v.contains("no MD5 passwords"),
        "{v}"
    );
    let n = health(&url, "security_settings", "nagios", None).success();
    assert!(n.stdout.starts_with("OPSCTL HEALTH OK"), "{}", n.stdout);

    // ssl off is CRITICAL (the superuser turns it off and reconnects over the socket-less
    // loopback without TLS: pg_hba allows it only for this step).
    c.set_hba("host all all 127.0.0.1/32 scram-sha-256\n");
    c.psql("postgres", "ALTER SYSTEM SET ssl = off");
    c.psql("postgres", "SELECT pg_reload_conf()");
    let plain = format!(
        "postgresql://postgres:{}@localhost:{}/postgres?sslmode=disable",
        crate::common::PASSWORD.replace('!', "%21"),
        c.port
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let j = health(&plain, "security_settings", "json", None)
        .code(2)
        .json();
    let s = check(&j, "security_settings");
    assert_eq!(s["state"], "CRITICAL", "{s:#}");
    assert!(s["value"].as_str().unwrap().contains("ssl = off"), "{s:#}");
}

#[test]
fn a_role_without_superuser_gets_unknown_naming_the_privilege() {
    let db = TestDb::new("secpriv");
    let role = format!("secmon_{}", db.name);
    db.sql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'Mon-pw-123' IN ROLE pg_read_all_settings"
    ));
    let url = format!(
        "postgresql://{role}:Mon-pw-123@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        cluster().port,
        db.name,
        cluster().ca.display()
    );
    let r = health(&url, "security_settings", "json", None).code(3);
    let j = r.json();
    let s = check(&j, "security_settings");
    assert_eq!(s["state"], "UNKNOWN", "{s:#}");
    let value = s["value"].as_str().unwrap();
    assert!(
        value.contains("pg_authid") && value.contains("pg_hba_file_rules"),
        "{value}"
    );
    let hint = s["hint"].as_str().unwrap();
    assert!(hint.contains("needs superuser"), "{hint}");
    assert!(
        hint.contains("GRANT SELECT ON pg_hba_file_rules"),
        "names the grant that suffices: {hint}"
    );
    // What it can see is still judged: CREATE for PUBLIC makes it a WARNING.
    db.sql("GRANT CREATE ON SCHEMA public TO PUBLIC");
    let j = health(&url, "security_settings", "json", None)
        .code(1)
        .json();
    let s = check(&j, "security_settings");
    assert_eq!(s["state"], "WARNING", "{s:#}");
    assert!(s["value"].as_str().unwrap().contains("pg_authid"), "{s:#}");
    db.sql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

#[test]
fn rls_tables_are_enabled_and_forced_where_listed() {
    let db = TestDb::new("secrls");
    db.sql("CREATE TABLE accounts (id int, owner text); CREATE TABLE notes (id int)");
    let url = &db.url;
    // Unconfigured: OK and says so.
    let j = health(url, "row_level_security", "json", None)
        .success()
        .json();
    assert!(
        check(&j, "row_level_security")["value"]
            .as_str()
            .unwrap()
            .contains("not configured"),
        "{j:#}"
    );
    let (_d, pol) = policy(
        "[security]\nrls_tables = [\"notes\", \"public.ghost\"]\nrls_forced = [\"public.accounts\"]\n",
    );
    let j = health(url, "row_level_security", "json", Some(&pol))
        .code(1)
        .json();
    let c = check(&j, "row_level_security");
    assert_eq!(c["state"], "WARNING");
    let v = c["value"].as_str().unwrap();
    for needle in [
        "public.ghost: no such table",
        "public.notes: row-level security not enabled",
        "public.accounts: row-level security not enabled",
        "public.accounts: row-level security not forced",
    ] {
        assert!(v.contains(needle), "{needle:?} not in {v}");
    }
    let hint = c["hint"].as_str().unwrap();
    assert!(
        hint.contains("ALTER TABLE \"public\".\"accounts\" FORCE ROW LEVEL SECURITY"),
        "{hint}"
    );
    let n = health(url, "row_level_security", "nagios", Some(&pol)).code(1);
    assert!(
        n.stdout.contains("public.ghost: no such table"),
        "{}",
        n.stdout
    );

    // Enabled but not forced: still named.
    db.sql("ALTER TABLE accounts ENABLE ROW LEVEL SECURITY; ALTER TABLE notes ENABLE ROW LEVEL SECURITY");
    let (_d2, pol2) =
        policy("[security]\nrls_tables = [\"notes\"]\nrls_forced = [\"public.accounts\"]\n");
    let j = health(url, "row_level_security", "json", Some(&pol2))
        .code(1)
        .json();
    let v = check(&j, "row_level_security")["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(v.contains("accounts: row-level security not forced"), "{v}");
    assert!(!v.contains("notes"), "{v}");
    // Enabled and forced: OK.
    db.sql("ALTER TABLE accounts FORCE ROW LEVEL SECURITY");
    let j = health(url, "row_level_security", "json", Some(&pol2))
        .success()
        .json();
    let c = check(&j, "row_level_security");
    assert_eq!(c["state"], "OK", "{c:#}");
    assert!(
        c["value"]
            .as_str()
            .unwrap()
            .contains("public.accounts enabled+forced"),
        "{c:#}"
    );
}

#[test]
fn server_updates_judges_the_minimum_version_and_uptime() {
    let db = TestDb::new("secupd");
    let running = db.sql("SHOW server_version");
    let running = running.split_whitespace().next().unwrap().to_string();
    let major: u32 = running.split('.').next().unwrap().parse().unwrap();
    // Unset: OK, with a hint to set it and that opsctl cannot look it up.
    let j = health(&db.url, "server_updates", "json", None)
        .success()
        .json();
    let c = check(&j, "server_updates");
    assert_eq!(c["state"], "OK");
    let hint = c["hint"].as_str().unwrap();
    assert!(
        hint.contains("min_server_version") && hint.contains("no internet access"),
        "{hint}"
    );
    // Above the running version: WARNING naming both.
    let want = format!("{major}.99");
    let (_d, pol) = policy(&format!("[reports]\nmin_server_version = \"{want}\"\n"));
    let j = health(&db.url, "server_updates", "json", Some(&pol))
        .code(1)
        .json();
    let c = check(&j, "server_updates");
    assert_eq!(c["state"], "WARNING");
    let v = c["value"].as_str().unwrap();
    assert!(v.contains(&running) && v.contains(&want), "{v}");
    assert!(c["hint"].as_str().unwrap().contains("no internet access"));
    let n = health(&db.url, "server_updates", "nagios", Some(&pol)).code(1);
    assert!(
        n.stdout.contains(&want) && n.stdout.contains(&running),
        "{}",
        n.stdout
    );
    // At or below: OK.
    let (_d2, pol2) = policy(&format!("[reports]\nmin_server_version = \"{major}.0\"\n"));
    health(&db.url, "server_updates", "json", Some(&pol2)).success();
    // Up longer than max_server_uptime_days: WARNING (minor updates need a restart).
    let (_d3, pol3) = policy("[reports]\nmax_server_uptime_days = 0.000000001\n");
    let j = health(&db.url, "server_updates", "json", Some(&pol3))
        .code(1)
        .json();
    let c = check(&j, "server_updates");
    assert!(
        c["value"]
            .as_str()
            .unwrap()
            .contains("since the last restart"),
        "{c:#}"
    );
    assert!(c["hint"].as_str().unwrap().contains("restart"), "{c:#}");
    // A malformed version: policy check names it; health says UNKNOWN.
    let (_d4, bad) = policy("[reports]\nmin_server_version = \"15.x\"\n");
    let r = opsctl().args(["policy", "check"]).arg(&bad).run().code(1);
    assert!(r.all().contains("min_server_version"), "{}", r.all());
    health(&db.url, "server_updates", "json", Some(&bad)).code(3);
}

#[test]
fn security_policy_keys_are_checked() {
    let (_d, p) = policy("[security]\nrls_table = [\"x\"]\nallowed_superuser = []\n");
    let r = opsctl().args(["policy", "check"]).arg(&p).run().code(1);
    let all = r.all();
    assert!(all.contains("did you mean `rls_tables`?"), "{all}");
    assert!(all.contains("did you mean `allowed_superusers`?"), "{all}");
    let (_d2, ok) = policy(
        "[security]\nallowed_superusers = [\"dba\"]\nrls_tables = [\"a\"]\nrls_forced = [\"b\"]\n\
         [reports]\nmin_server_version = \"15.10\"\nmax_server_uptime_days = 30.0\n",
    );
    opsctl().args(["policy", "check"]).arg(&ok).run().success();
}

#[test]
fn the_migrated_schema_meets_the_production_rls_policy() {
    let db = TestDb::with_schema("secprod");
    let pol = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/examples/production.toml");
    let j = health(&db.url, "row_level_security", "json", Some(&pol))
        .success()
        .json();
    let c = check(&j, "row_level_security");
    assert_eq!(c["state"], "OK", "{c:#}");
    let v = c["value"].as_str().unwrap();
    for t in ["public.trades", "public.positions", "public.account_totals"] {
        assert!(
            v.contains(&format!("{t} enabled (2 policies)")),
            "{t} not in {v}"
        );
    }
    // Losing RLS on one of them is named.
    db.sql("ALTER TABLE positions DISABLE ROW LEVEL SECURITY");
    let j = health(&db.url, "row_level_security", "json", Some(&pol))
        .code(1)
        .json();
    let v = check(&j, "row_level_security")["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v, "public.positions: row-level security not enabled", "{v}");
}
