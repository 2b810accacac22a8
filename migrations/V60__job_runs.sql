-- Runs of scheduled jobs (opsctl schedule run / --once): what ran, when, and how it ended.
CREATE SCHEMA IF NOT EXISTS opsctl;

CREATE TABLE IF NOT EXISTS opsctl.job_runs (
    id             bigserial PRIMARY KEY,
    job            text        NOT NULL,
    scheduled_for  timestamptz,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    attempt        integer     NOT NULL DEFAULT 1,
    outcome        text        NOT NULL DEFAULT 'running'
                   CHECK (outcome IN ('running', 'success', 'failure', 'cancelled', 'skipped')),
    error          text,
    host           text,
    pid            integer,
    -- 'daemon' (schedule run) or 'once' (schedule run --once)
    runner         text        NOT NULL DEFAULT 'daemon'
);

CREATE INDEX IF NOT EXISTS job_runs_job_started_idx ON opsctl.job_runs (job, started_at DESC);
