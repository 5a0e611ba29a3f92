-- Step records lose their foreign key to workspaces; the one to their execution stays.
--
-- Why: a foreign key check takes FOR KEY SHARE on the referenced row, and every step record
-- of a workspace references the same workspaces row. Concurrent steps of one workspace then
-- turn that row's lock into a MultiXact with every in-flight step as a member (a new
-- MultiXact, WAL record and exclusive lock of the row's page per step): measured in
-- bench/bench_workers.py G3, PostgreSQL's CPU per execution fell from ~1.05 to ~0.95 ms
-- without it. The key added nothing: a step record's execution_id references
-- automation_executions ON DELETE CASCADE, whose workspace_id references workspaces ON
-- DELETE CASCADE, so deleting a workspace still deletes its step records, and the engine
-- writes a step's workspace_id from its execution's. (automation_events never had this
-- key, for the same reason: schemas/sql/0030_outbox.sql.)
ALTER TABLE automation_execution_steps
    DROP CONSTRAINT IF EXISTS automation_execution_steps_workspace_id_fkey;
