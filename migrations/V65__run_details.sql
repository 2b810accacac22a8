-- What happened while nobody watched: the rest of a multi-line error and what a command
-- did (opsctl.operations), the exit code and the last lines of a scheduled job's output
-- (opsctl.job_runs). Columns only: older opsctl binaries keep working against this schema,
-- and this opsctl keeps working (without these fields) against a database not yet migrated.
CREATE SCHEMA IF NOT EXISTS opsctl;

ALTER TABLE IF EXISTS opsctl.operations
    ADD COLUMN IF NOT EXISTS details text,   -- lines 2.. of the error (line 1 is `error`)
    ADD COLUMN IF NOT EXISTS result  text;   -- what it did, e.g. "1,000 inserted, 2 rejected"

ALTER TABLE IF EXISTS opsctl.job_runs
    ADD COLUMN IF NOT EXISTS exit_code integer,  -- of the child opsctl that ended the run
    ADD COLUMN IF NOT EXISTS output    text;     -- its last lines of output (stdout and stderr)
