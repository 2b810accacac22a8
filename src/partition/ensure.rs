//! `partition ensure`: creates the monthly partitions from the oldest data month through
//! now + premake, each as a standalone table with its range as a CHECK constraint, fills it
//! with the rows of its range that sit in the default partition, and attaches it — all in
//! one short-lock transaction per month. Idempotent. On an audited table the move is one
//! MOVE row of the audit log (count and content checksum), not a DELETE row per row.

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;
use tokio_postgres::Client;

use super::{
    add_months, default_name, in_tx, midnight, month_of, partition_name, partitions, ts_literal,
    Observer, Runway, Table,
};
use crate::backup::manifest::content_checksum_sql;
use crate::db::{quote_ident, quote_qualified};
use crate::error::Error;

/// One month `ensure` will create.
#[derive(Debug, Clone, Serialize)]
pub struct MonthPlan {
    pub partition: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Rows of this range in the default partition when planned (moved into the month).
    pub rows_from_default: i64,
}

/// What `ensure` will do to one table.
#[derive(Debug, Clone, Serialize)]
pub struct EnsurePlan {
    pub table: Table,
    pub premake: u32,
    /// First and last month of the window (oldest data month .. now + premake).
    pub first_month: NaiveDate,
    pub last_month: NaiveDate,
    /// The table has no default partition: one will be created first.
    pub create_default: bool,
    pub months: Vec<MonthPlan>,
    /// Rows in the default partition that no month of the window takes (e.g. far future).
    pub default_rows_outside: i64,
}

/// What `ensure` did to one table.
#[derive(Debug, Clone, Serialize)]
pub struct EnsureOutcome {
    pub table: String,
    pub dry_run: bool,
    pub first_month: NaiveDate,
    pub last_month: NaiveDate,
    pub default_created: bool,
    pub created: Vec<MonthPlan>,
    pub rows_moved_from_default: i64,
    pub rows_left_in_default: i64,
    pub runway: Runway,
}

fn sql_min(t: &Table) -> String {
    format!(
        "SELECT min({})::timestamp FROM {}",
        t.sql_column(),
        t.sql_name()
    )
}

fn sql_default_months(t: &Table, def: &str) -> String {
    format!(
        "SELECT (date_trunc('month', {c}))::timestamp, count(*) FROM {d} GROUP BY 1 ORDER BY 1",
        c = t.sql_column(),
        d = quote_qualified(&t.schema, def)
    )
}

/// Plans the months to create for `table` at `now`.
pub async fn plan(
    client: &Client,
    table: &Table,
    premake: u32,
    now: NaiveDateTime,
) -> Result<EnsurePlan, Error> {
    let oldest: Option<NaiveDateTime> = client
        .query_one(&sql_min(table), &[])
        .await
        .map_err(Error::db_ctx(format!(
            "cannot read the oldest row of {}",
            table.qualified()
        )))?
        .get(0);
    let current = month_of(now);
    let first_month = oldest.map(month_of).unwrap_or(current).min(current);
    let last_month = add_months(current, premake as i32);
    let existing = partitions(client, table.oid).await?;
    let mut by_month: Vec<(NaiveDate, i64)> = Vec::new();
    if let Some(def) = &table.default_partition {
        for r in client
            .query(&sql_default_months(table, def), &[])
            .await
            .map_err(Error::db)?
        {
            let m: NaiveDateTime = r.get(0);
            by_month.push((m.date(), r.get(1)));
        }
    }
    let mut months = Vec::new();
    let mut m = first_month;
    while m <= last_month {
        let (f, t) = (midnight(m), midnight(add_months(m, 1)));
        if !existing.iter().any(|p| p.overlaps(f, t)) {
            let name = partition_name(&table.name, m);
            if let Some(p) = existing.iter().find(|p| p.name == name) {
                return Err(Error::Config(format!(
                    "{} already exists with another range; rename it or attach it by hand",
                    p.qualified()
                )));
            }
            months.push(MonthPlan {
                partition: name,
                from: m,
                to: add_months(m, 1),
                rows_from_default: by_month
                    .iter()
                    .find(|(bm, _)| *bm == m)
                    .map_or(0, |(_, n)| *n),
            });
        }
        m = add_months(m, 1);
    }
    let default_rows_outside = by_month
        .iter()
        .filter(|(bm, _)| *bm < first_month || *bm > last_month)
        .map(|(_, n)| n)
        .sum();
    Ok(EnsurePlan {
        table: table.clone(),
        premake,
        first_month,
        last_month,
        create_default: table.default_partition.is_none(),
        months,
        default_rows_outside,
    })
}

const SQL_REL_EXISTS: &str = "SELECT to_regclass($1) IS NOT NULL";

/// Carries out a plan (nothing when `dry_run`).
pub async fn apply(
    client: &Client,
    plan: &EnsurePlan,
    dry_run: bool,
    obs: &dyn Observer,
) -> Result<EnsureOutcome, Error> {
    let t = &plan.table;
    let mut out = EnsureOutcome {
        table: t.qualified(),
        dry_run,
        first_month: plan.first_month,
        last_month: plan.last_month,
        default_created: false,
        created: Vec::new(),
        rows_moved_from_default: 0,
        rows_left_in_default: 0,
        runway: super::runway_at(&partitions(client, t.oid).await?, super::now_utc()),
    };
    if dry_run {
        out.default_created = plan.create_default;
        out.created = plan.months.clone();
        out.rows_moved_from_default = plan.months.iter().map(|m| m.rows_from_default).sum();
        out.rows_left_in_default = plan.default_rows_outside;
        return Ok(out);
    }
    let mut def = t.default_partition.clone();
    if def.is_none() {
        let name = default_name(&t.name);
        let sql = format!(
            "CREATE TABLE {} PARTITION OF {} DEFAULT",
            quote_qualified(&t.schema, &name),
            t.sql_name()
        );
        in_tx(
            client,
            &format!("creating the default partition of {}", t.qualified()),
            || client.batch_execute(&sql),
        )
        .await?;
        obs.notice(&format!("created default partition {}.{name}", t.schema));
        out.default_created = true;
        def = Some(name);
    }
    let def = def.expect("default partition");
    let audit = is_audit_log(client, t).await?;
    let record = crate::audit::records_moves(client, t.oid).await?;
    for m in &plan.months {
        let moved = create_month(client, t, &def, m, audit, record).await?;
        obs.notice(&format!(
            "created {}.{} [{} .. {}){}",
            t.schema,
            m.partition,
            m.from,
            m.to,
            if moved > 0 {
                format!(", moved {moved} rows from the default partition")
            } else {
                String::new()
            }
        ));
        out.rows_moved_from_default += moved;
        out.created.push(MonthPlan {
            rows_from_default: moved,
            ..m.clone()
        });
    }
    refresh_statistics(client, t, &def, &out, obs).await;
    let fresh = super::inspect(
        client,
        &super::TableSpec {
            schema: t.schema.clone(),
            table: t.name.clone(),
            column: None,
        },
    )
    .await?;
    out.rows_left_in_default = super::rows_in_default(client, &fresh).await?;
    out.runway = super::runway(client, &fresh).await?;
    Ok(out)
}

/// After rows moved, the planner's statistics of the partitions touched are stale (the
/// default partition still "holds" the moved rows, the new months nothing), and they are
/// what `partition list` shows as estimates: ANALYZE the months created, and VACUUM
/// ANALYZE the default partition rows moved out of (which also gives the space of a
/// now-empty default back). Outside any transaction; neither blocks readers or writers.
/// A failure (e.g. a role that may not analyze the audit log) is only a notice.
async fn refresh_statistics(
    client: &Client,
    t: &Table,
    def: &str,
    out: &EnsureOutcome,
    obs: &dyn Observer,
) {
    let mut sql: Vec<String> = Vec::new();
    if out.rows_moved_from_default > 0 {
        sql.push(format!(
            "VACUUM (ANALYZE) {}",
            quote_qualified(&t.schema, def)
        ));
    }
    if !out.created.is_empty() {
        let months: Vec<String> = out
            .created
            .iter()
            .map(|m| quote_qualified(&t.schema, &m.partition))
            .collect();
        sql.push(format!("ANALYZE {}", months.join(", ")));
    }
    for q in sql {
        if let Err(e) = client.batch_execute(&q).await {
            obs.notice(&format!(
                "warning: the row estimates of {} stay stale until autovacuum analyzes it: {}",
                t.qualified(),
                crate::db::describe(&e)
            ));
        }
    }
}

/// Owner of the audit log (migrations/V41__audit_log.sql, docs/audit.md).
pub const AUDIT_OWNER: &str = "opsctl_audit_owner";

const SQL_IS_AUDIT_LOG: &str = "\
SELECT pg_get_userbyid(c.relowner)::text = $2
       AND to_regprocedure('audit.refuse_change()') IS NOT NULL
  FROM pg_class c WHERE c.oid = $1";

/// True for the audit log: a table owned by `opsctl_audit_owner` whose rows the
/// append-only guard `audit.refuse_change()` protects.
async fn is_audit_log(client: &Client, t: &Table) -> Result<bool, Error> {
    Ok(client
        .query_opt(SQL_IS_AUDIT_LOG, &[&t.oid, &AUDIT_OWNER])
        .await
        .map_err(Error::db)?
        .is_some_and(|r| r.get::<_, bool>(0)))
}

/// Creates one month: standalone table with CHECK, rows moved from the default, attach.
/// Returns the rows moved. One transaction, short lock_timeout, retried.
///
/// For the audit log (`audit`): the move out of the default partition is a DELETE the
/// append-only guard refuses unless `opsctl.audit_rewrite = on` (set for this
/// transaction only; the moved rows keep ids and content, so the seal chain verifies);
/// the new month is owned by `opsctl_audit_owner` and gets the BEFORE TRUNCATE guard
/// (the row guard is cloned to it by the ATTACH).
///
/// For an audited table (`record`): the move is one MOVE row of the audit log with the
/// rows' count and content checksum, written in the same transaction, instead of one
/// DELETE row per moved row (`crate::audit::begin_move`, `log_move`).
async fn create_month(
    client: &Client,
    t: &Table,
    def: &str,
    m: &MonthPlan,
    audit: bool,
    record: bool,
) -> Result<i64, Error> {
    let part = quote_qualified(&t.schema, &m.partition);
    let exists: bool = client
        .query_one(SQL_REL_EXISTS, &[&part])
        .await
        .map_err(Error::db)?
        .get(0);
    if exists {
        return Err(Error::Config(format!(
            "{}.{} exists but is not a partition of {}: attach it by hand \
             (ALTER TABLE … ATTACH PARTITION) or rename it, then run ensure again",
            t.schema,
            m.partition,
            t.qualified()
        )));
    }
    let (lo, hi) = (ts_literal(midnight(m.from)), ts_literal(midnight(m.to)));
    let col = t.sql_column();
    let defq = quote_qualified(&t.schema, def);
    // Lock order: the parent first, against inserts (ONLY: not its partitions), then the
    // default partition (ATTACH needs it exclusively anyway, and no row of the range may
    // reach it between the move and the attach). Without the parent lock an insert that
    // was routed to the default before the attach waits for the default's lock and then
    // fails its re-check of the default's (narrowed) partition constraint; with it, the
    // insert waits before routing and lands in the new month. Both locks last only this
    // short transaction (lock_timeout, retried).
    let lock = format!(
        "LOCK TABLE ONLY {parent} IN SHARE ROW EXCLUSIVE MODE; \
         LOCK TABLE {defq} IN ACCESS EXCLUSIVE MODE",
        parent = t.sql_name()
    );
    let create = format!(
        "CREATE TABLE {part} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
         INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMPRESSION); \
         ALTER TABLE {part} ADD CONSTRAINT {check} CHECK ({col} >= {lo} AND {col} < {hi})",
        parent = t.sql_name(),
        check = quote_ident(&format!("{}_range", m.partition)),
    );
    let audit_setup = audit.then(|| {
        format!(
            "SET LOCAL opsctl.audit_rewrite = 'on'; \
             CREATE TRIGGER {trigger} BEFORE TRUNCATE ON {part} \
               FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change(); \
             REVOKE ALL ON {part} FROM PUBLIC; \
             ALTER TABLE {part} OWNER TO {owner}",
            owner = quote_ident(AUDIT_OWNER),
            trigger = quote_ident(&format!("{}_no_truncate", m.partition)),
        )
    });
    let cols = t.sql_columns();
    let fill = format!(
        "WITH moved AS (DELETE FROM {defq} WHERE {col} >= {lo} AND {col} < {hi} RETURNING *), \
         ins AS (INSERT INTO {part} ({cols}) SELECT {cols} FROM moved) \
         SELECT count(*), {sum} FROM moved m",
        sum = content_checksum_sql("m")
    );
    let attach = format!(
        "ALTER TABLE {parent} ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi})",
        parent = t.sql_name()
    );
    in_tx(
        client,
        &format!("creating partition {}.{}", t.schema, m.partition),
        || async {
            client.batch_execute(&lock).await?;
            client.batch_execute(&create).await?;
            if let Some(sql) = &audit_setup {
                client.batch_execute(sql).await?;
            }
            if record {
                crate::audit::begin_move(client, &t.schema, &t.name).await?;
            }
            let row = client.query_one(fill.as_str(), &[]).await?;
            let (moved, checksum): (i64, String) = (row.get(0), row.get(1));
            if record && moved > 0 {
                let mv = crate::audit::RowMove {
                    schema: &t.schema,
                    table: &t.name,
                    from: (&t.schema, def),
                    to: (&t.schema, &m.partition),
                    rows: moved,
                    checksum: &checksum,
                };
                crate::audit::log_move(client, &mv).await?;
            }
            client.batch_execute(&attach).await?;
            Ok(moved)
        },
    )
    .await
}
