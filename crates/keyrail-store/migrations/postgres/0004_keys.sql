-- API keys. PostgreSQL flavour; keep in step with ../sqlite/0004_keys.sql. Ids and digests use
-- the "C" collation (byte order, for keyset pagination). Timestamps are BIGINT milliseconds since
-- the Unix epoch.
--
-- A key is stored as the SHA-256 of the full key (lowercase hex), never in clear; a
-- `recoverable` key is also kept sealed under the master key (sealed_key). `scopes` is a JSON
-- array of scope names, `meta` a JSON value. The rate limit is both columns or neither.
-- `remaining` is the usage credits left (NULL = unlimited). `revoked_at` may lie in the future
-- (a rotation with a grace period): the key is revoked from then on.

CREATE TABLE keys (
    id                TEXT COLLATE "C" NOT NULL,
    workspace_id      TEXT COLLATE "C" NOT NULL,
    name              TEXT    NOT NULL,
    prefix            TEXT    NOT NULL,
    hash              TEXT COLLATE "C" NOT NULL,
    scopes            TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    created_by        TEXT,
    updated_at        BIGINT  NOT NULL,
    expires_at        BIGINT,
    revoked_at        BIGINT,
    disabled          BOOLEAN NOT NULL DEFAULT FALSE,
    last_used_at      BIGINT,
    rate_limit_limit  BIGINT,
    rate_limit_window BIGINT,
    remaining         BIGINT,
    meta              TEXT,
    external_id       TEXT COLLATE "C",
    sealed_key        TEXT,
    replaced_by       TEXT COLLATE "C",
    CONSTRAINT keys_pkey PRIMARY KEY (id),
    CONSTRAINT keys_workspace_id_fkey FOREIGN KEY (workspace_id)
        REFERENCES workspaces (id) ON DELETE CASCADE,
    CONSTRAINT keys_hash_key UNIQUE (hash),
    CONSTRAINT keys_rate_limit_check
        CHECK ((rate_limit_limit IS NULL) = (rate_limit_window IS NULL))
);

-- Listing a workspace's keys by id (keyset pagination), and by external id.
CREATE INDEX keys_workspace_id_idx ON keys (workspace_id, id);
CREATE INDEX keys_workspace_external_id_idx ON keys (workspace_id, external_id);
