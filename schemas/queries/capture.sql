-- Queries of triggers/decoder.py and triggers/capture_mode.py: logical-decoding capture
-- (schemas/sql/0100_capture_logical.sql). Run as the owner: the slot and the state row
-- span workspaces.

-- name: capture_status
-- The mode and the slot, for `haste capture` and `haste status`.
SELECT s.mode, s.slot_name, s.decoding, s.decoded_lsn::text AS decoded_lsn, s.decoded_at,
       s.last_error, s.changed_at, current_setting('wal_level') AS wal_level,
       r.active AS slot_active, r.wal_status AS slot_wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), r.restart_lsn)::bigint AS slot_retained_bytes
FROM automation_capture_state s
LEFT JOIN pg_replication_slots r ON r.slot_name = s.slot_name;

-- name: capture_decoder_state
SELECT mode, slot_name, decoding, decoded_lsn::text, last_marker, last_error
FROM automation_capture_state;

-- name: capture_peek
-- pgoutput messages of whole transactions committed before %(upto)s (peek: the slot is
-- advanced only after the events are committed).
SELECT data FROM pg_logical_slot_peek_binary_changes(
    %(slot)s, %(upto)s::pg_lsn, %(limit)s,
    'proto_version', '1', 'publication_names', %(publication)s, 'messages', 'true');

-- name: capture_tables
SELECT table_name, entity_type, ignored_columns, created_event IS NOT NULL AS ce, operations
FROM automation_capture_tables;

-- name: capture_insert_event
-- One decoded event; an insert's type comes from the table's created_event expression
-- when the decoder leaves it NULL. A change that could not be diffed is parked at once.
INSERT INTO automation_events
    (workspace_id, entity_type, entity_id, operation, event_type, old_values, new_values,
     changed_fields, values_raw, actor_user_id, causation_execution_id, depth, created_at,
     error, processed_at)
VALUES (%(workspace_id)s, %(entity_type)s, %(entity_id)s, %(operation)s,
        COALESCE(%(event_type)s::text, haste_capture_created_event(%(table)s, %(new_values)s)),
        %(old_values)s, %(new_values)s, %(changed_fields)s, %(values_raw)s,
        %(actor_user_id)s, %(causation_execution_id)s, %(depth)s, %(created_at)s,
        %(error)s, CASE WHEN %(error)s::text IS NOT NULL THEN now() END);

-- name: capture_wake_listeners
-- Other listener replicas may be waiting for a NOTIFY (this one drains next anyway).
SELECT pg_notify('haste_events', '')
WHERE COALESCE(pg_sequence_last_value('public.automation_listener_idle'::regclass), 1) = 1;

-- name: capture_decoded
UPDATE automation_capture_state
SET decoding = %(decoding)s, decoded_lsn = %(decoded_lsn)s,
    last_marker = COALESCE(%(marker)s, last_marker), decoded_at = now(), last_error = %(error)s;

-- name: capture_failed
UPDATE automation_capture_state SET last_error = %(error)s;

-- name: capture_slot_drop
-- After the 'trigger' marker: nothing more to read, and a slot retains WAL.
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
WHERE slot_name = %(slot)s;

-- name: capture_slot_dropped
UPDATE automation_capture_state SET slot_name = NULL, last_marker = NULL, decoded_lsn = NULL
WHERE mode = 'trigger';
