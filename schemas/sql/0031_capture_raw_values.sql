-- Event capture, cheaper for the writer: an UPDATE's changed columns are stored as their
-- text forms, and the listener types them when it claims the event.
--
-- Why (bench/bench_capture.py, docs/schema-changes.md): 0030's update branch turned each
-- changed column back into its type inside the trigger (a FOREACH over the changed keys with
-- a generated CASE per column type). A plpgsql trigger pays, per transaction, the set-up of
-- every expression it evaluates, so that loop was most of the capture's cost on one-row
-- UPDATEs. The update branch now stores hstore_to_jsonb() of the diff and of the old values
-- (one C call each, every value a JSON string or null) with values_raw = true;
-- haste_capture_typed() turns them into what to_jsonb() would have given, using the table's
-- current row type (hstore's populate_record() runs each column type's input function), and
-- the listener's claim (schemas/queries/listener.sql) stores the typed values back and
-- clears values_raw, on the listener's time instead of the writer's.
--
-- INSERT and DELETE branches are unchanged: to_jsonb(NEW) is already one C call.
-- A column added to a captured table is typed without haste_capture_refresh() now (the row
-- type is read when the claim runs); refresh is still needed for a new ignored column.

ALTER TABLE automation_events
    ADD COLUMN IF NOT EXISTS values_raw BOOLEAN NOT NULL DEFAULT false;

-- 0030's per-column typing helper has no caller any more.
DROP FUNCTION IF EXISTS haste_capture_typed_value(regclass, text[], text);

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

    -- One branch per captured operation; the hot one (UPDATE) first. It stores the changed
    -- columns' text forms (hstore_to_jsonb: one C call each side) and values_raw; the
    -- listener's claim types them (haste_capture_typed), off the writer's path.
    IF 'update' = ANY (cfg.operations) THEN
        branches := branches || format($branch$TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
        %1$s
        %2$s
        %3$s
        ho := %7$s.hstore(OLD);
        d := %7$s.hstore(NEW) OPERATOR(%7$s.-) ho;
        IF d OPERATOR(%7$s.=) ''::%7$s.hstore THEN
            RETURN NULL;  -- nothing but ignored columns changed
        END IF;
        INSERT INTO public.automation_events
            (workspace_id, entity_type, entity_id, operation, event_type,
             old_values, new_values, changed_fields, values_raw)
        VALUES (NEW.workspace_id, %6$L, NEW.id, %4$s, %5$s,
                %7$s.hstore_to_jsonb(%7$s.slice(ho, %7$s.akeys(d))),
                %7$s.hstore_to_jsonb(d), %7$s.akeys(d), true);$branch$,
            -- %1: a soft-deleted record that stays deleted has no more events
            CASE WHEN soft_delete THEN
                'IF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NOT NULL THEN RETURN NULL; END IF;'
            ELSE '' END,
            blank_new,
            blank_old,
            -- %4, %5: deleted_at set from NULL is the record's deletion
            CASE WHEN soft_delete THEN format(
                'CASE WHEN NEW.deleted_at IS NULL THEN %L ELSE %L END', 'update', 'delete')
            ELSE quote_literal('update') END,
            CASE WHEN soft_delete THEN format(
                'CASE WHEN NEW.deleted_at IS NULL THEN %L ELSE %L END',
                cfg.entity_type || '_updated', cfg.entity_type || '_deleted')
            ELSE quote_literal(cfg.entity_type || '_updated') END,
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

-- (Re)creates haste_capture_typed(entity_type, values): text forms -> typed jsonb, one CASE
-- branch per captured table with updates. Keys that are no longer columns (dropped since
-- the capture) keep their text form; unknown entity types come back unchanged.
CREATE OR REPLACE FUNCTION haste_capture_install_typing()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $gen$
DECLARE
    hs text;
    branches text := '';
    r record;
BEGIN
    SELECT quote_ident(extnamespace::regnamespace::text) INTO STRICT hs
      FROM pg_extension WHERE extname = 'hstore';
    FOR r IN SELECT table_name, entity_type FROM public.automation_capture_tables
              WHERE 'update' = ANY (operations) ORDER BY table_name LOOP
        branches := branches || format(
            E'\n            WHEN %L THEN pg_catalog.to_jsonb(%s.populate_record(NULL::public.%I, h))',
            r.entity_type, hs, r.table_name);
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
    REVOKE ALL ON FUNCTION public.haste_capture_typed(text, jsonb) FROM PUBLIC, haste_app;
END
$gen$;

-- Regenerates every captured table's trigger function and the typing function.
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
END
$$;

REVOKE ALL ON FUNCTION haste_capture_install(text) FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_install_typing() FROM PUBLIC, haste_app;
REVOKE ALL ON FUNCTION haste_capture_refresh() FROM PUBLIC, haste_app;

SELECT haste_capture_refresh();
