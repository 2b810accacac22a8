-- The roles of opsctl (cluster-wide, so created idempotently: a second database on the
-- same server migrates cleanly):
--
--   opsctl_audit_owner  owns the audit schema; nobody logs in as it.
--   opsctl_app          the application: sees and writes only the rows of its user
--                       (app.user_id) in trades, positions and account_totals (V42).
--   opsctl_monitor      read-only monitoring: pg_monitor plus opsctl's summaries.
--   opsctl_maintenance  opsctl's maintenance work: bypasses RLS so backups and archives
--                       are complete (BYPASSRLS: creating it needs a superuser).
--
-- All are NOLOGIN group roles: grant them to login roles (see the README). Creating a
-- role needs CREATEROLE, BYPASSRLS a superuser: a missing privilege is named with the
-- statement that needs it and a hint, instead of a bare "permission denied".

CREATE SCHEMA IF NOT EXISTS opsctl;

DO $$
DECLARE
    r record;
    me record;
BEGIN
    SELECT rolsuper, rolcreaterole INTO me FROM pg_catalog.pg_roles WHERE rolname = current_user;
    FOR r IN SELECT * FROM (VALUES
            ('opsctl_audit_owner', 'NOLOGIN', false),
            ('opsctl_app', 'NOLOGIN', false),
            ('opsctl_monitor', 'NOLOGIN', false),
            ('opsctl_maintenance', 'NOLOGIN BYPASSRLS', true)) AS v(name, opts, needs_super)
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r.name);
        IF r.needs_super AND NOT me.rolsuper THEN
            RAISE EXCEPTION 'CREATE ROLE % % needs a superuser (BYPASSRLS), and role % is not one', r.name, r.opts, current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = pg_catalog.format('have a superuser run: CREATE ROLE %s %s; then run `opsctl migrate up` again', r.name, r.opts);
        ELSIF NOT (me.rolsuper OR me.rolcreaterole) THEN
            RAISE EXCEPTION 'CREATE ROLE % % needs the CREATEROLE privilege, which role % lacks', r.name, r.opts, current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = pg_catalog.format('run `opsctl migrate up` as a role with CREATEROLE, or have one run: CREATE ROLE %s %s; then run migrate up again', r.name, r.opts);
        END IF;
        BEGIN
            EXECUTE pg_catalog.format('CREATE ROLE %I %s', r.name, r.opts);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently by a migration of another database
        END;
    END LOOP;

    -- Cluster-wide memberships; granting them needs admin rights on the granted role.
    BEGIN
        IF NOT pg_catalog.pg_has_role('opsctl_monitor', 'pg_monitor', 'MEMBER') THEN
            GRANT pg_monitor TO opsctl_monitor;
        END IF;
        IF NOT pg_catalog.pg_has_role('opsctl_maintenance', 'pg_read_all_data', 'MEMBER') THEN
            GRANT pg_read_all_data TO opsctl_maintenance;
        END IF;
        IF NOT pg_catalog.pg_has_role('opsctl_maintenance', 'pg_monitor', 'MEMBER') THEN
            GRANT pg_monitor TO opsctl_maintenance;
        END IF;
    EXCEPTION
        WHEN unique_violation THEN NULL; -- granted concurrently
        WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'GRANT pg_monitor / pg_read_all_data to opsctl_monitor and opsctl_maintenance needs a superuser or admin option on those roles, which role % lacks', current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'have a superuser run: GRANT pg_monitor TO opsctl_monitor; GRANT pg_read_all_data, pg_monitor TO opsctl_maintenance; then run `opsctl migrate up` again';
    END;
END
$$;

