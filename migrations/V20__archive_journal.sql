-- Partitions and archival (opsctl partition / opsctl archive): the `archive` schema that
-- receives old rows (one partitioned table per live table, created on first use with the
-- live table's columns and indexes), and the journal that makes an archive resumable.

CREATE SCHEMA IF NOT EXISTS opsctl;
CREATE SCHEMA IF NOT EXISTS archive;
COMMENT ON SCHEMA archive IS
    'Rows moved out of live tables by opsctl archive: same columns, queryable.';

-- One row per archive run of one table. At most one unfinished run per table: a run with
-- another cutoff first finishes the recorded one. Times are UTC.
CREATE TABLE IF NOT EXISTS opsctl.archive_journal (
    id                  bigserial   PRIMARY KEY,
    table_schema        text        NOT NULL,
    table_name          text        NOT NULL,
    time_column         text        NOT NULL,
    cutoff              timestamp   NOT NULL,
    state               text        NOT NULL DEFAULT 'running'
                                    CHECK (state IN ('running', 'done', 'failed')),
    -- Measured when the run started, in one snapshot.
    source_rows         bigint      NOT NULL,
    range_start         timestamp,
    archive_rows_before bigint      NOT NULL,
    -- Progress, updated in the same transaction as each move.
    moved_partitions    integer     NOT NULL DEFAULT 0,
    moved_rows          bigint      NOT NULL DEFAULT 0,
    moved_bytes         bigint      NOT NULL DEFAULT 0,
    batches             integer     NOT NULL DEFAULT 0,
    batch_position      text[],
    started_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    live_rows_left      bigint,
    archive_rows_added  bigint,
    verified            boolean,
    message             text
);

CREATE UNIQUE INDEX IF NOT EXISTS archive_journal_one_running
    ON opsctl.archive_journal (table_schema, table_name) WHERE state = 'running';

-- Whole partitions moved by metadata: 'detached' is committed together with the DETACH
-- from the live table (and the move to schema archive), 'attached' together with the
-- ATTACH to the archive table. A run killed between the two attaches on resume.
CREATE TABLE IF NOT EXISTS opsctl.archive_journal_partitions (
    journal_id   bigint      NOT NULL REFERENCES opsctl.archive_journal (id),
    partition    text        NOT NULL,
    range_from   timestamp   NOT NULL,
    range_to     timestamp   NOT NULL,
    state        text        NOT NULL CHECK (state IN ('detached', 'attached')),
    rows         bigint,
    bytes        bigint,
    detached_at  timestamptz NOT NULL DEFAULT now(),
    attached_at  timestamptz,
    PRIMARY KEY (journal_id, partition)
);
