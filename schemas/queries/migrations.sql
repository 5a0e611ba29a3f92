-- Queries of the migration runner (engine/migrations.py).

-- name: migration_table_create
CREATE TABLE IF NOT EXISTS schema_migrations (
    version      INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    checksum     TEXT NOT NULL,
    applied_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    execution_ms INTEGER NOT NULL
);

-- name: migration_list
SELECT version, name, checksum, applied_at
FROM schema_migrations
ORDER BY version;

-- name: migration_record
INSERT INTO schema_migrations (version, name, checksum, execution_ms)
VALUES (%(version)s, %(name)s, %(checksum)s, %(execution_ms)s);

-- name: migration_table_exists
SELECT to_regclass('schema_migrations') IS NOT NULL;
