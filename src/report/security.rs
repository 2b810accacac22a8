//! Security posture checks of `opsctl health`: server settings, authentication rules and
//! grants (`security_settings`), row-level security of the tables the policy names
//! (`row_level_security`), and how current the running server is (`server_updates`).
//! Each finding names what was found and the SQL or pg_hba.conf change that fixes it.

use std::net::IpAddr;

use serde_json::json;

use super::health::human_duration;
use super::{Check, Ctx, Metric, State};
use crate::db;

pub const IDS: &[&str] = &["security_settings", "row_level_security", "server_updates"];

/// Settings every role may read.
const SQL_SETTINGS: &str = "SELECT current_setting('ssl'), current_setting('password_encryption')";

/// Roles whose stored password is an MD5 hash (pg_authid: superusers only by default).
const SQL_MD5_ROLES: &str =
    "SELECT rolname::text FROM pg_catalog.pg_authid WHERE rolpassword LIKE 'md5%' ORDER BY 1";

/// The parsed pg_hba.conf (superusers only by default).
const SQL_HBA: &str = "SELECT line_number, type, database, user_name, address, netmask, \
     auth_method FROM pg_catalog.pg_hba_file_rules WHERE error IS NULL ORDER BY line_number";

/// Whether PUBLIC holds CREATE on schema public of this database (explicit or default ACL).
const SQL_PUBLIC_CREATE: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n, \
     aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a \
     WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE')";

/// Superusers that can log in, with whether each is the bootstrap superuser (oid 10).
const SQL_SUPERUSERS: &str = "SELECT rolname::text, oid = 10 FROM pg_catalog.pg_roles \
     WHERE rolsuper AND rolcanlogin ORDER BY rolname";

/// One relation's row-level security flags and number of policies.
const SQL_RLS: &str = "SELECT c.relrowsecurity, c.relforcerowsecurity, \
     (SELECT count(*) FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid) \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')";

const SQL_VERSION: &str = "SELECT current_setting('server_version_num')::int, \
     current_setting('server_version'), \
     extract(epoch FROM now() - pg_postmaster_start_time())::float8";

pub async fn checks(ctx: &Ctx<'_>, wants: impl Fn(&str) -> bool) -> Vec<Check> {
    let mut out = Vec::new();
    if wants("security_settings") {
        out.push(settings(ctx).await);
    }
    if wants("row_level_security") {
        out.push(rls(ctx).await);
    }
    if wants("server_updates") {
        out.push(updates(ctx).await);
    }
    out
}

/// One thing `security_settings` found (or could not look at).
struct Finding {
    state: State,
    what: String,
    fix: String,
}

impl Finding {
    fn new(state: State, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            state,
            what: what.into(),
            fix: fix.into(),
        }
    }
}

fn denied(e: &tokio_postgres::Error) -> bool {
    db::sqlstate(e) == Some("42501")
}

fn first_line(e: &tokio_postgres::Error) -> String {
    db::describe(e)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn settings(ctx: &Ctx<'_>) -> Check {
    const ID: &str = "security_settings";
    let c = ctx.client;
    let mut found: Vec<Finding> = Vec::new();
    let mut fine: Vec<String> = Vec::new();

    match c.query_one(SQL_SETTINGS, &[]).await {
        Ok(r) => {
            let ssl: String = r.get(0);
            let enc: String = r.get(1);
            if ssl == "on" {
                fine.push("ssl on".into());
            } else {
                found.push(Finding::new(
                    State::Critical,
                    format!("ssl = {ssl}: connections cannot be encrypted"),
                    "set ssl = on with ssl_cert_file/ssl_key_file in postgresql.conf and reload \
                     (SELECT pg_reload_conf())",
                ));
            }
            if enc == "scram-sha-256" {
                fine.push("password_encryption scram-sha-256".into());
            } else {
                found.push(Finding::new(
                    State::Warning,
                    format!("password_encryption = {enc}"),
                    "ALTER SYSTEM SET password_encryption = 'scram-sha-256'; SELECT pg_reload_conf()",
                ));
            }
        }
        Err(e) => found.push(Finding::new(State::Unknown, first_line(&e), "")),
    }

    match c.query(SQL_MD5_ROLES, &[]).await {
        Ok(rows) => {
            let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            if names.is_empty() {
                fine.push("no MD5 passwords".into());
            } else {
                let example = names
                    .iter()
                    .map(|n| format!("ALTER ROLE {} PASSWORD '…'", db::quote_ident(n)))
                    .collect::<Vec<_>>()
                    .join("; ");
                found.push(Finding::new(
                    State::Warning,
                    format!("MD5 passwords: {}", names.join(", ")),
                    format!(
                        "with password_encryption = 'scram-sha-256', set each password again \
                         ({example}), then use scram-sha-256 in pg_hba.conf"
                    ),
                ));
            }
        }
        Err(e) if denied(&e) => found.push(Finding::new(
            State::Unknown,
            "MD5 passwords not checked: pg_authid is not readable by this role",
            "needs superuser: pg_authid (stored password hashes) is readable only by superusers; \
             run this check as one",
        )),
        Err(e) => found.push(Finding::new(State::Unknown, first_line(&e), "")),
    }

    match c.query(SQL_HBA, &[]).await {
        Ok(rows) => {
            let mut n = 0;
            for r in &rows {
                n += 1;
                let line: i32 = r.get(0);
                let rule = HbaRule {
                    kind: r.get::<_, Option<String>>(1).unwrap_or_default(),
                    database: r.get::<_, Option<Vec<String>>>(2).unwrap_or_default(),
                    users: r.get::<_, Option<Vec<String>>>(3).unwrap_or_default(),
                    address: r.get(4),
                    netmask: r.get(5),
                    method: r.get::<_, Option<String>>(6).unwrap_or_default(),
                };
                if let Some((state, why, fix)) = judge_hba(&rule) {
                    found.push(Finding::new(
                        state,
                        format!("pg_hba.conf line {line} `{}`: {why}", rule.describe()),
                        format!("pg_hba.conf line {line}: {fix}, then SELECT pg_reload_conf()"),
                    ));
                }
            }
            fine.push(format!("{n} pg_hba.conf lines checked"));
        }
        Err(e) if denied(&e) => found.push(Finding::new(
            State::Unknown,
            "pg_hba.conf not checked: pg_hba_file_rules is not readable by this role",
            "needs superuser, or: GRANT SELECT ON pg_hba_file_rules TO <role>; \
             GRANT EXECUTE ON FUNCTION pg_hba_file_rules() TO <role>",
        )),
        Err(e) => found.push(Finding::new(State::Unknown, first_line(&e), "")),
    }

    match c.query_one(SQL_PUBLIC_CREATE, &[]).await {
        Ok(r) if r.get::<_, bool>(0) => found.push(Finding::new(
            State::Warning,
            format!(
                "CREATE on schema public is granted to PUBLIC in database {}",
                ctx.dbname
            ),
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC (in this database)",
        )),
        Ok(_) => fine.push("schema public: no CREATE for PUBLIC".into()),
        Err(e) => found.push(Finding::new(State::Unknown, first_line(&e), "")),
    }

    let allowed = &ctx.policy.security.allowed_superusers;
    match c.query(SQL_SUPERUSERS, &[]).await {
        Ok(rows) => {
            let extra: Vec<String> = rows
                .iter()
                .filter(|r| !r.get::<_, bool>(1))
                .map(|r| r.get::<_, String>(0))
                .filter(|n| !allowed.contains(n))
                .collect();
            if extra.is_empty() {
                fine.push(format!("{} login superuser(s), all allowed", rows.len()));
            } else {
                let fix = extra
                    .iter()
                    .map(|n| format!("ALTER ROLE {} NOSUPERUSER", db::quote_ident(n)))
                    .collect::<Vec<_>>()
                    .join("; ");
                found.push(Finding::new(
                    State::Warning,
                    format!(
                        "login superusers not allowed by the policy: {}",
                        extra.join(", ")
                    ),
                    format!("{fix} (or NOLOGIN), or list them in [security] allowed_superusers"),
                ));
            }
        }
        Err(e) => found.push(Finding::new(State::Unknown, first_line(&e), "")),
    }

    // Worst first, so the CRITICAL finding leads the value and the Nagios line.
    found.sort_by_key(|f| std::cmp::Reverse(f.state.severity()));
    let state = found.iter().fold(State::Ok, |s, f| s.max_sev(f.state));
    let problems = found.iter().filter(|f| f.state != State::Unknown).count();
    let details = json!({
        "findings": found.iter().map(|f| json!({
            "state": f.state, "found": f.what, "fix": f.fix,
        })).collect::<Vec<_>>(),
        "ok": fine,
    });
    let (value, hint) = if found.is_empty() {
        (fine.join(", "), String::new())
    } else {
        (
            found
                .iter()
                .map(|f| f.what.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            found
                .iter()
                .filter(|f| !f.fix.is_empty())
                .map(|f| f.fix.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    let mut check = Check::new(ID, state, value, hint)
        .threshold("CRITICAL: ssl off, trust from non-loopback; WARNING: any other finding")
        .metric(Metric::new(
            "security_findings",
            "Security settings problems found by opsctl (security_settings check).",
            problems as f64,
        ));
    check.details = Some(details);
    check
}

/// One pg_hba.conf rule as pg_hba_file_rules shows it.
#[derive(Debug, Clone, Default)]
pub struct HbaRule {
    pub kind: String,
    pub database: Vec<String>,
    pub users: Vec<String>,
    pub address: Option<String>,
    pub netmask: Option<String>,
    pub method: String,
}

impl HbaRule {
    fn describe(&self) -> String {
        let mut parts = vec![
            self.kind.clone(),
            self.database.join(","),
            self.users.join(","),
        ];
        if let Some(a) = &self.address {
            match &self.netmask {
                Some(m) => parts.push(format!(
                    "{a}/{}",
                    prefix_len(m).map_or(m.clone(), |p| p.to_string())
                )),
                None => parts.push(a.clone()),
            }
        }
        parts.push(self.method.clone());
        parts.join(" ")
    }

    /// Whether the rule can only match connections from this host (Unix socket or loopback).
    pub fn loopback_only(&self) -> bool {
        if self.kind == "local" {
            return true;
        }
        let Some(addr) = self.address.as_deref() else {
            return false;
        };
        if addr == "localhost" {
            return true;
        }
        let Ok(ip) = addr.parse::<IpAddr>() else {
            // all, samehost, samenet, a host name: may match other hosts.
            return false;
        };
        let prefix = self.netmask.as_deref().and_then(prefix_len);
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 127 && prefix.is_some_and(|p| p >= 8),
            IpAddr::V6(v6) => v6.is_loopback() && prefix == Some(128),
        }
    }
}

/// Number of leading one bits of a netmask such as "255.255.255.0" (None if not a mask).
fn prefix_len(mask: &str) -> Option<u32> {
    let bits: u128 = match mask.parse::<IpAddr>().ok()? {
        IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
        IpAddr::V6(v) => u128::from(v),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
}

/// What is wrong with one rule: its state, why, and the fix.
pub fn judge_hba(r: &HbaRule) -> Option<(State, String, String)> {
    if r.method == "reject" {
        return None;
    }
    let remote = !r.loopback_only();
    match r.method.as_str() {
        "trust" if remote => {
            return Some((
                State::Critical,
                "trust from non-loopback addresses: anyone who can reach the port logs in without a password".into(),
                "replace trust with scram-sha-256".into(),
            ))
        }
        "trust" => {
            return Some((
                State::Warning,
                "trust on this host: every local OS user can log in as any of these roles".into(),
                "replace trust with scram-sha-256 (or peer for local)".into(),
            ))
        }
        "password" if remote => {
            return Some((
                State::Warning,
                "password (sent in clear text) from non-loopback addresses".into(),
                "replace password with scram-sha-256".into(),
            ))
        }
        _ => {}
    }
    if remote && (r.kind == "host" || r.kind == "hostnossl") {
        return Some((
            State::Warning,
            format!(
                "{} accepts connections without SSL from non-loopback addresses",
                r.kind
            ),
            format!(
                "use hostssl instead of {} (and add `hostnossl all all all reject`)",
                r.kind
            ),
        ));
    }
    None
}

/// A table name from the policy: "schema.table" or "table" (schema public).
fn split_table(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, t)) => (s.to_string(), t.to_string()),
        None => ("public".to_string(), name.to_string()),
    }
}

async fn rls(ctx: &Ctx<'_>) -> Check {
    const ID: &str = "row_level_security";
    let sec = &ctx.policy.security;
    let mut tables: Vec<&String> = sec.rls_tables.iter().collect();
    for t in &sec.rls_forced {
        if !tables.contains(&t) {
            tables.push(t);
        }
    }
    if tables.is_empty() {
        return Check::not_configured(
            ID,
            "list the tables that must have row-level security in [security] rls_tables (and rls_forced)",
        );
    }
    let mut state = State::Ok;
    let mut found = Vec::new();
    let mut fixes = Vec::new();
    let mut fine = Vec::new();
    let mut details = Vec::new();
    for name in tables {
        let (schema, table) = split_table(name);
        let q = db::quote_qualified(&schema, &table);
        let must_force = sec.rls_forced.contains(name);
        match ctx.client.query_opt(SQL_RLS, &[&schema, &table]).await {
            Err(e) => return super::unknown(ID, &e, "pg_class is not readable"),
            Ok(None) => {
                state = state.max_sev(State::Warning);
                found.push(format!("{schema}.{table}: no such table"));
                fixes.push(format!(
                    "create {schema}.{table} or correct its name in [security] rls_tables/rls_forced"
                ));
                details.push(json!({"table": format!("{schema}.{table}"), "exists": false}));
            }
            Ok(Some(r)) => {
                let enabled: bool = r.get(0);
                let forced: bool = r.get(1);
                let policies: i64 = r.get(2);
                details.push(json!({
                    "table": format!("{schema}.{table}"), "exists": true,
                    "enabled": enabled, "forced": forced, "must_force": must_force,
                    "policies": policies,
                }));
                if !enabled {
                    state = state.max_sev(State::Warning);
                    found.push(format!("{schema}.{table}: row-level security not enabled"));
                    fixes.push(format!("ALTER TABLE {q} ENABLE ROW LEVEL SECURITY"));
                }
                if must_force && !forced {
                    state = state.max_sev(State::Warning);
                    found.push(format!(
                        "{schema}.{table}: row-level security not forced (the owner bypasses it)"
                    ));
                    fixes.push(format!("ALTER TABLE {q} FORCE ROW LEVEL SECURITY"));
                }
                if enabled && (forced || !must_force) {
                    fine.push(format!(
                        "{schema}.{table} enabled{} ({policies} policies)",
                        if forced { "+forced" } else { "" }
                    ));
                }
            }
        }
    }
    let failing = found.len();
    let value = if found.is_empty() {
        fine.join(", ")
    } else {
        found.join("; ")
    };
    let mut check = Check::new(ID, state, value, fixes.join("; "))
        .threshold("[security] rls_tables enabled, rls_forced enabled and forced")
        .metric(Metric::new(
            "rls_problems",
            "Row-level security problems of the tables named in [security] rls_tables/rls_forced.",
            failing as f64,
        ));
    check.details = Some(json!({ "tables": details }));
    check
}

/// "15.8" → 150008 (server_version_num form); also "15" → 150000, "9.6.24" → 90624.
pub fn parse_version(v: &str) -> Option<i32> {
    let parts: Vec<i32> = v
        .trim()
        .split('.')
        .map(|p| p.parse::<i32>().ok().filter(|n| *n >= 0))
        .collect::<Option<Vec<_>>>()?;
    match parts.as_slice() {
        [major] if *major >= 10 => Some(major * 10000),
        [major, minor] if *major >= 10 && *minor < 10000 => Some(major * 10000 + minor),
        [9, minor, patch] if *minor < 100 && *patch < 100 => Some(90000 + minor * 100 + patch),
        _ => None,
    }
}

async fn updates(ctx: &Ctx<'_>) -> Check {
    const ID: &str = "server_updates";
    let t = ctx.t();
    let row = match ctx.client.query_one(SQL_VERSION, &[]).await {
        Ok(r) => r,
        Err(e) => return super::unknown(ID, &e, "could not read server_version"),
    };
    let num: i32 = row.get(0);
    let version: String = row.get(1);
    let uptime: f64 = row.get(2);
    let running = version
        .split_whitespace()
        .next()
        .unwrap_or(&version)
        .to_string();
    let mut state = State::Ok;
    let mut value = Vec::new();
    let mut hint = Vec::new();
    match t.min_server_version.as_deref() {
        None => {
            value.push(format!("PostgreSQL {running} (no minimum version set)"));
            hint.push(
                "set [reports] min_server_version to the newest minor release of this major \
                 version from the PostgreSQL release notes (opsctl has no internet access and \
                 cannot look it up)"
                    .to_string(),
            );
        }
        Some(min) => match parse_version(min) {
            None => {
                state = State::Unknown;
                value.push(format!(
                    "[reports] min_server_version {min:?} is not a version"
                ));
                hint.push("write it as major.minor, e.g. \"15.8\"".into());
            }
            Some(want) if num < want => {
                state = State::Warning;
                value.push(format!(
                    "PostgreSQL {running} is older than min_server_version {min}"
                ));
                hint.push(format!(
                    "install PostgreSQL {min} or newer (minor updates carry security fixes) and \
                     restart; opsctl has no internet access: keep min_server_version current \
                     from the release notes"
                ));
            }
            Some(_) => value.push(format!("PostgreSQL {running} ≥ min_server_version {min}")),
        },
    }
    let days = uptime / 86_400.0;
    let max = t.max_server_uptime_days;
    if max > 0.0 && days >= max {
        state = state.max_sev(State::Warning);
        value.push(format!(
            "up {} since the last restart (more than {max} days)",
            human_duration(uptime)
        ));
        hint.push(
            "minor updates take effect only after a restart: install the latest minor release \
             and restart in a maintenance window"
                .into(),
        );
    } else {
        value.push(format!("up {}", human_duration(uptime)));
    }
    let threshold = match &t.min_server_version {
        Some(m) => format!("≥ {m}, uptime < {max} days"),
        None => format!("uptime < {max} days"),
    };
    Check::new(ID, state, value.join(", "), hint.join("; "))
        .threshold(threshold)
        .metric(Metric::new(
            "server_version_num",
            "server_version_num of the running PostgreSQL server.",
            f64::from(num),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: &str, addr: Option<&str>, mask: Option<&str>, method: &str) -> HbaRule {
        HbaRule {
            kind: kind.into(),
            database: vec!["all".into()],
            users: vec!["all".into()],
            address: addr.map(Into::into),
            netmask: mask.map(Into::into),
            method: method.into(),
        }
    }

    #[test]
    fn versions_parse_like_server_version_num() {
        assert_eq!(parse_version("15.8"), Some(150008));
        assert_eq!(parse_version("15"), Some(150000));
        assert_eq!(parse_version("9.6.24"), Some(90624));
        assert_eq!(parse_version("15.x"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn hba_rules_are_judged() {
        let lo = rule(
            "hostssl",
            Some("127.0.0.1"),
            Some("255.255.255.255"),
            "trust",
        );
        assert_eq!(judge_hba(&lo).unwrap().0, State::Warning);
        let net = rule("host", Some("10.0.0.0"), Some("255.0.0.0"), "trust");
        assert_eq!(judge_hba(&net).unwrap().0, State::Critical);
        let all = rule("hostssl", Some("all"), None, "password");
        assert_eq!(judge_hba(&all).unwrap().0, State::Warning);
        let nossl = rule("host", Some("0.0.0.0"), Some("0.0.0.0"), "scram-sha-256");
        assert_eq!(judge_hba(&nossl).unwrap().0, State::Warning);
        let good = rule("hostssl", Some("0.0.0.0"), Some("0.0.0.0"), "scram-sha-256");
        assert!(judge_hba(&good).is_none());
        let lohost = rule(
            "host",
            Some("::1"),
            Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            "scram-sha-256",
        );
        assert!(judge_hba(&lohost).is_none());
        let rej = rule("hostnossl", Some("all"), None, "reject");
        assert!(judge_hba(&rej).is_none());
        let wide_lo = rule("host", Some("127.0.0.0"), Some("128.0.0.0"), "md5");
        assert!(
            judge_hba(&wide_lo).is_some(),
            "a /1 around 127 is not loopback"
        );
    }
}
