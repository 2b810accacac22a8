-- Trigger-based audit log of users, trades, positions and account_totals, plus the
-- tables opsctl needs for its tamper-evident seal chain (audit.seals) and for recording
-- its own operations (opsctl.operations).
--
-- The audit schema belongs to opsctl_audit_owner, a role nobody logs in as. The trigger
-- functions run as that owner (SECURITY DEFINER, fixed search_path), so writers need no
-- privilege on the audit tables, and nobody but the owner (i.e. a superuser) can update
-- or delete audit rows; a guard trigger refuses even that unless it is asked for
-- explicitly (see docs/audit.md).

CREATE SCHEMA IF NOT EXISTS opsctl;

-- Handing objects to the owner role needs membership in it (for a non-superuser).
-- Take it for the length of this migration only; it is given back at the end.
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND NOT pg_catalog.pg_has_role(current_user, 'opsctl_audit_owner', 'MEMBER') THEN
        EXECUTE pg_catalog.format('GRANT opsctl_audit_owner TO %I', current_user);
        PERFORM pg_catalog.set_config('opsctl.audit_owner_granted', 'on', false);
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION opsctl_audit_owner;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;

CREATE SEQUENCE audit.logged_actions_id_seq AS bigint;

-- One row per audited row change (I/U/D) or per TRUNCATE statement (T).
-- Partitioned by month on action_tstamp_tx (the transaction's start, so one
-- transaction's rows share a partition); the DEFAULT partition takes whatever no
-- monthly partition covers yet, so an audited write never fails for want of one.
CREATE TABLE audit.logged_actions (
    id                 bigint      NOT NULL DEFAULT pg_catalog.nextval('audit.logged_actions_id_seq'),
    action_tstamp_tx   timestamptz NOT NULL,  -- transaction_timestamp()
    action_tstamp_stm  timestamptz NOT NULL,  -- statement_timestamp()
    schema_name        text        NOT NULL,
    table_name         text        NOT NULL,  -- the logical table (trades, not trades_2026_01)
    relname            text        NOT NULL,  -- the relation the trigger fired on (a partition for trades)
    action             char(1)     NOT NULL CHECK (action IN ('I', 'U', 'D', 'T')),
    transaction_id     bigint      NOT NULL,  -- txid_current(): 64-bit, epoch-extended
    session_user_name  text        NOT NULL,
    application_name   text,
    client_addr        inet,
    client_port        integer,
    app_actor          text,                  -- current_setting('app.actor', true)
    row_old            jsonb,                 -- U, D
    row_new            jsonb,                 -- I, U
    PRIMARY KEY (id, action_tstamp_tx)
) PARTITION BY RANGE (action_tstamp_tx);

ALTER SEQUENCE audit.logged_actions_id_seq OWNED BY audit.logged_actions.id;

CREATE TABLE audit.logged_actions_default PARTITION OF audit.logged_actions DEFAULT;

CREATE INDEX logged_actions_tx_idx ON audit.logged_actions (transaction_id);
CREATE INDEX logged_actions_table_idx ON audit.logged_actions (table_name, action_tstamp_tx);

-- The seal chain: seal n covers every audit row whose transaction_id lies in
-- [xid_lo, xid_hi) and whose id lies in (id_lo, id_hi]. Consecutive seals of one run
-- split one xid range by id; the xid ranges of runs are contiguous from 0. hash =
-- sha256(prev_hash || digest of each covered row in id order); row_digests holds
-- (id as 8 bytes big-endian || 32-byte row digest) per row so verify can name the row.
CREATE TABLE audit.seals (
    seal_id      bigint      PRIMARY KEY,
    xid_lo       bigint      NOT NULL,
    xid_hi       bigint      NOT NULL,
    id_lo        bigint      NOT NULL,
    id_hi        bigint      NOT NULL,
    first_row_id bigint,
    last_row_id  bigint,
    row_count    bigint      NOT NULL,
    prev_hash    text        NOT NULL,
    hash         text        NOT NULL,
    row_digests  bytea       NOT NULL,
    sealed_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    sealed_by    text        NOT NULL DEFAULT session_user,
    CHECK (xid_lo < xid_hi AND id_lo < id_hi AND row_count >= 0)
);

-- Audit rows and seals are append-only: even their owner must ask explicitly
-- (SET opsctl.audit_rewrite = 'on', e.g. to move rows between partitions) to change them.
CREATE FUNCTION audit.refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_catalog.current_setting('opsctl.audit_rewrite', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION '% on %.% refused: the audit log is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'audit rows are never changed; partition moves set opsctl.audit_rewrite = on as the audit owner';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER logged_actions_append_only BEFORE UPDATE OR DELETE ON audit.logged_actions
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER logged_actions_no_truncate BEFORE TRUNCATE ON audit.logged_actions
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER logged_actions_default_no_truncate BEFORE TRUNCATE ON audit.logged_actions_default
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER seals_append_only BEFORE UPDATE OR DELETE ON audit.seals
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON audit.seals
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- The row trigger: TG_ARGV[0] is the logical table name, so rows written through a
-- partition of trades are still recorded as trades.
CREATE FUNCTION audit.log_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO audit.logged_actions (
        action_tstamp_tx, action_tstamp_stm, schema_name, table_name, relname, action,
        transaction_id, session_user_name, application_name, client_addr, client_port,
        app_actor, row_old, row_new)
    VALUES (
        pg_catalog.transaction_timestamp(), pg_catalog.statement_timestamp(),
        TG_TABLE_SCHEMA, COALESCE(TG_ARGV[0], TG_TABLE_NAME), TG_TABLE_NAME,
        pg_catalog.left(TG_OP, 1),
        pg_catalog.txid_current(), session_user::text,
        pg_catalog.current_setting('application_name', true),
        pg_catalog.inet_client_addr(), pg_catalog.inet_client_port(),
        NULLIF(pg_catalog.current_setting('app.actor', true), ''),
        CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN pg_catalog.to_jsonb(OLD) END,
        CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN pg_catalog.to_jsonb(NEW) END);
    RETURN NULL;
END
$$;

-- TRUNCATE removes rows without row triggers: one statement-level entry records it.
CREATE FUNCTION audit.log_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO audit.logged_actions (
        action_tstamp_tx, action_tstamp_stm, schema_name, table_name, relname, action,
        transaction_id, session_user_name, application_name, client_addr, client_port,
        app_actor, row_old, row_new)
    VALUES (
        pg_catalog.transaction_timestamp(), pg_catalog.statement_timestamp(),
        TG_TABLE_SCHEMA, COALESCE(TG_ARGV[0], TG_TABLE_NAME), TG_TABLE_NAME, 'T',
        pg_catalog.txid_current(), session_user::text,
        pg_catalog.current_setting('application_name', true),
        pg_catalog.inet_client_addr(), pg_catalog.inet_client_port(),
        NULLIF(pg_catalog.current_setting('app.actor', true), ''),
        NULL, NULL);
    RETURN NULL;
END
$$;

-- Chain status for monitoring roles that may not read the audit rows themselves.
CREATE FUNCTION audit.chain_summary(
    OUT seals bigint, OUT sealed_rows bigint, OUT last_sealed_at timestamptz,
    OUT last_hash text, OUT unsealed_rows bigint, OUT oldest_unsealed timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH s AS (
        SELECT count(*) AS n, COALESCE(sum(row_count), 0)::bigint AS r,
               max(sealed_at) AS at, COALESCE(max(xid_hi), 0) AS hi
        FROM audit.seals
    ), u AS (
        SELECT count(*) AS n, min(l.action_tstamp_tx) AS oldest
        FROM audit.logged_actions l, s WHERE l.transaction_id >= s.hi
    )
    SELECT s.n, s.r, s.at,
           (SELECT hash FROM audit.seals ORDER BY seal_id DESC LIMIT 1),
           u.n, u.oldest
    FROM s, u
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'trades', 'positions', 'account_totals'] LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON %I '
            'FOR EACH ROW EXECUTE FUNCTION audit.log_row(%L)', t, t);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER audit_truncate AFTER TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION audit.log_truncate(%L)', t, t);
    END LOOP;
END
$$;

ALTER TABLE audit.logged_actions OWNER TO opsctl_audit_owner;
ALTER TABLE audit.logged_actions_default OWNER TO opsctl_audit_owner;
ALTER SEQUENCE audit.logged_actions_id_seq OWNER TO opsctl_audit_owner;
ALTER TABLE audit.seals OWNER TO opsctl_audit_owner;
ALTER FUNCTION audit.refuse_change() OWNER TO opsctl_audit_owner;
ALTER FUNCTION audit.log_row() OWNER TO opsctl_audit_owner;
ALTER FUNCTION audit.log_truncate() OWNER TO opsctl_audit_owner;
ALTER FUNCTION audit.chain_summary() OWNER TO opsctl_audit_owner;
REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit FROM PUBLIC;

-- Monitoring sees the chain status, not the audited rows; maintenance reads everything,
-- seals and records its operations.
GRANT USAGE ON SCHEMA audit TO opsctl_monitor, opsctl_maintenance;
GRANT SELECT (seal_id, xid_lo, xid_hi, id_lo, id_hi, first_row_id, last_row_id, row_count,
              prev_hash, hash, sealed_at, sealed_by) ON audit.seals TO opsctl_monitor;
GRANT EXECUTE ON FUNCTION audit.chain_summary() TO opsctl_monitor, opsctl_maintenance;
GRANT SELECT ON audit.logged_actions, audit.logged_actions_default, audit.seals TO opsctl_maintenance;
GRANT INSERT ON audit.seals TO opsctl_maintenance;

-- opsctl's own sensitive operations (migrate, restore, drill, archive, prune, vacuum,
-- reindex, rekey, audit seal): who, where, what (secrets removed), when, how it ended.
CREATE TABLE opsctl.operations (
    id           bigserial   PRIMARY KEY,
    command      text        NOT NULL,  -- e.g. "audit seal"
    command_line text        NOT NULL,  -- argv with secrets replaced by ****
    os_user      text,
    db_role      text        NOT NULL DEFAULT session_user,
    host         text,
    pid          integer,
    started_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at  timestamptz,
    outcome      text        NOT NULL DEFAULT 'running'
                             CHECK (outcome IN ('running', 'success', 'failure')),
    error        text
);
CREATE INDEX operations_started_idx ON opsctl.operations (started_at);

-- Give back the temporary membership taken above.
DO $$
BEGIN
    IF pg_catalog.current_setting('opsctl.audit_owner_granted', true) = 'on' THEN
        EXECUTE pg_catalog.format('REVOKE opsctl_audit_owner FROM %I', current_user);
        PERFORM pg_catalog.set_config('opsctl.audit_owner_granted', '', false);
    END IF;
END
$$;
