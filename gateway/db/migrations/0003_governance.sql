-- Migration 0002: governance. Package protection rules (GitLab's), audit events, storage quotas
-- and retention policies. Only new tables, new nullable columns and new indexes: gateways of the
-- release before keep working against this schema while it rolls out.

-- GitLab's packages_protection_rules. package_type: GitLab's integers (7 generic);
-- minimum_access_level_for_push: 40 maintainer, 50 owner, 60 admin; for_delete: 50 owner,
-- 60 admin; NULL means "not protected for that action". package_name_pattern is a glob with `*`,
-- matched case-insensitively (ILIKE, as GitLab's Gitlab::SQL::Glob).
CREATE TABLE package_protection_rules (
    id                              bigserial PRIMARY KEY,
    project_id                      bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    package_name_pattern            text NOT NULL,
    package_type                    smallint NOT NULL,
    minimum_access_level_for_push   integer,
    minimum_access_level_for_delete integer,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    CHECK (minimum_access_level_for_push IS NOT NULL OR minimum_access_level_for_delete IS NOT NULL)
);
CREATE UNIQUE INDEX package_protection_rules_unique_key
    ON package_protection_rules (project_id, package_type, package_name_pattern);

-- Audit events: who did what to which entity. No foreign keys on purpose: an event outlives the
-- user, project or group it names. details never holds a secret (tokens are named by id).
CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    author_id   bigint,
    author_name text NOT NULL DEFAULT '',
    entity_type text NOT NULL,  -- Project | Group | User
    entity_id   bigint NOT NULL,
    entity_path text NOT NULL DEFAULT '',
    event_name  text NOT NULL,
    target_type text,
    target_id   bigint,
    target_details text,
    ip_address  text,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_entity_idx ON audit_events (entity_type, entity_id, id);
CREATE INDEX audit_events_created_idx ON audit_events (created_at, id);

-- Storage quotas (bytes and files of package files). NULL: no limit of its own (a project then
-- falls back to the instance default, GATEWAY_PACKAGES_QUOTA_*). Usage is summed under the
-- quota's advisory lock at commit, from this index alone.
ALTER TABLE projects ADD COLUMN packages_max_bytes bigint CHECK (packages_max_bytes >= 0);
ALTER TABLE projects ADD COLUMN packages_max_files bigint CHECK (packages_max_files >= 0);
ALTER TABLE namespaces ADD COLUMN packages_max_bytes bigint CHECK (packages_max_bytes >= 0);
ALTER TABLE namespaces ADD COLUMN packages_max_files bigint CHECK (packages_max_files >= 0);
CREATE INDEX package_files_project_size_idx ON package_files (project_id) INCLUDE (size);

-- Retention policies, one per project. keep_n_latest: the N newest versions of each package
-- name (names matching name_regex, RE2, when set) are kept; files not downloaded for N days and
-- versions older than N days go. NULL: that rule is off.
CREATE TABLE package_retention_policies (
    project_id                     bigint PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    keep_n_latest                  integer CHECK (keep_n_latest > 0),
    name_regex                     text,
    delete_not_downloaded_days     integer CHECK (delete_not_downloaded_days > 0),
    delete_older_than_days         integer CHECK (delete_older_than_days > 0),
    include_hidden                 boolean NOT NULL DEFAULT false,
    created_at                     timestamptz NOT NULL DEFAULT now(),
    updated_at                     timestamptz NOT NULL DEFAULT now()
);
-- A file's last download, written at most once a day per file (see gateway.packages.downloads).
ALTER TABLE package_files ADD COLUMN last_downloaded_at timestamptz;
