//! Key material for backups: 32-byte key files, passphrases, key ids, and where they come
//! from (`--key-file`/`OPSCTL_KEY_FILE`, `--passphrase-file`/`OPSCTL_PASSPHRASE`). Secrets
//! live in `Zeroizing` buffers and never reach messages.
//!
//! A key file holds exactly 32 bytes: either raw (32 bytes, nothing else) or as 64
//! hexadecimal characters optionally followed by one newline (what `backup keygen`
//! writes). Its mode must not allow group or other access (0600 or stricter).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::Error;

/// Length of every key-encryption key and data key, in bytes.
pub const KEY_LEN: usize = 32;

/// What the expected key file looks like, quoted in every rejection.
pub const KEY_FILE_FORMAT: &str = "a key file must hold exactly 32 bytes: 32 raw bytes, or 64 hexadecimal \
     characters optionally followed by a newline (create one with `opsctl backup keygen --out FILE`)";

/// A key-encryption key source: a 32-byte key or a passphrase (stretched with Argon2id).
pub enum KeyMaterial {
    Key(Zeroizing<[u8; KEY_LEN]>),
    Passphrase(Zeroizing<String>),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyMaterial::Key(k) => write!(f, "Key({})", key_id_hex(&key_id(k))),
            KeyMaterial::Passphrase(_) => f.write_str("Passphrase(****)"),
        }
    }
}

/// The public 8-byte id of a key-encryption key (first bytes of a domain-separated SHA-256).
pub fn key_id(kek: &[u8; KEY_LEN]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(b"opsctl backup kek id v1\0");
    h.update(kek);
    let d = h.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    id
}

pub fn key_id_hex(id: &[u8; 8]) -> String {
    hex::encode(id)
}

/// A fresh random 256-bit key.
pub fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    rand::rngs::OsRng.fill_bytes(k.as_mut());
    k
}

/// Parses key-file content (see module doc). `origin` names the file in errors.
pub fn parse_key(bytes: &[u8], origin: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() == KEY_LEN {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    if text.len() == 2 * KEY_LEN && text.iter().all(u8::is_ascii_hexdigit) {
        hex::decode_to_slice(text, key.as_mut()).map_err(|_| {
            Error::Config(format!("key file {origin} is malformed; {KEY_FILE_FORMAT}"))
        })?;
        return Ok(key);
    }
    let what = if text.iter().all(u8::is_ascii_hexdigit) && !text.is_empty() {
        format!("{} hexadecimal characters", text.len())
    } else if text.is_ascii() && !text.is_empty() && text.iter().all(|b| !b.is_ascii_control()) {
        format!("{} characters of text that is not hexadecimal", text.len())
    } else {
        format!("{} bytes", bytes.len())
    };
    Err(Error::Config(format!(
        "key file {origin} holds {what}; {KEY_FILE_FORMAT}"
    )))
}

/// Refuses a secret file that group or others may read or write.
pub fn check_private(path: &Path, what: &str) -> Result<(), Error> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::Config(format!(
            "{what} {} is not a regular file",
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{what} {} has mode {mode:04o}, readable or writable by group/others; restrict it \
             with `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

pub fn read_secret_file(path: &Path, what: &str, max: u64) -> Result<Zeroizing<Vec<u8>>, Error> {
    check_private(path, what)?;
    let f = std::fs::File::open(path)
        .map_err(|e| Error::Config(format!("cannot open {what} {}: {e}", path.display())))?;
    let mut buf = Zeroizing::new(Vec::with_capacity(128));
    f.take(max)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", path.display())))?;
    Ok(buf)
}

/// Reads and checks a key file.
pub fn load_key_file(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let bytes = read_secret_file(path, "key file", 4096)?;
    parse_key(&bytes, &path.display().to_string())
}

/// Reads a passphrase file: its first line, without the newline; must not be empty.
pub fn load_passphrase_file(path: &Path) -> Result<Zeroizing<String>, Error> {
    let bytes = read_secret_file(path, "passphrase file", 64 * 1024)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Error::Config(format!(
            "passphrase file {} is not UTF-8 text",
            path.display()
        ))
    })?;
    passphrase(
        text.lines().next().unwrap_or(""),
        &path.display().to_string(),
    )
}

fn passphrase(text: &str, origin: &str) -> Result<Zeroizing<String>, Error> {
    if text.chars().count() < 8 {
        return Err(Error::Config(format!(
            "the passphrase from {origin} is shorter than 8 characters; use a long passphrase \
             or a key file"
        )));
    }
    Ok(Zeroizing::new(text.to_string()))
}

/// Where key material was asked to come from, before anything is read.
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// `--key-file` or `OPSCTL_KEY_FILE`.
    pub key_file: Option<PathBuf>,
    /// `--passphrase-file`.
    pub passphrase_file: Option<PathBuf>,
    /// `OPSCTL_PASSPHRASE` (the value itself).
    pub passphrase_env: Option<Zeroizing<String>>,
    /// `[backup] key_file` of the policy, used when nothing else is given.
    pub policy_key_file: Option<PathBuf>,
}

impl KeySources {
    /// Loads every configured key. A key file and a passphrase may both be given: a
    /// backup is then sealed for both, and either opens it.
    pub fn load(&self) -> Result<Vec<KeyMaterial>, Error> {
        let mut keys = Vec::new();
        if let Some(p) = &self.key_file {
            keys.push(KeyMaterial::Key(load_key_file(p)?));
        }
        if let Some(p) = &self.passphrase_file {
            keys.push(KeyMaterial::Passphrase(load_passphrase_file(p)?));
        } else if let Some(p) = &self.passphrase_env {
            keys.push(KeyMaterial::Passphrase(passphrase(p, "OPSCTL_PASSPHRASE")?));
        }
        if keys.is_empty() {
            if let Some(p) = &self.policy_key_file {
                keys.push(KeyMaterial::Key(load_key_file(p)?));
            }
        }
        if keys.is_empty() {
            return Err(Error::Config(
                "no backup key given: pass --key-file FILE (or OPSCTL_KEY_FILE), or a passphrase \
                 with --passphrase-file FILE (or OPSCTL_PASSPHRASE); create a key with \
                 `opsctl backup keygen --out FILE`"
                    .into(),
            ));
        }
        Ok(keys)
    }
}

/// Writes a new random key as 64 hex characters and a newline, mode 0600; refuses to
/// overwrite. Returns the key id.
pub fn keygen(path: &Path) -> Result<String, Error> {
    if path.exists() {
        return Err(Error::Config(format!(
            "{} already exists; opsctl never overwrites a key file (a lost key means lost \
             backups). Choose another path",
            path.display()
        )));
    }
    let key = random_key();
    let mut text = Zeroizing::new(hex::encode(key.as_ref()));
    text.push('\n');
    let tmp = crate::fsutil::temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let res = (|| {
        use std::io::Write;
        let mut f = crate::fsutil::create_new(&tmp, 0o600)?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(Error::io(format!("cannot write {}", tmp.display())))?;
        // hard_link fails if the target appeared meanwhile: never overwrite.
        std::fs::hard_link(&tmp, path)
            .map_err(Error::io(format!("cannot create {}", path.display())))?;
        crate::fsutil::sync_dir(path)
    })();
    let _ = std::fs::remove_file(&tmp);
    res?;
    Ok(key_id_hex(&key_id(&key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_hex_keys() {
        let raw = [7u8; 32];
        assert_eq!(*parse_key(&raw, "k").unwrap(), raw);
        let hex = format!("{}\n", hex::encode(raw));
        assert_eq!(*parse_key(hex.as_bytes(), "k").unwrap(), raw);
        assert_eq!(*parse_key(hex.trim().as_bytes(), "k").unwrap(), raw);
    }

    #[test]
    fn short_and_malformed_keys_are_rejected_with_the_format() {
        for bad in [
            &b"abc"[..],
            &[1u8; 31][..],
            &[1u8; 33][..],
            &b"zz"[..],
            &[b'a'; 63][..],
        ] {
            let e = parse_key(bad, "k").unwrap_err().to_string();
            assert!(e.contains("exactly 32 bytes"), "{e}");
            assert!(e.contains("64 hexadecimal"), "{e}");
        }
        let e = parse_key(&[b'g'; 64], "k").unwrap_err().to_string();
        assert!(e.contains("not hexadecimal"), "{e}");
    }
}
