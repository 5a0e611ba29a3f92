-- The listener's ordering check looks up older unprocessed events of the same record.
-- See docs/schema-changes.md.
CREATE INDEX idx_automation_events_unprocessed_entity
    ON automation_events (entity_type, entity_id, id) WHERE processed_at IS NULL;
