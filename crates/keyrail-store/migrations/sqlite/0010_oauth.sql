-- no-transaction
-- The OAuth 2.1 authorization server of /mcp (API.md "MCP and OAuth 2.1"). SQLite flavour; keep
-- in step with ../postgres/0010_oauth.sql.
--
-- A client registered by RFC 7591 dynamic registration is an app of kind 'public': nobody owns
-- it (owner_id and builder_profile_id are NULL), it has no usable secret, and it lists the
-- redirect URIs it may use (a JSON array). SQLite cannot drop NOT NULL in place, so `apps` is
-- rebuilt (https://sqlite.org/lang_altertable.html, "otheralter"): foreign keys are off while
-- it happens, so dropping the old table does not cascade to the grants that refer to it, and
-- the whole rebuild is one transaction.
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE apps_new (
    client_id              TEXT    NOT NULL PRIMARY KEY,
    owner_id               TEXT
        CONSTRAINT apps_owner_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    builder_profile_id     TEXT
        CONSTRAINT apps_builder_profile_id_fkey
        REFERENCES builder_profiles (id) ON DELETE CASCADE,
    name                   TEXT    NOT NULL,
    description            TEXT    NOT NULL,
    workspace_restrictions TEXT,
    active                 INTEGER NOT NULL CHECK (active IN (0, 1)),
    sealed_secret          TEXT    NOT NULL,
    secret_generation      INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    kind                   TEXT    NOT NULL DEFAULT 'confidential'
        CHECK (kind IN ('confidential', 'public')),
    redirect_uris          TEXT,
    CHECK ((kind = 'public') = (owner_id IS NULL)),
    CHECK ((kind = 'public') = (builder_profile_id IS NULL))
) STRICT;

INSERT INTO apps_new (client_id, owner_id, builder_profile_id, name, description,
                      workspace_restrictions, active, sealed_secret, secret_generation,
                      created_at, updated_at)
SELECT client_id, owner_id, builder_profile_id, name, description, workspace_restrictions,
       active, sealed_secret, secret_generation, created_at, updated_at
FROM apps;

DROP TABLE apps;
ALTER TABLE apps_new RENAME TO apps;
CREATE INDEX apps_owner_id_idx ON apps (owner_id, client_id);
-- The cleanup of public clients nobody granted.
CREATE INDEX apps_kind_created_idx ON apps (kind, created_at);

-- Authorization codes: single use, a minute long. `used` stays set so that a second use is
-- recognised (and revokes the grant, RFC 9700 4.2.1 / OAuth 2.1 4.1.3).
CREATE TABLE oauth_codes (
    code_hash      TEXT    NOT NULL PRIMARY KEY,
    client_id      TEXT    NOT NULL
        CONSTRAINT oauth_codes_client_id_fkey REFERENCES apps (client_id) ON DELETE CASCADE,
    grant_id       TEXT    NOT NULL
        CONSTRAINT oauth_codes_grant_id_fkey REFERENCES grants (id) ON DELETE CASCADE,
    redirect_uri   TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    used           INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX oauth_codes_grant_id_idx ON oauth_codes (grant_id);
CREATE INDEX oauth_codes_expires_at_idx ON oauth_codes (expires_at);

-- Refresh tokens of OAuth clients, rotated on every use; a used one presented again revokes
-- the grant (the rule of the sessions' refresh tokens).
CREATE TABLE oauth_refresh_tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    client_id  TEXT    NOT NULL
        CONSTRAINT oauth_refresh_tokens_client_id_fkey
        REFERENCES apps (client_id) ON DELETE CASCADE,
    grant_id   TEXT    NOT NULL
        CONSTRAINT oauth_refresh_tokens_grant_id_fkey
        REFERENCES grants (id) ON DELETE CASCADE,
    resource   TEXT    NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX oauth_refresh_tokens_grant_id_idx ON oauth_refresh_tokens (grant_id);
CREATE INDEX oauth_refresh_tokens_expires_at_idx ON oauth_refresh_tokens (expires_at);

PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
