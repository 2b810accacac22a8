//! `opsctl basebackup`: `pg_basebackup -D - -Ft -X none` (a replication connection with the
//! same libpq/TLS settings as every other child tool) streamed through a tar scanner
//! (per-file sha256, backup_label, the manifest's WAL range) into the sealed pipeline
//! (compress → AES-256-GCM STREAM → repository), with constant memory. The sealed
//! manifest is the container's trailer; `summary.json` is written last, and only once
//! the WAL that makes the backup consistent is in the archive (pgBackRest's
//! archive-check): the segments from start to stop and the `.backup` file.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::catalog::{self, BaseManifest, BaseSummary, Lsn, SEG_SIZE};
use super::tarscan::{self, TarScan};
use crate::backup::compress::{Codec, Compression};
use crate::backup::keys::KeyMaterial;
use crate::backup::{pgdump, Progress};
use crate::db::{self, ConnSettings};
use crate::error::Error;
use crate::storage::sealed::SealedWriter;
use crate::storage::Repository;

const SERVER_FACTS: &str = "SELECT current_setting('server_version'), \
     current_setting('server_version_num')::int / 10000, \
     (SELECT system_identifier::text FROM pg_control_system()), \
     current_setting('archive_mode'), current_setting('wal_segment_size'), \
     current_setting('wal_level'), \
     coalesce((SELECT string_agg(spcname || ' (' || pg_tablespace_location(oid) || ')', ', ' ORDER BY spcname) \
               FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')), '')";

/// Content label of a base backup's container, by codec.
pub fn content_label(codec: Codec) -> String {
    format!("opsctl basebackup tar+{}", codec.name())
}

/// The codec of a content label written by [`content_label`].
pub fn codec_of(label: &str) -> Result<Codec, Error> {
    match label.strip_prefix("opsctl basebackup tar+") {
        Some("zstd") => Ok(Codec::Zstd),
        Some("gzip") => Ok(Codec::Gzip),
        Some("none") => Ok(Codec::None),
        _ => Err(Error::Verify(format!(
            "this is not an opsctl base backup (content {label:?})"
        ))),
    }
}

/// What the server says about itself before the backup.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub version: String,
    pub major: u32,
    pub sysid: String,
    pub archive_mode: String,
    pub wal_level: String,
}

pub async fn server_facts(client: &tokio_postgres::Client) -> Result<ServerFacts, Error> {
    let row = client
        .query_one(SERVER_FACTS, &[])
        .await
        .map_err(Error::db_ctx("cannot read the server's settings"))?;
    let seg: String = row.get(4);
    if seg != "16MB" {
        return Err(Error::Config(format!(
            "wal_segment_size is {seg}: opsctl's base backups and WAL archive support 16MB segments only"
        )));
    }
    let spc: String = row.get(6);
    if !spc.is_empty() {
        return Err(Error::Config(format!(
            "the cluster has tablespaces other than the default: {spc}. opsctl basebackup \
             takes the default tablespace only (one tar stream) and refuses rather than leave \
             them out; move their objects to pg_default (ALTER TABLE … SET TABLESPACE) or use \
             another physical backup tool for this cluster"
        )));
    }
    Ok(ServerFacts {
        version: row.get(0),
        major: row.get::<_, i32>(1) as u32,
        sysid: row.get(2),
        archive_mode: row.get(3),
        wal_level: row.get(5),
    })
}

/// Options of one base backup.
pub struct Options {
    pub compression: Compression,
    /// How long to wait for the archive to receive the WAL the backup needs.
    pub archive_wait: Duration,
}

/// Kills pg_basebackup unless it finished.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Takes one base backup into `repo`.
pub async fn basebackup(
    settings: &ConnSettings,
    repo: &Repository,
    keys: &[KeyMaterial],
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<BaseSummary, Error> {
    let conn = db::connect(settings).await?;
    let facts = server_facts(&conn.client).await?;
    if facts.archive_mode == "off" || facts.wal_level == "minimal" {
        return Err(Error::Config(format!(
            "WAL archiving is off on this server (archive_mode = {}, wal_level = {}): a base \
             backup is useless without the archived WAL. Turn it on first: opsctl wal setup --print",
            facts.archive_mode, facts.wal_level
        )));
    }
    let tools = pgdump::find(facts.major)?;
    let pg_basebackup = tools.pg_dump.with_file_name("pg_basebackup");
    if !pg_basebackup.is_file() {
        return Err(Error::Config(format!(
            "pg_basebackup not found beside {} (install postgresql-client-{})",
            tools.pg_dump.display(),
            facts.major
        )));
    }
    let started_at = Utc::now();
    let id = crate::backup::repo::new_id(started_at);
    let prefix = catalog::base_prefix(&facts.sysid, &id);
    let tar_key = format!("{prefix}{}", catalog::TAR_OBJECT);

    let mut cmd = pgdump::command(&pg_basebackup, settings);
    cmd.args([
        "-D",
        "-",
        "-Ft",
        "-X",
        "none",
        "--checkpoint=fast",
        "--no-password",
        "--manifest-checksums=NONE",
    ])
    .arg(format!("--label=opsctl {id}"))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(Error::io(format!("cannot run {}", pg_basebackup.display())))?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let guard = ChildGuard(Some(child));
    let err_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut s);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&s).into_owned()
    });

    let content = content_label(opts.compression.codec);
    let mut writer = SealedWriter::create(repo, &tar_key, keys, &content, opts.compression)?;
    let key_ids = writer.key_ids().to_vec();
    let streamed = tokio::task::block_in_place(|| stream(stdout, &mut writer, &progress));
    let mut guard = guard;
    let status = guard.0.take().expect("child").wait();
    let stderr_text = err_thread.join().unwrap_or_default();
    let (scan, tar_bytes, tar_sha256) = match (streamed, status) {
        (Ok(x), Ok(st)) if st.success() => x,
        (r, st) => {
            writer.abort();
            let why = match (r, st) {
                (_, Ok(st)) if !st.success() => {
                    pgdump::explain_stderr("pg_basebackup", &explain(&stderr_text))
                }
                (Err(e), _) => e.to_string(),
                (_, Err(e)) => format!("cannot wait for pg_basebackup: {e}"),
                _ => "pg_basebackup failed".into(),
            };
            return Err(Error::Other(why));
        }
    };
    if let Some(e) = &scan.error {
        writer.abort();
        return Err(Error::Other(format!("pg_basebackup's tar stream: {e}")));
    }
    if !scan.tablespaces.is_empty() {
        writer.abort();
        return Err(Error::Config(format!(
            "the backup contains tablespace links ({}): tablespaces other than the default \
             are not supported",
            scan.tablespaces.join(", ")
        )));
    }
    let label = String::from_utf8_lossy(&scan.label).into_owned();
    let tail = String::from_utf8_lossy(&scan.manifest_tail).into_owned();
    let (timeline, start_lsn, stop_lsn) = match tarscan::manifest_wal_range(&tail) {
        Some((tli, s, e)) => (tli, Lsn::parse(&s)?, Lsn::parse(&e)?),
        None => {
            writer.abort();
            return Err(Error::Other(
                "pg_basebackup's stream carried no backup_manifest with a WAL range".into(),
            ));
        }
    };
    let started_label = tarscan::label_field(&label, "START TIME")
        .and_then(|t| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S %Z").ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            tarscan::label_field(&label, "START TIME").and_then(|t| {
                chrono::NaiveDateTime::parse_from_str(
                    t.rsplit_once(' ').map(|x| x.0).unwrap_or(t),
                    "%Y-%m-%d %H:%M:%S",
                )
                .ok()
                .map(|n| n.and_utc())
            })
        })
        .unwrap_or(started_at);
    let stopped_at = Utc::now();
    let summary = BaseSummary {
        kind: catalog::KIND.into(),
        id: id.clone(),
        system_identifier: facts.sysid.clone(),
        timeline,
        start_lsn,
        stop_lsn,
        started_at: started_label,
        stopped_at,
        pg_version: facts.version.clone(),
        pg_major: facts.major,
        start_wal: start_lsn.segment(timeline),
        stop_wal: Lsn(stop_lsn.0.saturating_sub(1).max(start_lsn.0)).segment(timeline),
        backup_file: catalog::backup_file_name(timeline, start_lsn),
        files: scan.files.len() as u64,
        tar_bytes,
        stored_bytes: 0,
        codec: opts.compression.codec,
        key_ids,
        duration_secs: 0.0,
        tar_sha256,
    };
    let manifest = BaseManifest {
        format: 1,
        summary: summary.clone(),
        file_list: scan.files,
    };
    let trailer = serde_json::to_vec(&manifest).expect("manifest serialises");
    let stored = tokio::task::block_in_place(|| writer.finish(&trailer))?;

    // Archive check: the segments start..stop and the .backup file.
    if let Err(e) = archive_check(repo, &summary, opts.archive_wait).await {
        let _ = repo.delete(&tar_key);
        return Err(e);
    }
    let mut summary = summary;
    summary.stored_bytes = stored;
    summary.duration_secs = t0.elapsed().as_secs_f64();
    let text = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    repo.put(&format!("{prefix}{}", catalog::SUMMARY_OBJECT), &text)?;
    drop(conn);
    Ok(summary)
}

/// Waits until the archive holds every segment from the backup's start to its stop and
/// the `.backup` file; fails naming what is missing after `wait`.
pub async fn archive_check(
    repo: &Repository,
    b: &BaseSummary,
    wait: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + wait;
    let first = b.start_lsn.segno();
    let last = Lsn(b.stop_lsn.0.saturating_sub(1).max(b.start_lsn.0)).segno();
    loop {
        let a = catalog::archive(repo, &b.system_identifier)?;
        let mut missing: Vec<String> = (first..=last)
            .map(|s| catalog::segment_name(b.timeline, s))
            .filter(|n| !a.contains(n))
            .collect();
        if !a.contains(&b.backup_file) {
            missing.push(b.backup_file.clone());
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Verify(format!(
                "the WAL this base backup needs to be consistent did not reach the archive \
                 within {}s: missing {} in {}. The backup was not kept. Check archiving \
                 (opsctl wal status: archive_command, pg_stat_archiver's last failure) and run \
                 opsctl basebackup again",
                wait.as_secs(),
                missing.join(", "),
                repo.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// pg_basebackup's stderr with a hint for the usual failures.
fn explain(stderr: &str) -> String {
    let lower = stderr.to_lowercase();
    if lower.contains("replication") && lower.contains("pg_hba.conf") {
        format!(
            "{stderr}\n  hint: pg_hba.conf needs a `hostssl replication <role> <address> scram-sha-256` \
             line (the \"all\" database does not match replication connections)"
        )
    } else if lower.contains("must be superuser or replication role")
        || lower.contains("permission denied to start wal sender")
    {
        format!("{stderr}\n  hint: the role needs REPLICATION (ALTER ROLE … REPLICATION)")
    } else {
        stderr.to_string()
    }
}

/// Reads the tar from pg_basebackup, scans it and writes it sealed.
fn stream(
    mut src: impl Read,
    out: &mut SealedWriter,
    progress: &Arc<dyn Progress>,
) -> Result<(TarScan, u64, String), Error> {
    let mut scan = TarScan::default();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("cannot read pg_basebackup's output")(e)),
        };
        scan.feed(&buf[..n]);
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(Error::io("cannot write the base backup"))?;
        total += n as u64;
        progress.add(n as u64);
    }
    Ok((scan, total, hex::encode(hash.finalize())))
}

/// Segment number helper for callers: the segment after the stop position.
pub fn stop_segno(b: &BaseSummary) -> u64 {
    Lsn(b.stop_lsn.0.saturating_sub(1).max(b.start_lsn.0)).0 / SEG_SIZE
}
