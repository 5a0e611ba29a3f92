-- Event capture: the outbox automation_events, the row triggers that fill it in the same
-- transaction as the CRM change, and the listener's wake-up flag.
-- See docs/schema-changes.md ("Event capture") and engine/events.py (the event vocabulary).
--
-- State of one event row: unprocessed (processed_at NULL) -> claimed (claimed_by/claimed_at
-- set by a listener, attempts/error on failure) -> processed (processed_at set). The
-- listener owns every transition after the INSERT; the triggers only insert.
--
-- What the writer pays (bench/bench_capture.py; 2 cores, embedded PG 18, spec contacts with
-- its 11 indexes, single-row UPDATE of score; figures in bench/README.md): the cost of a
-- trigger is what it encodes per row, and most of that is per-transaction set-up of
-- expressions, not their evaluation. Measured in-server per UPDATE on a 48 us baseline:
--   outbox row with ids only                              +19 us
--   generated per-column IS DISTINCT FROM + CASE (44 cols) +57 us
--   hstore diff + to_jsonb(OLD)/to_jsonb(NEW) minus keys    +58 us
--   hstore diff + per-changed-column typed values (chosen)  +47 us
--   + wake-up check: sequence read in the row trigger       +5 us
--                    statement trigger reading a table     +10 us
-- hstore(NEW) - hstore(OLD) is a C-level diff of the text forms; the few changed values are
-- then cast back to their column type so the jsonb carries numbers, booleans, objects and
-- ISO timestamps exactly as to_jsonb() would. Columns that the engine itself writes in bulk
-- (embedding: 1536 floats) or that say nothing (updated_at) are blanked before the diff,
-- so they are never converted, never compared and never copied.
--
-- Rejected: per-row pg_notify (serialises every writer's commit on a database-wide lock:
-- 17-34 % of baseline); a plain identity with CACHE > 1 (ids of one record would no longer
-- follow its commit order); an FK from the outbox to workspaces (every event would take a
-- KEY SHARE lock on the workspace row: a hot row shared by all writers).

CREATE EXTENSION IF NOT EXISTS hstore;

-- ---------------------------------------------------------------------------
-- The outbox
-- ---------------------------------------------------------------------------
-- id is a plain bigint identity (no uuid + seq pair): 8 bytes in two indexes instead of 24,
-- and its order is the processing order. The default sequence cache (1) matters: a writer
-- takes its id after it holds the record's row lock, so one record's events are numbered in
-- commit order. Ids across records are allocated, not committed, in order: the listener
-- must not treat "max id seen" as a watermark.
CREATE TABLE IF NOT EXISTS automation_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id UUID NOT NULL,

    -- The record the event is about; NULL for webhook/manual/time_based events without one.
    entity_type VARCHAR(50),
    entity_id UUID,
    operation VARCHAR(10),
    event_type VARCHAR(50) NOT NULL,

    -- Values of the changed columns only (all non-NULL columns on insert/delete), typed as
    -- to_jsonb() types them; changed_fields lists the same column names.
    old_values JSONB,
    new_values JSONB,
    changed_fields TEXT[],

    -- Who and what caused it: the transaction's app.* settings (engine/db.py sets them).
    actor_user_id UUID DEFAULT NULLIF(current_setting('app.user_id', true), '')::uuid,
    causation_execution_id UUID
        DEFAULT NULLIF(current_setting('app.execution_id', true), '')::uuid,
    depth INTEGER NOT NULL
        DEFAULT COALESCE(NULLIF(current_setting('app.causation_depth', true), '')::integer + 1, 0),

    -- Events aimed at one automation (webhook, manual, time_based) and their payload.
    automation_id UUID,
    payload JSONB,

    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),

    -- Processing state, owned by the listener.
    processed_at TIMESTAMPTZ,
    claimed_by TEXT,
    claimed_at TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);

-- The listener's claim scans only this: it stays small however long the table grows.
CREATE INDEX IF NOT EXISTS idx_automation_events_unprocessed
    ON automation_events (id) WHERE processed_at IS NULL;

-- Tenant code may read its workspace's events (history, "why"), never write them: events
-- are written by the SECURITY DEFINER capture functions below and by engine system code.
ALTER TABLE automation_events ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS workspace_isolation ON automation_events;
CREATE POLICY workspace_isolation ON automation_events
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
REVOKE ALL ON automation_events FROM haste_app;
GRANT SELECT ON automation_events TO haste_app;
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM haste_app',
                   pg_get_serial_sequence('automation_events', 'id'));
END
$$;

-- ---------------------------------------------------------------------------
-- The listener's wake-up flag
-- ---------------------------------------------------------------------------
-- NOTIFY takes a database-wide lock at commit, so writers send one only while a listener
-- has said it is idle, waiting for a wake-up. The flag is an UNLOGGED sequence rather than
-- a one-row table: a writer reads it with pg_sequence_last_value(), a plain function call
-- inside the trigger's IF (no executor start-up, measured +5 us vs +10 us for a table
-- read), and setval() is visible to every session at once, without a commit.
-- last_value 1 = idle, 0 = busy. After a crash an unlogged sequence is reset to its
-- START (1 = idle): writers notify until a listener says it is busy, which is the safe side.
CREATE UNLOGGED SEQUENCE IF NOT EXISTS automation_listener_idle
    AS integer MINVALUE 0 MAXVALUE 1 START WITH 1 NO CYCLE;

-- Protocol, for triggers/listener.py: haste_listener_idle(false) on waking up, drain,
-- haste_listener_idle(true), drain once more (an event committed between the last claim and
-- the flag sent no NOTIFY), then wait for a notification or the poll interval. A writer
-- that read "busy" just before the flag flipped and commits after the second drain is
-- found by the next poll: NOTIFY only shortens the wait, polling is what guarantees it.
CREATE OR REPLACE FUNCTION haste_listener_idle(p_idle boolean)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT setval('public.automation_listener_idle'::regclass,
                  CASE WHEN p_idle THEN 1 ELSE 0 END) = 1
$$;

-- For people and `haste status`: the flag as a boolean (NULL last_value = reset = idle).
CREATE OR REPLACE VIEW automation_listener_state AS
SELECT COALESCE(pg_sequence_last_value('public.automation_listener_idle'::regclass), 1) = 1
           AS idle;

REVOKE ALL ON SEQUENCE automation_listener_idle FROM PUBLIC, haste_app;
REVOKE ALL ON automation_listener_state FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_listener_idle(boolean) FROM PUBLIC, haste_app;

-- ---------------------------------------------------------------------------
-- Capture of record tables: generated per table
-- ---------------------------------------------------------------------------
-- One row per captured table. The trigger function is generated from it and from the
-- table's columns by haste_capture_install(); a migration that adds a column to a captured
-- table calls SELECT haste_capture_refresh() so the new column's values are typed (until
-- then they are captured too, as their text form).
CREATE TABLE IF NOT EXISTS automation_capture_tables (
    table_name TEXT PRIMARY KEY,
    entity_type TEXT NOT NULL,
    -- Blanked before the diff: never compared, converted or copied.
    ignored_columns TEXT[] NOT NULL DEFAULT '{updated_at}',
    -- SQL expression over NEW giving the insert event type; NULL: <entity_type>_created.
    created_event TEXT,
    -- Which operations fire: activities are an append-only log, captured on insert only.
    operations TEXT[] NOT NULL DEFAULT '{insert,update,delete}',
    CONSTRAINT valid_capture_operations CHECK (operations <@ '{insert,update,delete}')
);
REVOKE ALL ON automation_capture_tables FROM haste_app;

INSERT INTO automation_capture_tables
    (table_name, entity_type, ignored_columns, created_event, operations)
VALUES
    ('contacts', 'contact', '{embedding,updated_at}', NULL, '{insert,update,delete}'),
    ('companies', 'company', '{embedding,updated_at}', NULL, '{insert,update,delete}'),
    ('deals', 'deal', '{updated_at}', NULL, '{insert,update,delete}'),
    -- body_html: the rendered duplicate of body_text, often tens of kB; not worth copying.
    ('emails', 'email', '{body_html,updated_at}',
     $$CASE WHEN NEW.is_sent THEN 'email_sent' WHEN NEW.is_draft THEN 'email_drafted'
            ELSE 'email_received' END$$,
     '{insert,update,delete}'),
    ('tasks', 'task', '{updated_at}', NULL, '{insert,update,delete}'),
    ('notes', 'note', '{updated_at}', NULL, '{insert,update,delete}'),
    ('activities', 'activity', '{}', NULL, '{insert}')
ON CONFLICT (table_name) DO NOTHING;

-- The expression that turns the text form `p_value` of column `col` back into the jsonb
-- that to_jsonb() gives for the column's type. Types whose to_jsonb() is their text form
-- (text, varchar, uuid, inet, ...) share the ELSE branch; every other type is cast back.
CREATE OR REPLACE FUNCTION haste_capture_typed_value(
    p_table regclass, p_ignored text[], p_value text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    branches text := '';
    r record;
BEGIN
    FOR r IN
        SELECT a.atttypid::regtype::text AS typ,
               array_agg(a.attname::text ORDER BY a.attnum) AS cols
          FROM pg_attribute a
         WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname <> ALL (p_ignored)
           AND a.atttypid NOT IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype,
                                  'name'::regtype, 'uuid'::regtype, 'inet'::regtype,
                                  'cidr'::regtype)
         GROUP BY a.atttypid
         ORDER BY min(a.attnum)
    LOOP
        branches := branches || format(
            E'\n                WHEN col = ANY (%L::text[]) THEN %s',
            r.cols,
            CASE WHEN r.typ = 'jsonb' THEN format('(%s)::jsonb', p_value)
                 ELSE format('to_jsonb((%s)::%s)', p_value, r.typ) END);
    END LOOP;
    IF branches = '' THEN
        RETURN format('to_jsonb(%s)', p_value);
    END IF;
    RETURN format('CASE%s
                ELSE to_jsonb(%s) END', branches, p_value);
END
$$;

-- (Re)creates haste_capture_<table>() and the trigger haste_capture on the table.
CREATE OR REPLACE FUNCTION haste_capture_install(p_table text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $gen$
DECLARE
    cfg public.automation_capture_tables;
    rel regclass;
    hstore_schema text;
    fn text := 'haste_capture_' || p_table;
    blank_new text := '';
    blank_old text := '';
    soft_delete boolean;
    col text;
    branches text[] := '{}';
BEGIN
    SELECT * INTO STRICT cfg FROM public.automation_capture_tables WHERE table_name = p_table;
    rel := format('public.%I', p_table)::regclass;
    SELECT extnamespace::regnamespace::text INTO STRICT hstore_schema
      FROM pg_extension WHERE extname = 'hstore';
    FOREACH col IN ARRAY cfg.ignored_columns LOOP
        IF EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = rel AND attname = col AND NOT attisdropped) THEN
            blank_new := blank_new || format('NEW.%I := NULL; ', col);
            blank_old := blank_old || format('OLD.%I := NULL; ', col);
        END IF;
    END LOOP;
    soft_delete := EXISTS (SELECT 1 FROM pg_attribute
                            WHERE attrelid = rel AND attname = 'deleted_at' AND NOT attisdropped);

    -- One branch per captured operation; the hot one (UPDATE) first.
    IF 'update' = ANY (cfg.operations) THEN
        branches := branches || format($branch$TG_OP = 'UPDATE' THEN
        %1$s
        %2$s
        %3$s
        hn := hstore(NEW);
        ho := hstore(OLD);
        d := hn - ho;
        IF d = ''::hstore THEN
            RETURN NULL;  -- nothing but ignored columns changed
        END IF;
        changed := akeys(d);
        FOREACH col IN ARRAY changed LOOP
            old_v := old_v || jsonb_build_object(col, %4$s);
            new_v := new_v || jsonb_build_object(col, %5$s);
        END LOOP;
        %6$s
        INSERT INTO public.automation_events
            (workspace_id, entity_type, entity_id, operation, event_type,
             old_values, new_values, changed_fields)
        VALUES (NEW.workspace_id, %7$L, NEW.id, op, ev, old_v, new_v, changed);$branch$,
            -- %1: a soft-deleted record that stays deleted has no more events
            CASE WHEN soft_delete THEN
                'IF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NOT NULL THEN RETURN NULL; END IF;'
            ELSE '' END,
            blank_new,
            blank_old,
            public.haste_capture_typed_value(rel, cfg.ignored_columns, 'ho -> col'),
            public.haste_capture_typed_value(rel, cfg.ignored_columns, 'd -> col'),
            -- %6: deleted_at set from NULL is the record's deletion
            format('op := %L; ev := %L;', 'update', cfg.entity_type || '_updated')
            || CASE WHEN soft_delete THEN format(
                E'\n        IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN'
                ' op := %L; ev := %L; END IF;',
                'delete', cfg.entity_type || '_deleted')
            ELSE '' END,
            cfg.entity_type);
    END IF;
    IF 'insert' = ANY (cfg.operations) THEN
        branches := branches || format($branch$TG_OP = 'INSERT' THEN
        %1$s
        hn := hstore(NEW);
        d := hn - hstore(OLD);  -- OLD is NULL: d holds the non-NULL columns
        INSERT INTO public.automation_events
            (workspace_id, entity_type, entity_id, operation, event_type,
             new_values, changed_fields)
        VALUES (NEW.workspace_id, %2$L, NEW.id, 'insert', %3$s,
                to_jsonb(NEW) - akeys(hn - d), akeys(d));$branch$,
            blank_new,
            cfg.entity_type,
            COALESCE(cfg.created_event, quote_literal(cfg.entity_type || '_created')));
    END IF;
    IF 'delete' = ANY (cfg.operations) THEN
        branches := branches || format($branch$TG_OP = 'DELETE' THEN
        %1$s
        %2$s
        ho := hstore(OLD);
        d := ho - hstore(NEW);  -- NEW is NULL: d holds the non-NULL columns
        INSERT INTO public.automation_events
            (workspace_id, entity_type, entity_id, operation, event_type,
             old_values, changed_fields)
        VALUES (OLD.workspace_id, %3$L, OLD.id, 'delete', %4$L,
                to_jsonb(OLD) - akeys(ho - d), akeys(d));$branch$,
            -- %1: purging an already soft-deleted record announces nothing new
            CASE WHEN soft_delete THEN
                'IF OLD.deleted_at IS NOT NULL THEN RETURN NULL; END IF;'
            ELSE '' END,
            blank_old,
            cfg.entity_type,
            cfg.entity_type || '_deleted');
    END IF;

    -- SECURITY DEFINER: tenant code (haste_app) cannot write the outbox itself. The fixed
    -- search_path (pg_temp last) keeps a caller's objects out of the owner's rights.
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION public.%I() RETURNS trigger LANGUAGE plpgsql'
        ' SECURITY DEFINER SET search_path = %s AS %L',
        fn,
        CASE WHEN hstore_schema = 'public' THEN 'pg_catalog, public, pg_temp'
             ELSE format('pg_catalog, %I, public, pg_temp', hstore_schema) END,
        format($body$
-- Generated by haste_capture_install(%1$L) from automation_capture_tables; do not edit.
DECLARE
    hn hstore;
    ho hstore;
    d hstore;
    changed text[];
    col text;
    old_v jsonb := '{}';
    new_v jsonb := '{}';
    op text;
    ev text;
BEGIN
    IF %2$s
    END IF;
    IF COALESCE(pg_sequence_last_value('public.automation_listener_idle'::regclass), 1) = 1 THEN
        PERFORM pg_notify('haste_events', '');
    END IF;
    RETURN NULL;
END
$body$, p_table, array_to_string(branches, E'\n    ELSIF ')));
    EXECUTE format('REVOKE ALL ON FUNCTION public.%I() FROM PUBLIC, haste_app', fn);
    EXECUTE format('DROP TRIGGER IF EXISTS haste_capture ON public.%I', p_table);
    EXECUTE format(
        'CREATE TRIGGER haste_capture AFTER %s ON public.%I'
        ' FOR EACH ROW EXECUTE FUNCTION public.%I()',
        array_to_string(ARRAY(SELECT upper(o) FROM unnest(cfg.operations) o), ' OR '),
        p_table, fn);
END
$gen$;

-- Regenerates every captured table's trigger function (after a column was added).
CREATE OR REPLACE FUNCTION haste_capture_refresh()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT table_name FROM public.automation_capture_tables ORDER BY table_name LOOP
        PERFORM public.haste_capture_install(t);
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION haste_capture_typed_value(regclass, text[], text) FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_install(text) FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_refresh() FROM PUBLIC, haste_app;

SELECT haste_capture_refresh();

-- ---------------------------------------------------------------------------
-- contact_tags: tagging is an event of the contact
-- ---------------------------------------------------------------------------
-- The tag row gives both the workspace and the name (one index probe). When the tag itself
-- is being deleted (cascade) the contact gives the workspace; when both are gone (the
-- workspace is being deleted) there is nobody left to tell.
CREATE OR REPLACE FUNCTION haste_capture_contact_tags()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    ws uuid;
    tag_name text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.contact_id = OLD.contact_id AND NEW.tag_id = OLD.tag_id THEN
        RETURN NULL;  -- only created_at changed
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        SELECT t.workspace_id, t.name INTO ws, tag_name FROM public.tags t WHERE t.id = OLD.tag_id;
        IF ws IS NULL THEN
            SELECT c.workspace_id INTO ws FROM public.contacts c WHERE c.id = OLD.contact_id;
        END IF;
        IF ws IS NOT NULL THEN
            INSERT INTO public.automation_events
                (workspace_id, entity_type, entity_id, operation, event_type,
                 old_values, changed_fields)
            VALUES (ws, 'contact', OLD.contact_id, 'delete', 'contact_untagged',
                    jsonb_build_object('tag_id', OLD.tag_id, 'tag_name', tag_name), '{tags}');
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        ws := NULL;
        SELECT t.workspace_id, t.name INTO ws, tag_name FROM public.tags t WHERE t.id = NEW.tag_id;
        IF ws IS NOT NULL THEN
            INSERT INTO public.automation_events
                (workspace_id, entity_type, entity_id, operation, event_type,
                 new_values, changed_fields)
            VALUES (ws, 'contact', NEW.contact_id, 'insert', 'contact_tagged',
                    jsonb_build_object('tag_id', NEW.tag_id, 'tag_name', tag_name), '{tags}');
        END IF;
    END IF;
    IF COALESCE(pg_sequence_last_value('public.automation_listener_idle'::regclass), 1) = 1 THEN
        PERFORM pg_notify('haste_events', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS haste_capture ON contact_tags;
CREATE TRIGGER haste_capture AFTER INSERT OR UPDATE OR DELETE ON contact_tags
    FOR EACH ROW EXECUTE FUNCTION haste_capture_contact_tags();

-- ---------------------------------------------------------------------------
-- email_tracking_events: an open or a click is an event of the email
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION haste_capture_email_tracking_events()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    ws uuid;
BEGIN
    SELECT e.workspace_id INTO ws FROM public.emails e WHERE e.id = NEW.email_id;
    IF ws IS NULL THEN
        RETURN NULL;  -- unreachable while the foreign key holds
    END IF;
    INSERT INTO public.automation_events
        (workspace_id, entity_type, entity_id, operation, event_type,
         new_values, changed_fields)
    SELECT ws, 'email', NEW.email_id, 'insert',
           CASE NEW.event_type
               WHEN 'open' THEN 'email_opened'
               WHEN 'click' THEN 'email_clicked'
               WHEN 'bounce' THEN 'email_bounced'
               WHEN 'complaint' THEN 'email_complained'
               WHEN 'unsubscribe' THEN 'email_unsubscribed'
           END,
           v, ARRAY(SELECT jsonb_object_keys(v))
      FROM (SELECT jsonb_strip_nulls(to_jsonb(NEW) - 'id' - 'email_id')
                   || jsonb_build_object('tracking_event_id', NEW.id) AS v) s;
    IF COALESCE(pg_sequence_last_value('public.automation_listener_idle'::regclass), 1) = 1 THEN
        PERFORM pg_notify('haste_events', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS haste_capture ON email_tracking_events;
CREATE TRIGGER haste_capture AFTER INSERT ON email_tracking_events
    FOR EACH ROW EXECUTE FUNCTION haste_capture_email_tracking_events();

REVOKE ALL ON FUNCTION haste_capture_contact_tags() FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_email_tracking_events() FROM PUBLIC, haste_app;
