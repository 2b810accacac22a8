//! The audit log's tamper evidence and reports: sealing audit rows into a hash chain,
//! verifying the chain, the chain status for health and backup manifests, and the
//! audit report. The schema lives in migrations V40–V42 and V61 (MOVE rows, no-op
//! updates); the design in docs/audit.md.
//!
//! Seal n covers every row of `audit.logged_actions` whose `transaction_id` lies in
//! `[xid_lo, xid_hi)` and whose `id` lies in `(id_lo, id_hi]`. `xid_hi` is the oldest
//! transaction still running when the seal was made, so no row can ever join a sealed
//! range legitimately; the xid ranges of successive runs are contiguous from 0 and the
//! seals of one run split its range by id from `i64::MIN` to `i64::MAX`, so every row
//! below the chain head's `xid_hi` belongs to exactly one seal. A seal's hash is
//! `sha256(prev_hash || (id ‖ row digest)*)` over its rows in id order; the
//! `(id ‖ digest)` list is stored with the seal so verify can name the row that changed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, IsolationLevel};

use crate::db;
use crate::error::Error;

/// Advisory lock serialising `audit seal` runs on a database.
pub const SEAL_LOCK: i64 = 0x6f70_7363_746c_00a7;

/// The hash a first seal chains to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Rows per seal by default: bounds memory and the size of a seal's digest list.
pub const DEFAULT_BATCH: i64 = 10_000;

/// Session settings that make the text form of timestamps canonical.
const CANONICAL_SETTINGS: &str = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; \
     SET LOCAL IntervalStyle = 'iso_8601'; SET LOCAL extra_float_digits = 3";

/// The canonical columns of an audit row, in hashing order.
const ROWS_IN_RANGE: &str = "SELECT id, ARRAY[id::text, action_tstamp_tx::text, \
     action_tstamp_stm::text, schema_name, table_name, relname, action::text, \
     transaction_id::text, session_user_name, application_name, client_addr::text, \
     client_port::text, app_actor, row_old::text, row_new::text] \
     FROM audit.logged_actions \
     WHERE transaction_id >= $1 AND transaction_id < $2 AND id > $3 AND id <= $4 \
     ORDER BY id LIMIT $5";

const SNAPSHOT_BOUNDS: &str = "SELECT txid_snapshot_xmin(txid_current_snapshot()), \
     txid_snapshot_xmax(txid_current_snapshot())";

const LAST_SEAL: &str =
    "SELECT seal_id, xid_hi, hash FROM audit.seals ORDER BY seal_id DESC LIMIT 1";

const INSERT_SEAL: &str = "INSERT INTO audit.seals (seal_id, xid_lo, xid_hi, id_lo, id_hi, \
     first_row_id, last_row_id, row_count, prev_hash, hash, row_digests) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const SEAL_HEADERS: &str = "SELECT seal_id, xid_lo, xid_hi, id_lo, id_hi, row_count, \
     prev_hash, hash, sealed_at FROM audit.seals ORDER BY seal_id";

const SEAL_DIGESTS: &str = "SELECT row_digests FROM audit.seals WHERE seal_id = $1";

const FUTURE_ROWS: &str = "SELECT id, transaction_id FROM audit.logged_actions \
     WHERE transaction_id >= $1 ORDER BY id LIMIT 1";

const AUDIT_PRESENT: &str = "SELECT to_regclass('audit.seals') IS NOT NULL";

const CHAIN_SUMMARY: &str = "SELECT seals, sealed_rows, last_sealed_at, last_hash, \
     unsealed_rows, oldest_unsealed FROM audit.chain_summary()";

// ---------------------------------------------------------------------------------------
// Canonical form and hashing

/// Digest of one audit row: each column in order, NULL as 0xff, a value as
/// 0x00 ‖ u32 big-endian length ‖ UTF-8 bytes.
pub fn row_digest(fields: &[Option<String>]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"opsctl-audit-row-v1\0");
    for f in fields {
        match f {
            None => h.update([0xff]),
            Some(s) => {
                h.update([0x00]);
                h.update((s.len() as u32).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    h.finalize().into()
}

/// A seal's hash: sha256(previous hash (32 bytes) ‖ the (id ‖ digest) list).
pub fn seal_hash(prev_hash: &str, row_digests: &[u8]) -> Result<String, Error> {
    let prev = hex::decode(prev_hash)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| Error::Verify(format!("malformed seal hash {prev_hash:?}")))?;
    let mut h = Sha256::new();
    h.update(&prev);
    h.update(row_digests);
    Ok(hex::encode(h.finalize()))
}

/// Splits a stored (id ‖ digest) list into entries.
fn digest_entries(blob: &[u8]) -> Option<Vec<(i64, [u8; 32])>> {
    if blob.len() % 40 != 0 {
        return None;
    }
    Some(
        blob.chunks_exact(40)
            .map(|c| {
                let id = i64::from_be_bytes(c[..8].try_into().expect("8 bytes"));
                let d: [u8; 32] = c[8..].try_into().expect("32 bytes");
                (id, d)
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// Seal

/// One seal written by a run.
#[derive(Debug, Clone, Serialize)]
pub struct SealInfo {
    pub seal_id: i64,
    pub rows: i64,
    pub first_row_id: Option<i64>,
    pub last_row_id: Option<i64>,
    pub hash: String,
}

/// What `audit seal` did.
#[derive(Debug, Clone, Serialize)]
pub struct SealOutcome {
    pub seals: Vec<SealInfo>,
    pub rows_sealed: i64,
    /// The chain head after the run (None: no seal exists yet).
    pub head_hash: Option<String>,
    /// The oldest running transaction: rows from it or later wait for the next run.
    pub xid_horizon: i64,
    /// Rows left unsealed because their transactions were still running (or later).
    pub rows_waiting: i64,
}

/// Seals every audit row of transactions older than the oldest running one.
/// `client` must not be inside a transaction; the run takes [`SEAL_LOCK`].
pub async fn seal(client: &mut Client, batch: i64) -> Result<SealOutcome, Error> {
    ensure_present(client).await?;
    db::acquire_advisory_lock(
        client,
        SEAL_LOCK,
        std::time::Duration::from_secs(30),
        "audit seal",
    )
    .await?;
    let r = seal_locked(client, batch.max(1)).await;
    let _ = db::release_advisory_lock(client, SEAL_LOCK).await;
    r
}

async fn seal_locked(client: &mut Client, batch: i64) -> Result<SealOutcome, Error> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(Error::db)?;
    tx.batch_execute(CANONICAL_SETTINGS)
        .await
        .map_err(Error::db)?;
    let bounds = tx
        .query_one(SNAPSHOT_BOUNDS, &[])
        .await
        .map_err(Error::db)?;
    let horizon: i64 = bounds.get(0);
    let last = tx.query_opt(LAST_SEAL, &[]).await.map_err(Error::db)?;
    let (mut seal_id, xid_lo, mut prev_hash) = match last {
        Some(r) => (
            r.get::<_, i64>(0),
            r.get::<_, i64>(1),
            r.get::<_, String>(2),
        ),
        None => (0, 0, GENESIS_HASH.to_string()),
    };
    let mut out = SealOutcome {
        seals: Vec::new(),
        rows_sealed: 0,
        head_hash: (seal_id > 0).then(|| prev_hash.clone()),
        xid_horizon: horizon,
        rows_waiting: 0,
    };
    if horizon > xid_lo {
        let mut id_lo = i64::MIN;
        loop {
            let rows = tx
                .query(
                    ROWS_IN_RANGE,
                    &[&xid_lo, &horizon, &id_lo, &i64::MAX, &(batch + 1)],
                )
                .await
                .map_err(Error::db_ctx("cannot read audit rows to seal"))?;
            if rows.is_empty() && id_lo == i64::MIN {
                break; // nothing new in the range: the next run starts from the same xid_lo
            }
            let last_batch = rows.len() as i64 <= batch;
            let take = rows.len().min(batch as usize);
            let mut blob = Vec::with_capacity(take * 40);
            let mut first = None;
            let mut last_id = None;
            for r in &rows[..take] {
                let id: i64 = r.get(0);
                let fields: Vec<Option<String>> = r.get(1);
                blob.extend_from_slice(&id.to_be_bytes());
                blob.extend_from_slice(&row_digest(&fields));
                first.get_or_insert(id);
                last_id = Some(id);
            }
            let id_hi = if last_batch {
                i64::MAX
            } else {
                last_id.expect("a full batch has rows")
            };
            let hash = seal_hash(&prev_hash, &blob)?;
            seal_id += 1;
            let count = take as i64;
            tx.execute(
                INSERT_SEAL,
                &[
                    &seal_id, &xid_lo, &horizon, &id_lo, &id_hi, &first, &last_id, &count,
                    &prev_hash, &hash, &blob,
                ],
            )
            .await
            .map_err(Error::db_ctx("cannot write the seal"))?;
            out.seals.push(SealInfo {
                seal_id,
                rows: count,
                first_row_id: first,
                last_row_id: last_id,
                hash: hash.clone(),
            });
            out.rows_sealed += count;
            prev_hash = hash;
            if last_batch {
                break;
            }
            id_lo = id_hi;
        }
    }
    let waiting = tx
        .query_one(
            "SELECT count(*) FROM audit.logged_actions WHERE transaction_id >= $1",
            &[&horizon.max(xid_lo)],
        )
        .await
        .map_err(Error::db)?;
    out.rows_waiting = waiting.get(0);
    tx.commit()
        .await
        .map_err(Error::db_ctx("cannot commit the seals"))?;
    if !out.seals.is_empty() {
        out.head_hash = Some(prev_hash);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Verify

/// What is wrong, at the first place it is wrong.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A sealed row's content differs from what was sealed.
    Changed { seal_id: i64, row_id: i64 },
    /// A sealed row is gone.
    Deleted { seal_id: i64, row_id: i64 },
    /// A row sits in a sealed range without having been sealed.
    Inserted { seal_id: i64, row_id: i64 },
    /// A row claims a transaction that has not started yet: it was written by hand.
    FutureTransaction { row_id: i64, transaction_id: i64 },
    /// The seals themselves were altered, removed or reordered.
    BrokenSeal { seal_id: i64, reason: String },
    /// A seal hash recorded outside the database (a backup manifest) is not in the chain.
    MissingHash { hash: String },
    /// A backup recorded this seal as the chain head; the chain no longer holds it as
    /// recorded (`actual`: the hash the chain now has under that number, if any).
    BackupSeal {
        backup: String,
        seal_id: i64,
        hash: String,
        actual: Option<String>,
    },
    /// The anchor file (`[audit] anchor_file`) recorded this seal; the chain no longer
    /// holds it as recorded. `anchor` names the file and line.
    AnchorSeal {
        anchor: String,
        seal_id: i64,
        hash: String,
        actual: Option<String>,
    },
    /// A backup's plaintext summary disagrees with its sealed manifest (or is unreadable).
    BackupSummary { backup: String, reason: String },
    /// A backup could not be authenticated with the key given, so its seal is unknown.
    BackupUnreadable { backup: String, reason: String },
    /// Evidence outside the database was asked for and there is none: no backup under
    /// the directory, or no line in the anchor file, records a seal.
    NothingRecorded { source: String },
}

/// Who recorded a seal outside the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedBy {
    /// A backup's sealed manifest.
    Backup,
    /// A line of the anchor file.
    Anchor,
}

/// A seal recorded outside the database, e.g. the chain head in a backup's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSeal {
    /// Where it was recorded (a backup id and file, or the anchor file and line).
    pub source: String,
    pub seal_id: i64,
    pub hash: String,
    pub by: RecordedBy,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Changed { seal_id, row_id } => write!(
                f,
                "audit row {row_id} was changed after it was sealed (seal {seal_id})"
            ),
            Problem::Deleted { seal_id, row_id } => write!(
                f,
                "audit row {row_id} was deleted after it was sealed (seal {seal_id})"
            ),
            Problem::Inserted { seal_id, row_id } => write!(
                f,
                "audit row {row_id} was inserted out of chain: it lies in the range of seal {seal_id} but was not sealed"
            ),
            Problem::FutureTransaction {
                row_id,
                transaction_id,
            } => write!(
                f,
                "audit row {row_id} was inserted out of chain: it names transaction {transaction_id}, which has not started yet"
            ),
            Problem::BrokenSeal { seal_id, reason } => write!(f, "seal {seal_id}: {reason}"),
            Problem::BackupSeal {
                backup,
                seal_id,
                hash,
                actual: Some(a),
            } => write!(
                f,
                "backup {backup} recorded seal {seal_id} with hash {hash}, but seal {seal_id} in the chain now has hash {a}: the chain was rewritten after the backup"
            ),
            Problem::BackupSeal {
                backup,
                seal_id,
                hash,
                actual: None,
            } => write!(
                f,
                "backup {backup} recorded seal {seal_id} with hash {hash}, but the chain has no seal {seal_id}: the chain was truncated or rewritten after the backup"
            ),
            Problem::AnchorSeal {
                anchor,
                seal_id,
                hash,
                actual: Some(a),
            } => write!(
                f,
                "the anchor file ({anchor}) recorded seal {seal_id} with hash {hash}, but seal {seal_id} in the chain now has hash {a}: the chain was rewritten after that seal"
            ),
            Problem::AnchorSeal {
                anchor,
                seal_id,
                hash,
                actual: None,
            } => write!(
                f,
                "the anchor file ({anchor}) recorded seal {seal_id} with hash {hash}, but the chain has no seal {seal_id}: the chain was truncated or rewritten"
            ),
            Problem::BackupSummary { backup, reason } => write!(
                f,
                "backup {backup}: the plaintext summary disagrees with the sealed manifest ({reason}): the summary was edited; the manifest is what counts"
            ),
            Problem::BackupUnreadable { backup, reason } => write!(
                f,
                "backup {backup} cannot be authenticated ({reason}): the seal it records cannot be checked; give the key it was made with"
            ),
            Problem::NothingRecorded { source } => write!(
                f,
                "no audit seal is recorded in {source}: nothing outside the database to check the chain against"
            ),
            Problem::MissingHash { hash } => write!(
                f,
                "the chain holds no seal with hash {hash} (recorded outside the database, e.g. in a backup manifest): the chain was rewritten or truncated"
            ),
        }
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyOutcome {
    pub intact: bool,
    pub seals: i64,
    pub rows_verified: i64,
    pub head_hash: Option<String>,
    pub unsealed_rows: i64,
    /// The first problem in chain order (None when intact).
    pub first_problem: Option<Problem>,
    /// Problems found, in chain order (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// Seals recorded by backups that were checked against the chain.
    pub recorded_seals_checked: usize,
    /// Seals recorded in the anchor file that were checked against the chain.
    pub anchored_seals_checked: usize,
}

impl VerifyOutcome {
    /// Adds problems found outside the walk (e.g. with backups); the chain is then not
    /// proven intact.
    pub fn add_problems(&mut self, more: Vec<Problem>) {
        for p in more {
            if self.problems.len() < MAX_PROBLEMS {
                self.problems.push(p);
            }
        }
        self.intact = self.problems.is_empty();
        self.first_problem = self.problems.first().cloned();
    }
}

/// Problems collected before verify stops listing them.
pub const MAX_PROBLEMS: usize = 100;

struct SealHeader {
    seal_id: i64,
    xid_lo: i64,
    xid_hi: i64,
    id_lo: i64,
    id_hi: i64,
    row_count: i64,
    prev_hash: String,
    hash: String,
}

/// Walks the whole chain: seal links, each seal's hash, and every sealed row. Each of
/// `expected` (seal hashes recorded elsewhere, e.g. in backup manifests) must be a
/// seal of the chain.
pub async fn verify(
    client: &mut Client,
    batch: i64,
    expected: &[String],
) -> Result<VerifyOutcome, Error> {
    verify_with(client, batch, expected, &[]).await
}

/// [`verify`], and each of `recorded` (seals recorded outside the database, e.g. by
/// backups) must still be in the chain under its number with the same hash.
pub async fn verify_with(
    client: &mut Client,
    batch: i64,
    expected: &[String],
    recorded: &[RecordedSeal],
) -> Result<VerifyOutcome, Error> {
    ensure_present(client).await?;
    let batch = batch.max(1);
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(Error::db)?;
    tx.batch_execute(CANONICAL_SETTINGS)
        .await
        .map_err(Error::db)?;
    let headers: Vec<SealHeader> = tx
        .query(SEAL_HEADERS, &[])
        .await
        .map_err(Error::db_ctx("cannot read audit.seals"))?
        .iter()
        .map(|r| SealHeader {
            seal_id: r.get(0),
            xid_lo: r.get(1),
            xid_hi: r.get(2),
            id_lo: r.get(3),
            id_hi: r.get(4),
            row_count: r.get(5),
            prev_hash: r.get(6),
            hash: r.get(7),
        })
        .collect();
    let mut problems = Vec::new();
    let mut rows_verified = 0i64;
    let mut prev: Option<&SealHeader> = None;
    for s in &headers {
        let push = |p: Problem, problems: &mut Vec<Problem>| {
            if problems.len() < MAX_PROBLEMS {
                problems.push(p);
            }
        };
        // Links: numbering, hash chain and contiguous ranges.
        let (want_id, want_prev, want_xid_lo, want_id_lo) = match prev {
            None => (1, GENESIS_HASH.to_string(), 0, i64::MIN),
            Some(p) if p.id_hi == i64::MAX => (p.seal_id + 1, p.hash.clone(), p.xid_hi, i64::MIN),
            Some(p) => (p.seal_id + 1, p.hash.clone(), p.xid_lo, p.id_hi),
        };
        if s.seal_id != want_id {
            push(
                Problem::BrokenSeal {
                    seal_id: s.seal_id,
                    reason: format!("expected seal {want_id} here: a seal was removed or inserted"),
                },
                &mut problems,
            );
        } else if s.prev_hash != want_prev {
            push(
                Problem::BrokenSeal {
                    seal_id: s.seal_id,
                    reason: "its previous-hash does not match the seal before it: the chain was rewritten".into(),
                },
                &mut problems,
            );
        } else if s.xid_lo != want_xid_lo || s.id_lo != want_id_lo {
            push(
                Problem::BrokenSeal {
                    seal_id: s.seal_id,
                    reason: "its range does not continue the seal before it: a seal was removed or altered".into(),
                },
                &mut problems,
            );
        }
        let blob: Vec<u8> = tx
            .query_one(SEAL_DIGESTS, &[&s.seal_id])
            .await
            .map_err(Error::db)?
            .get(0);
        let stored = match digest_entries(&blob) {
            Some(e) if seal_hash(&s.prev_hash, &blob).ok().as_deref() == Some(&s.hash) => e,
            _ => {
                push(
                    Problem::BrokenSeal {
                        seal_id: s.seal_id,
                        reason: "its hash does not match its recorded rows: the seal was altered"
                            .into(),
                    },
                    &mut problems,
                );
                prev = Some(s);
                continue;
            }
        };
        if stored.len() as i64 != s.row_count {
            push(
                Problem::BrokenSeal {
                    seal_id: s.seal_id,
                    reason: "its row count does not match its recorded rows: the seal was altered"
                        .into(),
                },
                &mut problems,
            );
        }
        // Rows: merge the stored (id, digest) list with the rows now in the range.
        let mut si = 0usize;
        let mut cursor = s.id_lo;
        loop {
            let rows = tx
                .query(
                    ROWS_IN_RANGE,
                    &[&s.xid_lo, &s.xid_hi, &cursor, &s.id_hi, &batch],
                )
                .await
                .map_err(Error::db_ctx("cannot read sealed audit rows"))?;
            for r in &rows {
                let id: i64 = r.get(0);
                let fields: Vec<Option<String>> = r.get(1);
                let digest = row_digest(&fields);
                while si < stored.len() && stored[si].0 < id {
                    push(
                        Problem::Deleted {
                            seal_id: s.seal_id,
                            row_id: stored[si].0,
                        },
                        &mut problems,
                    );
                    si += 1;
                }
                if si < stored.len() && stored[si].0 == id {
                    if stored[si].1 != digest {
                        push(
                            Problem::Changed {
                                seal_id: s.seal_id,
                                row_id: id,
                            },
                            &mut problems,
                        );
                    }
                    si += 1;
                } else {
                    push(
                        Problem::Inserted {
                            seal_id: s.seal_id,
                            row_id: id,
                        },
                        &mut problems,
                    );
                }
                rows_verified += 1;
                cursor = id;
            }
            if (rows.len() as i64) < batch {
                break;
            }
        }
        for (id, _) in &stored[si..] {
            push(
                Problem::Deleted {
                    seal_id: s.seal_id,
                    row_id: *id,
                },
                &mut problems,
            );
        }
        prev = Some(s);
    }
    // Rows naming transactions that have not begun cannot come from the trigger.
    let xmax: i64 = tx
        .query_one(SNAPSHOT_BOUNDS, &[])
        .await
        .map_err(Error::db)?
        .get(1);
    if let Some(r) = tx
        .query_opt(FUTURE_ROWS, &[&xmax])
        .await
        .map_err(Error::db)?
    {
        if problems.len() < MAX_PROBLEMS {
            problems.push(Problem::FutureTransaction {
                row_id: r.get(0),
                transaction_id: r.get(1),
            });
        }
    }
    for want in expected {
        let want = want.trim().to_ascii_lowercase();
        if !headers.iter().any(|h| h.hash == want) && problems.len() < MAX_PROBLEMS {
            problems.push(Problem::MissingHash { hash: want });
        }
    }
    let by_id: std::collections::HashMap<i64, &str> = headers
        .iter()
        .map(|h| (h.seal_id, h.hash.as_str()))
        .collect();
    for r in recorded {
        let want = r.hash.trim().to_ascii_lowercase();
        let actual = by_id.get(&r.seal_id).copied();
        if actual == Some(want.as_str()) || problems.len() >= MAX_PROBLEMS {
            continue;
        }
        let (seal_id, actual) = (r.seal_id, actual.map(str::to_string));
        problems.push(match r.by {
            RecordedBy::Backup => Problem::BackupSeal {
                backup: r.source.clone(),
                seal_id,
                hash: want,
                actual,
            },
            RecordedBy::Anchor => Problem::AnchorSeal {
                anchor: r.source.clone(),
                seal_id,
                hash: want,
                actual,
            },
        });
    }
    let head_xid = headers.last().map(|h| h.xid_hi).unwrap_or(0);
    let unsealed: i64 = tx
        .query_one(
            "SELECT count(*) FROM audit.logged_actions WHERE transaction_id >= $1",
            &[&head_xid],
        )
        .await
        .map_err(Error::db)?
        .get(0);
    tx.commit().await.map_err(Error::db)?;
    Ok(VerifyOutcome {
        intact: problems.is_empty(),
        seals: headers.len() as i64,
        rows_verified,
        head_hash: headers.last().map(|h| h.hash.clone()),
        unsealed_rows: unsealed,
        first_problem: problems.first().cloned(),
        problems,
        recorded_seals_checked: recorded
            .iter()
            .filter(|r| r.by == RecordedBy::Backup)
            .count(),
        anchored_seals_checked: recorded
            .iter()
            .filter(|r| r.by == RecordedBy::Anchor)
            .count(),
    })
}

// ---------------------------------------------------------------------------------------
// Status for health and backups

/// The chain's state, cheap to compute (for `health` and monitoring roles).
#[derive(Debug, Clone, Serialize)]
pub struct ChainStatus {
    pub seals: i64,
    pub sealed_rows: i64,
    pub last_sealed_at: Option<DateTime<Utc>>,
    pub head_hash: Option<String>,
    pub unsealed_rows: i64,
    pub oldest_unsealed: Option<DateTime<Utc>>,
}

/// The chain's state, or None when the audit schema is not migrated.
pub async fn chain_status(client: &Client) -> Result<Option<ChainStatus>, Error> {
    if !present(client).await? {
        return Ok(None);
    }
    let r = client
        .query_one(CHAIN_SUMMARY, &[])
        .await
        .map_err(Error::db_ctx("cannot read the audit chain status"))?;
    Ok(Some(ChainStatus {
        seals: r.get(0),
        sealed_rows: r.get(1),
        last_sealed_at: r.get(2),
        head_hash: r.get(3),
        unsealed_rows: r.get(4),
        oldest_unsealed: r.get(5),
    }))
}

/// The hash of the latest seal (the chain head), for backup manifests; None when there
/// is no seal yet or the audit schema is not migrated.
pub async fn latest_seal_hash(client: &Client) -> Result<Option<String>, Error> {
    Ok(latest_seal(client).await?.map(|(_, h)| h))
}

/// The latest seal's number and hash (the chain head); None when there is no seal yet
/// or the audit schema is not migrated. Reads in `client`'s current transaction.
pub async fn latest_seal(client: &Client) -> Result<Option<(i64, String)>, Error> {
    if !present(client).await? {
        return Ok(None);
    }
    let row = client
        .query_opt(LAST_SEAL, &[])
        .await
        .map_err(Error::db_ctx("cannot read the latest audit seal"))?;
    Ok(row.map(|r| (r.get(0), r.get(2))))
}

const CURRENT_DATABASE: &str = "SELECT current_database()::text";

/// What the backups of a database say about the chain.
#[derive(Debug, Clone)]
pub struct BackupEvidence {
    /// The directory read (`DIR/<database>/`).
    pub dir: std::path::PathBuf,
    /// Backup files found there.
    pub backups: usize,
    /// The seals their sealed manifests record.
    pub seals: Vec<RecordedSeal>,
    /// Backups that could not be authenticated, summaries that disagree with their
    /// manifest, or no backup recording a seal at all.
    pub problems: Vec<Problem>,
}

/// The audit seals recorded by the backups of the connected database under
/// `DIR/<database>/`, read from each backup's sealed manifest (authenticated with
/// `keys`: this reads every backup file in full). The plaintext summaries are not
/// trusted: one that disagrees with its manifest is a problem, a missing one is fine.
pub async fn recorded_by_backups(
    client: &Client,
    repository: &crate::storage::Repository,
    keys: &[crate::backup::keys::KeyMaterial],
) -> Result<BackupEvidence, Error> {
    use crate::backup::{repo, store, verify};
    let local = store::local_dir(repository).map(|d| d.to_path_buf());
    if let Some(dir) = &local {
        if !dir.is_dir() {
            return Err(Error::Config(format!(
                "backup directory {} does not exist (give the --dir of `backup create`)",
                dir.display()
            )));
        }
    }
    let database: String = client
        .query_one(CURRENT_DATABASE, &[])
        .await
        .map_err(Error::db)?
        .get(0);
    let prefix = format!("{}/", repo::sanitize(&database));
    // Every backup object of this database, listed or not (a summary is not trusted).
    let mut files: Vec<String> = repository
        .list(&prefix)?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| {
            let name = k.rsplit('/').next().unwrap_or(k);
            k.matches('/').count() == 1
                && !name.starts_with('.')
                && name.ends_with(&format!(".{}", repo::EXT))
        })
        .collect();
    files.sort();
    let dir = match &local {
        Some(d) => repo::db_dir(d, &database),
        None => std::path::PathBuf::from(format!("{}/{prefix}", repository.display())),
    };
    let mut out = BackupEvidence {
        dir,
        backups: files.len(),
        seals: Vec::new(),
        problems: Vec::new(),
    };
    for key in files {
        let fetched = match store::fetch(repository, &key) {
            Ok(f) => f,
            Err(e) => {
                out.problems.push(Problem::BackupUnreadable {
                    backup: store::display_path(repository, &key).display().to_string(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let path = fetched.path.clone();
        let shown = store::display_path(repository, &key);
        let (opened, _file) = match verify::authenticate(&path, keys, &()) {
            Ok(o) => o,
            Err(f) => {
                out.problems.push(Problem::BackupUnreadable {
                    backup: shown.display().to_string(),
                    reason: f.message,
                });
                continue;
            }
        };
        let m = &opened.manifest;
        let backup = format!("{} ({})", m.id, shown.display());
        if repo::summary_path(&path).exists() {
            let reason = match repo::read_summary(&path) {
                Ok(s) => s.mismatches(m).join("; "),
                Err(e) => e.to_string(),
            };
            if !reason.is_empty() {
                out.problems.push(Problem::BackupSummary {
                    backup: backup.clone(),
                    reason,
                });
            }
        }
        if let Some(s) = &m.audit_seal {
            out.seals.push(RecordedSeal {
                source: backup,
                seal_id: s.seal_id,
                hash: s.hash.clone(),
                by: RecordedBy::Backup,
            });
        }
    }
    if out.seals.is_empty() {
        out.problems.push(Problem::NothingRecorded {
            source: format!(
                "the backups of this database under {} ({} found)",
                out.dir.display(),
                out.backups
            ),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Anchors: each seal's hash, outside the database

/// Appends one line per seal to the anchor file (`[audit] anchor_file`): `TIME SEAL_ID
/// HASH` (RFC 3339 UTC), opened with O_APPEND (created with mode 0600) and fsynced
/// before returning, so a seal reported as anchored survives a crash.
pub fn append_anchors(
    path: &std::path::Path,
    seals: &[SealInfo],
    at: DateTime<Utc>,
) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if seals.is_empty() {
        return Ok(());
    }
    let time = at.format("%Y-%m-%dT%H:%M:%SZ");
    let text: String = seals
        .iter()
        .map(|s| format!("{time} {} {}\n", s.seal_id, s.hash))
        .collect();
    let created = !path.exists();
    let ctx = || format!("cannot append to the anchor file {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(ctx()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(Error::io(ctx()))?;
    if created {
        crate::fsutil::sync_dir(path)?;
    }
    Ok(())
}

/// Reads an anchor file: every non-empty line is `TIME SEAL_ID HASH`; a malformed line
/// is an error naming `file:line`.
pub fn read_anchors(path: &std::path::Path) -> Result<Vec<RecordedSeal>, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io(format!(
        "cannot read the anchor file {}",
        path.display()
    )))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), n + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        let ok = f.len() == 3
            && DateTime::parse_from_rfc3339(f[0]).is_ok()
            && f[2].len() == 64
            && f[2].bytes().all(|b| b.is_ascii_hexdigit());
        let seal_id = f.get(1).and_then(|v| v.parse::<i64>().ok());
        match (ok, seal_id) {
            (true, Some(seal_id)) => out.push(RecordedSeal {
                source: at,
                seal_id,
                hash: f[2].to_ascii_lowercase(),
                by: RecordedBy::Anchor,
            }),
            _ => {
                return Err(Error::Verify(format!(
                    "{at}: not an anchor line (want `TIME SEAL_ID HASH`, as `audit seal` writes): {line:?}"
                )))
            }
        }
    }
    Ok(out)
}

async fn present(client: &Client) -> Result<bool, Error> {
    Ok(client
        .query_one(AUDIT_PRESENT, &[])
        .await
        .map_err(Error::db)?
        .get(0))
}

async fn ensure_present(client: &Client) -> Result<(), Error> {
    if present(client).await? {
        Ok(())
    } else {
        Err(Error::Config(
            "this database has no audit schema (audit.seals is missing): run `opsctl migrate up` first"
                .into(),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Row moves made by opsctl (migration V61)

/// The transaction-local setting under which the audit row trigger writes no row images
/// for the INSERTs and DELETEs of one table: `<schema>.<table>:<transaction id>`. Honoured
/// only inside that transaction and only for a superuser or a member of the table's owner
/// (docs/audit.md); the move records itself with [`log_move`] in the same transaction.
pub const BULK_MOVE_SETTING: &str = "opsctl.bulk_move";

const RECORDS_MOVES: &str = "\
SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'audit' AND p.proname = 'log_move')
   AND EXISTS (SELECT 1 FROM pg_trigger g
                 JOIN pg_proc p ON p.oid = g.tgfoid
                 JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE g.tgrelid = $1 AND n.nspname = 'audit' AND p.proname = 'log_row')";

const BEGIN_MOVE: &str =
    "SELECT set_config('opsctl.bulk_move', $1 || ':' || txid_current()::text, true)";

const LOG_MOVE: &str = "SELECT audit.log_move($1, $2, $3, $4, $5, $6, $7, $8)";

/// True when the audit log records the row changes of `table_oid` (it carries the audit
/// row trigger) and this database records opsctl's moves as MOVE rows (V61). Without V61
/// moves are audited row by row, as before.
pub async fn records_moves(client: &Client, table_oid: u32) -> Result<bool, Error> {
    Ok(client
        .query_one(RECORDS_MOVES, &[&table_oid])
        .await
        .map_err(Error::db_ctx("cannot check whether the table is audited"))?
        .get(0))
}

/// Within the current transaction, the INSERTs and DELETEs of `schema.table` (its
/// partitions included) write no audit row images: call [`log_move`] before committing.
pub async fn begin_move(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(BEGIN_MOVE, &[&format!("{schema}.{table}")])
        .await
        .map(|_| ())
}

/// One move of rows of a logical table between two relations.
#[derive(Debug, Clone)]
pub struct RowMove<'a> {
    /// The logical (audited) table.
    pub schema: &'a str,
    pub table: &'a str,
    /// Where the rows were (schema, relation).
    pub from: (&'a str, &'a str),
    /// Where they went (schema, relation).
    pub to: (&'a str, &'a str),
    pub rows: i64,
    /// [`crate::backup::manifest::content_checksum_sql`] over the moved rows.
    pub checksum: &'a str,
}

/// Records a move as one MOVE row of the audit log, in the current transaction (so the
/// seal chain covers it like any other row).
pub async fn log_move(client: &Client, m: &RowMove<'_>) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            LOG_MOVE,
            &[
                &m.schema,
                &m.table,
                &m.from.0,
                &m.from.1,
                &m.to.0,
                &m.to.1,
                &m.rows,
                &m.checksum,
            ],
        )
        .await
        .map(|_| ())
}

// ---------------------------------------------------------------------------------------
// Report

/// What the report covers.
#[derive(Debug, Clone)]
pub struct ReportFilter {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub table: Option<String>,
    pub actor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeCount {
    pub table: String,
    pub operation: String,
    pub actor: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TradeDelete {
    pub audit_id: i64,
    pub at: DateTime<Utc>,
    pub operation: String,
    pub actor: String,
    pub trade_id: Option<String>,
    pub user_id: Option<String>,
    pub symbol: Option<String>,
    pub relation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub id: i64,
    pub command: String,
    pub command_line: String,
    pub os_user: Option<String>,
    pub db_role: String,
    pub host: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    /// The error's first line.
    pub error: Option<String>,
    /// The rest of a multi-line error (detail, hint, causes).
    pub details: Option<String>,
    /// What the command did (e.g. rows an import inserted, updated, skipped, rejected).
    pub result: Option<String>,
}

/// One MOVE row: rows opsctl moved between partitions or into the archive.
#[derive(Debug, Clone, Serialize)]
pub struct MoveEntry {
    pub audit_id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub table: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub rows: i64,
    pub checksum: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BigTransaction {
    pub transaction_id: i64,
    pub rows: i64,
    pub started_at: DateTime<Utc>,
    pub actor: String,
    pub tables: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub table: Option<String>,
    pub actor: Option<String>,
    pub total_changes: i64,
    pub changes: Vec<ChangeCount>,
    pub trade_deletes_total: i64,
    pub trade_deletes: Vec<TradeDelete>,
    /// Row moves by opsctl (MOVE rows): operations and the rows they moved.
    pub moves_total: i64,
    pub rows_moved: i64,
    pub moves: Vec<MoveEntry>,
    pub operations: Vec<Operation>,
    pub largest_transactions: Vec<BigTransaction>,
    pub chain: Option<ChainStatus>,
}

/// Rows listed per section at most (counts are always complete).
pub const REPORT_LIMIT: i64 = 100;

const FILTER: &str = "action_tstamp_tx >= $1 AND action_tstamp_tx < $2 \
     AND ($3::text IS NULL OR table_name = $3) \
     AND ($4::text IS NULL OR app_actor = $4 OR session_user_name = $4)";

fn q_changes() -> String {
    format!(
        "SELECT table_name, action::text, COALESCE(app_actor, session_user_name), count(*) \
         FROM audit.logged_actions WHERE {FILTER} GROUP BY 1, 2, 3 ORDER BY 1, 2, 4 DESC, 3"
    )
}

fn q_trade_deletes() -> String {
    format!(
        "SELECT id, action_tstamp_stm, action::text, COALESCE(app_actor, session_user_name), \
         row_old->>'id', row_old->>'user_id', row_old->>'symbol', relname, count(*) OVER () \
         FROM audit.logged_actions WHERE {FILTER} AND table_name = 'trades' AND action IN ('D', 'T') \
         ORDER BY id LIMIT $5"
    )
}

fn q_moves() -> String {
    format!(
        "SELECT id, action_tstamp_stm, COALESCE(app_actor, session_user_name), table_name, \
         row_old->>'relation', row_new->>'relation', COALESCE((row_new->>'rows')::int8, 0), \
         row_new->>'checksum', count(*) OVER (), \
         COALESCE(sum((row_new->>'rows')::int8) OVER (), 0)::int8 \
         FROM audit.logged_actions WHERE {FILTER} AND action = 'M' ORDER BY id LIMIT $5"
    )
}

fn q_big_transactions() -> String {
    format!(
        "SELECT transaction_id, count(*), min(action_tstamp_tx), \
         min(COALESCE(app_actor, session_user_name)), string_agg(DISTINCT table_name, ',') \
         FROM audit.logged_actions WHERE {FILTER} \
         GROUP BY transaction_id ORDER BY 2 DESC, 1 LIMIT 10"
    )
}

/// The operations in the window. `details` and `result` are read through jsonb so the
/// query also works on a database without those columns (before V65): they are NULL there.
const Q_OPERATIONS: &str = "SELECT id, command, command_line, os_user, db_role, host, \
     started_at, finished_at, outcome, error, \
     to_jsonb(o) ->> 'details', to_jsonb(o) ->> 'result' \
     FROM opsctl.operations o \
     WHERE started_at >= $1 AND started_at < $2 \
     AND ($3::text IS NULL OR os_user = $3 OR db_role = $3) \
     ORDER BY started_at, id LIMIT $4";

/// Builds the audit report for the window and filters.
pub async fn report(client: &Client, f: &ReportFilter) -> Result<Report, Error> {
    ensure_present(client).await?;
    let ctx = "cannot build the audit report";
    let changes: Vec<ChangeCount> = client
        .query(&q_changes(), &[&f.from, &f.to, &f.table, &f.actor])
        .await
        .map_err(Error::db_ctx(ctx))?
        .iter()
        .map(|r| ChangeCount {
            table: r.get(0),
            operation: op_name(r.get(1)),
            actor: r.get(2),
            count: r.get(3),
        })
        .collect();
    let rows = client
        .query(
            &q_trade_deletes(),
            &[&f.from, &f.to, &f.table, &f.actor, &REPORT_LIMIT],
        )
        .await
        .map_err(Error::db_ctx(ctx))?;
    let trade_deletes_total = rows.first().map(|r| r.get::<_, i64>(8)).unwrap_or(0);
    let trade_deletes = rows
        .iter()
        .map(|r| TradeDelete {
            audit_id: r.get(0),
            at: r.get(1),
            operation: op_name(r.get(2)),
            actor: r.get(3),
            trade_id: r.get(4),
            user_id: r.get(5),
            symbol: r.get(6),
            relation: r.get(7),
        })
        .collect();
    let rows = client
        .query(
            &q_moves(),
            &[&f.from, &f.to, &f.table, &f.actor, &REPORT_LIMIT],
        )
        .await
        .map_err(Error::db_ctx(ctx))?;
    let moves_total = rows.first().map(|r| r.get::<_, i64>(8)).unwrap_or(0);
    let rows_moved = rows.first().map(|r| r.get::<_, i64>(9)).unwrap_or(0);
    let moves = rows
        .iter()
        .map(|r| MoveEntry {
            audit_id: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            table: r.get(3),
            from: r.get(4),
            to: r.get(5),
            rows: r.get(6),
            checksum: r.get(7),
        })
        .collect();
    let operations = client
        .query(Q_OPERATIONS, &[&f.from, &f.to, &f.actor, &REPORT_LIMIT])
        .await
        .map_err(Error::db_ctx(ctx))?
        .iter()
        .map(|r| Operation {
            id: r.get(0),
            command: r.get(1),
            command_line: r.get(2),
            os_user: r.get(3),
            db_role: r.get(4),
            host: r.get(5),
            started_at: r.get(6),
            finished_at: r.get(7),
            outcome: r.get(8),
            error: r.get(9),
            details: r.get(10),
            result: r.get(11),
        })
        .collect();
    let largest_transactions = client
        .query(&q_big_transactions(), &[&f.from, &f.to, &f.table, &f.actor])
        .await
        .map_err(Error::db_ctx(ctx))?
        .iter()
        .map(|r| BigTransaction {
            transaction_id: r.get(0),
            rows: r.get(1),
            started_at: r.get(2),
            actor: r.get(3),
            tables: r.get(4),
        })
        .collect();
    let chain = chain_status(client).await?;
    Ok(Report {
        from: f.from,
        to: f.to,
        table: f.table.clone(),
        actor: f.actor.clone(),
        total_changes: changes.iter().map(|c| c.count).sum(),
        changes,
        trade_deletes_total,
        trade_deletes,
        moves_total,
        rows_moved,
        moves,
        operations,
        largest_transactions,
        chain,
    })
}

fn op_name(code: String) -> String {
    match code.as_str() {
        "I" => "INSERT",
        "U" => "UPDATE",
        "D" => "DELETE",
        "T" => "TRUNCATE",
        "M" => "MOVE",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_digest_separates_null_empty_and_boundaries() {
        let a = row_digest(&[Some("ab".into()), Some("c".into())]);
        let b = row_digest(&[Some("a".into()), Some("bc".into())]);
        let c = row_digest(&[None, Some("c".into())]);
        let d = row_digest(&[Some(String::new()), Some("c".into())]);
        assert_ne!(a, b);
        assert_ne!(c, d);
    }

    #[test]
    fn seal_hash_chains() {
        let h1 = seal_hash(GENESIS_HASH, b"x").unwrap();
        let h2 = seal_hash(&h1, b"x").unwrap();
        assert_ne!(h1, h2);
        assert_eq!(h1.len(), 64);
        assert!(seal_hash("zz", b"").is_err());
    }

    #[test]
    fn anchors_round_trip_and_malformed_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("anchors.log");
        let seal = |id: i64, c: char| SealInfo {
            seal_id: id,
            rows: 1,
            first_row_id: Some(id),
            last_row_id: Some(id),
            hash: c.to_string().repeat(64),
        };
        let at = Utc::now();
        append_anchors(&p, &[seal(1, 'a'), seal(2, 'b')], at).unwrap();
        append_anchors(&p, &[seal(3, 'c')], at).unwrap();
        let got = read_anchors(&p).unwrap();
        let ids: Vec<i64> = got.iter().map(|r| r.seal_id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(got[2].hash, "c".repeat(64));
        assert!(
            got[1].source.ends_with("anchors.log:2"),
            "{}",
            got[1].source
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(
            &p,
            format!(
                "{}\nnot a line\n",
                std::fs::read_to_string(&p).unwrap().trim_end()
            ),
        )
        .unwrap();
        let e = read_anchors(&p).unwrap_err().to_string();
        assert!(e.contains("anchors.log:4:"), "{e}");
    }

    #[test]
    fn digest_entries_roundtrip() {
        let mut blob = Vec::new();
        blob.extend_from_slice(&7i64.to_be_bytes());
        blob.extend_from_slice(&[1u8; 32]);
        let e = digest_entries(&blob).unwrap();
        assert_eq!(e, vec![(7, [1u8; 32])]);
        assert!(digest_entries(&blob[..39]).is_none());
    }
}
