-- Extensions and the application role the CRM schema relies on.
-- Source: docs/crm-schema.md, "Technology Stack" (pgvector, uuid-ossp, pg_trgm;
-- postgis is "future" and not installed). Deviations: docs/schema-changes.md.

-- uuid_generate_v4(): from uuid-ossp when the server ships it; otherwise
-- (e.g. embedded PostgreSQL builds without uuid-ossp) a drop-in SQL function
-- over the core gen_random_uuid(), so column defaults read the same either way.
DO $$
BEGIN
    IF to_regprocedure('uuid_generate_v4()') IS NOT NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'uuid-ossp') THEN
        CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
    ELSE
        CREATE OR REPLACE FUNCTION uuid_generate_v4() RETURNS uuid
            LANGUAGE sql VOLATILE AS 'SELECT gen_random_uuid()';
    END IF;
END
$$;

CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- haste_app: the role tenant code runs as (SET LOCAL ROLE haste_app) so that
-- row-level security applies. Roles are cluster-wide: another database of the
-- same cluster (or a concurrent migration) may have created it already.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'haste_app') THEN
        BEGIN
            CREATE ROLE haste_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently
        END;
    END IF;
    -- A pre-existing role must not be able to bypass the policies.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'haste_app'
               AND (rolsuper OR rolbypassrls OR rolcanlogin)) THEN
        ALTER ROLE haste_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END
$$;

-- GRANT haste_app TO CURRENT_USER, so the owner connection may
-- SET LOCAL ROLE haste_app. Skipped when already a member (pg_has_role is not
-- used: it is always true for a superuser).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_auth_members m
        JOIN pg_roles r ON r.oid = m.roleid
        JOIN pg_roles u ON u.oid = m.member
        WHERE r.rolname = 'haste_app' AND u.rolname = current_user
    ) THEN
        BEGIN
            EXECUTE format('GRANT haste_app TO %I', current_user);
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- granted concurrently
        END;
    END IF;
END
$$;
