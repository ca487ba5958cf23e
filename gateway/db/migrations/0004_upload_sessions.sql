-- Resumable upload sessions (tus 1.0 and the IETF resumable upload protocol share them).
-- A session lives here and in S3 only, never in one process: any gateway continues it.
--   parts       the S3 multipart parts already uploaded: {"1": {"etag", "crc32", "size"}, …}
--   tail        acknowledged bytes after the last part, fewer than S3's 5 MiB minimum part:
--               kept in the row so that they, the offset and the hash state change in one
--               UPDATE (no separate object to order against the row, nothing to orphan)
--   hash_state  md5, sha1 and sha256 of bytes [0, offset), serialized (hash_engine names
--               the library version that wrote it; another version refuses to continue)
--   state       0 open, 1 committed (kept until it expires, so a HEAD after the end still
--               answers); no foreign key to projects: a deleted project's sessions still
--               hold S3 parts, which the sweeper aborts before it drops the row
CREATE TABLE IF NOT EXISTS upload_sessions (
    id              text PRIMARY KEY,
    project_id      bigint NOT NULL,
    package_name    text NOT NULL,
    package_version text NOT NULL,
    file_name       text NOT NULL,
    file_path       text,
    status          text,
    creator_id      bigint,
    upload_length   bigint,
    upload_offset   bigint NOT NULL DEFAULT 0,
    object_key      text NOT NULL UNIQUE,
    upload_id       text,
    parts           jsonb NOT NULL DEFAULT '{}',
    tail            bytea NOT NULL DEFAULT '',
    hash_state      bytea NOT NULL,
    hash_engine     text NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    state           smallint NOT NULL DEFAULT 0,
    package_file_id bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_sessions_expires_idx ON upload_sessions (expires_at);
