-- opsctl's migration history. Created by the runner itself (under the migration lock)
-- before any migration runs, so it cannot be one of the migrations.
CREATE SCHEMA IF NOT EXISTS opsctl;
CREATE TABLE IF NOT EXISTS opsctl.schema_history (
    version       bigint      PRIMARY KEY,
    name          text        NOT NULL,
    checksum      text        NOT NULL,
    -- 'migration': run by opsctl; 'baseline': recorded by `migrate baseline`, never run.
    kind          text        NOT NULL DEFAULT 'migration' CHECK (kind IN ('migration', 'baseline')),
    -- 'running' and 'failed' only ever happen to no-transaction files and block `up`
    -- until `migrate resolve`.
    state         text        NOT NULL CHECK (state IN ('success', 'failed', 'running')),
    success       boolean     GENERATED ALWAYS AS (state = 'success') STORED,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    execution_ms  bigint      NOT NULL DEFAULT 0,
    applied_by    text        NOT NULL DEFAULT current_user,
    error         text
);
