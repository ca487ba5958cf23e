-- Migration 0002: the indexes the metadata benchmark's plans asked for (benchmarks/metadata,
-- docs/capacity.md). Each one serves a named query that otherwise reads rows it does not return.
-- On a database that already holds millions of rows, build them first by hand with
-- CREATE INDEX CONCURRENTLY (same names and columns); IF NOT EXISTS then makes this a no-op
-- instead of holding a lock on the table while the index is built.

-- Package lists in their default order (created_at, then id), project by project: a page reads
-- its own entries of each project instead of sorting every package of the project. status and
-- package_type ride along, so the list's filters and its bounded count are answered from the
-- index alone.
CREATE INDEX IF NOT EXISTS packages_project_created_idx
    ON packages (project_id, created_at, id) INCLUDE (status, package_type);

-- A package's files in id order (the files list, offset and keyset): without it every page of a
-- package with tens of thousands of files sorts all of them.
CREATE INDEX IF NOT EXISTS package_files_package_id_idx
    ON package_files (package_id, id) INCLUDE (status);

-- The sweeper's scan: only uploads whose heartbeat is older than the stale window, oldest first.
CREATE INDEX IF NOT EXISTS pending_uploads_heartbeat_idx ON pending_uploads (heartbeat_at);

-- The deletion worker claims due entries in (next_attempt_at, id) order. Deleting a project
-- queues all its objects with one next_attempt_at (the transaction's now()), and an index on
-- next_attempt_at alone made the claim sort that whole group for every batch of 100.
CREATE INDEX IF NOT EXISTS object_deletions_due_id_idx ON object_deletions (next_attempt_at, id);
DROP INDEX IF EXISTS object_deletions_due_idx;
