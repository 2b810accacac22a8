-- Bookkeeping of opsctl backups and restore drills (issue 4). The repository directory
-- holds the same status beside each file (<id>.status.json); these tables let SQL and
-- reports see it too. No foreign key from drills to backups: a backup taken before this
-- migration ran has no row here, its drills are still recorded.
CREATE SCHEMA IF NOT EXISTS opsctl;

CREATE TABLE IF NOT EXISTS opsctl.backups (
    id                 text PRIMARY KEY,
    database           text        NOT NULL,
    file_path          text        NOT NULL,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz NOT NULL,
    dump_bytes         bigint      NOT NULL,
    compressed_bytes   bigint      NOT NULL,
    file_bytes         bigint      NOT NULL,
    key_ids            text[]      NOT NULL,
    dump_sha256        text        NOT NULL,
    tables             integer     NOT NULL,
    rows               bigint      NOT NULL,
    migration_version  text,
    verified_at        timestamptz,
    verify_ok          boolean,
    verify_reason      text,
    last_drill_at      timestamptz,
    last_drill_ok      boolean,
    deleted_at         timestamptz
);

CREATE INDEX IF NOT EXISTS backups_database_started_idx
    ON opsctl.backups (database, started_at DESC);

CREATE TABLE IF NOT EXISTS opsctl.backup_drills (
    id               bigserial PRIMARY KEY,
    backup_id        text             NOT NULL,
    database         text             NOT NULL,
    scratch_database text             NOT NULL,
    started_at       timestamptz      NOT NULL,
    finished_at      timestamptz      NOT NULL,
    rto_seconds      double precision NOT NULL,
    tables_compared  integer          NOT NULL,
    rows_compared    bigint           NOT NULL,
    ok               boolean          NOT NULL,
    mismatches       jsonb            NOT NULL DEFAULT '[]'::jsonb
);

CREATE INDEX IF NOT EXISTS backup_drills_backup_idx
    ON opsctl.backup_drills (backup_id, started_at DESC);
