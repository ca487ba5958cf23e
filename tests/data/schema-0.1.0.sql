-- packgate schema. Applied by `gateway migrate`: every statement is idempotent, so running it
-- again (or from several gateways at once, under an advisory lock) changes nothing.

-- Users, including the bots behind project access tokens.
CREATE TABLE IF NOT EXISTS users (
    id          bigserial PRIMARY KEY,
    username    text NOT NULL,
    name        text NOT NULL,
    email       text NOT NULL,
    is_admin    boolean NOT NULL DEFAULT false,
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'blocked', 'deactivated')),
    bot         boolean NOT NULL DEFAULT false,
    external    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username_key ON users (lower(username));
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON users (lower(email));

-- Namespaces: groups (nested through parent_id) and users' personal namespaces. A group's id is
-- its namespace id, as on GitLab. full_path is kept denormalised for lookups by path.
CREATE TABLE IF NOT EXISTS namespaces (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('group', 'user')),
    name        text NOT NULL,
    path        text NOT NULL,
    full_path   text NOT NULL,
    parent_id   bigint REFERENCES namespaces (id) ON DELETE CASCADE,
    owner_id    bigint REFERENCES users (id) ON DELETE CASCADE,
    visibility  text NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'internal', 'public')),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- GitLab's namespace package settings (generic duplicates)
    generic_duplicates_allowed        boolean NOT NULL DEFAULT true,
    generic_duplicate_exception_regex text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS namespaces_full_path_key ON namespaces (lower(full_path));
CREATE UNIQUE INDEX IF NOT EXISTS namespaces_owner_key ON namespaces (owner_id) WHERE kind = 'user';

CREATE TABLE IF NOT EXISTS projects (
    id               bigserial PRIMARY KEY,
    namespace_id     bigint NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    name             text NOT NULL,
    path             text NOT NULL,
    description      text NOT NULL DEFAULT '',
    visibility       text NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'internal', 'public')),
    packages_enabled boolean NOT NULL DEFAULT true,
    creator_id       bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_activity_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS projects_namespace_path_key ON projects (namespace_id, lower(path));

-- Memberships with GitLab's access levels (10 guest, 15 planner, 20 reporter, 30 developer,
-- 40 maintainer, 50 owner). A group's members are inherited by its subgroups and projects.
CREATE TABLE IF NOT EXISTS project_members (
    id           bigserial PRIMARY KEY,
    project_id   bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_level integer NOT NULL,
    expires_at   date,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   bigint REFERENCES users (id) ON DELETE SET NULL,
    UNIQUE (project_id, user_id)
);
CREATE INDEX IF NOT EXISTS project_members_user_idx ON project_members (user_id);

CREATE TABLE IF NOT EXISTS group_members (
    id           bigserial PRIMARY KEY,
    group_id     bigint NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_level integer NOT NULL,
    expires_at   date,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   bigint REFERENCES users (id) ON DELETE SET NULL,
    UNIQUE (group_id, user_id)
);
CREATE INDEX IF NOT EXISTS group_members_user_idx ON group_members (user_id);

-- Personal, project and group access tokens (the latter two belong to bot users). Only the
-- SHA-256 digest of a token is kept.
CREATE TABLE IF NOT EXISTS personal_access_tokens (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    description  text,
    token_digest bytea NOT NULL,
    scopes       text[] NOT NULL,
    expires_at   date,
    revoked      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS personal_access_tokens_digest_key ON personal_access_tokens (token_digest);
CREATE INDEX IF NOT EXISTS personal_access_tokens_user_idx ON personal_access_tokens (user_id);

-- Deploy tokens belong to one project or one group (and then work on every project below it).
CREATE TABLE IF NOT EXISTS deploy_tokens (
    id           bigserial PRIMARY KEY,
    project_id   bigint REFERENCES projects (id) ON DELETE CASCADE,
    group_id     bigint REFERENCES namespaces (id) ON DELETE CASCADE,
    name         text NOT NULL,
    username     text NOT NULL,
    token_digest bytea NOT NULL,
    scopes       text[] NOT NULL,
    expires_at   timestamptz,
    revoked      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((project_id IS NULL) <> (group_id IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS deploy_tokens_digest_key ON deploy_tokens (token_digest);

-- CI job tokens: act for a user inside one project, short-lived.
CREATE TABLE IF NOT EXISTS job_tokens (
    id           bigserial PRIMARY KEY,
    project_id   bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_digest bytea NOT NULL,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS job_tokens_digest_key ON job_tokens (token_digest);

-- Identity, second part: the fields the administration API reads and writes.
ALTER TABLE users ADD COLUMN IF NOT EXISTS can_create_group boolean NOT NULL DEFAULT true;
ALTER TABLE users ADD COLUMN IF NOT EXISTS projects_limit integer NOT NULL DEFAULT 100000;
ALTER TABLE users ADD COLUMN IF NOT EXISTS private_profile boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN IF NOT EXISTS note text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS bio text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN IF NOT EXISTS location text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN IF NOT EXISTS organization text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN IF NOT EXISTS job_title text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN IF NOT EXISTS public_email text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS website_url text NOT NULL DEFAULT '';
-- Account passwords are never accepted by the API (tokens only); kept as a salted scrypt digest.
ALTER TABLE users ADD COLUMN IF NOT EXISTS password_digest text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS confirmed_at timestamptz;
ALTER TABLE users ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
-- The bot behind a project or group access token belongs to that resource and goes with it.
ALTER TABLE users ADD COLUMN IF NOT EXISTS bot_project_id bigint REFERENCES projects (id) ON DELETE CASCADE;
ALTER TABLE users ADD COLUMN IF NOT EXISTS bot_group_id bigint REFERENCES namespaces (id) ON DELETE CASCADE;

-- GitLab's package_registry_access_level (disabled | private | enabled | public). NULL: derived
-- from packages_enabled and the visibility, as GitLab sets it when packages_enabled changes.
ALTER TABLE projects ADD COLUMN IF NOT EXISTS package_registry_access_level text
    CHECK (package_registry_access_level IN ('disabled', 'private', 'enabled', 'public'));
ALTER TABLE projects ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE personal_access_tokens ADD COLUMN IF NOT EXISTS previous_id bigint;
-- Project and group access tokens keep the role they were created with, also once revoked.
ALTER TABLE personal_access_tokens ADD COLUMN IF NOT EXISTS access_level integer;
-- "Acme / Sub", GitLab's full_name, kept beside full_path (NULL: a top-level name).
ALTER TABLE namespaces ADD COLUMN IF NOT EXISTS full_name text;
ALTER TABLE job_tokens ADD COLUMN IF NOT EXISTS revoked boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS deploy_tokens_project_idx ON deploy_tokens (project_id);
CREATE INDEX IF NOT EXISTS deploy_tokens_group_idx ON deploy_tokens (group_id);

-- Packages. status: 0 default, 1 hidden, 2 processing, 3 error, 4 pending_destruction,
-- 5 deprecated (GitLab's integers). package_type 7 is generic.
CREATE TABLE IF NOT EXISTS packages (
    id                 bigserial PRIMARY KEY,
    project_id         bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               text NOT NULL,
    version            text NOT NULL,
    package_type       smallint NOT NULL DEFAULT 7,
    status             smallint NOT NULL DEFAULT 0,
    creator_id         bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_downloaded_at timestamptz
);
-- One live package per (project, name, version), as GitLab's unique index.
CREATE UNIQUE INDEX IF NOT EXISTS packages_project_name_version_key
    ON packages (project_id, name, version) WHERE status <> 4;
CREATE INDEX IF NOT EXISTS packages_project_idx ON packages (project_id, id);

-- Package files. object_key is opaque (never built from user input). status: 0 default,
-- 1 pending_destruction, 2 processing, 3 error.
CREATE TABLE IF NOT EXISTS package_files (
    id          bigserial PRIMARY KEY,
    package_id  bigint NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    project_id  bigint NOT NULL,
    file_name   text NOT NULL,
    size        bigint NOT NULL,
    file_md5    text NOT NULL,
    file_sha1   text NOT NULL,
    file_sha256 text NOT NULL,
    object_key  text NOT NULL,
    status      smallint NOT NULL DEFAULT 0,
    file_store  smallint NOT NULL DEFAULT 2,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS package_files_object_key_key ON package_files (object_key);
CREATE INDEX IF NOT EXISTS package_files_lookup_idx ON package_files (package_id, file_name, id);

-- Uploads in progress: an object being written that no row points to yet. The sweeper aborts
-- those whose heartbeat stopped (the gateway that owned them died).
CREATE TABLE IF NOT EXISTS pending_uploads (
    id           bigserial PRIMARY KEY,
    object_key   text NOT NULL UNIQUE,
    upload_id    text,
    instance     text NOT NULL,
    project_id   bigint,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Objects whose rows are gone and whose bytes must leave the bucket. Rows are queued here in the
-- same transaction that deletes them (by the trigger below, so cascades from a deleted package or
-- project are caught too); a worker deletes the object and then the queue entry.
CREATE TABLE IF NOT EXISTS object_deletions (
    id              bigserial PRIMARY KEY,
    object_key      text NOT NULL,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);
CREATE INDEX IF NOT EXISTS object_deletions_due_idx ON object_deletions (next_attempt_at);

CREATE OR REPLACE FUNCTION queue_object_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO object_deletions (object_key) VALUES (OLD.object_key);
    RETURN OLD;
END;
$$;
CREATE OR REPLACE TRIGGER package_files_queue_object_deletion
    AFTER DELETE ON package_files FOR EACH ROW EXECUTE FUNCTION queue_object_deletion();
