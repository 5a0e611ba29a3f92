-- Event capture by logical decoding: an opt-in second mode, `haste capture logical`.
--
-- Why (bench/bench_capture.py, bench/bench_capture_logical.py, docs/schema-changes.md):
-- the row trigger keeps 78 % / 65 % of the CRM's UPDATE throughput at 8 / 32 writers on
-- 2 cores, below issue 5's 80 %, and even a trigger that writes an outbox row of ids only
-- keeps 87-89 %. With wal_level = logical and REPLICA IDENTITY FULL, writers pay only the
-- old row image in WAL (~100 % kept); the listener decodes the WAL (a pgoutput slot read
-- with pg_logical_slot_peek_binary_changes) into exactly the outbox rows the triggers
-- write, in commit order, and the rest of the pipeline (claim, typing, matching) is the
-- same. triggers/decoder.py is the reader; this file is the database side.
--
-- Modes (automation_capture_state.mode):
--   trigger  the default: the row triggers of 0030/0031 write the outbox.
--   logical  generated tables' row triggers are disabled, each has REPLICA IDENTITY FULL,
--            is in the publication haste_capture, and has a statement trigger that puts
--            the writer's app.* settings (actor, causation) into WAL as a logical message
--            (WAL carries no settings). contact_tags and email_tracking_events keep their
--            row triggers (they read tags/emails at write time, and are low-volume), which
--            then put their event into WAL as a message instead of writing the outbox, so
--            every event of a record reaches the outbox in commit order.
-- haste_capture_switch() changes the mode in one transaction that locks every captured
-- table (so each write commits wholly before or wholly after it) and ends with a marker
-- message: the decoder turns changes into events only between a 'logical' marker and a
-- 'trigger' marker, so a switch neither loses nor doubles an event.

CREATE TABLE IF NOT EXISTS automation_capture_state (
    id BOOLEAN PRIMARY KEY DEFAULT true CONSTRAINT one_row CHECK (id),
    mode TEXT NOT NULL DEFAULT 'trigger'
        CONSTRAINT valid_capture_mode CHECK (mode IN ('trigger', 'logical')),
    -- The logical replication slot (pgoutput) the decoder reads; NULL in trigger mode once
    -- the decoder has reached the 'trigger' marker and dropped it.
    slot_name TEXT,
    -- Set by the decoder at the 'logical' marker, cleared at the 'trigger' marker.
    decoding BOOLEAN NOT NULL DEFAULT false,
    -- Commit LSN of the last decoded transaction whose events are in the outbox. Written in
    -- the same transaction as those events: the slot is advanced only afterwards, so a
    -- decoder that dies in between re-reads transactions it skips by this LSN.
    decoded_lsn PG_LSN,
    decoded_at TIMESTAMPTZ,
    -- The last switch marker the decoder applied: after 'trigger' it drops the slot.
    last_marker TEXT,
    -- The decoder's last failure (a lost slot, a bad message): shown by `haste capture`.
    last_error TEXT,
    changed_at TIMESTAMPTZ
);
INSERT INTO automation_capture_state DEFAULT VALUES ON CONFLICT DO NOTHING;
REVOKE ALL ON automation_capture_state FROM haste_app;

-- ---------------------------------------------------------------------------
-- What writers put into WAL in logical mode
-- ---------------------------------------------------------------------------
-- The causation settings, as the outbox's column defaults read them (0030).
CREATE OR REPLACE FUNCTION haste_capture_context_json()
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'actor_user_id', NULLIF(current_setting('app.user_id', true), ''),
        'causation_execution_id', NULLIF(current_setting('app.execution_id', true), ''),
        'depth', COALESCE(NULLIF(current_setting('app.causation_depth', true), '')::integer + 1, 0))
$$;

-- Statement trigger of a generated table in logical mode (see haste_capture_apply_mode).
-- Its WHEN clause lets a statement through only when a causation setting is set or the
-- listener is idle, so a writer without settings under load pays one sequence read (the
-- same check the row triggers make). Then, as needed:
-- * it puts "user_id,execution_id,causation_depth" (empty when unset) into WAL as a
--   transactional logical message; the decoder applies it to the changes that follow in
--   the same transaction (triggers/decoder.py: context_of). One expression, no jsonb and
--   no function with a SET clause: this runs on every statement of a writer that sets
--   app.user_id;
-- * it wakes an idle listener, exactly as the row triggers do (0030, "NOTIFY scheme"): a
--   write committed while the listener sleeps need not wait for its poll.
-- SECURITY DEFINER like every capture function, and every name schema-qualified (it runs
-- under the caller's search_path).
CREATE OR REPLACE FUNCTION haste_capture_context()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
AS $$
BEGIN
    IF pg_catalog.current_setting('app.user_id', true) OPERATOR(pg_catalog.<>) ''
       OR pg_catalog.current_setting('app.execution_id', true) OPERATOR(pg_catalog.<>) ''
       OR pg_catalog.current_setting('app.causation_depth', true) OPERATOR(pg_catalog.<>) '' THEN
        PERFORM pg_catalog.pg_logical_emit_message(true, 'haste_context', pg_catalog.concat(
            pg_catalog.current_setting('app.user_id', true), ',',
            pg_catalog.current_setting('app.execution_id', true), ',',
            pg_catalog.current_setting('app.causation_depth', true)));
    END IF;
    IF COALESCE(pg_catalog.pg_sequence_last_value(
                    'public.automation_listener_idle'::pg_catalog.regclass), 1)
       OPERATOR(pg_catalog.=) 1 THEN
        PERFORM pg_catalog.pg_notify('haste_events', '');
    END IF;
    RETURN NULL;
END
$$;

-- haste_capture_emit(jsonb): an event built by a custom capture trigger (contact_tags,
-- email_tracking_events), written to the outbox in trigger mode and put into WAL (with its
-- causation) in logical mode. haste_capture_apply_mode() creates it with the body of the
-- current mode (below; this file ends with haste_capture_refresh(), which applies it).

-- 0030's contact_tags trigger, its events now going through haste_capture_emit().
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
            PERFORM public.haste_capture_emit(pg_catalog.jsonb_build_object(
                'workspace_id', ws, 'entity_type', 'contact', 'entity_id', OLD.contact_id,
                'operation', 'delete', 'event_type', 'contact_untagged',
                'old_values', pg_catalog.jsonb_build_object('tag_id', OLD.tag_id,
                                                            'tag_name', tag_name),
                'changed_fields', '{tags}'::pg_catalog.text[]));
        END IF;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN
        ws := NULL;
        SELECT t.workspace_id, t.name INTO ws, tag_name
          FROM public.tags t WHERE t.id OPERATOR(pg_catalog.=) NEW.tag_id;
        IF ws IS NOT NULL THEN
            PERFORM public.haste_capture_emit(pg_catalog.jsonb_build_object(
                'workspace_id', ws, 'entity_type', 'contact', 'entity_id', NEW.contact_id,
                'operation', 'insert', 'event_type', 'contact_tagged',
                'new_values', pg_catalog.jsonb_build_object('tag_id', NEW.tag_id,
                                                            'tag_name', tag_name),
                'changed_fields', '{tags}'::pg_catalog.text[]));
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- 0030's email_tracking_events trigger, through haste_capture_emit().
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
    PERFORM public.haste_capture_emit(pg_catalog.jsonb_build_object(
        'workspace_id', ws, 'entity_type', 'email', 'entity_id', NEW.email_id,
        'operation', 'insert',
        'event_type',
            CASE WHEN NEW.event_type OPERATOR(pg_catalog.=) 'open' THEN 'email_opened'
                 WHEN NEW.event_type OPERATOR(pg_catalog.=) 'click' THEN 'email_clicked'
                 WHEN NEW.event_type OPERATOR(pg_catalog.=) 'bounce' THEN 'email_bounced'
                 WHEN NEW.event_type OPERATOR(pg_catalog.=) 'complaint' THEN 'email_complained'
                 WHEN NEW.event_type OPERATOR(pg_catalog.=) 'unsubscribe' THEN 'email_unsubscribed'
            END,
        'new_values', v,
        'changed_fields', ARRAY(SELECT pg_catalog.jsonb_object_keys(v))));
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------
-- What the decoder calls
-- ---------------------------------------------------------------------------
-- haste_capture_typed() for every captured table (0031 generated it for tables with
-- updates only): decoded inserts and deletes arrive as text forms too.
CREATE OR REPLACE FUNCTION haste_capture_install_typing()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $gen$
DECLARE
    hs text;
    branches text := '';
    created text := '';
    r record;
BEGIN
    SELECT quote_ident(extnamespace::regnamespace::text) INTO STRICT hs
      FROM pg_extension WHERE extname = 'hstore';
    FOR r IN SELECT table_name, entity_type, created_event
               FROM public.automation_capture_tables ORDER BY table_name LOOP
        branches := branches || format(
            E'\n            WHEN %L THEN pg_catalog.to_jsonb(%s.populate_record(NULL::public.%I, h))',
            r.entity_type, hs, r.table_name);
        -- A table's created_event expression (over NEW), for decoded inserts.
        IF r.created_event IS NOT NULL THEN
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION public.%I(new public.%I) RETURNS text'
                ' LANGUAGE sql STABLE AS %L',
                'haste_capture_created_event_' || r.table_name, r.table_name,
                'SELECT ' || r.created_event);
            EXECUTE format('REVOKE ALL ON FUNCTION public.%I(public.%I) FROM PUBLIC, haste_app',
                           'haste_capture_created_event_' || r.table_name, r.table_name);
            created := created || format(
                E'\n            WHEN %L THEN public.%I(%s.populate_record(NULL::public.%I, h))',
                r.table_name, 'haste_capture_created_event_' || r.table_name, hs, r.table_name);
        END IF;
    END LOOP;
    EXECUTE format($fn$
CREATE OR REPLACE FUNCTION public.haste_capture_typed(p_entity_type text, p_values jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $body$
    -- Generated by haste_capture_install_typing() from automation_capture_tables.
    SELECT CASE WHEN p_values IS NULL OR p_values = '{}'::jsonb THEN p_values
                ELSE p_values || COALESCE((
                    SELECT jsonb_object_agg(t.key, t.value)
                      FROM jsonb_each(CASE p_entity_type%s
                                      END) AS t
                     WHERE p_values ? t.key), '{}'::jsonb)
           END
      FROM (SELECT %s.hstore(array_agg(key), array_agg(value)) AS h
              FROM jsonb_each_text(p_values)) AS raw
$body$
$fn$, branches, hs);
    -- The insert event type of a decoded row (text forms) of p_table; NULL for a table
    -- without a created_event expression (the decoder then uses <entity_type>_created).
    EXECUTE format($fn$
CREATE OR REPLACE FUNCTION public.haste_capture_created_event(p_table text, p_values jsonb)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $body$
    -- Generated by haste_capture_install_typing() from automation_capture_tables.
    SELECT CASE p_table%s
           END
      FROM (SELECT %s.hstore(array_agg(key), array_agg(value)) AS h
              FROM jsonb_each_text(p_values)) AS raw
$body$
$fn$, COALESCE(NULLIF(created, ''), E'\n            WHEN NULL THEN NULL'), hs);
    REVOKE ALL ON FUNCTION public.haste_capture_typed(text, jsonb) FROM PUBLIC, haste_app;
    REVOKE ALL ON FUNCTION public.haste_capture_created_event(text, jsonb) FROM PUBLIC, haste_app;
END
$gen$;

-- ---------------------------------------------------------------------------
-- Switching modes
-- ---------------------------------------------------------------------------
-- Puts every captured table into the state's mode: triggers, replica identity, publication
-- and the body of haste_capture_emit(). Idempotent; haste_capture_refresh() ends with it,
-- so regenerating the triggers never re-enables them in logical mode.
CREATE OR REPLACE FUNCTION haste_capture_apply_mode()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    logical boolean;
    t text;
    tables text[];
BEGIN
    SELECT mode = 'logical' INTO STRICT logical FROM public.automation_capture_state;
    SELECT array_agg(table_name ORDER BY table_name) INTO tables
      FROM public.automation_capture_tables;
    FOREACH t IN ARRAY COALESCE(tables, '{}') LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS haste_capture_context ON public.%I', t);
        IF logical THEN
            EXECUTE format('ALTER TABLE public.%I REPLICA IDENTITY FULL', t);
            EXECUTE format('ALTER TABLE public.%I DISABLE TRIGGER haste_capture', t);
            EXECUTE format(
                'CREATE TRIGGER haste_capture_context BEFORE INSERT OR UPDATE OR DELETE'
                ' ON public.%I FOR EACH STATEMENT'
                ' WHEN (pg_catalog.current_setting(''app.user_id'', true) <> '''''
                '    OR pg_catalog.current_setting(''app.execution_id'', true) <> '''''
                '    OR pg_catalog.current_setting(''app.causation_depth'', true) <> '''''
                '    OR COALESCE(pg_catalog.pg_sequence_last_value('
                '           ''public.automation_listener_idle''::pg_catalog.regclass), 1) = 1)'
                ' EXECUTE FUNCTION public.haste_capture_context()', t);
        ELSE
            EXECUTE format('ALTER TABLE public.%I REPLICA IDENTITY DEFAULT', t);
            EXECUTE format('ALTER TABLE public.%I ENABLE TRIGGER haste_capture', t);
        END IF;
    END LOOP;
    IF logical THEN
        IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'haste_capture') THEN
            EXECUTE format('ALTER PUBLICATION haste_capture SET TABLE %s',
                (SELECT string_agg(format('public.%I', x), ', ') FROM unnest(tables) x));
        ELSE
            -- via the partition root: a partitioned table's (activities) changes arrive
            -- under its own name, not its partitions'.
            EXECUTE format('CREATE PUBLICATION haste_capture FOR TABLE %s'
                           ' WITH (publish_via_partition_root = true)',
                (SELECT string_agg(format('public.%I', x), ', ') FROM unnest(tables) x));
        END IF;
        CREATE OR REPLACE FUNCTION public.haste_capture_emit(p_event jsonb)
        RETURNS void
        LANGUAGE plpgsql
        SECURITY DEFINER
        AS $body$
        BEGIN
            PERFORM pg_catalog.pg_logical_emit_message(true, 'haste_event',
                (p_event OPERATOR(pg_catalog.||) public.haste_capture_context_json())
                    ::pg_catalog.text);
        END
        $body$;
    ELSE
        -- The publication stays until the decoder has read up to the 'trigger' marker.
        CREATE OR REPLACE FUNCTION public.haste_capture_emit(p_event jsonb)
        RETURNS void
        LANGUAGE plpgsql
        SECURITY DEFINER
        AS $body$
        BEGIN
            INSERT INTO public.automation_events
                (workspace_id, entity_type, entity_id, operation, event_type,
                 old_values, new_values, changed_fields)
            SELECT r.workspace_id, r.entity_type, r.entity_id, r.operation, r.event_type,
                   r.old_values, r.new_values, r.changed_fields
              FROM pg_catalog.jsonb_populate_record(NULL::public.automation_events, p_event) AS r;
            IF COALESCE(pg_catalog.pg_sequence_last_value(
                            'public.automation_listener_idle'::pg_catalog.regclass), 1)
               OPERATOR(pg_catalog.=) 1 THEN
                PERFORM pg_catalog.pg_notify('haste_events', '');
            END IF;
        END
        $body$;
    END IF;
    REVOKE ALL ON FUNCTION public.haste_capture_emit(jsonb) FROM PUBLIC, haste_app;
END
$$;

-- Locks every captured table against writes until the end of the transaction: each CRM
-- write then commits wholly before or wholly after what the transaction does.
CREATE OR REPLACE FUNCTION haste_capture_lock()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT table_name FROM public.automation_capture_tables
             UNION ALL SELECT unnest('{contact_tags,email_tracking_events}'::text[])
             ORDER BY 1 LOOP
        EXECUTE format('LOCK TABLE public.%I IN SHARE ROW EXCLUSIVE MODE', t);
    END LOOP;
END
$$;

-- The switch itself (run by `haste capture logical|trigger`, which creates the slot first:
-- a slot cannot be created in a transaction that writes). Locks every captured table so
-- that each CRM write commits wholly before or after the switch, then marks the switch's
-- place in WAL for the decoder.
CREATE OR REPLACE FUNCTION haste_capture_switch(p_mode text, p_slot text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF p_mode NOT IN ('trigger', 'logical') THEN
        RAISE EXCEPTION 'capture mode must be trigger or logical, not %', p_mode
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_mode = 'logical' AND current_setting('wal_level') <> 'logical' THEN
        RAISE EXCEPTION 'logical capture needs wal_level = logical (it is %)',
            current_setting('wal_level')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL.';
    END IF;
    IF p_mode = 'logical' AND NOT EXISTS (
            SELECT 1 FROM pg_replication_slots
             WHERE slot_name = p_slot AND database = current_database()
               AND plugin = 'pgoutput') THEN
        RAISE EXCEPTION 'logical capture needs a pgoutput slot of this database, not %',
            COALESCE(quote_literal(p_slot), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM public.haste_capture_lock();
    UPDATE public.automation_capture_state
       SET mode = p_mode,
           slot_name = CASE WHEN p_mode = 'logical' THEN p_slot ELSE slot_name END,
           changed_at = now();
    PERFORM public.haste_capture_apply_mode();
    PERFORM pg_logical_emit_message(true, 'haste_capture', p_mode);
END
$$;

-- Regenerates every captured table's trigger function and the typing functions, and puts
-- the tables back into the current mode.
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
    PERFORM public.haste_capture_install_typing();
    PERFORM public.haste_capture_apply_mode();
END
$$;

REVOKE ALL ON FUNCTION haste_capture_context_json() FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_context() FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_contact_tags() FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_email_tracking_events() FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_apply_mode() FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_lock() FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_switch(text, text) FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_refresh() FROM PUBLIC, haste_app;

SELECT haste_capture_refresh();
