-- Size snapshots for `opsctl report size --snapshot` (growth per day and week, days until
-- the policy's disk limit). One row per snapshot; the report prunes rows older than
-- [reports].snapshot_retention_days (90 by default).
CREATE SCHEMA IF NOT EXISTS opsctl;

CREATE TABLE IF NOT EXISTS opsctl.size_snapshots (
    database_name   text        NOT NULL DEFAULT current_database(),
    taken_at        timestamptz NOT NULL DEFAULT now(),
    database_bytes  bigint      NOT NULL,
    -- The largest tables at snapshot time: [{schema, table, heap_bytes, index_bytes, toast_bytes, total_bytes}].
    tables          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    PRIMARY KEY (database_name, taken_at)
);
