//! PITR drill: proves that the newest base backup plus the archived WAL bring the data
//! back. On the source, every user table is locked against writers (SHARE mode) just
//! long enough to create a restore point and export the snapshot that sees exactly the
//! content at that point; the locks are released at once and the per-table row counts
//! and content checksums are computed in that snapshot. Then the base backup is restored
//! into a scratch data directory, a throwaway server on a free port recovers to the
//! restore point (archiving off, paused there), the same figures are computed there and
//! compared. The scratch server and directory are removed whatever happens. RTO =
//! authenticate + unpack + recovery.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::catalog;
use super::restore::{self as prestore, Action, RecoveryConf, Target};
use crate::backup::keys::KeyMaterial;
use crate::backup::Progress;
use crate::db::{self, ConnSettings};
use crate::error::Error;
use crate::storage::Repository;

/// Leaf tables with data (opsctl's own bookkeeping schema excluded: it changes while
/// the drill runs).
const TABLES: &str = "SELECT n.nspname::text, c.relname::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence = 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'opsctl')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2";

const RESTORE_POINT: &str = "SELECT pg_create_restore_point($1)::text, pg_export_snapshot(), \
     (SELECT timeline_id FROM pg_control_checkpoint())::int, \
     (SELECT system_identifier::text FROM pg_control_system())";

const SWITCH: &str = "SELECT pg_walfile_name(pg_switch_wal())";

/// Row count and an order-independent content checksum (sum of the first 64 bits of each
/// row's md5), computed with constant memory.
fn checksum_sql(qualified: &str) -> String {
    format!(
        "SELECT count(*)::bigint, coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text FROM {qualified} t"
    )
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableFigures {
    pub rows: i64,
    pub checksum: String,
}

async fn figures(
    client: &impl tokio_postgres::GenericClient,
    tables: &[(String, String)],
) -> Result<BTreeMap<String, TableFigures>, Error> {
    let mut out = BTreeMap::new();
    for (s, t) in tables {
        let q = db::quote_qualified(s, t);
        let row = client
            .query_one(&checksum_sql(&q), &[])
            .await
            .map_err(Error::db_ctx(format!("cannot checksum {s}.{t}")))?;
        out.insert(
            format!("{s}.{t}"),
            TableFigures {
                rows: row.get(0),
                checksum: row.get(1),
            },
        );
    }
    Ok(out)
}

/// The outcome of a PITR drill.
#[derive(Debug, Clone, Serialize)]
pub struct PitrDrill {
    pub ok: bool,
    pub backup: String,
    pub restore_point: String,
    pub restore_point_lsn: String,
    /// How long writers were held off on the source.
    pub writers_held_ms: f64,
    pub tables: usize,
    pub rows: i64,
    pub mismatches: Vec<String>,
    pub authenticate_secs: f64,
    pub unpack_secs: f64,
    pub recovery_secs: f64,
    /// Restore (authenticate + unpack) plus recovery.
    pub rto_secs: f64,
    pub reached: Option<prestore::Reached>,
}

pub struct DrillOptions {
    pub opsctl: PathBuf,
    pub policy: PathBuf,
    pub key_file: Option<PathBuf>,
    pub repo_arg: Option<String>,
    pub archive_wait: Duration,
    pub recovery_timeout: Duration,
    /// Only recover to this time (no content comparison).
    pub to_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// Stops the scratch server and removes its directory when dropped; the server's log
/// (beside the directory) stays when the drill failed, so the error's `log:` path is there
/// to read.
struct Scratch {
    root: PathBuf,
    pgdata: PathBuf,
    bindir: Option<PathBuf>,
    run_as: Option<String>,
    log: PathBuf,
    keep_log: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(b) = &self.bindir {
            if self.pgdata.join("postmaster.pid").exists() {
                prestore::stop(b, &self.pgdata, self.run_as.as_deref(), "immediate");
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        if !self.keep_log {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn free_port() -> Result<u16, Error> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::io("cannot find a free port"))?;
    Ok(l.local_addr()
        .map_err(Error::io("cannot find a free port"))?
        .port())
}

/// Runs one PITR drill of the cluster `settings` points at.
pub async fn drill(
    settings: &ConnSettings,
    repo: &Repository,
    keys: &[KeyMaterial],
    o: &DrillOptions,
    progress: Arc<dyn Progress>,
) -> Result<PitrDrill, Error> {
    let conn = db::connect(settings).await?;
    let tables: Vec<(String, String)> = conn
        .client
        .query(TABLES, &[])
        .await
        .map_err(Error::db)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // 1. The known point: writers held off, restore point + exported snapshot, released.
    let name = format!(
        "opsctl-drill-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let mut locker = db::connect(settings).await?;
    let tx = locker.client.transaction().await.map_err(Error::db)?;
    tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(Error::db)?;
    let held = Instant::now();
    if !tables.is_empty() && o.to_time.is_none() {
        let list: Vec<String> = tables
            .iter()
            .map(|(s, t)| db::quote_qualified(s, t))
            .collect();
        tx.batch_execute(&format!("LOCK TABLE {} IN SHARE MODE", list.join(", ")))
            .await
            .map_err(Error::db_ctx(
                "cannot hold writers off for the restore point",
            ))?;
    }
    let row = tx
        .query_one(RESTORE_POINT, &[&name])
        .await
        .map_err(Error::db_ctx("cannot create the drill's restore point"))?;
    let (rp_lsn, snapshot, tli, sysid): (String, String, i32, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    // Import the snapshot before the exporter ends, then let writers go.
    let mut reader = db::connect(settings).await?;
    let rtx = reader.client.transaction().await.map_err(Error::db)?;
    rtx.batch_execute(&format!(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
        snapshot.replace('\'', "")
    ))
    .await
    .map_err(Error::db_ctx("cannot import the drill's snapshot"))?;
    tx.commit().await.map_err(Error::db)?;
    let writers_held_ms = held.elapsed().as_secs_f64() * 1000.0;
    let expected = if o.to_time.is_none() {
        figures(&rtx, &tables).await?
    } else {
        BTreeMap::new()
    };
    rtx.commit().await.map_err(Error::db)?;
    drop(locker);
    drop(reader);
    let rp = catalog::Lsn::parse(&rp_lsn)?;
    let _ = conn.client.query_one(SWITCH, &[]).await;
    // 2. Wait until the archive holds the restore point's segment.
    let seg = rp.segment(tli as u32);
    let deadline = Instant::now() + o.archive_wait;
    loop {
        if catalog::archive(repo, &sysid)?.contains(&seg) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::Verify(format!(
                "the segment holding the drill's restore point ({seg}) did not reach the archive \
                 within {}s: archiving is failing or slow (see opsctl wal status)",
                o.archive_wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(conn);
    // 3. Restore into a scratch directory the server's user can reach.
    let target = match o.to_time {
        Some(t) => Target::Time(t),
        None => Target::Name(name.clone()),
    };
    let choice = prestore::choose(repo, &target, None)?;
    let b = choice.base.clone();
    for d in crate::fsutil::remove_orphaned_dirs(&std::env::temp_dir(), "opsctl-pitr-drill-") {
        crate::logging::note(format_args!(
            "removed {}, the scratch directory of a PITR drill that was killed",
            d.display()
        ));
    }
    let root = std::env::temp_dir().join(format!(
        "opsctl-pitr-drill-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .map_err(Error::io(format!("cannot create {}", root.display())))?;
    }
    let pgdata = root.join("data");
    let log = root.with_extension("log");
    let mut scratch = Scratch {
        root: root.clone(),
        pgdata: pgdata.clone(),
        bindir: None,
        run_as: None,
        log: log.clone(),
        keep_log: true,
    };
    let t0 = Instant::now();
    let manifest =
        tokio::task::block_in_place(|| prestore::authenticate(repo, &b, keys, &progress))?;
    let authenticate_secs = t0.elapsed().as_secs_f64();
    prestore::check_pgdata(&pgdata)?;
    let t1 = Instant::now();
    tokio::task::block_in_place(|| {
        prestore::unpack(repo, &b, keys, &manifest, &pgdata, &progress)
    })?;
    let unpack_secs = t1.elapsed().as_secs_f64();
    let port = free_port()?;
    prestore::write_recovery(
        &pgdata,
        &RecoveryConf {
            opsctl: o.opsctl.clone(),
            policy: o.policy.clone(),
            key_file: o.key_file.clone(),
            repo: o.repo_arg.clone(),
            target: target.clone(),
            action: Action::Pause,
            port: Some(port),
            archive_off: true,
            comment: format!("opsctl drill --pitr of base backup {}", b.summary.id),
        },
    )?;
    if unsafe { libc::geteuid() } == 0 {
        let (uid, gid, user) = prestore::postgres_user().ok_or_else(|| {
            Error::Config(
                "running as root and there is no postgres user to run the scratch server".into(),
            )
        })?;
        prestore::chown_tree(&root, uid, gid)?;
        scratch.run_as = Some(user);
    }
    let bindir = prestore::server_bindir(b.summary.pg_major)?;
    scratch.bindir = Some(bindir.clone());
    let reached = tokio::task::block_in_place(|| {
        prestore::start_and_wait(
            &bindir,
            &pgdata,
            &log,
            scratch.run_as.as_deref(),
            Action::Pause,
            o.recovery_timeout,
        )
    })?;
    let rto_secs = authenticate_secs + unpack_secs + reached.recovery_secs;
    // 4. The same figures on the scratch server.
    let mut mismatches = Vec::new();
    let mut rows = 0;
    if o.to_time.is_none() {
        let mut s = settings.clone();
        s.port = Some(port);
        s.hostaddr = None;
        if s.host.as_deref().map_or(true, |h| h.starts_with('/')) {
            s.host = Some("localhost".into());
        }
        let scratch_conn = connect_retry(&s).await?;
        let got = figures(&scratch_conn.client, &tables).await?;
        for (t, want) in &expected {
            rows += want.rows;
            match got.get(t) {
                None => mismatches.push(format!("{t}: missing after recovery")),
                Some(g) if g.rows != want.rows => mismatches.push(format!(
                    "{t}: {} rows at the restore point, {} after recovery",
                    want.rows, g.rows
                )),
                Some(g) if g.checksum != want.checksum => {
                    mismatches.push(format!("{t}: same row count, different content"))
                }
                _ => {}
            }
        }
    }
    scratch.keep_log = !mismatches.is_empty();
    drop(scratch);
    Ok(PitrDrill {
        ok: mismatches.is_empty(),
        backup: b.summary.id,
        restore_point: if o.to_time.is_none() {
            name
        } else {
            String::new()
        },
        restore_point_lsn: rp_lsn,
        writers_held_ms,
        tables: tables.len(),
        rows,
        mismatches,
        authenticate_secs,
        unpack_secs,
        recovery_secs: reached.recovery_secs,
        rto_secs,
        reached: Some(reached),
    })
}

async fn connect_retry(s: &ConnSettings) -> Result<db::Connection, Error> {
    let mut last = None;
    for _ in 0..40 {
        match db::connect(s).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(last.expect("tried"))
}

/// The absolute path of a file argument.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}
