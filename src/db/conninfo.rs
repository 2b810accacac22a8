//! Connection settings: libpq-style URL / key=value parsing, PG* environment fallback,
//! sslmode semantics stricter than libpq (default verify-full), and redaction.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// How the TLS session is negotiated and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS at all (warned about).
    Disable,
    /// TLS, but the server certificate is not verified (warned about).
    Require,
    /// TLS, the certificate chain is verified, the hostname is not.
    VerifyCa,
    /// TLS, chain and hostname verified. The default.
    VerifyFull,
}

impl SslMode {
    /// Parses a libpq sslmode value. `allow` and `prefer` are refused: opsctl never
    /// silently falls back to plaintext.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "disable" => Ok(Self::Disable),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            "allow" | "prefer" => Err(Error::Config(format!(
                "sslmode={s} is not supported: opsctl never falls back to an unencrypted connection; \
                 use verify-full (default), verify-ca, require or disable"
            ))),
            other => Err(Error::Config(format!(
                "unknown sslmode {other:?}: expected disable, require, verify-ca or verify-full"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fully resolved connection settings. `Debug` and `Display` never show the password.
#[derive(Clone, Default)]
pub struct ConnSettings {
    pub host: Option<String>,
    pub hostaddr: Option<IpAddr>,
    pub port: Option<u16>,
    pub user: Option<String>,
    password: Option<String>,
    pub dbname: Option<String>,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<PathBuf>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
    pub application_name: Option<String>,
    pub options: Option<String>,
}

/// Where the settings come from, before resolution. Kept separate so tests can
/// resolve without touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct ConnSources {
    /// `--database-url`, else `OPSCTL_DATABASE_URL`, else `DATABASE_URL`.
    pub url: Option<String>,
    /// `--sslmode` flag: overrides everything.
    pub sslmode: Option<String>,
    /// `--sslrootcert` flag: overrides everything.
    pub sslrootcert: Option<PathBuf>,
}

/// The libpq environment variables opsctl honours, in the order documented.
pub const PG_ENV: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGDATABASE", "dbname"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGAPPNAME", "application_name"),
    ("PGOPTIONS", "options"),
];

impl ConnSettings {
    /// Resolves settings from a connection string (optional), the environment lookup
    /// `env` (for PG* fallbacks) and the overriding flags.
    pub fn resolve(
        sources: &ConnSources,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let mut params = match sources.url.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => parse_conninfo(s)?,
            _ => BTreeMap::new(),
        };
        for (var, key) in PG_ENV {
            if !params.contains_key(*key) {
                if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                    params.insert((*key).to_string(), v);
                }
            }
        }
        if let Some(m) = &sources.sslmode {
            params.insert("sslmode".into(), m.clone());
        }
        if let Some(p) = &sources.sslrootcert {
            params.insert("sslrootcert".into(), p.display().to_string());
        }
        Self::from_params(params)
    }

    fn from_params(params: BTreeMap<String, String>) -> Result<Self, Error> {
        let mut s = ConnSettings::default();
        for (k, v) in params {
            match k.as_str() {
                "host" => s.host = Some(v),
                "hostaddr" => {
                    s.hostaddr = Some(v.parse().map_err(|_| {
                        Error::Config(format!("hostaddr {v:?} is not an IP address"))
                    })?)
                }
                "port" => {
                    s.port = Some(v.parse().map_err(|_| {
                        Error::Config(format!("port {v:?} is not a valid port number"))
                    })?)
                }
                "user" => s.user = Some(v),
                "password" => s.password = Some(v),
                "dbname" => s.dbname = Some(v),
                "sslmode" => s.sslmode = Some(SslMode::parse(&v)?),
                "sslrootcert" => s.sslrootcert = Some(PathBuf::from(v)),
                "sslcert" => s.sslcert = Some(PathBuf::from(v)),
                "sslkey" => s.sslkey = Some(PathBuf::from(v)),
                "connect_timeout" => {
                    let secs: u64 = v.parse().map_err(|_| {
                        Error::Config(format!("connect_timeout {v:?} is not a number of seconds"))
                    })?;
                    s.connect_timeout = (secs > 0).then(|| Duration::from_secs(secs.max(2)));
                }
                "application_name" => s.application_name = Some(v),
                "options" => s.options = Some(v),
                other => {
                    return Err(Error::Config(format!(
                    "unknown connection option {other:?}; supported: host, hostaddr, port, user, \
                         password, dbname, sslmode, sslrootcert, sslcert, sslkey, connect_timeout, \
                         application_name, options"
                )))
                }
            }
        }
        Ok(s)
    }

    /// The effective sslmode (verify-full unless set).
    pub fn sslmode(&self) -> SslMode {
        self.sslmode.unwrap_or(SslMode::VerifyFull)
    }

    pub fn host_or_default(&self) -> String {
        self.host.clone().unwrap_or_else(|| "localhost".into())
    }

    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(5432)
    }

    /// The user name: as set, else the OS user, as libpq does.
    pub fn user_or_default(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "postgres".into())
    }

    pub fn dbname_or_default(&self) -> String {
        self.dbname
            .clone()
            .unwrap_or_else(|| self.user_or_default())
    }

    /// True when the host is a Unix-socket directory: no TLS there, as in libpq.
    pub fn is_unix_socket(&self) -> bool {
        self.hostaddr.is_none() && self.host_or_default().starts_with('/')
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub fn set_password(&mut self, password: Option<String>) {
        self.password = password;
    }

    /// The same settings pointed at another database (drills, restores, tests).
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut s = self.clone();
        s.dbname = Some(dbname.to_string());
        s
    }

    /// Environment for libpq child processes (pg_dump, pg_restore, psql). The password
    /// travels in the environment, never in argv.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host_or_default()),
            ("PGPORT", self.port_or_default().to_string()),
            ("PGUSER", self.user_or_default()),
            ("PGDATABASE", self.dbname_or_default()),
            ("PGSSLMODE", self.sslmode().as_str().to_string()),
        ];
        if let Some(a) = self.hostaddr {
            env.push(("PGHOSTADDR", a.to_string()));
        }
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD", p.clone()));
        }
        for (var, path) in [
            ("PGSSLROOTCERT", &self.sslrootcert),
            ("PGSSLCERT", &self.sslcert),
            ("PGSSLKEY", &self.sslkey),
        ] {
            if let Some(p) = path {
                env.push((var, p.display().to_string()));
            }
        }
        if let Some(t) = self.connect_timeout {
            env.push(("PGCONNECT_TIMEOUT", t.as_secs().to_string()));
        }
        if let Some(a) = &self.application_name {
            env.push(("PGAPPNAME", a.clone()));
        }
        if let Some(o) = &self.options {
            env.push(("PGOPTIONS", o.clone()));
        }
        env
    }
}

impl fmt::Display for ConnSettings {
    /// A redacted URL: never contains the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgresql://{}@{}:{}/{}?sslmode={}",
            self.user_or_default(),
            self.host_or_default(),
            self.port_or_default(),
            self.dbname_or_default(),
            self.sslmode()
        )
    }
}

impl fmt::Debug for ConnSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnSettings({self})")
    }
}

/// Parses a connection string in URI form (`postgres://` or `postgresql://`) or in
/// `key=value` form into libpq parameter names.
pub fn parse_conninfo(s: &str) -> Result<BTreeMap<String, String>, Error> {
    if let Some(rest) = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        parse_uri(rest)
    } else if s.contains("://") {
        Err(Error::Config(format!(
            "malformed database URL {}: the scheme must be postgresql:// or postgres://",
            redact(s)
        )))
    } else {
        parse_keyvalue(s)
    }
}

fn decode(part: &str, what: &str) -> Result<String, Error> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::Config(format!("malformed database URL: {what} is not valid UTF-8")))
}

fn parse_uri(rest: &str) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let (user, pw) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.insert("user".into(), decode(user, "the user")?);
            }
            if let Some(p) = pw {
                out.insert("password".into(), decode(p, "the password")?);
            }
            hp
        }
        None => authority,
    };
    if !hostport.is_empty() {
        if hostport.contains(',') {
            return Err(Error::Config(
                "malformed database URL: several hosts are not supported; name one host".into(),
            ));
        }
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            let (h, after) = inner.split_once(']').ok_or_else(|| {
                Error::Config("malformed database URL: unclosed [ in IPv6 host".into())
            })?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (decode(h, "the host")?, Some(p)),
                None => (decode(hostport, "the host")?, None),
            }
        };
        if !host.is_empty() {
            out.insert("host".into(), host);
        }
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            if p.parse::<u16>().is_err() {
                return Err(Error::Config(format!(
                    "malformed database URL: port {p:?} is not a number from 1 to 65535"
                )));
            }
            out.insert("port".into(), p.to_string());
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.insert("dbname".into(), decode(db, "the database name")?);
    }
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                Error::Config(format!(
                    "malformed database URL: query parameter {:?} has no value",
                    pair
                ))
            })?;
            let k = decode(k, "a parameter name")?;
            let k = if k == "ssl" { "sslmode".to_string() } else { k };
            out.insert(k, decode(v, "a parameter value")?);
        }
    }
    Ok(out)
}

fn parse_keyvalue(s: &str) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(Error::Config(format!(
                "malformed connection string: expected key=value after {key:?} \
                 (or a URL starting with postgresql://)"
            )));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(Error::Config(format!(
                        "malformed connection string: unterminated quote in the value of {key:?}"
                    )))
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// Removes a password from anything that looks like a connection string, for messages.
pub fn redact(s: &str) -> String {
    let mut out = s.to_string();
    // URI userinfo: scheme://user:secret@host
    if let Some(scheme_end) = out.find("://") {
        let after = scheme_end + 3;
        if let Some(at_rel) = out[after..].find('@') {
            let userinfo = &out[after..after + at_rel];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(after + colon + 1..after + at_rel, "****");
            }
        }
    }
    // password=... in key/value form or URL query
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("password=") {
        let boundary_ok = i == 0 || {
            let prev = rest.as_bytes()[i - 1];
            prev == b' ' || prev == b'&' || prev == b'?'
        };
        result.push_str(&rest[..i + 9]);
        rest = &rest[i + 9..];
        if boundary_ok {
            let end = rest.find([' ', '&']).unwrap_or(rest.len());
            result.push_str("****");
            rest = &rest[end..];
        }
    }
    result.push_str(rest);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: Option<&str>, env: &[(&str, &str)]) -> Result<ConnSettings, Error> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConnSettings::resolve(
            &ConnSources {
                url: url.map(String::from),
                ..Default::default()
            },
            |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
        )
    }

    #[test]
    fn uri_form_with_query() {
        let s = resolve(
            Some("postgresql://alice:s%40cret@db.example:6543/trading?sslmode=verify-ca&sslrootcert=/ca.crt"),
            &[],
        )
        .unwrap();
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password(), Some("s@cret"));
        assert_eq!(s.host.as_deref(), Some("db.example"));
        assert_eq!(s.port, Some(6543));
        assert_eq!(s.dbname.as_deref(), Some("trading"));
        assert_eq!(s.sslmode(), SslMode::VerifyCa);
        assert_eq!(s.sslrootcert, Some(PathBuf::from("/ca.crt")));
        assert!(!s.to_string().contains("s@cret"));
        assert!(!format!("{s:?}").contains("s@cret"));
    }

    #[test]
    fn keyvalue_form_with_quotes() {
        let s = resolve(
            Some("host=localhost port=5433 user=bob password='a b\\'c' dbname=x"),
            &[],
        )
        .unwrap();
        assert_eq!(s.password(), Some("a b'c"));
        assert_eq!(s.port, Some(5433));
    }

    #[test]
    fn env_fills_what_url_leaves_unset() {
        let s = resolve(
            Some("postgresql://u@h/db"),
            &[
                ("PGSSLROOTCERT", "/env/ca.crt"),
                ("PGPORT", "7000"),
                ("PGHOST", "other"),
            ],
        )
        .unwrap();
        assert_eq!(s.sslrootcert, Some(PathBuf::from("/env/ca.crt")));
        assert_eq!(s.port, Some(7000));
        assert_eq!(s.host.as_deref(), Some("h"));
    }

    #[test]
    fn env_alone_describes_connection() {
        let s = resolve(
            None,
            &[
                ("PGHOST", "e"),
                ("PGDATABASE", "d"),
                ("PGSSLMODE", "require"),
            ],
        )
        .unwrap();
        assert_eq!(s.host.as_deref(), Some("e"));
        assert_eq!(s.sslmode(), SslMode::Require);
    }

    #[test]
    fn flags_override_everything() {
        let s = ConnSettings::resolve(
            &ConnSources {
                url: Some("postgresql://h/d?sslmode=require&sslrootcert=/a".into()),
                sslmode: Some("verify-ca".into()),
                sslrootcert: Some("/b".into()),
            },
            |k| (k == "PGSSLROOTCERT").then(|| "/env".into()),
        )
        .unwrap();
        assert_eq!(s.sslmode(), SslMode::VerifyCa);
        assert_eq!(s.sslrootcert, Some(PathBuf::from("/b")));
    }

    #[test]
    fn default_is_verify_full_and_bad_modes_refused() {
        assert_eq!(
            resolve(Some("host=x"), &[]).unwrap().sslmode(),
            SslMode::VerifyFull
        );
        assert!(resolve(Some("host=x sslmode=bogus"), &[]).is_err());
        assert!(resolve(Some("host=x sslmode=prefer"), &[]).is_err());
        assert!(resolve(Some("host=x nosuchkey=1"), &[]).is_err());
        assert!(resolve(Some("postgresql://h:99999/d"), &[]).is_err());
        assert!(resolve(Some("mysql://h/d"), &[]).is_err());
        assert!(resolve(Some("just-garbage"), &[]).is_err());
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("postgresql://u:hunter2@h/d?password=x&a=b"),
            "postgresql://u:****@h/d?password=****&a=b"
        );
        assert_eq!(
            redact("host=h password=pw user=u"),
            "host=h password=**** user=u"
        );
    }
}
