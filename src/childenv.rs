//! The environment of every child process opsctl starts: cleared, then only what the
//! child needs, so no secret of the caller (DATABASE_URL, OPSCTL_PASSPHRASE, cloud
//! credentials, …) leaks into pg_dump, pg_restore or a scheduled opsctl run.

use std::ffi::{OsStr, OsString};

/// Variables every child inherits: how to find programs, the user and home directory,
/// the locale and the time zone, where temporary files go. None is a secret.
const BASE: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

/// What a scheduled opsctl run inherits on top of [`BASE`]: opsctl's own settings, the
/// libpq variables it may fall back to, its logging filter, and the AWS credential chain
/// (a scheduled backup to an S3 repository needs it; pg_dump and pg_restore never get it).
const OPSCTL_PREFIXES: &[&str] = &["OPSCTL_", "PG", "RUST_LOG", "AWS_"];

fn inherited(prefixes: &[&str]) -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            BASE.contains(&k.as_ref())
                || k.starts_with("LC_")
                || prefixes.iter().any(|p| k.starts_with(p))
        })
        .collect()
}

/// The variables a libpq tool (pg_dump, pg_restore) inherits; the connection settings
/// are added by the caller from the resolved settings.
pub fn base() -> Vec<(OsString, OsString)> {
    inherited(&[])
}

/// A command for `program` with a cleared environment and [`base`] in it.
pub fn command(program: impl AsRef<OsStr>) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.env_clear().envs(base());
    c
}

/// A command for a child opsctl (the scheduler's jobs): a cleared environment with
/// [`base`], opsctl's own `OPSCTL_*` settings, the `PG*` variables and `RUST_LOG`.
pub fn opsctl_command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    c.env_clear().envs(inherited(OPSCTL_PREFIXES));
    c
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_harmless_variables_are_inherited() {
        let env = super::inherited(&[]);
        let names: Vec<String> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "PATH"), "{names:?}");
        for n in &names {
            assert!(
                super::BASE.contains(&n.as_str()) || n.starts_with("LC_"),
                "{n} inherited"
            );
        }
    }
}
