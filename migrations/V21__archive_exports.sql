-- Exports of archived months (opsctl archive --export-dir / opsctl archive restore): one
-- row per month file written, verified by reading it back, and optionally dropped from
-- the database afterwards or restored into it again. Times are UTC.

CREATE SCHEMA IF NOT EXISTS opsctl;

CREATE TABLE IF NOT EXISTS opsctl.archive_exports (
    id            bigserial   PRIMARY KEY,
    table_schema  text        NOT NULL,   -- the live table the month came from
    table_name    text        NOT NULL,
    partition     text        NOT NULL,   -- archive.<partition>
    range_from    timestamp   NOT NULL,
    range_to      timestamp   NOT NULL,
    file          text        NOT NULL,   -- absolute path of the export file
    file_id       text        NOT NULL,   -- the container's random file id (hex)
    bytes         bigint      NOT NULL,
    rows          bigint      NOT NULL,
    checksum      text        NOT NULL,   -- order-independent checksum of the rows
    exported_at   timestamptz NOT NULL DEFAULT now(),
    verified_at   timestamptz,            -- read back: authentication, rows, checksum
    dropped_at    timestamptz,            -- --drop-after-export removed the month
    restored_at   timestamptz             -- opsctl archive restore brought it back
);

CREATE INDEX IF NOT EXISTS archive_exports_month
    ON opsctl.archive_exports (table_schema, table_name, range_from);
