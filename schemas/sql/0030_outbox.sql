-- Event capture: the outbox automation_events, the row triggers that fill it in the same
-- transaction as the CRM change, and the listener's wake-up flag.
-- See docs/schema-changes.md ("Event capture") and engine/events.py (the event vocabulary).
--
-- State of one event row: unprocessed (processed_at NULL) -> claimed (claimed_by/claimed_at
-- set by a listener, attempts/error on failure) -> processed (processed_at set). The
-- listener owns every transition after the INSERT; the triggers only insert.
--
-- What the writer pays (docs/schema-changes.md has the figures and how they were taken).
-- In-server CPU per single-row UPDATE of contacts.score (spec table, 11 indexes; baseline
-- ~52 us), min of 9 runs of 4,000 one-row transactions, embedded PG 18:
--   outbox row with ids only                                        +22 us
--   the same + CHECK lists on the outbox (re-read per INSERT)        +60 us  rejected
--   generated per-column IS DISTINCT FROM + CASE over 44 columns     +57 us  rejected
--   hstore diff + to_jsonb(OLD)/to_jsonb(NEW) minus unchanged keys   +58 us  rejected
--   hstore diff + changed values cast back to their type (chosen)    +52 us
--   wake-up check: sequence read in the row trigger +1..5 us; statement trigger
--   reading a one-row table +10 us (rejected)
--   SET search_path on the SECURITY DEFINER function: ~+10 us through pgbench (rejected:
--   the bodies are schema-qualified instead)
-- Most of a plpgsql trigger's cost is per-transaction set-up of its expressions, not their
-- evaluation, so the body is kept to a few small statements. hstore(NEW) - hstore(OLD) is a
-- C-level diff of the text forms; the few changed values are then cast back to their
-- column type so the jsonb carries numbers, booleans, objects and ISO timestamps exactly as
-- to_jsonb() would. Columns that the engine writes in bulk (embedding: 1536 floats) or that
-- say nothing (updated_at) are blanked before the diff: never converted, compared or copied.
--
-- Rejected as well: per-row pg_notify (every notifying commit takes a database-wide lock:
-- 12-44 % of baseline in bench_capture.py); an identity with CACHE > 1 (one record's
-- events would no longer be numbered in its commit order); an FK from the outbox to
-- workspaces (each event would KEY SHARE-lock the workspace row, a hot row shared by all
-- writers); CHECK constraints on the outbox (above: tests keep the vocabulary in step).
--
-- Not captured: TRUNCATE (no row triggers fire); updates of a record that stays
-- soft-deleted, and the purge of an already soft-deleted record (its deletion was
-- announced when deleted_at was set). Undeleting (deleted_at back to NULL) is <entity>_updated.

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
    -- It runs under the caller's search_path: schema-qualify any function or operator.
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
-- Every name is schema-qualified: the generated trigger runs under the caller's search_path
-- (see haste_capture_install).
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
        SELECT format('%I.%I', n.nspname, t.typname) AS typ,
               t.oid = 'jsonb'::regtype AS is_jsonb,
               array_agg(a.attname::text ORDER BY a.attnum) AS cols
          FROM pg_attribute a
          JOIN pg_type t ON t.oid = a.atttypid
          JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname <> ALL (p_ignored)
           AND a.atttypid NOT IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype,
                                  'name'::regtype, 'uuid'::regtype, 'inet'::regtype,
                                  'cidr'::regtype)
         GROUP BY n.nspname, t.typname, t.oid
         ORDER BY min(a.attnum)
    LOOP
        branches := branches || format(
            E'\n                WHEN col OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.text[]) THEN %s',
            r.cols,
            CASE WHEN r.is_jsonb THEN format('(%s)::pg_catalog.jsonb', p_value)
                 ELSE format('pg_catalog.to_jsonb((%s)::%s)', p_value, r.typ) END);
    END LOOP;
    IF branches = '' THEN
        RETURN format('pg_catalog.to_jsonb(%s)', p_value);
    END IF;
    RETURN format('CASE%s
                ELSE pg_catalog.to_jsonb(%s) END', branches, p_value);
END
$$;

-- (Re)creates haste_capture_<table>() and the trigger haste_capture on the table.
--
-- The generated function is SECURITY DEFINER (tenant code, haste_app, may not write the
-- outbox) but has no SET search_path: measured through pgbench, a SET clause on the trigger
-- function cost the writer ~10 us of CPU per UPDATE (the setting is switched and restored
-- on every call). Instead every table, type, function and operator in the body is
-- schema-qualified, so nothing a caller puts on its search_path (or in pg_temp) can be
-- picked up with the owner's rights (tests/test_capture.py checks the pg_temp case).
CREATE OR REPLACE FUNCTION haste_capture_install(p_table text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $gen$
DECLARE
    cfg public.automation_capture_tables;
    rel regclass;
    hs text;  -- the schema of the hstore extension, quoted
    fn text := 'haste_capture_' || p_table;
    blank_new text := '';
    blank_old text := '';
    soft_delete boolean;
    col text;
    branches text[] := '{}';
BEGIN
    SELECT * INTO STRICT cfg FROM public.automation_capture_tables WHERE table_name = p_table;
    rel := format('public.%I', p_table)::regclass;
    SELECT quote_ident(extnamespace::regnamespace::text) INTO STRICT hs
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
        branches := branches || format($branch$TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
        %1$s
        %2$s
        %3$s
        hn := %8$s.hstore(NEW);
        ho := %8$s.hstore(OLD);
        d := hn OPERATOR(%8$s.-) ho;
        IF d OPERATOR(%8$s.=) ''::%8$s.hstore THEN
            RETURN NULL;  -- nothing but ignored columns changed
        END IF;
        changed := %8$s.akeys(d);
        FOREACH col IN ARRAY changed LOOP
            old_v := old_v OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(col, %4$s);
            new_v := new_v OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(col, %5$s);
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
            public.haste_capture_typed_value(rel, cfg.ignored_columns,
                                             format('ho OPERATOR(%s.->) col', hs)),
            public.haste_capture_typed_value(rel, cfg.ignored_columns,
                                             format('d OPERATOR(%s.->) col', hs)),
            -- %6: deleted_at set from NULL is the record's deletion
            format('op := %L; ev := %L;', 'update', cfg.entity_type || '_updated')
            || CASE WHEN soft_delete THEN format(
                E'\n        IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN'
                ' op := %L; ev := %L; END IF;',
                'delete', cfg.entity_type || '_deleted')
            ELSE '' END,
            cfg.entity_type,
            hs);
    END IF;
    IF 'insert' = ANY (cfg.operations) THEN
        branches := branches || format($branch$TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        %1$s
        hn := %4$s.hstore(NEW);
        d := hn OPERATOR(%4$s.-) %4$s.hstore(OLD);  -- OLD is NULL: d = the non-NULL columns
        INSERT INTO public.automation_events
            (workspace_id, entity_type, entity_id, operation, event_type,
             new_values, changed_fields)
        VALUES (NEW.workspace_id, %2$L, NEW.id, 'insert', %3$s,
                pg_catalog.to_jsonb(NEW) OPERATOR(pg_catalog.-) %4$s.akeys(hn OPERATOR(%4$s.-) d),
                %4$s.akeys(d));$branch$,
            blank_new,
            cfg.entity_type,
            COALESCE(cfg.created_event, quote_literal(cfg.entity_type || '_created')),
            hs);
    END IF;
    IF 'delete' = ANY (cfg.operations) THEN
        branches := branches || format($branch$TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        %1$s
        %2$s
        ho := %5$s.hstore(OLD);
        d := ho OPERATOR(%5$s.-) %5$s.hstore(NEW);  -- NEW is NULL: d = the non-NULL columns
        INSERT INTO public.automation_events
            (workspace_id, entity_type, entity_id, operation, event_type,
             old_values, changed_fields)
        VALUES (OLD.workspace_id, %3$L, OLD.id, 'delete', %4$L,
                pg_catalog.to_jsonb(OLD) OPERATOR(pg_catalog.-) %5$s.akeys(ho OPERATOR(%5$s.-) d),
                %5$s.akeys(d));$branch$,
            -- %1: purging an already soft-deleted record announces nothing new
            CASE WHEN soft_delete THEN
                'IF OLD.deleted_at IS NOT NULL THEN RETURN NULL; END IF;'
            ELSE '' END,
            blank_old,
            cfg.entity_type,
            cfg.entity_type || '_deleted',
            hs);
    END IF;

    EXECUTE format(
        'CREATE OR REPLACE FUNCTION public.%I() RETURNS trigger LANGUAGE plpgsql'
        ' SECURITY DEFINER AS %L',
        fn,
        format($body$
-- Generated by haste_capture_install(%1$L) from automation_capture_tables; do not edit.
-- Runs under the caller's search_path: every name below is schema-qualified.
DECLARE
    hn %3$s.hstore;
    ho %3$s.hstore;
    d %3$s.hstore;
    changed pg_catalog.text[];
    col pg_catalog.text;
    old_v pg_catalog.jsonb := '{}';
    new_v pg_catalog.jsonb := '{}';
    op pg_catalog.text;
    ev pg_catalog.text;
BEGIN
    IF %2$s
    END IF;
    IF COALESCE(pg_catalog.pg_sequence_last_value(
                    'public.automation_listener_idle'::pg_catalog.regclass), 1)
       OPERATOR(pg_catalog.=) 1 THEN
        PERFORM pg_catalog.pg_notify('haste_events', '');
    END IF;
    RETURN NULL;
END
$body$, p_table, array_to_string(branches, E'\n    ELSIF '), hs));
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
-- workspace is being deleted) there is nobody left to tell. Like the generated functions:
-- SECURITY DEFINER without SET search_path, every name schema-qualified.
CREATE OR REPLACE FUNCTION haste_capture_contact_tags()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
AS $$
DECLARE
    ws pg_catalog.uuid;
    tag_name pg_catalog.text;
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE'
       AND NEW.contact_id OPERATOR(pg_catalog.=) OLD.contact_id
       AND NEW.tag_id OPERATOR(pg_catalog.=) OLD.tag_id THEN
        RETURN NULL;  -- only created_at changed
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN
        SELECT t.workspace_id, t.name INTO ws, tag_name
          FROM public.tags t WHERE t.id OPERATOR(pg_catalog.=) OLD.tag_id;
        IF ws IS NULL THEN
            SELECT c.workspace_id INTO ws
              FROM public.contacts c WHERE c.id OPERATOR(pg_catalog.=) OLD.contact_id;
        END IF;
        IF ws IS NOT NULL THEN
            INSERT INTO public.automation_events
                (workspace_id, entity_type, entity_id, operation, event_type,
                 old_values, changed_fields)
            VALUES (ws, 'contact', OLD.contact_id, 'delete', 'contact_untagged',
                    pg_catalog.jsonb_build_object('tag_id', OLD.tag_id, 'tag_name', tag_name),
                    '{tags}');
        END IF;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN
        ws := NULL;
        SELECT t.workspace_id, t.name INTO ws, tag_name
          FROM public.tags t WHERE t.id OPERATOR(pg_catalog.=) NEW.tag_id;
        IF ws IS NOT NULL THEN
            INSERT INTO public.automation_events
                (workspace_id, entity_type, entity_id, operation, event_type,
                 new_values, changed_fields)
            VALUES (ws, 'contact', NEW.contact_id, 'insert', 'contact_tagged',
                    pg_catalog.jsonb_build_object('tag_id', NEW.tag_id, 'tag_name', tag_name),
                    '{tags}');
        END IF;
    END IF;
    IF COALESCE(pg_catalog.pg_sequence_last_value(
                    'public.automation_listener_idle'::pg_catalog.regclass), 1)
       OPERATOR(pg_catalog.=) 1 THEN
        PERFORM pg_catalog.pg_notify('haste_events', '');
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
AS $$
DECLARE
    ws pg_catalog.uuid;
    v pg_catalog.jsonb;
BEGIN
    SELECT e.workspace_id INTO ws FROM public.emails e WHERE e.id OPERATOR(pg_catalog.=) NEW.email_id;
    IF ws IS NULL THEN
        RETURN NULL;  -- unreachable while the foreign key holds
    END IF;
    -- No nested objects in a tracking row, so stripping NULLs only drops unset columns.
    v := pg_catalog.jsonb_strip_nulls(pg_catalog.to_jsonb(NEW))
         OPERATOR(pg_catalog.-) '{id,email_id}'::pg_catalog.text[]
         OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('tracking_event_id', NEW.id);
    INSERT INTO public.automation_events
        (workspace_id, entity_type, entity_id, operation, event_type,
         new_values, changed_fields)
    VALUES (ws, 'email', NEW.email_id, 'insert',
            CASE WHEN NEW.event_type OPERATOR(pg_catalog.=) 'open' THEN 'email_opened'
                 WHEN NEW.event_type OPERATOR(pg_catalog.=) 'click' THEN 'email_clicked'
                 WHEN NEW.event_type OPERATOR(pg_catalog.=) 'bounce' THEN 'email_bounced'
                 WHEN NEW.event_type OPERATOR(pg_catalog.=) 'complaint' THEN 'email_complained'
                 WHEN NEW.event_type OPERATOR(pg_catalog.=) 'unsubscribe' THEN 'email_unsubscribed'
            END,
            v, ARRAY(SELECT pg_catalog.jsonb_object_keys(v)));
    IF COALESCE(pg_catalog.pg_sequence_last_value(
                    'public.automation_listener_idle'::pg_catalog.regclass), 1)
       OPERATOR(pg_catalog.=) 1 THEN
        PERFORM pg_catalog.pg_notify('haste_events', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS haste_capture ON email_tracking_events;
CREATE TRIGGER haste_capture AFTER INSERT ON email_tracking_events
    FOR EACH ROW EXECUTE FUNCTION haste_capture_email_tracking_events();

REVOKE ALL ON FUNCTION haste_capture_contact_tags() FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_email_tracking_events() FROM PUBLIC, haste_app;
