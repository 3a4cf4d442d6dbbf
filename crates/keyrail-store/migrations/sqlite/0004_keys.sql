-- API keys. SQLite flavour; keep in step with ../postgres/0004_keys.sql. Booleans are INTEGER
-- 0/1; timestamps are INTEGER milliseconds since the Unix epoch.
--
-- A key is stored as the SHA-256 of the full key (lowercase hex), never in clear; a
-- `recoverable` key is also kept sealed under the master key (sealed_key). `scopes` is a JSON
-- array of scope names, `meta` a JSON value. The rate limit is both columns or neither.
-- `remaining` is the usage credits left (NULL = unlimited). `revoked_at` may lie in the future
-- (a rotation with a grace period): the key is revoked from then on.

CREATE TABLE keys (
    id                TEXT    NOT NULL PRIMARY KEY,
    workspace_id      TEXT    NOT NULL
        CONSTRAINT keys_workspace_id_fkey REFERENCES workspaces (id) ON DELETE CASCADE,
    name              TEXT    NOT NULL,
    prefix            TEXT    NOT NULL,
    hash              TEXT    NOT NULL,
    scopes            TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by        TEXT,
    updated_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    revoked_at        INTEGER,
    disabled          INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    last_used_at      INTEGER,
    rate_limit_limit  INTEGER,
    rate_limit_window INTEGER,
    remaining         INTEGER,
    meta              TEXT,
    external_id       TEXT,
    sealed_key        TEXT,
    replaced_by       TEXT,
    CONSTRAINT keys_hash_key UNIQUE (hash),
    CONSTRAINT keys_rate_limit_check
        CHECK ((rate_limit_limit IS NULL) = (rate_limit_window IS NULL))
) STRICT;

-- Listing a workspace's keys by id (keyset pagination), and by external id.
CREATE INDEX keys_workspace_id_idx ON keys (workspace_id, id);
CREATE INDEX keys_workspace_external_id_idx ON keys (workspace_id, external_id);
