-- Web UI sessions (gateway/ui). A browser signs in with a personal access token; the cookie
-- carries a random session id, of which only the SHA-256 digest is stored here, and the row
-- names the token (never its value), so every request is checked against that token as the
-- API would check it: revoked, expired or blocked ends the session. Deleting the token or its
-- user ends the session too.
CREATE TABLE IF NOT EXISTS ui_sessions (
    id_digest  bytea PRIMARY KEY,
    token_id   bigint NOT NULL REFERENCES personal_access_tokens (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ui_sessions_token_idx ON ui_sessions (token_id);
CREATE INDEX IF NOT EXISTS ui_sessions_expires_idx ON ui_sessions (expires_at);
