-- Migration 0006: keyset pages (id order) of one project read a page, not the project.
-- With (project_id, id) alone, the planner preferred reading 0002's covering created_at index
-- whole and sorting it: 250,000 entries of a CI-heavy project for a page of 20 (200-340 ms
-- against 0.2 ms in the metadata benchmark). This one covers the same columns, so it wins; it
-- replaces packages_project_idx (project deletion's cascade uses it as well). On a large
-- database, build it first by hand with CREATE INDEX CONCURRENTLY (README, "Schema changes").
CREATE INDEX IF NOT EXISTS packages_project_id_idx
    ON packages (project_id, id) INCLUDE (status, package_type);
DROP INDEX IF EXISTS packages_project_idx;
