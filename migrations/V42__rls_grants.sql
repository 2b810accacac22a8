-- Row-level security for the application role (roles: V40).
--
-- RLS is ENABLEd, not FORCEd, and a permissive policy lets every other role through, so
-- the table owner (which applications of the original design connect as) and existing
-- roles keep working exactly as before; only members of opsctl_app are bound by the
-- restrictive per-user policy (app.user_id; unset matches nothing).

CREATE SCHEMA IF NOT EXISTS opsctl;

-- The application role.
GRANT USAGE ON SCHEMA public TO opsctl_app;
GRANT SELECT ON users TO opsctl_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON trades, positions, account_totals TO opsctl_app;
GRANT USAGE ON SEQUENCE positions_id_seq, account_totals_id_seq TO opsctl_app;

-- Row-level security: everyone else keeps seeing every row (permissive policy for
-- PUBLIC); members of opsctl_app additionally must match app.user_id (restrictive).
-- An unset app.user_id matches nothing.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['trades', 'positions', 'account_totals'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format(
            'CREATE POLICY opsctl_all_rows ON %I AS PERMISSIVE FOR ALL TO PUBLIC '
            'USING (true) WITH CHECK (true)', t);
        EXECUTE pg_catalog.format(
            'CREATE POLICY opsctl_app_own_rows ON %I AS RESTRICTIVE FOR ALL TO opsctl_app '
            'USING (user_id = NULLIF(pg_catalog.current_setting(''app.user_id'', true), '''')::integer) '
            'WITH CHECK (user_id = NULLIF(pg_catalog.current_setting(''app.user_id'', true), '''')::integer)', t);
    END LOOP;
END
$$;

-- The monitoring role: opsctl's summaries (the audit chain status is granted in V41).
GRANT USAGE ON SCHEMA opsctl TO opsctl_monitor;
GRANT SELECT ON ALL TABLES IN SCHEMA opsctl TO opsctl_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA opsctl GRANT SELECT ON TABLES TO opsctl_monitor;

-- The maintenance role: reads everything (pg_read_all_data, BYPASSRLS) and records its
-- operations in opsctl's tables.
GRANT USAGE ON SCHEMA opsctl TO opsctl_maintenance;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA opsctl TO opsctl_maintenance;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA opsctl TO opsctl_maintenance;
ALTER DEFAULT PRIVILEGES IN SCHEMA opsctl GRANT SELECT, INSERT, UPDATE ON TABLES TO opsctl_maintenance;
ALTER DEFAULT PRIVILEGES IN SCHEMA opsctl GRANT USAGE ON SEQUENCES TO opsctl_maintenance;
