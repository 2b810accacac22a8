//! Connection settings: libpq-style URL / key=value parsing, PG* environment fallback,
//! libpq's password file, sslmode semantics stricter than libpq (default verify-full),
//! and redaction. Parse errors never quote a token that may be part of a password.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

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
            _ => Err(Error::Config(
                "unknown sslmode (value not shown): expected disable, require, verify-ca or \
                 verify-full"
                    .into(),
            )),
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
    /// Wiped from memory when dropped.
    password: Option<Zeroizing<String>>,
    /// libpq's password file (`passfile`, `PGPASSFILE`), else `~/.pgpass`.
    pub passfile: Option<PathBuf>,
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
    ("PGPASSFILE", "passfile"),
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
        let mut s = Self::from_params(params)?;
        if s.password.is_none() {
            let file = s.passfile.clone().or_else(|| {
                env("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| Path::new(&h).join(".pgpass"))
            });
            if let Some(file) = file {
                s.password = passfile_lookup(&file, &s);
            }
        }
        Ok(s)
    }

    fn from_params(params: BTreeMap<String, String>) -> Result<Self, Error> {
        let mut s = ConnSettings::default();
        for (k, v) in params {
            match k.as_str() {
                "host" => s.host = Some(v),
                "hostaddr" => {
                    s.hostaddr = Some(v.parse().map_err(|_| {
                        Error::Config("hostaddr (value not shown) is not an IP address".into())
                    })?)
                }
                "port" => {
                    s.port = Some(v.parse().map_err(|_| {
                        Error::Config(
                            "port (value not shown) is not a number from 1 to 65535".into(),
                        )
                    })?)
                }
                "user" => s.user = Some(v),
                "password" => s.password = Some(Zeroizing::new(v)),
                "passfile" => s.passfile = Some(PathBuf::from(v)),
                "dbname" => s.dbname = Some(v),
                "sslmode" => s.sslmode = Some(SslMode::parse(&v)?),
                "sslrootcert" => s.sslrootcert = Some(PathBuf::from(v)),
                "sslcert" => s.sslcert = Some(PathBuf::from(v)),
                "sslkey" => s.sslkey = Some(PathBuf::from(v)),
                "connect_timeout" => {
                    let secs: u64 = v.parse().map_err(|_| {
                        Error::Config(
                            "connect_timeout (value not shown) is not a number of seconds".into(),
                        )
                    })?;
                    s.connect_timeout = (secs > 0).then(|| Duration::from_secs(secs.max(2)));
                }
                "application_name" => s.application_name = Some(v),
                "options" => s.options = Some(v),
                other => return Err(unknown_option(other)),
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
        self.password.as_deref().map(String::as_str)
    }

    pub fn set_password(&mut self, password: Option<String>) {
        self.password = password.map(Zeroizing::new);
    }

    /// The host name a password-file line is matched against, as libpq does: the
    /// default socket directories count as `localhost`.
    fn passfile_host(&self) -> String {
        match (&self.host, self.hostaddr) {
            (Some(h), _) if !h.is_empty() => {
                if h == "/var/run/postgresql" || h == "/run/postgresql" || h == "/tmp" {
                    "localhost".into()
                } else {
                    h.clone()
                }
            }
            (_, Some(a)) => a.to_string(),
            _ => "localhost".into(),
        }
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
            env.push(("PGPASSWORD", p.to_string()));
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

/// A first word that is not key=value but reads like a URL with a mistyped scheme
/// (`postgres//…`, `postgresql:/…`, `postgresql:…`) or none (`user:pw@host/db`).
fn looks_like_url(s: &str) -> bool {
    let first = s.split_whitespace().next().unwrap_or("");
    let lower = first.to_ascii_lowercase();
    !first.contains('=')
        && (lower.starts_with("postgres") || first.contains('@') || first.contains("//"))
}

/// What to do about characters of a password that a URL cannot hold as they are.
const ENCODE_HINT: &str = "If the password contains / ? # @ : & = % or a space, percent-encode \
     them (%2F %3F %23 %40 %3A %26 %3D %25 %20), or use key=value form with the \
     password in single quotes, or leave the password out and use PGPASSWORD or a password file \
     (PGPASSFILE, ~/.pgpass)";

/// The connection options opsctl understands.
const SUPPORTED: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "passfile",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
];

/// Other libpq options: named in errors (they are not secrets), but not supported.
const LIBPQ_OTHERS: &[&str] = &[
    "channel_binding",
    "client_encoding",
    "fallback_application_name",
    "gssencmode",
    "gsslib",
    "keepalives",
    "keepalives_count",
    "keepalives_idle",
    "keepalives_interval",
    "krbsrvname",
    "load_balance_hosts",
    "replication",
    "require_auth",
    "requirepeer",
    "service",
    "ssl",
    "ssl_max_protocol_version",
    "ssl_min_protocol_version",
    "sslcertmode",
    "sslcompression",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslsni",
    "target_session_attrs",
    "tcp_user_timeout",
];

fn is_known_option(key: &str) -> bool {
    SUPPORTED.contains(&key) || LIBPQ_OTHERS.contains(&key)
}

/// The error for an option opsctl does not support. An unknown name is not shown (it may
/// be a piece of a password that held `&` or a space); a near supported name is suggested.
fn unknown_option(key: &str) -> Error {
    let list = SUPPORTED.join(", ");
    if LIBPQ_OTHERS.contains(&key) {
        return Error::Config(format!(
            "connection option {key} is not supported by opsctl; supported: {list}"
        ));
    }
    let near = SUPPORTED
        .iter()
        .map(|s| (crate::text::edit_distance(key, s), *s))
        .filter(|(d, _)| *d <= 2)
        .min();
    let hint = match near {
        Some((_, s)) => format!(" (did you mean {s}?)"),
        None => String::new(),
    };
    Error::Config(format!(
        "unknown connection option (name not shown: it may be part of a password){hint}; \
         supported: {list}. {ENCODE_HINT}"
    ))
}

/// Looks the password up in a libpq password file (`host:port:database:user:password`
/// lines, `*` matching anything, `\` escaping `:` and `\`, `#` comments), with libpq's
/// rules: a file that is not plain or that the group or others may access is ignored
/// with a warning; the first matching line wins; an empty password counts as none.
fn passfile_lookup(path: &Path, s: &ConnSettings) -> Option<Zeroizing<String>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        warn_once(format!(
            "warning: password file \"{}\" is not a plain file",
            path.display()
        ));
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warn_once(format!(
            "warning: password file \"{}\" has group or world access; permissions should be \
             u=rw (0600) or less (the file is ignored)",
            path.display()
        ));
        return None;
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).ok()?);
    let host = s.passfile_host();
    let port = s.port_or_default().to_string();
    let (db, user) = (s.dbname_or_default(), s.user_or_default());
    passfile_match(&text, [&host, &port, &db, &user])
}

/// The password of the first line of a password file matching the four fields.
fn passfile_match(text: &str, want: [&str; 4]) -> Option<Zeroizing<String>> {
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        let mut ok = true;
        for w in want {
            match passfile_field(rest, w) {
                Some(r) => rest = r,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        let mut pw = Zeroizing::new(String::with_capacity(rest.len()));
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                pw.extend(chars.next());
            } else {
                pw.push(c);
            }
        }
        return (!pw.is_empty()).then_some(pw);
    }
    None
}

/// libpq's `pwdfMatchesString`: the rest of the line after a field equal to `want`
/// (or `*`), else None.
fn passfile_field<'a>(line: &'a str, want: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix("*:") {
        return Some(rest);
    }
    let mut want = want.chars().peekable();
    let mut it = line.char_indices();
    while let Some((i, c)) = it.next() {
        let (c, escaped) = if c == '\\' {
            match it.next() {
                Some((_, n)) => (n, true),
                None => return None,
            }
        } else {
            (c, false)
        };
        if c == ':' && !escaped && want.peek().is_none() {
            return Some(&line[i + 1..]);
        }
        if want.next() != Some(c) {
            return None;
        }
    }
    None
}

fn warn_once(msg: String) {
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    if let Ok(mut seen) = SEEN.lock() {
        if !seen.contains(&msg) {
            eprintln!("{msg}");
            seen.push(msg);
        }
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
    } else if let Some((scheme, _)) = s.split_once("://") {
        // The scheme is shown only when it cannot hold a password.
        let shown = if !scheme.is_empty()
            && scheme.len() <= 20
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            format!(" (not {scheme:?})")
        } else {
            String::new()
        };
        Err(Error::Config(format!(
            "malformed database URL: the scheme must be postgresql:// or postgres://{shown}"
        )))
    } else if looks_like_url(s) {
        Err(Error::Config(
            "malformed database URL (not shown: it may hold the password): it must start with \
             postgresql:// or postgres:// (two slashes)"
                .into(),
        ))
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
    let misplaced_at = path.is_some_and(|p| p.contains('@'))
        || query.is_some_and(|q| {
            let first = q.split('&').next().unwrap_or("");
            first.split('=').next().unwrap_or("").contains('@')
        });
    if !authority.contains('@') && misplaced_at {
        return Err(Error::Config(format!(
            "malformed database URL: an '@' follows a '/' or '?', so the user:password@ part \
             cannot be told apart from the host and database. {ENCODE_HINT}"
        )));
    }
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
                    "malformed database URL: the port (not shown: it may be part of the \
                     password) is not a number from 1 to 65535. {ENCODE_HINT}"
                )));
            }
            out.insert("port".into(), p.to_string());
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.insert("dbname".into(), decode(db, "the database name")?);
    }
    if let Some(q) = query {
        for (i, pair) in q.split('&').filter(|p| !p.is_empty()).enumerate() {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                Error::Config(format!(
                    "malformed database URL: query parameter {} (not shown) is not key=value. \
                     {ENCODE_HINT}",
                    i + 1
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
    let mut word = 0usize;
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        word += 1;
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
            let what = if is_known_option(&key) {
                format!("{key} has no '=value'")
            } else {
                format!("word {word} (not shown: it may be part of a password) is not key=value")
            };
            return Err(Error::Config(format!(
                "malformed connection string: {what}. Put a value that holds spaces in \
                 single quotes (\\' for a quote inside), or give a URL starting with \
                 postgresql://"
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
                            "malformed connection string: unterminated quote in the value of {}",
                            if is_known_option(&key) {
                                key.as_str()
                            } else {
                                "an option"
                            }
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

/// Removes passwords from anything that looks like (or contains) a connection string,
/// for messages and logs. It errs towards hiding too much:
/// - URL userinfo: from the first `:` after `scheme://` up to the *last* `@` (a password
///   may hold `@`, `/`, `?`, `#`); the same in a word like `postgres//u:pw@h` or
///   `u:pw@h/d` (a mistyped scheme);
/// - `password=` (also `PGPASSWORD=`, `sslpassword=`, a percent-encoded key like
///   `pass%77ord=`, spaces around `=`) with a quoted or backslash-escaped value, and
///   every following word up to the next known `option=` (an unquoted password with a
///   space or `&` spills into them).
pub fn redact(s: &str) -> String {
    // The AWS secret variables' values (an S3 repository's credentials), wherever they are.
    let aws = crate::storage::s3::redact(s);
    let s = aws.as_str();
    let mut spans = userinfo_spans(s);
    spans.extend(password_value_spans(s));
    if spans.is_empty() {
        return s.to_string();
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (mut a, mut b) in spans {
        // Whole characters only (a backslash escape may end inside one).
        while !s.is_char_boundary(a) {
            a -= 1;
        }
        while b < s.len() && !s.is_char_boundary(b) {
            b += 1;
        }
        let b = b.min(s.len());
        if b <= at {
            continue;
        }
        let a = a.max(at);
        out.push_str(&s[at..a]);
        out.push_str("****");
        at = b;
    }
    out.push_str(&s[at..]);
    out
}

/// Byte ranges of URL passwords: `scheme://user:PASSWORD@host` and words of the shape
/// `[scheme[:/]*]user:PASSWORD@host`.
fn userinfo_spans(s: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    // Userinfo after `://`: the user part holds no '/', '?', '#' or space; the password
    // runs to the last '@' of everything after it.
    let mut from = 0;
    while let Some(rel) = s[from..].find("://") {
        let start = from + rel + 3;
        let rest = &s[start..];
        if let (Some(colon), Some(last_at)) = (rest.find(':'), rest.rfind('@')) {
            let user = &rest[..colon];
            if colon < last_at
                && !user.contains(['/', '?', '#', '@'])
                && !user.contains(char::is_whitespace)
            {
                spans.push((start + colon + 1, start + last_at));
            }
        }
        from = start;
    }
    // Any word `…user:PASSWORD@host…` (a mistyped or missing scheme).
    let mut pos = 0;
    for word in s.split(|c: char| c.is_ascii_whitespace()) {
        let base = pos;
        pos += word.len() + 1;
        if word.contains("://") {
            continue;
        }
        let skip = scheme_prefix_len(word);
        let (Some(first_at), Some(last_at)) = (word.find('@'), word.rfind('@')) else {
            continue;
        };
        if first_at < skip {
            continue;
        }
        let Some(colon) = word[skip..first_at].find(':').map(|c| c + skip) else {
            continue;
        };
        if word[..colon].contains('=') {
            continue;
        }
        spans.push((base + colon + 1, base + last_at));
    }
    spans
}

/// Length of a mistyped scheme at the start of a word: `postgres//`, `postgresql:/`.
fn scheme_prefix_len(word: &str) -> usize {
    let b = word.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    let name = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || b"+.-".contains(c))
        .count();
    let seps = b[name..]
        .iter()
        .take_while(|c| **c == b':' || **c == b'/')
        .count();
    if b[name..name + seps].contains(&b'/') {
        name + seps
    } else {
        0
    }
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'%'
}

/// Byte ranges of the values of password-like keys (see [`redact`]).
fn password_value_spans(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !is_key_char(b[i]) || (i > 0 && is_key_char(b[i - 1])) {
            i += 1;
            continue;
        }
        let key_start = i;
        while i < b.len() && is_key_char(b[i]) {
            i += 1;
        }
        let key = percent_encoding::percent_decode_str(&s[key_start..i])
            .decode_utf8_lossy()
            .to_ascii_lowercase();
        if !(key.ends_with("password")
            || key.ends_with("passphrase")
            || key.ends_with("secret_access_key")
            || key.ends_with("session_token"))
        {
            continue;
        }
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j >= b.len() || b[j] != b'=' {
            continue;
        }
        j += 1;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let value_start = j;
        let mut end = value_end(b, j);
        // Following words that are not `known_option=` belong to an unquoted password.
        if b.get(j) != Some(&b'\'') {
            loop {
                let mut k = end;
                while k < b.len() && (b[k].is_ascii_whitespace() || b[k] == b'&') {
                    k += 1;
                }
                if k >= b.len() || starts_with_option(&s[k..]) {
                    break;
                }
                end = value_end(b, k);
            }
        }
        if end > value_start {
            spans.push((value_start, end));
        }
        i = end.max(i);
    }
    spans
}

/// The end of a value starting at `j`: a quoted value to its closing quote (`\'`
/// escaped), else up to whitespace or `&` (`\` escaping the next character).
fn value_end(b: &[u8], mut j: usize) -> usize {
    if j < b.len() && b[j] == b'\'' {
        j += 1;
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                b'\'' => return j + 1,
                _ => j += 1,
            }
        }
        return b.len();
    }
    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'&' {
        j += if b[j] == b'\\' { 2 } else { 1 };
    }
    j.min(b.len())
}

/// True when `s` starts with `name=` (spaces allowed before `=`) for a libpq option.
fn starts_with_option(s: &str) -> bool {
    let n = s.bytes().take_while(|c| is_key_char(*c)).count();
    let key = percent_encoding::percent_decode_str(&s[..n]).decode_utf8_lossy();
    is_known_option(&key) && s[n..].trim_start_matches(' ').starts_with('=')
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
            redact("postgresql://u:hunter2@h/d?password=x&sslmode=require"),
            "postgresql://u:****@h/d?password=****&sslmode=require"
        );
        assert_eq!(
            redact("host=h password=pw user=u"),
            "host=h password=**** user=u"
        );
    }
    /// The cases of issue 13: no error message quotes a piece of the password.
    #[test]
    fn parse_errors_never_quote_the_password() {
        for (s, secret) in [
            ("postgresql://ops:pX7/ss@db/x", "pX7"),
            ("postgresql://ops:12/Q34@db:5432/trading", "Q34"),
            ("password=my s3cr3tw0rd", "s3cr3tw0rd"),
            ("postgres//u:Sup3rSecret@h/d", "Sup3rSecret"),
            ("postgresql:/u:Sup3rSecret@h/d", "Sup3rSecret"),
            ("postgresql://u:a?Sup3rSecret@h/d", "Sup3rSecret"),
            ("postgresql://u@h/d?password=a&Sup3rSecret=b", "Sup3rSecret"),
            ("postgresql://u:Sup3rSecret@h:99999/d", "Sup3rSecret"),
            ("host=h password='Sup3rSecret", "Sup3rSecret"),
            ("host=h port=Sup3rSecret", "Sup3rSecret"),
            ("host=h sslmode=Sup3rSecret", "Sup3rSecret"),
            ("mysql://u:Sup3rSecret@h/d", "Sup3rSecret"),
        ] {
            let e = resolve(Some(s), &[]).expect_err(s).to_string();
            assert!(!e.contains(secret), "{s:?} → {e}");
        }
        // Helpful where it is safe: a known option named, a near one suggested.
        let e = resolve(Some("host=h sslmod=require"), &[]).unwrap_err();
        assert!(e.to_string().contains("did you mean sslmode?"), "{e}");
        let e = resolve(Some("host=h target_session_attrs=any"), &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("target_session_attrs is not supported"),
            "{e}"
        );
        let e = resolve(Some("postgresql://u:a/b@h/d"), &[]).unwrap_err();
        assert!(e.to_string().contains("%2F"), "{e}");
        let e = resolve(Some("postgres//u:a@h/d"), &[]).unwrap_err();
        assert!(e.to_string().contains("postgresql://"), "{e}");
    }

    #[test]
    fn redaction_of_awkward_passwords() {
        for (s, want) in [
            ("password='a b'", "password=****"),
            ("password='a \\' b' host=h", "password=**** host=h"),
            ("password = x\\ y user=u", "password = **** user=u"),
            (
                "host=h password=my secret port=1",
                "host=h password=**** port=1",
            ),
            ("postgresql://u:Sup3r@Secret@h/d", "postgresql://u:****@h/d"),
            ("postgresql://u:a/b?c#d@h:5/x", "postgresql://u:****@h:5/x"),
            ("postgres//u:Sup3rSecret@h/d", "postgres//u:****@h/d"),
            ("postgresql:/u:Sup3rSecret@h/d", "postgresql:/u:****@h/d"),
            ("u:Sup3rSecret@h/d", "u:****@h/d"),
            (
                "postgresql://h/d?pass%77ord=x&user=u",
                "postgresql://h/d?pass%77ord=****&user=u",
            ),
            (
                "postgresql://h/d?password=a&b=c&sslmode=require",
                "postgresql://h/d?password=****&sslmode=require",
            ),
            ("PGPASSWORD=x", "PGPASSWORD=****"),
            ("error: \"password=sé\\é\" x", "error: \"password=****"),
        ] {
            assert_eq!(redact(s), want, "{s:?}");
        }
        // Nothing secret: unchanged.
        for s in [
            "postgresql://u@h:5432/d?sslmode=require",
            "host=h user=u dbname=d",
            "no index named \"x\"",
            ENCODE_HINT,
            &resolve(Some("password=my secret"), &[])
                .unwrap_err()
                .to_string(),
        ] {
            assert_eq!(redact(s), s);
        }
    }

    #[test]
    fn password_file_lines_match_like_libpq() {
        let text = "# comment\n\
                    h:5432:db:other:no\n\
                    h\\:x:5432:*:u:esc\n\
                    *:*:db:u:p\\:w\\\\d\n\
                    *:*:*:*:last\n";
        let m = |w: [&str; 4]| passfile_match(text, w).map(|p| p.to_string());
        assert_eq!(m(["h", "5432", "db", "u"]).as_deref(), Some("p:w\\d"));
        assert_eq!(m(["h:x", "5432", "any", "u"]).as_deref(), Some("esc"));
        assert_eq!(m(["h", "5432", "db", "other"]).as_deref(), Some("no"));
        assert_eq!(m(["z", "1", "y", "x"]).as_deref(), Some("last"));
        assert_eq!(passfile_match("h:1:d:u:\n", ["h", "1", "d", "u"]), None);
        assert_eq!(passfile_match("h:1:d:u\n", ["h", "1", "d", "u"]), None);
    }

    #[test]
    fn password_file_from_home_is_used_only_without_a_password() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("opsctl-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(".pgpass");
        std::fs::write(&file, "h:*:d:u:from-file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let home = dir.display().to_string();
        let s = resolve(Some("host=h user=u dbname=d"), &[("HOME", &home)]).unwrap();
        assert_eq!(s.password(), Some("from-file"));
        let s = resolve(
            Some("host=h user=u dbname=d password=given"),
            &[("HOME", &home)],
        )
        .unwrap();
        assert_eq!(s.password(), Some("given"));
        let s = resolve(
            Some("host=h user=u dbname=d"),
            &[("HOME", &home), ("PGPASSFILE", "/nonexistent")],
        )
        .unwrap();
        assert_eq!(s.password(), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let s = resolve(Some("host=h user=u dbname=d"), &[("HOME", &home)]).unwrap();
        assert_eq!(s.password(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
