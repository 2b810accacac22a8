-- Bookkeeping of `opsctl vacuum` and `opsctl reindex`: one row per table or index
-- processed (or attempted), so "what did last night's maintenance do" is a query.
CREATE SCHEMA IF NOT EXISTS opsctl;

CREATE TABLE IF NOT EXISTS opsctl.maintenance_runs (
    id                  bigserial   PRIMARY KEY,
    -- All rows written by one invocation share job_started_at.
    job_started_at      timestamptz NOT NULL,
    job                 text        NOT NULL CHECK (job IN ('vacuum', 'reindex')),
    schema_name         text        NOT NULL,
    -- The table (vacuum) or index (reindex) acted on.
    relation            text        NOT NULL,
    -- For reindex: the table the index belongs to.
    table_name          text,
    -- The statement kind, e.g. 'VACUUM (FREEZE, ANALYZE)', 'REINDEX INDEX CONCURRENTLY'.
    action              text        NOT NULL,
    -- Why it was chosen, with the figures, e.g. 'dead tuples 45000 (45.0% of live)'.
    reason              text        NOT NULL,
    dead_tuples_before  bigint,
    dead_tuples_after   bigint,
    size_before_bytes   bigint,
    size_after_bytes    bigint,
    started_at          timestamptz NOT NULL,
    duration_ms         bigint      NOT NULL,
    attempts            integer     NOT NULL DEFAULT 1,
    outcome             text        NOT NULL CHECK (outcome IN ('ok', 'failed', 'skipped')),
    error               text
);

CREATE INDEX IF NOT EXISTS maintenance_runs_started_idx
    ON opsctl.maintenance_runs (started_at DESC);
CREATE INDEX IF NOT EXISTS maintenance_runs_relation_idx
    ON opsctl.maintenance_runs (schema_name, relation, started_at DESC);
