-- A quieter audit log (docs/audit.md, "Moves and no-op updates"):
--
-- 1. Row moves opsctl makes between partitions of one table (`partition ensure` emptying a
--    default partition) and into archive.<table> (`archive`) are recorded as one audit row
--    per moving transaction, action 'M' (MOVE), with the row count and the content
--    checksum of what moved, instead of one DELETE row per moved row. opsctl's move code
--    sets `opsctl.bulk_move` to '<schema>.<table>:<its transaction id>' with SET LOCAL and
--    writes the 'M' row with audit.log_move() in the same transaction, so the seal chain
--    covers it like any other row. The row trigger honours the setting only for INSERT and
--    DELETE, only for that table, only inside that very transaction, and only when the
--    session's login role is a superuser or a member of the role owning the relation (who
--    could switch the trigger off with ALTER TABLE anyway).
-- 2. An UPDATE that changes no value (OLD = NEW) writes no audit row.

-- Replacing functions and altering audit.logged_actions needs membership in the audit
-- owner (for a non-superuser): taken for this migration only, given back at the end.
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND NOT pg_catalog.pg_has_role(current_user, 'opsctl_audit_owner', 'MEMBER') THEN
        EXECUTE pg_catalog.format('GRANT opsctl_audit_owner TO %I', current_user);
        PERFORM pg_catalog.set_config('opsctl.audit_owner_granted', 'on', false);
    END IF;
END
$$;

-- 'M' joins the actions. Months that `partition ensure` made were created LIKE the parent
-- and keep a copy of the CHECK of their own after the parent's is dropped: drop those too,
-- then add the new CHECK to the parent (and so to every partition). The same for
-- archive.logged_actions when the audit log has been archived.
DO $$
DECLARE
    parent regclass;
    r record;
BEGIN
    FOREACH parent IN ARRAY ARRAY[pg_catalog.to_regclass('audit.logged_actions'),
                                  pg_catalog.to_regclass('archive.logged_actions')] LOOP
        CONTINUE WHEN parent IS NULL;
        BEGIN
            EXECUTE pg_catalog.format(
                'ALTER TABLE %s DROP CONSTRAINT IF EXISTS logged_actions_action_check', parent);
            FOR r IN
                SELECT k.conrelid::regclass AS rel
                  FROM pg_catalog.pg_partition_tree(parent) t
                  JOIN pg_catalog.pg_constraint k ON k.conrelid = t.relid
                 WHERE k.conname = 'logged_actions_action_check'
            LOOP
                EXECUTE pg_catalog.format(
                    'ALTER TABLE %s DROP CONSTRAINT logged_actions_action_check', r.rel);
            END LOOP;
            EXECUTE pg_catalog.format(
                'ALTER TABLE %s ADD CONSTRAINT logged_actions_action_check '
                'CHECK (action IN (''I'', ''U'', ''D'', ''T'', ''M''))', parent);
        EXCEPTION WHEN insufficient_privilege THEN
            IF parent = 'audit.logged_actions'::regclass THEN
                RAISE;
            END IF;
            RAISE WARNING 'cannot widen the action CHECK of % (not its owner): MOVE rows cannot be archived into it until its owner runs: ALTER TABLE % DROP CONSTRAINT logged_actions_action_check, ADD CONSTRAINT logged_actions_action_check CHECK (action IN (''I'', ''U'', ''D'', ''T'', ''M''))', parent, parent;
        END;
    END LOOP;
END
$$;

-- The row trigger: no row image for a no-op UPDATE, nor for the rows of an opsctl move
-- (which records itself with audit.log_move in the same transaction).
CREATE OR REPLACE FUNCTION audit.log_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    logical text := COALESCE(TG_ARGV[0], TG_TABLE_NAME);
    bulk text;
    o jsonb;
    n jsonb;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        o := pg_catalog.to_jsonb(OLD);
        n := pg_catalog.to_jsonb(NEW);
        IF o = n THEN
            RETURN NULL; -- nothing changed
        END IF;
    ELSE
        bulk := pg_catalog.current_setting('opsctl.bulk_move', true);
        IF bulk IS NOT NULL AND bulk <> '' THEN
            IF bulk = pg_catalog.format('%s.%s:%s', TG_TABLE_SCHEMA, logical, pg_catalog.txid_current())
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                            WHERE c.oid = TG_RELID
                              AND pg_catalog.pg_has_role(session_user, c.relowner, 'MEMBER')) THEN
                RETURN NULL; -- recorded as one MOVE row by audit.log_move
            END IF;
        END IF;
        IF TG_OP = 'DELETE' THEN
            o := pg_catalog.to_jsonb(OLD);
        ELSE
            n := pg_catalog.to_jsonb(NEW);
        END IF;
    END IF;
    INSERT INTO audit.logged_actions (
        action_tstamp_tx, action_tstamp_stm, schema_name, table_name, relname, action,
        transaction_id, session_user_name, application_name, client_addr, client_port,
        app_actor, row_old, row_new)
    VALUES (
        pg_catalog.transaction_timestamp(), pg_catalog.statement_timestamp(),
        TG_TABLE_SCHEMA, logical, TG_TABLE_NAME,
        pg_catalog.left(TG_OP, 1),
        pg_catalog.txid_current(), session_user::text,
        pg_catalog.current_setting('application_name', true),
        pg_catalog.inet_client_addr(), pg_catalog.inet_client_port(),
        NULLIF(pg_catalog.current_setting('app.actor', true), ''),
        o, n);
    RETURN NULL;
END
$$;

-- One MOVE row: `p_rows` rows of <p_schema>.<p_table> with content checksum `p_checksum`
-- (sum of hashtextextended(row::text, 0) over the moved rows) went from
-- <p_from_schema>.<p_from> to <p_to_schema>.<p_to> in this transaction. Only the owner of
-- the table (a member of its role) or a superuser may record one.
CREATE FUNCTION audit.log_move(p_schema text, p_table text, p_from_schema text, p_from text,
                               p_to_schema text, p_to text, p_rows bigint, p_checksum text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel regclass := pg_catalog.to_regclass(pg_catalog.format('%I.%I', p_schema, p_table));
    new_id bigint;
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'audit.log_move: table %.% does not exist', p_schema, p_table
            USING ERRCODE = 'undefined_table';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                    WHERE c.oid = rel AND pg_catalog.pg_has_role(session_user, c.relowner, 'MEMBER')) THEN
        RAISE EXCEPTION 'audit.log_move: role % may not record moves of %.%: only its owner (or a member of the owning role) moves its rows', session_user, p_schema, p_table
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'row moves are recorded by opsctl partition ensure and opsctl archive, run as the table owner';
    END IF;
    INSERT INTO audit.logged_actions (
        action_tstamp_tx, action_tstamp_stm, schema_name, table_name, relname, action,
        transaction_id, session_user_name, application_name, client_addr, client_port,
        app_actor, row_old, row_new)
    VALUES (
        pg_catalog.transaction_timestamp(), pg_catalog.statement_timestamp(),
        p_schema, p_table, p_from, 'M',
        pg_catalog.txid_current(), session_user::text,
        pg_catalog.current_setting('application_name', true),
        pg_catalog.inet_client_addr(), pg_catalog.inet_client_port(),
        NULLIF(pg_catalog.current_setting('app.actor', true), ''),
        pg_catalog.jsonb_build_object('relation', p_from_schema || '.' || p_from,
                                      'rows', p_rows, 'checksum', p_checksum),
        pg_catalog.jsonb_build_object('relation', p_to_schema || '.' || p_to,
                                      'rows', p_rows, 'checksum', p_checksum))
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

ALTER FUNCTION audit.log_move(text, text, text, text, text, text, bigint, text) OWNER TO opsctl_audit_owner;
-- Whoever owns a table may call it (the function checks that); nothing else in schema
-- audit is reachable without its own grant.
REVOKE ALL ON FUNCTION audit.log_move(text, text, text, text, text, text, bigint, text) FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO PUBLIC;
GRANT EXECUTE ON FUNCTION audit.log_move(text, text, text, text, text, text, bigint, text) TO PUBLIC;

-- Give back the temporary membership taken above.
DO $$
BEGIN
    IF pg_catalog.current_setting('opsctl.audit_owner_granted', true) = 'on' THEN
        EXECUTE pg_catalog.format('REVOKE opsctl_audit_owner FROM %I', current_user);
        PERFORM pg_catalog.set_config('opsctl.audit_owner_granted', '', false);
    END IF;
END
$$;
